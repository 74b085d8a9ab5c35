#!/usr/bin/env python3
"""postfix_ctl.py - a private Postfix smtpd on loopback for tests, with
Dovecot SASL, and a client that makes it log failed and successful AUTH.

Usage:
  postfix_ctl.py start DIR --sasl-path SOCKET [--timeout 20]
  postfix_ctl.py stop DIR [--timeout 10]
  postfix_ctl.py status DIR            (exit 0 if running, 3 if not)
  postfix_ctl.py auth DIR --user U [--user U2 ...] [--password P]
                          [--mech PLAIN|LOGIN] [--lost] [--send]
  postfix_ctl.py fake-auth SOCKET      (internal: see below)

Debian's postfix package conflicts with exim4, so it is not installed:
start unpacks it once with `apt-get download postfix` + `dpkg-deb -x` into
$AUTHWATCH_POSTFIX_ROOT (default /var/cache/authwatch-tests/postfix-<version>;
an existing unpacked tree there is reused) and runs it from there (its libraries via LD_LIBRARY_PATH). It needs the
libraries Postfix links against (libicu72 libdb5.3 libnsl2 libsasl2-2
libssl3: .ci/install-test-deps installs them).

start: makes DIR (absolute path taken), writes DIR/etc/main.cf and
DIR/etc/master.cf from postfix/*.in, makes the queue under DIR/queue, starts
a fake Dovecot auth server on DIR/fake-auth (see --lost) and then
  ROOT/usr/lib/postfix/sbin/master -c DIR/etc -w
and returns once both smtpd ports answer "220 mx.test ESMTP authwatch-test".
SOCKET is Dovecot's auth client socket (dovecot_ctl.py's "auth_socket").
Ports are picked by binding 127.0.0.1:0 (retried up to 3 times if taken
meanwhile). Prints one line of JSON on stdout and writes it to DIR/info.json:
  {"port", "lost_port", "pid", "log", "root", "conf_dir"}
  log   DIR/log/postfix.log, written by postlogd (maillog_file), syslog format:
        "Nov 23 17:11:27 mx postfix/smtpd[18772]: warning: localhost[127.0.0.1]:
         SASL PLAIN authentication failed: (reason unavailable), sasl_username=alice"
Must run as root (master).

stop: SIGTERM to the master (PID in DIR/queue/pid/master.pid, after checking
it is this instance's), waits, then SIGKILLs any process left whose
environment names this instance (MAIL_CONFIG=DIR/etc), and stops the fake
auth server. Stopping an instance that is not running is not an error.

auth: one SMTP connection (EHLO attacker.example) and one AUTH command per
--user with the wrong password (default) or --password; exactly one AUTH per
attempt (smtplib's login() would try a second mechanism). With --lost it uses
the second smtpd, whose auth server hangs up: each attempt gets a 454 and
Postfix logs "... authentication failed: Connection lost to authentication
server". With --send (one --user, the right --password): after a successful
AUTH, sends one message (logged as "<queue id>: client=localhost[127.0.0.1],
sasl_method=PLAIN, sasl_username=<user>"). Prints "N attempts: CODES" and
exits 0 when every attempt got the expected reply (535, 454 with --lost, 235
with --send), 1 otherwise.

fake-auth SOCKET: serves the Dovecot auth protocol handshake (VERSION, MECH
PLAIN/LOGIN, SPID, CUID, COOKIE, DONE) on the unix socket, and closes the
connection when a client sends AUTH. Runs until SIGTERM.
"""

import argparse
import base64
import grp
import json
import os
import pwd
import signal
import smtplib
import socket
import socketserver
import subprocess
import sys
import tempfile
import time

from ctl_common import (
    HOST, alive, cmdline, environ, free_port, proc_state, tail, wait_gone, write_atomic,
)

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "postfix")
BANNER = b"220 mx.test ESMTP authwatch-test"
QUEUE_DIRS = ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold",
              "incoming", "maildrop", "pid", "private", "public", "saved", "trace")


def note(msg):
    print(f"postfix_ctl: {msg}", file=sys.stderr, flush=True)


def die(msg, code=1):
    note(f"error: {msg}")
    sys.exit(code)


def instance_pids(conf_dir):
    """Live processes of this instance: Postfix exports MAIL_CONFIG to every
    process it starts; the master got `-c conf_dir`."""
    want = f"MAIL_CONFIG={conf_dir}"
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            pid = int(name)
            if alive(pid) and (want in environ(pid) or
                               (conf_dir in cmdline(pid) and "-c" in cmdline(pid))):
                out.append(pid)
    return out


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def banner_ok(port, timeout=1.0):
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            ok = s.recv(200).startswith(BANNER)
            s.sendall(b"QUIT\r\n")
            return ok
    except OSError:
        return False


