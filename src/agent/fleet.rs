//! The engine's side of fleet mode (issue 16; the store and its task are `crate::fleet`).
//! Every failed attempt is also handed to the fleet task ([`Engine::set_line_id`] names the
//! line so a re-read counts nothing twice). While the store answers, the local burst alerts
//! (per IP, subnet, account) are held back and thresholds apply to the fleet totals instead:
//! [`Engine::fleet_poll`] turns a total that crossed its threshold into a claim, and a claim
//! this agent won into an alert listing the attempts per agent. While the store is down, local
//! detection alerts as in local mode and each such alert says "fleet store unavailable".
//! Every agent that counted attempts for a crossed IP or subnet key runs its own actions for
//! it, whether or not it mails (`fleet_actions.rs`).

use super::detect::notice;
use super::engine::{Engine, Origin, PendingAlert};
use super::health::HealthContextParts;
use crate::alert_kind::AlertKind;
use crate::detect::KeyAlert;
use crate::fleet::{
    Candidate, FleetHandle, FleetHit, KeyKind, KeyTotal, MAX_FLEET_MEMBERS_PER_KEY,
};
use crate::message::Rendered;
use crate::policy::id::alert_id;
use crate::render::{GroupAlertContext, IpAlertContext};
use crate::rules::Hit;
use ipnet::IpNet;
use jiff::Timestamp;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::time::Duration;
use tracing::{error, info};

/// Keys remembered as already handed to a claim (one claim per key and cooldown): as many as
/// incidents a busy fleet opens in a cooldown; beyond it the oldest is forgotten, which costs at
/// most one more claim (answered "already sent" by the store).
const MAX_FLEET_CLAIMED_KEYS: usize = 10_000;

/// Local alerts held back while the fleet decides, at most: one per key crossing locally
/// within [`FLEET_HOLD_FOR`]; beyond it the oldest is dropped (its key's fleet total decides).
const MAX_FLEET_HELD: usize = 1000;

/// How long a held local alert waits for its key's fleet total: far longer than a store round
/// trip; if the store stopped answering meanwhile, the alert is sent (with the note) instead.
const FLEET_HOLD_FOR: Duration = Duration::from_secs(30);

/// What a held local alert's actions get, and their names.
pub(super) type HeldActions = (crate::actions::ActionContext, Vec<String>);

/// The sentence an alert made without the store carries.
pub const FLEET_UNAVAILABLE_NOTE: &str =
    "Note: fleet store unavailable; counted on this server only (other servers may alert too).";

pub(super) struct FleetState {
    pub(super) handle: FleetHandle,
    /// The line being processed: (file inode, byte offset), or a stand-in for other sources.
    line_id: Option<(u64, u64)>,
    /// (kind, key) → Unix second when it was handed to a claim.
    claimed: lru::LruCache<(KeyKind, String), i64>,
    /// Last service seen per IP (the alert names it), bounded like `claimed`.
    pub(super) service: lru::LruCache<IpAddr, &'static str>,
    /// When the store went down, once its outage was reported.
    down_since: Option<Timestamp>,
    /// Store down this long: a health alert (and an error in the log), once per outage; its
    /// return is mailed too (`fleet.down_alert_after`).
    down_alert_after: Duration,
    /// Local alerts held back until their key's fleet total arrives (then dropped: the fleet
    /// decides) or the store is found down (then sent, with the note): never lost in between.
    /// Each with what its actions get and their names, when actions run for it.
    held: std::collections::VecDeque<(
        std::time::Instant,
        crate::policy::Notice,
        Option<HeldActions>,
    )>,
    /// (kind, key) → Unix second when this agent last started its actions for it (once per
    /// key and cooldown), bounded like `claimed`.
    pub(super) acted: lru::LruCache<(KeyKind, String), i64>,
    /// Fleet alerts waiting for this agent's actions (see [`Engine::take_fleet_pending`]).
    pub(super) pending: Vec<super::engine::PendingAlert>,
}

