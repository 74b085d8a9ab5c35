//! Table tests for the Roundcube rule. Real lines are from fail2ban's
//! `fail2ban/tests/files/logs/roundcube-auth` (including its hand-made injection lines); the
//! success, header and stdout shapes follow `rcmail::log_login()`, `rcube_utils::remote_ip()` and
//! `rcube::write_log()`.

use super::*;
use crate::rules::courier::testkit::{check, check_times, Want, F, S};

fn rule() -> RoundcubeRule {
    RoundcubeRule::new()
}

#[test]
fn fail2ban_roundcube_auth() {
    // fail2ban/tests/files/logs/roundcube-auth
    check(
        &mut rule(),
        &[
            (
                "[22-Jan-2013 22:28:21 +0200]: FAILED login for user1 from 192.0.43.10",
                Some(("192.0.43.10", Some("user1"), 1, F)),
            ),
            (
                "May 26 07:12:40 hamster roundcube: IMAP Error: Login failed for sales@example.com from 10.1.1.47",
                Some(("10.1.1.47", Some("sales@example.com"), 1, F)),
            ),
            (
                "Jul 11 03:06:37 myhostname roundcube: IMAP Error: Login failed for admin from 1.2.3.4. AUTHENTICATE PLAIN: A0002 NO Login failed. in /usr/share/roundcube/program/include/rcube_imap.php on line 205 (POST /wmail/?_task=login&_action=login)",
                Some(("1.2.3.4", Some("admin"), 1, F)),
            ),
            // fail2ban's "made up" injection lines: user "admin from 127.0.0.1".
            (
                "Jul 11 03:06:37 myhostname roundcube: IMAP Error: Login failed for admin from 127.0.0.1 from 1.2.3.4. AUTHENTICATE PLAIN: A0002 NO Login failed. in /usr/share/roundcube/program/include/rcube_imap.php on line 205 (POST /wmail/?_task=login&_action=login)",
                Some(("1.2.3.4", Some("admin from 127.0.0.1"), 1, F)),
            ),
            (
                "Jul 11 03:06:37 myhostname roundcube: IMAP Error: Login failed for admin from 127.0.0.1 from 1.2.3.4. AUTHENTICATE PLAIN: A0002 NO Login failed. user=admin from 127.0.0.1 in /usr/share/roundcube/program/include/rcube_imap.php on line 205 (POST /wmail/?_task=login&_action=login)",
                Some(("1.2.3.4", Some("admin from 127.0.0.1"), 1, F)),
            ),
            (
                "Jul 11 03:06:37 myhostname roundcube: IMAP Error: Login failed for admin from 127.0.0.1 from 1.2.3.4",
                Some(("1.2.3.4", Some("admin from 127.0.0.1"), 1, F)),
            ),
            (
                "Jul 11 03:06:37 myhostname roundcube: IMAP Error: Login failed for admin from 127.0.0.1 in from 1.2.3.4. AUTHENTICATE PLAIN: A0002 NO Login failed. user=admin from 127.0.0.1 in in /usr/share/roundcube/program/include/rcube_imap.php on line 205 (POST /wmail/?_task=login&_action=login)",
                Some(("1.2.3.4", Some("admin from 127.0.0.1 in"), 1, F)),
            ),
            // Roundcube 1.0.5 errors and userlogins.
            (
                "[30-Dec-2014 13:02:34 -0500]: IMAP Error: Login failed for admin@example.com from 1.2.3.4. AUTHENTICATE PLAIN: Authentication failed. in /docroot/path/program/lib/Roundcube/rcube_imap.php on line 184 (POST /?_task=login?_task=login&_action=login)",
                Some(("1.2.3.4", Some("admin@example.com"), 1, F)),
            ),
            (
                "[10-May-2015 13:02:52 -0400]: Failed login for sampleuser from 1.2.3.4 in session 1z506z6rvddstv6k7jz08hxo27 (error: 0)",
                Some(("1.2.3.4", Some("sampleuser"), 1, F)),
            ),
            (
                "[10-May-2015 13:02:52 -0400]: Failed login for foo.bar-admin@some-thing.example.com from 1.2.3.4 in session 2z506z6rvddstv6k7jz08hxo27 (error: 0)",
                Some(("1.2.3.4", Some("foo.bar-admin@some-thing.example.com"), 1, F)),
            ),
            // Roundcube 1.1.1 with the session prefix.
            (
                "[30-Dec-2014 13:02:34 -0500]: <3z506z6r> IMAP Error: Login failed for admin@example.com from 1.2.3.4. AUTHENTICATE PLAIN: Authentication failed. in /docroot/path/program/lib/Roundcube/rcube_imap.php on line 198 (POST /?_task=login?_task=login&_action=login)",
                Some(("1.2.3.4", Some("admin@example.com"), 1, F)),
            ),
            (
                "[10-May-2015 13:02:52 -0400]: <4z506z6r> Failed login for admin@example.com from 1.2.3.4 in session 4z506z6rvddstv6k7jz08hxo27 (error: 0)",
                Some(("1.2.3.4", Some("admin@example.com"), 1, F)),
            ),
        ],
    );
}

