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
//!
//! The policy works on alerts not rendered yet ([`Notice`]: kind, key, id, template context):
//! it imports nothing from `render` or `message`, and only what it lets go is rendered, by
//! `crate::agent`. `id.rs` makes the stable ids of alerts, groups and digests (a fixed,
//! documented hash); `tests.rs` holds the tests.

use crate::alert_kind::AlertKind;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

pub mod id;

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

/// An alert from detection, not rendered yet: what the policy decides on, and the template
/// context its mail is rendered from once the policy lets it go (in `crate::agent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "compat::NoticeWire")]
pub struct Notice {
    pub kind: AlertKind,
    /// What the incident is about (an IP, a prefix, an account).
    pub key: String,
    pub urgent: bool,
    /// Attempts so far for this key.
    pub total: u64,
    /// Attempts in the window that crossed the threshold (what a plain fallback mail shows).
    pub attempts: u64,
    /// A stable identity of the alert (kind, key, alert number, log time), so that an alert
    /// made again after a crash (lines re-read since the last saved state) is not sent twice.
    pub id: Option<String>,
    /// The id versions before `v2` gave the alert, for the repeat check after an upgrade
    /// ([`id`] explains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_id: Option<String>,
    /// The template context of the alert's kind, as JSON (`actions` filled in).
    pub context: serde_json::Value,
    /// What a digest's one-line record of the alert shows, when the cap holds it back.
    pub facts: AlertFacts,
    /// Text an older version rendered before the policy (an alert held in a `state.json`
    /// written by it): sent as it is. None for every alert made now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prerendered: Option<Prerendered>,
    /// The ids of the alerts this one follows up (the incident's first alert), parent first:
    /// the mail's `In-Reply-To` and `References`. Empty for a first alert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thread: Vec<String>,
    /// Paragraphs added below the rendered body (fleet mode: the attempts per server, "fleet
    /// store unavailable").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The facts of an alert a digest's table shows, taken from its context.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertFacts {
    /// The rule that matched (empty when the alert did not say).
    pub service: String,
    /// First and last attempt, as the alert shows them (log time, configured zone).
    pub first_seen: String,
    pub last_seen: String,
}

/// An alert's mail as an older version rendered it before the policy held it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prerendered {
    pub subject: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// One open incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub kind: AlertKind,
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
    pub kind: AlertKind,
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
        HeldRecord {
            kind: n.kind,
            key: n.key.clone(),
            service: n.facts.service.clone(),
            attempts: n.total,
            first_seen: n.facts.first_seen.clone(),
            last_seen: n.facts.last_seen.clone(),
        }
    }
}

/// A line of a digest about one incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DigestLine {
    pub kind: AlertKind,
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

/// What the policy wants sent: alerts, rendered by the caller once they are due.
// Outgoing values live only between the policy and the renderer, a few at a time: boxing
// the single alert would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// One alert.
    Single(Notice),
    /// Several new alerts that opened within `group_wait`, in one mail.
    Group(Vec<Notice>),
    /// The periodic digest: incidents with new attempts, and alerts the cap held back (the
    /// first ones whole, the others as records).
    Digest {
        incidents: Vec<DigestLine>,
        held: Vec<Notice>,
        records: Vec<HeldRecord>,
        /// When the digest before this one went out (none for the first).
        after: Option<Timestamp>,
    },
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

fn incident_id(kind: AlertKind, key: &str) -> String {
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
        self.note(&mut n, now);
        if n.urgent {
            self.record_sent(now);
            return vec![Outgoing::Single(n)];
        }
        if self.st.pending.is_empty() {
            self.st.group_started = Some(now);
        }
        self.st.pending.push(n);
        self.due(now)
    }

    /// Open (or update) the incident of an alert without mailing it: for an alert the
    /// administrator silenced or acked (`authwatch silence | ack`), still counted and listed.
    pub fn note(&mut self, n: &mut Notice, now: Timestamp) {
        let id = incident_id(n.kind, &n.key);
        match self.st.incidents.get_mut(&id) {
            Some(inc) => {
                inc.total = inc.total.max(n.total);
                inc.last_activity = now;
                inc.last_announced = now;
                inc.total_at_last_mail = inc.total;
                // A follow-up: it threads to the incident's first alert.
                match &inc.first_alert {
                    Some(first) if n.id.as_ref() != Some(first) => {
                        n.thread = vec![first.clone()];
                    }
                    Some(_) => {}
                    None => inc.first_alert = n.id.clone(),
                }
            }
            None => {
                if self.st.incidents.len() >= self.s.max_incidents.max(1) {
                    self.close_quietest();
                }
                self.st.incidents.insert(
                    id,
                    Incident {
                        kind: n.kind,
                        key: n.key.clone(),
                        opened: now,
                        total: n.total,
                        total_at_last_mail: n.total,
                        last_activity: now,
                        last_announced: now,
                        first_alert: n.id.clone(),
                    },
                );
            }
        }
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
    pub fn activity(&mut self, kind: AlertKind, key: &str, total: u64, now: Timestamp) {
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
                let mut pending = pending;
                out.push(if pending.len() == 1 {
                    Outgoing::Single(pending.remove(0))
                } else {
                    Outgoing::Group(pending)
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
                        kind: i.kind,
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
                    if let Some(i) = self.st.incidents.get_mut(&incident_id(l.kind, &l.key)) {
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
                    held,
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

/// How a [`Notice`] is read from `state.json`: as this version writes it, or as versions that
/// rendered alerts before the policy did (`{kind, key, urgent, rendered: {subject, text, html,
/// id, facts}, total}`); such an alert is sent with its old text ([`Notice::prerendered`]).
mod compat {
    use super::{AlertFacts, AlertKind, Notice, Prerendered};
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) struct NoticeWire {
        kind: AlertKind,
        key: String,
        urgent: bool,
        total: u64,
        #[serde(default)]
        attempts: u64,
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        legacy_id: Option<String>,
        #[serde(default)]
        context: serde_json::Value,
        #[serde(default)]
        facts: AlertFacts,
        #[serde(default)]
        prerendered: Option<Prerendered>,
        #[serde(default)]
        thread: Vec<String>,
        #[serde(default)]
        notes: Vec<String>,
        /// The old form: the alert as rendered.
        #[serde(default)]
        rendered: Option<OldRendered>,
    }

    #[derive(Deserialize)]
    struct OldRendered {
        subject: String,
        text: String,
        #[serde(default)]
        html: Option<String>,
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        facts: Option<AlertFacts>,
    }

    impl From<NoticeWire> for Notice {
        fn from(w: NoticeWire) -> Notice {
            let mut n = Notice {
                kind: w.kind,
                key: w.key,
                urgent: w.urgent,
                total: w.total,
                attempts: w.attempts,
                id: w.id,
                legacy_id: w.legacy_id,
                context: w.context,
                facts: w.facts,
                prerendered: w.prerendered,
                thread: w.thread,
                notes: w.notes,
            };
            if let Some(old) = w.rendered {
                // Its id is of the old form already.
                n.id = n.id.or(old.id);
                n.legacy_id = n.legacy_id.or_else(|| n.id.clone());
                n.facts = old.facts.unwrap_or(n.facts);
                n.prerendered = Some(Prerendered {
                    subject: old.subject,
                    text: old.text,
                    html: old.html,
                });
            }
            n
        }
    }
}

#[cfg(test)]
mod tests;
