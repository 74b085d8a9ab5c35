//! Alert policy: decides when the alerts that detection produces become mail, so that the
//! administrator hears of every attack at once and the inbox stays readable.
//!
//! - A new incident's alert goes out at once. With `group_wait` above zero, incidents that open
//!   within `group_wait` of the first one are sent together in one mail.
//! - Further attempts on open incidents never send mail by themselves: a digest, at most every
//!   `group_interval`, lists the open incidents with their new attempts; an incident still
//!   active `repeat_interval` after it was last announced is announced again there.
//! - `max_per_hour` caps the alert mails; what the cap holds back is never dropped: it goes
//!   into the next digest (digests come at most every `group_interval` and are not capped):
//!   the first [`MAX_HELD`] as whole alerts, the others as one compact [`HeldRecord`] each
//!   (kind, key, service, attempts, first and last attempt), which the digest shows in a table
//!   and an attached CSV. When [`MAX_HELD_RECORDS`] records wait, the digest goes out at once,
//!   so memory stays bounded and no alert is ever only counted.
//! - Urgent alerts (a compromised account) pass grouping and the cap.
//! - An incident closes after `cooldown` without attempts.
//!
//! The policy runs on the wall clock (passed in: tests move it), and its whole state (open
//! incidents, held alerts, mails sent in the last hour) is saved with `state.json`, so a restart
//! neither repeats nor forgets.

use crate::message::Rendered;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Alerts held back by the cap that a digest carries whole, at most; those beyond are kept as
/// [`HeldRecord`]s. A whole alert is 2-3 KB of text: 100 of them are already more than anyone
/// reads in one mail, while a record is one line of a table.
pub const MAX_HELD: usize = 100;
/// Compact records of held-back alerts kept for the next digest, at most; when this many wait,
/// the digest goes out at once (as a full group does) rather than any being only counted.
/// A record of an IPv4 alert is about 200 bytes in memory and 150 in `state.json` (measured
/// by `an_alert_storm_under_the_cap_leaves_no_alert_only_counted`: 1.9 MB and 1.5 MB for
/// 10,000), and its CSV line about 80, so a digest's attachment stays under 1 MB.
pub const MAX_HELD_RECORDS: usize = 10_000;
/// New alerts in one grouped mail, at most: a group that reaches it goes out at once, without
/// waiting for `group_wait`, so that a storm of incidents makes several mails of a readable
/// (and deliverable) size rather than one huge one, and the pending group stays small.
pub const MAX_GROUP: usize = 100;

/// Settings of the policy.
#[derive(Debug, Clone)]
pub struct PolicySettings {
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    /// 0: no cap.
    pub max_per_hour: u32,
    /// An incident closes after this long without attempts.
    pub cooldown: Duration,
    /// Open incidents remembered at most (`alerts.max_open_incidents`); when a new one would
    /// pass it, the quietest tenth are closed early.
    pub max_incidents: usize,
}

/// An alert from detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Alert kind (`ip_burst`, `subnet_burst`, `account_attack`, `compromised`).
    pub kind: String,
    /// What the incident is about (an IP, a prefix, an account).
    pub key: String,
    pub urgent: bool,
    pub rendered: Rendered,
    /// Attempts so far for this key.
    pub total: u64,
}

/// One open incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub kind: String,
    pub key: String,
    pub opened: Timestamp,
    pub total: u64,
    pub total_at_last_mail: u64,
    pub last_activity: Timestamp,
    pub last_announced: Timestamp,
    /// The id of the incident's first alert (its Message-ID): later mails about the incident
    /// (a repeat alert, digests) thread to it. None in state saved by older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_alert: Option<String>,
}

/// One alert the hourly cap held back, beyond those a digest carries whole: a line of the
/// digest's table and of its CSV attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRecord {
    /// Alert kind (`ip_burst`, `subnet_burst`, `account_attack`).
    pub kind: String,
    /// The IP, prefix or account (inert).
    pub key: String,
    /// The rule that matched (empty when the alert did not say).
    pub service: String,
    /// Attempts from this key when the alert was decided.
    pub attempts: u64,
    /// First and last attempt, as the alert shows them (log time, configured zone).
    pub first_seen: String,
    pub last_seen: String,
}