#[test]
fn newer_shapes_and_success() {
    check(
        &mut rule(),
        &[
            (
                "[23-Nov-2026 15:59:08 +0100]: <a1b2c3d4> Successful login for alice@example.com (ID: 7) from 203.0.113.10 in session a1b2c3d4e5f60718",
                Some(("203.0.113.10", Some("alice@example.com"), 1, S)),
            ),
            (
                "[23-Nov-2026 15:59:08 +0100]: <a1b2c3d4> Failed login for alice from 2001:db8::10 in session a1b2c3d4e5f60718 (error: 2)",
                Some(("2001:db8::10", Some("alice"), 1, F)),
            ),
            // 1.6 errors log: "against <host>".
            (
                "[23-Nov-2026 15:59:08 +0100]: <a1b2c3d4> IMAP Error: Login failed for bob against imap.example.com from 203.0.113.11. LOGIN: Authentication failed. in /var/www/roundcube/program/lib/Roundcube/rcube_imap.php on line 211 (POST /?_task=login&_action=login)",
                Some(("203.0.113.11", Some("bob"), 1, F)),
            ),
            // syslog and stdout log drivers.
            (
                "Nov 23 15:59:08 web roundcube: <a1b2c3d4> Failed login for carol from 203.0.113.12 in session a1b2c3d4e5f60718 (error: 0)",
                Some(("203.0.113.12", Some("carol"), 1, F)),
            ),
            (
                "userlogins: <a1b2c3d4> Failed login for carol from 203.0.113.12 in session a1b2c3d4e5f60718 (error: 0)",
                Some(("203.0.113.12", Some("carol"), 1, F)),
            ),
            // Behind a reverse proxy: REMOTE_ADDR is the proxy; the proxy appended the client.
            (
                "[23-Nov-2026 15:59:08 +0100]: <a1b2c3d4> Failed login for dave from 127.0.0.1 (X-Real-IP: 203.0.113.13,X-Forwarded-For: 203.0.113.13) in session a1b2c3d4e5f60718 (error: 0)",
                Some(("203.0.113.13", Some("dave"), 1, F)),
            ),
            (
                "[23-Nov-2026 15:59:08 +0100]: Failed login for dave from 10.0.0.2 (X-Forwarded-For: 9.9.9.9, 203.0.113.14) in session a1b2c3d4e5f60718 (error: 0)",
                Some(("203.0.113.14", Some("dave"), 1, F)),
            ),
            // A public REMOTE_ADDR is the client itself: its headers are its own words.
            (
                "[23-Nov-2026 15:59:08 +0100]: Failed login for dave from 198.51.100.15 (X-Forwarded-For: 9.9.9.9) in session a1b2c3d4e5f60718 (error: 0)",
                Some(("198.51.100.15", Some("dave"), 1, F)),
            ),
            // Older remote_ip() without the blank before the headers.
            (
                "[23-Nov-2026 15:59:08 +0100]: Failed login for dave from 198.51.100.16(X-Forwarded-For: 9.9.9.9) in session a1b2c3d4e5f60718",
                Some(("198.51.100.16", Some("dave"), 1, F)),
            ),
        ],
    );
}

