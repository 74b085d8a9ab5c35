//! One key's state in a detector, packed for the common case of a key seen a few times and
//! never alerted (a spraying attacker's address): 88 bytes and no allocation of its own for a
//! key with one window second and one member.
//!
//! - Times are whole seconds since the Unix epoch as `u32` (until 2106; stamps outside are
//!   clamped), counts per window and per member `u32` (saturating).
//! - The window is one inline bucket until a second distinct second arrives.
//! - Members are inline while there is one; an address member is stored as an address, not as
//!   text; account names are shared through the detector's [`Names`] (a million keys attacking
//!   `admin` hold one copy of it).
//! - What only alerted or overflowing keys need lives in a [`Cold`] box.
//! - Quoted lines are in the detector's `LineStore`; a key keeps the id of its latest line.
//! - A flag says whether the key changed since the last checkpoint (written incrementally).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use super::lines::NONE;

/// Members are found by a linear search up to this many, by a hash index beyond.
pub(super) const MEMBER_INDEX_FROM: usize = 16;

/// Seconds since the Unix epoch, clamped to what a `u32` holds.
pub(super) fn pack(t: i64) -> u32 {
    t.clamp(0, i64::from(u32::MAX)) as u32
}

pub(super) fn sat32(n: u64) -> u32 {
    n.min(u64::from(u32::MAX)) as u32
}

/// A key's state; see the [module docs](self).
#[derive(Debug, Clone)]
pub(super) struct KeyState {
    /// Id of the key's latest quoted line in the detector's line store.
    pub lines: u64,
    pub total: u64,
    pub window: Window,
    pub members: Members,
    pub first_seen: u32,
    pub last_seen: u32,
    /// Attempts that named no member.
    pub no_member: u32,
    /// Index in the detector's service table.
    pub service: u16,
    /// Quoted lines the key has (at most `log_lines`).
    pub line_count: u8,
    /// [`DIRTY`] and [`ON_DISK`] (see `KeyDetector::delta`).
    pub flags: std::cell::Cell<u8>,
    pub cold: Option<Box<Cold>>,
}

/// What only keys that alerted, or have more members than are kept, need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Cold {
    /// Attempts of members not kept because of the cap.
    pub overflow_attempts: u64,
    pub overflow_names: u64,
    pub last_alert: Option<i64>,
    pub alerts_sent: u32,
    pub total_at_last_alert: u64,
    pub earlier_alerts: VecDeque<i64>,
}

static NO_COLD: Cold = Cold {
    overflow_attempts: 0,
    overflow_names: 0,
    last_alert: None,
    alerts_sent: 0,
    total_at_last_alert: 0,
    earlier_alerts: VecDeque::new(),
};

/// Changed since the last checkpoint wrote it.
pub(super) const DIRTY: u8 = 1;
/// In the saved state (a snapshot or a journal line): forgetting it must be written too.
pub(super) const ON_DISK: u8 = 2;

impl KeyState {
    pub fn dirty(&self) -> bool {
        self.flags.get() & DIRTY != 0
    }

    pub fn on_disk(&self) -> bool {
        self.flags.get() & ON_DISK != 0
    }

    /// Mark the key changed (a hit).
    pub fn touch(&self) {
        self.flags.set(self.flags.get() | DIRTY);
    }

    /// The key was written (`true`) or is not in the saved state (`false`); not changed since.
    pub fn written(&self, on_disk: bool) {
        self.flags.set(if on_disk { ON_DISK } else { 0 });
    }

    pub fn new(sec: i64, service: u16) -> KeyState {
        KeyState {
            lines: NONE,
            total: 0,
            window: Window::Empty,
            members: Members::Empty,
            first_seen: pack(sec),
            last_seen: pack(sec),
            no_member: 0,
            service,
            line_count: 0,
            flags: std::cell::Cell::new(DIRTY),
            cold: None,
        }
    }

    pub fn cold(&self) -> &Cold {
        self.cold.as_deref().unwrap_or(&NO_COLD)
    }

    pub fn cold_mut(&mut self) -> &mut Cold {
        self.cold.get_or_insert_with(Default::default)
    }

    /// The same state, line ids and service index aside (they are the detector's).
    pub fn same_as(&self, o: &KeyState) -> bool {
        self.total == o.total
            && self.window == o.window
            && self.members == o.members
            && self.first_seen == o.first_seen
            && self.last_seen == o.last_seen
            && self.no_member == o.no_member
            && self.cold() == o.cold()
    }
}

/// Window buckets: (second, attempts), oldest first, at most one per second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Window {
    Empty,
    One(u32, u32),
    Many(Box<Buckets>),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Buckets {
    pub list: VecDeque<(u32, u32)>,
    pub in_window: u64,
}

impl Window {
    pub fn in_window(&self) -> u64 {
        match self {
            Window::Empty => 0,
            Window::One(_, n) => u64::from(*n),
            Window::Many(b) => b.in_window,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, u64)> + Clone + '_ {
        let (one, many) = match self {
            Window::Empty => (None, None),
            Window::One(t, n) => (Some((i64::from(*t), u64::from(*n))), None),
            Window::Many(b) => (None, Some(b.list.iter())),
        };
        one.into_iter().chain(
            many.into_iter()
                .flatten()
                .map(|&(t, n)| (i64::from(t), u64::from(n))),
        )
    }

