//! The administrator's decisions taken with `authwatch silence | allow | ack`: silences (an IP,
//! a CIDR network or an account, until a time, with a reason and who took it), allows (an IP or
//! network whose hits are not counted, optionally until a time) and acks (an incident, by its
//! id, whose class is in the id: a new class is a new incident and mails again).
//!
//! This module owns what a decision means ([`Decisions::allows`], [`Decisions::silenced`],
//! [`Decisions::acked`]) and how it is kept: `state_dir/decisions.json`, versioned, written
//! atomically (temp file, fsync, rename), `0600`, never through a symbolic link (the private-file
//! helper of [`crate::state`]). Expired entries are dropped on load and on use. The number of
//! entries is capped ([`MAX_ENTRIES`]) with a clear error when full. The agent consults it
//! (engine hooks); the control socket and the offline commands change it.

use ipnet::IpNet;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The file in `state_dir`.
pub const FILE: &str = "decisions.json";
/// The layout written; another version is refused with a clear error, never guessed at.
pub const VERSION: u32 = 1;
/// Silences, allows and acks kept at most, together. Each is a decision a person typed; 10,000
/// is far more than anyone maintains by hand (a block list belongs in the firewall, or in the
/// config's allowlist), keeps the file under about 2 MB and every per-hit look-up of the allows
/// cheap; past it, a new decision is refused with a message saying what to do.
pub const MAX_ENTRIES: usize = 10_000;
/// How long an ack lasts at most: an incident quiet for a week that starts again is news.
pub const ACK_TTL_SECS: i64 = 7 * 24 * 3600;
/// Longest account name accepted as a target (longer ones are not names people type).
pub const MAX_ACCOUNT_LEN: usize = 256;
/// Longest reason kept.
pub const MAX_REASON_CHARS: usize = 200;

/// What a silence is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// An address (a /32 or /128) or a network.
    Net(IpNet),
    /// An account name as the alerts show it.
    Account(String),
}

impl Target {
    /// Parse what a person typed: an IP, a CIDR network, or an account name.
    pub fn parse(s: &str) -> Result<Target, String> {
        if let Ok(net) = parse_net(s) {
            return Ok(Target::Net(net));
        }
        if s.split_once('/')
            .is_some_and(|(addr, _)| addr.parse::<IpAddr>().is_ok())
        {
            // An address with a prefix: say what is wrong with it rather than take it as a name.
            parse_net(s)?;
        }
        check_account(s)?;
        Ok(Target::Account(s.to_string()))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Net(n) => write!(f, "{}", net_text(n)),
            Target::Account(a) => write!(f, "account {}", crate::text::inert(a)),
        }
    }
}

/// A network as people write it: a host range as the plain address.
pub fn net_text(n: &IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

/// Parse an IP (a host range) or a CIDR network. An IPv4-mapped IPv6 address is its IPv4
/// address; a network with host bits set is refused (naming the network meant).
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    match s.parse::<IpNet>() {
        Ok(n) if n.trunc() != n => Err(format!(
            "{s}: host bits are set; the network is {}",
            n.trunc()
        )),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "{:?} is not an IP address or a CIDR network (e.g. 203.0.113.7, 203.0.113.0/24, 2001:db8::/64)",
            crate::text::inert(s)
        )),
    }
}

fn check_account(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("the target is empty: give an IP, a CIDR network or an account".into());
    }
    if s.len() > MAX_ACCOUNT_LEN {
        return Err(format!(
            "the account name is {} bytes long; at most {MAX_ACCOUNT_LEN}",
            s.len()
        ));
    }
    if let Some(c) = s.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "{:?} is not an IP, a network or an account name: it contains {:?} (spaces and control characters are refused)",
            crate::text::inert(s),
            c
        ));
    }
    Ok(())
}

/// A silence: matching alerts send no mail (they are still counted, and listed as silenced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub target: Target,
    pub until: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub by: String,
    pub at: Timestamp,
}

/// An allow: hits from the network are not counted (like the config's allowlist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allow {
    pub net: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    pub by: String,
    pub at: Timestamp,
}

/// An ack: no repeat mail or digest line for the incident (its class is part of its id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub incident: String,
    /// The alert kind acked (`ip_burst`, ...), from the id.
    pub class: String,
    pub by: String,
    pub at: Timestamp,
}

/// Every decision, as kept in `decisions.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decisions {
    pub version: u32,
    #[serde(default)]
    pub silences: Vec<Silence>,
    #[serde(default)]
    pub allows: Vec<Allow>,
    #[serde(default)]
    pub acks: Vec<Ack>,
}