#[test]
fn not_logins() {
    check(
        &mut rule(),
        &[
            // The IMAP server is down: users' logins fail, nobody is guessing.
            (
                "[23-Nov-2026 15:59:08 +0100]: <a1b2c3d4> IMAP Error: Login failed for alice against localhost from 203.0.113.20. Could not connect to ssl://localhost:993: Connection refused in /var/www/roundcube/program/lib/Roundcube/rcube_imap.php on line 211 (POST /?_task=login&_action=login)",
                None,
            ),
            (
                "[23-Nov-2026 15:59:08 +0100]: <a1b2c3d4> IMAP Error: Empty startup greeting (localhost:143) in /var/www/roundcube/program/lib/Roundcube/rcube_imap.php on line 211 (POST /?_task=login&_action=login)",
                None,
            ),
            (
                "[23-Nov-2026 15:59:08 +0100]: <a1b2c3d4> Failed login for alice from unknown in session a1b2c3d4e5f60718 (error: 0)",
                None,
            ),
            ("[23-Nov-2026 15:59:08 +0100]: <a1b2c3d4> Logout for alice", None),
            ("Nov 23 15:59:08 web app: a login for alice from 203.0.113.20", None),
        ],
    );
}

#[test]
fn hostile_text_never_moves_the_blame() {
    check(
        &mut rule(),
        &[
            // userlogins: the tail after the user name is Roundcube's.
            (
                "[23-Nov-2026 15:59:08 +0100]: Failed login for x from 10.9.9.9 in session 1 (error: 0) from 9.9.9.9 from 198.51.100.30 in session a1b2c3d4e5f60718 (error: 0)",
                Some(("198.51.100.30", Some("x from 10.9.9.9 in session 1 (error: 0) from 9.9.9.9"), 1, F)),
            ),
            (
                "[23-Nov-2026 15:59:08 +0100]: Failed login for [10.9.9.9] rip=9.9.9.9 535 from 2001:db8::31 in session a1b2c3d4e5f60718 (error: 0)",
                Some(("2001:db8::31", Some("[10.9.9.9] rip=9.9.9.9 535"), 1, F)),
            ),
            // Headers present: a user name forging "from <ip> (X-" disagrees with the real one.
            (
                "[23-Nov-2026 15:59:08 +0100]: Failed login for x from 9.9.9.9 (X-Forwarded-For: a) from 198.51.100.32 (X-Forwarded-For: b) in session a1b2c3d4e5f60718 (error: 0)",
                None,
            ),
            // A client's X-Forwarded-For cannot name anyone: behind the proxy the appended
            // entry is the rightmost.
            (
                "[23-Nov-2026 15:59:08 +0100]: Failed login for x from 127.0.0.1 (X-Forwarded-For: 9.9.9.9, 198.51.100.33) in session a1b2c3d4e5f60718 (error: 0)",
                Some(("198.51.100.33", Some("x"), 1, F)),
            ),
            (
                "[23-Nov-2026 15:59:08 +0100]: Failed login for x from 127.0.0.1 (X-Forwarded-For: 198.51.100.34 from 9.9.9.9) in session a1b2c3d4e5f60718 (error: 0)",
                Some(("127.0.0.1", Some("x"), 1, F)),
            ),
            // IMAP errors: user text and IMAP error text on both sides.
            (
                "[23-Nov-2026 15:59:08 +0100]: IMAP Error: Login failed for x from 9.9.9.9. LOGIN: y against h from 198.51.100.35. LOGIN: Authentication failed. in /r/rcube_imap.php on line 1 (POST /?_task=login)",
                None,
            ),
            (
                "[23-Nov-2026 15:59:08 +0100]: IMAP Error: Login failed for x against h from 198.51.100.36. AUTHENTICATE PLAIN: NO [AUTHENTICATIONFAILED] from 9.9.9.9. in /r/rcube_imap.php on line 1 (POST /?_task=login&u=from%209.9.9.9)",
                None,
            ),
            // A forged refused-login candidate cannot turn a connection error into a failure.
            (
                "[23-Nov-2026 15:59:08 +0100]: IMAP Error: Login failed for x from 9.9.9.9. LOGIN: a against h from 198.51.100.37. Could not connect to ssl://h:993 in /r/rcube_imap.php on line 1 (POST /)",
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
                "[10-May-2015 13:02:52 -0400]: Failed login for sampleuser from 1.2.3.4 in session 1z506z6rvddstv6k7jz08hxo27 (error: 0)",
                Some("2015-05-10T17:02:52Z"),
            ),
            (
                "[22-Jan-2013 22:28:21 +0200]: FAILED login for user1 from 192.0.43.10",
                Some("2013-01-22T20:28:21Z"),
            ),
            (
                "May 26 07:12:40 hamster roundcube: IMAP Error: Login failed for sales@example.com from 10.1.1.47",
                Some("2026-05-26T07:12:40Z"),
            ),
            // A custom log_date_format: no time, still a hit.
            (
                "[2026-11-23 15:59:08]: Failed login for a from 1.2.3.4 in session x (error: 0)",
                None,
            ),
        ],
    );
}