    /// The newest second, if any.
    pub fn newest(&self) -> Option<i64> {
        match self {
            Window::Empty => None,
            Window::One(t, _) => Some(i64::from(*t)),
            Window::Many(b) => b.list.back().map(|b| i64::from(b.0)),
        }
    }

    /// Add `n` attempts at `sec` and drop the buckets older than `window` seconds before the
    /// newest.
    pub fn add(&mut self, sec: i64, n: u64, window: i64) {
        let s = pack(sec);
        match self {
            Window::Empty => *self = Window::One(s, sat32(n)),
            Window::One(t, m) if *t == s => *m = sat32(u64::from(*m) + n),
            Window::One(t, m) => {
                let mut list = VecDeque::with_capacity(4);
                list.push_back((*t, *m));
                let in_window = u64::from(*m);
                *self = Window::Many(Box::new(Buckets { list, in_window }));
                self.add(sec, n, window);
                return;
            }
            Window::Many(b) => {
                // Counted as stored, so that trimming takes off exactly what was added.
                let added = match b.list.iter().rposition(|&(t, _)| t <= s) {
                    Some(i) if b.list[i].0 == s => {
                        let before = b.list[i].1;
                        b.list[i].1 = sat32(u64::from(before) + n);
                        b.list[i].1 - before
                    }
                    Some(i) => {
                        b.list.insert(i + 1, (s, sat32(n)));
                        sat32(n)
                    }
                    None => {
                        b.list.push_front((s, sat32(n)));
                        sat32(n)
                    }
                };
                b.in_window += u64::from(added);
            }
        }
        self.trim(window);
    }

    fn trim(&mut self, window: i64) {
        let Some(newest) = self.newest() else { return };
        let oldest_kept = newest.saturating_sub(window);
        if let Window::Many(b) = self {
            while let Some(&(t, n)) = b.list.front() {
                if i64::from(t) >= oldest_kept {
                    break;
                }
                b.list.pop_front();
                b.in_window -= u64::from(n);
            }
            if b.list.len() == 1 {
                let (t, n) = b.list[0];
                *self = Window::One(t, n);
            }
        }
    }

    /// From saved buckets (oldest first).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (i64, u64)>) -> Window {
        let list: VecDeque<(u32, u32)> = pairs
            .into_iter()
            .map(|(t, n)| (pack(t), sat32(n)))
            .collect();
        match list.len() {
            0 => Window::Empty,
            1 => Window::One(list[0].0, list[0].1),
            _ => {
                let in_window = list.iter().map(|&(_, n)| u64::from(n)).sum();
                Window::Many(Box::new(Buckets { list, in_window }))
            }
        }
    }
}

/// A member's name: an address, or shared text (an account name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum MemberName {
    Ip(IpAddr),
    Text(Arc<str>),
}

impl MemberName {
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            MemberName::Ip(ip) => ip.to_string().into(),
            MemberName::Text(t) => (**t).into(),
        }
    }
}

/// A member of a key: an account tried from an IP, an address in a subnet, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Member {
    pub name: MemberName,
    pub attempts: u32,
    /// Last second seen.
    pub last: u32,
}

/// The members of a key, in the order first seen.
#[derive(Debug, Clone, Default)]
pub(super) enum Members {
    #[default]
    Empty,
    One(Member),
    Many(Vec<Member>),
    /// Past [`MEMBER_INDEX_FROM`]: a list and an index by name.
    Indexed(Box<(Vec<Member>, HashMap<MemberName, u32>)>),
}

impl PartialEq for Members {
    fn eq(&self, other: &Self) -> bool {
        self.list() == other.list()
    }
}

impl Eq for Members {}

impl Members {
    pub fn list(&self) -> &[Member] {
        match self {
            Members::Empty => &[],
            Members::One(m) => std::slice::from_ref(m),
            Members::Many(v) => v,
            Members::Indexed(b) => &b.0,
        }
    }

    pub fn len(&self) -> usize {
        self.list().len()
    }

    pub fn get_mut(&mut self, name: &MemberName) -> Option<&mut Member> {
        match self {
            Members::Empty => None,
            Members::One(m) => (m.name == *name).then_some(m),
            Members::Many(v) => v.iter_mut().find(|m| m.name == *name),
            Members::Indexed(b) => {
                let i = *b.1.get(name)? as usize;
                b.0.get_mut(i)
            }
        }
    }

    pub fn push(&mut self, m: Member) {
        match std::mem::take(self) {
            Members::Empty => *self = Members::One(m),
            Members::One(first) => {
                let mut v = Vec::with_capacity(4);
                v.push(first);
                v.push(m);
                *self = Members::Many(v);
            }
            Members::Many(mut v) => {
                v.push(m);
                *self = if v.len() > MEMBER_INDEX_FROM {
                    let index = v
                        .iter()
                        .enumerate()
                        .map(|(i, m)| (m.name.clone(), i as u32))
                        .collect();
                    Members::Indexed(Box::new((v, index)))
                } else {
                    Members::Many(v)
                };
            }
            Members::Indexed(mut b) => {
                b.1.insert(m.name.clone(), b.0.len() as u32);
                b.0.push(m);
                *self = Members::Indexed(b);
            }
        }
    }
}