impl Engine {
    /// Switch on fleet mode with a started [`FleetHandle`] (and its metrics).
    pub fn set_fleet(&mut self, handle: FleetHandle, down_alert_after: Duration) {
        // The fleet series show from the start (updated with `status.json`, see `health.rs`).
        let f = super::health::fleet_health(&handle);
        self.metrics
            .set_fleet(f.available, f.buffered, f.sent, f.dropped);
        let n = NonZeroUsize::new(MAX_FLEET_CLAIMED_KEYS).unwrap_or(NonZeroUsize::MIN);
        self.fleet = Some(Box::new(FleetState {
            handle,
            line_id: None,
            claimed: lru::LruCache::new(n),
            service: lru::LruCache::new(n),
            down_since: None,
            down_alert_after,
            held: std::collections::VecDeque::new(),
            acted: lru::LruCache::new(n),
            pending: Vec::new(),
        }));
    }

    /// The fleet handle, when in fleet mode.
    pub fn fleet(&self) -> Option<&FleetHandle> {
        self.fleet.as_ref().map(|f| &f.handle)
    }

    /// Name the next line for the fleet: (inode, offset) of a file line.
    pub fn set_line_id(&mut self, id: Option<(u64, u64)>) {
        if let Some(f) = &mut self.fleet {
            f.line_id = id;
        }
    }

    /// A failed attempt that passed the allowlist: queue it for the store.
    pub(super) fn fleet_hit(&mut self, hit: &Hit, at: Timestamp) {
        let subnet = self.subnets.as_ref().and_then(|(_, sc)| {
            let bits = match hit.ip {
                IpAddr::V6(_) => Some(sc.ipv6_prefix),
                IpAddr::V4(_) => sc.ipv4_prefix,
            }?;
            IpNet::new(hit.ip, bits).ok().map(|n| n.trunc())
        });
        let lines_seen = self.lines_seen;
        let Some(f) = &mut self.fleet else { return };
        let (inode, offset) = f.line_id.unwrap_or((0, lines_seen));
        f.service.put(hit.ip, hit.service);
        f.handle.submit(FleetHit {
            time_ms: at.as_millisecond(),
            ip: hit.ip,
            subnet,
            account: hit.user.clone(),
            inode,
            offset,
            attempts: hit.attempts.max(1),
        });
    }

    /// Is a local burst alert of `kind` held back because the fleet decides it?
    pub(super) fn fleet_decides(&self, kind: AlertKind) -> bool {
        matches!(
            kind,
            AlertKind::IpBurst | AlertKind::SubnetBurst | AlertKind::AccountAttack
        ) && self.fleet.as_ref().is_some_and(|f| f.handle.available())
    }

    /// Hold a local burst alert while the fleet decides (see `FleetState::held`); `act`: what
    /// its actions get and their names, run if it is released.
    pub(super) fn fleet_hold(&mut self, n: crate::policy::Notice, act: Option<HeldActions>) {
        if let Some(f) = &mut self.fleet {
            if f.held.len() >= MAX_FLEET_HELD {
                f.held.pop_front();
            }
            f.held.push_back((std::time::Instant::now(), n, act));
        }
    }

    /// Add the "fleet store unavailable" note to a local alert made in fleet mode (once).
    pub(super) fn fleet_note(&self, n: &mut crate::policy::Notice) {
        if self.fleet.is_some()
            && !self.fleet_decides(AlertKind::IpBurst)
            && !n.notes.iter().any(|x| x == FLEET_UNAVAILABLE_NOTE)
        {
            n.notes.push(FLEET_UNAVAILABLE_NOTE.into());
        }
    }

