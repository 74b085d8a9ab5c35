//! Acting on the running agent: the administrator's decisions and the local control socket.
//!
//! - `decisions.rs`: silences, allows and acks, what they match, and `state_dir/decisions.json`;
//! - `incidents.rs`: what `authwatch incidents` shows of an open incident;
//! - `server.rs`: the agent's side of `state_dir/control.sock` (peer check, one JSON request
//!   per line, one JSON reply);
//! - `client.rs`: the commands' side: ask the agent, or, when none runs, record the change in
//!   `decisions.json` for its next start.
//!
//! Both sides change decisions through [`apply`], so a change means the same live and offline.

pub mod client;
pub mod decisions;
pub mod incidents;
pub mod server;

pub use decisions::{incident_id, Decisions, Target};
pub use incidents::IncidentView;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The socket in `state_dir`.
pub const SOCKET: &str = "control.sock";
/// Bytes of one request, at most: the longest valid one (an account of 256 bytes, a reason of
/// 200 characters) is well under 2 KB.
pub const MAX_REQUEST_BYTES: usize = 4096;

/// One request to the agent (one JSON object on one line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Send no mail for alerts about `target` (IP, CIDR, account) for `for_secs`.
    Silence {
        target: String,
        for_secs: u64,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        by: String,
    },
    /// Lift a silence.
    Unsilence { target: String },
    /// Stop counting hits from `target` (IP, CIDR), for `for_secs` or for good.
    Allow {
        target: String,
        #[serde(default)]
        for_secs: Option<u64>,
        #[serde(default)]
        by: String,
    },
    /// Remove an allow.
    Disallow { target: String },
    /// No repeat mail for the incident until it changes class.
    Ack {
        incident: String,
        #[serde(default)]
        by: String,
    },
    /// The open incidents.
    Incidents,
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    /// What was done, or what is wrong.
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incidents: Vec<IncidentView>,
}

impl Reply {
    pub fn ok(message: impl Into<String>) -> Reply {
        Reply {
            ok: true,
            message: message.into(),
            incidents: Vec::new(),
        }
    }

    pub fn error(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            message: message.into(),
            incidents: Vec::new(),
        }
    }
}

/// Longest duration accepted (ten years): beyond it a timestamp would overflow, and "for good"
/// is an allow without `--for`, or the config's allowlist.
pub const MAX_FOR_SECS: u64 = 10 * 366 * 24 * 3600;

fn until(now: Timestamp, secs: u64) -> Result<Timestamp, String> {
    if secs == 0 || secs > MAX_FOR_SECS {
        return Err(format!(
            "the duration must be above 0 and at most 10 years (got {secs}s)"
        ));
    }
    now.checked_add(jiff::SignedDuration::from_secs(secs as i64))
        .map_err(|e| e.to_string())
}

/// Who took a decision, for the record: the name the client gave (cut to 32 safe characters),
/// and the uid the socket saw, when known.
pub fn who(by: &str, uid: Option<u32>) -> String {
    let name: String = by
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
        .take(32)
        .collect();
    match (name.is_empty(), uid) {
        (true, Some(u)) => format!("uid {u}"),
        (false, Some(u)) => format!("{name} (uid {u})"),
        (true, None) => "unknown".into(),
        (false, None) => name,
    }
}

/// Apply a change to `d`; the message says what was done (the caller saves the file). Errors
/// say what is wrong with the request. `Incidents` is not a change (an error here).
pub fn apply(
    d: &mut Decisions,
    req: &Request,
    uid: Option<u32>,
    now: Timestamp,
    tz: &jiff::tz::TimeZone,
) -> Result<String, String> {
    let at = |t: Timestamp| crate::text::human_time(t, tz);
    match req {
        Request::Silence {
            target,
            for_secs,
            reason,
            by,
        } => {
            let t = Target::parse(target)?;
            let u = until(now, *for_secs)?;
            let shown = t.to_string();
            d.silence(t, u, reason.clone(), &who(by, uid), now)
                .map_err(|e| e.to_string())?;
            Ok(format!("silenced {shown} until {}", at(u)))
        }
        Request::Unsilence { target } => {
            let t = Target::parse(target)?;
            if d.unsilence(&t) {
                Ok(format!("silence of {t} lifted"))
            } else {
                Err(format!("{t} is not silenced"))
            }
        }
        Request::Allow {
            target,
            for_secs,
            by,
        } => {
            let net = decisions::parse_net(target)?;
            let u = for_secs.map(|s| until(now, s)).transpose()?;
            d.allow(net, u, &who(by, uid), now)
                .map_err(|e| e.to_string())?;
            let shown = decisions::net_text(&net);
            Ok(match u {
                Some(u) => format!(
                    "allowed {shown} until {}: its attempts are not counted",
                    at(u)
                ),
                None => format!("allowed {shown}: its attempts are not counted"),
            })
        }
        Request::Disallow { target } => {
            let net = decisions::parse_net(target)?;
            let shown = decisions::net_text(&net);
            if d.remove_allow(&net) {
                Ok(format!("allow of {shown} removed"))
            } else {
                Err(format!("{shown} is not allowed by `authwatch allow`"))
            }
        }
        Request::Ack { incident, by } => {
            d.ack(incident, &who(by, uid), now)
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "acked {incident}: no repeat mail until it changes class"
            ))
        }
        Request::Incidents => Err("not a change".into()),
    }
}
