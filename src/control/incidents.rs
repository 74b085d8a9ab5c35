//! What `authwatch incidents` shows of one open incident ([`IncidentView`]): its id (for
//! `authwatch ack`), kind (with a readable name), target, service, log times of the first and
//! last attempt, attempts, and what was done (actions' results, silenced, acked, mailed). The
//! engine keeps an [`IncidentInfo`] per open incident (bounded like the incidents) for the
//! parts the alert policy does not keep; [`format_incidents`] prints the list for people.

use crate::alert_kind::AlertKind;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// What the engine remembers of an incident beyond the policy's counts.
#[derive(Debug, Clone, Default)]
pub struct IncidentInfo {
    /// The rule that matched (`exim`, `dovecot`, ...).
    pub service: String,
    /// The first attempt, as the alert showed it (log time, configured zone).
    pub first_attempt: String,
    /// The last attempt seen (log time), once more attempts came after the alert.
    pub last_attempt: Option<Timestamp>,
    /// The last attempt as the alert showed it.
    pub last_attempt_text: String,
    /// The actions' results (`nft-block: exit 0`).
    pub actions: Vec<String>,
    /// Fleet mode: the agent that mails about the incident, when this agent only ran its
    /// actions for it (`None`: this agent mails).
    pub mailed_by: Option<String>,
}

/// One open incident, as `authwatch incidents` (and `--json`) shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentView {
    /// For `authwatch ack`.
    pub id: String,
    /// `ip_burst`, `subnet_burst`, `account_attack`, `compromised`.
    pub kind: String,
    /// The kind for people ("IP burst", see [`AlertKind::label`]).
    pub kind_name: String,
    /// The IP, network or account (made inert).
    pub target: String,
    pub service: String,
    /// First and last attempt, log time in the configured zone.
    pub first_attempt: String,
    pub last_attempt: String,
    pub attempts: u64,
    /// What was done: actions' results, `silenced until … (reason)`, `acked`, `mailed`, or
    /// `mailed by AGENT (fleet)` (fleet mode: this agent ran its actions, another mailed).
    pub done: Vec<String>,
    pub silenced: bool,
    pub acked: bool,
}

/// A readable name of an alert kind.
pub fn kind_name(kind: &str) -> String {
    AlertKind::label_of(kind)
}

/// The list for people: one block per incident, and the commands to act on it.
pub fn format_incidents(list: &[IncidentView]) -> String {
    let mut out = String::new();
    if list.is_empty() {
        out.push_str("No open incidents.\n");
        return out;
    }
    let _ = writeln!(out, "Open incidents: {}", list.len());
    for i in list {
        let _ = writeln!(out, "\n{}  {} ({})", i.id, i.target, i.kind_name);
        let _ = writeln!(out, "  service:   {}", i.service);
        let _ = writeln!(out, "  attempts:  {}", i.attempts);
        let _ = writeln!(out, "  first:     {}", i.first_attempt);
        let _ = writeln!(out, "  last:      {}", i.last_attempt);
        let _ = writeln!(out, "  done:      {}", i.done.join("; "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_incident_kind_has_a_readable_name() {
        for k in [
            AlertKind::IpBurst,
            AlertKind::SubnetBurst,
            AlertKind::AccountAttack,
            AlertKind::Compromised,
        ] {
            assert_ne!(kind_name(k.as_str()), k.as_str());
        }
    }

    #[test]
    fn the_list_names_id_target_and_what_was_done() {
        let v = IncidentView {
            id: "ip_burst-0123456789ab".into(),
            kind: "ip_burst".into(),
            kind_name: kind_name("ip_burst"),
            target: "203.0.113.7".into(),
            service: "exim".into(),
            first_attempt: "2026-11-23 15:59:08 UTC".into(),
            last_attempt: "2026-11-23 16:00:00 UTC".into(),
            attempts: 12,
            done: vec!["silenced until 2026-11-24 16:00:00 UTC (known scanner)".into()],
            silenced: true,
            acked: false,
        };
        let text = format_incidents(&[v]);
        for want in [
            "ip_burst-0123456789ab  203.0.113.7 (IP burst)",
            "service:   exim",
            "attempts:  12",
            "first:     2026-11-23 15:59:08 UTC",
            "silenced until",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
        assert_eq!(format_incidents(&[]), "No open incidents.\n");
    }
}
