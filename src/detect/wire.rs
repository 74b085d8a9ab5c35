//! How detector state is written in `state.json` (state version 3), and read back, including
//! the older layout of version 2.
//!
//! A detector is `{"base": B, "evictions": N, "keys": [[key, state], ...]}`, keys least recently
//! seen first. `B` is the latest hit second of the detector (Unix time); every time in a key's
//! state is written as seconds before `B` ("ago", small non-negative integers). A key's state is
//! one array, in this order:
//!
//! ```text
//! [service, first_seen_ago, last_seen_ago, total,
//!  [bucket_ago, attempts, bucket_ago, attempts, ...],        window buckets, oldest first
//!  [[member, attempts, last_ago], ...],
//!  overflow_attempts, overflow_names, attempts_without_member,
//!  ["quoted line", ...],
//!  last_alert_ago or null, alerts_sent, total_at_last_alert,
//!  [earlier_alert_ago, ...]]
//! ```
//!
//! A delta (one line of the checkpoint journal) is `{"base": B, "evictions": N, "keys": [...],
//! "forgotten": [key, ...]}`: the keys that changed since the last checkpoint, in the same
//! layout (only those a snapshot would keep: a changed key already too old to keep is listed
//! as forgotten), and the saved keys forgotten or evicted since (at most
//! `MAX_PENDING_FORGOTTEN`; beyond, the checkpointer writes a snapshot instead; a key never
//! saved is not listed). Writing it marks its keys written.
//!
//! Keys are written as text (`"2001:db8::7"`, `"2001:db8:1::/64"`, an account name). Version 2
//! wrote each state as an object with field names and RFC 3339 times: about four times the
//! bytes, and it was built as a full copy of the maps before writing. [`DetectorSnapshotV2`]
//! reads it for the migration.

use super::key::{pack, KeyState, Member, Members, Names, Window};
use super::{DetectorSnapshot, KeyDetector, Saved};
use super::{MAX_EARLIER_ALERTS, MAX_MEMBERS_PER_KEY};
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::ser::{SerializeMap, SerializeSeq, SerializeTuple};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A detector's saved state, serialized straight from the live map (see
/// [`KeyDetector::view`]).
pub struct SnapshotView<'a, K: Hash + Eq> {
    pub(super) d: &'a KeyDetector<K>,
}

/// The keys changed since the last checkpoint, serialized from the live map; writing it marks
/// them written (see [`KeyDetector::delta`]).
pub struct DeltaView<'a, K: Hash + Eq> {
    pub(super) d: &'a KeyDetector<K>,
}

impl<K: Hash + Eq + Clone + Serialize> Serialize for DeltaView<'_, K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.d;
        // Changed keys that a snapshot would keep are written in full; changed keys it would
        // drop (seen before the window of the latest hit, no alert within the cooldown) are
        // listed as forgotten, as a restart from a snapshot would forget them.
        let keep = d.worth_saving();
        let keys = || {
            d.ips
                .iter_oldest_first()
                .filter(|(_, st)| st.dirty() && keep(st))
                .map(|(k, st)| {
                    st.written(true);
                    let out = KeyOut {
                        st,
                        service: d.service_name(st),
                        lines: Cow::Owned(d.lines_of(st)),
                    };
                    (k, out)
                })
        };
        let forgotten = std::mem::take(&mut *d.forgotten.borrow_mut());
        d.forgotten_overflow.set(false);
        let mut m = s.serialize_map(Some(4))?;
        write_fields(&mut m, d.latest.unwrap_or(0), d.evictions, keys)?;
        // After the keys: the changed keys still marked are the ones not kept; listed when
        // the saved state has them.
        let stale = || {
            d.ips
                .iter_oldest_first()
                .filter(|(_, st)| st.dirty())
                .filter(|(_, st)| {
                    let listed = st.on_disk();
                    st.written(false);
                    listed
                })
                .map(|(k, _)| k)
        };
        m.serialize_entry("forgotten", &Forgotten(&forgotten, stale))?;
        m.end()
    }
}

/// The `forgotten` list of a delta: the keys forgotten or evicted, then the stale ones.
struct Forgotten<'a, K, F>(&'a [K], F);

impl<'a, K, I, F> Serialize for Forgotten<'a, K, F>
where
    K: Serialize + 'a,
    I: Iterator<Item = &'a K>,
    F: Fn() -> I,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().chain((self.1)()))
    }
}

/// A delta as read back.
#[derive(Deserialize)]
#[serde(bound = "K: DeserializeOwned")]
struct DeltaIn<K> {
    base: i64,
    evictions: u64,
    keys: Vec<(K, StateIn)>,
    #[serde(default)]
    forgotten: Vec<K>,
}

/// A delta read back from the journal (see [`KeyDetector::apply`]).
#[derive(Debug, Clone)]
pub struct Delta<K> {
    /// The latest hit second when it was written.
    pub(super) base: i64,
    pub(super) keys: Vec<(K, Saved)>,
    pub(super) evictions: u64,
    pub(super) forgotten: Vec<K>,
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Delta<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = DeltaIn::<K>::deserialize(d)?;
        let base = w.base;
        Ok(Delta {
            base,
            keys: w
                .keys
                .into_iter()
                .map(|(k, st)| (k, state_from(st, base)))
                .collect(),
            evictions: w.evictions,
            forgotten: w.forgotten,
        })
    }
}

