#!/usr/bin/env python3
"""exim_fail_auth.py - make an SMTP server log N failed AUTH attempts.

Usage:
  exim_fail_auth.py --port P --user U --count N
                    [--host 127.0.0.1] [--helo NAME] [--password WRONG]
                    [--mechanism PLAIN|LOGIN] [--per-connection K] [--delay S]

Opens SMTP connections to HOST:P (smtplib), sends EHLO NAME (default
attacker.example), and issues exactly one AUTH command per attempt with the
(wrong) password, K attempts per connection (default 1: a new connection for
every attempt), N attempts in all, sleeping S seconds between attempts.
Each attempt is a single `smtp.auth(MECH, ...)` call, never smtplib.login(),
which would try a second mechanism after a 535 and log two failures.

Against tests/support/exim_ctl.py's Exim, each attempt writes one mainlog line:
  <date> <time> PLAIN authenticator failed for (NAME) [127.0.0.1]: 535 Incorrect authentication data (set_id=U)
(the first word is the authenticator name: PLAIN or LOGIN).

Prints "N attempts, N got 535" and exits 0 when every attempt got a 535;
exits 1 otherwise (e.g. an attempt succeeded, or the server said something else).
"""

import argparse
import base64
import smtplib
import sys
import time


def main():
    p = argparse.ArgumentParser(description="drive N failed SMTP AUTH attempts")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--user", required=True)
    p.add_argument("--password", default="wrong-password")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--helo", default="attacker.example")
    p.add_argument("--mechanism", choices=["PLAIN", "LOGIN"], default="PLAIN")
    p.add_argument("--per-connection", type=int, default=1)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=10.0)
    a = p.parse_args()
    if a.count < 0 or a.per_connection < 1:
        p.error("--count >= 0 and --per-connection >= 1")

    user, password = a.user, a.password

    def plain(challenge=None):
        return f"\0{user}\0{password}"

    def login(challenge=None):
        # smtplib calls this with challenge=None for the initial response
        # (the user name) and then with each decoded 334 challenge.
        if challenge is None:
            return user
        c = challenge.decode(errors="replace").lower()
        return password if "pass" in c else user

    done = got535 = 0
    other = []
    while done < a.count:
        smtp = smtplib.SMTP(a.host, a.port, local_hostname=a.helo, timeout=a.timeout)
        try:
            smtp.ehlo(a.helo)
            for _ in range(min(a.per_connection, a.count - done)):
                if done and a.delay:
                    time.sleep(a.delay)
                done += 1
                try:
                    if a.mechanism == "PLAIN":
                        code, resp = smtp.auth("PLAIN", plain)
                    else:
                        code, resp = smtp.auth("LOGIN", login, initial_response_ok=False)
                    other.append((code, resp))
                except smtplib.SMTPAuthenticationError as e:
                    if e.smtp_code == 535:
                        got535 += 1
                    else:
                        other.append((e.smtp_code, e.smtp_error))
                except smtplib.SMTPException as e:
                    other.append((None, str(e)))
            try:
                smtp.quit()
            except smtplib.SMTPException:
                pass
        finally:
            smtp.close()

    print(f"{done} attempts, {got535} got 535", flush=True)
    for code, resp in other[:5]:
        print(f"unexpected reply: {code} {resp!r}", file=sys.stderr)
    return 0 if got535 == a.count else 1


if __name__ == "__main__":
    sys.exit(main())
