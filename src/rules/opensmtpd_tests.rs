//! Table tests for the OpenSMTPD rule. fail2ban has no OpenSMTPD test log; the lines marked
//! "captured" are from published server logs (blog.bsdsx.fr, poolp.org posts, as found with the
//! search corpus), the others follow the format strings of `usr.sbin/smtpd/smtp_session.c` in
//! its 5.x (`smtp-in: …`), 6.0–6.3 (`smtp event=…`) and 6.4+ (`smtp connected …`) releases.

use super::*;
use crate::rules::courier::testkit::{check, check_times, F, S};

fn rule() -> OpenSmtpdRule {
    OpenSmtpdRule::new()
}

#[test]
fn current_dialect_uses_the_connect_line() {
    check(
        &mut rule(),
        &[
            // captured (poolp.org): AUTH not offered on this listener, a 503, not a guess.
            ("c1a89cb774083905 smtp connected address=185.234.219.64 host=<unknown>", None),
            (
                "c1a89cb774083905 smtp failed-command command=\"AUTH LOGIN\" result=\"503 5.5.1 Invalid command: Command not supported\"",
                None,
            ),
            ("c1a89cb774083905 smtp disconnected reason=disconnect", None),
            // captured (blog.bsdsx.fr): a successful AUTH over IPv6 loopback.
            ("f7a2e6aa567530c9 smtp connected address=[::1] host=localhost", None),
            (
                "f7a2e6aa567530c9 smtp tls ciphers=TLSv1.3:TLS_AES_256_GCM_SHA384:256",
                None,
            ),
            (
                "f7a2e6aa567530c9 smtp authentication user=bar result=ok",
                Some(("::1", Some("bar"), 1, S)),
            ),
            // captured (blog.bsdsx.fr): rejected for rDNS, not an AUTH.
            (
                "Nov  2 00:01:33 backup_mx smtpd[60503]: 88166f7f21c951f4 smtp connected address=193.56.29.192 host=<unknown>",
                None,
            ),
            (
                "Nov  2 00:01:33 backup_mx smtpd[60503]: 88166f7f21c951f4 smtp failed-command command=\"\" result=\"550 no rDNS please fix\"",
                None,
            ),
            // A guessing session: authentication line, then the 535 for the same attempt.
            (
                "Nov 23 15:59:08 mx smtpd[811]: 4b8a5d0a2c3e1f6b smtp connected address=203.0.113.60 host=<unknown>",
                None,
            ),
            (
                "Nov 23 15:59:09 mx smtpd[811]: 4b8a5d0a2c3e1f6b smtp authentication user=admin result=permfail",
                Some(("203.0.113.60", Some("admin"), 1, F)),
            ),
            (
                "Nov 23 15:59:09 mx smtpd[811]: 4b8a5d0a2c3e1f6b smtp failed-command command=\"AUTH LOGIN (password)\" result=\"535 Authentication failed\"",
                None,
            ),
            (
                "Nov 23 15:59:10 mx smtpd[811]: 4b8a5d0a2c3e1f6b smtp authentication user=info@example.com result=permfail",
                Some(("203.0.113.60", Some("info@example.com"), 1, F)),
            ),
            // tempfail is the server's table trouble.
            (
                "Nov 23 15:59:11 mx smtpd[811]: 4b8a5d0a2c3e1f6b smtp authentication user=info result=tempfail",
                None,
            ),
            (
                "Nov 23 15:59:12 mx smtpd[811]: 4b8a5d0a2c3e1f6b smtp disconnected reason=quit",
                None,
            ),
            // After the disconnect the session is forgotten: no address, no blame.
            (
                "Nov 23 15:59:13 mx smtpd[811]: 4b8a5d0a2c3e1f6b smtp authentication user=late result=permfail",
                None,
            ),
            // A 535 alone (no authentication line in this session) counts.
            (
                "Nov 23 15:59:14 mx smtpd[811]: 0000000000000abc smtp connected address=2001:db8::61 host=h.example",
                None,
            ),
            (
                "Nov 23 15:59:15 mx smtpd[811]: 0000000000000abc smtp failed-command command=\"AUTH PLAIN (...)\" result=\"535 5.7.8 Error: authentication failed: Authentication failed\"",
                Some(("2001:db8::61", None, 1, F)),
            ),
            // Unix socket clients have no address.
            ("bf23567dd3150185 smtp connected address=local host=cun.bsdsx.fr", None),
            ("bf23567dd3150185 smtp authentication user=x result=permfail", None),
        ],
    );
}

