//! Table tests for the UW-IMAP rule. Real lines are from fail2ban's
//! `fail2ban/tests/files/logs/uwimap-auth` (themselves collected from mailing lists); the other
//! shapes follow c-client `server_login()` (`Login %s user=%.64s auth=%.64s host=%.80s`) and
//! imapd/ipop3d (`AUTHENTICATE %s failure host=%.80s`, `Login user=%.80s host=%.80s`,
//! `Auth user=%.80s host=%.80s nmsgs=%lu/%lu`, `Authenticated user=%.80s host=%.80s`).

use super::*;
use crate::rules::courier::testkit::{check, check_times, F, S};

fn rule() -> UwImapRule {
    UwImapRule::new()
}

#[test]
fn fail2ban_uwimap_auth() {
    // fail2ban/tests/files/logs/uwimap-auth
    check(
        &mut rule(),
        &[
            (
                "Jul 3 20:56:53 Linux2 imapd[666]: Login failed user=lizdy auth=lizdy host=h2066373.stratoserver.net [81.169.154.112]",
                Some(("81.169.154.112", Some("lizdy"), 1, F)),
            ),
            (
                "Jul 29 18:30:19 Linux2 ipop3d[25745]: Login failed user=info auth=info host=74-115-52-198-dedicated.multacom.com [198.52.115.74]",
                Some(("198.52.115.74", Some("info"), 1, F)),
            ),
            (
                "Jan 14 20:28:07 grog imapd[19343]: Login excessive login failures user=user auth=user host=74-115-52-198-dedicated.multacom.com [198.52.115.74]",
                Some(("198.52.115.74", Some("user"), 1, F)),
            ),
            (
                "Apr 8 16:32:01 abdon imapd[29087]: Login excessive login failures user=brada auth=brada host=xxxxxx [198.52.115.74]",
                Some(("198.52.115.74", Some("brada"), 1, F)),
            ),
            (
                "Apr 8 16:32:01 abdon imapd[21172]: Login disabled user=test auth=test host=localhost.localdomain [127.0.0.1]",
                Some(("127.0.0.1", Some("test"), 1, F)),
            ),
            (
                "Feb 23 12:36:01 r2 imapd[3473]: Failed uwmaster override of user=pro1  host=r22.j.de [127.0.55.22] ",
                Some(("127.0.55.22", Some("pro1"), 1, F)),
            ),
        ],
    );
}