impl HeldRecord {
    fn of(n: &Notice) -> HeldRecord {
        let facts = n.rendered.facts.clone().unwrap_or_default();
        HeldRecord {
            kind: n.kind.clone(),
            key: n.key.clone(),
            service: facts.service,
            attempts: n.total,
            first_seen: facts.first_seen,
            last_seen: facts.last_seen,
        }
    }
}

/// A line of a digest about one incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DigestLine {
    pub kind: String,
    pub key: String,
    pub new_attempts: u64,
    pub total: u64,
    pub opened: Timestamp,
    pub last_activity: Timestamp,
    /// Announced again because it has been active for `repeat_interval`.
    pub repeated: bool,
    /// The id of the incident's first alert, for threading (see [`Incident::first_alert`]).
    pub thread: Option<String>,
}

/// What the policy wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// One alert, as rendered.
    Single(Rendered),
    /// Several new alerts that opened within `group_wait`, in one mail.
    Group(Vec<Rendered>),
    /// The periodic digest: incidents with new attempts, and alerts the cap held back (the
    /// first ones whole, the others as records).
    Digest {
        incidents: Vec<DigestLine>,
        held: Vec<Rendered>,
        records: Vec<HeldRecord>,
        /// When the digest before this one went out (none for the first).
        after: Option<Timestamp>,
    },
}

impl Outgoing {
    /// A stable identity, like a single alert's: a group or digest made again after a crash
    /// (the lines since the last saved state read again, the policy state as it was saved)
    /// gets the same id and is not sent twice.
    ///
    /// A group is named by its members' ids. A digest by the time of the digest before it
    /// (restored with the state), the ids of the alerts it carries and the incidents it
    /// lists, but not their counts: lines read on after the restart may add attempts, and
    /// the same digest with a few more attempts is still a repeat (the totals show in the
    /// next digest). A digest made again with another alert or incident in it is sent: a
    /// rare repeat rather than a loss. None when a member has no id.
    pub fn id(&self) -> Option<String> {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        let kind = match self {
            Outgoing::Single(r) => return r.id.clone(),
            Outgoing::Group(alerts) => {
                let mut ids: Vec<&str> = alerts
                    .iter()
                    .map(|r| r.id.as_deref())
                    .collect::<Option<_>>()?;
                ids.sort_unstable();
                ids.hash(&mut h);
                "group"
            }
            Outgoing::Digest {
                incidents,
                held,
                records,
                after,
            } => {
                let mut ids: Vec<&str> = held
                    .iter()
                    .map(|r| r.id.as_deref())
                    .collect::<Option<_>>()?;
                ids.sort_unstable();
                let mut keys: Vec<(&str, &str)> = incidents
                    .iter()
                    .map(|l| (l.kind.as_str(), l.key.as_str()))
                    .collect();
                keys.sort_unstable();
                let mut held_keys: Vec<(&str, &str)> = records
                    .iter()
                    .map(|r| (r.kind.as_str(), r.key.as_str()))
                    .collect();
                held_keys.sort_unstable();
                (after.map(|t| t.as_second()), ids, keys, held_keys).hash(&mut h);
                "digest"
            }
        };
        Some(format!("{kind}-{:016x}", h.finish()))
    }
}

/// The policy's state (all of it is saved across restarts).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PolicyState {
    pending: Vec<Notice>,
    group_started: Option<Timestamp>,
    held: Vec<Notice>,
    /// Alerts that did not fit in `held`, as records (at most [`MAX_HELD_RECORDS`]).
    #[serde(default)]
    held_records: Vec<HeldRecord>,
    incidents: BTreeMap<String, Incident>,
    sent: VecDeque<Timestamp>,
    last_digest: Option<Timestamp>,
}