#[test]
fn event_dialect_6_0() {
    check(
        &mut rule(),
        &[
            (
                "Nov 23 15:59:08 mx smtpd[812]: 1c2d3e4f5a6b7c8d smtp event=connected address=198.51.100.70 host=dsl.example",
                None,
            ),
            (
                "Nov 23 15:59:09 mx smtpd[812]: 1c2d3e4f5a6b7c8d smtp event=authentication user=bob address=198.51.100.70 host=dsl.example result=permfail",
                Some(("198.51.100.70", Some("bob"), 1, F)),
            ),
            (
                "Nov 23 15:59:09 mx smtpd[812]: 1c2d3e4f5a6b7c8d smtp event=failed-command address=198.51.100.70 host=dsl.example command=\"AUTH LOGIN (password)\" result=\"535 Authentication failed\"",
                None,
            ),
            // The address is on the line even when the connect line was not seen.
            (
                "Nov 23 15:59:10 mx smtpd[812]: 00000000deadbeef smtp event=failed-command address=198.51.100.71 host=x.example command=\"AUTH LOGIN (password)\" result=\"535 Authentication failed\"",
                Some(("198.51.100.71", None, 1, F)),
            ),
            (
                "Nov 23 15:59:11 mx smtpd[812]: 00000000deadbee0 smtp event=authentication user=carol address=IPv6:2001:db8::72 host=x.example result=ok",
                Some(("2001:db8::72", Some("carol"), 1, S)),
            ),
            (
                "Nov 23 15:59:12 mx smtpd[812]: 1c2d3e4f5a6b7c8d smtp event=closed reason=quit",
                None,
            ),
        ],
    );
}

#[test]
fn legacy_dialect_5_x() {
    check(
        &mut rule(),
        &[
            (
                "Nov 23 15:59:08 mx smtpd[813]: smtp-in: New session 3f2a1b0c9d8e7f60 from host dsl.example [203.0.113.80]",
                None,
            ),
            (
                "Nov 23 15:59:09 mx smtpd[813]: smtp-in: Authentication failed for user root on session 3f2a1b0c9d8e7f60",
                Some(("203.0.113.80", Some("root"), 1, F)),
            ),
            (
                "Nov 23 15:59:09 mx smtpd[813]: smtp-in: Failed command on session 3f2a1b0c9d8e7f60: \"AUTH LOGIN (password)\" => 535 Authentication failed",
                None,
            ),
            (
                "Nov 23 15:59:10 mx smtpd[813]: smtp-in: Accepted authentication for user dave on session 3f2a1b0c9d8e7f60",
                Some(("203.0.113.80", Some("dave"), 1, S)),
            ),
            (
                "Nov 23 15:59:11 mx smtpd[813]: smtp-in: Closing session 3f2a1b0c9d8e7f60",
                None,
            ),
        ],
    );
}

#[test]
fn hostile_text_never_moves_the_blame() {
    check(
        &mut rule(),
        &[
            (
                "Nov 23 15:59:08 mx smtpd[9]: 1111111111111111 smtp connected address=198.51.100.90 host=<unknown>",
                None,
            ),
            // The user name is vis-encoded: no blanks, so it cannot add an address= field.
            (
                "Nov 23 15:59:09 mx smtpd[9]: 1111111111111111 smtp authentication user=x\\040address=10.9.9.9\\040from\\0409.9.9.9 result=permfail",
                Some(("198.51.100.90", Some("x\\040address=10.9.9.9\\040from\\0409.9.9.9"), 1, F)),
            ),
            // Command text is the client's (and this 535 repeats the failure above).
            (
                "Nov 23 15:59:10 mx smtpd[9]: 1111111111111111 smtp failed-command command=\"AUTH PLAIN address=10.9.9.9\" result=\"535 Authentication failed\"",
                None,
            ),
            (
                "Nov 23 15:59:10 mx smtpd[9]: 2222222222222222 smtp connected address=198.51.100.91 host=<unknown>",
                None,
            ),
            (
                "Nov 23 15:59:10 mx smtpd[9]: 2222222222222222 smtp failed-command command=\"AUTH PLAIN address=10.9.9.9 result=\\\"535 x\" result=\"535 Authentication failed\"",
                Some(("198.51.100.91", None, 1, F)),
            ),
            // Not an AUTH: a 535-looking result quoted by a client command is not counted.
            (
                "Nov 23 15:59:11 mx smtpd[9]: 2222222222222222 smtp failed-command command=\"RCPT TO:<a@b> result=\\\"535 x\" result=\"550 Invalid recipient\"",
                None,
            ),
            // A 5.x host name with a bracket: the address is the last bracket on the line.
            (
                "Nov 23 15:59:12 mx smtpd[9]: smtp-in: New session 3333333333333333 from host evil [10.9.9.9] [198.51.100.92]",
                None,
            ),
            (
                "Nov 23 15:59:13 mx smtpd[9]: smtp-in: Authentication failed for user a on session 1 on session 3333333333333333",
                Some(("198.51.100.92", Some("a on session 1"), 1, F)),
            ),
            // Session ids are 16 hex digits.
            ("Nov 23 15:59:14 mx smtpd[9]: 12345 smtp authentication user=a result=permfail", None),
        ],
    );
}

#[test]
fn times() {
    let mut r = rule();
    check(
        &mut r,
        &[(
            "2026-11-23T16:59:08+01:00 mx smtpd[811]: 4b8a5d0a2c3e1f6c smtp connected address=203.0.113.60 host=<unknown>",
            None,
        )],
    );
    check_times(
        &mut r,
        &[(
            "2026-11-23T16:59:09+01:00 mx smtpd[811]: 4b8a5d0a2c3e1f6c smtp authentication user=admin result=permfail",
            Some("2026-11-23T15:59:09Z"),
        )],
    );
}