# --- the Postfix tree --------------------------------------------------------

def candidate_version():
    r = subprocess.run(["apt-cache", "policy", "postfix"], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        line = line.strip()
        if line.startswith("Candidate:"):
            v = line.split(":", 1)[1].strip()
            if v and v != "(none)":
                return v
    return None


def postfix_root():
    """The unpacked Postfix tree, unpacking it first if needed."""
    env = os.environ.get("AUTHWATCH_POSTFIX_ROOT")
    cache = "/var/cache/authwatch-tests"
    if env:
        root = env
    else:
        existing = sorted(p for p in (os.listdir(cache) if os.path.isdir(cache) else [])
                          if p.startswith("postfix-") and os.access(
                              os.path.join(cache, p, "usr/lib/postfix/sbin/master"), os.X_OK))
        if existing:
            # Any unpacked version will do (apt-cache takes seconds).
            return os.path.join(cache, existing[-1])
        version = candidate_version()
        if version is None:
            note("apt has no candidate for postfix; running apt-get update")
            subprocess.run(["apt-get", "update", "-qq"], check=False)
            version = candidate_version()
        if version is None:
            die("apt knows no postfix package (apt-get update failed?)")
        else:
            root = os.path.join(cache, "postfix-" + version.replace(":", "_"))
    master = os.path.join(root, "usr/lib/postfix/sbin/master")
    if os.access(master, os.X_OK):
        return root
    if env:
        die(f"AUTHWATCH_POSTFIX_ROOT={env} holds no usr/lib/postfix/sbin/master")
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="postfix-deb-", dir=cache) as tmp:
        os.chmod(tmp, 0o755)  # apt's _apt sandbox user writes the download here
        for attempt in (1, 2):
            r = subprocess.run(["apt-get", "download", "-q", "postfix"], cwd=tmp,
                               capture_output=True, text=True)
            if r.returncode == 0:
                break
            if attempt == 1:
                note("apt-get download postfix failed; running apt-get update and retrying")
                subprocess.run(["apt-get", "update", "-qq"], check=False)
        else:
            die(f"apt-get download postfix failed:\n{r.stdout}{r.stderr}")
        debs = [f for f in os.listdir(tmp) if f.endswith(".deb")]
        if len(debs) != 1:
            die(f"expected one .deb after apt-get download, found {debs}")
        unpack = os.path.join(tmp, "root")
        r = subprocess.run(["dpkg-deb", "-x", os.path.join(tmp, debs[0]), unpack],
                           capture_output=True, text=True)
        if r.returncode != 0:
            die(f"dpkg-deb -x failed:\n{r.stderr}")
        try:
            os.rename(unpack, root)
        except OSError:
            if not os.access(master, os.X_OK):  # another run may have won the race
                raise
    note(f"unpacked postfix into {root}")
    return root


def postfix_ids():
    def user(name):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            return None

    def group(name):
        try:
            return grp.getgrnam(name)
        except KeyError:
            return None

    owner = next((u for u in (user("postfix"), user("dovenull")) if u), None)
    if owner is None:
        die("no unprivileged user for mail_owner (postfix or dovenull: install dovecot-core)")
    privs = user("nobody")
    if privs is None or privs.pw_uid == owner.pw_uid:
        die("no 'nobody' user for default_privs")
    sgid = next((g for g in (group("postdrop"), group("mail"))
                 if g and g.gr_gid not in (owner.pw_gid, privs.pw_gid)), None)
    if sgid is None:
        die("no group for setgid_group (postdrop or mail)")
    return owner, privs, sgid


# --- fake Dovecot auth server --------------------------------------------------

class FakeAuth(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n"
                         b"SPID\t1\nCUID\t1\nCOOKIE\t" + b"0" * 32 + b"\nDONE\n")
        for line in self.rfile:
            if line.startswith(b"AUTH\t"):
                return  # hang up: "Connection lost to authentication server"


class FakeAuthServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def cmd_fake_auth(a):
    try:
        os.remove(a.socket)
    except FileNotFoundError:
        pass
    srv = FakeAuthServer(a.socket, FakeAuth)
    os.chmod(a.socket, 0o666)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        srv.serve_forever()
    finally:
        try:
            os.remove(a.socket)
        except OSError:
            pass
    return 0


# --- start / stop ------------------------------------------------------------

