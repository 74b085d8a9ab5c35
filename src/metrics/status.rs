//! The status snapshot behind `authwatch status`: what the agent writes to
//! `state_dir/status.json` ([`write_status`]), reading it back ([`read_status`]) and showing it
//! to people ([`format_status_with`]), with text from outside made inert.

use crate::alert_kind::AlertKind;
use crate::text::inert;
use jiff::{tz::TimeZone, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::Duration;

/// Version of the status file format.
pub const STATUS_VERSION: u32 = 1;

/// What `authwatch status` shows; the agent writes it to `state_dir/status.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusSnapshot {
    #[serde(default = "status_version")]
    pub version: u32,
    /// When the agent wrote this.
    pub generated_at: Timestamp,
    /// The agent's process id.
    #[serde(default)]
    pub pid: u32,
    /// How often the agent rewrites the file; an older file means the agent is not running.
    #[serde(default)]
    pub interval_seconds: u64,
    pub sources: Vec<SourceHealth>,
    pub mail: MailHealth,
    /// Open incidents, most attempts first.
    pub incidents: Vec<IncidentLine>,
    /// How full the per-key maps are, and what their cap made the agent forget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<Tracking>,
    /// The fleet store as this agent sees it; `None`: local mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetHealth>,
}

/// The fleet store (issue 16) as this agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetHealth {
    /// The store's URL with the password masked (`redis://fleet:MASKED@10.0.0.5:6379`).
    pub store: String,
    /// This agent's name in the fleet.
    pub name: String,
    /// The store answers (thresholds apply to the fleet's totals); false: local thresholds.
    pub available: bool,
    /// How long the store has been failing, in seconds, when it is.
    #[serde(default)]
    pub down_seconds: Option<u64>,
    /// Hits waiting for the store (replayed when it answers).
    pub buffered: u64,
    /// Hits dropped since start because the replay buffer (`fleet.buffer`) was full.
    #[serde(default)]
    pub dropped: u64,
    /// Hits the store accepted since start.
    pub sent: u64,
}

/// The per-key maps of detection against their cap (`detect.max_tracked_ips`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracking {
    pub cap: u64,
    pub ips: u64,
    pub subnets: u64,
    pub accounts: u64,
    /// Keys evicted since start (and before, when restored), per map.
    pub evicted_ips: u64,
    pub evicted_subnets: u64,
    pub evicted_accounts: u64,
}

fn status_version() -> u32 {
    STATUS_VERSION
}

/// Health of one followed log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceHealth {
    pub name: String,
    pub ok: bool,
    /// `following`, `waiting for the file to appear`, `cannot read: Permission denied`, ...
    #[serde(default)]
    pub detail: String,
    /// Seconds behind (now minus the stamp of the last line read), when known.
    #[serde(default)]
    pub lag_seconds: Option<f64>,
    #[serde(default)]
    pub lines_read: u64,
}

/// Health of mail delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailHealth {
    /// `smtp.example.com:587 (starttls)` or `outbox /var/lib/authwatch/outbox`.
    pub target: String,
    /// Alerts waiting in the spool.
    pub spooled: u64,
    /// Alerts given up on (in `failed/`).
    #[serde(default)]
    pub failed: u64,
    /// The last delivery error, cleared by the next success.
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_delivered: Option<Timestamp>,
}

impl MailHealth {
    pub fn ok(&self) -> bool {
        self.last_error.is_none()
    }
}

/// One open incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentLine {
    /// What the incident is about: an IP, a network (`2001:db8:1::/64`) or an account
    /// (attacker-chosen text, made inert when shown).
    #[serde(alias = "ip")]
    pub key: String,
    /// `ip_burst`, `subnet_burst` or `account_attack` (empty in files from before kinds).
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub service: String,
    pub attempts: u64,
    pub since: Timestamp,
    pub last_seen: Timestamp,
    /// First and last attempt in log time, as the alerts show them (empty when not known,
    /// and in files from before): `status` shows them rather than the agent's clock.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub first_attempt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_attempt: String,
    #[serde(default)]
    pub alerts: u32,
}