/// The alert policy.
pub struct Policy {
    s: PolicySettings,
    st: PolicyState,
}

fn incident_id(kind: &str, key: &str) -> String {
    format!("{kind} {key}")
}

fn secs(d: Duration) -> i64 {
    d.as_secs().min(i64::MAX as u64) as i64
}

impl Policy {
    pub fn new(s: PolicySettings) -> Policy {
        Policy {
            s,
            st: PolicyState::default(),
        }
    }

    pub fn state(&self) -> &PolicyState {
        &self.st
    }

    pub fn restore(&mut self, st: PolicyState) {
        self.st = st;
    }

    /// New settings (config reload); the state is kept.
    pub fn set_settings(&mut self, s: PolicySettings) {
        self.s = s;
    }

    /// Open incidents, oldest first.
    pub fn incidents(&self) -> Vec<&Incident> {
        let mut v: Vec<&Incident> = self.st.incidents.values().collect();
        v.sort_by_key(|i| i.opened);
        v
    }

    /// Whether any incident is open (cheap check before reporting activity).
    pub fn has_incidents(&self) -> bool {
        !self.st.incidents.is_empty()
    }

    fn cap_allows(&mut self, now: Timestamp) -> bool {
        let hour_ago = now.as_second() - 3600;
        while self
            .st
            .sent
            .front()
            .is_some_and(|t| t.as_second() <= hour_ago)
        {
            self.st.sent.pop_front();
        }
        self.s.max_per_hour == 0 || self.st.sent.len() < self.s.max_per_hour as usize
    }

    fn record_sent(&mut self, now: Timestamp) {
        self.st.sent.push_back(now);
        if self.st.last_digest.is_none() {
            self.st.last_digest = Some(now);
        }
    }

    /// An alert from detection. Returns what to send now.
    pub fn offer(&mut self, mut n: Notice, now: Timestamp) -> Vec<Outgoing> {
        let id = incident_id(&n.kind, &n.key);
        match self.st.incidents.get_mut(&id) {
            Some(inc) => {
                inc.total = inc.total.max(n.total);
                inc.last_activity = now;
                inc.last_announced = now;
                inc.total_at_last_mail = inc.total;
                // A follow-up: it threads to the incident's first alert.
                match &inc.first_alert {
                    Some(first) if n.rendered.id.as_ref() != Some(first) => {
                        n.rendered.thread = vec![first.clone()];
                    }
                    Some(_) => {}
                    None => inc.first_alert = n.rendered.id.clone(),
                }
            }
            None => {
                if self.st.incidents.len() >= self.s.max_incidents.max(1) {
                    self.close_quietest();
                }
                self.st.incidents.insert(
                    id,
                    Incident {
                        kind: n.kind.clone(),
                        key: n.key.clone(),
                        opened: now,
                        total: n.total,
                        total_at_last_mail: n.total,
                        last_activity: now,
                        last_announced: now,
                        first_alert: n.rendered.id.clone(),
                    },
                );
            }
        }
        if n.urgent {
            self.record_sent(now);
            return vec![Outgoing::Single(n.rendered)];
        }
        if self.st.pending.is_empty() {
            self.st.group_started = Some(now);
        }
        self.st.pending.push(n);
        self.due(now)
    }

    /// Close the quietest tenth of the open incidents at once (at least one): one pass per
    /// `max_incidents / 10` new incidents rather than a search of them all for each one, so
    /// that an attacker who opens incidents fast cannot make each cost the whole map.
    fn close_quietest(&mut self) {
        let n = (self.st.incidents.len() / 10).max(1);
        let mut by_quiet: Vec<(Timestamp, &String)> = self
            .st
            .incidents
            .iter()
            .map(|(k, i)| (i.last_activity, k))
            .collect();
        if n < by_quiet.len() {
            by_quiet.select_nth_unstable(n - 1);
        }
        let quiet: Vec<String> = by_quiet.iter().take(n).map(|(_, k)| (*k).clone()).collect();
        for k in quiet {
            self.st.incidents.remove(&k);
        }
    }

