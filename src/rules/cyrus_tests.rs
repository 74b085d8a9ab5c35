//! Table tests for the Cyrus rule. Real lines are from fail2ban's
//! `fail2ban/tests/files/logs/cyrus-imap` and the `sieve` filter's test line; the 3.x and logfmt
//! shapes follow cyrus-imapd `imap/imapd.c` (`badlogin: %s plaintext (%s) [%s]`,
//! `badlogin: %s %s (%s) [%s]`, `login: %s %s%s %s%s User logged in SESSIONID=<%s>`) and
//! `imap/loginlog.c` + `lib/logfmt.c`.

use super::*;
use crate::rules::courier::testkit::{check, check_times, F, S};

fn rule() -> CyrusRule {
    CyrusRule::new()
}

#[test]
fn fail2ban_cyrus_imap() {
    // fail2ban/tests/files/logs/cyrus-imap (its stamps like "Jan 4 21:51:05" with one space
    // are not syslog's, so those lines carry no time; the hit is the same).
    check(
        &mut rule(),
        &[
            (
                "Jan 4 21:51:05 hostname cyrus/imap[5355]: badlogin: localhost.localdomain [127.0.0.1] plaintext cyrus@localdomain SASL(-13): authentication failure: checkpass failed",
                Some(("127.0.0.1", Some("cyrus@localdomain"), 1, F)),
            ),
            (
                "Jan 4 21:51:05 hostname cyrus/imaps[5355]: badlogin: localhost.localdomain [127.0.0.1] plaintext cyrus@localdomain SASL(-13): authentication failure: checkpass failed",
                Some(("127.0.0.1", Some("cyrus@localdomain"), 1, F)),
            ),
            (
                "Feb 20 17:23:32 domain cyrus/pop3[18635]: badlogin: localhost [198.51.100.23] plaintext administrator SASL(-13): authentication failure: checkpass failed",
                Some(("198.51.100.23", Some("administrator"), 1, F)),
            ),
            (
                "Feb 20 17:23:32 cyrus/pop3[4297]: badlogin: example.com [1.2.3.4] plaintext mail0001 SASL(-13): authentication failure: checkpass failed",
                Some(("1.2.3.4", Some("mail0001"), 1, F)),
            ),
            (
                "Jun 8 18:11:13 lampserver imap[4480]: badlogin: example.com [198.51.100.45] DIGEST-MD5 [SASL(-13): authentication failure: client response doesn't match what we generated]",
                Some(("198.51.100.45", None, 1, F)),
            ),
            (
                "Dec 21 10:01:57 hostname imapd[18454]: badlogin: example.com [198.51.100.57] CRAM-MD5 [SASL(-13): authentication failure: incorrect digest response]",
                Some(("198.51.100.57", None, 1, F)),
            ),
            (
                "Dec 30 16:03:27 somehost imapd[2517]: badlogin: local-somehost[1.2.3.4] OTP [SASL(-13): authentication failure: External SSF not good enough]",
                Some(("1.2.3.4", None, 1, F)),
            ),
            (
                "Jul 17 22:55:56 derry cyrus/imaps[7568]: badlogin: serafinat.xxxxxx [1.2.3.4] plain [SASL(-13): user not found: user: pressy@derry property: cmusaslsecretPLAIN not found in sasldb]",
                Some(("1.2.3.4", None, 1, F)),
            ),
            (
                "Jul 18 16:46:42 derry cyrus/imaps[27449]: badlogin: serafinat.xxxxxx [1.2.3.4] PLAIN [SASL(-13): user not found: Password verification failed]",
                Some(("1.2.3.4", None, 1, F)),
            ),
            // fail2ban filter.d/sieve.conf test line (timsieved).
            (
                "Dec 1 20:36:56 mail sieve[23713]: badlogin: example.com[1.2.3.4] PLAIN authentication failure",
                Some(("1.2.3.4", None, 1, F)),
            ),
        ],
    );
}

