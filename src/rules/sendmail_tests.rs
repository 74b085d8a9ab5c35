//! Table tests for the Sendmail rule. Real lines are from fail2ban's
//! `fail2ban/tests/files/logs/sendmail-auth`; the success line and the session shapes follow
//! sendmail `srvrsmtp.c` (`AUTH=server, relay=%s, authid=%.128s, mech=%.16s, bits=%d`,
//! `checksmtpattack()`, `LOGAUTHFAIL`).

use super::*;
use crate::rules::courier::testkit::{check, check_times, F, S};

fn rule() -> SendmailRule {
    SendmailRule::new()
}

#[test]
fn fail2ban_sendmail_auth() {
    // fail2ban/tests/files/logs/sendmail-auth, in file order.
    check(
        &mut rule(),
        &[
            (
                "Feb 16 23:33:20 smtp1 sm-mta[5133]: s1GNXHYB005133: [190.5.230.178]: possible SMTP attack: command=AUTH, count=5",
                Some(("190.5.230.178", None, 5, F)),
            ),
            (
                "Feb 16 23:40:36 smtp1 sm-mta[5178]: s1GNeNqe005178: cpe-075-176-164-191.sc.res.rr.com [75.176.164.191]: possible SMTP attack: command=AUTH, count=5",
                Some(("75.176.164.191", None, 5, F)),
            ),
            (
                "Feb 24 12:10:15 kismet sm-acceptingconnections[32053]: s1OHA28u032053: 211-75-6-133.HINET-IP.hinet.net [211.75.6.133]: possible SMTP attack: command=AUTH, count=6",
                Some(("211.75.6.133", None, 6, F)),
            ),
            (
                "Feb 24 13:00:17 kismet sm-acceptingconnections[1499]: s1OHxxSn001499: 192.241.70.95.dsl.static.turk.net [95.70.241.192] (may be forged): possible SMTP attack: command=AUTH, count=6",
                Some(("95.70.241.192", None, 6, F)),
            ),
            (
                "Feb 24 14:00:00 server sendmail[26592]: u0CB32qX026592: [192.0.2.1]: possible SMTP attack: command=AUTH, count=5",
                Some(("192.0.2.1", None, 5, F)),
            ),
            (
                "Feb 24 14:00:01 server sendmail[3529566]: xA32R2PQ3529566: [192.0.2.2]: possible SMTP attack: command=AUTH, count=5",
                Some(("192.0.2.2", None, 5, F)),
            ),
            (
                "Feb 25 04:02:27 relay1 sendmail[16664]: 06I02CNi016764: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=user@example.com, relay=example.com [192.0.2.3] (may be forged)",
                Some(("192.0.2.3", Some("user@example.com"), 1, F)),
            ),
            // fail2ban: "injection attempt on user name".
            (
                "Feb 25 04:02:28 relay1 sendmail[16665]: 06I02CNi016765: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=criminal, relay=[192.0.2.100], relay=[192.0.2.4] (may be forged)",
                Some(("192.0.2.4", Some("criminal, relay=[192.0.2.100]"), 1, F)),
            ),
            (
                "May 24 01:58:40 server sm-mta[65696]: 14NNwaRl065696: AUTH failure (DIGEST-MD5): user not found (-20) SASL(-13): user not found: unable to canonify user and get auxprops, user=scanner, relay=[192.0.2.5]",
                Some(("192.0.2.5", Some("scanner"), 1, F)),
            ),
            (
                "May 24 01:59:07 server sm-mta[65815]: 14NNx65Q065815: AUTH failure (CRAM-MD5): user not found (-20) SASL(-13): user not found: user: scan@server.example.com property: userPassword not found in sasldb /usr/local/etc/sasldb2, user=scan, relay=[192.0.2.6]",
                Some(("192.0.2.6", Some("scan"), 1, F)),
            ),
        ],
    );
}

