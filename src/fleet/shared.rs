//! Shared silences and allows in fleet mode: `authwatch silence | unsilence | allow | allow
//! --remove` taken on one agent apply on every agent of the fleet.
//!
//! The control socket applies a change locally as in local mode, then hands it to
//! [`DecisionSync::publish`] ([`change_of`] turns the request into a store change); a task of
//! its own (never the tailing path) writes the queued changes to the store's `silence` and
//! `allow` hashes, in order, keeping them until the store took them. Every
//! [`DECISIONS_SYNC_INTERVAL`] the same task reads both hashes and merges them into the live
//! decisions ([`merge`]): an entry in the store is added (or its end updated) here; an entry
//! that left the store (lifted or expired on another agent) is removed here when this agent had
//! it from the store. Decisions taken on this agent while the store is down apply here at once
//! and reach the store when it answers. Acks stay per agent (an incident's mail is sent by one
//! agent anyway). The store keeps only the target and the end: reasons and who took the
//! decision stay on the agent where it was taken; others show [`FLEET_BY`].

use super::{DecisionKind, FleetHandle, Store};
use crate::control::decisions::{net_text, parse_net, MAX_ENTRIES};
use crate::control::{Decisions, Request, Target};
use jiff::Timestamp;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{info, warn};

/// How often each agent reads the fleet's silences and allows: a decision taken on one agent
/// applies on the others within this (two small `HGETALL`s per agent, cheap for the store).
pub const DECISIONS_SYNC_INTERVAL: Duration = Duration::from_secs(2);

/// Changes waiting for the store, at most: each is a decision a person typed, so this is only
/// reached by a script run against a store that is down; beyond it the oldest is dropped (it
/// still applies on this agent) with a warning.
pub const MAX_PENDING_CHANGES: usize = 1000;

/// Who took a decision that came from the store (the store keeps no name).
pub const FLEET_BY: &str = "fleet store";

/// One change of the store's decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Record a silence or allow of `key` until `until_ms` (Unix ms; `None`: for good).
    Put {
        kind: DecisionKind,
        key: String,
        until_ms: Option<i64>,
    },
    /// Lift it.
    Remove { kind: DecisionKind, key: String },
}

/// The store key of a silence's target: a network as people write it, or the account name.
pub fn target_key(t: &Target) -> String {
    match t {
        Target::Net(n) => net_text(n),
        Target::Account(a) => a.clone(),
    }
}

/// The store change a request made, given the decisions after it (`None`: acks and queries,
/// which are not shared).
pub fn change_of(req: &Request, d: &Decisions) -> Option<Change> {
    match req {
        Request::Silence { target, .. } => {
            let t = Target::parse(target).ok()?;
            let s = d.silences.iter().find(|s| s.target == t)?;
            Some(Change::Put {
                kind: DecisionKind::Silence,
                key: target_key(&t),
                until_ms: Some(s.until.as_millisecond()),
            })
        }
        Request::Unsilence { target } => Some(Change::Remove {
            kind: DecisionKind::Silence,
            key: target_key(&Target::parse(target).ok()?),
        }),
        Request::Allow { target, .. } => {
            let net = parse_net(target).ok()?;
            let a = d.allows.iter().find(|a| a.net == net)?;
            Some(Change::Put {
                kind: DecisionKind::Allow,
                key: net_text(&net),
                until_ms: a.until.map(|u| u.as_millisecond()),
            })
        }
        Request::Disallow { target } => Some(Change::Remove {
            kind: DecisionKind::Allow,
            key: net_text(&parse_net(target).ok()?),
        }),
        Request::Ack { .. } | Request::Incidents => None,
    }
}

