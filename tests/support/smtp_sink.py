#!/usr/bin/env python3
"""smtp_sink.py - a real SMTP server (aiosmtpd) that stores every message it accepts.

Usage:
  smtp_sink.py --port-file F --maildir DIR
               [--tls none|starttls|tls] [--cert C --key K]
               [--auth-user U --auth-password P]
               [--host 127.0.0.1] [--reject CODE [--reject-count N]]
               [--no-8bitmime]

Startup: binds --host (default 127.0.0.1) on port 0 (the OS picks a free port).
Once the listening socket accepts connections, the chosen port is written to
--port-file as ASCII digits plus "\\n", atomically (temp file + rename): a
reader that sees the file can connect at once. Log lines go to stderr.

Storage (one pair per accepted message, numbered 1, 2, 3, ... in arrival order;
numbers already used in DIR are skipped, so DIR can be reused):
  DIR/<n>.json  envelope, written FIRST:
                {"n": 1, "mail_from": "a@x", "rcpt_tos": ["b@y", ...],
                 "mail_options": [...], "rcpt_options": [...],
                 "helo": "client.name", "peer": ["127.0.0.1", 40000],
                 "auth_user": "alice" | null, "tls": "none"|"starttls"|"tls",
                 "received_at": 1700000000.123}
  DIR/<n>.eml   the message bytes exactly as received in DATA (dot-unstuffed,
                CRLF line endings kept, nothing added or changed), written LAST.
Both are written to a hidden temp file (".<n>.eml.tmp") and renamed into place,
so a reader never sees a partial file; when <n>.eml exists, <n>.json does too.
Wait for / count the "*.eml" files.

TLS modes:
  none      plain SMTP (AUTH, if configured, is offered without TLS)
  starttls  STARTTLS is required before anything but EHLO/NOOP/QUIT (530 otherwise)
  tls       implicit TLS ("SMTPS"): TLS from the first byte
--cert/--key (PEM) are needed for starttls and tls; make them with make_cert.sh.

AUTH: with --auth-user/--auth-password, AUTH PLAIN and AUTH LOGIN are offered
and required before MAIL (530 otherwise); wrong credentials get
"535 5.7.8 Authentication credentials invalid".

Failure injection (for retry tests): --reject CODE answers the end of DATA with
"CODE <x.y.z> smtp_sink: rejected for the test" (4xx transient, 5xx permanent)
for the first --reject-count messages (default: every message); rejected
messages are not stored. Later messages are accepted normally.

A relay without 8BITMIME (--no-8bitmime): EHLO does not offer 8BITMIME, MAIL
with BODY=8BITMIME is refused (555), and a message holding any byte >= 0x80 is
refused at the end of DATA with "554 5.6.1 smtp_sink: 8-bit data without
8BITMIME" (permanent, not stored), as a strict relay does.

SIGTERM or SIGINT: stop listening, close, exit 0.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import ssl
import sys
import time
import warnings

# aiosmtpd warns (via warnings and logging) when AUTH is required without TLS;
# that is exactly what this test server is meant to do.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword  # noqa: E402

logging.getLogger("mail.log").setLevel(logging.ERROR)


def log(msg):
    print(f"smtp_sink[{os.getpid()}]: {msg}", file=sys.stderr, flush=True)


def write_atomic(path, data):
    d, base = os.path.split(path)
    tmp = os.path.join(d, f".{base}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Sink:
    def __init__(self, maildir, mode, reject, reject_count):
        self.maildir = maildir
        self.mode = mode
        self.next_n = 1
        self.reject = reject
        self.reject_left = reject_count  # None = always

    async def handle_DATA(self, server, session, envelope):
        return await self.store(server, session, envelope)

    def _take_number(self):
        while True:
            n = self.next_n
            self.next_n += 1
            if not os.path.exists(os.path.join(self.maildir, f"{n}.eml")):
                return n

    async def store(self, server, session, envelope):
        if self.reject is not None and (self.reject_left is None or self.reject_left > 0):
            if self.reject_left is not None:
                self.reject_left -= 1
            code = int(self.reject)
            enh = "4.3.0" if code < 500 else "5.7.1"
            log(f"rejecting message from {envelope.mail_from} with {code}")
            return f"{code} {enh} smtp_sink: rejected for the test"

        if session.ssl is not None and self.mode == "starttls":
            tls = "starttls"
        elif self.mode == "tls":
            tls = "tls"
        else:
            tls = "none"
        auth_user = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            auth_user = session.auth_data.login.decode("utf-8", "replace")
        content = envelope.original_content
        if content is None:
            content = envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")

        n = self._take_number()
        meta = {
            "n": n,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "mail_options": list(envelope.mail_options),
            "rcpt_options": list(envelope.rcpt_options),
            "helo": session.host_name,
            "peer": list(session.peer) if session.peer else None,
            "auth_user": auth_user,
            "tls": tls,
            "received_at": time.time(),
        }
        write_atomic(os.path.join(self.maildir, f"{n}.json"),
                     (json.dumps(meta, indent=1) + "\n").encode())
        write_atomic(os.path.join(self.maildir, f"{n}.eml"), content)
        log(f"stored {n}.eml ({len(content)} bytes) from=<{envelope.mail_from}> "
            f"to={envelope.rcpt_tos} auth={auth_user} tls={tls}")
        return "250 2.0.0 OK stored as %d" % n


class SevenBitSink(Sink):
    """A relay without 8BITMIME: offers only 7-bit transport and refuses 8-bit data."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [r for r in responses if r[4:].upper() != "8BITMIME"]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if any(o.upper().startswith("BODY=8BITMIME") for o in mail_options):
            log(f"refusing MAIL FROM:<{address}> {mail_options}: 8BITMIME not offered")
            return "555 5.5.4 smtp_sink: BODY=8BITMIME not offered"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        if any(b >= 0x80 for b in content):
            log(f"refusing 8-bit message from {envelope.mail_from}")
            return "554 5.6.1 smtp_sink: 8-bit data without 8BITMIME"
        return await self.store(server, session, envelope)