/// Shared member names of one detector: each distinct account name is kept once, however
/// many keys name it. Names no key holds any more are dropped when the set has doubled since
/// the last sweep, so the set stays within twice the names in use.
#[derive(Debug, Default)]
pub(super) struct Names {
    set: HashSet<Arc<str>>,
    sweep_at: usize,
}

/// The set is not swept below this many names.
const NAMES_SWEEP_FLOOR: usize = 1024;

impl Names {
    /// The name for `s`: an address when `s` is exactly an address's text (so it shows the
    /// same), else the shared text.
    pub fn name(&mut self, s: &str) -> MemberName {
        if let Some(ip) = ip_member(s) {
            return MemberName::Ip(ip);
        }
        if let Some(a) = self.set.get(s) {
            return MemberName::Text(a.clone());
        }
        if self.set.len() >= self.sweep_at.max(NAMES_SWEEP_FLOOR) {
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.sweep_at = self.set.len() * 2;
        }
        let a: Arc<str> = s.into();
        self.set.insert(a.clone());
        MemberName::Text(a)
    }

    /// Shared names in the set (in use or not yet swept).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
    }
}

/// `s` as an address, when it is exactly the address's own text.
fn ip_member(s: &str) -> Option<IpAddr> {
    /// Longest address text (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`).
    const MAX: usize = 45;
    struct Buf {
        b: [u8; MAX],
        n: usize,
    }
    impl std::fmt::Write for Buf {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let end = self.n + s.len();
            if end > MAX {
                return Err(std::fmt::Error);
            }
            self.b[self.n..end].copy_from_slice(s.as_bytes());
            self.n = end;
            Ok(())
        }
    }
    if s.is_empty()
        || s.len() > MAX
        || !s.as_bytes()[0].is_ascii_hexdigit() && s.as_bytes()[0] != b':'
    {
        return None;
    }
    let ip: IpAddr = s.parse().ok()?;
    let mut buf = Buf { b: [0; MAX], n: 0 };
    write!(buf, "{ip}").ok()?;
    (&buf.b[..buf.n] == s.as_bytes()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_sizes() {
        // The figures the module docs promise; a change here changes memory per key.
        assert_eq!(std::mem::size_of::<Member>(), 32);
        assert!(
            std::mem::size_of::<Members>() <= 32,
            "{}",
            std::mem::size_of::<Members>()
        );
        assert_eq!(std::mem::size_of::<Window>(), 16);
        assert_eq!(std::mem::size_of::<KeyState>(), 88);
    }

    #[test]
    fn only_an_address_own_text_is_stored_as_an_address() {
        let mut n = Names::default();
        assert!(matches!(n.name("203.0.113.7"), MemberName::Ip(_)));
        assert!(matches!(n.name("2001:db8::7"), MemberName::Ip(_)));
        for text in [
            "2001:DB8::7",
            "2001:db8:0::7",
            "admin",
            "1.2.3.4 ",
            "::ffff:1.2.3.4x",
        ] {
            let m = n.name(text);
            assert!(matches!(m, MemberName::Text(_)), "{text}");
            assert_eq!(m.text(), text);
        }
    }

    #[test]
    fn names_are_shared_and_unused_ones_swept() {
        let mut n = Names::default();
        let a = n.name("admin");
        let b = n.name("admin");
        match (&a, &b) {
            (MemberName::Text(x), MemberName::Text(y)) => assert!(Arc::ptr_eq(x, y)),
            _ => panic!("text"),
        }
        // 10,000 names nobody keeps: the set stays bounded.
        for i in 0..10_000 {
            let _ = n.name(&format!("user{i}"));
        }
        assert!(n.len() <= 2 * NAMES_SWEEP_FLOOR + 1, "{}", n.len());
        // "admin" is still held: still shared.
        match (n.name("admin"), &a) {
            (MemberName::Text(x), MemberName::Text(y)) => assert!(Arc::ptr_eq(&x, y)),
            _ => panic!("text"),
        }
    }

    #[test]
    fn window_adds_in_order_out_of_order_and_slides() {
        let mut w = Window::Empty;
        w.add(100, 1, 600);
        assert_eq!(w, Window::One(100, 1));
        w.add(100, 2, 600);
        assert_eq!(w.in_window(), 3);
        w.add(50, 1, 600);
        w.add(300, 1, 600);
        assert_eq!(
            w.iter().collect::<Vec<_>>(),
            vec![(50, 1), (100, 3), (300, 1)]
        );
        w.add(701, 1, 600);
        assert_eq!(w.iter().collect::<Vec<_>>(), vec![(300, 1), (701, 1)]);
        assert_eq!(w.in_window(), 2);
        w.add(2000, 4, 600);
        assert_eq!(w, Window::One(2000, 4));
    }
}
