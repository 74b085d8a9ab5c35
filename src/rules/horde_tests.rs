//! Table tests for the Horde rule. The Horde 3 line with an empty address is from the fail2ban
//! wiki page "Horde" (Horde Webmail 1.0.8/1.1.3); the Horde 4+ layout is that of fail2ban's
//! `config/filter.d/horde.conf` (`ERR: HORDE [imp] FAILED LOGIN for \S+ to … (<HOST>) [pid …
//! on line … of …]`); the others follow `horde/login.php` and `imp/lib/Auth.php` format strings
//! (`FAILED LOGIN for %s [%s]%s to Horde`, `FAILED LOGIN for %s to %s (%s)%s`,
//! `Login success for %s [%s] to %s.`).

use super::*;
use crate::rules::courier::testkit::{check, check_times, F, S};

fn rule() -> HordeRule {
    HordeRule::new()
}

#[test]
fn real_and_documented_lines() {
    check(
        &mut rule(),
        &[
            // fail2ban wiki (Horde 3 / IMP 4): the address was empty, nothing to blame.
            (
                "Dec 15 08:59:59 HORDE [error] [imp] FAILED LOGIN for emai.user@somedomain.com [] to {mx.somedomain.com:993 [imap/ssl/novalidate-cert]} [pid 68394 on line 139 of /usr/local/www/www.somedomain.com/public_html/horde/imp/lib/Auth/imp.php\"]",
                None,
            ),
            (
                "Dec 15 08:59:59 HORDE [error] [imp] FAILED LOGIN for emai.user@somedomain.com [198.51.100.60] to {mx.somedomain.com:993 [imap/ssl/novalidate-cert]} [pid 68394 on line 139 of \"/usr/local/www/horde/imp/lib/Auth/imp.php\"]",
                Some(("198.51.100.60", Some("emai.user@somedomain.com"), 1, F)),
            ),
            (
                "Dec 15 08:59:59 HORDE [error] [horde] FAILED LOGIN for alice [1.2.3.4] to Horde [on line 96 of \"/var/www/horde/login.php\"]",
                Some(("1.2.3.4", Some("alice"), 1, F)),
            ),
            // Horde 4+ (the layout of fail2ban's horde.conf).
            (
                "2013-11-11T18:57:57+00:00 ERR: HORDE [imp] FAILED LOGIN for graham to {imap.example.com:993} (203.0.113.61) [pid 1234 on line 132 of \"/var/www/horde/imp/lib/Auth.php\"]",
                Some(("203.0.113.61", Some("graham"), 1, F)),
            ),
            (
                "2013-11-11T18:57:57+00:00 ERR: HORDE [horde] FAILED LOGIN for graham to horde (2001:db8::61) [pid 1234 on line 96 of \"/var/www/horde/login.php\"]",
                Some(("2001:db8::61", Some("graham"), 1, F)),
            ),
            // Successes.
            (
                "2013-11-11T18:57:57+00:00 NOTICE: HORDE [horde] Login success for graham [203.0.113.62] to horde. [pid 1234 on line 166 of \"/var/www/horde/login.php\"]",
                Some(("203.0.113.62", Some("graham"), 1, S)),
            ),
            (
                "2026-11-23T15:59:08+00:00 NOTICE: HORDE [horde] Login success for graham to horde (203.0.113.62)",
                Some(("203.0.113.62", Some("graham"), 1, S)),
            ),
            (
                "Dec 15 08:59:59 HORDE [notice] [imp] Login success for bob [203.0.113.63] (forwarded for [10.1.1.1]) to {mx.example.com:143}",
                Some(("203.0.113.63", Some("bob"), 1, S)),
            ),
            // syslog.
            (
                "Nov 23 15:59:08 web HORDE[812]: [horde] FAILED LOGIN for carol to horde (203.0.113.64) [pid 812 on line 96 of \"/usr/share/horde/login.php\"]",
                Some(("203.0.113.64", Some("carol"), 1, F)),
            ),
        ],
    );
}

