//! Fleet mode (issue 16): several agents share their detection windows through one
//! Redis/Valkey store, so thresholds apply to the fleet's total and one agent mails an incident.
//!
//! The agent hands each hit to [`FleetHandle::submit`], which only pushes it into a bounded
//! buffer and never waits: a background task sends the buffer to the store in batches (one Lua
//! script call each, see `store`), keeps hits until the store accepted them (so hits made while
//! the store is down are replayed when it returns), and queues the fleet totals it gets back for
//! [`FleetHandle::take_totals`]. A circuit breaker (`breaker`) stops calling a failing store;
//! [`FleetHandle::available`] tells the agent when to fall back to its local thresholds, and
//! [`FleetHandle::down_for`] feeds the health alert. Members are `agent:inode:offset`, so a line
//! read again after a restart counts nothing twice. Silences and allows are shared through
//! the store too (`shared`).
//!
//! Actions: every agent runs its own configured actions for a crossed IP or subnet key (each
//! server blocks at its own firewall). The agent that wins a key's claim also publishes it in
//! the store's `crossed` stream ([`Store::publish_crossed`]); the task reads that stream every
//! [`CROSSED_POLL_INTERVAL`] and hands each entry of another agent to the engine like a lost
//! claim ([`Candidate::mailer`]), so that an agent whose own last total was still below the
//! threshold learns that the fleet's crossed it, and acts when it counted attempts for the key.

pub mod breaker;
pub mod shared;
pub mod store;

pub use breaker::{Breaker, Buffer, BREAKER_FAILURES, BREAKER_OPEN_FOR};
pub use shared::{Change, DecisionSync, DECISIONS_SYNC_INTERVAL};
pub use store::{
    DecisionKind, Store, KEY_EXPIRY_SLACK, MAX_BATCH_HITS, MAX_CROSSED_ENTRIES,
    MAX_FLEET_MEMBERS_PER_KEY,
};

use crate::config::{DetectConfig, FleetConfig};
use ipnet::IpNet;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Most fleet totals queued for the agent: the agent takes them after every batch of lines, so
/// this only matters when it stalls; the oldest are dropped (a later batch brings fresh totals).
pub const MAX_PENDING_TOTALS: usize = 10_000;

/// How often the task looks at the buffer without being woken: hits are sent at once when the
/// agent submits them; this only paces replays and breaker probes.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// How often the task reads the store's `crossed` stream: how long after another agent's claim
/// a server that saw the attacker starts its actions, at most (one `XRANGE` per agent each
/// time, a few hundred a second for a hundred agents: cheap for the store).
pub const CROSSED_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The identity of each line of a batch for the store, as (inode, byte offset of the line's
/// start): from a file's checkpoint (the offset after the batch) counted back over the lines.
/// A journal batch is named by a hash of its last cursor and the line's index. Standard input
/// has none (empty: the engine numbers its lines). A line cut for length or repaired UTF-8
/// shifts the offsets before it within its batch: such a line read again in another batch may
/// count once more.
pub fn line_ids(batch: &crate::source::Batch) -> Vec<(u64, u64)> {
    use crate::source::Position;
    match &batch.position {
        Position::File(cp) => {
            let mut end = cp.offset;
            let mut v: Vec<(u64, u64)> = batch
                .lines
                .iter()
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .map(|l| {
                    end = end.saturating_sub(l.len() as u64 + 1);
                    (cp.inode, end)
                })
                .collect();
            v.reverse();
            v
        }
        Position::Cursor(c) => {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            c.hash(&mut h);
            let id = h.finish();
            (0..batch.lines.len() as u64).map(|i| (id, i)).collect()
        }
        Position::None => Vec::new(),
    }
}

/// The kind of a window key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Ip,
    Subnet,
    Account,
}

/// The window length of each kind of key (`None`: that detector is off).
#[derive(Debug, Clone)]
pub struct Windows {
    pub ip: Duration,
    pub subnet: Option<Duration>,
    pub account: Option<Duration>,
}

