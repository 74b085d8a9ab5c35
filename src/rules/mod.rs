//! Rules turn one log line into a [`Hit`]: who (IP, taken only from the position the server
//! writes it), which account, which service, how many attempts, and when (log time).
//! Rules know nothing of thresholds; `detect` does the counting.

use jiff::{tz::TimeZone, Timestamp};
use std::net::IpAddr;

pub mod exim;
pub mod time;

/// Whether the line reports a failed or a successful login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HitKind {
    Failure,
    Success,
}

/// One recognised event from one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Log time of the line, when the line carries a stamp we could read.
    pub time: Option<Timestamp>,
    /// The peer address, canonical (`::ffff:a.b.c.d` becomes IPv4).
    pub ip: IpAddr,
    /// The account tried, as the server logged it (attacker-chosen text), if any.
    pub user: Option<String>,
    /// Name of the service rule that matched, e.g. `exim`.
    pub service: &'static str,
    /// Number of attempts this line stands for (at least 1).
    pub attempts: u32,
    pub kind: HitKind,
}

/// What a rule needs besides the line: the zone for stamps that carry none, and "now" to infer
/// the year of yearless syslog stamps.
#[derive(Debug, Clone)]
pub struct ParseCtx {
    pub tz: TimeZone,
    pub now: Timestamp,
}

impl ParseCtx {
    pub fn new(tz: TimeZone, now: Timestamp) -> Self {
        ParseCtx { tz, now }
    }
}

/// Canonicalise an address: IPv4-mapped IPv6 becomes plain IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}