impl Default for Decisions {
    fn default() -> Self {
        Decisions {
            version: VERSION,
            silences: Vec::new(),
            allows: Vec::new(),
            acks: Vec::new(),
        }
    }
}

/// A decision that cannot be taken or kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error("{0}")]
    Invalid(String),
    #[error("{} decisions are kept already (the most: {MAX_ENTRIES}); remove some with `authwatch unsilence` / `authwatch allow --remove`, or put lasting ones into the config's allowlist", MAX_ENTRIES)]
    Full,
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

/// The alert kinds an incident id may start with.
pub const INCIDENT_KINDS: [&str; 4] = ["ip_burst", "subnet_burst", "account_attack", "compromised"];

/// The id of the incident of `kind` about `key` (an IP, a network, an account, `ip account`),
/// as `authwatch incidents` lists it and `authwatch ack` takes it: the kind, then a hash of the
/// key (FNV-1a: stable across versions and runs, unlike std's hasher). The kind is in the id,
/// so a new class of incident on the same address (a login after failures) is another id.
pub fn incident_id(kind: &str, key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{kind}-{:012x}", h & 0xffff_ffff_ffff)
}

/// Check an incident id as typed; returns its class (the alert kind).
pub fn parse_incident_id(id: &str) -> Result<&'static str, String> {
    let bad = || {
        format!(
            "{:?} is not an incident id (like ip_burst-0123456789ab; `authwatch incidents` lists them)",
            crate::text::inert(id)
        )
    };
    let (kind, hash) = id.rsplit_once('-').ok_or_else(bad)?;
    let kind = INCIDENT_KINDS
        .iter()
        .find(|k| **k == kind)
        .ok_or_else(bad)?;
    if hash.len() != 12
        || !hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(bad());
    }
    Ok(kind)
}

/// The address an alert's key names, if it names one (`compromised` keys are `ip account`).
fn key_ip(kind: &str, key: &str) -> Option<IpAddr> {
    match kind {
        "ip_burst" => key.parse().ok(),
        "compromised" => key.split(' ').next()?.parse().ok(),
        _ => None,
    }
}

