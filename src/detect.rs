//! Detection: bounded sliding windows per key, and the cooldown that decides whether a
//! crossing sends mail now or is only counted. One engine, [`KeyDetector`], serves three views
//! of the same failures: per attacking IP (members: the accounts tried), per subnet (IPv6 /64,
//! optionally IPv4 /24; members: the addresses seen), and per account (members: the IPs that
//! tried it, for distributed attacks that stay under the per-IP threshold).
//!
//! Pure logic: the caller passes the time of each hit (log time, or the clock's "now" when the
//! line carried no stamp), so tests move time instead of sleeping. Every map here has a cap:
//! attackers choose the keys (think IPv6), so the least recently seen key is evicted beyond
//! `max_keys`, and per-key lists (members, quoted lines, window buckets, history) are capped.
//!
//! Memory per key is kept small (`key`: packed state, `keymap`: the bounded map without a
//! node per key, `lines`: quoted lines in one ring of fixed size per detector), so that a
//! million tracked keys fit in well under 256 MiB.

use crate::rules::{Hit, HitKind};
use jiff::Timestamp;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Duration;

mod key;
mod keymap;
mod lines;
mod wire;
use key::{pack, sat32, KeyState, Member, Names};
use keymap::KeyMap;
use lines::LineStore;
pub use lines::LINE_STORE_BYTES;
pub use wire::{Delta, DeltaView, DetectorSnapshotV2, SnapshotView};

/// Distinct members (accounts, addresses) remembered per key; further ones are only counted.
pub use crate::config::MAX_MEMBERS_PER_KEY;
/// Kept for the per-IP view: the account list is the member list.
pub const MAX_ACCOUNTS_PER_IP: usize = MAX_MEMBERS_PER_KEY;
/// Member names (account names) longer than this are cut (attackers choose them).
pub const MAX_ACCOUNT_CHARS: usize = 128;
/// Quoted log lines longer than this are cut.
pub const MAX_QUOTED_LINE_CHARS: usize = 500;
/// Earlier alerts remembered per key (repeat offenders).
pub const MAX_EARLIER_ALERTS: usize = 10;

/// Settings for a [`KeyDetector`].
#[derive(Debug, Clone)]
pub struct DetectorSettings {
    pub attempts: u32,
    pub window: Duration,
    pub cooldown: Duration,
    /// Cap on tracked keys (IPs, subnets, accounts).
    pub max_tracked_ips: usize,
    /// Members listed by name in an alert.
    pub top_accounts: usize,
    pub log_lines: usize,
    /// An alert also needs this many distinct members inside the window (0 or 1: no condition).
    pub min_distinct_members: usize,
}

/// What an alert about one key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAlert<K> {
    pub key: K,
    pub service: &'static str,
    /// Attempts inside the window when the alert was decided.
    pub attempts_in_window: u64,
    /// All attempts for this key since it was first seen (while tracked).
    pub attempts_total: u64,
    /// Attempts since the previous alert for this key (all of them for the first alert).
    pub attempts_since_last_alert: u64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// The most frequent members (accounts for an IP; IPs for an account or subnet), most
    /// first, with their counts.
    pub top_members: Vec<(String, u64)>,
    /// How many distinct members were seen in all (as far as counted).
    pub distinct_members: u64,
    /// Distinct members seen inside the window.
    pub distinct_members_in_window: u64,
    /// Attempts of members not listed in `top_members`.
    pub other_member_attempts: u64,
    /// Attempts that named no member.
    pub attempts_without_member: u64,
    /// The last few matching log lines, oldest first (raw; render makes them inert).
    pub recent_lines: Vec<String>,
    /// 1 for the first alert about this key, 2 for the next after the cooldown, ...
    pub alert_number: u32,
    /// When the previous alert was decided, if any.
    pub previous_alert: Option<Timestamp>,
    /// Earlier alerts (most recent last), for repeat offenders.
    pub earlier_alerts: Vec<Timestamp>,
    /// Attempts per minute over the window, oldest first (at most 60 minutes, the most recent).
    pub per_minute: Vec<u64>,
}

/// An alert about one attacking IP.
pub type IpAlert = KeyAlert<IpAddr>;

/// A detector's state as saved in `state.json`: tracked keys, least recently seen first (see
/// [`wire`] for the layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectorSnapshot<K = IpAddr> {
    ips: Vec<(K, Saved)>,
    evictions: u64,
}