def cmd_start(a):
    d = os.path.abspath(a.dir)
    conf_dir = os.path.join(d, "etc")
    if os.geteuid() != 0:
        die("start must run as root")
    if not os.path.exists(a.sasl_path):
        die(f"--sasl-path {a.sasl_path} does not exist (start Dovecot first)")
    pid = read_pid(os.path.join(d, "queue", "pid", "master.pid"))
    if pid and alive(pid) and conf_dir in cmdline(pid):
        die(f"a Postfix for {d} is already running (pid {pid}); stop it first")
    root = postfix_root()
    owner, privs, sgid = postfix_ids()

    for sub in ("etc", "queue", "data", "log"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    os.chmod(d, 0o755)
    queue = os.path.join(d, "queue")
    for sub in QUEUE_DIRS:
        os.makedirs(os.path.join(queue, sub), exist_ok=True)
    # Ownership as Postfix's own postfix-files sets it (what matters here).
    for sub in QUEUE_DIRS:
        p = os.path.join(queue, sub)
        if sub == "pid":
            os.chown(p, 0, 0)
            os.chmod(p, 0o755)
        elif sub in ("public", "maildrop"):
            os.chown(p, owner.pw_uid, sgid.gr_gid)
            os.chmod(p, 0o710 if sub == "public" else 0o730)
        else:
            os.chown(p, owner.pw_uid, 0)
            os.chmod(p, 0o700)
    os.chown(queue, 0, 0)
    os.chmod(queue, 0o755)
    os.chown(os.path.join(d, "data"), owner.pw_uid, 0)
    # A unpacked tree has no dynamicmaps.cf here; no map type needs one.
    for f in ("dynamicmaps.cf",):
        p = os.path.join(conf_dir, f)
        if not os.path.exists(p):
            write_atomic(p, "")
    for stale in ("info.json",):
        try:
            os.remove(os.path.join(d, stale))
        except FileNotFoundError:
            pass

    fake = os.path.join(d, "fake-auth")
    fake_pid_file = os.path.join(d, "fake-auth.pid")
    old = read_pid(fake_pid_file)
    if old and alive(old) and "fake-auth" in cmdline(old):
        os.kill(old, signal.SIGTERM)
        wait_gone([old], 5)
    errpath = os.path.join(d, "log", "daemon.stderr")
    with open(errpath, "ab") as err:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "fake-auth", fake],
                                stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                start_new_session=True)
    write_atomic(fake_pid_file, f"{proc.pid}\n")
    deadline = time.time() + a.timeout
    while not os.path.exists(fake) and time.time() < deadline:
        if proc.poll() is not None:
            die(f"fake auth server exited {proc.returncode}:\n{tail(errpath)}")
        time.sleep(0.02)

    with open(os.path.join(TEMPLATES, "main.cf.in")) as f:
        main_t = f.read()
    with open(os.path.join(TEMPLATES, "master.cf.in")) as f:
        master_t = f.read()
    log = os.path.join(d, "log", "postfix.log")
    master = os.path.join(root, "usr/lib/postfix/sbin/master")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           "LD_LIBRARY_PATH": os.path.join(root, "usr/lib/postfix")}
    for attempt in range(1, 4):
        port, lost_port = free_port(), free_port()
        if port == lost_port:
            continue
        subst = {"@DIR@": d, "@ROOT@": root, "@SASL_PATH@": a.sasl_path,
                 "@MAIL_OWNER@": owner.pw_name, "@DEFAULT_PRIVS@": privs.pw_name,
                 "@SETGID_GROUP@": sgid.gr_name, "@PORT@": str(port),
                 "@LOST_PORT@": str(lost_port), "@FAKE_AUTH@": fake}
        texts = []
        for t in (main_t, master_t):
            for k, v in subst.items():
                t = t.replace(k, v)
            texts.append(t)
        write_atomic(os.path.join(conf_dir, "main.cf"), texts[0])
        write_atomic(os.path.join(conf_dir, "master.cf"), texts[1])
        with open(errpath, "ab") as err:
            r = subprocess.run([master, "-c", conf_dir, "-w"], stdin=subprocess.DEVNULL,
                               stdout=err, stderr=err, env=env, timeout=30)
        if r.returncode != 0:
            die(f"postfix master -w exited {r.returncode}:\n{tail(log)}{tail(errpath)}")
        deadline = time.time() + a.timeout
        ready = False
        pid = None
        while time.time() < deadline:
            pid = read_pid(os.path.join(queue, "pid", "master.pid"))
            if pid and not alive(pid):
                break
            if pid and banner_ok(port) and banner_ok(lost_port):
                ready = True
                break
            time.sleep(0.05)
        if ready:
            break
        why = tail(log) + tail(errpath)
        stop_instance(d, 10)
        if attempt < 3 and "in use" in why:
            note("a port was taken meanwhile; retrying with others")
            continue
        die(f"Postfix did not answer on {HOST}:{port}/{lost_port} within {a.timeout}s:\n{why}")
    else:
        die("could not find free ports")

    info = {"port": port, "lost_port": lost_port, "pid": pid, "host": HOST, "log": log,
            "root": root, "conf_dir": conf_dir, "sasl_path": a.sasl_path}
    line = json.dumps(info)
    write_atomic(os.path.join(d, "info.json"), line + "\n")
    print(line, flush=True)
    return 0