impl StatusSnapshot {
    /// How old the snapshot is at `now` (zero if it is from the future).
    pub fn age(&self, now: Timestamp) -> Duration {
        let d = now.duration_since(self.generated_at);
        Duration::try_from(d).unwrap_or(Duration::ZERO)
    }

    /// Whether the agent has stopped rewriting the file: older than three intervals (and 10s).
    pub fn is_stale(&self, now: Timestamp) -> bool {
        let limit = Duration::from_secs(self.interval_seconds.saturating_mul(3).max(10));
        self.age(now) > limit
    }

    /// Every source, mail and the fleet store (in fleet mode) fine, and the snapshot fresh.
    pub fn is_healthy(&self, now: Timestamp) -> bool {
        !self.is_stale(now)
            && self.mail.ok()
            && self.sources.iter().all(|s| s.ok)
            && self.fleet.as_ref().is_none_or(|f| f.available)
    }
}

/// Write the snapshot atomically (temp file in the same folder, then rename).
pub fn write_status(path: &Path, snapshot: &StatusSnapshot) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(snapshot).map_err(io::Error::other)?;
    // 0600, never through a symbolic link (see `state::write_private`).
    crate::state::write_private(path, &json)
}

/// Read a snapshot written by [`write_status`].
pub fn read_status(path: &Path) -> io::Result<StatusSnapshot> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// A lag below this is shown as "caught up": the agent sets 0 when a source holds nothing
/// more, and a line read within the same second is not behind in any way people care about.
const CAUGHT_UP_SECONDS: f64 = 1.0;

/// Incidents listed by [`format_status`]; the rest are counted.
const MAX_INCIDENT_LINES: usize = 50;

/// The status for people, times in UTC, without staleness (see [`format_status_with`]).
pub fn format_status(snapshot: &StatusSnapshot) -> String {
    format_status_with(snapshot, &TimeZone::UTC, None)
}

fn time(t: Timestamp, tz: &TimeZone) -> String {
    crate::text::human_time(t, tz)
}

fn seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1}s")
    } else {
        crate::text::format_duration(Duration::from_secs_f64(s.clamp(0.0, 1e12)))
    }
}