/// One key as written: its state, service name and quoted lines.
struct KeyOut<'a> {
    st: &'a KeyState,
    service: &'a str,
    lines: Cow<'a, [String]>,
}

impl<K: Hash + Eq + Clone + Serialize> Serialize for SnapshotView<'_, K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.d;
        let keep = d.worth_saving();
        let keys = || {
            d.ips
                .iter_oldest_first()
                .filter(|(_, st)| keep(st))
                .map(|(k, st)| {
                    let out = KeyOut {
                        st,
                        service: d.service_name(st),
                        lines: Cow::Owned(d.lines_of(st)),
                    };
                    (k, out)
                })
        };
        write_snapshot(s, d.latest.unwrap_or(0), d.evictions, keys)
    }
}

impl<K: Serialize> Serialize for DetectorSnapshot<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let base = self
            .ips
            .iter()
            .map(|(_, sv)| i64::from(sv.st.last_seen))
            .max()
            .unwrap_or(0);
        let keys = || {
            self.ips.iter().map(|(k, sv)| {
                let out = KeyOut {
                    st: &sv.st,
                    service: sv.service,
                    lines: Cow::Borrowed(&sv.lines[..]),
                };
                (k, out)
            })
        };
        write_snapshot(s, base, self.evictions, keys)
    }
}

fn write_snapshot<'a, S, K, I, F>(
    s: S,
    base: i64,
    evictions: u64,
    keys: F,
) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    K: Serialize + 'a,
    I: Iterator<Item = (&'a K, KeyOut<'a>)>,
    F: Fn() -> I,
{
    let mut m = s.serialize_map(Some(3))?;
    write_fields(&mut m, base, evictions, keys)?;
    m.end()
}

/// `base`, `evictions` and `keys` of a snapshot or a delta.
fn write_fields<'a, M, K, I, F>(
    m: &mut M,
    base: i64,
    evictions: u64,
    keys: F,
) -> Result<(), M::Error>
where
    M: SerializeMap,
    K: Serialize + 'a,
    I: Iterator<Item = (&'a K, KeyOut<'a>)>,
    F: Fn() -> I,
{
    struct Keys<F>(F, i64);
    impl<'a, K, I, F> Serialize for Keys<F>
    where
        K: Serialize + 'a,
        I: Iterator<Item = (&'a K, KeyOut<'a>)>,
        F: Fn() -> I,
    {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(None)?;
            for (k, out) in (self.0)() {
                seq.serialize_element(&(k, StateOut { out, base: self.1 }))?;
            }
            seq.end()
        }
    }
    m.serialize_entry("base", &base)?;
    m.serialize_entry("evictions", &evictions)?;
    m.serialize_entry("keys", &Keys(keys, base))
}

/// One key's state in the array layout above.
struct StateOut<'a> {
    out: KeyOut<'a>,
    base: i64,
}

impl Serialize for StateOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (st, base) = (self.out.st, self.base);
        let ago = |t: i64| base.saturating_sub(t);
        let c = st.cold();
        let mut t = s.serialize_tuple(14)?;
        t.serialize_element(self.out.service)?;
        t.serialize_element(&ago(i64::from(st.first_seen)))?;
        t.serialize_element(&ago(i64::from(st.last_seen)))?;
        t.serialize_element(&st.total)?;
        t.serialize_element(&Ints(
            st.window
                .iter()
                .flat_map(|(t, n)| [ago(t), n.min(i64::MAX as u64) as i64]),
        ))?;
        t.serialize_element(&MembersOut(&st.members, base))?;
        t.serialize_element(&c.overflow_attempts)?;
        t.serialize_element(&c.overflow_names)?;
        t.serialize_element(&u64::from(st.no_member))?;
        t.serialize_element(&self.out.lines)?;
        t.serialize_element(&c.last_alert.map(ago))?;
        t.serialize_element(&c.alerts_sent)?;
        t.serialize_element(&c.total_at_last_alert)?;
        t.serialize_element(&Ints(c.earlier_alerts.iter().map(|&t| ago(t))))?;
        t.end()
    }
}

/// A list of integers from a (cloneable) iterator.
struct Ints<I>(I);

impl<I: Iterator<Item = i64> + Clone> Serialize for Ints<I> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.clone())
    }
}

struct MembersOut<'a>(&'a Members, i64);

impl Serialize for MembersOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let base = self.1;
        s.collect_seq(self.0.list().iter().map(|m| {
            (
                m.name.text(),
                u64::from(m.attempts),
                base.saturating_sub(i64::from(m.last)),
            )
        }))
    }
}

/// A key's state as read (the array layout above).
#[derive(Deserialize)]
struct StateIn(
    String,
    i64,
    i64,
    u64,
    Vec<i64>,
    Vec<(String, u64, i64)>,
    u64,
    u64,
    u64,
    VecDeque<String>,
    Option<i64>,
    u32,
    u64,
    Vec<i64>,
);

