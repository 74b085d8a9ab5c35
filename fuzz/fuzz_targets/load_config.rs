//! Arbitrary bytes as a config file: lossy UTF-8 (the loader reads text), then
//! `Config::from_yaml`, which must answer Ok or Err and never panic; errors are rendered the
//! way `authwatch check` prints them. Relative paths resolve against an empty folder, so the
//! result depends only on the input. A config that loads has its custom rules (regexes written
//! by the administrator) run over the input's own lines, so `CustomRule::parse` is fuzzed too.
//!
//! Fails on any panic, and on an `Err` that carries no issue or a rule hit that breaks `Hit`'s
//! documented invariants (the panic message then starts with "invariant:").
#![no_main]

use authwatch::config::Config;
use authwatch::rules::{canonical_ip, ParseCtx, RuleSet};
use jiff::{tz::TimeZone, Timestamp};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn base() -> &'static PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = std::env::temp_dir().join("authwatch-fuzz-empty");
        std::fs::create_dir_all(&dir).expect("make the fuzz base folder");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Config::from_yaml(&text, "fuzz.yaml", base()) {
        Ok(cfg) => {
            let _ = format!("{cfg:?}");
            if cfg.custom_rules.is_empty() {
                return;
            }
            let now: Timestamp = "2026-11-24T00:00:00Z".parse().expect("fixed timestamp");
            let ctx = ParseCtx::new(TimeZone::UTC, now);
            let mut set = RuleSet::for_services::<&str>(&[], &cfg.custom_rules);
            for line in text.split('\n') {
                if let Some(hit) = set.parse(line, &ctx) {
                    assert!(hit.attempts >= 1, "invariant: attempts >= 1, got {hit:?}");
                    assert_eq!(hit.ip, canonical_ip(hit.ip), "invariant: canonical ip");
                }
            }
        }
        Err(e) => {
            assert!(
                !e.issues.is_empty(),
                "invariant: a config error names at least one issue"
            );
            let _ = e.to_string();
        }
    }
});
