//! `authwatch run`: load the config, with `--stdin` replace its sources by standard input
//! (optionally limited to some rules), and run the agent until it stops.

use super::{load, Exit};
use std::path::PathBuf;

/// `authwatch run [--config FILE] [--stdin [--service NAME]...]`.
pub fn command(config: Option<PathBuf>, stdin: bool, services: &[String]) -> Exit {
    let mut cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if stdin {
        // Lines come from the pipe only; the configured sources are not followed.
        let mut src = crate::config::SourceConfig::stdin();
        let known: Vec<String> = crate::rules::BUILTIN
            .iter()
            .map(|s| s.to_string())
            .chain(cfg.custom_rules.iter().map(|c| c.name().to_string()))
            .collect();
        for name in services.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            if !known.iter().any(|k| k == name) {
                eprintln!(
                    "authwatch: --service: unknown service {name:?}; known services: {}",
                    known.join(", ")
                );
                return Exit::Usage;
            }
            src.services.push(name.to_string());
        }
        cfg.sources = vec![src];
    }
    match crate::agent::run_blocking(cfg) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("authwatch: {e:#}");
            Exit::Runtime
        }
    }
}