    /// Fleet totals that crossed a threshold become claims; claims this agent won become
    /// alerts. Call after every batch of lines and on every tick; returns the mails due now.
    pub fn fleet_poll(&mut self) -> Vec<Rendered> {
        let Some(f) = &mut self.fleet else {
            return Vec::new();
        };
        let now = self.clock.now();
        let mut health = Vec::new();
        match f.handle.down_for() {
            Some(d) if d >= f.down_alert_after && f.down_since.is_none() => {
                let since = now
                    .checked_sub(jiff::SignedDuration::try_from(d).unwrap_or_default())
                    .unwrap_or(now);
                f.down_since = Some(since);
                error!(down_for = %crate::text::format_duration(d), pending = f.handle.pending().0, "fleet store unavailable for longer than fleet.down_alert_after: detecting with local thresholds");
                health.push(HealthContextParts {
                    title: format!("fleet store {} unavailable", f.handle.url()),
                    what: f.handle.url().to_string(),
                    detail: format!("no answer for {}; {} hits waiting to be replayed", crate::text::format_duration(d), f.handle.pending().0),
                    since,
                    until: None,
                    advice: "Detection goes on with this server's own thresholds, and alerts say \"fleet store unavailable\" (other servers may alert about the same attacker). Check that redis-server (or valkey) runs and that this server reaches it; the buffered hits are replayed when it answers.".into(),
                });
            }
            None if f.down_since.is_some() => {
                let since = f.down_since.take().unwrap_or(now);
                info!("fleet store available again");
                health.push(HealthContextParts {
                    title: format!("fleet store {} available again", f.handle.url()),
                    what: f.handle.url().to_string(),
                    detail: "the store answers again; buffered hits were replayed".into(),
                    since,
                    until: Some(now),
                    advice: "Nothing to do: thresholds apply to the fleet's totals again.".into(),
                });
            }
            _ => {}
        }
        let health: Vec<Rendered> = health.into_iter().map(|p| self.render_health(p)).collect();
        let Some(f) = &mut self.fleet else {
            return health;
        };
        let cooldown = self.env.cooldown;
        let totals = f.handle.take_totals();
        if !f.held.is_empty() {
            // A held local alert whose key reached the store: the fleet total decides.
            f.held.retain(|(at, n, _)| {
                at.elapsed() < FLEET_HOLD_FOR
                    && !totals.iter().any(|t| {
                        n.kind == kind_name(t.kind)
                            && (n.key == t.key || n.key == crate::text::inert(&t.key))
                    })
            });
        }
        let mut released = Vec::new();
        if !f.handle.available() {
            for (_, mut n, act) in f.held.drain(..) {
                n.notes.push(FLEET_UNAVAILABLE_NOTE.into());
                match act {
                    // A local alert made without the store: its actions run, as in local mode.
                    Some((action, names)) => f.pending.push(PendingAlert {
                        kind: n.kind,
                        key: n.key,
                        urgent: n.urgent,
                        total: n.total,
                        attempts: n.attempts,
                        id: crate::policy::id::AlertId {
                            id: n.id.unwrap_or_default(),
                            legacy: n.legacy_id.unwrap_or_default(),
                        },
                        context: n.context,
                        action,
                        names,
                        origin: Origin::Local,
                        notes: n.notes,
                    }),
                    None => released.push(n),
                }
            }
        }
        for t in totals {
            if !self.fleet_crossed(&t) {
                continue;
            }
            let Some(f) = &mut self.fleet else { break };
            let k = (t.kind, t.key.clone());
            let sec = now.as_second();
            if f.claimed
                .get(&k)
                .is_some_and(|s| sec.saturating_sub(*s) < cooldown.as_secs() as i64)
            {
                continue;
            }
            f.claimed.put(k, sec);
            f.handle.claim_later(t, cooldown);
        }
        let claims = match &self.fleet {
            Some(f) => f.handle.take_claims(),
            None => Vec::new(),
        };
        let mut notices = Vec::new();
        for c in claims {
            match c.mailer.clone() {
                None => notices.extend(self.fleet_won(c, now)),
                Some(by) => self.fleet_act_only(c, by, now),
            }
        }
        notices.extend(released);
        let mut out = health;
        if !notices.is_empty() {
            out.extend(self.offer(notices));
        }
        out
    }

    /// Has a fleet total reached its threshold? A threshold above the store's member cap per
    /// key is taken as the cap (the total saturates there), so it can still be reached.
    pub(super) fn fleet_crossed(&self, t: &KeyTotal) -> bool {
        let th = |a: u32| u64::from(a).min(MAX_FLEET_MEMBERS_PER_KEY as u64);
        match t.kind {
            KeyKind::Ip => t.total >= th(self.env.threshold),
            KeyKind::Subnet => self.subnets.as_ref().is_some_and(|(_, sc)| {
                t.total >= th(sc.threshold.attempts) && t.distinct >= sc.min_addresses as u64
            }),
            KeyKind::Account => self.accounts.as_ref().is_some_and(|(_, ac)| {
                t.total >= th(ac.threshold.attempts) && t.distinct >= ac.distinct_ips as u64
            }),
        }
    }

