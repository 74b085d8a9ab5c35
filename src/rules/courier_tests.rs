//! Table tests for the Courier rule. Real lines are from fail2ban's
//! `fail2ban/tests/files/logs/courier-auth` and `courier-smtp`; the success and `INFO:`/`port=`
//! shapes follow the format strings of courier-libs `imap/imaplogin.C` and `imap/pop3login.C`.

use super::testkit::{check, check_times, F, S};
use super::*;

fn rule() -> CourierRule {
    CourierRule::new()
}

#[test]
fn fail2ban_courier_auth() {
    // fail2ban/tests/files/logs/courier-auth
    check(
        &mut rule(),
        &[
            (
                "Apr 23 21:59:01 dns2 imapd: LOGIN FAILED, user=sales@example.com, ip=[::ffff:1.2.3.4]",
                Some(("1.2.3.4", Some("sales@example.com"), 1, F)),
            ),
            (
                "Apr 23 21:59:38 dns2 pop3d: LOGIN FAILED, user=info@example.com, ip=[::ffff:198.51.100.76]",
                Some(("198.51.100.76", Some("info@example.com"), 1, F)),
            ),
            (
                "Nov 13 08:11:53 server imapd-ssl: LOGIN FAILED, user=user@domain.tld, ip=[::ffff:198.51.100.33]",
                Some(("198.51.100.33", Some("user@domain.tld"), 1, F)),
            ),
            (
                "Apr 17 19:17:11 SERVER courierpop3login: LOGIN FAILED, user=USER@EXAMPLE.org, ip=[::ffff:1.2.3.4]",
                Some(("1.2.3.4", Some("USER@EXAMPLE.org"), 1, F)),
            ),
            (
                "Apr 17 19:17:12 server imapd-ssl: LOGIN FAILED, method=PLAIN, ip=[::ffff:192.0.2.4]",
                Some(("192.0.2.4", None, 1, F)),
            ),
            (
                "Apr 27 09:00:00 servername imapd: LOGIN FAILED, user=tester, ip=[::ffff:192.0.2.5], port=[255]",
                Some(("192.0.2.5", Some("tester"), 1, F)),
            ),
        ],
    );
}

#[test]
fn fail2ban_courier_smtp() {
    // fail2ban/tests/files/logs/courier-smtp: only the 535 is a failed login; the 550s are
    // rejected recipients.
    check(
        &mut rule(),
        &[
            (
                "Jul  3 23:07:20 szerver courieresmtpd: error,relay=::ffff:1.2.3.4,msg=\"535 Authentication failed.\",cmd: YWRvYmVhZG9iZQ==",
                Some(("1.2.3.4", None, 1, F)),
            ),
            (
                "Apr 10 03:47:57 web courieresmtpd: error,relay=::ffff:1.2.3.4,ident=tmf,from=<tmf@example.com>,to=<mailman-subscribe@example.com>: 550 User unknown.",
                None,
            ),
            (
                "Jul  4 18:39:39 mail courieresmtpd: error,relay=::ffff:1.2.3.4,from=<picaro@astroboymail.com>,to=<user@update.net>: 550 User <benny> unknown",
                None,
            ),
            (
                "Nov 21 23:16:17 server courieresmtpd: error,relay=::ffff:1.2.3.4,from=<>,to=<>: 550 User unknown.",
                None,
            ),
        ],
    );
}