#[derive(Deserialize)]
#[serde(bound = "K: DeserializeOwned")]
struct SnapshotIn<K> {
    base: i64,
    evictions: u64,
    keys: Vec<(K, StateIn)>,
}

/// Members as read; the names are shared again when the detector restores them.
fn members_from(list: impl IntoIterator<Item = (String, u64, i64)>) -> Members {
    let mut names = Names::default();
    let mut members = Members::default();
    for (name, attempts, last) in list.into_iter().take(MAX_MEMBERS_PER_KEY) {
        let name = names.name(&name);
        if members.get_mut(&name).is_none() {
            members.push(Member {
                name,
                attempts: super::key::sat32(attempts),
                last: pack(last),
            });
        }
    }
    members
}

/// The cold part as read: absent when it holds nothing.
fn cold_from(c: super::key::Cold) -> Option<Box<super::key::Cold>> {
    (c != super::key::Cold::default()).then(|| Box::new(c))
}

fn state_from(w: StateIn, base: i64) -> Saved {
    let at = |ago: i64| base.saturating_sub(ago);
    let mut st = KeyState::new(at(w.1), 0);
    st.window = Window::from_pairs(w.4.chunks_exact(2).map(|p| (at(p[0]), p[1].max(0) as u64)));
    st.total = w.3;
    st.last_seen = pack(at(w.2));
    st.members = members_from(w.5.into_iter().map(|(n, a, ago)| (n, a, at(ago))));
    st.no_member = super::key::sat32(w.8);
    st.cold = cold_from(super::key::Cold {
        overflow_attempts: w.6,
        overflow_names: w.7,
        last_alert: w.10.map(at),
        alerts_sent: w.11,
        total_at_last_alert: w.12,
        earlier_alerts: w
            .13
            .iter()
            .rev()
            .take(MAX_EARLIER_ALERTS)
            .rev()
            .map(|&a| at(a))
            .collect(),
    });
    Saved {
        st,
        service: crate::rules::intern_service(&w.0),
        lines: w.9.into(),
    }
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for DetectorSnapshot<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = SnapshotIn::<K>::deserialize(d)?;
        let base = w.base;
        Ok(DetectorSnapshot {
            ips: w
                .keys
                .into_iter()
                .map(|(k, st)| (k, state_from(st, base)))
                .collect(),
            evictions: w.evictions,
        })
    }
}

/// A detector's state as state version 2 wrote it (for the migration to version 3).
#[derive(Deserialize)]
#[serde(bound = "K: DeserializeOwned")]
pub struct DetectorSnapshotV2<K> {
    ips: Vec<(K, KeyStateV2)>,
    evictions: u64,
}

impl<K> Default for DetectorSnapshotV2<K> {
    fn default() -> Self {
        DetectorSnapshotV2 {
            ips: Vec::new(),
            evictions: 0,
        }
    }
}

#[derive(Deserialize)]
struct KeyStateV2 {
    buckets: VecDeque<(i64, u64)>,
    total: u64,
    first_seen: Timestamp,
    last_seen: Timestamp,
    service: String,
    members: HashMap<String, (u64, i64)>,
    overflow_attempts: u64,
    overflow_names: u64,
    no_member: u64,
    lines: VecDeque<String>,
    last_alert: Option<Timestamp>,
    alerts_sent: u32,
    total_at_last_alert: u64,
    #[serde(default)]
    earlier_alerts: VecDeque<Timestamp>,
}

impl<K> DetectorSnapshotV2<K> {
    /// The same state in the current form.
    pub fn migrate(self) -> DetectorSnapshot<K> {
        DetectorSnapshot {
            ips: self
                .ips
                .into_iter()
                .map(|(k, o)| {
                    let mut members: Vec<(String, u64, i64)> = o
                        .members
                        .into_iter()
                        .map(|(name, (n, last))| (name, n, last))
                        .collect();
                    members.sort_by(|a, b| a.0.cmp(&b.0));
                    let mut st = KeyState::new(o.first_seen.as_second(), 0);
                    st.window = Window::from_pairs(o.buckets);
                    st.total = o.total;
                    st.last_seen = pack(o.last_seen.as_second());
                    st.members = members_from(members);
                    st.no_member = super::key::sat32(o.no_member);
                    st.cold = cold_from(super::key::Cold {
                        overflow_attempts: o.overflow_attempts,
                        overflow_names: o.overflow_names,
                        last_alert: o.last_alert.map(|t| t.as_second()),
                        alerts_sent: o.alerts_sent,
                        total_at_last_alert: o.total_at_last_alert,
                        earlier_alerts: o.earlier_alerts.iter().map(|t| t.as_second()).collect(),
                    });
                    let st = Saved {
                        st,
                        service: crate::rules::intern_service(&o.service),
                        lines: o.lines.into(),
                    };
                    (k, st)
                })
                .collect(),
            evictions: self.evictions,
        }
    }
}