def make_authenticator(user, password):
    def authenticator(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = (auth_data.login == user.encode() and auth_data.password == password.encode())
        log(f"AUTH {mechanism} user={auth_data.login.decode('utf-8', 'replace')!r} "
            f"{'ok' if ok else 'FAILED'}")
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)
    return authenticator


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port-file", required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--tls", choices=["none", "starttls", "tls"], default="none")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth-user")
    p.add_argument("--auth-password")
    p.add_argument("--reject", type=int, metavar="CODE")
    p.add_argument("--reject-count", type=int, metavar="N")
    p.add_argument("--no-8bitmime", action="store_true",
                   help="do not offer 8BITMIME; refuse 8-bit messages (554)")
    a = p.parse_args(argv)
    if a.tls != "none" and not (a.cert and a.key):
        p.error("--tls starttls/tls needs --cert and --key")
    if (a.auth_user is None) != (a.auth_password is None):
        p.error("--auth-user and --auth-password go together")
    if a.reject is not None and not (400 <= a.reject <= 599):
        p.error("--reject takes a 4xx or 5xx code")
    return a


async def amain(a):
    os.makedirs(a.maildir, exist_ok=True)
    loop = asyncio.get_running_loop()

    ctx = None
    if a.tls != "none":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)

    handler = (SevenBitSink if a.no_8bitmime else Sink)(a.maildir, a.tls, a.reject, a.reject_count)
    kwargs = dict(
        hostname="sink.test",          # no getfqdn(): no DNS lookups
        ident="smtp_sink (aiosmtpd)",
        decode_data=False,
        loop=loop,
    )
    if a.tls == "starttls":
        kwargs.update(tls_context=ctx, require_starttls=True)
    if a.auth_user is not None:
        kwargs.update(
            authenticator=make_authenticator(a.auth_user, a.auth_password),
            auth_required=True,
            # In "none" mode AUTH must work without TLS; in "tls" mode aiosmtpd
            # does not know the socket is already TLS, so it must not demand it.
            auth_require_tls=(a.tls == "starttls"),
        )

    server = await loop.create_server(
        lambda: SMTP(handler, **kwargs),
        host=a.host, port=0,
        ssl=ctx if a.tls == "tls" else None,
    )
    port = server.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    write_atomic(a.port_file, f"{port}\n".encode())
    log(f"listening on {a.host}:{port} tls={a.tls} "
        f"auth={'yes' if a.auth_user else 'no'} maildir={a.maildir}")

    await stop.wait()
    log("signal received, stopping")
    server.close()
    try:
        await asyncio.wait_for(server.wait_closed(), timeout=2)
    except asyncio.TimeoutError:
        pass


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    asyncio.run(amain(a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
