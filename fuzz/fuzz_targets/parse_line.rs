//! Arbitrary bytes as log text: lossy UTF-8, split into lines the way the follower hands them
//! over (no newline), each line offered to every built-in rule on its own, to the whole
//! `RuleSet::all_builtin()` (first match wins, as in `authwatch run`), and to the stamp reader
//! `parse_leading_time`, under one of a few fixed contexts (zone and "now"). Rules are made
//! anew for each input, so a crash replays from its input alone even for rules that keep
//! state (Dovecot, OpenSMTPD, sendmail pair lines of one session).
//!
//! Fails on any panic, and on a broken documented invariant of `Hit` or `parse_leading_time`
//! (the panic message then starts with "invariant:").
#![no_main]

use authwatch::rules::{self, time::parse_leading_time, Hit, ParseCtx, RuleSet, BUILTIN};
use jiff::{tz::TimeZone, Timestamp};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use std::sync::OnceLock;

fn contexts() -> &'static [ParseCtx] {
    static CTX: OnceLock<Vec<ParseCtx>> = OnceLock::new();
    CTX.get_or_init(|| {
        let ts = |s: &str| s.parse::<Timestamp>().expect("fixed timestamp");
        vec![
            // The rule tests' context.
            ParseCtx::new(TimeZone::UTC, ts("2026-11-24T00:00:00Z")),
            // A zone with DST gaps and folds (no tzdb needed), just after New Year, so yearless
            // syslog stamps of December go to the previous year.
            ParseCtx::new(
                TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").expect("fixed POSIX zone"),
                ts("2027-01-01T00:05:00Z"),
            ),
            // Just after a leap day, in a zone far from UTC.
            ParseCtx::new(
                TimeZone::posix("<-11>11").expect("fixed POSIX zone"),
                ts("2028-03-01T00:00:00Z"),
            ),
        ]
    })
}

fn check_hit(hit: &Hit, service: Option<&str>, line: &str) {
    assert!(
        hit.attempts >= 1,
        "invariant: attempts >= 1, got {hit:?} for {line:?}"
    );
    assert_eq!(
        hit.ip,
        rules::canonical_ip(hit.ip),
        "invariant: ip is canonical, got {hit:?} for {line:?}"
    );
    if let IpAddr::V6(v6) = hit.ip {
        assert!(
            v6.to_ipv4_mapped().is_none(),
            "invariant: no IPv4-mapped IPv6, got {hit:?} for {line:?}"
        );
    }
    if let Some(s) = service {
        assert_eq!(
            hit.service, s,
            "invariant: hit names its rule, for {line:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // One context per input, picked by length (no input byte is spent on it, so the seeds stay
    // plain log lines, and mutations that change the length try the same line in another zone).
    let all = contexts();
    let ctx = &all[data.len() % all.len()];
    // Fresh rules for each input (some keep bounded per-session state, preallocated).
    let mut set = RuleSet::all_builtin();
    let mut each: Vec<_> = BUILTIN
        .iter()
        .map(|n| rules::builtin(n).expect("every BUILTIN name has a rule"))
        .collect();
    for line in text.split('\n') {
        let (time, rest) = parse_leading_time(line, ctx);
        assert!(
            line.ends_with(rest),
            "invariant: parse_leading_time returns a suffix of the line, for {line:?}"
        );
        if time.is_none() {
            assert_eq!(rest, line, "invariant: no stamp leaves the line whole");
        }
        if let Some(hit) = set.parse(line, ctx) {
            check_hit(&hit, None, line);
        }
        for rule in each.iter_mut() {
            let service = rule.service();
            if let Some(hit) = rule.parse(line, ctx) {
                check_hit(&hit, Some(service), line);
            }
        }
    }
});