    /// Further attempts on `key`: counted for the next digest (no mail by itself).
    pub fn activity(&mut self, kind: &str, key: &str, total: u64, now: Timestamp) {
        if let Some(inc) = self.st.incidents.get_mut(&incident_id(kind, key)) {
            inc.total = inc.total.max(total);
            inc.last_activity = now;
        }
    }

    /// Timers: flush the group after `group_wait`, send the digest every `group_interval`,
    /// close quiet incidents. Call it every second or so.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Outgoing> {
        let out = self.due(now);
        let quiet = secs(self.s.cooldown);
        self.st
            .incidents
            .retain(|_, i| now.as_second() - i.last_activity.as_second() < quiet);
        out
    }

    /// The group and the digest, when due (cheap unless one is: [`offer`](Self::offer) calls
    /// it for every alert; closing quiet incidents is left to [`tick`](Self::tick)).
    fn due(&mut self, now: Timestamp) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let group_due = self.st.pending.len() >= MAX_GROUP
            || self
                .st
                .group_started
                .is_some_and(|t| now.as_second() - t.as_second() >= secs(self.s.group_wait));
        if !self.st.pending.is_empty() && group_due {
            let pending = std::mem::take(&mut self.st.pending);
            self.st.group_started = None;
            if self.cap_allows(now) {
                self.record_sent(now);
                let mut rendered: Vec<Rendered> = pending.into_iter().map(|n| n.rendered).collect();
                out.push(if rendered.len() == 1 {
                    Outgoing::Single(rendered.remove(0))
                } else {
                    Outgoing::Group(rendered)
                });
            } else {
                for n in pending {
                    if self.st.held.len() < MAX_HELD {
                        self.st.held.push(n);
                    } else {
                        self.st.held_records.push(HeldRecord::of(&n));
                    }
                }
            }
        }

        // Also at once when the records are full: memory stays bounded and none is dropped.
        let digest_due = self.st.held_records.len() >= MAX_HELD_RECORDS
            || match self.st.last_digest {
                Some(t) => now.as_second() - t.as_second() >= secs(self.s.group_interval),
                None => !self.st.held.is_empty(),
            };
        if digest_due {
            let repeat = secs(self.s.repeat_interval);
            let lines: Vec<DigestLine> = self
                .st
                .incidents
                .values()
                .filter_map(|i| {
                    let new_attempts = i.total.saturating_sub(i.total_at_last_mail);
                    let repeated = now.as_second() - i.last_announced.as_second() >= repeat
                        && i.last_activity > i.last_announced;
                    (new_attempts > 0 || repeated).then(|| DigestLine {
                        kind: i.kind.clone(),
                        key: i.key.clone(),
                        new_attempts,
                        total: i.total,
                        opened: i.opened,
                        last_activity: i.last_activity,
                        repeated,
                        thread: i.first_alert.clone(),
                    })
                })
                .collect();
            let has_content =
                !lines.is_empty() || !self.st.held.is_empty() || !self.st.held_records.is_empty();
            // The digest itself is not capped (it comes at most every group_interval): it is
            // where what the cap holds back goes, so holding it back too would lose them.
            if has_content {
                for l in &lines {
                    if let Some(i) = self.st.incidents.get_mut(&incident_id(&l.kind, &l.key)) {
                        i.total_at_last_mail = i.total;
                        if l.repeated {
                            i.last_announced = now;
                        }
                    }
                }
                let held = std::mem::take(&mut self.st.held);
                let records = std::mem::take(&mut self.st.held_records);
                self.record_sent(now);
                let after = self.st.last_digest.replace(now);
                out.push(Outgoing::Digest {
                    incidents: lines,
                    held: held.into_iter().map(|n| n.rendered).collect(),
                    records,
                    after,
                });
            } else {
                self.st.last_digest = Some(now);
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
