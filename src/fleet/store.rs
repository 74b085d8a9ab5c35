//! [`Store`]: the calls authwatch makes to the shared Redis/Valkey store, each bounded by the
//! configured timeout. One Lua script call per batch adds hits to the per-key windows and returns
//! the fleet totals ([`Store::add`]); `SET NX PX` elects the agent that mails an incident
//! ([`Store::claim`]); silences and allows live in two hashes ([`Store::put_decision`],
//! [`Store::decisions`]). Key layout, all under `<prefix>:`: `w:ip:<ip>`, `w:net:<cidr>`,
//! `w:acct:<account>` (sorted sets, each with two hashes `<key>:h`, attempts per agent, and
//! `<key>:s`, attempts per account or address), `sent:<kind>:<key>` (strings), `silence` and
//! `allow` (hashes). Nothing here retries or buffers: that is the caller's job (see `breaker`).

use super::{FleetHit, KeyKind, KeyTotal, Windows};
use crate::config::FleetConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use std::collections::HashMap;
use std::time::Duration;

/// Most members (attempt lines) kept per window key. The fleet total of a key saturates there,
/// far above any sensible threshold (defaults 5 to 20), and a key's memory stays under ~300 KB.
pub const MAX_FLEET_MEMBERS_PER_KEY: usize = 2048;

/// Extra life of a window key after its newest hit's window, so an agent whose log lags a
/// little behind the others still finds the key.
pub const KEY_EXPIRY_SLACK: Duration = Duration::from_secs(60);

/// Longest account name used in a store key: accounts are attacker text; longer names are cut
/// (two such accounts then share a window, which only makes detection stricter).
pub const MAX_KEY_ACCOUNT_BYTES: usize = 256;

/// Most hits sent in one script call, so a call stays well under the store timeout and never
/// blocks the store for long. Measured (scripts/bench --only fleet): 500 hits over ~1000
/// distinct keys took 49 ms a call on average, with spikes past 200 ms; the cost is per key
/// (about a dozen store commands each), so 100 hits stay around 10 ms even when all their keys
/// differ, and far less in a real attack, whose hits share a few keys.
pub const MAX_BATCH_HITS: usize = 100;

/// Shared decisions kept in the store (the decisions module maps its own types onto these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecisionKind {
    /// Alerts about the key are not mailed until the end time.
    Silence,
    /// The key is never counted (until the end time, or for good).
    Allow,
}

impl DecisionKind {
    fn name(self) -> &'static str {
        match self {
            DecisionKind::Silence => "silence",
            DecisionKind::Allow => "allow",
        }
    }
}

/// A connection to the fleet store (cheap to clone: the connection is shared).
#[derive(Clone)]
pub struct Store {
    con: ConnectionManager,
    script: std::sync::Arc<Script>,
    prefix: String,
    name: String,
    timeout: Duration,
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

fn timeout_err() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "fleet store timed out"))
}

impl Store {
    /// Prepare a connection; it is made on the first call (a store that is down at start is not
    /// an error: calls fail until it is up). Errors only on a URL the client refuses.
    pub fn open(cfg: &FleetConfig) -> redis::RedisResult<Store> {
        let client = redis::Client::open(cfg.url.0.as_str())?;
        let mc = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let con = ConnectionManager::new_lazy_with_config(client, mc)?;
        Ok(Store {
            con,
            script: std::sync::Arc::new(Script::new(include_str!("script.lua"))),
            prefix: cfg.key_prefix.clone(),
            name: cfg.name.clone(),
            timeout: cfg.timeout,
        })
    }

    /// This agent's name in the fleet.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store key of a window.
    pub fn window_key(&self, kind: KeyKind, key: &str) -> String {
        match kind {
            KeyKind::Ip => format!("{}:w:ip:{key}", self.prefix),
            KeyKind::Subnet => format!("{}:w:net:{key}", self.prefix),
            KeyKind::Account => {
                format!("{}:w:acct:{}", self.prefix, cut(key, MAX_KEY_ACCOUNT_BYTES))
            }
        }
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        // The script's first call may load it (EVALSHA miss, then EVAL): two round trips.
        match tokio::time::timeout(self.timeout * 2, f).await {
            Ok(r) => r,
            Err(_) => Err(timeout_err()),
        }
    }

