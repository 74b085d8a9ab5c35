#!/usr/bin/env python3
"""exim_ctl.py - start and stop a private Exim daemon on loopback for tests.

Usage:
  exim_ctl.py start DIR [--user alice] [--password secret] [--port P]
                        [--log-selector '+all'] [--timeout 15]
                        [--mailboxes admin,postmaster,root,alice,security]
                        [--helo-accept-junk]
  exim_ctl.py stop DIR [--timeout 10]
  exim_ctl.py status DIR            (exit 0 if running, 3 if not)

start: makes DIR (absolute path taken), writes DIR/exim.conf from
exim/exim.conf.in, checks it with `exim4 -C DIR/exim.conf -bV`, and starts
  /usr/sbin/exim4 -C DIR/exim.conf -bd -oX PORT -oP DIR/exim.pid
on 127.0.0.1:PORT. Without --port, PORT is picked by binding 127.0.0.1:0 and
closing (if Exim then cannot bind it because something grabbed it meanwhile,
start retries with another port, up to 3 times). With --port, a taken port is
an error. start returns once the daemon answers "220 ... authwatch-test" on
the port, then prints PORT on stdout and writes (atomically):
  DIR/port        "PORT\\n"
  DIR/info.json   {"port", "pid", "host", "user", "password", "conf",
                   "mainlog", "maildir", "relayed", "exim"}
Layout under DIR:
  exim.conf exim.pid port info.json
  log/mainlog log/rejectlog log/paniclog   (log/daemon.stderr: daemon's stderr)
  spool/                                   (Exim's spool: input/ msglog/ db/)
  Maildir/<mailbox>/new/                   (mail for <mailbox>@mx.test, one
                                           folder per --mailboxes name)
  Maildir/other/new/                       (any other local part @mx.test)
  Relayed/new/                             (mail for any other domain)
Must run as root (Exim allows -oP only to root and its own user). Exim drops
to and delivers as Debian-exim: DIR and everything under it are chowned to
Debian-exim (exim.conf stays root's, mode 0644), and any ancestor of DIR that
Debian-exim cannot traverse (e.g. a 0700 temp dir) gets o+x (a note is
printed to stderr). The mainlog is mode 0640 Debian-exim: root can read it.

stop: sends SIGTERM to the PID in DIR/exim.pid (after checking that the
process is this instance's Exim), waits for it to exit (SIGKILL after
--timeout), then waits for / terminates any delivery process still running
with this instance's exim.conf. Stopping an instance that is not running is
not an error.

--helo-accept-junk sets `helo_accept_junk_hosts = *`: Exim then takes any
HELO/EHLO argument (spaces, brackets, `: 535 ...`) and writes it into its log
lines as `(HELO)`, the case where a client writes text that looks like Exim's
own fields in front of the real peer address.

USER and PASSWORD may contain only letters, digits and . _ + - @ (they are
pasted into Exim string expansions). Defaults: alice / secret.
"""

import argparse
import json
import os
import pwd
import grp
import re
import signal
import socket
import stat
import subprocess
import sys
import time

from ctl_common import (
    HOST, alive, cmdline, free_port, proc_state, tail, wait_gone, write_atomic,
)

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "exim", "exim.conf.in")
EXIM = os.environ.get("EXIM_BIN", "/usr/sbin/exim4")
SAFE = re.compile(r"^[A-Za-z0-9._+@-]+$")


def note(msg):
    print(f"exim_ctl: {msg}", file=sys.stderr, flush=True)


def die(msg, code=1):
    note(f"error: {msg}")
    sys.exit(code)