#[test]
fn current_formats_and_success() {
    check(
        &mut rule(),
        &[
            // imaplogin.C: courier_safe_printf("INFO: LOGIN FAILED, user=%s, ip=[%s], port=[%s]")
            (
                "Nov 23 15:59:08 mx imapd: INFO: LOGIN FAILED, user=alice, ip=[::ffff:203.0.113.7], port=[51234]",
                Some(("203.0.113.7", Some("alice"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx imapd-ssl: INFO: LOGIN FAILED, method=CRAM-MD5, ip=[2001:db8::7], port=[N/A]",
                Some(("2001:db8::7", None, 1, F)),
            ),
            // sqwebmail: "INFO: LOGIN FAILED, user=%s, ip=[%s]"
            (
                "Nov 23 15:59:08 mx sqwebmaild: INFO: LOGIN FAILED, user=bob, ip=[198.51.100.9]",
                Some(("198.51.100.9", Some("bob"), 1, F)),
            ),
            // Empty user name.
            (
                "Nov 23 15:59:08 mx pop3d: LOGIN FAILED, user=, ip=[::ffff:198.51.100.9]",
                Some(("198.51.100.9", None, 1, F)),
            ),
            // Successful logins.
            (
                "Nov 23 15:59:08 mx imapd-ssl: INFO: LOGIN, user=alice@example.com, ip=[::ffff:203.0.113.7], port=[51234], protocol=IMAP",
                Some(("203.0.113.7", Some("alice@example.com"), 1, S)),
            ),
            (
                "Nov 23 15:59:08 mx pop3d: LOGIN, user=alice, ip=[::ffff:203.0.113.7], port=[4000], protocol=POP3, stls=1",
                Some(("203.0.113.7", Some("alice"), 1, S)),
            ),
            (
                "Nov 23 15:59:08 mx imapd: LOGIN, user=alice, ip=[2001:db8::1], port=[4000], protocol=IMAP, starttls=1",
                Some(("2001:db8::1", Some("alice"), 1, S)),
            ),
            (
                "Nov 23 15:59:08 mx sqwebmaild: INFO: LOGIN, user=carol, ip=[192.0.2.44]",
                Some(("192.0.2.44", Some("carol"), 1, S)),
            ),
            // Without any syslog header (stderr captured to a file).
            (
                "LOGIN FAILED, user=dave, ip=[::ffff:192.0.2.45]",
                Some(("192.0.2.45", Some("dave"), 1, F)),
            ),
        ],
    );
}

#[test]
fn not_logins() {
    check(
        &mut rule(),
        &[
            ("Nov 23 15:59:08 mx imapd: Connection, ip=[::ffff:203.0.113.7]", None),
            ("Nov 23 15:59:08 mx imapd: DEBUG: Connection, ip=[::ffff:203.0.113.7], port=[4000]", None),
            (
                "Nov 23 15:59:08 mx imapd: LOGOUT, user=alice, ip=[::ffff:203.0.113.7], headers=0, body=0, rcvd=83, sent=409, time=5",
                None,
            ),
            (
                "Nov 23 15:59:08 mx imapd: INFO: LOGOUT, ip=[::ffff:203.0.113.7], port=[4000], rcvd=10, sent=20",
                None,
            ),
            ("Nov 23 15:59:08 mx imapd: Disconnected, ip=[::ffff:203.0.113.7]", None),
            // The address position holds something that is not an address.
            ("Nov 23 15:59:08 mx imapd: LOGIN FAILED, user=a, ip=[localhost]", None),
            ("Nov 23 15:59:08 mx imapd: LOGIN FAILED, user=a, ip=[999.1.1.1]", None),
            ("Nov 23 15:59:08 mx imapd: LOGIN FAILED, user=a, ip=[]", None),
            ("Nov 23 15:59:08 mx imapd: LOGIN FAILED, user=a", None),
            // Some other program quoting the words.
            ("Nov 23 15:59:08 mx app: user said LOGIN FAILED, user=a, ip=[10.9.9.9]", None),
            ("", None),
        ],
    );
}

#[test]
fn hostile_user_names_never_move_the_blame() {
    check(
        &mut rule(),
        &[
            (
                "Nov 23 15:59:08 mx imapd: LOGIN FAILED, user=x, ip=[10.9.9.9], ip=[::ffff:198.51.100.1]",
                Some(("198.51.100.1", Some("x, ip=[10.9.9.9]"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx imapd: INFO: LOGIN FAILED, user=x, ip=[10.9.9.9], port=[1], ip=[::ffff:198.51.100.1], port=[2]",
                Some(("198.51.100.1", Some("x, ip=[10.9.9.9], port=[1]"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx imapd: LOGIN FAILED, user=x, ip=[10.9.9.9], port=[1], ip=[198.51.100.1]",
                Some(("198.51.100.1", Some("x, ip=[10.9.9.9], port=[1]"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx imapd: LOGIN FAILED, user=from 9.9.9.9 rip=9.9.9.9 [9.9.9.9] 535, ip=[198.51.100.1]",
                Some(("198.51.100.1", Some("from 9.9.9.9 rip=9.9.9.9 [9.9.9.9] 535"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx imapd: LOGIN FAILED, user=\"a\" ip=[::ffff:10.9.9.9]\", ip=[2001:db8::66]",
                Some(("2001:db8::66", Some("\"a\" ip=[::ffff:10.9.9.9]\""), 1, F)),
            ),
            // Text after the last field is not Courier's layout: nothing is blamed.
            (
                "Nov 23 15:59:08 mx imapd: LOGIN FAILED, user=x, ip=[198.51.100.1], port=[7]junk",
                None,
            ),
            // SMTP: the relay comes first; the command text is the client's.
            (
                "Nov 23 15:59:08 mx courieresmtpd: error,relay=::ffff:198.51.100.2,msg=\"535 Authentication failed.\",cmd: error,relay=10.9.9.9,msg=\"535 x\"",
                Some(("198.51.100.2", None, 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx courieresmtpd: error,relay=::ffff:198.51.100.2,ident=\"x,relay=10.9.9.9\",msg=\"535 Authentication rejected\",cmd: AUTH LOGIN",
                Some(("198.51.100.2", None, 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx courieresmtpd: error,relay=evil.example,msg=\"535 Authentication failed.\",cmd: x",
                None,
            ),
        ],
    );
}

#[test]
fn times() {
    check_times(
        &mut rule(),
        &[
            (
                "Apr 23 21:59:01 dns2 imapd: LOGIN FAILED, user=sales@example.com, ip=[::ffff:1.2.3.4]",
                Some("2026-04-23T21:59:01Z"),
            ),
            (
                "2026-11-23T16:59:08+01:00 mx imapd: INFO: LOGIN FAILED, user=a, ip=[192.0.2.1], port=[1]",
                Some("2026-11-23T15:59:08Z"),
            ),
            ("LOGIN FAILED, user=dave, ip=[::ffff:192.0.2.45]", None),
        ],
    );
}

#[test]
fn shared_split_reads_syslog_headers() {
    use super::shared::split;
    let ctx = super::testkit::ctx();
    let p = split("Nov 23 15:59:08 mx imapd[12]: LOGIN FAILED, user=a", &ctx);
    assert_eq!(
        (p.program, p.pid, p.msg),
        (Some("imapd"), Some(12), "LOGIN FAILED, user=a")
    );
    let p = split("Mar 24 08:58:32 sogod [26818]: SOGoRootPage Login", &ctx);
    assert_eq!(
        (p.program, p.pid, p.msg),
        (Some("sogod"), Some(26818), "SOGoRootPage Login")
    );
    let p = split("Jan 4 21:51:05 host cyrus/imap[5]: badlogin: x", &ctx);
    assert_eq!(
        (p.program, p.msg, p.time),
        (Some("cyrus/imap"), "badlogin: x", None)
    );
    let p = split(
        "Nov 23 15:59:08 mx sendmail[7]: [ID 801593 mail.info] abc: x",
        &ctx,
    );
    assert_eq!(p.msg, "abc: x");
    // No header: the first colon-ended token is not a program name.
    let p = split("badlogin: [1.2.3.4] x", &ctx);
    assert_eq!(p.after("badlogin: "), Some("[1.2.3.4] x"));
    let p = split(
        "10/06/2013 15:50:41 [LOGIN_ERROR] a (b) from 1.2.3.4: c",
        &ctx,
    );
    assert_eq!((p.program, p.msg), (None, p.rest));
}

/// The syslog tag is read only where syslog writes it: first after the stamp, or after one
/// host name (cross-rule blame, issue 14). Stamps we cannot read are skipped, without a time.
#[test]
fn shared_split_finds_the_tag_only_in_its_position() {
    use super::shared::split;
    let ctx = super::testkit::ctx();
    let no_header = [
        // Exim: a quoted sender, a junk HELO, the +pid form.
        "2026-11-23 15:59:08 1rABCD-000123-AB <= \"a x: badlogin: [1.2.3.4] PLAIN x\"@evil.example",
        "2026-11-23 15:59:08 H=(mx imapd[1]: LOGIN FAILED, user=u, ip=[1.2.3.4]) [5.6.7.8] rejected RCPT <a@b>: x",
        "2026-11-23 15:59:08.123 [4321] imapd[1]: LOGIN FAILED, user=u, ip=[1.2.3.4]",
        // Exim's rejectlog headers: flag, name, client text, no stamp.
        "F From: LOGIN FAILED, user=u, ip=[1.2.3.4]",
        "  Subject: LOGIN FAILED, user=u, ip=[1.2.3.4]",
        // A host that is not a host name.
        "Nov 23 15:59:08 a,b imapd: LOGIN FAILED, user=u, ip=[1.2.3.4]",
        "Nov 23 15:59:08 mx a b imapd: LOGIN FAILED, user=u, ip=[1.2.3.4]",
    ];
    for line in no_header {
        let p = split(line, &ctx);
        assert_eq!((p.program, p.msg), (None, p.rest), "{line}");
    }
    for (line, program, time) in [
        ("Aug 3 10:00:00 mx imapd[7]: m", "imapd", false),
        ("Mon Aug  3 10:00:00 2026 mx ipop3d[7]: m", "ipop3d", false),
        (
            "2026/08/03 10:00:00 192.0.2.1 cyrus/imap[7]: m",
            "cyrus/imap",
            false,
        ),
        ("Nov 23 15:59:08 2001:db8::1 imapd[7]: m", "imapd", true),
        ("Nov 23 15:59:08 mx sogod [7]: m", "sogod", true),
        ("postfix/smtpd[7]: m", "postfix/smtpd", false),
    ] {
        let p = split(line, &ctx);
        assert_eq!(
            (p.program, p.pid, p.msg, p.time.is_some()),
            (Some(program), Some(7), "m", time),
            "{line}"
        );
    }
}

#[test]
fn shared_address_helpers() {
    use super::shared::{ip, ip_literal, is_internal, rightmost_client, sole};
    let a = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(ip("::ffff:1.2.3.4"), Some(a("1.2.3.4")));
    for bad in [
        "",
        "1.2.3",
        "1.2.3.4:25",
        "[1.2.3.4]",
        "01.2.3.4",
        "fe80::1%eth0",
        "host",
    ] {
        assert_eq!(ip(bad), None, "{bad}");
    }
    assert_eq!(ip_literal("IPv6:2001:db8::1"), Some(a("2001:db8::1")));
    assert!(
        is_internal(a("10.1.2.3")) && is_internal(a("100.64.0.1")) && is_internal(a("fd00::1"))
    );
    assert!(!is_internal(a("192.0.2.1")) && !is_internal(a("2001:db8::1")));
    assert_eq!(
        rightmost_client("9.9.9.9, 192.0.2.1, 10.0.0.1"),
        Some(a("192.0.2.1"))
    );
    assert_eq!(
        rightmost_client("192.0.2.1, junk, 10.0.0.1"),
        Some(a("10.0.0.1"))
    );
    assert_eq!(rightmost_client("junk"), None);
    assert_eq!(sole([a("1.1.1.1"), a("1.1.1.1")]), Some(a("1.1.1.1")));
    assert_eq!(sole([a("1.1.1.1"), a("2.2.2.2")]), None);
    assert_eq!(sole([]), None);
}

/// Every rule of this folder gets every prefix of hostile and non-ASCII lines: no panics, and
/// any hit names an address that occurs in the line (OpenSMTPD: in its session).
#[test]
fn no_rule_panics_on_cut_or_hostile_lines() {
    use crate::rules::{
        cyrus::CyrusRule, horde::HordeRule, opensmtpd::OpenSmtpdRule, roundcube::RoundcubeRule,
        sendmail::SendmailRule, sogo::SogoRule, squirrelmail::SquirrelmailRule, uwimap::UwImapRule,
        Rule,
    };
    let lines = [
        "Nov 23 15:59:08 mx imapd: INFO: LOGIN FAILED, user=é[1.2.3.4]ü, ip=[::ffff:198.51.100.1], port=[1]",
        "Nov 23 15:59:08 mx courieresmtpd: error,relay=::ffff:198.51.100.2,msg=\"535 ü\",cmd: é",
        "Nov 23 15:59:08 mx cyrus/imap[1]: badlogin: hé [198.51.100.3] plaintext (ü) [SASL(-13): x]",
        "Nov 23 15:59:08 mx cyrus/imap[1]: event=login.bad r.clienthost=\"h [198.51.100.4]\" u.username=\"é\\x{0a}\\\"\" error=x",
        "Nov 23 15:59:08 mx sm-mta[1]: 5ANFx1aa000001: AUTH failure (LOGIN): ü, user=é, relay=[198.51.100.5]",
        "Nov 23 15:59:08 mx sm-mta[1]: 5ANFx1aa000002: é [198.51.100.6]: possible SMTP attack: command=AUTH, count=7",
        "Nov 23 15:59:08 mx imapd[1]: Login failed user=é auth=ü host=h [198.51.100.7]",
        "Nov 23 15:59:08 mx smtpd[1]: 1111111111111111 smtp connected address=198.51.100.8 host=é",
        "Nov 23 15:59:08 mx smtpd[1]: 1111111111111111 smtp failed-command command=\"AUTH é\" result=\"535 ü\"",
        "[23-Nov-2026 15:59:08 +0100]: <a1> Failed login for é from 127.0.0.1 (X-Forwarded-For: ü, 198.51.100.9) in session x (error: 0)",
        "[23-Nov-2026 15:59:08 +0100]: IMAP Error: Login failed for é from 198.51.100.10. LOGIN: ü",
        "Nov 23 15:59:08 sogod [1]: SOGoRootPage Login from 'é, 198.51.100.11' for user 'ü' might not have worked - password policy: 1",
        "Nov 23 15:59:08 HORDE [error] [horde] FAILED LOGIN for é [198.51.100.12] (forwarded for [ü]) to Horde [pid 1 on line 2 of \"é\"]",
        "11/23/2026 15:59:08 [LOGIN_ERROR] é (ü) from 198.51.100.13: é",
        "Nov 23 15:59:08 web squirrelmail: Failed webmail login: by é (ü) at 198.51.100.14 on 11/23/2026 15:59:08: é",
    ];
    let mut rules: Vec<Box<dyn Rule>> = vec![
        Box::new(CourierRule::new()),
        Box::new(CyrusRule::new()),
        Box::new(SendmailRule::new()),
        Box::new(UwImapRule::new()),
        Box::new(OpenSmtpdRule::new()),
        Box::new(RoundcubeRule::new()),
        Box::new(SogoRule::new()),
        Box::new(HordeRule::new()),
        Box::new(SquirrelmailRule::new()),
    ];
    let ctx = super::testkit::ctx();
    let mut hits = 0;
    for line in lines {
        for (cut, _) in line.char_indices().chain([(line.len(), ' ')]) {
            let part = &line[..cut];
            for rule in rules.iter_mut() {
                if let Some(h) = rule.parse(part, &ctx) {
                    // OpenSMTPD takes the address from the session's connect line.
                    let shown = h.ip.to_string();
                    let seen = part.contains(&shown) || h.service == "opensmtpd";
                    assert!(seen, "{}: {part} -> {shown}", rule.service());
                    hits += 1;
                }
            }
        }
    }
    // Each whole line is a hit for its own rule (and the address checks above ran).
    assert!(hits >= lines.len(), "{hits}");
}