/// Merge the store's decisions into `d`. `known`: the keys this agent held from the store after
/// its last read (updated; bounded by the decisions' cap, [`MAX_ENTRIES`]). An entry of the store that `d` lacks, or has with another end, is set;
/// an entry of `d` missing from the store is removed when it was known there or came from the
/// store ([`FLEET_BY`]); other local entries (taken here, not yet in the store) stay. Entries
/// the store holds that do not parse are skipped (the store is shared: never trusted blindly).
/// Returns what changed, for the log.
pub fn merge(
    d: &mut Decisions,
    silences: &HashMap<String, Option<i64>>,
    allows: &HashMap<String, Option<i64>>,
    known: &mut HashSet<(DecisionKind, String)>,
    now: Timestamp,
) -> Vec<String> {
    let mut changed = Vec::new();
    let mut refused = 0usize;
    for (key, until) in silences {
        let (Ok(t), Some(Ok(u))) = (Target::parse(key), until.map(Timestamp::from_millisecond))
        else {
            continue;
        };
        let mine = d.silences.iter().find(|s| s.target == t);
        if mine.is_some_and(|s| s.until.as_millisecond() == u.as_millisecond()) {
            continue;
        }
        let (reason, by) = mine
            .map(|s| (s.reason.clone(), s.by.clone()))
            .unwrap_or((None, FLEET_BY.to_string()));
        match d.silence(t.clone(), u, reason, &by, now) {
            Ok(()) => changed.push(format!("silence of {t}")),
            Err(_) => refused += 1,
        }
    }
    for (key, until) in allows {
        let Ok(net) = parse_net(key) else { continue };
        let u = match until.map(Timestamp::from_millisecond) {
            Some(Ok(u)) => Some(u),
            Some(Err(_)) => continue,
            None => None,
        };
        let mine = d.allows.iter().find(|a| a.net == net);
        if mine.is_some_and(|a| a.until.map(|x| x.as_millisecond()) == *until) {
            continue;
        }
        let by = mine.map_or(FLEET_BY.to_string(), |a| a.by.clone());
        match d.allow(net, u, &by, now) {
            Ok(()) => changed.push(format!("allow of {}", net_text(&net))),
            Err(_) => refused += 1,
        }
    }
    let gone = |kind: DecisionKind, key: String, by: &str, known: &HashSet<_>| {
        let in_store = match kind {
            DecisionKind::Silence => silences.contains_key(&key),
            DecisionKind::Allow => allows.contains_key(&key),
        };
        !in_store && (by == FLEET_BY || known.contains(&(kind, key)))
    };
    let before = d.silences.len();
    d.silences
        .retain(|s| !gone(DecisionKind::Silence, target_key(&s.target), &s.by, known));
    let mut lifted = before - d.silences.len();
    let before = d.allows.len();
    d.allows
        .retain(|a| !gone(DecisionKind::Allow, net_text(&a.net), &a.by, known));
    lifted += before - d.allows.len();
    if lifted > 0 {
        changed.push(format!("{lifted} lifted on another agent"));
    }
    if refused > 0 {
        changed.push(format!(
            "{refused} not taken: this agent keeps {MAX_ENTRIES} decisions at most"
        ));
    }
    // Known: what this agent now holds from the store (so at most MAX_ENTRIES keys).
    known.clear();
    known.extend(
        d.silences
            .iter()
            .map(|s| target_key(&s.target))
            .filter(|k| silences.contains_key(k))
            .map(|k| (DecisionKind::Silence, k)),
    );
    known.extend(
        d.allows
            .iter()
            .map(|a| net_text(&a.net))
            .filter(|k| allows.contains_key(k))
            .map(|k| (DecisionKind::Allow, k)),
    );
    changed
}

/// The agent's side of shared decisions; cheap to clone.
#[derive(Clone)]
pub struct DecisionSync {
    pending: Arc<Mutex<VecDeque<Change>>>,
    wake: Arc<Notify>,
}

impl DecisionSync {
    /// Start the task that writes this agent's changes to the store and merges the store's
    /// decisions into `live`, until the fleet task is stopped ([`FleetHandle::stop`]).
    pub fn start(fleet: &FleetHandle, live: Arc<Mutex<Decisions>>) -> Self {
        let s = DecisionSync {
            pending: Arc::new(Mutex::new(VecDeque::new())),
            wake: Arc::new(Notify::new()),
        };
        let task = s.clone();
        let fleet = fleet.clone();
        tokio::spawn(async move { task.run(fleet, live).await });
        s
    }