    /// What a fleet alert about `c` says (kind, key, total, id, template context, notes).
    pub(super) fn fleet_alert(&mut self, c: &Candidate, now: Timestamp) -> Option<FleetAlert> {
        let t = &c.total;
        let a = key_alert(t.key.clone(), t, "fleet", now);
        let (kind, mut context) = match t.kind {
            KeyKind::Ip => {
                let ip: IpAddr = t.key.parse().ok()?;
                let service = self
                    .fleet
                    .as_mut()
                    .and_then(|f| f.service.get(&ip).copied())
                    .unwrap_or("fleet");
                let ipa = key_alert(ip, t, service, now);
                let ctx = IpAlertContext::new(&ipa, &self.env, now);
                (AlertKind::IpBurst, serde_json::to_value(&ctx).ok()?)
            }
            KeyKind::Subnet => {
                let th = self.subnets.as_ref()?.1.threshold;
                let ctx = GroupAlertContext::new(&a, &self.env, th.attempts, th.window, now);
                (AlertKind::SubnetBurst, serde_json::to_value(&ctx).ok()?)
            }
            KeyKind::Account => {
                let th = self.accounts.as_ref()?.1.threshold;
                let ctx = GroupAlertContext::new(&a, &self.env, th.attempts, th.window, now);
                (AlertKind::AccountAttack, serde_json::to_value(&ctx).ok()?)
            }
        };
        let mut lines = String::from("Attempts per server in the fleet:\n");
        for (host, n) in &t.per_host {
            lines.push_str(&format!("  {}: {n}\n", crate::text::inert(host)));
        }
        if let serde_json::Value::Object(m) = &mut context {
            m.entry("actions")
                .or_insert(serde_json::Value::Array(Vec::new()));
        }
        let mut notes = vec![lines.trim_end().to_string()];
        if c.store_unavailable {
            notes.push(FLEET_UNAVAILABLE_NOTE.into());
        }
        let key = if kind == AlertKind::AccountAttack {
            crate::text::inert(&t.key)
        } else {
            t.key.clone()
        };
        // Its own id: not the local alert's id for the same key and second.
        let id = alert_id(kind, &format!("fleet {key}"), 1, now);
        if let serde_json::Value::Object(m) = &mut context {
            // For `authwatch ack` (the same incident as a local alert about the key).
            m.insert(
                "incident_id".into(),
                crate::control::incident_id(kind.as_str(), &key).into(),
            );
        }
        Some(FleetAlert {
            kind,
            key,
            total: t.total,
            id,
            context,
            notes,
        })
    }
}

/// A fleet alert before it becomes a notice (or waits for this agent's actions).
pub(super) struct FleetAlert {
    pub(super) kind: AlertKind,
    pub(super) key: String,
    pub(super) total: u64,
    pub(super) id: crate::policy::id::AlertId,
    pub(super) context: serde_json::Value,
    pub(super) notes: Vec<String>,
}

impl FleetAlert {
    /// The notice for the policy, sent without waiting for actions.
    pub(super) fn into_notice(self) -> crate::policy::Notice {
        let mut n = notice(
            self.kind,
            self.key,
            false,
            self.total,
            self.total,
            self.id,
            self.context,
        );
        n.notes = self.notes;
        n
    }
}

fn kind_name(k: KeyKind) -> AlertKind {
    match k {
        KeyKind::Ip => AlertKind::IpBurst,
        KeyKind::Subnet => AlertKind::SubnetBurst,
        KeyKind::Account => AlertKind::AccountAttack,
    }
}

/// What a fleet alert says about its key: the fleet totals (the members and lines are on
/// each server; the alert lists the attempts per server instead).
fn key_alert<K>(key: K, t: &KeyTotal, service: &'static str, now: Timestamp) -> KeyAlert<K> {
    KeyAlert {
        key,
        service,
        attempts_in_window: t.total,
        attempts_total: t.total,
        attempts_since_last_alert: t.total,
        first_seen: now,
        last_seen: now,
        top_members: Vec::new(),
        distinct_members: t.distinct,
        distinct_members_in_window: t.distinct,
        other_member_attempts: 0,
        attempts_without_member: 0,
        recent_lines: Vec::new(),
        alert_number: 1,
        previous_alert: None,
        earlier_alerts: Vec::new(),
        per_minute: Vec::new(),
    }
}

/// Append a paragraph to an alert's text (and HTML) body.
pub(super) fn append(r: &mut Rendered, para: &str) {
    if !r.text.ends_with('\n') {
        r.text.push('\n');
    }
    r.text.push('\n');
    r.text.push_str(para);
    r.text.push('\n');
    if let Some(h) = &mut r.html {
        let esc = para
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let p = format!("<pre>{esc}</pre>");
        match h.rfind("</body>") {
            Some(i) => h.insert_str(i, &p),
            None => h.push_str(&p),
        }
    }
}
