//! Table tests for the SquirrelMail rule. The real line is from fail2ban's
//! `fail2ban/tests/files/logs/squirrelmail`; the other shapes follow the squirrel_logger sample
//! config (`%6 [%1] %2 (%3) from %4: %7` for files, `Failed webmail login: by %2 (%3) at %4 on
//! %6: %7` and `Successful webmail login: …` for syslog).

use super::*;
use crate::rules::courier::testkit::{check, check_times, F, S};

fn rule() -> SquirrelmailRule {
    SquirrelmailRule::new()
}

#[test]
fn fail2ban_squirrelmail() {
    // fail2ban/tests/files/logs/squirrelmail
    check(
        &mut rule(),
        &[(
            "10/06/2013 15:50:41 [LOGIN_ERROR] dadas (mydomain.org) from 151.64.44.11: Unknown user or password incorrect.",
            Some(("151.64.44.11", Some("dadas"), 1, F)),
        )],
    );
}

#[test]
fn other_events_and_syslog() {
    check(
        &mut rule(),
        &[
            (
                "11/23/2026 15:59:08 [INVALID] alice@example.com (example.com) from 203.0.113.90: Unknown user or password incorrect.",
                Some(("203.0.113.90", Some("alice@example.com"), 1, F)),
            ),
            (
                "11/23/2026 15:59:08 [LOGIN] alice@example.com (example.com) from 2001:db8::90: ",
                Some(("2001:db8::90", Some("alice@example.com"), 1, S)),
            ),
            (
                "Nov 23 15:59:08 web squirrelmail: Failed webmail login: by bob (example.com) at 203.0.113.91 on 11/23/2026 15:59:08: Unknown user or password incorrect.",
                Some(("203.0.113.91", Some("bob"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 web php: Successful webmail login: by bob (example.com) at 203.0.113.91 on 11/23/2026 15:59:08: ",
                Some(("203.0.113.91", Some("bob"), 1, S)),
            ),
        ],
    );
}

#[test]
fn not_logins() {
    check(
        &mut rule(),
        &[
            (
                "11/23/2026 15:59:08 [LOGOUT] alice (example.com) from 203.0.113.90: ",
                None,
            ),
            (
                "11/23/2026 15:59:08 [TIMEOUT] alice (example.com) from 203.0.113.90: ",
                None,
            ),
            // $sl_namelookups: a host name, nobody to blame.
            (
                "11/23/2026 15:59:08 [LOGIN_ERROR] alice (example.com) from dsl.example.net: Unknown user or password incorrect.",
                None,
            ),
            (
                "Nov 23 15:59:08 web squirrelmail: Webmail logout: by bob (example.com) at 203.0.113.91 on 11/23/2026 15:59:08: ",
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
            // A forged "(d) from <ip>:" in the user name disagrees with the real one.
            (
                "11/23/2026 15:59:08 [LOGIN_ERROR] x (d) from 9.9.9.9: y (example.com) from 198.51.100.95: Unknown user or password incorrect.",
                None,
            ),
            // Forged "[LOGIN]" events after the real tag are user text.
            (
                "11/23/2026 15:59:08 [LOGIN_ERROR] [LOGIN] 9.9.9.9 from 9.9.9.9 rip=9.9.9.9 535 (example.com) from 198.51.100.96: Unknown user or password incorrect.",
                Some(("198.51.100.96", Some("[LOGIN] 9.9.9.9 from 9.9.9.9 rip=9.9.9.9 535"), 1, F)),
            ),
            // Something that is not an address in a candidate position: no blame.
            (
                "11/23/2026 15:59:08 [LOGIN_ERROR] x) from junk: (example.com) from 198.51.100.97: Unknown user or password incorrect.",
                None,
            ),
            (
                "Nov 23 15:59:08 web squirrelmail: Failed webmail login: by x (d) at 9.9.9.9 on 01/01/2020 00:00:00: (example.com) at 198.51.100.98 on 11/23/2026 15:59:08: Unknown user or password incorrect.",
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
                "10/06/2013 15:50:41 [LOGIN_ERROR] dadas (mydomain.org) from 151.64.44.11: Unknown user or password incorrect.",
                Some("2013-10-06T15:50:41Z"),
            ),
            (
                "Nov 23 15:59:08 web squirrelmail: Failed webmail login: by bob (example.com) at 203.0.113.91 on 01/01/2020 00:00:00: x",
                Some("2026-11-23T15:59:08Z"),
            ),
        ],
    );
}

/// The event tag counts only right after the date (cross-rule blame, issue 14): anywhere
/// else it is some other text, such as the quoted sender of an Exim line.
#[test]
fn the_event_tag_counts_only_right_after_the_date() {
    check(
        &mut rule(),
        &[
            // `$sl_dateformat` examples of the sample config, and a two-digit year.
            (
                "Sat Mar 10 2001 15:16:08 CDT [LOGIN_ERROR] u (d) from 198.51.100.81: Unknown user or password incorrect.",
                Some(("198.51.100.81", Some("u"), 1, F)),
            ),
            (
                "March 10, 2001, 5:16 pm [LOGIN] u (d) from 198.51.100.82: ",
                Some(("198.51.100.82", Some("u"), 1, S)),
            ),
            (
                "03/10/01 05:16:08 [INVALID] u (d) from 198.51.100.83: x",
                Some(("198.51.100.83", Some("u"), 1, F)),
            ),
            // Other services' lines holding the tag.
            (
                "2026-11-23 15:59:08 1rABCD-000123-AB <= \"a [LOGIN_ERROR] u (d) from 198.51.100.77: c\"@evil.example H=(e) [203.0.113.1] P=esmtp S=1",
                None,
            ),
            (
                "Nov 23 17:14:56 mx postfix/cleanup[1]: 3A1C29BA048: message-id=a [LOGIN] u (d) from 198.51.100.77: c",
                None,
            ),
            (
                "10/06/2013 15:50:41 x [LOGIN_ERROR] u (d) from 198.51.100.77: c",
                None,
            ),
            ("[LOGIN_ERROR] u (d) from 198.51.100.77: c", None),
            // The syslog form: the words open the message of the tag.
            (
                "Nov 23 15:59:08 web squirrelmail: x Failed webmail login: by u (d) at 198.51.100.77 on 11/23/2026 15:59:08: c",
                None,
            ),
            // Exim's rejectlog writes message headers flag first and without a stamp.
            (
                "F From: Failed webmail login: by u (d) at 198.51.100.77 on 11/23/2026 15:59:08: c",
                None,
            ),
        ],
    );
}