#[test]
fn cyrus_3_and_logfmt() {
    check(
        &mut rule(),
        &[
            (
                "Nov 23 15:59:08 mx cyrus/imap[3110]: badlogin: attacker.example [203.0.113.5] plaintext (alice) [SASL(-13): authentication failure: checkpass failed]",
                Some(("203.0.113.5", Some("alice"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx cyrus/imap[3110]: badlogin: [203.0.113.5] PLAIN (bob@example.com) [SASL(-13): authentication failure: Password verification failed]",
                Some(("203.0.113.5", Some("bob@example.com"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx cyrus/imap[3110]: badlogin: [203.0.113.5] LOGIN (-notset-) [SASL(-13): user not found: checkpass failed]",
                Some(("203.0.113.5", None, 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx cyrus/pop3[3110]: badlogin: [2001:db8::5] plaintext (carol) invalid user",
                Some(("2001:db8::5", Some("carol"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx cyrus/imap[3110]: badlogin: h.example [203.0.113.5] plaintext dave invalid user",
                Some(("203.0.113.5", Some("dave"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx cyrus/imap[3110]: badlogin: h.example [203.0.113.5] anonymous login refused",
                Some(("203.0.113.5", Some("anonymous"), 1, F)),
            ),
            // Cyrus 2.0 pop3d logged each failure as two lines: the result code one is skipped.
            (
                "Nov 23 15:59:08 mx pop3d[3110]: badlogin: h.example [203.0.113.5] PLAIN -13",
                None,
            ),
            (
                "Nov 23 15:59:08 mx pop3d[3110]: badlogin: h.example [203.0.113.5] PLAIN AGFsaWNlAHNlY3JldA==",
                Some(("203.0.113.5", None, 1, F)),
            ),
            // Cyrus 3.12+ logfmt.
            (
                "Nov 23 15:59:08 mx cyrus/imap[3110]: event=login.bad r.clienthost=\"h.example [203.0.113.6]\" u.username=erin login.mech=PLAIN error=\"authentication failure\"",
                Some(("203.0.113.6", Some("erin"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx cyrus/imap[3110]: event=login.bad r.clienthost=[::ffff:203.0.113.6] u.username=~null~ error=\"invalid user\"",
                Some(("203.0.113.6", None, 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx cyrus/imap[3110]: event=login.good session_id=<cyrus-1-2> r.clienthost=\"h.example [203.0.113.6]\" u.username=erin login.mech=plaintext login.tls=1",
                Some(("203.0.113.6", Some("erin"), 1, S)),
            ),
            // Successful logins, 2.x and 3.x.
            (
                "Nov 23 15:59:08 mx cyrus/imap[3110]: login: h.example [203.0.113.7] frank plaintext+TLS User logged in SESSIONID=<cyrus-3110-1>",
                Some(("203.0.113.7", Some("frank"), 1, S)),
            ),
            (
                "Nov 23 15:59:08 mx cyrus/imaps[3110]: login: [2001:db8::7] frank PLAIN+TLS User logged in SESSIONID=<cyrus-3110-1>",
                Some(("2001:db8::7", Some("frank"), 1, S)),
            ),
            (
                "Nov 23 15:59:08 mx cyrus/sieve[3110]: login: localhost [127.0.0.1] grace PLAIN User logged in",
                Some(("127.0.0.1", Some("grace"), 1, S)),
            ),
        ],
    );
}

#[test]
fn not_logins() {
    check(
        &mut rule(),
        &[
            // Other programs' "login:" lines.
            ("Nov 23 15:59:08 mx sshd[1]: login: h.example [203.0.113.7] root ssh2", None),
            ("Nov 23 15:59:08 mx login[1]: pam_unix(login:session): session opened", None),
            (
                "Nov 23 15:59:08 mx cyrus/imap[3110]: accepted connection",
                None,
            ),
            (
                "Nov 23 15:59:08 mx cyrus/imap[3110]: event=login.other r.clienthost=[203.0.113.6]",
                None,
            ),
            // Host names that are not names, addresses that are not addresses.
            (
                "Nov 23 15:59:08 mx cyrus/imap[3110]: badlogin: unknown plaintext alice SASL(-13): x",
                None,
            ),
            (
                "Nov 23 15:59:08 mx cyrus/imap[3110]: badlogin: h.example [999.0.0.1] plaintext alice SASL(-13): x",
                None,
            ),
            (
                "Nov 23 15:59:08 mx cyrus/imap[3110]: badlogin: [h.example] plaintext alice SASL(-13): x",
                None,
            ),
            ("Nov 23 15:59:08 mx cyrus/imap[3110]: badlogin: ", None),
        ],
    );
}

#[test]
fn hostile_names_never_move_the_blame() {
    check(
        &mut rule(),
        &[
            // The user sits after the address.
            (
                "Nov 23 15:59:08 mx cyrus/imap[1]: badlogin: h.example [198.51.100.1] plaintext (x) [10.9.9.9] ip=[10.9.9.9]) [SASL(-13): authentication failure: checkpass failed]",
                Some(("198.51.100.1", Some("x) [10.9.9.9] ip=[10.9.9.9]"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx cyrus/imap[1]: badlogin: [198.51.100.1] plaintext from 9.9.9.9 rip=9.9.9.9 535 SASL(-13): x",
                Some(("198.51.100.1", Some("from 9.9.9.9 rip=9.9.9.9 535"), 1, F)),
            ),
            // A crafted PTR name: brackets and spaces are not host names, so no blame at all.
            (
                "Nov 23 15:59:08 mx cyrus/imap[1]: badlogin: evil[10.9.9.9] [198.51.100.1] plaintext a SASL(-13): x",
                None,
            ),
            (
                "Nov 23 15:59:08 mx cyrus/imap[1]: badlogin: evil [10.9.9.9] [198.51.100.1] plaintext a SASL(-13): x",
                None,
            ),
            (
                "Nov 23 15:59:08 mx cyrus/imap[1]: badlogin: evil[10.9.9.9][198.51.100.1] plaintext a SASL(-13): x",
                None,
            ),
            // logfmt values are quoted and escaped: a user name cannot open a new field.
            (
                "Nov 23 15:59:08 mx cyrus/imap[1]: event=login.bad r.clienthost=\"[198.51.100.2]\" u.username=\"a\\\" r.clienthost=\\\"[10.9.9.9]\" error=x",
                Some(("198.51.100.2", Some("a\" r.clienthost=\"[10.9.9.9]"), 1, F)),
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
                "Feb 20 17:23:32 domain cyrus/pop3[18635]: badlogin: localhost [198.51.100.23] plaintext administrator SASL(-13): authentication failure: checkpass failed",
                Some("2026-02-20T17:23:32Z"),
            ),
            (
                "Dec 1 20:36:56 mail sieve[23713]: badlogin: example.com[1.2.3.4] PLAIN authentication failure",
                None,
            ),
        ],
    );
}
