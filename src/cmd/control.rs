//! `authwatch silence | unsilence | allow | incidents | ack`: check what was typed (a clear
//! usage error naming the argument), then hand the request to the running agent over its
//! control socket, or, when none runs, record it in `decisions.json` for the next start
//! ([`crate::control::client`]).

use super::{load, Exit};
use crate::control::client::{self, Outcome};
use crate::control::decisions::{parse_incident_id, parse_net};
use crate::control::{incidents::format_incidents, Request, Target};
use std::path::PathBuf;

/// A duration as typed after `--for`, in seconds.
fn seconds(what: &str, s: &str) -> Result<u64, Exit> {
    match crate::text::parse_duration(s) {
        Ok(d) if d.as_secs() > 0 => Ok(d.as_secs()),
        Ok(_) => usage(what, &format!("--for {s}: give a duration above 0")),
        Err(e) => usage(what, &format!("--for: {e}")),
    }
}

fn usage<T>(what: &str, message: &str) -> Result<T, Exit> {
    eprintln!("authwatch {what}: {message}");
    Err(Exit::Usage)
}

/// Send a change (or record it) and print the outcome.
fn change(config: Option<PathBuf>, what: &str, req: Request) -> Exit {
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client::send(&cfg.state_dir, &req, &cfg.time_zone) {
        Ok(Outcome::Live(r)) if r.ok => {
            println!("{}", r.message);
            Exit::Ok
        }
        Ok(Outcome::Live(r)) => {
            eprintln!("authwatch {what}: {}", r.message);
            Exit::Runtime
        }
        Ok(Outcome::Recorded(m)) => {
            println!("{m}");
            Exit::Ok
        }
        Err(e) => {
            eprintln!("authwatch {what}: {e}");
            Exit::Runtime
        }
    }
}

fn run(f: impl FnOnce() -> Result<Exit, Exit>) -> Exit {
    f().unwrap_or_else(|e| e)
}

/// `authwatch silence TARGET [--for D] [--reason TEXT]`.
pub fn silence(
    config: Option<PathBuf>,
    target: &str,
    duration: &str,
    reason: Option<String>,
) -> Exit {
    run(|| {
        Target::parse(target).or_else(|e| usage("silence", &format!("TARGET: {e}")))?;
        let for_secs = seconds("silence", duration)?;
        let req = Request::Silence {
            target: target.to_string(),
            for_secs,
            // Kept to its stored length here, so a long text cannot make the request too long.
            reason: reason.map(|r| {
                r.chars()
                    .take(crate::control::decisions::MAX_REASON_CHARS)
                    .collect()
            }),
            by: client::user_name(),
        };
        Ok(change(config, "silence", req))
    })
}

/// `authwatch unsilence TARGET`.
pub fn unsilence(config: Option<PathBuf>, target: &str) -> Exit {
    run(|| {
        Target::parse(target).or_else(|e| usage("unsilence", &format!("TARGET: {e}")))?;
        let req = Request::Unsilence {
            target: target.to_string(),
        };
        Ok(change(config, "unsilence", req))
    })
}

/// `authwatch allow IP|CIDR [--for D] [--remove]`.
pub fn allow(config: Option<PathBuf>, target: &str, duration: Option<&str>, remove: bool) -> Exit {
    run(|| {
        parse_net(target).or_else(|e| usage("allow", &format!("IP|CIDR: {e}")))?;
        let req = if remove {
            Request::Disallow {
                target: target.to_string(),
            }
        } else {
            Request::Allow {
                target: target.to_string(),
                for_secs: duration.map(|d| seconds("allow", d)).transpose()?,
                by: client::user_name(),
            }
        };
        Ok(change(config, "allow", req))
    })
}

/// `authwatch ack INCIDENT`.
pub fn ack(config: Option<PathBuf>, incident: &str) -> Exit {
    run(|| {
        parse_incident_id(incident).or_else(|e| usage("ack", &format!("INCIDENT: {e}")))?;
        let req = Request::Ack {
            incident: incident.to_string(),
            by: client::user_name(),
        };
        Ok(change(config, "ack", req))
    })
}

/// `authwatch incidents [--json]`.
pub fn incidents(config: Option<PathBuf>, json: bool) -> Exit {
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client::send(&cfg.state_dir, &Request::Incidents, &cfg.time_zone) {
        Ok(Outcome::Live(r)) if r.ok => {
            if json {
                match serde_json::to_string_pretty(&r.incidents) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("authwatch incidents: {e}");
                        return Exit::Runtime;
                    }
                }
            } else {
                print!("{}", format_incidents(&r.incidents));
            }
            Exit::Ok
        }
        Ok(Outcome::Live(r)) => {
            eprintln!("authwatch incidents: {}", r.message);
            Exit::Runtime
        }
        Ok(Outcome::Recorded(_)) => Exit::Runtime,
        Err(e) => {
            eprintln!("authwatch incidents: {e}");
            Exit::Runtime
        }
    }
}

/// For `check`: the allowlist of the config and, beside it, the allows recorded by
/// `authwatch allow` (from `decisions.json`; a file that cannot be read says so).
pub fn allow_lines(cfg: &crate::config::Config) -> Vec<String> {
    use crate::control::decisions::net_text;
    let mut out: Vec<String> = cfg
        .allowlist
        .nets
        .iter()
        .map(|n| format!("allow {} (config allowlist)", net_text(n)))
        .collect();
    match crate::control::Decisions::load(&cfg.state_dir, jiff::Timestamp::now()) {
        Ok(d) => out.extend(d.allows.iter().map(|a| {
            let until = a
                .until
                .map(|u| format!(" until {}", crate::text::human_time(u, &cfg.time_zone)))
                .unwrap_or_default();
            format!(
                "allow {} (from `authwatch allow` by {}{until})",
                net_text(&a.net),
                a.by
            )
        })),
        Err(e) => out.push(format!("warning: {e}")),
    }
    out
}
