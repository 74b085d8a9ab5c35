//! The figures `scan` reports, gathered hit by hit: per IP (attempts, accounts, first and last
//! seen, services, the first threshold crossing), per account (attempts, distinct IPs), and
//! attempts per hour. Maps are keyed by `IpAddr` and by interned account names; everything an
//! attacker can multiply is capped (IPs, account names, names per IP) and what falls beyond a
//! cap is still counted, so totals stay exact.
//!
//! Threshold rule (the same as the alerting agent's): a failure at log second `t` crosses when
//! at least `attempts` failures of the same IP have stamps in `[t - window, t]`, inclusive, at
//! 1 s resolution. Each IP keeps only the seconds inside the window until it first crosses.

use super::report::{
    rfc3339, AccountCount, AccountRow, AlsoSucceeded, CrossingRow, HourRow, Limits as LimitsOut,
    Offender, Stamp, SubnetRow,
};
use crate::rules::{Hit, HitKind};
use foldhash::{HashMap, HashSet};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use jiff::{tz::TimeZone, Timestamp};
use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

/// Account names longer than this (in chars) are cut before they are counted.
pub(crate) const MAX_ACCOUNT_CHARS: usize = 128;

/// Caps on what attackers can multiply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    /// Distinct IPs tracked; attempts from further IPs are only counted in total.
    pub ips: usize,
    /// Distinct account names tracked in all.
    pub accounts: usize,
    /// Account names listed per IP; attempts on further names are counted as "other".
    pub accounts_per_ip: usize,
    /// (account, IP) pairs remembered beyond the per-IP lists, for distinct-IP counts.
    pub overflow_pairs: usize,
    /// Longest span of the hourly chart, in hours (a stray stamp from 1970 must not make a
    /// chart of half a million hours); beyond it only hours with attempts are listed.
    pub dense_hours: i64,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            ips: 1_000_000,
            accounts: 200_000,
            accounts_per_ip: 100,
            overflow_pairs: 1_000_000,
            dense_hours: 24 * 366 * 2,
        }
    }
}

/// Where an IP or account lives in the aggregate: `None` until looked up, then `Some(None)`
/// when it is beyond a cap, else `Some(Some(index))`.
pub(crate) type Slot = Option<Option<u32>>;

/// One hit, as the aggregate counts it (the account is passed beside it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed {
    pub ip: IpAddr,
    pub service: &'static str,
    pub attempts: u32,
    pub kind: HitKind,
    /// The line's time, or the previous stamped line's.
    pub time: Option<Timestamp>,
    pub file: u32,
    pub line: u64,
}

/// Where and when an IP first crossed the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Crossing {
    pub time: Timestamp,
    pub file: u32,
    pub line: u64,
    pub in_window: u64,
}

/// Failures of one IP per log second inside the window, oldest first.
#[derive(Debug, Default)]
struct Window {
    buckets: VecDeque<(i64, u64)>,
}

impl Window {
    /// Add `n` failures at second `sec`; returns how many lie in `[sec - w, sec]`.
    fn add(&mut self, sec: i64, n: u64, w: i64) -> u64 {
        let b = &mut self.buckets;
        match b.iter().rposition(|&(t, _)| t <= sec) {
            Some(i) if b[i].0 == sec => b[i].1 += n,
            Some(i) => b.insert(i + 1, (sec, n)),
            None => b.push_front((sec, n)),
        }
        let newest = b.back().map_or(sec, |x| x.0);
        while b.front().is_some_and(|x| x.0 < newest.saturating_sub(w)) {
            b.pop_front();
        }
        let lo = sec.saturating_sub(w);
        b.iter()
            .filter(|&&(t, _)| t >= lo && t <= sec)
            .map(|x| x.1)
            .sum()
    }
}