impl Windows {
    pub fn from_detect(d: &DetectConfig) -> Windows {
        Windows {
            ip: d.per_ip.window,
            subnet: d.per_subnet.as_ref().map(|s| s.threshold.window),
            account: d.per_account.as_ref().map(|a| a.threshold.window),
        }
    }

    pub fn of(&self, k: KeyKind) -> Duration {
        match k {
            KeyKind::Ip => self.ip,
            KeyKind::Subnet => self.subnet.unwrap_or(self.ip),
            KeyKind::Account => self.account.unwrap_or(self.ip),
        }
    }
}

/// One failed attempt line as the fleet sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetHit {
    /// Log time, Unix milliseconds.
    pub time_ms: i64,
    pub ip: IpAddr,
    /// The IP's subnet, when subnets are counted.
    pub subnet: Option<IpNet>,
    /// The account tried (attacker text), if logged.
    pub account: Option<String>,
    /// Identity of the line: the log file's inode and the line's byte offset.
    pub inode: u64,
    pub offset: u64,
    /// Attempts the line stands for.
    pub attempts: u32,
}

impl FleetHit {
    /// The window keys this hit counts in: (kind, key, sub) where sub is the account of an IP
    /// key and the address of a subnet or account key (for distinct counts).
    pub fn keys(&self, w: &Windows) -> Vec<(KeyKind, String, String)> {
        let ip = self.ip.to_string();
        let mut v = vec![(
            KeyKind::Ip,
            ip.clone(),
            self.account.clone().unwrap_or_default(),
        )];
        if let (Some(net), Some(_)) = (self.subnet, w.subnet) {
            v.push((KeyKind::Subnet, net.to_string(), ip.clone()));
        }
        if let (Some(a), Some(_)) = (&self.account, w.account) {
            v.push((KeyKind::Account, a.clone(), ip));
        }
        v
    }
}

/// A key whose fleet total crossed its threshold: the agent asks the store whether it sends
/// the mail ([`FleetHandle::claim_later`]) and gets the answer back from
/// [`FleetHandle::take_claims`]; entries of the `crossed` stream come back the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub total: KeyTotal,
    /// The claim could not be made (store down or slow): this agent sends, and says so.
    pub store_unavailable: bool,
    /// `None`: this agent mails the alert. `Some(agent)`: that agent claimed it (a lost claim,
    /// or another agent's entry in the `crossed` stream); this one only runs its actions.
    pub mailer: Option<String>,
}

/// The fleet-wide state of one window key after a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTotal {
    pub kind: KeyKind,
    pub key: String,
    /// Attempts in the window, all agents together.
    pub total: u64,
    /// Distinct accounts (IP key) or addresses (subnet, account key) in the window.
    pub distinct: u64,
    /// Attempts per agent in the window, by agent name.
    pub per_host: Vec<(String, u64)>,
}

struct Shared {
    buf: Mutex<Buffer>,
    totals: Mutex<VecDeque<KeyTotal>>,
    wake: Notify,
    stop: AtomicBool,
    up: AtomicBool,
    /// Milliseconds since `started` at which the store went down (0: up).
    down_at_ms: AtomicU64,
    started: Instant,
    /// Batches the store accepted, and hits in them.
    batches: AtomicU64,
    hits_sent: AtomicU64,
    /// Claims answered (won, lost, or sent without the store) and other agents' crossings.
    claims: Mutex<Vec<Candidate>>,
    /// Woken when totals or won claims arrive (see [`FleetHandle::ready`]).
    ready: Notify,
}

/// The agent's side of fleet mode; cheap to clone. Dropping the last clone does not stop the
/// task: call [`FleetHandle::stop`].
#[derive(Clone)]
pub struct FleetHandle {
    shared: Arc<Shared>,
    /// The store's URL with the password masked, for messages.
    url: Arc<str>,
    store: Store,
    windows: Arc<Windows>,
}