/// A key's state with what the detector keeps for it elsewhere: its service name and its
/// quoted lines (oldest first).
#[derive(Debug, Clone)]
struct Saved {
    st: KeyState,
    service: &'static str,
    lines: Vec<String>,
}

impl PartialEq for Saved {
    fn eq(&self, o: &Self) -> bool {
        self.st.same_as(&o.st) && self.service == o.service && self.lines == o.lines
    }
}

impl Eq for Saved {}

impl<K> Default for DetectorSnapshot<K> {
    fn default() -> Self {
        DetectorSnapshot {
            ips: Vec::new(),
            evictions: 0,
        }
    }
}

impl<K> DetectorSnapshot<K> {
    /// Number of keys in the snapshot.
    pub fn len(&self) -> usize {
        self.ips.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ips.is_empty()
    }
}

/// Sliding windows per key with cooldown, bounded in memory.
pub struct KeyDetector<K: Hash + Eq> {
    s: DetectorSettings,
    ips: KeyMap<K, KeyState>,
    evictions: u64,
    /// The latest hit second seen (log time), the reference for what a snapshot keeps.
    latest: Option<i64>,
    /// Quoted lines of every key.
    lines: LineStore,
    /// Account names shared by the keys.
    names: Names,
    /// Service names; a key holds an index (a handful: the rules of the config).
    services: Vec<&'static str>,
    /// Keys forgotten or evicted since the last checkpoint (see [`KeyDetector::delta`]), at
    /// most [`MAX_PENDING_FORGOTTEN`].
    forgotten: std::cell::RefCell<Vec<K>>,
    /// More keys were forgotten than listed: the next checkpoint must be a full snapshot.
    forgotten_overflow: std::cell::Cell<bool>,
}

/// Keys forgotten or evicted between two checkpoints that the next delta lists. Beyond it the
/// list stops and the next checkpoint writes a full snapshot instead: an attacker rotating IPv6
/// addresses past the cap evicts a key per line (hundreds of thousands per checkpoint), and
/// listing them all would cost memory (about 40 bytes each) and journal bytes for nothing.
pub const MAX_PENDING_FORGOTTEN: usize = 65_536;

/// List `key` as forgotten for the next delta, or mark the list overflowed.
fn note_forgotten<K>(
    list: &mut std::cell::RefCell<Vec<K>>,
    overflow: &std::cell::Cell<bool>,
    key: K,
) {
    let list = list.get_mut();
    if list.len() < MAX_PENDING_FORGOTTEN {
        list.push(key);
    } else {
        overflow.set(true);
    }
}

/// Per-IP detection.
pub type IpDetector = KeyDetector<IpAddr>;

/// Append `s` to `out`, cut to `max_chars` characters (with an ellipsis when cut).
fn push_cut(out: &mut String, s: &str, max_chars: usize) {
    // A string of at most `max_chars` bytes has at most that many characters: no need to count.
    if s.len() <= max_chars {
        out.push_str(s);
        return;
    }
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => {
            out.push_str(&s[..i]);
            out.push('…');
        }
        None => out.push_str(s),
    }
}

/// `s` cut to `max_chars` characters (with an ellipsis when cut), borrowed when short enough.
fn cut(s: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max_chars {
        return s.into();
    }
    let mut out = String::new();
    push_cut(&mut out, s, max_chars);
    out.into()
}

