#!/usr/bin/env python3
"""dovecot_ctl.py - a private Dovecot on loopback for tests, and clients that
make it log failed and successful logins.

Usage:
  dovecot_ctl.py start DIR [--user alice] [--password secret] [--verbose]
                           [--penalty] [--timeout 15]
  dovecot_ctl.py stop DIR [--timeout 10]
  dovecot_ctl.py status DIR            (exit 0 if running, 3 if not)
  dovecot_ctl.py fail DIR --proto imap|pop3 --user U [--user U2 ...]
                          [--password WRONG] [--mech plain|login]
  dovecot_ctl.py login DIR --proto imap|pop3 [--user U] [--password P]

start: makes DIR (absolute path taken), writes DIR/dovecot.conf from
dovecot/dovecot.conf.in and DIR/users (passwd-file, one user), starts
  /usr/sbin/dovecot -c DIR/dovecot.conf
with an IMAP and a POP3 listener on free ports of 127.0.0.1 (picked by binding
port 0 and closing; retried up to 3 times if taken meanwhile), and returns once
both answer their greeting. Prints one line of JSON on stdout and writes it to
DIR/info.json:
  {"imap_port", "pop3_port", "pid", "log", "auth_socket", "user",
   "password", "conf", "verbose"}
  log          DIR/log/dovecot.log (everything, info lines included)
  auth_socket  DIR/run/auth-client-sasl: Dovecot SASL for Postfix (0666)
--verbose sets auth_verbose = yes (one "auth: Info: passwd-file(user,ip,
<session>): Password mismatch" line per failed attempt). Dovecot's
authentication penalty (2 s doubling up to 15 s per failure from one IP) is
switched off by removing DIR/run/anvil-auth-penalty after start (the auth
process then skips penalties silently); --penalty keeps it.
Must run as root (Dovecot's master drops privileges per service). Any ancestor
of DIR that the dovecot/dovenull users cannot traverse gets o+x (noted on
stderr).

stop: SIGTERM to the master PID in DIR/run/master.pid (after checking that it
is this instance's Dovecot), waits for it and its children to exit (SIGKILL
after --timeout). Stopping an instance that is not running is not an error.

fail: one connection; for each --user (repeat it for several attempts),
one failed attempt with the wrong password (IMAP: AUTHENTICATE PLAIN by
default or LOGIN with --mech login; POP3: AUTH PLAIN or USER/PASS), then a
clean logout. Dovecot logs one summary line for the connection at logout:
  imap-login: Info: Disconnected: Aborted login by logging out (auth failed,
  N attempts in S secs): user=<last user>, method=PLAIN, rip=127.0.0.1, ...
Usernames are sent as given (any bytes but NUL; escapes like \\n are
interpreted), so hostile names reach Dovecot's log. Exits 0 when every attempt
was refused, 1 otherwise.

login: one successful login and logout ("Login: user=<alice>, ...").
"""

import argparse
import base64
import grp
import imaplib
import json
import os
import poplib
import pwd
import signal
import socket
import subprocess
import sys
import time

from ctl_common import (
    HOST, alive, cmdline, free_port, proc_state, tail, wait_gone, write_atomic,
)

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "dovecot", "dovecot.conf.in")
DOVECOT = os.environ.get("DOVECOT_BIN", "/usr/sbin/dovecot")


def note(msg):
    print(f"dovecot_ctl: {msg}", file=sys.stderr, flush=True)


def die(msg, code=1):
    note(f"error: {msg}")
    sys.exit(code)


