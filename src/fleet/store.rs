//! [`Store`]: the calls authwatch makes to the shared Redis/Valkey store, each bounded by the
//! configured timeout. One Lua script call per batch adds hits to the per-key windows and returns
//! the fleet totals ([`Store::add`]); `SET NX PX` elects the agent that mails an incident
//! ([`Store::claim`]); silences and allows live in two hashes ([`Store::put_decision`],
//! [`Store::decisions`]). Key layout, all under `<prefix>:`: `w:ip:<ip>`, `w:net:<cidr>`,
//! `w:acct:<account>` (sorted sets, each with two hashes `<key>:h`, attempts per agent, and
//! `<key>:s`, attempts per account or address), `sent:<kind>:<key>` (strings), `silence` and
//! `allow` (hashes), `crossed` (a stream: the IP and subnet keys whose mail claim was won, with
//! the servers that counted attempts, so that each of them runs its own actions;
//! [`Store::publish_crossed`], [`Store::crossed_after`]). Nothing here retries or buffers: that is the caller's job (see `breaker`).

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

/// Entries kept in the `crossed` stream (trimmed approximately, `MAXLEN ~`): one per IP or
/// subnet key and cooldown, each a few hundred bytes, so at most a few MB; an agent reads it
/// every [`super::CROSSED_POLL_INTERVAL`], so it only needs the entries of the last moments.
pub const MAX_CROSSED_ENTRIES: usize = 10_000;

/// Entries read from the `crossed` stream in one call, at most (the rest at the next call).
pub const MAX_CROSSED_READ: usize = 500;

/// Servers kept from one `crossed` entry, at most: the stream is shared, so an entry is not
/// trusted to be small; a fleet has far fewer servers.
pub const MAX_CROSSED_HOSTS: usize = 1000;

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

    /// Tell the other agents that `t` crossed its threshold and this agent won the claim to
    /// mail it: `XADD <prefix>:crossed MAXLEN ~ N * ...` ([`crossed_fields`]).
    pub async fn publish_crossed(&self, t: &KeyTotal) -> redis::RedisResult<()> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(format!("{}:crossed", self.prefix))
            .arg("MAXLEN")
            .arg("~")
            .arg(MAX_CROSSED_ENTRIES)
            .arg("*");
        for (f, v) in crossed_fields(&self.name, t) {
            cmd.arg(f).arg(v);
        }
        let mut con = self.con.clone();
        self.bounded(async move { cmd.query_async::<String>(&mut con).await })
            .await
            .map(|_| ())
    }

    /// The id of the newest `crossed` entry (`0-0` when there is none): where an agent starts
    /// reading (entries older than its start are not its business: lines it reads again are
    /// counted and crossed again).
    pub async fn last_crossed_id(&self) -> redis::RedisResult<String> {
        let k = format!("{}:crossed", self.prefix);
        let mut con = self.con.clone();
        let rows: Vec<(String, Vec<String>)> = self
            .bounded(async move {
                redis::cmd("XREVRANGE")
                    .arg(&k)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut con)
                    .await
            })
            .await?;
        Ok(rows
            .into_iter()
            .next()
            .map(|(id, _)| id)
            .unwrap_or_else(|| "0-0".into()))
    }

    /// The `crossed` entries after id `after` (at most [`MAX_CROSSED_READ`]): the id of the
    /// last one read (`after` when none), and (agent that mails, total) of each entry that
    /// parses ([`parse_crossed`]); others are skipped.
    pub async fn crossed_after(
        &self,
        after: &str,
    ) -> redis::RedisResult<(String, Vec<(String, KeyTotal)>)> {
        let k = format!("{}:crossed", self.prefix);
        let start = next_stream_id(after);
        let mut con = self.con.clone();
        let rows: Vec<(String, Vec<String>)> = self
            .bounded(async move {
                redis::cmd("XRANGE")
                    .arg(&k)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(MAX_CROSSED_READ)
                    .query_async(&mut con)
                    .await
            })
            .await?;
        let last = rows
            .last()
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| after.to_string());
        let out = rows
            .iter()
            .filter_map(|(_, fields)| parse_crossed(fields))
            .collect();
        Ok((last, out))
    }

    /// A round trip (`PING`), for health checks.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut con = self.con.clone();
        self.bounded(async move { redis::cmd("PING").query_async::<()>(&mut con).await })
            .await
    }
}

/// The fields of a `crossed` entry: `by` (the agent that mails), `kind` (`ip` or `net`), `key`,
/// `total`, `distinct`, then `h:<agent>` with each agent's attempts in the window.
pub fn crossed_fields(by: &str, t: &KeyTotal) -> Vec<(String, String)> {
    let kind = match t.kind {
        KeyKind::Ip => "ip",
        KeyKind::Subnet => "net",
        KeyKind::Account => "acct",
    };
    let mut v = vec![
        ("by".to_string(), by.to_string()),
        ("kind".to_string(), kind.to_string()),
        ("key".to_string(), t.key.clone()),
        ("total".to_string(), t.total.to_string()),
        ("distinct".to_string(), t.distinct.to_string()),
    ];
    for (host, n) in &t.per_host {
        v.push((format!("h:{host}"), n.to_string()));
    }
    v
}