/// Issue 14 point 1: other services' lines carrying a Roundcube line inside attacker text (an
/// Exim quoted sender, HELO or set_id, a Postfix message-id or sender, a Dovecot user name, an
/// Exim syslog continuation record) give no hit, failure or success. Roundcube's messages are
/// read only at the start of its own file line (`[stamp]: `), of a syslog message tagged
/// `roundcube` (its default `syslog_id`), or of a bare `userlogins: `/`errors: ` stdout line.
#[test]
fn lines_of_other_services_carrying_roundcube_patterns_give_no_hit() {
    let texts = [
        "IMAP Error: Login failed for u against h from 198.51.100.7. LOGIN: Authentication failed.",
        "Login failed for u against h from 198.51.100.7",
        "Failed login for u from 198.51.100.7 in session abc (error: 0)",
        "Successful login for admin (ID: 1) from 198.51.100.7 in session abc",
        "FAILED login for u from 198.51.100.7",
    ];
    let mut lines = Vec::new();
    for t in texts {
        lines.extend([
            format!("2026-11-23 15:59:08 1xNIzQ-0009Mz-Ns <= \"{t}\"@evil.example H=(evil) [203.0.113.50] P=esmtp S=100"),
            format!("2026-11-23 15:59:08 1xNIzQ-0009Mz-Ns <= \"x: {t}\"@evil.example H=(evil) [203.0.113.50] P=esmtp S=100"),
            format!("Nov 23 15:59:08 mx1 exim[77]: 1xNIzQ-0009Mz-Ns <= \"roundcube: {t}\"@evil.example H=(evil) [203.0.113.50] P=esmtp S=100"),
            format!("Nov 23 15:59:08 mx1 exim[77]: [2\\2] {t}"),
            format!("Nov 23 15:59:08 mx1 exim[77]: [2\\2] roundcube: {t}"),
            format!("2026-11-23 15:59:08 PLAIN authenticator failed for ({t}) [203.0.113.50]: 535 Incorrect authentication data (set_id={t})"),
            format!("2026-11-23 15:59:08 SMTP call from (x) [203.0.113.50] dropped: too many syntax or protocol errors (last command was \"{t}\", C=EHLO)"),
            format!("Nov 23 15:59:08 mx1 postfix/cleanup[2231]: 4XyZ1p2Qr3z9: message-id=<\"{t}\"@x>"),
            format!("Nov 23 15:59:08 mx1 postfix/cleanup[2231]: 4XyZ1p2Qr3z9: message-id=<\"roundcube: {t}\"@x>"),
            format!("Nov 23 15:59:08 mx1 postfix/qmgr[880]: 4XyZ1p2Qr3z9: from=<\"{t}\"@evil.example>, size=812, nrcpt=1 (queue active)"),
            format!("Nov 23 15:59:08 mx1 postfix/smtpd[2230]: NOQUEUE: reject: RCPT from unknown[203.0.113.50]: 554 5.7.1 <a@b>: Relay access denied; from=<x@y> to=<a@b> proto=ESMTP helo=<{t}>"),
            format!("Nov 23 15:59:39 imap-login: Info: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 2 secs): user=<{t}>, method=PLAIN, rip=203.0.113.50, lip=192.0.2.1"),
            format!("Nov 23 15:59:39 mx1 dovecot: imap-login: Login: user=<{t}>, method=PLAIN, rip=203.0.113.50, lip=192.0.2.1"),
            format!("Nov 23 15:59:08 mx1 myapp[9]: {t}"),
            format!("Nov 23 15:59:08 mx1 myapp[9]: roundcube: {t}"),
        ]);
    }
    let table: Vec<(&str, Want)> = lines.iter().map(|l| (l.as_str(), None)).collect();
    check(&mut rule(), &table);
}

