//! Table tests for the SOGo rule. Real lines are from fail2ban's
//! `fail2ban/tests/files/logs/sogo-auth` (and the `192.0.2.16, 10.0.0.1` proxy line of its
//! filter tests); the success line follows `SOGoRootPage.m` (`successful login from '%@' for user
//! '%@' - expire = %d  grace = %d`).

use super::*;
use crate::rules::courier::testkit::{check, check_times, F, S};

fn rule() -> SogoRule {
    SogoRule::new()
}

#[test]
fn fail2ban_sogo_auth() {
    // fail2ban/tests/files/logs/sogo-auth: LDAP and access-log lines around each failure are
    // not logins.
    check(
        &mut rule(),
        &[
            (
                "Mar 24 08:58:32 sogod [26818]: <0x0xb8537990[LDAPSource]> <NSException: 0xb87c3008> NAME:LDAPException REASON:operation bind failed: Invalid credentials (0x31) INFO:{login = \"uid=hack0r,ou=users,dc=mail,dc=example,dc=org\"; }",
                None,
            ),
            (
                "Mar 24 08:58:32 sogod [26818]: SOGoRootPage Login from '173.194.44.31' for user 'hack0r' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
                Some(("173.194.44.31", Some("hack0r"), 1, F)),
            ),
            (
                "173.194.44.31 - - [24/Mar/2013:08:58:32 GMT] \"POST /SOGo/connect HTTP/1.1\" 403 34/38 0.311 - - 2M",
                None,
            ),
            (
                "Mar 24 08:58:40 sogod [26818]: SOGoRootPage Login from '173.194.44.31' for user 'kiddy' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
                Some(("173.194.44.31", Some("kiddy"), 1, F)),
            ),
            (
                "Mar 24 08:58:50 sogod [26818]: SOGoRootPage Login from '173.194.44.31' for user 'plsBanMe' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
                Some(("173.194.44.31", Some("plsBanMe"), 1, F)),
            ),
            (
                "Mar 24 08:58:59 sogod [26818]: SOGoRootPage Login from '173.194.44.31' for user 'root' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
                Some(("173.194.44.31", Some("root"), 1, F)),
            ),
            (
                "Mar 24 08:59:04 sogod [26818]: SOGoRootPage Login from '173.194.44.31' for user 'admin' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
                Some(("173.194.44.31", Some("admin"), 1, F)),
            ),
            // Behind a proxy: "client, proxy".
            (
                "Mar 24 08:59:04 sogod [26818]: SOGoRootPage Login from '173.194.44.31, 10.0.0.1' for user 'admin' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
                Some(("173.194.44.31", Some("admin"), 1, F)),
            ),
            (
                "Mar 24 19:29:32 sogod [1526]: SOGoRootPage Login from '192.0.2.16, 10.0.0.1' for user 'admin' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
                Some(("192.0.2.16", Some("admin"), 1, F)),
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
                "Nov 23 15:59:08 sogod [1526]: SOGoRootPage successful login from '203.0.113.40' for user 'alice' - expire = -1  grace = -1",
                Some(("203.0.113.40", Some("alice"), 1, S)),
            ),
            (
                "2026-11-23 15:59:08.123 sogod [1526]: SOGoRootPage successful login from '2001:db8::40, ::1' for user 'bob@example.com' - expire = -1  grace = -1",
                Some(("2001:db8::40", Some("bob@example.com"), 1, S)),
            ),
            // nginx set x-webobjects-remote-host to 127.0.0.1: that is all the log says.
            (
                "Nov 23 15:59:08 sogod [1526]: SOGoRootPage Login from '127.0.0.1' for user 'carol' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
                Some(("127.0.0.1", Some("carol"), 1, F)),
            ),
            // journald form of the tag.
            (
                "Nov 23 15:59:08 mail sogod[1526]: SOGoRootPage Login from '203.0.113.41' for user 'dave' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
                Some(("203.0.113.41", Some("dave"), 1, F)),
            ),
        ],
    );
}

#[test]
fn not_logins() {
    check(
        &mut rule(),
        &[
            // Old SOGo without the address: nothing to blame.
            (
                "Nov 23 15:59:08 sogod [1526]: SOGoRootPage Login for user 'carol' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
                None,
            ),
            (
                "Nov 23 15:59:08 sogod [1526]: SOGoRootPage successful login for user 'carol'",
                None,
            ),
            (
                "Nov 23 15:59:08 sogod [1526]: SOGoRootPage Login from 'unknown' for user 'carol' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
                None,
            ),
            (
                "Nov 23 15:59:08 sogod [1526]: SOGoRootPage Login from '203.0.113.42' for user 'carol'",
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
            // The user name forges a second boundary: the readings disagree, nobody is blamed.
            (
                "Nov 23 15:59:08 sogod [1]: SOGoRootPage Login from '198.51.100.50' for user 'x, 9.9.9.9' for user 'y' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
                None,
            ),
            // A user name with quotes and addresses that do not form a reading.
            (
                "Nov 23 15:59:08 sogod [1]: SOGoRootPage Login from '198.51.100.51' for user 'a' from '9.9.9.9' rip=9.9.9.9 535' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
                Some(("198.51.100.51", Some("a' from '9.9.9.9' rip=9.9.9.9 535"), 1, F)),
            ),
            // A client's X-Forwarded-For before the proxy's entry: the appended entry wins.
            (
                "Nov 23 15:59:08 sogod [1]: SOGoRootPage Login from '9.9.9.9, 198.51.100.52' for user 'z' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
                Some(("198.51.100.52", Some("z"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 sogod [1]: SOGoRootPage Login from 'junk 9.9.9.9, 198.51.100.53, 10.0.0.1' for user 'z' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
                Some(("198.51.100.53", Some("z"), 1, F)),
            ),
            // A forged boundary inside the forwarded header, whose reading disagrees.
            (
                "Nov 23 15:59:08 sogod [1]: SOGoRootPage Login from '9.9.9.9' for user 'q, 198.51.100.54' for user 'z' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
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
            "Mar 24 08:58:32 sogod [26818]: SOGoRootPage Login from '173.194.44.31' for user 'hack0r' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
            Some("2026-03-24T08:58:32Z"),
        )],
    );
}