#[derive(Debug, Default)]
struct IpEntry {
    failures: u64,
    successes: u64,
    first_seen: Option<Timestamp>,
    last_seen: Option<Timestamp>,
    /// Services seen for this IP, first first.
    services: Vec<&'static str>,
    /// (account index, attempts), at most `Caps::accounts_per_ip`.
    accounts: Vec<(u32, u64)>,
    other_account_attempts: u64,
    no_account: u64,
    window: Window,
    crossing: Option<Crossing>,
}

#[derive(Debug)]
struct AccountEntry {
    name: Arc<str>,
    attempts: u64,
    ips: u64,
}

/// Counts per IP, per account and per hour.
pub(crate) struct Aggregate {
    attempts_needed: u64,
    window_secs: i64,
    caps: Caps,
    /// IP → position in `entries` (a small table slot; the entries themselves are large).
    index: HashMap<IpAddr, u32>,
    entries: Vec<(IpAddr, IpEntry)>,
    names: HashMap<Box<str>, u32>,
    accounts: Vec<AccountEntry>,
    overflow_pairs: HashSet<(u32, IpAddr)>,
    pairs_capped: bool,
    hourly: HashMap<i64, u64>,
    /// The hour being counted (logs are in time order: the map is touched once per hour).
    this_hour: Option<(i64, u64)>,
    /// Failed attempts in all (a line may stand for several).
    pub failures: u64,
    /// Successful logins in all.
    pub successes: u64,
    /// Failed attempts that carried no usable time (no stamp on the line nor before it).
    pub failures_without_time: u64,
    untracked_ip_attempts: u64,
    untracked_account_attempts: u64,
}

