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

use crate::rules::{Hit, HitKind};
use jiff::Timestamp;
use lru::LruCache;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

mod wire;
pub use wire::{DetectorSnapshotV2, SnapshotView};

/// Distinct members (accounts, addresses) remembered per key; further ones are only counted.
pub const MAX_MEMBERS_PER_KEY: usize = 256;
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

/// A key's state. Times are whole seconds since the Unix epoch (log time): detection works on
/// seconds, and alerts show seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyState {
    /// (second, attempts) buckets inside the window, oldest first; at most one per second.
    buckets: VecDeque<(i64, u64)>,
    in_window: u64,
    total: u64,
    first_seen: i64,
    last_seen: i64,
    service: ServiceName,
    members: Members,
    /// Attempts of members not kept because of the cap.
    overflow_attempts: u64,
    overflow_names: u64,
    no_member: u64,
    lines: VecDeque<String>,
    last_alert: Option<i64>,
    alerts_sent: u32,
    total_at_last_alert: u64,
    earlier_alerts: VecDeque<i64>,
}

/// One member of a key (an account tried from an IP, an address in a subnet, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    name: Box<str>,
    attempts: u64,
    /// Last second seen.
    last: i64,
}

/// The members of a key: a plain list (most keys have one or a few, and a list is a fraction
/// of the memory of a hash map), indexed by name once it grows past [`MEMBER_INDEX_FROM`].
#[derive(Debug, Clone, Default)]
struct Members {
    list: Vec<Member>,
    /// Boxed: most keys never need it, and an empty map is 48 bytes inline in every key.
    #[allow(clippy::box_collection)]
    index: Option<Box<HashMap<Box<str>, u32>>>,
}

/// Members are found by a linear search up to this many, by a hash index beyond.
const MEMBER_INDEX_FROM: usize = 16;

