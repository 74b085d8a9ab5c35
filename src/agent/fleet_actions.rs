//! Actions in fleet mode (issue 16): every agent that counted attempts for an IP or subnet key
//! whose fleet total crossed its threshold runs its own configured actions for it, once per key
//! and cooldown, whether or not it won the claim to mail ([`acts_on`] is the rule). Each server
//! thus blocks the attacker at its own firewall. The agent that mails waits for its own
//! actions only, and its mail shows their results like a local alert, plus a line saying that
//! the other servers that saw the attacker run their own; the others record their results in
//! their incident (`authwatch incidents`: "mailed by AGENT (fleet)") and send nothing. An agent
//! that never counted an attempt for the key does not act: the store's count says so, and its own
//! detector must hold the key too (a store entry alone never makes an agent block). Account alerts name no address:
//! no actions, as in local mode. The actions run off the detection path, like local ones
//! ([`Engine::take_fleet_pending`], started by the agent's loop in a task of their own).

use super::engine::{Engine, Origin, PendingAlert};
use super::fleet::FleetAlert;
use crate::actions::ActionContext;
use crate::alert_kind::AlertKind;
use crate::fleet::{Candidate, KeyKind, KeyTotal};
use crate::policy::Notice;
use ipnet::IpNet;
use jiff::Timestamp;
use std::net::IpAddr;
use std::time::Duration;
use tracing::info;

/// Does this agent (fleet name `own`) run its actions for the crossed fleet total `t`? Only for
/// an IP or subnet key (an account alert names no address to block), only when this agent
/// counted attempts for the key in the window (its name is among the total's servers), and
/// only once per key and `cooldown` (`last_acted`: Unix second of the last time, `now` too).
pub(super) fn acts_on(
    own: &str,
    t: &KeyTotal,
    last_acted: Option<i64>,
    now: i64,
    cooldown: Duration,
) -> bool {
    let kind_acts = matches!(t.kind, KeyKind::Ip | KeyKind::Subnet);
    let saw_it = t.per_host.iter().any(|(h, n)| h == own && *n > 0);
    let cooled = last_acted.is_none_or(|s| now.saturating_sub(s) >= cooldown.as_secs() as i64);
    kind_acts && saw_it && cooled
}

/// The line the mailing agent's alert adds about the other servers that saw the attacker.
pub(super) fn others_note(own: &str, t: &KeyTotal) -> Option<String> {
    let others: Vec<String> = t
        .per_host
        .iter()
        .filter(|(h, n)| h != own && *n > 0)
        .map(|(h, _)| crate::text::inert(h))
        .collect();
    if others.is_empty() || t.kind == KeyKind::Account {
        return None;
    }
    Some(format!(
        "The other servers that saw this attacker ({}) run their own configured actions for it too (each blocks at its own firewall when so configured): see `authwatch incidents` on each.",
        others.join(", ")
    ))
}

impl Engine {
    /// Fleet alerts waiting for this agent's actions: run each alert's actions (in a task of
    /// its own), then hand it with its results to [`Engine::finish_pending`].
    pub fn take_fleet_pending(&mut self) -> Vec<PendingAlert> {
        match &mut self.fleet {
            Some(f) => std::mem::take(&mut f.pending),
            None => Vec::new(),
        }
    }

    /// This agent won the claim for `c` (or the store could not be asked): its alert, now
    /// (returned) or once this agent's actions for the key are done (kept as pending).
    pub(super) fn fleet_won(&mut self, c: Candidate, now: Timestamp) -> Option<Notice> {
        let mut a = self.fleet_alert(&c, now)?;
        let t = &c.total;
        info!(kind = %a.kind, key = %crate::text::inert(&t.key), total = t.total, agents = t.per_host.len(), "fleet threshold crossed; this agent alerts");
        match self.fleet_action(t, now) {
            Some((action, names)) => {
                a.notes.extend(others_note(&self.fleet_name(), t));
                self.push_fleet_pending(a, action, names, Origin::FleetMail);
                None
            }
            None => Some(a.into_notice()),
        }
    }

    /// Another agent mails about `c` (a lost claim, or its entry in the store's `crossed`
    /// stream): run this agent's actions for it, when it acts on the key at all.
    pub(super) fn fleet_act_only(&mut self, c: Candidate, mailer: String, now: Timestamp) {
        if !self.fleet_crossed(&c.total) {
            return;
        }
        let Some((action, names)) = self.fleet_action(&c.total, now) else {
            return;
        };
        let Some(a) = self.fleet_alert(&c, now) else {
            return;
        };
        info!(kind = %a.kind, key = %crate::text::inert(&c.total.key), total = c.total.total, mailer = %crate::text::inert(&mailer), "fleet threshold crossed; another agent mails, this one runs its actions");
        self.push_fleet_pending(a, action, names, Origin::FleetActOnly { mailer });
    }

    /// This agent's fleet name.
    fn fleet_name(&self) -> String {
        self.fleet
            .as_ref()
            .map(|f| f.handle.store().name().to_string())
            .unwrap_or_default()
    }