impl FleetHandle {
    /// Open the store (lazily: a store that is down now is not an error) and start the task on
    /// the current tokio runtime.
    pub fn start(cfg: &FleetConfig, windows: Windows) -> anyhow::Result<FleetHandle> {
        let store = Store::open(cfg)
            .map_err(|e| anyhow::anyhow!("fleet.redis {}: {e}", cfg.url.masked()))?;
        let h = FleetHandle {
            url: cfg.url.masked().into(),
            shared: Arc::new(Shared {
                buf: Mutex::new(Buffer::new(cfg.buffer)),
                totals: Mutex::new(VecDeque::new()),
                wake: Notify::new(),
                stop: AtomicBool::new(false),
                up: AtomicBool::new(true),
                down_at_ms: AtomicU64::new(0),
                started: Instant::now(),
                batches: AtomicU64::new(0),
                hits_sent: AtomicU64::new(0),
                claims: Mutex::new(Vec::new()),
                ready: Notify::new(),
            }),
            store,
            windows: Arc::new(windows),
        };
        let task = h.clone();
        tokio::spawn(async move { task.run().await });
        Ok(h)
    }

    /// Queue a hit for the store. Never waits on the store.
    pub fn submit(&self, hit: FleetHit) {
        self.shared
            .buf
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hit);
        self.shared.wake.notify_one();
    }

    /// The fleet totals that arrived since the last call.
    pub fn take_totals(&self) -> Vec<KeyTotal> {
        let mut t = self.shared.totals.lock().unwrap_or_else(|e| e.into_inner());
        t.drain(..).collect()
    }

    /// Is the store answering (breaker closed)? When not, detect with local thresholds.
    pub fn available(&self) -> bool {
        self.shared.up.load(Ordering::Relaxed)
    }

    /// How long the store has been failing, if it is.
    pub fn down_for(&self) -> Option<Duration> {
        match self.shared.down_at_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                self.shared
                    .started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms)),
            ),
        }
    }

    /// Hits waiting for the store, and hits dropped because the buffer was full.
    pub fn pending(&self) -> (usize, u64) {
        let b = self.shared.buf.lock().unwrap_or_else(|e| e.into_inner());
        (b.len(), b.dropped)
    }

    /// Batches and hits the store accepted so far.
    pub fn sent(&self) -> (u64, u64) {
        (
            self.shared.batches.load(Ordering::Relaxed),
            self.shared.hits_sent.load(Ordering::Relaxed),
        )
    }

    /// Ask the store, in a task of its own, whether this agent mails about `c`'s key
    /// (`SET NX PX cooldown`); the answer comes back from [`FleetHandle::take_claims`]: won, or
    /// not asked because the store is unavailable (this agent mails), or lost (the agent that
    /// claimed it mails; this one still runs its actions). A won IP or subnet key is published
    /// in the `crossed` stream for the agents whose last total was still below the threshold.
    pub fn claim_later(&self, c: KeyTotal, cooldown: Duration) {
        let h = self.clone();
        tokio::spawn(async move {
            let kind = match c.kind {
                KeyKind::Ip => "ip",
                KeyKind::Subnet => "net",
                KeyKind::Account => "acct",
            };
            let (store_unavailable, mailer) = if !h.available() {
                (true, None)
            } else {
                match h.store.claim(kind, &c.key, cooldown).await {
                    Ok(None) => (false, None),
                    Ok(Some(owner)) => {
                        tracing::debug!(key = %crate::text::inert(&c.key), owner = %crate::text::inert(&owner), "fleet incident mailed by another agent");
                        (false, Some(owner))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "fleet store unavailable for the claim; this agent sends");
                        (true, None)
                    }
                }
            };
            let publish = !store_unavailable && mailer.is_none() && c.kind != KeyKind::Account;
            let total = publish.then(|| c.clone());
            h.push_claim(Candidate {
                total: c,
                store_unavailable,
                mailer,
            });
            if let Some(t) = total {
                if let Err(e) = h.store.publish_crossed(&t).await {
                    tracing::warn!(key = %t.key, error = %describe_error(&e), "could not tell the fleet that this key crossed its threshold: servers whose own total was below it run no actions for it");
                }
            }
        });
    }

    /// Resolves when fleet totals or won claims are waiting: the agent's loop then calls
    /// `Engine::fleet_poll` at once instead of at its next timer tick.
    pub async fn ready(&self) {
        self.shared.ready.notified().await
    }

    /// Claims answered and other agents' crossings since the last call.
    pub fn take_claims(&self) -> Vec<Candidate> {
        std::mem::take(&mut *self.shared.claims.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Queue an answered claim or a crossing for the agent (at most [`MAX_PENDING_TOTALS`]
    /// wait; beyond it the oldest is dropped, as for totals) and wake it.
    fn push_claim(&self, c: Candidate) {
        let mut q = self.shared.claims.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= MAX_PENDING_TOTALS {
            q.remove(0);
        }
        q.push(c);
        drop(q);
        self.shared.ready.notify_one();
    }

    /// Read the `crossed` stream after `from` (`None`: not started: start at its newest
    /// entry), and queue the entries other agents published.
    async fn read_crossed(&self, from: &mut Option<String>) {
        let Some(after) = from.clone() else {
            match self.store.last_crossed_id().await {
                Ok(id) => *from = Some(id),
                Err(e) => {
                    tracing::debug!(error = %describe_error(&e), "fleet store: reading the crossed stream failed")
                }
            }
            return;
        };
        match self.store.crossed_after(&after).await {
            Ok((last, entries)) => {
                *from = Some(last);
                for (by, total) in entries {
                    if by != self.store.name() {
                        self.push_claim(Candidate {
                            total,
                            store_unavailable: false,
                            mailer: Some(by),
                        });
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %describe_error(&e), "fleet store: reading the crossed stream failed")
            }
        }
    }

    /// The store's URL, password masked.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The store, for claims and shared decisions.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Wait until every queued hit reached the store, or `limit` passed; true when emptied.
    pub async fn flush(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        loop {
            if self.pending().0 == 0 {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            self.shared.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Has [`FleetHandle::stop`] been called?
    pub fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    /// Stop the task, and the shared decisions' task (hits still queued are not sent).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }

    fn set_up(&self, b: &Breaker, last_error: &str) {
        let up = !b.is_open();
        let was = self.shared.up.swap(up, Ordering::Relaxed);
        if was && !up {
            tracing::warn!(
                store = %self.url,
                error = %last_error,
                "fleet store unavailable: detecting with local thresholds, hits are kept for replay"
            );
        } else if !was && up {
            tracing::info!("fleet store is back: replaying buffered hits");
        }
        let down = b
            .down_since()
            .map(|t| (t.saturating_duration_since(self.shared.started).as_millis() as u64).max(1))
            .unwrap_or(0);
        self.shared.down_at_ms.store(down, Ordering::Relaxed);
    }

    async fn run(self) {
        let mut breaker = Breaker::new();
        let mut last_error = String::new();
        let mut crossed_from: Option<String> = None;
        let mut crossed_read: Option<Instant> = None;
        while !self.shared.stop.load(Ordering::Relaxed) {
            let _ = tokio::time::timeout(FLUSH_INTERVAL, self.shared.wake.notified()).await;
            let mut drained = false;
            loop {
                if self.shared.stop.load(Ordering::Relaxed) || !breaker.allow(Instant::now()) {
                    break;
                }
                let (last, batch) = {
                    let b = self.shared.buf.lock().unwrap_or_else(|e| e.into_inner());
                    b.peek(MAX_BATCH_HITS)
                };
                if batch.is_empty() {
                    drained = true;
                    if breaker.is_open() {
                        let ok = match self.store.ping().await {
                            Ok(()) => true,
                            Err(e) => {
                                last_error = describe_error(&e);
                                false
                            }
                        };
                        breaker.record(ok, Instant::now());
                        self.set_up(&breaker, &last_error);
                    }
                    break;
                }
                match self.store.add(&batch, &self.windows).await {
                    Ok(totals) => {
                        self.shared
                            .buf
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .consume_through(last);
                        self.shared.batches.fetch_add(1, Ordering::Relaxed);
                        self.shared
                            .hits_sent
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        let mut t = self.shared.totals.lock().unwrap_or_else(|e| e.into_inner());
                        for kt in totals {
                            if t.len() >= MAX_PENDING_TOTALS {
                                t.pop_front();
                            }
                            t.push_back(kt);
                        }
                        drop(t);
                        self.shared.ready.notify_one();
                        breaker.record(true, Instant::now());
                        self.set_up(&breaker, &last_error);
                    }
                    Err(e) => {
                        last_error = describe_error(&e);
                        tracing::debug!(error = %last_error, "fleet store call failed");
                        breaker.record(false, Instant::now());
                        self.set_up(&breaker, &last_error);
                        break;
                    }
                }
            }
            // Other agents' crossings, once the buffered hits were sent (they come first, and
            // a store that refuses them is not asked anything else).
            if drained
                && !breaker.is_open()
                && crossed_read.is_none_or(|t| t.elapsed() >= CROSSED_POLL_INTERVAL)
            {
                crossed_read = Some(Instant::now());
                self.read_crossed(&mut crossed_from).await;
            }
        }
    }
}

/// A store error for the log, with what to do about a refused login or a missing permission
/// (the URL is never part of it: the caller names the store by its masked URL).
pub fn describe_error(e: &redis::RedisError) -> String {
    let code = e.code().unwrap_or("");
    if e.kind() == redis::ErrorKind::AuthenticationFailed || matches!(code, "WRONGPASS" | "NOAUTH")
    {
        format!("{e} (the store refused the login: check the user and password in fleet.redis)")
    } else if code == "NOPERM" {
        format!("{e} (the store's ACL user may not use these keys or commands: allow ~<key_prefix>:* and +@all -@dangerous)")
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{Batch, Checkpoint, LineBatch, Position};

    fn batch(lines: &[&str], position: Position) -> Batch {
        let mut lb = LineBatch::default();
        for l in lines {
            lb.push(l);
        }
        Batch {
            source: 0,
            lines: lb,
            position,
            problem: None,
            done: false,
            caught_up: false,
        }
    }

    #[test]
    fn file_lines_are_named_by_inode_and_start_offset() {
        // "ab\n" at 100, "cde\n" at 103, "" at 107; the checkpoint is after the last newline.
        let cp = Checkpoint {
            dev: 1,
            inode: 42,
            fingerprint: Vec::new(),
            offset: 108,
        };
        let b = batch(&["ab", "cde", ""], Position::File(cp));
        assert_eq!(line_ids(&b), vec![(42, 100), (42, 103), (42, 107)]);
        // The same lines read again in two batches get the same names.
        let cp1 = Checkpoint {
            dev: 1,
            inode: 42,
            fingerprint: Vec::new(),
            offset: 103,
        };
        assert_eq!(
            line_ids(&batch(&["ab"], Position::File(cp1))),
            vec![(42, 100)]
        );
    }

    #[test]
    fn journal_lines_are_named_by_cursor_and_stdin_not_at_all() {
        let b = batch(&["x", "y"], Position::Cursor("s=abc;i=1".into()));
        let ids = line_ids(&b);
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0].0, ids[1].0);
        assert_eq!((ids[0].1, ids[1].1), (0, 1));
        assert!(line_ids(&batch(&["x"], Position::None)).is_empty());
    }

    #[test]
    fn a_hit_counts_in_ip_subnet_and_account_windows() {
        let h = FleetHit {
            time_ms: 1,
            ip: "2001:db8::7".parse().unwrap(),
            subnet: Some("2001:db8::/64".parse().unwrap()),
            account: Some("alice".into()),
            inode: 1,
            offset: 2,
            attempts: 3,
        };
        let w = Windows {
            ip: Duration::from_secs(600),
            subnet: Some(Duration::from_secs(600)),
            account: None,
        };
        let keys = h.keys(&w);
        assert_eq!(
            keys,
            vec![
                (KeyKind::Ip, "2001:db8::7".into(), "alice".into()),
                (
                    KeyKind::Subnet,
                    "2001:db8::/64".into(),
                    "2001:db8::7".into()
                ),
            ],
            "account windows are off"
        );
        assert_eq!(w.of(KeyKind::Subnet), Duration::from_secs(600));
    }
}