fn cut(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn min_opt(a: Option<Timestamp>, b: Timestamp) -> Option<Timestamp> {
    Some(a.map_or(b, |a| a.min(b)))
}

fn max_opt(a: Option<Timestamp>, b: Timestamp) -> Option<Timestamp> {
    Some(a.map_or(b, |a| a.max(b)))
}

/// The pieces of a report that come from the aggregate.
pub(crate) struct Figures {
    /// The first `rows` offenders (all, without a limit).
    pub offenders: Vec<Offender>,
    pub offender_count: usize,
    pub offender_attempts: u64,
    pub also_succeeded: Vec<AlsoSucceeded>,
    pub accounts: Vec<AccountRow>,
    pub subnets: Vec<SubnetRow>,
    /// Crossings, with the index of the file they happened in.
    pub crossings: Vec<(u32, CrossingRow)>,
    pub hourly: Vec<HourRow>,
    pub limits: LimitsOut,
}

impl Aggregate {
    pub fn new(attempts: u32, window_secs: u64, caps: Caps) -> Self {
        Aggregate {
            attempts_needed: u64::from(attempts.max(1)),
            window_secs: i64::try_from(window_secs).unwrap_or(i64::MAX),
            caps,
            index: HashMap::default(),
            entries: Vec::new(),
            names: HashMap::default(),
            accounts: Vec::new(),
            overflow_pairs: HashSet::default(),
            pairs_capped: false,
            hourly: HashMap::default(),
            this_hour: None,
            failures: 0,
            successes: 0,
            failures_without_time: 0,
            untracked_ip_attempts: 0,
            untracked_account_attempts: 0,
        }
    }

    /// Count one hit. `time` is the line's time, or the previous stamped line's.
    pub fn observe(&mut self, hit: &Hit, time: Option<Timestamp>, file: u32, line: u64) {
        let key = Observed {
            ip: hit.ip,
            service: hit.service,
            attempts: hit.attempts,
            kind: hit.kind,
            time,
            file,
            line,
        };
        let mut account = None;
        let user = hit.user.as_deref().map(|u| (u, &mut account));
        self.observe_keyed(&key, &mut None, user);
    }

    fn ip_place(&mut self, ip: IpAddr) -> Option<u32> {
        let tracked = self.entries.len();
        match self.index.entry(ip) {
            Entry::Occupied(o) => Some(*o.get()),
            Entry::Vacant(v) => {
                if tracked >= self.caps.ips {
                    return None;
                }
                v.insert(tracked as u32);
                self.entries.push((ip, IpEntry::default()));
                Some(tracked as u32)
            }
        }
    }

    fn account_place(&mut self, user: &str) -> Option<u32> {
        let name = cut(user, MAX_ACCOUNT_CHARS);
        match self.names.get(name) {
            Some(&i) => Some(i),
            None if self.accounts.len() < self.caps.accounts => {
                let i = self.accounts.len() as u32;
                self.names.insert(name.into(), i);
                self.accounts.push(AccountEntry {
                    name: name.into(),
                    attempts: 0,
                    ips: 0,
                });
                Some(i)
            }
            None => None,
        }
    }

    /// [`Aggregate::observe`] with the IP's and the account's places looked up at most once
    /// per key and batch: `ip_slot` and the user's slot start as `None` and are filled on
    /// first use (entries are never removed, so a place once found, or once refused for a
    /// cap, stays right for the rest of the scan).
    pub fn observe_keyed(
        &mut self,
        hit: &Observed,
        ip_slot: &mut Slot,
        user: Option<(&str, &mut Slot)>,
    ) {
        let time = hit.time;
        let (file, line) = (hit.file, hit.line);
        let n = u64::from(hit.attempts.max(1));
        let failure = hit.kind == HitKind::Failure;
        if failure {
            self.failures += n;
            match time {
                Some(t) => self.count_hour(t.as_second().div_euclid(3600), n),
                None => self.failures_without_time += n,
            }
        } else {
            self.successes += n;
        }
        let place = match *ip_slot {
            Some(p) => p,
            None => {
                let p = self.ip_place(hit.ip);
                *ip_slot = Some(p);
                p
            }
        };
        let Some(i) = place else {
            if failure {
                self.untracked_ip_attempts += n;
            }
            return;
        };
        let i = i as usize;
        if !failure {
            self.entries[i].1.successes += n;
            return;
        }
        // Accounts: interned names, a short list per IP, distinct IPs per account.
        let account = user.map(|(name, slot)| match *slot {
            Some(p) => p,
            None => {
                let p = self.account_place(name);
                *slot = Some(p);
                p
            }
        });
        let e = &mut self.entries[i].1;
        e.failures += n;
        if let Some(t) = time {
            e.first_seen = min_opt(e.first_seen, t);
            e.last_seen = max_opt(e.last_seen, t);
        }
        if !e
            .services
            .iter()
            .any(|s| std::ptr::eq(*s, hit.service) || *s == hit.service)
        {
            e.services.push(hit.service);
        }

        match account {
            None => e.no_account += n,
            Some(idx) => match idx {
                None => {
                    self.untracked_account_attempts += n;
                    e.other_account_attempts += n;
                }
                Some(i) => {
                    let acc = &mut self.accounts[i as usize];
                    acc.attempts += n;
                    if let Some(p) = e.accounts.iter_mut().find(|p| p.0 == i) {
                        p.1 += n;
                    } else if e.accounts.len() < self.caps.accounts_per_ip {
                        e.accounts.push((i, n));
                        acc.ips += 1;
                    } else {
                        e.other_account_attempts += n;
                        if self.overflow_pairs.len() < self.caps.overflow_pairs {
                            if self.overflow_pairs.insert((i, hit.ip)) {
                                acc.ips += 1;
                            }
                        } else if !self.overflow_pairs.contains(&(i, hit.ip)) {
                            self.pairs_capped = true;
                        }
                    }
                }
            },
        }

        // Threshold: only until the first crossing.
        if let (Some(t), None) = (time, e.crossing) {
            let in_window = e.window.add(t.as_second(), n, self.window_secs);
            if in_window >= self.attempts_needed {
                e.crossing = Some(Crossing {
                    time: t,
                    file,
                    line,
                    in_window,
                });
                e.window = Window::default();
            }
        }
    }

    fn count_hour(&mut self, hour: i64, n: u64) {
        match &mut self.this_hour {
            Some((h, c)) if *h == hour => *c += n,
            slot => {
                if let Some((h, c)) = slot.replace((hour, n)) {
                    *self.hourly.entry(h).or_insert(0) += c;
                }
            }
        }
    }

    /// Number of IPs tracked (attackers and, for successes, clients).
    #[cfg(test)]
    pub fn tracked_ips(&self) -> usize {
        self.entries.len()
    }

    /// The first crossing of `ip`, if any.
    #[cfg(test)]
    pub fn crossing(&self, ip: IpAddr) -> Option<Crossing> {
        self.index
            .get(&ip)
            .and_then(|&i| self.entries[i as usize].1.crossing)
    }

    /// Sorted tables. Times are written in `tz`.
    /// Sorted tables, with rows for the first `rows` offenders only when given (a table shows
    /// a few; building hundreds of thousands of rows is most of the work after matching).
    pub fn figures(mut self, tz: &TimeZone, rows: Option<usize>) -> Figures {
        if let Some((h, c)) = self.this_hour.take() {
            *self.hourly.entry(h).or_insert(0) += c;
        }
        let t = |ts: Option<Timestamp>| ts.map(|ts| rfc3339(ts, tz));
        let stamp = |ts: Option<Timestamp>| ts.map(|ts| Stamp::new(ts, tz));
        let accounts_tbl = &self.accounts;

        // Offenders: most attempts first, then by address.
        let mut ips: Vec<(&IpAddr, &IpEntry)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.failures > 0)
            .map(|(ip, e)| (ip, e))
            .collect();
        // Keys are unique (one entry per IP), so an unstable sort gives the same order.
        ips.sort_unstable_by(|a, b| b.1.failures.cmp(&a.1.failures).then(a.0.cmp(b.0)));
        let offender = |(ip, e): &(&IpAddr, &IpEntry)| {
            let mut accs: Vec<AccountCount> = e
                .accounts
                .iter()
                .map(|&(i, c)| AccountCount {
                    name: Arc::clone(&accounts_tbl[i as usize].name),
                    count: c,
                })
                .collect();
            accs.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
            Offender {
                ip: **ip,
                attempts: e.failures,
                accounts: accs,
                other_account_attempts: e.other_account_attempts,
                no_account_attempts: e.no_account,
                first_seen: stamp(e.first_seen),
                last_seen: stamp(e.last_seen),
                service: match e.services.as_slice() {
                    [one] => Cow::Borrowed(*one),
                    many => Cow::Owned(many.join(",")),
                },
                successes: e.successes,
            }
        };
        // Tens of thousands of rows, each with its own strings: worth both cores.
        let offender_count = ips.len();
        let offender_attempts = ips.iter().map(|(_, e)| e.failures).sum();
        let also_succeeded = ips
            .iter()
            .filter(|(_, e)| e.successes > 0)
            .map(|(ip, e)| AlsoSucceeded {
                ip: **ip,
                failures: e.failures,
                successes: e.successes,
            })
            .collect();
        let offenders = par_map(&ips[..rows.unwrap_or(usize::MAX).min(ips.len())], offender);

        let mut accounts: Vec<AccountRow> = self
            .accounts
            .iter()
            .filter(|a| a.attempts > 0)
            .map(|a| AccountRow {
                name: Arc::clone(&a.name),
                attempts: a.attempts,
                ips: a.ips,
            })
            .collect();
        accounts.sort_by(|a, b| {
            b.attempts
                .cmp(&a.attempts)
                .then_with(|| a.name.cmp(&b.name))
        });

        // Subnets: IPv4 /24 and IPv6 /64 with more than one attacking address.
        struct Net {
            addresses: u64,
            attempts: u64,
            first: Option<Timestamp>,
            last: Option<Timestamp>,
        }
        let mut nets: HashMap<IpNet, Net> =
            HashMap::with_capacity_and_hasher(ips.len(), Default::default());
        for (ip, e) in &ips {
            let net = match ip {
                IpAddr::V4(v4) => Ipv4Net::new(*v4, 24).map(|n| IpNet::V4(n.trunc())),
                IpAddr::V6(v6) => Ipv6Net::new(*v6, 64).map(|n| IpNet::V6(n.trunc())),
            };
            let Ok(net) = net else { continue };
            let s = nets.entry(net).or_insert(Net {
                addresses: 0,
                attempts: 0,
                first: None,
                last: None,
            });
            s.addresses += 1;
            s.attempts += e.failures;
            if let Some(f) = e.first_seen {
                s.first = min_opt(s.first, f);
            }
            if let Some(l) = e.last_seen {
                s.last = max_opt(s.last, l);
            }
        }
        let mut subnets: Vec<(IpNet, Net)> =
            nets.into_iter().filter(|(_, n)| n.addresses > 1).collect();
        subnets.sort_unstable_by(|a, b| {
            b.1.attempts
                .cmp(&a.1.attempts)
                .then(b.1.addresses.cmp(&a.1.addresses))
                .then(a.0.cmp(&b.0))
        });
        let subnets = subnets
            .into_iter()
            .map(|(net, n)| SubnetRow {
                subnet: net.to_string(),
                addresses: n.addresses,
                attempts: n.attempts,
                first_seen: t(n.first),
                last_seen: t(n.last),
            })
            .collect();

        let mut crossings: Vec<(&IpAddr, Crossing, u64)> = self
            .entries
            .iter()
            .filter_map(|(ip, e)| e.crossing.map(|c| (ip, c, e.failures)))
            .collect();
        crossings.sort_unstable_by(|a, b| {
            (a.1.time, a.1.file, a.1.line, a.0).cmp(&(b.1.time, b.1.file, b.1.line, b.0))
        });
        let crossings = crossings
            .into_iter()
            .map(|(ip, c, attempts)| {
                (
                    c.file,
                    CrossingRow {
                        ip: *ip,
                        time: Stamp::new(c.time, tz),
                        file: String::new(),
                        line: c.line,
                        in_window: c.in_window,
                        attempts,
                    },
                )
            })
            .collect();

        let hourly = hourly_rows(&self.hourly, self.caps.dense_hours, tz);
        let limits = LimitsOut {
            attempts_from_untracked_ips: self.untracked_ip_attempts,
            attempts_on_untracked_accounts: self.untracked_account_attempts,
            distinct_ip_counts_are_lower_bounds: self.pairs_capped,
            attempts_without_time: self.failures_without_time,
        };
        Figures {
            offenders,
            offender_count,
            offender_attempts,
            also_succeeded,
            accounts,
            subnets,
            crossings,
            hourly,
            limits,
        }
    }
}