/// Read a `crossed` entry's fields (name, value, name, value...) back: (agent that mails,
/// total). `None` unless it names the agent, an IP or subnet key (account keys name no address
/// to act on) and a total; at most [`MAX_CROSSED_HOSTS`] servers are kept.
pub fn parse_crossed(fields: &[String]) -> Option<(String, KeyTotal)> {
    let (mut by, mut kind, mut key, mut total, mut distinct) = (None, None, None, None, 0);
    let mut per_host = Vec::new();
    for pair in fields.chunks_exact(2) {
        let (f, v) = (pair[0].as_str(), pair[1].as_str());
        match f {
            "by" => by = Some(v.to_string()),
            "kind" => {
                kind = match v {
                    "ip" => Some(KeyKind::Ip),
                    "net" => Some(KeyKind::Subnet),
                    _ => return None,
                }
            }
            "key" => key = Some(v.to_string()),
            "total" => total = Some(v.parse::<u64>().ok()?),
            "distinct" => distinct = v.parse::<u64>().unwrap_or(0),
            _ => {
                if let (Some(host), true) =
                    (f.strip_prefix("h:"), per_host.len() < MAX_CROSSED_HOSTS)
                {
                    if let Ok(n) = v.parse::<u64>() {
                        per_host.push((host.to_string(), n));
                    }
                }
            }
        }
    }
    per_host.sort();
    Some((
        by?,
        KeyTotal {
            kind: kind?,
            key: key?,
            total: total?,
            distinct,
            per_host,
        },
    ))
}

/// The first stream id after `id` (`ms-seq` → `ms-(seq+1)`), for an `XRANGE` that leaves `id`
/// out on any Redis version (the exclusive `(id` form needs 6.2); an id that does not parse
/// reads from the start.
fn next_stream_id(id: &str) -> String {
    match id
        .split_once('-')
        .map(|(a, b)| (a.parse::<u64>(), b.parse::<u64>()))
    {
        Some((Ok(ms), Ok(seq))) => match seq.checked_add(1) {
            Some(s) => format!("{ms}-{s}"),
            None => format!("{}-0", ms.saturating_add(1)),
        },
        _ => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(kind: KeyKind, key: &str) -> KeyTotal {
        KeyTotal {
            kind,
            key: key.into(),
            total: 6,
            distinct: 2,
            per_host: vec![("mx1".into(), 2), ("mx2".into(), 4)],
        }
    }

    fn flat(v: Vec<(String, String)>) -> Vec<String> {
        v.into_iter().flat_map(|(a, b)| [a, b]).collect()
    }

    #[test]
    fn a_crossed_entry_reads_back_as_written() {
        for (kind, key) in [
            (KeyKind::Ip, "203.0.113.50"),
            (KeyKind::Subnet, "2001:db8:1::/64"),
        ] {
            let t = total(kind, key);
            let got = parse_crossed(&flat(crossed_fields("mx3", &t)));
            assert_eq!(got, Some(("mx3".to_string(), t)));
        }
    }

    #[test]
    fn crossed_entries_that_name_no_address_or_do_not_parse_are_skipped() {
        let acct = flat(crossed_fields("mx3", &total(KeyKind::Account, "alice")));
        assert_eq!(parse_crossed(&acct), None, "account keys: nothing to block");
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_crossed(&s(&["kind", "ip", "key", "192.0.2.1"])), None);
        assert_eq!(
            parse_crossed(&s(&[
                "by",
                "x",
                "kind",
                "ip",
                "key",
                "192.0.2.1",
                "total",
                "many"
            ])),
            None
        );
        // A bad count for one server drops that server only; an odd field is ignored.
        let (_, t) = parse_crossed(&s(&[
            "by",
            "x",
            "kind",
            "ip",
            "key",
            "192.0.2.1",
            "total",
            "5",
            "h:mx1",
            "lots",
            "h:mx2",
            "5",
            "odd",
        ]))
        .unwrap();
        assert_eq!(t.per_host, vec![("mx2".to_string(), 5)]);
    }

    #[test]
    fn stream_reads_start_after_the_last_id() {
        assert_eq!(next_stream_id("1700000000000-0"), "1700000000000-1");
        assert_eq!(next_stream_id("5-18446744073709551615"), "6-0");
        assert_eq!(next_stream_id("0-0"), "0-1");
        assert_eq!(next_stream_id("garbage"), "-");
    }
}