impl Decisions {
    /// Read `state_dir/decisions.json` (none: no decisions), dropping expired entries.
    pub fn load(state_dir: &Path, now: Timestamp) -> Result<Decisions, DecisionError> {
        let path = state_dir.join(FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Decisions::default()),
            Err(e) => {
                return Err(DecisionError::File {
                    path,
                    message: format!("cannot read: {e}"),
                })
            }
        };
        Decisions::from_json(&bytes, now).map_err(|message| DecisionError::File { path, message })
    }

    /// Parse the file's content (see [`Decisions::load`]).
    pub fn from_json(bytes: &[u8], now: Timestamp) -> Result<Decisions, String> {
        #[derive(Deserialize)]
        struct Head {
            version: u32,
        }
        let head: Head = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a decisions file: {e} (move it away to start afresh)"))?;
        if head.version != VERSION {
            return Err(format!(
                "version {} is not the one this authwatch reads ({VERSION}); move it away to start afresh",
                head.version
            ));
        }
        let mut d: Decisions = serde_json::from_slice(bytes)
            .map_err(|e| format!("{e} (move it away to start afresh)"))?;
        d.prune(now);
        Ok(d)
    }

    /// Write `state_dir/decisions.json` atomically, `0600`. When `state_dir` belongs to
    /// another user (root records a decision for an agent that runs as `authwatch`), the file
    /// is given to that user, so that the agent can read it.
    pub fn save(&self, state_dir: &Path) -> Result<(), DecisionError> {
        let path = state_dir.join(FILE);
        let err = |e: std::io::Error| DecisionError::File {
            path: path.clone(),
            message: format!("cannot write: {e}"),
        };
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        let tmp = state_dir.join(format!(".{FILE}.tmp"));
        let mut f = crate::state::create_private(&tmp).map_err(err)?;
        {
            use std::os::unix::fs::MetadataExt;
            let dir = std::fs::metadata(state_dir).map_err(err)?;
            let mine = f.metadata().map_err(err)?;
            if dir.uid() != mine.uid() || dir.gid() != mine.gid() {
                // Only root may do this; another user gets the error, which says why.
                std::os::unix::fs::fchown(&f, Some(dir.uid()), Some(dir.gid())).map_err(err)?;
            }
        }
        use std::io::Write;
        f.write_all(&bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(err)
    }

    /// Drop expired silences and allows, and acks older than [`ACK_TTL_SECS`].
    pub fn prune(&mut self, now: Timestamp) {
        self.silences.retain(|s| s.until > now);
        self.allows.retain(|a| a.until.is_none_or(|u| u > now));
        let oldest = now.as_second() - ACK_TTL_SECS;
        self.acks.retain(|a| a.at.as_second() > oldest);
    }

    /// Entries kept.
    pub fn len(&self) -> usize {
        self.silences.len() + self.allows.len() + self.acks.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn room(&mut self, now: Timestamp) -> Result<(), DecisionError> {
        if self.len() >= MAX_ENTRIES {
            self.prune(now);
        }
        if self.len() >= MAX_ENTRIES {
            return Err(DecisionError::Full);
        }
        Ok(())
    }

    /// Silence `target` until `until` (replacing a silence of the same target).
    pub fn silence(
        &mut self,
        target: Target,
        until: Timestamp,
        reason: Option<String>,
        by: &str,
        now: Timestamp,
    ) -> Result<(), DecisionError> {
        if until <= now {
            return Err(DecisionError::Invalid(
                "the silence would already be over: give a duration above 0".into(),
            ));
        }
        let reason = reason.map(|r| r.chars().take(MAX_REASON_CHARS).collect::<String>());
        self.silences.retain(|s| s.target != target);
        self.room(now)?;
        self.silences.push(Silence {
            target,
            until,
            reason,
            by: by.to_string(),
            at: now,
        });
        Ok(())
    }

    /// Lift the silence of `target`; whether there was one.
    pub fn unsilence(&mut self, target: &Target) -> bool {
        let before = self.silences.len();
        self.silences.retain(|s| &s.target != target);
        self.silences.len() != before
    }

    /// Allow `net` (until `until`, or for good), replacing an allow of the same network.
    pub fn allow(
        &mut self,
        net: IpNet,
        until: Option<Timestamp>,
        by: &str,
        now: Timestamp,
    ) -> Result<(), DecisionError> {
        if until.is_some_and(|u| u <= now) {
            return Err(DecisionError::Invalid(
                "the allow would already be over: give a duration above 0".into(),
            ));
        }
        self.allows.retain(|a| a.net != net);
        self.room(now)?;
        self.allows.push(Allow {
            net,
            until,
            by: by.to_string(),
            at: now,
        });
        Ok(())
    }

    /// Remove the allow of `net`; whether there was one.
    pub fn remove_allow(&mut self, net: &IpNet) -> bool {
        let before = self.allows.len();
        self.allows.retain(|a| &a.net != net);
        self.allows.len() != before
    }

    /// Ack the incident `id` (checked with [`parse_incident_id`]).
    pub fn ack(&mut self, id: &str, by: &str, now: Timestamp) -> Result<(), DecisionError> {
        let class = parse_incident_id(id).map_err(DecisionError::Invalid)?;
        self.acks.retain(|a| a.incident != id);
        self.room(now)?;
        self.acks.push(Ack {
            incident: id.to_string(),
            class: class.to_string(),
            by: by.to_string(),
            at: now,
        });
        Ok(())
    }

    /// Whether hits from `ip` are not to be counted (an allow covers it and has not expired).
    pub fn allows(&self, ip: &IpAddr, now: Timestamp) -> Option<&Allow> {
        if self.allows.is_empty() {
            return None;
        }
        let ip = ip.to_canonical();
        self.allows
            .iter()
            .find(|a| a.net.contains(&ip) && a.until.is_none_or(|u| u > now))
    }

    /// The silence that keeps the alert of `kind` about `key` from mail, if any. An IP silence
    /// covers that address's alerts, a network silence the addresses and subnets inside it, an
    /// account silence the attacks on that account. A login after failures (`compromised`) is
    /// never silenced: it is the one alert that must always reach someone.
    pub fn silenced(&self, kind: &str, key: &str, now: Timestamp) -> Option<&Silence> {
        if self.silences.is_empty() || kind == "compromised" {
            return None;
        }
        let ip = key_ip(kind, key);
        let net: Option<IpNet> = if kind == "subnet_burst" {
            key.parse().ok()
        } else {
            None
        };
        self.silences
            .iter()
            .filter(|s| s.until > now)
            .find(|s| match &s.target {
                Target::Net(n) => {
                    ip.is_some_and(|ip| n.contains(&ip.to_canonical()))
                        || net.is_some_and(|m| n.contains(&m))
                }
                Target::Account(a) => {
                    kind == "account_attack" && (a == key || crate::text::inert(a) == key)
                }
            })
    }

    /// The ack of the incident of `kind` about `key`, if any.
    pub fn acked(&self, kind: &str, key: &str) -> Option<&Ack> {
        if self.acks.is_empty() {
            return None;
        }
        let id = incident_id(kind, key);
        self.acks
            .iter()
            .find(|a| a.incident == id && a.class == kind)
    }
}

#[cfg(test)]
#[path = "decisions_tests.rs"]
mod tests;