impl PartialEq for Members {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

impl Eq for Members {}

impl Members {
    fn len(&self) -> usize {
        self.list.len()
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Member> {
        let i = match &self.index {
            Some(ix) => *ix.get(name)? as usize,
            None => self.list.iter().position(|m| &*m.name == name)?,
        };
        self.list.get_mut(i)
    }

    fn push(&mut self, m: Member) {
        if self.list.is_empty() {
            self.list.reserve_exact(1);
        }
        self.list.push(m);
        let n = self.list.len();
        match &mut self.index {
            Some(ix) => {
                ix.insert(self.list[n - 1].name.clone(), (n - 1) as u32);
            }
            None if n > MEMBER_INDEX_FROM => {
                self.index = Some(Box::new(
                    self.list
                        .iter()
                        .enumerate()
                        .map(|(i, m)| (m.name.clone(), i as u32))
                        .collect(),
                ));
            }
            None => {}
        }
    }
}

/// A service name; it survives a restart as text and comes back as the rule's `&'static str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ServiceName(&'static str);

/// A detector's state as saved in `state.json`: tracked keys, least recently seen first (see
/// [`wire`] for the layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectorSnapshot<K = IpAddr> {
    ips: Vec<(K, KeyState)>,
    evictions: u64,
}

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
    ips: LruCache<K, KeyState>,
    evictions: u64,
    /// The latest hit second seen (log time), the reference for what a snapshot keeps.
    latest: Option<i64>,
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

fn ts(sec: i64) -> Timestamp {
    Timestamp::from_second(sec).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl<K: Hash + Eq + Clone> KeyDetector<K> {
    pub fn new(s: DetectorSettings) -> Self {
        let cap = NonZeroUsize::new(s.max_tracked_ips.max(1)).unwrap_or(NonZeroUsize::MIN);
        KeyDetector {
            s,
            ips: LruCache::new(cap),
            evictions: 0,
            latest: None,
        }
    }

    /// Whether a key is worth keeping across a restart: seen within the window of the latest
    /// hit (it may still alert), or alerted within the cooldown (it holds back the next alert).
    /// Older keys would do neither; after a restart they start afresh, as after an eviction.
    fn worth_saving(&self) -> impl Fn(&KeyState) -> bool {
        let latest = self.latest.unwrap_or(i64::MIN);
        let window = latest.saturating_sub(self.s.window.as_secs() as i64);
        let cooldown = latest.saturating_sub(self.s.cooldown.as_secs() as i64);
        move |st: &KeyState| st.last_seen >= window || st.last_alert.is_some_and(|t| t >= cooldown)
    }

    /// The state worth keeping across a restart (see [`KeyDetector::view`]), as an owned copy.
    pub fn snapshot(&self) -> DetectorSnapshot<K> {
        let keep = self.worth_saving();
        let ips = self
            .ips
            .iter()
            .rev()
            .filter(|(_, st)| keep(st))
            .map(|(k, st)| (k.clone(), st.clone()))
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
        for (k, st) in snap.ips {
            self.latest = self.latest.max(Some(st.last_seen));
            if let Some((old, _)) = self.ips.push(k.clone(), st) {
                if old != k {
                    self.evictions += 1;
                }
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
        st.buckets
            .iter()
            .filter(|(t, _)| *t >= from && *t <= at.as_second())
            .map(|(_, n)| *n)
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
            .filter(|st| st.alerts_sent > 0)
            .map(|st| st.total)
    }

    /// Forget a key (for example after a successful login, when configured).
    pub fn forget(&mut self, key: &K) {
        self.ips.pop(key);
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
        // One hash lookup: `fresh` runs only when the key is new, and a new key evicts the
        // least recently seen one when the map is full.
        let full = self.ips.len() == self.ips.cap().get();
        let mut inserted = false;
        let st = self.ips.get_or_insert_mut(key.clone(), || {
            inserted = true;
            KeyState {
                // Sized for the first hit; most keys of a spraying attack see no second.
                buckets: VecDeque::with_capacity(1),
                in_window: 0,
                total: 0,
                first_seen: sec,
                last_seen: sec,
                service: ServiceName(service),
                members: Members::default(),
                overflow_attempts: 0,
                overflow_names: 0,
                no_member: 0,
                lines: VecDeque::new(),
                last_alert: None,
                alerts_sent: 0,
                total_at_last_alert: 0,
                earlier_alerts: VecDeque::new(),
            }
        });
        if inserted && full {
            self.evictions += 1;
        }
        let s = &self.s;

        // Window: add this hit's second, drop what fell out of [at - window, at].
        match st.buckets.iter().rposition(|&(t, _)| t <= sec) {
            Some(i) if st.buckets[i].0 == sec => st.buckets[i].1 += attempts,
            Some(i) => st.buckets.insert(i + 1, (sec, attempts)),
            None => st.buckets.push_front((sec, attempts)),
        }
        st.in_window += attempts;
        let newest = st.buckets.back().map_or(sec, |b| b.0);
        let oldest_kept = newest.saturating_sub(s.window.as_secs() as i64);
        while let Some(&(t, n)) = st.buckets.front() {
            if t >= oldest_kept {
                break;
            }
            st.buckets.pop_front();
            st.in_window -= n;
        }

        st.total += attempts;
        st.first_seen = st.first_seen.min(sec);
        st.last_seen = st.last_seen.max(sec);
        match member {
            Some(u) => {
                let mut cut_name = String::new();
                let name = if u.len() <= MAX_ACCOUNT_CHARS {
                    u
                } else {
                    push_cut(&mut cut_name, u, MAX_ACCOUNT_CHARS);
                    &cut_name
                };
                if let Some(m) = st.members.get_mut(name) {
                    m.attempts += attempts;
                    m.last = m.last.max(sec);
                } else if st.members.len() < MAX_MEMBERS_PER_KEY {
                    st.members.push(Member {
                        name: name.into(),
                        attempts,
                        last: sec,
                    });
                } else {
                    st.overflow_attempts += attempts;
                    st.overflow_names += 1;
                }
            }
            None => st.no_member += attempts,
        }
        if s.log_lines > 0 {
            // Reuse the oldest line's buffer: no allocation once a key has its lines.
            let mut buf = if st.lines.len() >= s.log_lines {
                st.lines.pop_front().unwrap_or_default()
            } else {
                if st.lines.is_empty() {
                    st.lines.reserve_exact(1);
                }
                String::new()
            };
            buf.clear();
            push_cut(&mut buf, line, MAX_QUOTED_LINE_CHARS);
            st.lines.push_back(buf);
        }

        let crossed = st.in_window >= u64::from(s.attempts);
        let cooled = match st.last_alert {
            None => true,
            Some(prev) => sec.saturating_sub(prev) >= s.cooldown.as_secs() as i64,
        };
        if !(crossed && cooled) {
            return None;
        }
        let distinct_in_window = st
            .members
            .list
            .iter()
            .filter(|m| m.last >= oldest_kept)
            .count() as u64;
        if s.min_distinct_members > 1 && distinct_in_window < s.min_distinct_members as u64 {
            return None;
        }
        let previous_alert = st.last_alert;
        if let Some(prev) = previous_alert {
            if st.earlier_alerts.len() == MAX_EARLIER_ALERTS {
                st.earlier_alerts.pop_front();
            }
            st.earlier_alerts.push_back(prev);
        }
        st.last_alert = Some(sec);
        st.alerts_sent += 1;
        let since = st.total - st.total_at_last_alert;
        st.total_at_last_alert = st.total;

        // Sorted by reference; only the listed names are copied.
        let mut members: Vec<(&str, u64)> = st
            .members
            .list
            .iter()
            .map(|m| (&*m.name, m.attempts))
            .collect();
        members.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let distinct = members.len() as u64 + st.overflow_names;
        let listed: Vec<(String, u64)> = members
            .iter()
            .take(s.top_accounts)
            .map(|&(name, n)| (name.to_string(), n))
            .collect();
        let other = members
            .iter()
            .skip(s.top_accounts)
            .map(|a| a.1)
            .sum::<u64>()
            + st.overflow_attempts;
        let minutes = (s.window.as_secs().div_ceil(60)).clamp(1, 60) as i64;
        let first_minute = sec.div_euclid(60) - (minutes - 1);
        let mut per_minute = vec![0u64; minutes as usize];
        for (t, n) in &st.buckets {
            let m = t.div_euclid(60) - first_minute;
            if (0..minutes).contains(&m) {
                per_minute[m as usize] += n;
            }
        }
        Some(KeyAlert {
            key,
            service: st.service.0,
            attempts_in_window: st.in_window,
            attempts_total: st.total,
            attempts_since_last_alert: since,
            first_seen: ts(st.first_seen),
            last_seen: ts(st.last_seen),
            top_members: listed,
            distinct_members: distinct,
            distinct_members_in_window: distinct_in_window,
            other_member_attempts: other,
            attempts_without_member: st.no_member,
            recent_lines: st.lines.iter().cloned().collect(),
            alert_number: st.alerts_sent,
            previous_alert: previous_alert.map(ts),
            earlier_alerts: st.earlier_alerts.iter().copied().map(ts).collect(),
            per_minute,
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
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use jiff::SignedDuration;

    fn settings() -> DetectorSettings {
        DetectorSettings {
            attempts: 5,
            window: Duration::from_secs(600),
            cooldown: Duration::from_secs(3600),
            max_tracked_ips: 1000,
            top_accounts: 2,
            log_lines: 3,
            min_distinct_members: 0,
        }
    }

    fn hit(ip: &str, user: Option<&str>) -> Hit {
        Hit {
            time: None,
            ip: ip.parse().unwrap(),
            user: user.map(str::to_string),
            service: "exim",
            attempts: 1,
            kind: HitKind::Failure,
        }
    }

    fn t0() -> Timestamp {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn fifth_attempt_inside_window_alerts_once() {
        let clock = ManualClock::new(t0());
        let mut d = IpDetector::new(settings());
        for i in 0..4 {
            assert_eq!(
                d.observe(&hit("203.0.113.7", Some("a")), "l", clock.now()),
                None,
                "{i}"
            );
            clock.advance(SignedDuration::from_secs(60));
        }
        let a = d
            .observe(&hit("203.0.113.7", Some("b")), "l", clock.now())
            .expect("fifth attempt alerts");
        assert_eq!(a.attempts_in_window, 5);
        assert_eq!(a.attempts_total, 5);
        assert_eq!(a.alert_number, 1);
        assert_eq!(a.first_seen, t0());
        assert_eq!(
            a.top_members,
            vec![("a".to_string(), 4), ("b".to_string(), 1)]
        );
    }

    #[test]
    fn attempts_spread_wider_than_the_window_never_alert() {
        let clock = ManualClock::new(t0());
        let mut d = IpDetector::new(settings());
        for _ in 0..50 {
            assert_eq!(d.observe(&hit("203.0.113.8", None), "l", clock.now()), None);
            // 4 attempts per 600 s at most: one every 151 s.
            clock.advance(SignedDuration::from_secs(151));
        }
    }

    #[test]
    fn window_edge_is_inclusive() {
        // Failures at t, t+150, t+300, t+450, t+600: all five lie in [t+600-600, t+600].
        let mut d = IpDetector::new(settings());
        let mut last = None;
        for k in 0..5 {
            let at = t0() + SignedDuration::from_secs(150 * k);
            last = d.observe(&hit("203.0.113.9", None), "l", at);
        }
        assert_eq!(last.map(|a| a.attempts_in_window), Some(5));
        // One second more and the first falls out.
        let mut d = IpDetector::new(settings());
        let mut last = None;
        for k in 0..5 {
            let at = t0() + SignedDuration::from_secs(150 * k + if k == 4 { 1 } else { 0 });
            last = d.observe(&hit("203.0.113.9", None), "l", at);
        }
        assert_eq!(last, None);
    }

    #[test]
    fn cooldown_counts_silently_then_reports_total() {
        let clock = ManualClock::new(t0());
        let mut d = IpDetector::new(settings());
        let mut alerts = Vec::new();
        // 5 quick attempts: alert. Then 40 more over 50 minutes: silent.
        for _ in 0..45 {
            if let Some(a) = d.observe(&hit("198.51.100.4", Some("x")), "l", clock.now()) {
                alerts.push(a);
            }
            clock.advance(SignedDuration::from_secs(75));
        }
        assert_eq!(alerts.len(), 1);
        // Past the hour since the first alert: the next crossing alerts again.
        // The first alert went out at t0+300 s; the cooldown ends at t0+3900 s.
        clock.set(t0() + SignedDuration::from_secs(3600 + 300 + 10));
        let mut again = None;
        for _ in 0..5 {
            again = again.or(d.observe(&hit("198.51.100.4", Some("x")), "l", clock.now()));
        }
        let a = again.expect("alert after cooldown");
        assert_eq!(a.alert_number, 2);
        assert_eq!(a.attempts_total, 50);
        assert_eq!(a.attempts_since_last_alert, 45);
        assert_eq!(a.previous_alert, Some(alerts[0].last_seen));
    }

    #[test]
    fn a_line_with_many_attempts_counts_them_all() {
        let mut d = IpDetector::new(settings());
        let mut h = hit("192.0.2.77", Some("alice"));
        h.attempts = 5;
        let a = d
            .observe(&h, "l", t0())
            .expect("one line with 5 attempts crosses");
        assert_eq!(a.attempts_total, 5);
    }

    #[test]
    fn success_hits_are_not_counted() {
        let mut d = IpDetector::new(settings());
        let mut h = hit("192.0.2.78", Some("alice"));
        h.kind = HitKind::Success;
        for _ in 0..10 {
            assert_eq!(d.observe(&h, "l", t0()), None);
        }
        assert_eq!(d.tracked(), 0);
    }

    #[test]
    fn other_ips_do_not_add_up() {
        let mut d = IpDetector::new(settings());
        for i in 0..20 {
            assert_eq!(
                d.observe(&hit(&format!("192.0.2.{i}"), None), "l", t0()),
                None
            );
        }
    }

    #[test]
    fn tracked_ips_are_capped_and_least_recent_evicted() {
        let mut s = settings();
        s.max_tracked_ips = 100;
        let mut d = IpDetector::new(s);
        // One IP keeps attacking while 10,000 one-shot IPv6 addresses pass by.
        let mut alerted = false;
        for i in 0..10_000u32 {
            let v6 = format!("2001:db8:{:x}:{:x}::1", i >> 16, i & 0xffff);
            d.observe(&hit(&v6, None), "l", t0());
            if i % 50 == 0 {
                alerted |= d.observe(&hit("203.0.113.50", None), "l", t0()).is_some();
            }
        }
        assert!(d.tracked() <= 100);
        assert!(d.evictions() >= 9_900);
        assert!(alerted, "the persistent attacker stays tracked");
    }

    #[test]
    fn snapshot_restores_windows_and_cooldowns() {
        let mut d = IpDetector::new(settings());
        for k in 0..4 {
            d.observe(
                &hit("203.0.113.70", Some("a")),
                "l",
                t0() + SignedDuration::from_secs(k),
            );
        }
        for k in 0..5 {
            d.observe(
                &hit("203.0.113.71", Some("a")),
                "l",
                t0() + SignedDuration::from_secs(k),
            );
        }
        let json = serde_json::to_string(&d.snapshot()).unwrap();
        let mut d2 = IpDetector::new(settings());
        d2.restore(serde_json::from_str(&json).unwrap());
        // The fifth attempt after the restart crosses: the four before it were kept.
        let a = d2.observe(
            &hit("203.0.113.70", Some("a")),
            "l",
            t0() + SignedDuration::from_secs(9),
        );
        assert_eq!(a.map(|a| a.attempts_total), Some(5));
        // The other IP is in its cooldown: no second alert.
        let b = d2.observe(
            &hit("203.0.113.71", Some("a")),
            "l",
            t0() + SignedDuration::from_secs(9),
        );
        assert_eq!(b, None);
        assert_eq!(
            d2.ips
                .peek(&"203.0.113.71".parse().unwrap())
                .unwrap()
                .service
                .0,
            "exim"
        );
    }

    #[test]
    fn snapshot_drops_ips_older_than_window_and_cooldown() {
        let mut d = IpDetector::new(settings());
        d.observe(&hit("203.0.113.80", None), "l", t0());
        d.observe(
            &hit("203.0.113.81", None),
            "l",
            t0() + SignedDuration::from_secs(7200),
        );
        let snap = d.snapshot();
        assert_eq!(snap.len(), 1);
    }

    #[test]
    fn accounts_and_lines_are_bounded() {
        let mut s = settings();
        s.attempts = 1_000_000;
        let mut d = IpDetector::new(s);
        let long = "u".repeat(10_000);
        for i in 0..1000 {
            d.observe(
                &hit("203.0.113.60", Some(&format!("{i}{long}"))),
                &long,
                t0(),
            );
        }
        let st = d.ips.peek(&"203.0.113.60".parse().unwrap()).unwrap();
        assert_eq!(st.members.len(), MAX_MEMBERS_PER_KEY);
        assert!(st
            .members
            .list
            .iter()
            .all(|m| m.name.chars().count() <= MAX_ACCOUNT_CHARS + 1));
        assert_eq!(st.lines.len(), 3);
        assert_eq!(st.overflow_names, 1000 - MAX_MEMBERS_PER_KEY as u64);
    }

    #[test]
    fn snapshot_json_round_trip_is_exact_and_the_live_view_writes_the_same() {
        let mut s = settings();
        s.attempts = 3;
        let mut d = IpDetector::new(s.clone());
        for k in 0..40i64 {
            let ip = format!("2001:db8:{:x}::{:x}", k % 7, k);
            let user = format!("user{}", k % 23);
            d.observe(
                &hit(&ip, Some(&user)),
                &format!("line {k} \"quoted\" ✓"),
                t0() + SignedDuration::from_secs(k * 17),
            );
            // One key with many members (past the member index threshold) and alerts.
            d.observe(
                &hit("198.51.100.9", Some(&user)),
                "l",
                t0() + SignedDuration::from_secs(k * 17),
            );
        }
        let owned = d.snapshot();
        let from_owned = serde_json::to_string(&owned).unwrap();
        let from_view = serde_json::to_string(&d.view()).unwrap();
        assert_eq!(from_owned, from_view);
        let back: DetectorSnapshot<IpAddr> = serde_json::from_str(&from_view).unwrap();
        assert_eq!(back, owned);
        // Compact: no field names, no RFC 3339 times.
        assert!(!from_view.contains("first_seen") && !from_view.contains("2026-"));
        // A restored detector continues exactly: the next observation alerts the same way.
        let mut d2 = IpDetector::new(s);
        d2.restore(back);
        let at = t0() + SignedDuration::from_secs(40 * 17 + 4000);
        for _ in 0..2 {
            let a = d.observe(&hit("198.51.100.9", Some("zz")), "l", at);
            let b = d2.observe(&hit("198.51.100.9", Some("zz")), "l", at);
            assert_eq!((a, b), (None, None));
        }
        let a = d.observe(&hit("198.51.100.9", Some("zz")), "l", at);
        let b = d2.observe(&hit("198.51.100.9", Some("zz")), "l", at);
        assert_eq!(a, b);
        assert_eq!(
            a.map(|a| (a.alert_number, a.distinct_members)),
            Some((2, 24))
        );
    }

    #[test]
    fn snapshot_keeps_alerted_keys_for_the_cooldown_and_drops_expired_quiet_ones() {
        let mut d = IpDetector::new(settings());
        // Alerted at t0 (5 attempts): its cooldown (1 h) holds until t0 + 3600.
        for _ in 0..5 {
            d.observe(&hit("203.0.113.90", None), "l", t0());
        }
        // Seen at t0 but never alerted: its window (600 s) ends at t0 + 600.
        d.observe(&hit("203.0.113.91", None), "l", t0());
        d.observe(
            &hit("203.0.113.92", None),
            "l",
            t0() + SignedDuration::from_secs(1800),
        );
        let keys = |d: &IpDetector| -> Vec<String> {
            d.snapshot()
                .ips
                .iter()
                .map(|(k, _)| k.to_string())
                .collect()
        };
        assert_eq!(keys(&d), vec!["203.0.113.90", "203.0.113.92"]);
        d.observe(
            &hit("203.0.113.92", None),
            "l",
            t0() + SignedDuration::from_secs(3601),
        );
        assert_eq!(keys(&d), vec!["203.0.113.92"]);
    }

    #[test]
    fn members_past_the_index_threshold_are_still_found() {
        let mut m = Members::default();
        for i in 0..40u64 {
            m.push(Member {
                name: format!("u{i}").into(),
                attempts: i,
                last: 0,
            });
        }
        assert!(m.index.is_some());
        for i in 0..40u64 {
            assert_eq!(m.get_mut(&format!("u{i}")).map(|x| x.attempts), Some(i));
        }
        assert!(m.get_mut("u40").is_none());
    }
}