/// The status for people: times in `tz`; with `now`, the snapshot's age and a warning when the
/// agent seems to have stopped. Text from outside (errors, details) is made inert.
pub fn format_status_with(
    snapshot: &StatusSnapshot,
    tz: &TimeZone,
    now: Option<Timestamp>,
) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "authwatch status written {}",
        time(snapshot.generated_at, tz)
    );
    if snapshot.pid != 0 {
        let _ = write!(out, " by pid {}", snapshot.pid);
    }
    if let Some(now) = now {
        let age = snapshot.age(now);
        let _ = write!(out, " ({} ago)", seconds(age.as_secs_f64()));
        if snapshot.is_stale(now) {
            out.push_str("\nWARNING: the status is stale; authwatch does not seem to be running");
        }
    }
    out.push_str("\n\nSources:\n");
    if snapshot.sources.is_empty() {
        out.push_str("  (none)\n");
    }
    let width = snapshot
        .sources
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(60);
    for s in &snapshot.sources {
        let lag = match s.lag_seconds {
            Some(l) if l < CAUGHT_UP_SECONDS => "caught up".into(),
            Some(l) => format!("lag {}", seconds(l)),
            None => "lag -".into(),
        };
        let _ = writeln!(
            out,
            "  {:<4}  {:<width$}  {:<10}  {}",
            if s.ok { "OK" } else { "FAIL" },
            inert(&s.name),
            lag,
            inert(&s.detail),
        );
    }
    let m = &snapshot.mail;
    let _ = write!(
        out,
        "\nMail: {}  {}, {} spooled",
        if m.ok() { "OK" } else { "FAIL" },
        inert(&m.target),
        m.spooled
    );
    if m.failed > 0 {
        let _ = write!(out, ", {} failed", m.failed);
    }
    if let Some(t) = m.last_delivered {
        let _ = write!(out, ", last delivered {}", time(t, tz));
    }
    out.push('\n');
    if let Some(e) = &m.last_error {
        let _ = writeln!(out, "  last error: {}", inert(e));
    }
    if let Some(f) = &snapshot.fleet {
        format_fleet(&mut out, f);
    }
    if let Some(t) = &snapshot.tracking {
        let _ = writeln!(
            out,
            "\nTracked: {} IPs, {} networks, {} accounts (cap {} each)",
            t.ips, t.subnets, t.accounts, t.cap
        );
        if t.evicted_ips + t.evicted_subnets + t.evicted_accounts > 0 {
            let _ = writeln!(
                out,
                "  forgotten because of the cap: {} IPs, {} networks, {} accounts (raise detect.max_tracked_ips if memory allows)",
                t.evicted_ips, t.evicted_subnets, t.evicted_accounts
            );
        }
    }
    let _ = writeln!(out, "\nOpen incidents: {}", snapshot.incidents.len());
    if !snapshot.incidents.is_empty() {
        let mut list: Vec<&IncidentLine> = snapshot.incidents.iter().collect();
        list.sort_by(|a, b| b.attempts.cmp(&a.attempts).then(a.key.cmp(&b.key)));
        let shown: Vec<String> = list
            .iter()
            .take(MAX_INCIDENT_LINES)
            .map(|i| inert(&i.key).chars().take(60).collect())
            .collect();
        let kw = shown
            .iter()
            .map(|k| k.chars().count())
            .max()
            .unwrap_or(8)
            .max(8);
        let _ = writeln!(
            out,
            "  {:<kw$}  {:<19}  {:>8}  {:<10}  {:<23}  LAST ATTEMPT",
            "INCIDENT", "KIND", "ATTEMPTS", "SERVICE", "FIRST ATTEMPT"
        );
        for (i, key) in list.iter().zip(&shown) {
            let _ = writeln!(
                out,
                "  {:<kw$}  {:<19}  {:>8}  {:<10}  {:<23}  {}",
                key,
                if i.kind.is_empty() {
                    "-".to_string()
                } else {
                    AlertKind::label_of(&inert(&i.kind))
                },
                i.attempts,
                inert(&i.service),
                if i.first_attempt.is_empty() {
                    time(i.since, tz)
                } else {
                    inert(&i.first_attempt)
                },
                if i.last_attempt.is_empty() {
                    time(i.last_seen, tz)
                } else {
                    inert(&i.last_attempt)
                },
            );
        }
        if list.len() > MAX_INCIDENT_LINES {
            let _ = writeln!(out, "  ... and {} more", list.len() - MAX_INCIDENT_LINES);
        }
    }
    out
}

/// The fleet part of the status: the store (password masked), this agent's name, whether the
/// store answers (and for how long it has not), and the hits sent, buffered and dropped.
fn format_fleet(out: &mut String, f: &FleetHealth) {
    let _ = write!(
        out,
        "\nFleet: {}  {} as {}, ",
        if f.available { "OK" } else { "FAIL" },
        inert(&f.store),
        inert(&f.name),
    );
    if f.available {
        out.push_str("available");
    } else {
        out.push_str("unavailable");
        match f.down_seconds {
            Some(0) => out.push_str(", down for less than 1s"),
            Some(d) => {
                let _ = write!(
                    out,
                    ", down for {}",
                    crate::text::format_duration(Duration::from_secs(d))
                );
            }
            None => {}
        }
    }
    let _ = write!(
        out,
        ", {} hits sent, {} buffered for replay",
        f.sent, f.buffered
    );
    if f.dropped > 0 {
        let _ = write!(out, ", {} dropped (buffer full)", f.dropped);
    }
    out.push('\n');
    if !f.available {
        out.push_str(
            "  detecting with this server's own thresholds until the store answers again\n",
        );
    }
}