def read_pid(d):
    try:
        with open(os.path.join(d, "exim.pid")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def is_our_exim(pid, conf):
    args = cmdline(pid)
    return any(a == conf for a in args)


def instance_pids(conf):
    """All live processes started with `-C conf` (the daemon, its SMTP
    children and re-executed delivery processes), found by the exact path."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            pid = int(name)
            if pid != os.getpid() and alive(pid) and is_our_exim(pid, conf):
                out.append(pid)
    return out


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def banner_ok(port, timeout=1.0):
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.settimeout(timeout)
            data = b""
            while b"\n" not in data:
                chunk = s.recv(512)
                if not chunk:
                    break
                data += chunk
            try:
                s.sendall(b"QUIT\r\n")
            except OSError:
                pass
            return data.startswith(b"220 ") and b"authwatch-test" in data
    except OSError:
        return False


def exim_ids():
    try:
        pw = pwd.getpwnam("Debian-exim")
    except KeyError:
        die("no Debian-exim user: run .ci/install-test-deps")
    gr = grp.getgrgid(pw.pw_gid)
    return pw.pw_name, gr.gr_name, pw.pw_uid, pw.pw_gid


def ensure_traversable(d, uid, gid):
    """Give o+x to any ancestor of d that uid/gid could not search."""
    path = os.path.dirname(d)
    ancestors = []
    while True:
        ancestors.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for a in reversed(ancestors):
        st = os.stat(a)
        if st.st_uid == uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            note(f"adding o+x to {a} so the Exim user can reach {d}")
            os.chmod(a, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def chown_tree(d, uid, gid, skip):
    for root, dirs, files in os.walk(d):
        os.chown(root, uid, gid)
        for f in files:
            p = os.path.join(root, f)
            if p not in skip:
                os.lchown(p, uid, gid)


def cmd_start(a):
    d = os.path.abspath(a.dir)
    conf = os.path.join(d, "exim.conf")
    for v, what in ((a.user, "--user"), (a.password, "--password")):
        if not SAFE.match(v):
            die(f"{what} may contain only letters, digits and . _ + - @", 64)
    mailboxes = [m.strip().lower() for m in a.mailboxes.split(",") if m.strip()]
    if not mailboxes or not all(re.match(r"^[a-z0-9][a-z0-9._+-]*$", m) for m in mailboxes) \
            or "other" in mailboxes:
        die("--mailboxes takes a comma list of plain local parts (not 'other')", 64)
    if not os.access(EXIM, os.X_OK):
        die(f"{EXIM} not found: run .ci/install-test-deps")
    if os.geteuid() != 0:
        die("start must run as root (exim4 allows -oP only to root)")

    pid = read_pid(d)
    if pid and alive(pid) and is_our_exim(pid, conf):
        die(f"an Exim for {d} is already running (pid {pid}); stop it first")

    user, group, uid, gid = exim_ids()
    for sub in ("", "log", "spool", "Maildir", "Relayed"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chmod(os.path.join(d, sub), 0o755)
    for stale in ("exim.pid", "port", "info.json"):
        try:
            os.remove(os.path.join(d, stale))
        except FileNotFoundError:
            pass
    ensure_traversable(d, uid, gid)

    with open(TEMPLATE) as f:
        template = f.read()

    if a.port is not None and not port_free(a.port):
        die(f"port {a.port} on {HOST} is taken")

    tries = 1 if a.port is not None else 3
    for attempt in range(1, tries + 1):
        port = a.port if a.port is not None else free_port()
        text = (template.replace("@DIR@", d).replace("@PORT@", str(port))
                .replace("@USER@", a.user).replace("@PASSWORD@", a.password)
                .replace("@EXIM_USER@", user).replace("@EXIM_GROUP@", group)
                .replace("@LOG_SELECTOR@", a.log_selector)
                .replace("@HELO_JUNK@", "*" if a.helo_accept_junk else "")
                .replace("@MAILBOXES@", " : ".join(mailboxes)))
        leftover = [m for line in text.splitlines() if not line.lstrip().startswith("#")
                    for m in re.findall(r"@[A-Z_]+@", line)]
        if leftover:
            die(f"unsubstituted placeholders in template: {sorted(set(leftover))}")
        write_atomic(conf, text)
        chown_tree(d, uid, gid, skip={conf})
        os.chown(conf, 0, 0)

        chk = subprocess.run([EXIM, "-C", conf, "-bV"], capture_output=True, text=True)
        if chk.returncode != 0:
            die(f"config check failed:\n{chk.stdout}{chk.stderr}")

        errpath = os.path.join(d, "log", "daemon.stderr")
        with open(errpath, "ab") as err:
            r = subprocess.run(
                [EXIM, "-C", conf, "-bd", "-oX", str(port), "-oP",
                 os.path.join(d, "exim.pid")],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                timeout=30)
        if r.returncode != 0:
            die(f"exim -bd exited {r.returncode}:\n{tail(errpath)}"
                f"{tail(os.path.join(d, 'log', 'paniclog'))}")

        deadline = time.time() + a.timeout
        ready = False
        while time.time() < deadline:
            pid = read_pid(d)
            if pid and not alive(pid):
                break
            if pid and banner_ok(port):
                ready = True
                break
            time.sleep(0.05)
        if ready:
            break
        pid = read_pid(d)
        if pid and alive(pid) and is_our_exim(pid, conf):
            os.kill(pid, signal.SIGTERM)
        why = tail(os.path.join(d, "log", "paniclog")) + tail(errpath)
        if attempt < tries and "Address already in use" in why:
            note(f"port {port} was taken meanwhile; retrying with another")
            continue
        die(f"Exim did not come up on {HOST}:{port} within {a.timeout}s:\n{why}")

    info = {
        "port": port, "pid": read_pid(d), "host": HOST,
        "user": a.user, "password": a.password, "conf": conf,
        "mainlog": os.path.join(d, "log", "mainlog"),
        "maildir": os.path.join(d, "Maildir"),
        "relayed": os.path.join(d, "Relayed"),
        "exim": EXIM,
    }
    write_atomic(os.path.join(d, "info.json"), json.dumps(info, indent=1) + "\n")
    write_atomic(os.path.join(d, "port"), f"{port}\n")
    print(port, flush=True)
    return 0


def cmd_stop(a):
    d = os.path.abspath(a.dir)
    conf = os.path.join(d, "exim.conf")
    pid = read_pid(d)
    if pid and alive(pid):
        if not is_our_exim(pid, conf):
            note(f"pid {pid} in {d}/exim.pid is not this instance's Exim; not killing it")
        else:
            os.kill(pid, signal.SIGTERM)
            if wait_gone([pid], a.timeout):
                note(f"pid {pid} ignored SIGTERM; sending SIGKILL")
                os.kill(pid, signal.SIGKILL)
                wait_gone([pid], 5)
    # SMTP children and delivery processes of this instance, if any.
    rest = instance_pids(conf)
    if rest:
        rest = wait_gone(rest, min(a.timeout, 5))
        for p in rest:
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in wait_gone(rest, 3):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for f in ("exim.pid", "port"):
        try:
            os.remove(os.path.join(d, f))
        except FileNotFoundError:
            pass
    return 0


def cmd_status(a):
    d = os.path.abspath(a.dir)
    pid = read_pid(d)
    if pid and alive(pid) and is_our_exim(pid, os.path.join(d, "exim.conf")):
        print(f"running pid {pid}")
        return 0
    print("not running")
    return 3


def main():
    p = argparse.ArgumentParser(description="start/stop a private Exim on loopback")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start")
    s.add_argument("dir")
    s.add_argument("--user", default="alice")
    s.add_argument("--password", default="secret")
    s.add_argument("--port", type=int)
    s.add_argument("--mailboxes", default="admin,postmaster,root,alice,security",
                   help="local parts @mx.test with their own DIR/Maildir/<name>/")
    s.add_argument("--log-selector", default="",
                   help="e.g. '+all' (default: Exim's default log lines)")
    s.add_argument("--helo-accept-junk", action="store_true",
                   help="helo_accept_junk_hosts = * (any HELO text is accepted and logged)")
    s.add_argument("--timeout", type=float, default=15)
    t = sub.add_parser("stop")
    t.add_argument("dir")
    t.add_argument("--timeout", type=float, default=10)
    u = sub.add_parser("status")
    u.add_argument("dir")
    a = p.parse_args()
    return {"start": cmd_start, "stop": cmd_stop, "status": cmd_status}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