#[test]
fn other_failures_and_successes() {
    check(
        &mut rule(),
        &[
            (
                "Nov 23 15:59:08 mx imapd[100]: Login SYSTEM BREAK-IN ATTEMPT user=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa auth=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa host=[203.0.113.1]",
                Some(("203.0.113.1", Some("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx ipop3d[101]: Login failure user=root host=[203.0.113.2]",
                Some(("203.0.113.2", Some("root"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx ipop3d[101]: Excessive login attempts user=root host=[203.0.113.2]",
                Some(("203.0.113.2", Some("root"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx imapd[102]: System break-in attempt, host=scanner.example [203.0.113.3]",
                Some(("203.0.113.3", None, 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx imapd[102]: Authentication failure host=[203.0.113.3]",
                Some(("203.0.113.3", None, 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx imapd[103]: AUTHENTICATE CRAM-MD5 failure host=h.example [2001:db8::3]",
                Some(("2001:db8::3", None, 1, F)),
            ),
            // Successes.
            (
                "Nov 23 15:59:08 mx imapd[104]: Login user=alice host=h.example [203.0.113.4]",
                Some(("203.0.113.4", Some("alice"), 1, S)),
            ),
            (
                "Nov 23 15:59:08 mx ipop3d[105]: Login user=alice host=h.example [203.0.113.4] nmsgs=3/12",
                Some(("203.0.113.4", Some("alice"), 1, S)),
            ),
            (
                "Nov 23 15:59:08 mx ipop3d[105]: Auth user=alice host=[203.0.113.4] no mailbox",
                Some(("203.0.113.4", Some("alice"), 1, S)),
            ),
            (
                "Nov 23 15:59:08 mx imapd[106]: Authenticated user=bob host=h.example [::ffff:203.0.113.5] mech=PLAIN",
                Some(("203.0.113.5", Some("bob"), 1, S)),
            ),
        ],
    );
}

#[test]
fn authenticate_line_repeating_a_login_failure_counts_once() {
    check(
        &mut rule(),
        &[
            // AUTHENTICATE PLAIN: server_login() logs, then imapd logs the AUTHENTICATE failure.
            (
                "Nov 23 15:59:08 mx imapd[200]: Login failed user=carol auth=carol host=[203.0.113.6]",
                Some(("203.0.113.6", Some("carol"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx imapd[200]: AUTHENTICATE PLAIN failure host=[203.0.113.6]",
                None,
            ),
            // A second AUTHENTICATE failure of the same process without a Login line (CRAM-MD5).
            (
                "Nov 23 15:59:11 mx imapd[200]: AUTHENTICATE CRAM-MD5 failure host=[203.0.113.6]",
                Some(("203.0.113.6", None, 1, F)),
            ),
            // Another process from the same address is another session.
            (
                "Nov 23 15:59:12 mx imapd[201]: AUTHENTICATE LOGIN failure host=[203.0.113.6]",
                Some(("203.0.113.6", None, 1, F)),
            ),
        ],
    );
}

#[test]
fn not_logins() {
    check(
        &mut rule(),
        &[
            ("Nov 23 15:59:08 mx imapd[1]: Logout user=alice host=h.example [203.0.113.4]", None),
            ("Nov 23 15:59:08 mx imapd[1]: Autologout user=alice host=h.example [203.0.113.4]", None),
            ("Nov 23 15:59:08 mx imapd[1]: AUTHENTICATE FOO invalid host=[203.0.113.4]", None),
            ("Nov 23 15:59:08 mx imapd[1]: Login failed user=a auth=a host=UNKNOWN", None),
            (
                "Nov 23 15:59:08 mx imapd[1]: Login failed user=a auth=a host=SSH_CLIENT=203.0.113.4",
                None,
            ),
            ("Nov 23 15:59:08 mx imapd[1]: imap service init from 203.0.113.4", None),
            // host=%.80s cut the field: no closing bracket, nothing blamed.
            (
                "Nov 23 15:59:08 mx imapd[1]: Login failed user=a [10.9.9.9] auth=a host=a-very-long-name.example [203.0.1",
                None,
            ),
        ],
    );
}

#[test]
fn hostile_user_names_never_move_the_blame() {
    check(
        &mut rule(),
        &[
            (
                "Nov 23 15:59:08 mx imapd[9]: Login failed user=x host=e [10.9.9.9] auth=y host=h.example [198.51.100.30]",
                Some(("198.51.100.30", Some("x host=e [10.9.9.9]"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 mx imapd[9]: Login failed user=from 9.9.9.9 rip=9.9.9.9 535 auth=from 9.9.9.9 host=[198.51.100.31]",
                Some(("198.51.100.31", Some("from 9.9.9.9 rip=9.9.9.9 535"), 1, F)),
            ),
            // A forged host field at the end of the user name, but the server's own field is
            // the last one.
            (
                "Nov 23 15:59:08 mx imapd[9]: Login failure user=a host=[10.9.9.9] host=[198.51.100.32]",
                Some(("198.51.100.32", Some("a host=[10.9.9.9]"), 1, F)),
            ),
            // A host name with a bracket in it is not a resolver's name.
            (
                "Nov 23 15:59:08 mx imapd[9]: Login failed user=a auth=a host=evil[10.9.9.9] [198.51.100.33]",
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
            "Jul 29 18:30:19 Linux2 ipop3d[25745]: Login failed user=info auth=info host=74-115-52-198-dedicated.multacom.com [198.52.115.74]",
            Some("2026-07-29T18:30:19Z"),
        )],
    );
}
