//! `authwatch status`: print what the running agent last wrote to `state_dir/status.json`
//! (sources, mail delivery, the fleet store in fleet mode, open incidents); a runtime error (1)
//! when something is unhealthy (a fleet store that does not answer counts) or the agent is not
//! running.

use super::{load, Exit};
use std::path::PathBuf;

/// `authwatch status [--config FILE]`.
pub fn command(config: Option<PathBuf>) -> Exit {
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let path = cfg.state_dir.join("status.json");
    match crate::metrics::read_status(&path) {
        Ok(s) => {
            let now = jiff::Timestamp::now();
            print!(
                "{}",
                crate::metrics::format_status_with(&s, &jiff::tz::TimeZone::system(), Some(now))
            );
            if s.is_healthy(now) {
                Exit::Ok
            } else {
                Exit::Runtime
            }
        }
        Err(e) => {
            eprintln!(
                "authwatch: cannot read {}: {e} (is the agent running with this config?)",
                path.display()
            );
            Exit::Runtime
        }
    }
}