def parent(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        return int(data[data.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def read_pid(d):
    try:
        with open(os.path.join(d, "run", "master.pid")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def is_our_dovecot(pid, conf):
    return conf in cmdline(pid)


def children(pid):
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and parent(int(name)) == pid and alive(int(name)):
            out.append(int(name))
    return out


def greeting_ok(port, timeout=1.0):
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            return s.recv(200).startswith((b"* OK", b"+OK"))
    except OSError:
        return False


def ensure_traversable(d, users):
    """Give o+x to each ancestor of d that one of `users` cannot enter."""
    uids = []
    for u in users:
        try:
            uids.append(pwd.getpwnam(u).pw_uid)
        except KeyError:
            pass
    p = os.path.dirname(d)
    while p and p != "/":
        st = os.stat(p)
        if not st.st_mode & 0o001 and any(st.st_uid != uid for uid in uids):
            note(f"adding o+x to {p} so that Dovecot's users can reach {d}")
            os.chmod(p, st.st_mode | 0o001)
        p = os.path.dirname(p)


def mail_ids():
    for u, g in (("nobody", "nogroup"), ("nobody", "nobody")):
        try:
            pwd.getpwnam(u)
            grp.getgrnam(g)
            return u, g
        except KeyError:
            continue
    die("no nobody/nogroup user and group")


def cmd_start(a):
    d = os.path.abspath(a.dir)
    conf = os.path.join(d, "dovecot.conf")
    if not os.access(DOVECOT, os.X_OK):
        die(f"{DOVECOT} not found: run .ci/install-test-deps (dovecot-imapd dovecot-pop3d)")
    if os.geteuid() != 0:
        die("start must run as root")
    for v, what in ((a.user, "--user"), (a.password, "--password")):
        if not v or any(c in v for c in ":\n\r\t") or not v.isprintable():
            die(f"{what} must be printable, without ':' or whitespace", 64)
    pid = read_pid(d)
    if pid and alive(pid) and is_our_dovecot(pid, conf):
        die(f"a Dovecot for {d} is already running (pid {pid}); stop it first")

    mail_user, mail_group = mail_ids()
    for sub in ("", "run", "state", "log", "home"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    os.chmod(d, 0o755)
    ent = pwd.getpwnam(mail_user)
    os.chown(os.path.join(d, "home"), ent.pw_uid, grp.getgrnam(mail_group).gr_gid)
    ensure_traversable(d, ["dovecot", "dovenull", mail_user])
    for stale in ("info.json",):
        try:
            os.remove(os.path.join(d, stale))
        except FileNotFoundError:
            pass
    write_atomic(os.path.join(d, "users"), f"{a.user}:{{PLAIN}}{a.password}::::::\n")
    with open(TEMPLATE) as f:
        template = f.read()

    log = os.path.join(d, "log", "dovecot.log")
    for attempt in range(1, 4):
        imap_port, pop3_port = free_port(), free_port()
        if imap_port == pop3_port:
            continue
        text = (template.replace("@DIR@", d).replace("@IMAP_PORT@", str(imap_port))
                .replace("@POP3_PORT@", str(pop3_port))
                .replace("@AUTH_VERBOSE@", "yes" if a.verbose else "no")
                .replace("@MAIL_USER@", mail_user).replace("@MAIL_GROUP@", mail_group))
        write_atomic(conf, text)
        chk = subprocess.run([DOVECOT, "-c", conf, "-n"], capture_output=True, text=True)
        if chk.returncode != 0:
            die(f"config check failed:\n{chk.stdout}{chk.stderr}")
        errpath = os.path.join(d, "log", "daemon.stderr")
        with open(errpath, "ab") as err:
            r = subprocess.run([DOVECOT, "-c", conf], stdin=subprocess.DEVNULL,
                               stdout=err, stderr=err,
                               env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, timeout=30)
        if r.returncode != 0:
            why = tail(errpath) + tail(log)
            if attempt < 3 and "in use" in why:
                note("a port was taken meanwhile; retrying with others")
                continue
            die(f"dovecot exited {r.returncode}:\n{why}")
        if not a.penalty:
            # The auth process connects to this socket when it starts, which
            # is when the first login process starts (the greeting check
            # below): remove it before that. Without it, the auth process
            # skips the penalty silently.
            try:
                os.remove(os.path.join(d, "run", "anvil-auth-penalty"))
            except FileNotFoundError:
                pass
        deadline = time.time() + a.timeout
        ready = False
        while time.time() < deadline:
            pid = read_pid(d)
            if pid and not alive(pid):
                break
            if pid and greeting_ok(imap_port) and greeting_ok(pop3_port):
                ready = True
                break
            time.sleep(0.05)
        if ready:
            break
        pid = read_pid(d)
        why = tail(log) + tail(errpath)
        if pid and alive(pid) and is_our_dovecot(pid, conf):
            os.kill(pid, signal.SIGTERM)
            wait_gone([pid], 10)
        if attempt < 3 and "in use" in why:
            note("a port was taken meanwhile; retrying with others")
            continue
        die(f"Dovecot did not answer on {HOST}:{imap_port}/{pop3_port} within {a.timeout}s:\n{why}")
    else:
        die("could not find free ports")

    info = {
        "imap_port": imap_port, "pop3_port": pop3_port, "pid": read_pid(d),
        "host": HOST, "log": log, "auth_socket": os.path.join(d, "run", "auth-client-sasl"),
        "user": a.user, "password": a.password, "conf": conf, "verbose": a.verbose,
    }
    line = json.dumps(info)
    write_atomic(os.path.join(d, "info.json"), line + "\n")
    print(line, flush=True)
    return 0


def cmd_stop(a):
    d = os.path.abspath(a.dir)
    conf = os.path.join(d, "dovecot.conf")
    pid = read_pid(d)
    if pid and alive(pid):
        if not is_our_dovecot(pid, conf):
            note(f"pid {pid} in {d}/run/master.pid is not this instance's Dovecot; not killing it")
            return 0
        kids = children(pid)
        os.kill(pid, signal.SIGTERM)
        if wait_gone([pid], a.timeout):
            note(f"pid {pid} ignored SIGTERM; sending SIGKILL")
            os.kill(pid, signal.SIGKILL)
            wait_gone([pid], 5)
        # Its children exit on their own once the master is gone.
        for p in wait_gone(kids, 5):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return 0


def cmd_status(a):
    d = os.path.abspath(a.dir)
    pid = read_pid(d)
    if pid and alive(pid) and is_our_dovecot(pid, os.path.join(d, "dovecot.conf")):
        print(f"running pid {pid}")
        return 0
    print("not running")
    return 3


def load_info(d):
    try:
        with open(os.path.join(os.path.abspath(d), "info.json")) as f:
            return json.load(f)
    except OSError as e:
        die(f"no info.json in {d} (not started?): {e}")


def raw(s):
    """Command-line text with backslash escapes (\\n, \\xff) as bytes."""
    return s.encode("utf-8").decode("unicode_escape").encode("latin-1")


def imap_attempt(c, user, password, mech):
    if mech == "plain":
        c.authenticate("PLAIN", lambda _: b"\0" + user + b"\0" + password)
    else:
        def login(challenge):
            return password if b"pass" in challenge.lower() else user
        c.authenticate("LOGIN", login)


def pop3_attempt(c, user, password, mech):
    if mech == "plain":
        resp = c._shortcmd("AUTH PLAIN " + base64.b64encode(
            b"\0" + user + b"\0" + password).decode())
        return resp
    c.user(user.decode("latin-1"))
    return c.pass_(password.decode("latin-1"))


def cmd_fail(a):
    info = load_info(a.dir)
    password = raw(a.password)
    refused = 0
    users = [raw(u) for u in a.user]
    if a.proto == "imap":
        c = imaplib.IMAP4(HOST, info["imap_port"], timeout=a.timeout)
        for u in users:
            try:
                imap_attempt(c, u, password, a.mech)
                note(f"login as {u!r} succeeded")
            except imaplib.IMAP4.error:
                refused += 1
        c.logout()
    else:
        c = poplib.POP3(HOST, info["pop3_port"], timeout=a.timeout)
        try:
            for u in users:
                try:
                    pop3_attempt(c, u, password, a.mech)
                    note(f"login as {u!r} succeeded")
                except poplib.error_proto:
                    refused += 1
            c.quit()
        finally:
            c.close()
    print(f"{len(users)} attempts, {refused} refused", flush=True)
    return 0 if refused == len(users) else 1


def cmd_login(a):
    info = load_info(a.dir)
    user = a.user or info["user"]
    password = a.password or info["password"]
    if a.proto == "imap":
        c = imaplib.IMAP4(HOST, info["imap_port"], timeout=a.timeout)
        c.login(user, password)
        c.select("INBOX")
        c.logout()
    else:
        c = poplib.POP3(HOST, info["pop3_port"], timeout=a.timeout)
        c.user(user)
        c.pass_(password)
        c.quit()
    print("logged in", flush=True)
    return 0


def main():
    p = argparse.ArgumentParser(description="a private Dovecot on loopback for tests")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start")
    s.add_argument("dir")
    s.add_argument("--user", default="alice")
    s.add_argument("--password", default="secret")
    s.add_argument("--verbose", action="store_true", help="auth_verbose = yes")
    s.add_argument("--penalty", action="store_true", help="keep the auth penalty")
    s.add_argument("--timeout", type=float, default=15)
    t = sub.add_parser("stop")
    t.add_argument("dir")
    t.add_argument("--timeout", type=float, default=10)
    u = sub.add_parser("status")
    u.add_argument("dir")
    f = sub.add_parser("fail")
    f.add_argument("dir")
    f.add_argument("--proto", choices=["imap", "pop3"], default="imap")
    f.add_argument("--user", action="append", required=True)
    f.add_argument("--password", default="wrong-password")
    f.add_argument("--mech", choices=["plain", "login"], default="plain")
    f.add_argument("--timeout", type=float, default=30)
    g = sub.add_parser("login")
    g.add_argument("dir")
    g.add_argument("--proto", choices=["imap", "pop3"], default="imap")
    g.add_argument("--user")
    g.add_argument("--password")
    g.add_argument("--timeout", type=float, default=30)
    a = p.parse_args()
    return {"start": cmd_start, "stop": cmd_stop, "status": cmd_status,
            "fail": cmd_fail, "login": cmd_login}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
