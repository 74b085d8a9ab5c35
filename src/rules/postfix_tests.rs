//! Table tests for the Postfix rule: lines captured from a real Postfix 3.7.11 with Dovecot
//! SASL (`tests/support/postfix_ctl.py`), older and Cyrus shapes, hostile usernames (the blamed
//! IP must always be the connecting client), and lines that must not match.

use super::*;
use jiff::tz::TimeZone;

/// Expected: (ip, user, kind, time as RFC 3339); attempts are always 1.
type Want = Option<(
    &'static str,
    Option<&'static str>,
    HitKind,
    Option<&'static str>,
)>;

const F: HitKind = HitKind::Failure;
const S: HitKind = HitKind::Success;

fn ctx() -> ParseCtx {
    ParseCtx::new(TimeZone::UTC, "2026-11-24T00:00:00Z".parse().unwrap())
}

fn check(table: &[(&str, Want)]) {
    let rule = PostfixRule::new();
    let ctx = ctx();
    let mut failed = Vec::new();
    for (line, want) in table {
        let got = rule.parse(line, &ctx);
        let want = want.map(|(ip, user, kind, time)| Hit {
            time: time.map(|t| t.parse().unwrap()),
            ip: ip.parse().unwrap(),
            user: user.map(str::to_owned),
            service: "postfix",
            attempts: 1,
            kind,
        });
        if got != want {
            failed.push(format!("line: {line}\n  got:  {got:?}\n  want: {want:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

const T: Option<&str> = Some("2026-11-23T17:14:52Z");

#[test]
fn captured_from_real_postfix_3_7() {
    check(&[
        (
            "Nov 23 17:14:52 mx postfix/smtpd[25626]: warning: localhost[127.0.0.1]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=alice",
            Some(("127.0.0.1", Some("alice"), F, T)),
        ),
        (
            "Nov 23 17:11:27 mx postfix/smtpd[18772]: warning: localhost[127.0.0.1]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=alice",
            Some(("127.0.0.1", Some("alice"), F, Some("2026-11-23T17:11:27Z"))),
        ),
        // Dovecot's auth server hung up (postfix_ctl.py's second smtpd).
        (
            "Nov 23 17:14:54 mx postfix/submission/smtpd[25629]: warning: localhost[127.0.0.1]: SASL PLAIN authentication failed: Connection lost to authentication server, sasl_username=(unavailable)",
            Some(("127.0.0.1", None, F, Some("2026-11-23T17:14:54Z"))),
        ),
        (
            "Nov 23 17:14:55 mx postfix/submission/smtpd[25629]: warning: localhost[127.0.0.1]: SASL LOGIN authentication failed: Connection lost to authentication server, sasl_username=(unavailable)",
            Some(("127.0.0.1", None, F, Some("2026-11-23T17:14:55Z"))),
        ),
        // Accepted after AUTH.
        (
            "Nov 23 17:14:56 mx postfix/smtpd[25626]: 3A1C29BA048: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=alice",
            Some(("127.0.0.1", Some("alice"), S, Some("2026-11-23T17:14:56Z"))),
        ),
        // The rest of those sessions: not logins.
        ("Nov 23 17:14:52 mx postfix/smtpd[25626]: connect from localhost[127.0.0.1]", None),
        (
            "Nov 23 17:14:53 mx postfix/smtpd[25626]: disconnect from localhost[127.0.0.1] ehlo=1 auth=0/2 quit=1 commands=2/4",
            None,
        ),
        (
            "Nov 23 17:14:56 mx postfix/cleanup[25957]: 3A1C29BA048: message-id=<20261123171456.3A1C29BA048@mx.test>",
            None,
        ),
        (
            "Nov 23 17:14:56 mx postfix/qmgr[25623]: 3A1C29BA048: from=<alice@mx.test>, size=324, nrcpt=1 (queue active)",
            None,
        ),
        (
            "Nov 23 17:14:56 mx postfix/discard[25958]: 3A1C29BA048: to=<someone@example.org>, relay=none, delay=0.23, delays=0.19/0.04/0/0, dsn=2.0.0, status=sent (example.org)",
            None,
        ),
        (
            "Nov 23 17:14:50 mx postfix/master[25621]: daemon started -- version 3.7.11, configuration /tmp/pft/etc",
            None,
        ),
    ]);
}

#[test]
fn shapes() {
    check(&[
        // Older Postfix: no sasl_username; Cyrus reason; Dovecot's base64 challenge.
        (
            "Nov 23 17:14:52 mail postfix/smtpd[123]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: authentication failure",
            Some(("203.0.113.5", None, F, T)),
        ),
        (
            "Nov 23 17:14:52 mail postfix/smtpd[123]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
            Some(("203.0.113.5", None, F, T)),
        ),
        (
            "Nov 23 17:14:52 mail postfix/smtpd[123]: warning: unknown[203.0.113.5]: SASL PLAIN authentication failed: ",
            Some(("203.0.113.5", None, F, T)),
        ),
        (
            "Nov 23 17:14:52 mail postfix/smtpd[123]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: authentication failure, sasl_username=alice@example.com",
            Some(("203.0.113.5", Some("alice@example.com"), F, T)),
        ),
        (
            "Nov 23 17:14:52 mail postfix/smtpd[123]: warning: unknown[203.0.113.5]: SASL PLAIN authentication failed: Connection lost to authentication server",
            Some(("203.0.113.5", None, F, T)),
        ),
        (
            "Nov 23 17:14:52 mail postfix/smtpd[123]: warning: unknown[95.145.141.246]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=admin@example.ru",
            Some(("95.145.141.246", Some("admin@example.ru"), F, T)),
        ),
        (
            "Nov 23 17:14:52 mail postfix/smtpd[123]: warning: mail.example.net[198.51.100.8]: SASL CRAM-MD5 authentication failed: authentication failure",
            Some(("198.51.100.8", None, F, T)),
        ),
        // smtps / submission / multi-instance syslog names; client port logging.
        (
            "Nov 23 17:14:52 mail postfix/smtps/smtpd[9]: warning: unknown[203.0.113.6]:40412: SASL LOGIN authentication failed: authentication failure, sasl_username=bob",
            Some(("203.0.113.6", Some("bob"), F, T)),
        ),
        (
            "Nov 23 17:14:52 mail postfix-out/smtpd[9]: warning: unknown[203.0.113.7]: SASL DIGEST-MD5 authentication failed: authentication failure",
            Some(("203.0.113.7", None, F, T)),
        ),
        // IPv6 and IPv4-mapped.
        (
            "Nov 23 17:14:52 mail postfix/smtpd[9]: warning: unknown[2001:db8::25]: SASL LOGIN authentication failed: authentication failure",
            Some(("2001:db8::25", None, F, T)),
        ),
        (
            "Nov 23 17:14:52 mail postfix/smtpd[9]: warning: unknown[::ffff:203.0.113.9]: SASL LOGIN authentication failed: authentication failure",
            Some(("203.0.113.9", None, F, T)),
        ),
        // Journal / RFC 3339 stamps, no host, no stamp.
        (
            "2026-11-23T18:14:52.123+01:00 mail postfix/smtpd[9]: warning: unknown[203.0.113.10]: SASL PLAIN authentication failed: , sasl_username=carol",
            Some(("203.0.113.10", Some("carol"), F, Some("2026-11-23T17:14:52.123Z"))),
        ),
        (
            "Nov 23 17:14:52 postfix/smtpd[9]: warning: unknown[203.0.113.11]: SASL PLAIN authentication failed: authentication failure",
            Some(("203.0.113.11", None, F, T)),
        ),
        (
            "postfix/smtpd[9]: warning: unknown[203.0.113.12]: SASL PLAIN authentication failed: authentication failure",
            Some(("203.0.113.12", None, F, None)),
        ),
        // Success lines: long queue ids, sasl_sender, XFORWARD fields.
        (
            "Nov 23 17:14:52 mail postfix/submission/smtpd[9]: 4Y0Kx85Jq5z9vNM: client=unknown[203.0.113.13]:50123, sasl_method=LOGIN, sasl_username=dave@example.com",
            Some(("203.0.113.13", Some("dave@example.com"), S, T)),
        ),
        (
            "Nov 23 17:14:52 mail postfix/smtpd[9]: 1A2B3C4D5E: client=unknown[203.0.113.14], sasl_method=PLAIN, sasl_username=erin, sasl_sender=<x, sasl_username=root>",
            Some(("203.0.113.14", Some("erin"), S, T)),
        ),
        // Accepted without AUTH: not a login.
        (
            "Nov 23 17:14:52 mail postfix/smtpd[9]: 1A2B3C4D5E: client=mail.example.org[198.51.100.20]",
            None,
        ),
        (
            "Nov 23 17:14:52 mail postfix/smtpd[9]: 1A2B3C4D5E: client=unknown[198.51.100.20], orig_queue_id=ABC, orig_client=x[9.9.9.9]",
            None,
        ),
    ]);
}

#[test]
fn must_not_match() {
    check(&[
        // Cyrus: no address.
        ("Nov 23 17:14:52 mail postfix/smtpd[9]: warning: SASL authentication failure: Password verification failed", None),
        ("Nov 23 17:14:52 mail postfix/smtpd[9]: warning: SASL authentication failure: cannot connect to saslauthd server: No such file or directory", None),
        // Not failed guesses.
        ("Nov 23 17:14:52 mail postfix/smtpd[9]: lost connection after AUTH from unknown[203.0.113.20]", None),
        ("Nov 23 17:14:52 mail postfix/smtpd[9]: too many errors after AUTH from unknown[203.0.113.21]", None),
        ("Nov 23 17:14:52 mail postfix/smtpd[9]: NOQUEUE: reject: RCPT from unknown[203.0.113.22]: 554 5.7.1 <x@example.org>: Relay access denied; from=<a@b> to=<x@example.org> proto=ESMTP helo=<x>", None),
        ("Nov 23 17:14:52 mail postfix/smtpd[9]: warning: hostname example.test does not resolve to address 203.0.113.23: Name or service not known", None),
        // Postfix as an SMTP *client* failing AUTH at another server: not an attack on us.
        ("Nov 23 17:14:52 mail postfix/smtp[9]: 1A2B3C4D5E: SASL authentication failed; server relay.example[198.51.100.30] said: 535 5.7.8 Error: authentication failed", None),
        ("Nov 23 17:14:52 mail postfix/smtp[9]: warning: relay.example[198.51.100.30]: SASL PLAIN authentication failed: 535 5.7.8", None),
        // Other programs.
        ("Nov 23 17:14:52 mail smtpd[9]: warning: unknown[198.51.100.31]: SASL PLAIN authentication failed: x", None),
        ("Nov 23 17:14:52 mail dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, rip=198.51.100.32", None),
        ("2026-11-23 15:59:08 PLAIN authenticator failed for (a) [198.51.100.33]: 535 Incorrect authentication data (set_id=x)", None),
        // Not an address in the brackets; a name with spaces.
        ("Nov 23 17:14:52 mail postfix/smtpd[9]: warning: unknown[999.1.1.1]: SASL PLAIN authentication failed: x", None),
        ("Nov 23 17:14:52 mail postfix/smtpd[9]: warning: unknown[host.example]: SASL PLAIN authentication failed: x", None),
        ("Nov 23 17:14:52 mail postfix/smtpd[9]: warning: evil name[9.9.9.9] x[198.51.100.34]: SASL PLAIN authentication failed: x", None),
        ("Nov 23 17:14:52 mail postfix/smtpd[9]: warning: [198.51.100.35]: SASL PLAIN authentication failed: x", None),
        ("Nov 23 17:14:52 mail postfix/smtpd[9]: warning: unknown[198.51.100.36]: SASL PLAIN authentication failedx", None),
        ("", None),
    ]);
}

/// Hostile usernames: the IP is always the client's, the username is kept whole.
#[test]
fn hostile_usernames_never_move_the_blame() {
    let table: &[(&str, Want)] = &[
        // Captured from the real Postfix (Dovecot lower-cases the name it returns).
        (
            "Nov 23 17:14:53 mx postfix/smtpd[25626]: warning: localhost[127.0.0.1]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=x, sasl_username=root [9.9.9.9]: sasl",
            Some(("127.0.0.1", Some("x, sasl_username=root [9.9.9.9]: sasl"), F, Some("2026-11-23T17:14:53Z"))),
        ),
        (
            "Nov 23 17:14:52 mail postfix/smtpd[9]: warning: unknown[203.0.113.40]: SASL LOGIN authentication failed: authentication failure, sasl_username=a]: SASL LOGIN authentication failed: x, warning: unknown[9.9.9.9]",
            Some(("203.0.113.40", Some("a]: SASL LOGIN authentication failed: x, warning: unknown[9.9.9.9]"), F, T)),
        ),
        (
            "Nov 23 17:14:52 mail postfix/smtpd[9]: warning: unknown[203.0.113.41]: SASL PLAIN authentication failed: authentication failure, sasl_username=\"bob\" from 9.9.9.9 rip=9.9.9.9 535",
            Some(("203.0.113.41", Some("\"bob\" from 9.9.9.9 rip=9.9.9.9 535"), F, T)),
        ),
        (
            "Nov 23 17:14:52 mail postfix/smtpd[9]: warning: unknown[203.0.113.42]: SASL PLAIN authentication failed: authentication failure, sasl_username=[9.9.9.9]",
            Some(("203.0.113.42", Some("[9.9.9.9]"), F, T)),
        ),
        (
            "Nov 23 17:14:52 mail postfix/smtpd[9]: warning: unknown[203.0.113.43]: SASL PLAIN authentication failed: authentication failure, sasl_username=(unavailable), sasl_username=x",
            Some(("203.0.113.43", Some("(unavailable), sasl_username=x"), F, T)),
        ),
        (
            "Nov 23 17:14:52 mail postfix/smtpd[9]: 1A2B3C4D5E: client=unknown[203.0.113.44], sasl_method=PLAIN, sasl_username=x, client=unknown[9.9.9.9]",
            Some(("203.0.113.44", Some("x, client=unknown[9.9.9.9]"), S, T)),
        ),
    ];
    check(table);
    let rule = PostfixRule::new();
    for (line, _) in table {
        if let Some(h) = rule.parse(line, &ctx()) {
            assert_ne!(h.ip.to_string(), "9.9.9.9", "{line}");
        }
    }
}