    fn push_fleet_pending(
        &mut self,
        a: FleetAlert,
        action: ActionContext,
        names: Vec<String>,
        origin: Origin,
    ) {
        let p = PendingAlert {
            kind: a.kind,
            key: a.key,
            urgent: false,
            total: a.total,
            attempts: a.total,
            id: a.id,
            context: a.context,
            action,
            names,
            origin,
            notes: a.notes,
        };
        if let Some(f) = &mut self.fleet {
            f.pending.push(p);
        }
    }

    /// What this agent's actions get for the crossed total `t`, and their names, when it acts
    /// on it now ([`acts_on`]; the address is not allowlisted here, by the config or
    /// `authwatch allow`); marks the key as acted on.
    fn fleet_action(
        &mut self,
        t: &KeyTotal,
        now: Timestamp,
    ) -> Option<(ActionContext, Vec<String>)> {
        let kind = match t.kind {
            KeyKind::Ip => AlertKind::IpBurst,
            KeyKind::Subnet => AlertKind::SubnetBurst,
            KeyKind::Account => return None,
        };
        let names = self.action_names_for(kind);
        if names.is_empty() || self.actions.is_none() {
            return None;
        }
        // The key comes from the shared store: parsed here, never used as text.
        let (ip, network) = match t.kind {
            KeyKind::Ip => (t.key.parse::<IpAddr>().ok()?, None),
            _ => {
                let net: IpNet = t.key.parse().ok()?;
                (net.network(), Some(net.trunc()))
            }
        };
        if self.allowlist.contains(&ip) || self.allowed_by_decision(&ip, now) {
            info!(key = %t.key, "fleet threshold crossed for an address allowed here; no actions");
            return None;
        }
        // The store's word that this agent counted attempts is not enough to block: its own
        // detector must hold the key (anyone who can write to the store could name any address).
        let seen_here = match network {
            None => self.detector.total(&ip),
            Some(net) => self.subnets.as_ref().and_then(|(d, _)| d.total(&net)),
        };
        if seen_here.is_none_or(|n| n == 0) {
            info!(key = %t.key, "fleet threshold crossed for a key this agent's own detector does not hold; no actions");
            return None;
        }
        let own = self.fleet_name();
        let cooldown = self.env.cooldown;
        let sec = now.as_second();
        let f = self.fleet.as_mut()?;
        let k = (t.kind, t.key.clone());
        if !acts_on(&own, t, f.acted.get(&k).copied(), sec, cooldown) {
            return None;
        }
        f.acted.put(k, sec);
        let service = match ip {
            _ if network.is_some() => "fleet",
            ip => f.service.get(&ip).copied().unwrap_or("fleet"),
        };
        let action = self.action_context(ip, network, None, t.total, service)?;
        Some((action, names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(kind: KeyKind, hosts: &[(&str, u64)]) -> KeyTotal {
        KeyTotal {
            kind,
            key: "203.0.113.50".into(),
            total: hosts.iter().map(|(_, n)| n).sum(),
            distinct: 1,
            per_host: hosts.iter().map(|(h, n)| (h.to_string(), *n)).collect(),
        }
    }

    #[test]
    fn an_agent_acts_once_per_cooldown_on_ip_and_subnet_keys_it_saw() {
        let hour = Duration::from_secs(3600);
        let spread = [("mx1", 2), ("mx2", 2), ("mx3", 2)];
        let t0 = 1_800_000_000;
        /// (kind, servers, this agent, last acted, now, acts?)
        type Row<'a> = (
            KeyKind,
            &'a [(&'a str, u64)],
            &'a str,
            Option<i64>,
            i64,
            bool,
        );
        let table: &[Row] = &[
            (KeyKind::Ip, &spread, "mx1", None, t0, true),
            (KeyKind::Subnet, &spread, "mx3", None, t0, true),
            // Account alerts name no address to block.
            (KeyKind::Account, &spread, "mx1", None, t0, false),
            // An agent that counted no attempt for the key does not act.
            (KeyKind::Ip, &spread, "mx4", None, t0, false),
            (
                KeyKind::Ip,
                &[("mx1", 6), ("mx4", 0)],
                "mx4",
                None,
                t0,
                false,
            ),
            // Once per cooldown: a second crossing within it runs nothing more.
            (KeyKind::Ip, &spread, "mx1", Some(t0), t0 + 3599, false),
            (KeyKind::Ip, &spread, "mx1", Some(t0), t0 + 3600, true),
        ];
        for (kind, hosts, own, last, now, want) in table {
            let t = total(*kind, hosts);
            assert_eq!(
                acts_on(own, &t, *last, *now, hour),
                *want,
                "{kind:?} {hosts:?} {own} {last:?} {now}"
            );
        }
    }

    #[test]
    fn the_mail_names_the_other_servers_that_saw_the_attacker() {
        let t = total(KeyKind::Ip, &[("mx1", 2), ("mx2", 2), ("mx3", 0)]);
        let note = others_note("mx2", &t).unwrap();
        assert!(
            note.starts_with(
                "The other servers that saw this attacker (mx1) run their own configured actions"
            ),
            "{note}"
        );
        assert!(note.contains("authwatch incidents"), "{note}");
        assert_eq!(others_note("mx1", &total(KeyKind::Ip, &[("mx1", 6)])), None);
        assert_eq!(
            others_note("mx1", &total(KeyKind::Account, &[("mx1", 3), ("mx2", 3)])),
            None
        );
    }
}