fn ts(sec: i64) -> Timestamp {
    Timestamp::from_second(sec).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl<K: Hash + Eq + Clone> KeyDetector<K> {
    pub fn new(s: DetectorSettings) -> Self {
        KeyDetector {
            ips: KeyMap::new(s.max_tracked_ips.max(1)),
            s,
            evictions: 0,
            latest: None,
            lines: LineStore::default(),
            names: Names::default(),
            services: Vec::new(),
            forgotten: Default::default(),
            forgotten_overflow: Default::default(),
        }
    }

    /// The index of a service name in this detector's table.
    fn service_id(&mut self, service: &'static str) -> u16 {
        if let Some(i) = self.services.iter().position(|s| *s == service) {
            return i as u16;
        }
        // Services come from the config (built-in and custom rules): a handful.
        if self.services.len() >= usize::from(u16::MAX) {
            return 0;
        }
        self.services.push(service);
        (self.services.len() - 1) as u16
    }

    fn service_name(&self, st: &KeyState) -> &'static str {
        self.services
            .get(usize::from(st.service))
            .copied()
            .unwrap_or("unknown")
    }

    /// The quoted lines of a key, oldest first.
    fn lines_of(&self, st: &KeyState) -> Vec<String> {
        self.lines.lines(st.lines, usize::from(st.line_count))
    }

    /// Whether a key is worth keeping across a restart: seen within the window of the latest
    /// hit (it may still alert), or alerted within the cooldown (it holds back the next alert).
    /// Older keys would do neither; after a restart they start afresh, as after an eviction.
    fn worth_saving(&self) -> impl Fn(&KeyState) -> bool {
        let latest = self.latest.unwrap_or(i64::MIN);
        let window = latest.saturating_sub(self.s.window.as_secs() as i64);
        let cooldown = latest.saturating_sub(self.s.cooldown.as_secs() as i64);
        move |st: &KeyState| {
            i64::from(st.last_seen) >= window || st.cold().last_alert.is_some_and(|t| t >= cooldown)
        }
    }

    fn saved(&self, st: &KeyState) -> Saved {
        Saved {
            st: st.clone(),
            service: self.service_name(st),
            lines: self.lines_of(st),
        }
    }

    /// The state worth keeping across a restart (see [`KeyDetector::view`]), as an owned copy.
    pub fn snapshot(&self) -> DetectorSnapshot<K> {
        let keep = self.worth_saving();
        let ips = self
            .ips
            .iter_oldest_first()
            .filter(|(_, st)| keep(st))
            .map(|(k, st)| (k.clone(), self.saved(st)))
            .collect();
        DetectorSnapshot {
            ips,
            evictions: self.evictions,
        }
    }

    /// The state worth keeping across a restart, serialized straight from the live map (no
    /// copy): the keys seen within the window of the latest hit, and those alerted within the
    /// cooldown, least recently seen first.
    pub fn view(&self) -> SnapshotView<'_, K> {
        SnapshotView { d: self }
    }

    /// Continue from a snapshot (the settings are this detector's own; the cap applies).
    pub fn restore(&mut self, snap: DetectorSnapshot<K>) {
        self.evictions = snap.evictions;
        for (k, saved) in snap.ips {
            let mut st = saved.st;
            self.latest = self.latest.max(Some(i64::from(st.last_seen)));
            st.service = self.service_id(saved.service);
            // Share the names, and move the lines into this detector's store.
            let members = std::mem::take(&mut st.members);
            for m in members.list() {
                let name = self.names.name(&m.name.text());
                st.members.push(Member { name, ..m.clone() });
            }
            let keep = saved
                .lines
                .len()
                .min(self.s.log_lines)
                .min(usize::from(u8::MAX));
            st.lines = lines::NONE;
            st.line_count = keep as u8;
            for l in &saved.lines[saved.lines.len() - keep..] {
                let mut buf = String::new();
                push_cut(&mut buf, l, MAX_QUOTED_LINE_CHARS);
                st.lines = self.lines.push(st.lines, &buf);
            }
            st.written(true);
            if self.ips.push(k, st).is_some() {
                self.evictions += 1;
            }
        }
    }

    /// Number of keys currently tracked.
    pub fn tracked(&self) -> usize {
        self.ips.len()
    }

    /// Keys forgotten because the cap was reached.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Attempts inside the window ending at `at` for `key`, without counting anything.
    pub fn attempts_within(&self, key: &K, at: Timestamp) -> u64 {
        let Some(st) = self.ips.peek(key) else {
            return 0;
        };
        let from = at
            .as_second()
            .saturating_sub(self.s.window.as_secs() as i64);
        st.window
            .iter()
            .filter(|(t, _)| *t >= from && *t <= at.as_second())
            .map(|(_, n)| n)
            .sum()
    }

    /// All attempts counted for `key` so far, if it is tracked.
    pub fn total(&self, key: &K) -> Option<u64> {
        self.ips.peek(key).map(|st| st.total)
    }

    /// All attempts counted for `key` so far, if it is tracked and has alerted (only such keys
    /// can have an open incident).
    pub fn alerted_total(&self, key: &K) -> Option<u64> {
        self.ips
            .peek(key)
            .filter(|st| st.cold().alerts_sent > 0)
            .map(|st| st.total)
    }

    /// Forget a key (for example after a successful login, when configured).
    pub fn forget(&mut self, key: &K) {
        // A key not in the saved state (counted and forgotten between two checkpoints, or
        // too old for the last snapshot) is not written at all.
        if self.ips.remove(key).is_some_and(|st| st.on_disk()) {
            note_forgotten(&mut self.forgotten, &self.forgotten_overflow, key.clone());
        }
    }

    /// What changed since the last delta (or snapshot): the keys counted since, and the keys
    /// forgotten or evicted since, serialized straight from the live map. Writing it marks
    /// those keys written: when the write fails, write a full snapshot next (see `state`).
    pub fn delta(&self) -> wire::DeltaView<'_, K> {
        wire::DeltaView { d: self }
    }

    /// Keys changed since the last delta (or snapshot) and forgotten keys not yet written: what
    /// the next delta holds (the checkpointer estimates its size from this before writing).
    /// `usize::MAX` when more keys were forgotten than listed: only a snapshot is complete.
    pub fn pending_keys(&self) -> usize {
        if self.forgotten_overflow.get() {
            return usize::MAX;
        }
        // Changed keys too old to keep cost a forgotten entry at most: not counted.
        let keep = self.worth_saving();
        let changed = self
            .ips
            .iter_oldest_first()
            .filter(|(_, st)| st.dirty() && keep(st))
            .count();
        changed + self.forgotten.borrow().len()
    }

    /// Keys a snapshot written now would hold (see [`KeyDetector::view`]).
    pub fn snapshot_keys(&self) -> usize {
        let keep = self.worth_saving();
        self.ips
            .iter_oldest_first()
            .filter(|(_, st)| keep(st))
            .count()
    }

    /// A full snapshot was written: nothing is pending for the next delta.
    pub fn mark_written(&mut self) {
        let keep = self.worth_saving();
        for (_, st) in self.ips.iter_oldest_first() {
            st.written(keep(st));
        }
        self.forgotten.get_mut().clear();
        self.forgotten_overflow.set(false);
    }

    /// Apply a delta read back from the journal, after the snapshot it follows.
    pub fn apply(&mut self, delta: wire::Delta<K>) {
        for k in &delta.forgotten {
            self.ips.remove(k);
        }
        // The latest hit may have been on a key forgotten since.
        self.latest = self.latest.max(Some(delta.base));
        let evictions = self.evictions;
        self.restore(DetectorSnapshot {
            ips: delta.keys,
            evictions: delta.evictions,
        });
        // `restore` counts the evictions it causes on top of the saved count.
        self.evictions = self.evictions.max(evictions);
    }

    /// Count `attempts` for `key` at `at`; `member` is the account (or address) involved.
    /// Returns an alert when one is due now. `line` is quoted in the alert.
    #[allow(clippy::too_many_arguments)]
    pub fn observe_key(
        &mut self,
        key: K,
        member: Option<&str>,
        attempts: u64,
        service: &'static str,
        line: &str,
        at: Timestamp,
    ) -> Option<KeyAlert<K>> {
        let attempts = attempts.max(1);
        let sec = at.as_second();
        self.latest = self.latest.max(Some(sec));
        let service = self.service_id(service);
        // Names and lines first: they live beside the map.
        let name = member.map(|u| self.names.name(&cut(u, MAX_ACCOUNT_CHARS)));
        let log_lines = self.s.log_lines.min(usize::from(u8::MAX));
        // One hash lookup for a known key; a new key evicts the least recently seen one when
        // the map is full.
        let (st, evicted) = self
            .ips
            .get_or_insert_evicting(key.clone(), || KeyState::new(sec, service));
        if let Some((old, old_st)) = evicted {
            self.evictions += 1;
            if old_st.on_disk() {
                note_forgotten(&mut self.forgotten, &self.forgotten_overflow, old);
            }
        }
        st.touch();
        let s = &self.s;
        let window = s.window.as_secs() as i64;
        st.window.add(sec, attempts, window);
        let oldest_kept = st.window.newest().unwrap_or(sec).saturating_sub(window);

        st.total += attempts;
        st.first_seen = st.first_seen.min(pack(sec));
        st.last_seen = st.last_seen.max(pack(sec));
        match name {
            Some(name) => {
                if let Some(m) = st.members.get_mut(&name) {
                    m.attempts = sat32(u64::from(m.attempts) + attempts);
                    m.last = m.last.max(pack(sec));
                } else if st.members.len() < MAX_MEMBERS_PER_KEY {
                    st.members.push(Member {
                        name,
                        attempts: sat32(attempts),
                        last: pack(sec),
                    });
                } else {
                    let c = st.cold_mut();
                    c.overflow_attempts += attempts;
                    c.overflow_names += 1;
                }
            }
            None => st.no_member = sat32(u64::from(st.no_member) + attempts),
        }
        if log_lines > 0 {
            let l = cut(line, MAX_QUOTED_LINE_CHARS);
            st.lines = self.lines.push(st.lines, &l);
            st.line_count = (usize::from(st.line_count) + 1).min(log_lines) as u8;
        }

        let in_window = st.window.in_window();
        let crossed = in_window >= u64::from(s.attempts);
        let cooled = match st.cold().last_alert {
            None => true,
            Some(prev) => sec.saturating_sub(prev) >= s.cooldown.as_secs() as i64,
        };
        if !(crossed && cooled) {
            return None;
        }
        let distinct_in_window = st
            .members
            .list()
            .iter()
            .filter(|m| i64::from(m.last) >= oldest_kept)
            .count() as u64;
        if s.min_distinct_members > 1 && distinct_in_window < s.min_distinct_members as u64 {
            return None;
        }
        let total = st.total;
        let c = st.cold_mut();
        let previous_alert = c.last_alert;
        if let Some(prev) = previous_alert {
            if c.earlier_alerts.len() == MAX_EARLIER_ALERTS {
                c.earlier_alerts.pop_front();
            }
            c.earlier_alerts.push_back(prev);
        }
        c.last_alert = Some(sec);
        c.alerts_sent += 1;
        let since = total - c.total_at_last_alert;
        c.total_at_last_alert = total;

        // Sorted by reference; only the listed names are copied.
        let mut members: Vec<(&Member, u64)> = st
            .members
            .list()
            .iter()
            .map(|m| (m, u64::from(m.attempts)))
            .collect();
        members.sort_unstable_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| a.0.name.text().cmp(&b.0.name.text()))
        });
        let c = st.cold();
        let distinct = members.len() as u64 + c.overflow_names;
        let listed: Vec<(String, u64)> = members
            .iter()
            .take(s.top_accounts)
            .map(|&(m, n)| (m.name.text().into_owned(), n))
            .collect();
        let other = members
            .iter()
            .skip(s.top_accounts)
            .map(|a| a.1)
            .sum::<u64>()
            + c.overflow_attempts;
        let minutes = (s.window.as_secs().div_ceil(60)).clamp(1, 60) as i64;
        let first_minute = sec.div_euclid(60) - (minutes - 1);
        let mut per_minute = vec![0u64; minutes as usize];
        for (t, n) in st.window.iter() {
            let m = t.div_euclid(60) - first_minute;
            if (0..minutes).contains(&m) {
                per_minute[m as usize] += n;
            }
        }
        let (alert_number, earlier_alerts) = (
            c.alerts_sent,
            c.earlier_alerts.iter().copied().map(ts).collect(),
        );
        let (service, lines, line_count) = (st.service, st.lines, st.line_count);
        let (total, first_seen, last_seen, no_member) =
            (st.total, st.first_seen, st.last_seen, st.no_member);
        Some(KeyAlert {
            service: self
                .services
                .get(usize::from(service))
                .copied()
                .unwrap_or("unknown"),
            attempts_in_window: in_window,
            attempts_total: total,
            attempts_since_last_alert: since,
            first_seen: ts(i64::from(first_seen)),
            last_seen: ts(i64::from(last_seen)),
            top_members: listed,
            distinct_members: distinct,
            distinct_members_in_window: distinct_in_window,
            other_member_attempts: other,
            attempts_without_member: u64::from(no_member),
            recent_lines: self.lines.lines(lines, usize::from(line_count)),
            alert_number,
            previous_alert: previous_alert.map(ts),
            earlier_alerts,
            per_minute,
            key,
        })
    }
}

impl KeyDetector<IpAddr> {
    /// Count one failed-login hit against its IP (successes are not counted).
    pub fn observe(&mut self, hit: &Hit, line: &str, at: Timestamp) -> Option<IpAlert> {
        if hit.kind != HitKind::Failure {
            return None;
        }
        self.observe_key(
            hit.ip,
            hit.user.as_deref(),
            u64::from(hit.attempts),
            hit.service,
            line,
            at,
        )
    }
}

#[cfg(test)]
mod tests;
