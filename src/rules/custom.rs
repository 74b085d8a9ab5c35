//! Custom rules from the config: a regex with named groups `ip` (required), and optionally
//! `user`, `time` and `attempts`, plus a literal that every matching line contains. The literal
//! is searched first (memchr), so lines without it never reach the regex.
//!
//! The `ip` group must parse as an address (IPv4, IPv6, `::ffff:a.b.c.d` becomes IPv4); text
//! that does not is no hit. `time` is read like a leading stamp (Exim, syslog, RFC 3339,
//! TAI64N); without a `time` group the stamp at the start of the line is used. `attempts`
//! defaults to 1. A custom rule reports failures only.

use super::time::parse_leading_time;
use super::{canonical_ip, Hit, HitKind, ParseCtx, Rule};
use std::net::IpAddr;

/// The rule itself (checked and compiled when the config is loaded) is config's; this module
/// gives it its matching behaviour.
pub use crate::config::{CustomRule, CustomRuleError};

impl Rule for CustomRule {
    fn service(&self) -> &'static str {
        self.name
    }
    fn literals(&self) -> Option<Vec<Vec<u8>>> {
        Some(vec![self.literal.needle().to_vec()])
    }
    fn stateless(&self) -> bool {
        true
    }

    fn parse(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        self.literal.find(line.as_bytes())?;
        let caps = self.regex.captures(line)?;
        let ip: IpAddr = caps.get(self.ip)?.as_str().trim().parse().ok()?;
        let user = self
            .user
            .and_then(|g| caps.get(g))
            .map(|m| m.as_str().to_string())
            .filter(|u| !u.is_empty());
        let time = match self.time.and_then(|g| caps.get(g)) {
            Some(m) => parse_leading_time(m.as_str(), ctx).0,
            None => parse_leading_time(line, ctx).0,
        };
        let attempts = match self.attempts.and_then(|g| caps.get(g)) {
            Some(m) => m.as_str().trim().parse::<u32>().ok()?.max(1),
            None => 1,
        };
        Some(Hit {
            time,
            ip: canonical_ip(ip),
            user,
            service: self.name,
            attempts,
            kind: HitKind::Failure,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    fn ctx() -> ParseCtx {
        ParseCtx::new(TimeZone::UTC, "2026-11-23T12:00:00Z".parse().unwrap())
    }

    #[test]
    fn named_groups_fill_the_hit() {
        let mut r = CustomRule::new(
            "myapp",
            "login failed",
            r"login failed for (?P<user>\S+) from (?P<ip>[0-9a-fA-F:.]+) \((?P<attempts>\d+) tries\)",
        )
        .unwrap();
        let h = r
            .parse(
                "2026-11-23 10:00:00 myapp: login failed for bob from ::ffff:203.0.113.5 (3 tries)",
                &ctx(),
            )
            .unwrap();
        assert_eq!(h.ip.to_string(), "203.0.113.5");
        assert_eq!(h.user.as_deref(), Some("bob"));
        assert_eq!(h.attempts, 3);
        assert_eq!(h.service, "myapp");
        assert_eq!(h.time, Some("2026-11-23T10:00:00Z".parse().unwrap()));
    }

    #[test]
    fn time_group_and_non_ip_text() {
        let mut r =
            CustomRule::new("app2", "FAIL", r"^\S+ FAIL (?P<ip>\S+) at (?P<time>\S+)$").unwrap();
        let h = r
            .parse("x FAIL 198.51.100.1 at 2026-11-20T01:02:03+01:00", &ctx())
            .unwrap();
        assert_eq!(h.time, Some("2026-11-20T00:02:03Z".parse().unwrap()));
        assert_eq!(
            r.parse("x FAIL attacker.example at 2026-11-20T01:02:03Z", &ctx()),
            None
        );
        // Without the literal the regex is never tried.
        assert_eq!(
            r.parse("x fail 198.51.100.1 at 2026-11-20T01:02:03Z", &ctx()),
            None
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        assert_eq!(
            CustomRule::new("a", "x", r"from (?P<addr>\S+)").err(),
            Some(CustomRuleError::NoIpGroup)
        );
        assert_eq!(
            CustomRule::new("a", "", r"(?P<ip>\S+)").err(),
            Some(CustomRuleError::EmptyLiteral)
        );
        assert!(matches!(
            CustomRule::new("a", "x", r"(?P<ip>\S+"),
            Err(CustomRuleError::Regex(_))
        ));
    }
}
