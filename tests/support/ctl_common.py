"""Process and file helpers shared by the *_ctl.py scripts that start private mail servers
(Exim, Dovecot, Postfix) for the integration tests. Imported from the scripts' own folder."""

import os
import socket
import time

HOST = "127.0.0.1"


def write_atomic(path, text, mode=0o644):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def proc_state(pid):
    """Process state letter from /proc, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        return data[data.rindex(")") + 2]
    except (OSError, ValueError, IndexError):
        return None


def alive(pid):
    st = proc_state(pid)
    return st is not None and st not in ("Z", "X")


def _nul_list(pid, name):
    """/proc/PID/NAME split at NUL bytes (cmdline, environ); [] when unreadable."""
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def cmdline(pid):
    return _nul_list(pid, "cmdline")


def environ(pid):
    return _nul_list(pid, "environ")


def wait_gone(pids, timeout):
    """Wait up to `timeout` seconds for the processes to end; returns those still alive."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        pids = [p for p in pids if alive(p)]
        if not pids:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def free_port():
    """A loopback TCP port that was free a moment ago."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""