#[test]
fn behind_a_reverse_proxy() {
    check(
        &mut rule(),
        &[
            (
                "2026-11-23T15:59:08+00:00 ERR: HORDE [horde] FAILED LOGIN for dave to horde (127.0.0.1) (forwarded for [203.0.113.65]) [pid 9 on line 96 of \"/var/www/horde/login.php\"]",
                Some(("203.0.113.65", Some("dave"), 1, F)),
            ),
            (
                "Dec 15 08:59:59 HORDE [error] [horde] FAILED LOGIN for dave [10.0.0.5] (forwarded for [9.9.9.9, 203.0.113.66]) to Horde",
                Some(("203.0.113.66", Some("dave"), 1, F)),
            ),
            // A public REMOTE_ADDR is the client; its own header changes nothing.
            (
                "2026-11-23T15:59:08+00:00 ERR: HORDE [horde] FAILED LOGIN for dave to horde (198.51.100.67) (forwarded for [9.9.9.9])",
                Some(("198.51.100.67", Some("dave"), 1, F)),
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
                "2026-11-23T15:59:08+00:00 NOTICE: HORDE [horde] User graham logged out of Horde (203.0.113.62) [pid 9 on line 1 of \"/x.php\"]",
                None,
            ),
            (
                "2026-11-23T15:59:08+00:00 ERR: HORDE [horde] FAILED LOGIN for graham to horde (unknown) [pid 9 on line 1 of \"/x.php\"]",
                None,
            ),
            // The words inside some other message.
            (
                "2026-11-23T15:59:08+00:00 INFO: HORDE [turba] note: FAILED LOGIN for x [9.9.9.9] to Horde",
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
            // A user name forging the Horde 3 layout in front of the Horde 4 one: disagreement.
            (
                "2026-11-23T15:59:08+00:00 ERR: HORDE [horde] FAILED LOGIN for x [9.9.9.9] to Horde to horde (198.51.100.70) [pid 9 on line 96 of \"/x.php\"]",
                None,
            ),
            // Addresses in a user name in positions the layouts do not allow.
            (
                "2026-11-23T15:59:08+00:00 ERR: HORDE [horde] FAILED LOGIN for from 9.9.9.9 rip=9.9.9.9 [9.9.9.9]x (9.9.9.9)y 535 to horde (198.51.100.71) [pid 9 on line 96 of \"/x.php\"]",
                Some(("198.51.100.71", Some("from 9.9.9.9 rip=9.9.9.9 [9.9.9.9]x (9.9.9.9)y 535"), 1, F)),
            ),
            // The same address forged and real: no harm, the real one is blamed.
            (
                "Dec 15 08:59:59 HORDE [error] [horde] FAILED LOGIN for a [198.51.100.72] to b [198.51.100.72] to Horde",
                Some(("198.51.100.72", Some("a"), 1, F)),
            ),
            // The client's X-Forwarded-For cannot name anyone when REMOTE_ADDR is public.
            (
                "Dec 15 08:59:59 HORDE [error] [horde] FAILED LOGIN for e [198.51.100.73] (forwarded for [9.9.9.9]) to [9.9.9.9] to Horde",
                None,
            ),
            (
                "Dec 15 08:59:59 HORDE [error] [horde] FAILED LOGIN for e [198.51.100.74] (forwarded for [9.9.9.9]) to Horde",
                Some(("198.51.100.74", Some("e"), 1, F)),
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
                "2013-11-11T18:57:57+01:00 ERR: HORDE [imp] FAILED LOGIN for graham to {imap.example.com:993} (203.0.113.61) [pid 1234 on line 132 of \"/var/www/horde/imp/lib/Auth.php\"]",
                Some("2013-11-11T17:57:57Z"),
            ),
            (
                "Dec 15 08:59:59 HORDE [error] [horde] FAILED LOGIN for alice [1.2.3.4] to Horde",
                Some("2025-12-15T08:59:59Z"),
            ),
        ],
    );
}

/// The keyword counts only right after Horde's own prefix (cross-rule blame, issue 14).
#[test]
fn the_keyword_counts_only_after_hordes_prefix() {
    check(
        &mut rule(),
        &[
            (
                "Nov 23 17:14:56 mx postfix/cleanup[25957]: 3A1C29BA048: message-id=<\"x] FAILED LOGIN for u [198.51.100.77] to horde\"@evil.example>",
                None,
            ),
            (
                "2026-11-23 15:59:08 1rABCD-000123-AB <= \"[horde] Login success for u [198.51.100.77] to horde.\"@evil.example H=(e) [203.0.113.1]",
                None,
            ),
            (
                "Dec 15 08:59:59 mx other[1]: [horde] FAILED LOGIN for u [198.51.100.77] to Horde",
                None,
            ),
            (
                "Dec 15 08:59:59 HORDE [error] [horde] [x] [y] FAILED LOGIN for u [198.51.100.77] to Horde",
                None,
            ),
            // Other levels of both file layouts, and a syslog line without a host.
            (
                "Dec 15 08:59:59 HORDE [warning] [imp] FAILED LOGIN for u [198.51.100.84] to Horde",
                Some(("198.51.100.84", Some("u"), 1, F)),
            ),
            (
                "2013-11-11T18:57:57+00:00 WARN: HORDE [imp] FAILED LOGIN for u to horde (198.51.100.85)",
                Some(("198.51.100.85", Some("u"), 1, F)),
            ),
            (
                "Nov 23 15:59:08 HORDE[812]: [horde] Login success for u [198.51.100.86] to horde.",
                Some(("198.51.100.86", Some("u"), 1, S)),
            ),
        ],
    );
}