/// `items.iter().map(f).collect()`, on several threads when there are many items.
fn par_map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    const MIN_PER_THREAD: usize = 4096;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len() / MIN_PER_THREAD)
        .max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let parts: Vec<_> = items
            .chunks(per)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<U>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for p in parts {
            match p.join() {
                Ok(v) => out.extend(v),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
        out
    })
}

/// Attempts per hour from the first to the last hour with attempts (hours without attempts
/// included, as 0), or only the hours with attempts when the span is longer than `dense_max`.
fn hourly_rows(hourly: &HashMap<i64, u64>, dense_max: i64, tz: &TimeZone) -> Vec<HourRow> {
    let (Some(&lo), Some(&hi)) = (hourly.keys().min(), hourly.keys().max()) else {
        return Vec::new();
    };
    let row = |h: i64, attempts: u64| {
        Timestamp::from_second(h.saturating_mul(3600))
            .ok()
            .map(|ts| HourRow {
                hour: rfc3339(ts, tz),
                attempts,
            })
    };
    if hi - lo < dense_max {
        (lo..=hi)
            .filter_map(|h| row(h, hourly.get(&h).copied().unwrap_or(0)))
            .collect()
    } else {
        let mut hours: Vec<(&i64, &u64)> = hourly.iter().collect();
        hours.sort();
        hours.into_iter().filter_map(|(&h, &n)| row(h, n)).collect()
    }
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