    /// Add a batch of hits (at most [`MAX_BATCH_HITS`]) to the fleet windows in one script call;
    /// returns the fleet totals of every key the batch touched, in first-seen order.
    pub async fn add(
        &self,
        hits: &[FleetHit],
        windows: &Windows,
    ) -> redis::RedisResult<Vec<KeyTotal>> {
        // Group members per key, keeping first-seen order.
        let mut order: Vec<(KeyKind, String)> = Vec::new();
        let mut members: HashMap<(KeyKind, String), Vec<(i64, String)>> = HashMap::new();
        for h in hits {
            for (kind, key, sub) in h.keys(windows) {
                let member = format!(
                    "{}:{}:{}:{}:{}",
                    self.name, h.inode, h.offset, h.attempts, sub
                );
                let k = (kind, key);
                let e = members.entry(k.clone()).or_default();
                if e.is_empty() {
                    order.push(k);
                }
                e.push((h.time_ms, member));
            }
        }
        if order.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.script.prepare_invoke();
        inv.arg(MAX_FLEET_MEMBERS_PER_KEY)
            .arg(KEY_EXPIRY_SLACK.as_millis() as u64);
        for k in &order {
            inv.key(self.window_key(k.0, &k.1));
            let ms = &members[k];
            inv.arg(windows.of(k.0).as_millis() as u64).arg(ms.len());
            for (score, m) in ms {
                inv.arg(*score).arg(m.as_str());
            }
        }
        let mut con = self.con.clone();
        let rows: Vec<Vec<String>> = self.bounded(inv.invoke_async(&mut con)).await?;
        let mut out = Vec::with_capacity(order.len());
        for ((kind, key), row) in order.into_iter().zip(rows) {
            let num = |i: usize| row.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            let mut per_host: Vec<(String, u64)> = row[2.min(row.len())..]
                .chunks(2)
                .filter(|c| c.len() == 2)
                .map(|c| (c[0].clone(), c[1].parse().unwrap_or(0)))
                .collect();
            per_host.sort();
            out.push(KeyTotal {
                kind,
                key,
                total: num(0),
                distinct: num(1),
                per_host,
            });
        }
        Ok(out)
    }

    /// Elect the agent that mails an incident: `SET <prefix>:sent:<kind>:<key> <name> NX PX
    /// cooldown`. `Ok(None)`: this agent won and sends; `Ok(Some(agent))`: that agent already
    /// claimed it within the cooldown (our own name when this agent claimed it before: a
    /// re-read after restart).
    pub async fn claim(
        &self,
        kind: &str,
        key: &str,
        cooldown: Duration,
    ) -> redis::RedisResult<Option<String>> {
        let k = format!(
            "{}:sent:{kind}:{}",
            self.prefix,
            cut(key, MAX_KEY_ACCOUNT_BYTES)
        );
        let mut con = self.con.clone();
        let ms = cooldown.as_millis().max(1) as u64;
        let name = self.name.clone();
        self.bounded(async move {
            let set: Option<String> = redis::cmd("SET")
                .arg(&k)
                .arg(&name)
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .query_async(&mut con)
                .await?;
            if set.is_some() {
                return Ok(None);
            }
            let owner: Option<String> = con.get(&k).await?;
            Ok(Some(owner.unwrap_or_default()))
        })
        .await
    }

    /// Record a shared silence or allow for `key` until `until_ms` (Unix ms; `None`: for good).
    pub async fn put_decision(
        &self,
        kind: DecisionKind,
        key: &str,
        until_ms: Option<i64>,
    ) -> redis::RedisResult<()> {
        let h = format!("{}:{}", self.prefix, kind.name());
        let mut con = self.con.clone();
        let v = until_ms.unwrap_or(0);
        self.bounded(async move { con.hset::<_, _, _, ()>(&h, key, v).await })
            .await
    }

    /// Remove a shared silence or allow.
    pub async fn remove_decision(&self, kind: DecisionKind, key: &str) -> redis::RedisResult<()> {
        let h = format!("{}:{}", self.prefix, kind.name());
        let mut con = self.con.clone();
        self.bounded(async move { con.hdel::<_, _, ()>(&h, key).await })
            .await
    }

    /// The shared silences or allows in force at `now_ms`: key → end (Unix ms; `None`: for
    /// good). Ended ones are removed from the store.
    pub async fn decisions(
        &self,
        kind: DecisionKind,
        now_ms: i64,
    ) -> redis::RedisResult<HashMap<String, Option<i64>>> {
        let h = format!("{}:{}", self.prefix, kind.name());
        let mut con = self.con.clone();
        self.bounded(async move {
            let all: HashMap<String, i64> = con.hgetall(&h).await?;
            let mut out = HashMap::new();
            let mut ended = Vec::new();
            for (k, until) in all {
                if until == 0 {
                    out.insert(k, None);
                } else if until > now_ms {
                    out.insert(k, Some(until));
                } else {
                    ended.push(k);
                }
            }
            if !ended.is_empty() {
                con.hdel::<_, _, ()>(&h, ended).await?;
            }
            Ok(out)
        })
        .await
    }

    /// A round trip (`PING`), for health checks.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut con = self.con.clone();
        self.bounded(async move { redis::cmd("PING").query_async::<()>(&mut con).await })
            .await
    }
}