/// Issue 14 point 9: Roundcube 1.4+ shapes, from its sources.
/// - `rcmail::log_login()` (program/include/rcmail.php, 1.4-1.6): `sprintf('Failed login for %s
///   from %s in session %s (error: %d)', $user, rcube_utils::remote_ip(), $session_id,
///   $error_code)` and `'Successful login for %s (ID: %d) from %s in session %s'`, written with
///   `rcube::write_log('userlogins', …)`; the user is cut to 256 bytes + `...`, the session id
///   to 16 characters (`no-session` without one).
/// - `rcube_imap::connect()` (program/lib/Roundcube/rcube_imap.php): `sprintf("Login failed for
///   %s from %s. %s", $user, rcube_utils::remote_ip(), $this->conn->error)` raised as an
///   `imap` error (logged `IMAP Error: <message> in <file> on line <n> (<method> <uri>)`);
///   1.4+ adds ` against <host>` after the user.
/// - `rcube::write_log()`: file driver `[<date>]: <message>` (`log_date_format`, default
///   `d-M-Y H:i:s O`), with `<sessid8> ` in front of the message when a session exists;
///   syslog driver: the message alone under ident `roundcube`; stdout: `<name>: <message>`.
#[test]
fn roundcube_1_4_shapes() {
    check(
        &mut rule(),
        &[
            (
                "[23-Nov-2026 15:59:08 +0000]: <a1b2c3d4> IMAP Error: Login failed for alice against localhost from 203.0.113.5. AUTHENTICATE PLAIN: A0002 NO [AUTHENTICATIONFAILED] Authentication failed. in /usr/share/roundcube/program/lib/Roundcube/rcube_imap.php on line 211 (POST /?_task=login&_action=login)",
                Some(("203.0.113.5", Some("alice"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 web roundcube: <a1b2c3d4> IMAP Error: Login failed for alice against imap.example.com from 203.0.113.5. LOGIN: Authentication failed. in /usr/share/roundcube/program/lib/Roundcube/rcube_imap.php on line 211 (POST /?_task=login&_action=login)",
                Some(("203.0.113.5", Some("alice"), 1, F)),
            ),
            (
                "errors: <a1b2c3d4> IMAP Error: Login failed for alice against localhost from 203.0.113.5. LOGIN: Authentication failed. in /r/rcube_imap.php on line 211 (POST /?_task=login&_action=login)",
                Some(("203.0.113.5", Some("alice"), 1, F)),
            ),
            (
                "[23-Nov-2026 15:59:08 +0000]: <a1b2c3d4> Failed login for alice from 203.0.113.5 in session a1b2c3d4e5f60718 (error: 0)",
                Some(("203.0.113.5", Some("alice"), 1, F)),
            ),
            (
                "[23-Nov-2026 15:59:08 +0000]: Failed login for alice from 203.0.113.5 in session no-session (error: -1)",
                Some(("203.0.113.5", Some("alice"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 web roundcube: <a1b2c3d4> Failed login for alice from 203.0.113.5 in session a1b2c3d4e5f60718 (error: 0)",
                Some(("203.0.113.5", Some("alice"), 1, F)),
            ),
            (
                "[23-Nov-2026 15:59:08 +0000]: <a1b2c3d4> Successful login for alice (ID: 12) from 203.0.113.5 in session a1b2c3d4e5f60718",
                Some(("203.0.113.5", Some("alice"), 1, S)),
            ),
            (
                "Nov 23 15:59:08 web roundcube: <a1b2c3d4> Successful login for alice (ID: 12) from 203.0.113.5 in session a1b2c3d4e5f60718",
                Some(("203.0.113.5", Some("alice"), 1, S)),
            ),
        ],
    );
}
