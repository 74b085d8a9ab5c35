//! Alert ids: the stable identity of an alert, a grouped mail or a digest, recorded in
//! `<state_dir>/alert-ids` when the mail is spooled, so that an alert made again after a crash
//! (the lines since the last saved state are read again) is not sent twice.
//!
//! An id is `KIND-v2-<16 hex digits>`: the kind (`ip_burst`, …, `group`, `digest`) and the
//! 64-bit FNV-1a hash (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`: for each byte,
//! `h ^= byte; h *= prime`, wrapping) of these bytes, which no Rust release can change:
//!
//! - a string: its length in bytes as a u64, little-endian (8 bytes), then its UTF-8 bytes;
//! - a list: its number of items as a u64, little-endian, then each item, sorted by byte order;
//! - an integer: its fixed-width little-endian bytes (u32: 4, i64: 8).
//!
//! | id | hashed, in this order |
//! |---|---|
//! | an alert ([`alert_id`]) | kind (string), key (string), alert number (u32), log time of its last attempt (i64, seconds since 1970) |
//! | a group ([`Outgoing::id`]) | the members' ids (list of strings) |
//! | a digest | the time of the digest before it (the byte 0 when none; else the byte 1 and the i64), the ids of the alerts it carries whole (list of strings), the incidents it lists (list of kind + key, each two strings), the records of held-back alerts (the same) |
//!
//! `tests.rs` pins exact ids for fixed inputs ("golden" ids), so a change of the layout shows.
//!
//! Versions before `v2` used std's `DefaultHasher` (ids `KIND-<16 hex>`), which Rust does not
//! keep stable across releases. For the upgrade, each alert also carries that legacy id
//! ([`AlertId::legacy`], [`Outgoing::legacy_id`]), and the spool checks it while its
//! `alert-ids` file still holds ids of the old form, so an alert made again just after the
//! upgrade is not sent a second time. Limit: a legacy id only matches when authwatch was built
//! with the same Rust toolchain as the version that wrote it (the Debian package is); otherwise
//! such an alert may go out once more, a repeat rather than a loss.

use super::Outgoing;
use crate::alert_kind::AlertKind;
use jiff::Timestamp;

/// The FNV-1a 64 offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// The FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The 64-bit FNV-1a hash over the layout of the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(FNV_OFFSET)
    }
}

impl Fnv1a {
    /// Raw bytes, as they are.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
        self
    }

    /// A string: length (u64 LE), then its bytes.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(&(s.len() as u64).to_le_bytes())
            .bytes(s.as_bytes())
    }

    /// A list of strings: count (u64 LE), then each, sorted.
    pub fn strs(&mut self, items: &[&str]) -> &mut Self {
        let mut v = items.to_vec();
        v.sort_unstable();
        self.bytes(&(v.len() as u64).to_le_bytes());
        for s in v {
            self.str(s);
        }
        self
    }

    /// A list of (kind, key) pairs: count (u64 LE), then each pair, sorted.
    pub fn pairs(&mut self, items: &[(&str, &str)]) -> &mut Self {
        let mut v = items.to_vec();
        v.sort_unstable();
        self.bytes(&(v.len() as u64).to_le_bytes());
        for (a, b) in v {
            self.str(a).str(b);
        }
        self
    }

    pub fn finish(&self) -> u64 {
        self.0
    }

    /// `PREFIX-v2-<16 hex>`.
    fn id(&self, prefix: &str) -> String {
        format!("{prefix}-v2-{:016x}", self.0)
    }
}

/// An alert's id, and the id versions before `v2` gave it (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertId {
    pub id: String,
    pub legacy: String,
}

/// The id of an alert: the same lines give the same id, also when they are read again after
/// a crash, and under any Rust release.
pub fn alert_id(kind: AlertKind, key: &str, number: u32, at: Timestamp) -> AlertId {
    let mut h = Fnv1a::default();
    h.str(kind.as_str())
        .str(key)
        .bytes(&number.to_le_bytes())
        .bytes(&at.as_second().to_le_bytes());
    AlertId {
        id: h.id(kind.as_str()),
        legacy: legacy_alert_id(kind, key, number, at),
    }
}

/// The id versions before `v2` gave the alert (std `DefaultHasher`: stable only under one
/// toolchain).
fn legacy_alert_id(kind: AlertKind, key: &str, number: u32, at: Timestamp) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    (kind.as_str(), key, number, at.as_second()).hash(&mut h);
    format!("{kind}-{:016x}", h.finish())
}

/// Whether an id has the form of versions before `v2` (`KIND-<16 hex>`).
pub fn is_legacy(id: &str) -> bool {
    !id.contains("-v2-")
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
        let mut h = Fnv1a::default();
        let kind = match self {
            Outgoing::Single(n) => return n.id.clone(),
            Outgoing::Group(alerts) => {
                let ids: Vec<&str> = alerts
                    .iter()
                    .map(|n| n.id.as_deref())
                    .collect::<Option<_>>()?;
                h.strs(&ids);
                "group"
            }
            Outgoing::Digest {
                incidents,
                held,
                records,
                after,
            } => {
                let ids: Vec<&str> = held
                    .iter()
                    .map(|n| n.id.as_deref())
                    .collect::<Option<_>>()?;
                match after {
                    None => h.bytes(&[0]),
                    Some(t) => h.bytes(&[1]).bytes(&t.as_second().to_le_bytes()),
                };
                let keys: Vec<(&str, &str)> = incidents
                    .iter()
                    .map(|l| (l.kind.as_str(), l.key.as_str()))
                    .collect();
                let held_keys: Vec<(&str, &str)> = records
                    .iter()
                    .map(|r| (r.kind.as_str(), r.key.as_str()))
                    .collect();
                h.strs(&ids).pairs(&keys).pairs(&held_keys);
                "digest"
            }
        };
        Some(h.id(kind))
    }

    /// The id versions before `v2` gave this mail (from the members' legacy ids), for the
    /// repeat check while `alert-ids` holds such ids. None when a member has none.
    pub fn legacy_id(&self) -> Option<String> {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        let kind = match self {
            Outgoing::Single(n) => return n.legacy_id.clone(),
            Outgoing::Group(alerts) => {
                let mut ids: Vec<&str> = alerts
                    .iter()
                    .map(|n| n.legacy_id.as_deref())
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
                    .map(|n| n.legacy_id.as_deref())
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