#[test]
fn flood_notice_after_per_attempt_failures_is_not_counted_twice() {
    // LogLevel 9 (the default): each failure is logged, then the notice when the count reaches
    // the number of mechanisms + 1. The notice adds nothing; the next failure still counts.
    check(
        &mut rule(),
        &[
            (
                "Nov 23 15:59:01 mx sm-mta[700]: 5ANFx1aa000700: AUTH failure (PLAIN): authentication failure (-13) SASL(-13): authentication failure: Password verification failed, relay=[203.0.113.50]",
                Some(("203.0.113.50", None, 1, F)),
            ),
            (
                "Nov 23 15:59:02 mx sm-mta[700]: 5ANFx1aa000700: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: Password verification failed, relay=[203.0.113.50]",
                Some(("203.0.113.50", None, 1, F)),
            ),
            (
                "Nov 23 15:59:03 mx sm-mta[700]: 5ANFx1aa000700: [203.0.113.50]: possible SMTP attack: command=AUTH, count=3",
                None,
            ),
            (
                "Nov 23 15:59:04 mx sm-mta[700]: 5ANFx1aa000700: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: Password verification failed, relay=[203.0.113.50]",
                Some(("203.0.113.50", None, 1, F)),
            ),
            // Another session, whose failures were not logged (LogLevel < 9): the notice counts.
            (
                "Nov 23 15:59:05 mx sm-mta[701]: 5ANFx1aa000701: [203.0.113.50]: possible SMTP attack: command=AUTH, count=3",
                Some(("203.0.113.50", None, 3, F)),
            ),
            // Old releases wrote the failure without relay=: no address, and the session's
            // notice still counts.
            (
                "Nov 23 15:59:06 mx sm-mta[702]: 5ANFx1aa000702: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure",
                None,
            ),
            (
                "Nov 23 15:59:07 mx sm-mta[702]: 5ANFx1aa000702: [203.0.113.51]: possible SMTP attack: command=AUTH, count=4",
                Some(("203.0.113.51", None, 4, F)),
            ),
        ],
    );
}