    /// Queue a change made on this agent for the store (never waits on the store).
    pub fn publish(&self, c: Change) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() >= MAX_PENDING_CHANGES {
            p.pop_front();
            warn!(
                cap = MAX_PENDING_CHANGES,
                "too many decisions waiting for the fleet store; the oldest applies on this agent only"
            );
        }
        p.push_back(c);
        drop(p);
        self.wake.notify_one();
    }

    /// Changes not yet in the store.
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    async fn run(self, fleet: FleetHandle, live: Arc<Mutex<Decisions>>) {
        let store = fleet.store().clone();
        let mut known = HashSet::new();
        let mut failing = false;
        loop {
            let _ = tokio::time::timeout(DECISIONS_SYNC_INTERVAL, self.wake.notified()).await;
            if fleet.stopped() {
                break;
            }
            let ok = self.push(&store).await && self.pull(&store, &live, &mut known).await;
            if ok && failing {
                info!("fleet store reachable again: silences and allows are shared again");
            } else if !ok && !failing {
                warn!(
                    pending = self.pending(),
                    "fleet store unavailable for silences and allows: they apply on this agent, and are shared when it answers"
                );
            }
            failing = !ok;
        }
    }

    /// Write the queued changes, oldest first; false when the store failed (the rest wait).
    async fn push(&self, store: &Store) -> bool {
        loop {
            let Some(c) = self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .front()
                .cloned()
            else {
                return true;
            };
            let r = match &c {
                Change::Put {
                    kind,
                    key,
                    until_ms,
                } => store.put_decision(*kind, key, *until_ms).await,
                Change::Remove { kind, key } => store.remove_decision(*kind, key).await,
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "fleet store: cannot write a decision");
                return false;
            }
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if p.front() == Some(&c) {
                p.pop_front();
            }
        }
    }

    /// Read the store's decisions and merge them; false when the store failed.
    async fn pull(
        &self,
        store: &Store,
        live: &Mutex<Decisions>,
        known: &mut HashSet<(DecisionKind, String)>,
    ) -> bool {
        let now = Timestamp::now();
        let ms = now.as_millisecond();
        let (s, a) = match (
            store.decisions(DecisionKind::Silence, ms).await,
            store.decisions(DecisionKind::Allow, ms).await,
        ) {
            (Ok(s), Ok(a)) => (s, a),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "fleet store: cannot read the decisions");
                return false;
            }
        };
        let mut d = live.lock().unwrap_or_else(|e| e.into_inner());
        // A change made here meanwhile goes to the store first: merging now could undo it.
        if self.pending() > 0 {
            return true;
        }
        d.prune(now);
        let changed = merge(&mut d, &s, &a, known, now);
        if !changed.is_empty() {
            info!(changes = %crate::text::inert(&changed.join(", ")), "fleet decisions merged");
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn requests_become_store_changes_and_acks_stay_local() {
        let now = ts(1_800_000_000);
        let mut d = Decisions::default();
        let until = ts(1_800_003_600);
        d.silence(
            Target::parse("203.0.113.7").unwrap(),
            until,
            None,
            "ops",
            now,
        )
        .unwrap();
        d.allow(parse_net("192.0.2.0/24").unwrap(), None, "ops", now)
            .unwrap();
        let sil = Request::Silence {
            target: "203.0.113.7".into(),
            for_secs: 3600,
            reason: None,
            by: String::new(),
        };
        assert_eq!(
            change_of(&sil, &d),
            Some(Change::Put {
                kind: DecisionKind::Silence,
                key: "203.0.113.7".into(),
                until_ms: Some(until.as_millisecond())
            })
        );
        let allow = Request::Allow {
            target: "192.0.2.0/24".into(),
            for_secs: None,
            by: String::new(),
        };
        assert_eq!(
            change_of(&allow, &d),
            Some(Change::Put {
                kind: DecisionKind::Allow,
                key: "192.0.2.0/24".into(),
                until_ms: None
            })
        );
        assert_eq!(
            change_of(
                &Request::Unsilence {
                    target: "alice".into()
                },
                &d
            ),
            Some(Change::Remove {
                kind: DecisionKind::Silence,
                key: "alice".into()
            })
        );
        assert_eq!(
            change_of(
                &Request::Disallow {
                    target: "192.0.2.0/24".into()
                },
                &d
            ),
            Some(Change::Remove {
                kind: DecisionKind::Allow,
                key: "192.0.2.0/24".into()
            })
        );
        let ack = Request::Ack {
            incident: "ip_burst-0123456789ab".into(),
            by: String::new(),
        };
        assert_eq!(change_of(&ack, &d), None);
    }

    #[test]
    fn merge_adds_updates_and_removes_only_what_the_store_lifted() {
        let now = ts(1_800_000_000);
        let end = 1_800_003_600_000;
        let mut d = Decisions::default();
        // Taken here, not yet in the store: kept.
        d.silence(
            Target::parse("alice").unwrap(),
            ts(1_800_000_600),
            Some("pen test".into()),
            "ops",
            now,
        )
        .unwrap();
        let mut known = HashSet::new();
        let s: HashMap<String, Option<i64>> = [
            ("203.0.113.7".to_string(), Some(end)),
            ("not an ip/99".to_string(), Some(end)),
            ("bob".to_string(), None),
        ]
        .into();
        let a: HashMap<String, Option<i64>> = [
            ("192.0.2.0/24".to_string(), None),
            ("nonsense".to_string(), None),
        ]
        .into();
        let changed = merge(&mut d, &s, &a, &mut known, now);
        assert_eq!(changed.len(), 2, "{changed:?}");
        let ip: std::net::IpAddr = "203.0.113.7".parse().unwrap();
        let sil = d.silenced("ip_burst", "203.0.113.7", now).unwrap();
        assert_eq!(
            (sil.until.as_millisecond(), sil.by.as_str()),
            (end, FLEET_BY)
        );
        assert!(d.silenced("account_attack", "alice", now).is_some());
        assert!(d.silenced("account_attack", "bob", now).is_none(), "no end");
        assert!(d.allows(&"192.0.2.9".parse().unwrap(), now).is_some());
        assert!(d.allows(&ip, now).is_none());
        // Nothing new: nothing changes.
        assert!(merge(&mut d, &s, &a, &mut known, now).is_empty());
        // Lifted on another agent: gone here; the local silence of alice stays.
        let s2: HashMap<String, Option<i64>> = HashMap::new();
        let changed = merge(&mut d, &s2, &a, &mut known, now);
        assert_eq!(changed, vec!["1 lifted on another agent".to_string()]);
        assert!(d.silenced("ip_burst", "203.0.113.7", now).is_none());
        assert!(d.silenced("account_attack", "alice", now).is_some());
        // An end moved on another agent: updated, keeping this agent's reason.
        let s3: HashMap<String, Option<i64>> = [("alice".to_string(), Some(end))].into();
        merge(&mut d, &s3, &a, &mut known, now);
        let sil = d.silenced("account_attack", "alice", now).unwrap();
        assert_eq!(sil.until.as_millisecond(), end);
        assert_eq!(sil.reason.as_deref(), Some("pen test"));
        assert_eq!(sil.by, "ops");
    }
}
