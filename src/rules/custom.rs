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
use memchr::memmem::Finder;
use regex::Regex;
use std::net::IpAddr;

/// A custom rule, compiled.
#[derive(Debug, Clone)]
pub struct CustomRule {
    name: &'static str,
    literal: Finder<'static>,
    regex: Regex,
    ip: usize,
    user: Option<usize>,
    time: Option<usize>,
    attempts: Option<usize>,
}

/// Why a custom rule cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomRuleError {
    /// The regex does not compile (message from the regex crate).
    Regex(String),
    /// The regex has no `(?P<ip>...)` group.
    NoIpGroup,
    /// The literal is empty.
    EmptyLiteral,
}

impl std::fmt::Display for CustomRuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CustomRuleError::Regex(e) => write!(f, "the regex does not compile: {e}"),
            CustomRuleError::NoIpGroup => {
                write!(f, "the regex needs a named group `ip`, e.g. (?P<ip>\\S+)")
            }
            CustomRuleError::EmptyLiteral => {
                write!(
                    f,
                    "must not be empty: give text that every matching line contains"
                )
            }
        }
    }
}

impl CustomRule {
    /// Compile a rule. `name` is kept for the life of the process (rules are few and made at
    /// config load).
    pub fn new(name: &str, literal: &str, regex: &str) -> Result<CustomRule, CustomRuleError> {
        if literal.is_empty() {
            return Err(CustomRuleError::EmptyLiteral);
        }
        let re = regex::RegexBuilder::new(regex)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| CustomRuleError::Regex(e.to_string()))?;
        let group = |g: &str| re.capture_names().position(|n| n == Some(g));
        let ip = group("ip").ok_or(CustomRuleError::NoIpGroup)?;
        Ok(CustomRule {
            name: super::intern_service(name),
            literal: Finder::new(literal.as_bytes()).into_owned(),
            ip,
            user: group("user"),
            time: group("time"),
            attempts: group("attempts"),
            regex: re,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

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