#[test]
fn success_and_other_shapes() {
    check(
        &mut rule(),
        &[
            (
                "Nov 23 15:59:08 mx sm-mta[703]: AUTH=server, relay=client.example [203.0.113.9], authid=alice, mech=PLAIN, bits=0",
                Some(("203.0.113.9", Some("alice"), 1, S)),
            ),
            (
                "Nov 23 15:59:08 mx sm-mta[703]: AUTH=server, relay=root@client.example [IPv6:2001:db8::9] (may be forged), authid=bob@example.com, mech=LOGIN, bits=256",
                Some(("2001:db8::9", Some("bob@example.com"), 1, S)),
            ),
            // IPv6 and IPv4-mapped literals in failures.
            (
                "Nov 23 15:59:08 mx sm-mta[704]: 5ANFx1aa000704: AUTH failure (PLAIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=carol, relay=host.example [IPv6:2001:db8::10]",
                Some(("2001:db8::10", Some("carol"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx sm-mta[704]: 5ANFx1aa000705: [IPv6:::ffff:198.51.100.11]: possible SMTP attack: command=AUTH, count=9",
                Some(("198.51.100.11", None, 9, F)),
            ),
            // Solaris syslog "[ID n facility.level]".
            (
                "Nov 23 15:59:08 mx sendmail[704]: [ID 801593 mail.info] 5ANFx1aa000706: [198.51.100.12]: possible SMTP attack: command=AUTH, count=5",
                Some(("198.51.100.12", None, 5, F)),
            ),
        ],
    );
}

#[test]
fn not_logins() {
    check(
        &mut rule(),
        &[
            // Other commands flooded: not password guessing.
            (
                "Nov 23 15:59:08 mx sm-mta[1]: 5ANFx1aa000001: [198.51.100.1]: possible SMTP attack: command=RCPT, count=26",
                None,
            ),
            (
                "Nov 23 15:59:08 mx sm-mta[1]: 5ANFx1aa000001: [198.51.100.1]: possible SMTP attack: command=AUTH, count=",
                None,
            ),
            (
                "Nov 23 15:59:08 mx sm-mta[1]: 5ANFx1aa000001: localhost: possible SMTP attack: command=AUTH, count=5",
                None,
            ),
            (
                "Nov 23 15:59:08 mx sm-mta[1]: 5ANFx1aa000001: from=<a@b>, size=1, class=0, nrcpts=1, relay=[198.51.100.1]",
                None,
            ),
            (
                "Nov 23 15:59:08 mx sm-mta[1]: 5ANFx1aa000001: [198.51.100.1] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA",
                None,
            ),
            (
                "Nov 23 15:59:08 mx sm-mta[1]: 5ANFx1aa000001: AUTH failure (LOGIN): x, relay=[not.an.ip]",
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
                "Nov 23 15:59:08 mx sm-mta[9]: 5ANFx1aa000009: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=x, relay=[10.9.9.9] from 9.9.9.9 rip=9.9.9.9 535, relay=[198.51.100.20]",
                Some(("198.51.100.20", Some("x, relay=[10.9.9.9] from 9.9.9.9 rip=9.9.9.9 535"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx sm-mta[9]: 5ANFx1aa000010: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=[10.9.9.9], relay=[198.51.100.21] (may be forged)",
                Some(("198.51.100.21", Some("[10.9.9.9]"), 1, F)),
            ),
            // The client field was cut at 100 bytes: its address may be gone, nothing is blamed.
            (
                "Nov 23 15:59:08 mx sm-mta[9]: 5ANFx1aa000011: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): x, relay=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa [10.9.9.9]",
                None,
            ),
            // A bracket glued to the host name is not Sendmail's layout.
            (
                "Nov 23 15:59:08 mx sm-mta[9]: 5ANFx1aa000012: host[10.9.9.9]: possible SMTP attack: command=AUTH, count=5",
                None,
            ),
        ],
    );
}

#[test]
fn times() {
    check_times(
        &mut rule(),
        &[(
            "Feb 16 23:33:20 smtp1 sm-mta[5133]: s1GNXHYB005133: [190.5.230.178]: possible SMTP attack: command=AUTH, count=5",
            Some("2026-02-16T23:33:20Z"),
        )],
    );
}

/// The flood notice is `<qid>: <client>: possible SMTP attack: …` with the client field
/// (`[ident@]host [ip][ (may be forged)]`) filling the whole text before it. A delivery line
/// ends with the remote server's reply, which a server the attacker runs fills at will
/// (cross-rule blame, issue 14): that is not a notice.
#[test]
fn a_remote_servers_reply_is_not_a_flood_notice() {
    check(
        &mut rule(),
        &[
            (
                "Nov 23 15:59:08 mx sm-mta[9]: 5ANFx1aa000014: to=<u@evil.example>, delay=00:00:01, xdelay=00:00:01, mailer=esmtp, pri=120000, relay=mx.evil.example. [203.0.113.9], dsn=4.0.0, stat=Deferred: 451 x [198.51.100.23]: possible SMTP attack: command=AUTH, count=9",
                None,
            ),
            (
                "Nov 23 15:59:08 mx sm-mta[9]: 5ANFx1aa000015: to=<u@evil.example>, delay=00:00:01, mailer=esmtp, pri=120000, relay=mx.evil.example. [203.0.113.9], dsn=4.0.0, stat=Deferred: 451 AUTH=server, relay=[198.51.100.24], authid=x",
                None,
            ),
            // A forged notice after a real one is not a client field.
            (
                "Nov 23 15:59:08 mx sm-mta[9]: 5ANFx1aa000013: [10.9.9.9]: possible SMTP attack: command=AUTH, count=5 [198.51.100.22]: possible SMTP attack: command=AUTH, count=5",
                None,
            ),
            (
                "Nov 23 15:59:08 mx sm-mta[9]: 5ANFx1aa000016: ident@h.example [198.51.100.25] (may be forged): possible SMTP attack: command=AUTH, count=6",
                Some(("198.51.100.25", None, 6, F)),
            ),
        ],
    );
}