def stop_instance(d, timeout):
    conf_dir = os.path.join(d, "etc")
    pid = read_pid(os.path.join(d, "queue", "pid", "master.pid"))
    if pid and alive(pid):
        if conf_dir not in cmdline(pid):
            note(f"pid {pid} in the pid file is not this instance's master; not killing it")
        else:
            os.kill(pid, signal.SIGTERM)
            if wait_gone([pid], timeout):
                note(f"pid {pid} ignored SIGTERM; sending SIGKILL")
                os.kill(pid, signal.SIGKILL)
                wait_gone([pid], 5)
    rest = wait_gone(instance_pids(conf_dir), 3)
    for p in rest:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_gone(rest, 3)
    fake = read_pid(os.path.join(d, "fake-auth.pid"))
    if fake and alive(fake) and "fake-auth" in cmdline(fake):
        os.kill(fake, signal.SIGTERM)
        if wait_gone([fake], 5):
            os.kill(fake, signal.SIGKILL)


def cmd_stop(a):
    stop_instance(os.path.abspath(a.dir), a.timeout)
    return 0


def cmd_status(a):
    d = os.path.abspath(a.dir)
    pid = read_pid(os.path.join(d, "queue", "pid", "master.pid"))
    if pid and alive(pid) and os.path.join(d, "etc") in cmdline(pid):
        print(f"running pid {pid}")
        return 0
    print("not running")
    return 3


# --- clients -----------------------------------------------------------------

def cmd_auth(a):
    try:
        with open(os.path.join(os.path.abspath(a.dir), "info.json")) as f:
            info = json.load(f)
    except OSError as e:
        die(f"no info.json in {a.dir} (not started?): {e}")
    port = info["lost_port"] if a.lost else info["port"]
    want = 454 if a.lost else (235 if a.send else 535)
    if a.send and len(a.user) != 1:
        die("--send takes exactly one --user", 64)
    codes = []
    smtp = smtplib.SMTP(HOST, port, local_hostname="attacker.example", timeout=a.timeout)
    try:
        smtp.ehlo("attacker.example")
        for user in a.user:
            user_b = user.encode("utf-8").decode("unicode_escape").encode("latin-1")
            pw_b = a.password.encode("utf-8")
            if a.mech == "PLAIN":
                resp = base64.b64encode(b"\0" + user_b + b"\0" + pw_b).decode()
                code, _ = smtp.docmd("AUTH", "PLAIN " + resp)
            else:
                code, _ = smtp.docmd("AUTH", "LOGIN")
                if code == 334:
                    code, _ = smtp.docmd(base64.b64encode(user_b).decode())
                if code == 334:
                    code, _ = smtp.docmd(base64.b64encode(pw_b).decode())
            codes.append(code)
        if a.send and codes == [235]:
            smtp.sendmail(f"{a.user[0]}@mx.test", ["someone@example.org"],
                          "Subject: authwatch test\r\n\r\nhello\r\n")
        smtp.quit()
    finally:
        smtp.close()
    print(f"{len(codes)} attempts: {' '.join(map(str, codes))}", flush=True)
    return 0 if all(c == want for c in codes) else 1


def main():
    p = argparse.ArgumentParser(description="a private Postfix smtpd on loopback for tests")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start")
    s.add_argument("dir")
    s.add_argument("--sasl-path", required=True)
    s.add_argument("--timeout", type=float, default=20)
    t = sub.add_parser("stop")
    t.add_argument("dir")
    t.add_argument("--timeout", type=float, default=10)
    u = sub.add_parser("status")
    u.add_argument("dir")
    f = sub.add_parser("auth")
    f.add_argument("dir")
    f.add_argument("--user", action="append", required=True)
    f.add_argument("--password", default="wrong-password")
    f.add_argument("--mech", choices=["PLAIN", "LOGIN"], default="PLAIN")
    f.add_argument("--lost", action="store_true")
    f.add_argument("--send", action="store_true")
    f.add_argument("--timeout", type=float, default=30)
    g = sub.add_parser("fake-auth")
    g.add_argument("socket")
    a = p.parse_args()
    return {"start": cmd_start, "stop": cmd_stop, "status": cmd_status,
            "auth": cmd_auth, "fake-auth": cmd_fake_auth}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
