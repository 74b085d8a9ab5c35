//! Fleet mode against a real `redis-server` (Debian package, installed by
//! `.ci/install-test-deps`) that each test starts on a loopback port it picks, with its own temp
//! folder, and stops by PID: the store layer's script (shared totals, per-agent counts,
//! idempotent members, window trim, member cap, expiry), the one-sender claim, shared
//! decisions (in the store, and between two running agents: a silence or allow taken on one
//! applies on the other), and the agent side's buffer replay across a store killed and
//! restarted; a store with AUTH (password, ACL user) and one over TLS (a test CA made with
//! `openssl`); actions in fleet mode (each agent that saw a spread attacker runs its own block
//! script once, recorded by a script that appends its argv to a file per agent); the store's
//! state in `authwatch status` and the metrics, up and then killed.

use crate::harness::*;
use authwatch::config::{FleetConfig, StoreUrl};
use authwatch::fleet::{
    DecisionKind, FleetHandle, FleetHit, KeyKind, KeyTotal, Store, Windows,
    MAX_FLEET_MEMBERS_PER_KEY,
};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `redis-server` on 127.0.0.1, no persistence, stopped (SIGKILL, by PID) on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    /// `user:password@` (or `:password@`) for the test's own connections; empty without AUTH.
    login: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Redis {
    pub fn available() -> bool {
        Path::new("/usr/bin/redis-server").exists()
    }

    /// Start on a free port.
    pub fn start(dir: &Path) -> Redis {
        Redis::start_on(dir, free_port())
    }

    /// Start on `port` (used to restart a killed store at the same address).
    pub fn start_on(dir: &Path, port: u16) -> Redis {
        Redis::start_with(dir, port, &[], "")
    }

    /// Start on `port` with more `redis-server` arguments; `login` (`user:password@`) is what
    /// the test's own connections use.
    pub fn start_with(dir: &Path, port: u16, extra: &[&str], login: &str) -> Redis {
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        let r = Redis {
            child: Some(child),
            port,
            dir,
            login: login.to_string(),
        };
        wait_for("redis-server to answer PING", || {
            let c = redis::Client::open(r.url()).ok()?;
            let mut con = c.get_connection().ok()?;
            redis::cmd("PING").query::<String>(&mut con).ok()
        });
        r
    }

    pub fn url(&self) -> String {
        format!("redis://{}127.0.0.1:{}", self.login, self.port)
    }

    /// Kill the server (SIGKILL: a crash) and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A synchronous connection for checks made by the test itself.
    pub fn con(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(self.dir.join("redis.log")) {
                eprintln!("--- redis.log ---\n{log}");
            }
        }
        self.kill();
    }
}

fn cfg(url: &str, name: &str) -> FleetConfig {
    FleetConfig {
        url: StoreUrl(url.to_string()),
        name: name.to_string(),
        key_prefix: "awtest".to_string(),
        timeout: Duration::from_millis(100),
        buffer: 10_000,
        down_alert_after: std::time::Duration::from_secs(60),
    }
}

fn windows() -> Windows {
    Windows {
        ip: Duration::from_secs(600),
        subnet: Some(Duration::from_secs(600)),
        account: Some(Duration::from_secs(3600)),
    }
}

/// A hit from `ip` on `account` at log time `t` (s), line at `offset` of log `inode`.
fn hit(ip: &str, account: &str, t: i64, inode: u64, offset: u64) -> FleetHit {
    let ip: std::net::IpAddr = ip.parse().unwrap();
    FleetHit {
        time_ms: t * 1000,
        ip,
        subnet: Some(ipnet::IpNet::new(ip, 24).unwrap().trunc()),
        account: Some(account.to_string()),
        inode,
        offset,
        attempts: 1,
    }
}

fn total_of<'a>(ts: &'a [KeyTotal], kind: KeyKind, key: &str) -> &'a KeyTotal {
    ts.iter()
        .rev()
        .find(|t| t.kind == kind && t.key == key)
        .unwrap_or_else(|| panic!("no total for {kind:?} {key} in {ts:?}"))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

macro_rules! need_redis {
    () => {
        if !Redis::available() {
            if std::env::var_os("CI").is_some() {
                panic!("redis-server missing: run .ci/install-test-deps");
            }
            eprintln!("skipped: redis-server not installed");
            return;
        }
    };
}

#[test]
fn three_agents_sum_their_hits_and_counts_per_agent() {
    need_redis!();
    let dir = tempdir();
    let r = Redis::start(dir.path());
    rt().block_on(async {
        let stores: Vec<Store> = ["mx1", "mx2", "mx3"]
            .iter()
            .map(|n| Store::open(&cfg(&r.url(), n)).unwrap())
            .collect();
        let t0 = 1_800_000_000;
        let mut last = Vec::new();
        for (i, s) in stores.iter().enumerate() {
            // Two failures per host, each host with its own log (inode) and offsets.
            let hits = [
                hit("198.51.100.7", "alice", t0 + i as i64, 100 + i as u64, 0),
                hit(
                    "198.51.100.7",
                    "bob",
                    t0 + 10 + i as i64,
                    100 + i as u64,
                    120,
                ),
            ];
            last = s.add(&hits, &windows()).await.unwrap();
        }
        let ip = total_of(&last, KeyKind::Ip, "198.51.100.7");
        assert_eq!(ip.total, 6, "{ip:?}");
        assert_eq!(ip.distinct, 2, "accounts alice and bob");
        assert_eq!(
            ip.per_host,
            vec![
                ("mx1".to_string(), 2),
                ("mx2".to_string(), 2),
                ("mx3".to_string(), 2)
            ]
        );
        let net = total_of(&last, KeyKind::Subnet, "198.51.100.0/24");
        assert_eq!((net.total, net.distinct), (6, 1));
        let acct = total_of(&last, KeyKind::Account, "alice");
        assert_eq!((acct.total, acct.distinct), (3, 1));
    });
}

#[test]
fn a_line_read_again_after_restart_counts_nothing_twice_regression() {
    need_redis!();
    let dir = tempdir();
    let r = Redis::start(dir.path());
    rt().block_on(async {
        let s = Store::open(&cfg(&r.url(), "mx1")).unwrap();
        let hits: Vec<FleetHit> = (0..4)
            .map(|k| hit("203.0.113.9", "root", 1_800_000_000 + k, 7, k as u64 * 90))
            .collect();
        let first = s.add(&hits, &windows()).await.unwrap();
        assert_eq!(total_of(&first, KeyKind::Ip, "203.0.113.9").total, 4);
        // The agent restarts from an older checkpoint and reads the same lines again.
        let again = s.add(&hits[1..], &windows()).await.unwrap();
        assert_eq!(total_of(&again, KeyKind::Ip, "203.0.113.9").total, 4);
        // The same place in another agent's log is another attempt.
        let other = Store::open(&cfg(&r.url(), "mx2")).unwrap();
        let t = other.add(&hits[..1], &windows()).await.unwrap();
        assert_eq!(total_of(&t, KeyKind::Ip, "203.0.113.9").total, 5);
    });
}

#[test]
fn windows_are_trimmed_capped_and_expire() {
    need_redis!();
    let dir = tempdir();
    let r = Redis::start(dir.path());
    rt().block_on(async {
        let s = Store::open(&cfg(&r.url(), "mx1")).unwrap();
        let t0 = 1_800_000_000;
        s.add(&[hit("192.0.2.1", "a", t0, 1, 0)], &windows())
            .await
            .unwrap();
        // 11 minutes later (window 10 minutes): the first hit has left the window.
        let t = s
            .add(&[hit("192.0.2.1", "a", t0 + 660, 1, 100)], &windows())
            .await
            .unwrap();
        assert_eq!(total_of(&t, KeyKind::Ip, "192.0.2.1").total, 1);
        // An attempt line standing for 3 attempts (Dovecot) counts 3.
        let mut h = hit("192.0.2.1", "a", t0 + 661, 1, 200);
        h.attempts = 3;
        let t = s.add(&[h], &windows()).await.unwrap();
        assert_eq!(total_of(&t, KeyKind::Ip, "192.0.2.1").total, 4);
        // The cap: more members than it keeps only the newest.
        let many: Vec<FleetHit> = (0..MAX_FLEET_MEMBERS_PER_KEY as u64 + 50)
            .map(|k| hit("192.0.2.2", "b", t0 + (k as i64 % 500), 2, k))
            .collect();
        let mut last = Vec::new();
        for chunk in many.chunks(authwatch::fleet::MAX_BATCH_HITS) {
            last = s.add(chunk, &windows()).await.unwrap();
        }
        assert_eq!(
            total_of(&last, KeyKind::Ip, "192.0.2.2").total,
            MAX_FLEET_MEMBERS_PER_KEY as u64
        );
        let mut con = r.con();
        let n: u64 = redis::cmd("ZCARD")
            .arg("awtest:w:ip:192.0.2.2")
            .query(&mut con)
            .unwrap();
        assert_eq!(n, MAX_FLEET_MEMBERS_PER_KEY as u64);
        // The per-agent and per-account sums kept beside the set follow what left it.
        let (total, agent, account): (u64, u64, u64) = redis::pipe()
            .hget("awtest:w:ip:192.0.2.2:h", ":total")
            .hget("awtest:w:ip:192.0.2.2:h", "mx1")
            .hget("awtest:w:ip:192.0.2.2:s", "b")
            .query(&mut con)
            .unwrap();
        let cap = MAX_FLEET_MEMBERS_PER_KEY as u64;
        assert_eq!((total, agent, account), (cap, cap, cap));
        let old: u64 = redis::cmd("HGET")
            .arg("awtest:w:ip:192.0.2.1:h")
            .arg(":total")
            .query(&mut con)
            .unwrap();
        assert_eq!(
            old, 4,
            "the hit that left the window was taken out of the sums"
        );
        let ttl: i64 = redis::cmd("PTTL")
            .arg("awtest:w:ip:192.0.2.2")
            .query(&mut con)
            .unwrap();
        assert!(ttl > 600_000 && ttl <= 660_000, "window + slack, got {ttl}");
        let ttl: i64 = redis::cmd("PTTL")
            .arg("awtest:w:acct:b")
            .query(&mut con)
            .unwrap();
        assert!(ttl > 3_600_000, "account window is 1h, got {ttl}");
    });
}

#[test]
fn hostile_account_text_stays_one_member_field() {
    need_redis!();
    let dir = tempdir();
    let r = Redis::start(dir.path());
    rt().block_on(async {
        let s = Store::open(&cfg(&r.url(), "mx1")).unwrap();
        let evil = "x:9:9:999999:y\r\n'); redis.call('FLUSHALL') --";
        let t = s
            .add(&[hit("192.0.2.3", evil, 1_800_000_000, 3, 0)], &windows())
            .await
            .unwrap();
        let ip = total_of(&t, KeyKind::Ip, "192.0.2.3");
        assert_eq!((ip.total, ip.distinct), (1, 1), "{ip:?}");
        assert_eq!(ip.per_host, vec![("mx1".to_string(), 1)]);
        assert_eq!(total_of(&t, KeyKind::Account, evil).total, 1);
    });
}

#[test]
fn one_agent_wins_the_claim_to_mail_an_incident() {
    need_redis!();
    let dir = tempdir();
    let r = Redis::start(dir.path());
    rt().block_on(async {
        let stores: Vec<Store> = ["mx1", "mx2", "mx3"]
            .iter()
            .map(|n| Store::open(&cfg(&r.url(), n)).unwrap())
            .collect();
        let cooldown = Duration::from_secs(3600);
        // The three claims run at once.
        let (a, b, c) = tokio::join!(
            stores[0].claim("ip_burst", "198.51.100.7", cooldown),
            stores[1].claim("ip_burst", "198.51.100.7", cooldown),
            stores[2].claim("ip_burst", "198.51.100.7", cooldown),
        );
        let results = [a, b, c];
        let winners: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.as_ref().unwrap().is_none())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        let winner = stores[winners[0]].name().to_string();
        for r in &results {
            if let Ok(Some(owner)) = r {
                assert_eq!(owner, &winner);
            }
        }
        // Another incident key is claimed on its own.
        assert_eq!(
            stores[1]
                .claim("ip_burst", "198.51.100.8", cooldown)
                .await
                .unwrap(),
            None
        );
        let mut con = r.con();
        let ttl: i64 = redis::cmd("PTTL")
            .arg("awtest:sent:ip_burst:198.51.100.7")
            .query(&mut con)
            .unwrap();
        assert!(
            ttl > 3_590_000 && ttl <= 3_600_000,
            "PX cooldown, got {ttl}"
        );
    });
}

#[test]
fn silences_and_allows_are_shared_and_end() {
    need_redis!();
    let dir = tempdir();
    let r = Redis::start(dir.path());
    rt().block_on(async {
        let a = Store::open(&cfg(&r.url(), "mx1")).unwrap();
        let b = Store::open(&cfg(&r.url(), "mx2")).unwrap();
        let now = 1_800_000_000_000;
        a.put_decision(DecisionKind::Silence, "ip:198.51.100.7", Some(now + 60_000))
            .await
            .unwrap();
        a.put_decision(DecisionKind::Silence, "ip:198.51.100.8", Some(now - 1))
            .await
            .unwrap();
        a.put_decision(DecisionKind::Allow, "net:192.0.2.0/24", None)
            .await
            .unwrap();
        let s = b.decisions(DecisionKind::Silence, now).await.unwrap();
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s["ip:198.51.100.7"], Some(now + 60_000));
        let al = b.decisions(DecisionKind::Allow, now).await.unwrap();
        assert_eq!(al["net:192.0.2.0/24"], None);
        let mut con = r.con();
        let n: u64 = redis::cmd("HLEN")
            .arg("awtest:silence")
            .query(&mut con)
            .unwrap();
        assert_eq!(n, 1, "the ended silence was removed");
        b.remove_decision(DecisionKind::Allow, "net:192.0.2.0/24")
            .await
            .unwrap();
        assert!(a
            .decisions(DecisionKind::Allow, now)
            .await
            .unwrap()
            .is_empty());
    });
}

#[test]
fn store_killed_and_restarted_loses_no_hit_and_counts_none_twice() {
    need_redis!();
    let dir = tempdir();
    let mut r = Redis::start(dir.path());
    let port = r.port;
    let rt = rt();
    let h = rt.block_on(async { FleetHandle::start(&cfg(&r.url(), "mx1"), windows()).unwrap() });
    let t0 = 1_800_000_000;
    for k in 0..3 {
        h.submit(hit("198.51.100.20", "alice", t0 + k, 5, k as u64 * 100));
    }
    assert!(rt.block_on(h.flush(Duration::from_secs(5))), "sent");
    let t = h.take_totals();
    assert_eq!(total_of(&t, KeyKind::Ip, "198.51.100.20").total, 3);
    assert!(h.available());

    r.kill();
    // Submitting never waits on the dead store.
    let start = std::time::Instant::now();
    for k in 3..8 {
        h.submit(hit("198.51.100.20", "alice", t0 + k, 5, k as u64 * 100));
    }
    assert!(start.elapsed() < Duration::from_millis(50));
    wait_for("the agent to see the store down", || {
        (!h.available()).then_some(())
    });
    assert!(h.down_for().is_some());
    assert_eq!(h.pending().0, 5, "hits kept for replay");
    assert!(h.take_totals().is_empty());

    // The store comes back empty (no persistence): the replay brings the buffered hits; the
    // three sent before are gone with the old store's memory, not counted twice.
    let _r2 = Redis::start_on(dir.path(), port);
    wait_for("the buffered hits to be replayed", || {
        (h.pending().0 == 0 && h.available()).then_some(())
    });
    let t = h.take_totals();
    assert_eq!(total_of(&t, KeyKind::Ip, "198.51.100.20").total, 5);
    assert_eq!(h.down_for(), None);
    // Submitting the pre-crash lines again (a restart that re-reads) adds them once.
    for k in 0..8 {
        h.submit(hit("198.51.100.20", "alice", t0 + k, 5, k as u64 * 100));
    }
    assert!(rt.block_on(h.flush(Duration::from_secs(5))));
    let t = h.take_totals();
    assert_eq!(total_of(&t, KeyKind::Ip, "198.51.100.20").total, 8);
    assert_eq!(h.pending().1, 0, "nothing dropped");
    h.stop();
}

/// The config of agent `name` of the three-agent fleet.
fn agent_yaml(dir: &Path, log: &Path, name: &str, sink: u16, redis: &str) -> String {
    format!(
        r#"state_dir: '{state}'
host: {{name: {name}.test, ip: 192.0.2.25}}
time_zone: UTC
sources:
  - path: '{log}'
    start: end
follow: {{poll_interval: 50ms}}
detect:
  per_ip: {{attempts: 5, window: 10m}}
  per_subnet: {{enabled: false}}
  per_account: {{enabled: false}}
alerts: {{cooldown: 1h}}
mail:
  from: "authwatch <authwatch@{name}.test>"
  to: [admin@example.test]
  smtp: {{host: 127.0.0.1, port: {sink}, tls: none, timeout: 10s}}
fleet: {{redis: '{redis}', name: {name}, key_prefix: aw3}}
"#,
        state = dir.join("state").display(),
        log = log.display(),
    )
}

/// Check an alert about `ip` from the fleet (`BLOCKED` or not): the subject counts the fleet total at the moment
/// it crossed the threshold (5, or 6 when the last two hits reached the store in one batch),
/// and the body lists each agent's attempts, adding up to it.
fn assert_fleet_alert(m: &Mail, ip: &str) {
    let subject = m.subject();
    let total: u64 = subject
        .strip_prefix("[authwatch] mx")
        .and_then(|s| s.split_once(&format!(".test: {ip} ")))
        .map(|(_, s)| s.strip_prefix("BLOCKED - ").unwrap_or(s))
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("subject: {subject}"));
    assert!((5..=6).contains(&total), "{subject}");
    assert!(subject.contains(" failed Exim logins in 10m"), "{subject}");
    let lines = per_host_lines(&m.body);
    let mut sum = 0;
    for (l, host) in lines.iter().zip(["mx1", "mx2", "mx3"]) {
        let n: u64 = l
            .strip_prefix(&format!("{host}: "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{l:?} in\n{}", m.body));
        assert!((1..=2).contains(&n), "{}", m.body);
        sum += n;
    }
    assert_eq!(lines.len(), 3, "{}", m.body);
    assert_eq!(sum, total, "{}", m.body);
}

fn per_host_lines(body: &str) -> Vec<String> {
    let Some(i) = body.find("Attempts per server in the fleet:\n") else {
        return Vec::new();
    };
    body[i..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn three_agents_alert_once_for_a_spread_attack_and_survive_a_store_restart() {
    need_redis!();
    let tmp = tempdir();
    let dir = tmp.path();
    let mut r = Redis::start(dir);
    let port = r.port;
    let sink = Sink::start(dir, &["--tls", "none"]);
    let mut agents = Vec::new();
    let mut logs = Vec::new();
    for name in ["mx1", "mx2", "mx3"] {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let log = LogWriter::new(d.join("mainlog"));
        log.append(&exim_noise(now_unix() - 60));
        let cfg = write_file(
            &d,
            "authwatch.yaml",
            &agent_yaml(&d, &log.path, name, sink.port, &r.url()),
        );
        let mut a = Agent::run(&cfg);
        a.wait_following(&log);
        agents.push(a);
        logs.push(log);
    }

    // Two failures on each host: 6 in the fleet, 2 on each (threshold 5).
    let t = now_unix() - 30;
    for log in &logs {
        log.append(&[
            exim_fail(t, "203.0.113.50", "alice"),
            exim_fail(t + 1, "203.0.113.50", "bob"),
        ]);
    }
    let mails = sink.wait_mails(1);
    let m = &mails[0].mail;
    assert_fleet_alert(m, "203.0.113.50");
    assert!(!m.body.contains("fleet store unavailable"), "{}", m.body);

    // Kill the store, spread a second attack while it is down (no host sees 5: no local
    // alert), then restart it: the buffered hits are replayed and make one alert.
    r.kill();
    let t = now_unix() - 20;
    for log in &logs {
        log.append(&[
            exim_fail(t, "203.0.113.60", "carol"),
            exim_fail(t + 1, "203.0.113.60", "dave"),
        ]);
    }
    for a in &agents {
        let a: &Agent = a;
        wait_for("each agent to notice the store is down", || {
            a.stderr_text()
                .contains("fleet store unavailable: detecting with local thresholds")
                .then_some(())
        });
    }
    let _r2 = Redis::start_on(dir, port);
    let mails = sink.wait_mails(2);
    let m = &mails[1].mail;
    assert_fleet_alert(m, "203.0.113.60");
    // No duplicate: the other agents lost the claims. A negative can only be shown by
    // waiting: several flush intervals and claim round trips (each well under 100 ms).
    std::thread::sleep(Duration::from_secs(3));
    let all = sink.mails();
    let subjects: Vec<&str> = all.iter().map(|m| m.mail.subject()).collect();
    assert_eq!(all.len(), 2, "{subjects:?}");
    for a in &mut agents {
        a.assert_running();
    }
}

/// An executable script in `dir` that appends its arguments (one line a call) to `out`.
fn argv_recorder(dir: &Path, name: &str, out: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\necho \"done $*\"\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// An agent of a fleet test with one block action whose calls are recorded in
/// `<name>/blocked` (its undo's in `<name>/unblocked`), following its own log.
struct ActingAgent {
    agent: Agent,
    log: LogWriter,
    cfg: PathBuf,
    blocked: PathBuf,
    unblocked: PathBuf,
}

impl ActingAgent {
    /// Start agent `name` in `dir/name` with the action `block {arg}` on alert kind `on`;
    /// `tweak` edits its YAML first.
    fn start(
        dir: &Path,
        name: &str,
        sink: &Sink,
        r: &Redis,
        arg: &str,
        on: &str,
        tweak: impl Fn(String) -> String,
    ) -> ActingAgent {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let log = LogWriter::new(d.join("mainlog"));
        log.append(&exim_noise(now_unix() - 60));
        let (blocked, unblocked) = (d.join("blocked"), d.join("unblocked"));
        let block = argv_recorder(&d, "block", &blocked);
        let unblock = argv_recorder(&d, "unblock", &unblocked);
        let yaml = format!(
            "{}actions:\n  - {{name: block, program: '{}', args: ['{arg}'], undo: ['{}', '--remove', '{arg}'], timeout: 5s, on: [{on}]}}\n",
            tweak(agent_yaml(&d, &log.path, name, sink.port, &r.url())),
            block.display(),
            unblock.display()
        );
        let cfg = write_file(&d, "authwatch.yaml", &yaml);
        let mut agent = Agent::run(&cfg);
        agent.wait_following(&log);
        ActingAgent {
            agent,
            log,
            cfg,
            blocked,
            unblocked,
        }
    }
}

fn lines_of(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The `crossed` stream is shared: an entry that says this agent counted attempts from an
/// address its own detector never saw (written by anyone with access to the store) makes it
/// block nothing; an attack it did see is still blocked.
#[test]
fn a_forged_crossed_entry_blocks_nothing_on_an_agent_that_never_saw_the_address() {
    need_redis!();
    let tmp = tempdir();
    let dir = tmp.path();
    let r = Redis::start(dir);
    let sink = Sink::start(dir, &["--tls", "none"]);
    let n = ActingAgent::start(dir, "mx1", &sink, &r, "{ip}", "ip_burst", |y| y);
    let (mut agent, log, calls) = (n.agent, n.log, n.blocked);
    // The agent reads only entries newer than its start point (taken at its first read of
    // the stream): the forged entry is written again until the agent has weighed one.
    let forged = "198.51.100.201";
    let mut con = r.con();
    wait_for("the agent to weigh a forged crossed entry", || {
        let _: String = redis::cmd("XADD")
            .arg("aw3:crossed")
            .arg("*")
            .arg(&[
                "by", "mx9", "kind", "ip", "key", forged, "total", "50", "distinct", "1", "h:mx1",
                "25", "h:mx9", "25",
            ])
            .query(&mut con)
            .ok()?;
        agent
            .stderr_text()
            .contains("does not hold; no actions")
            .then_some(())
    });
    assert!(lines_of(&calls).is_empty(), "{:?}", lines_of(&calls));
    // A real attack on this agent: blocked, and the only address ever blocked.
    let ip = "203.0.113.72";
    let t = now_unix() - 10;
    let burst: Vec<String> = (0..5).map(|k| exim_fail(t + k, ip, "alice")).collect();
    log.append(&burst);
    let got = wait_for("the block action for the real attacker", || {
        let l = lines_of(&calls);
        (!l.is_empty()).then_some(l)
    });
    assert_eq!(got, vec![ip.to_string()], "{}", agent.stderr_text());
    let mails = sink.wait_mails(1);
    assert_eq!(mails[0].mail.attacking_ip(), ip);
    agent.assert_running();
}

/// Issue 16: actions ran only for local alerts (made while the store was down), never for
/// fleet alerts, so an attacker spread over the fleet was blocked nowhere. Each server that saw
/// it now runs its own block action once, the one mail shows its sender's block, and a second
/// burst within the cooldown runs nothing more; `authwatch incidents` on each says what it did
/// and `authwatch unblock` runs the undo.
#[test]
fn three_agents_each_block_a_spread_attacker_once_and_one_mail_shows_the_block() {
    need_redis!();
    let tmp = tempdir();
    let dir = tmp.path();
    let r = Redis::start(dir);
    let sink = Sink::start(dir, &["--tls", "none"]);
    let (mut agents, mut logs, mut cfgs, mut calls, mut undos) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for name in ["mx1", "mx2", "mx3"] {
        let n = ActingAgent::start(dir, name, &sink, &r, "{ip}", "ip_burst", |y| y);
        agents.push(n.agent);
        logs.push(n.log);
        cfgs.push(n.cfg);
        calls.push(n.blocked);
        undos.push(n.unblocked);
    }

    // Two failures on each host: 6 in the fleet, 2 on each (threshold 5), one host after the
    // other: mx1 and mx2 last saw fleet totals of 2 and 4; only mx3's crosses the threshold,
    // and the others learn it from the store (its `crossed` stream).
    let ip = "203.0.113.55";
    let t = now_unix() - 30;
    let in_store = |n: u64| {
        wait_for(&format!("{n} attempts in the store"), || {
            let got: u64 = redis::cmd("ZCARD")
                .arg(format!("aw3:w:ip:{ip}"))
                .query(&mut r.con())
                .ok()?;
            (got == n).then_some(())
        })
    };
    for (k, log) in logs.iter().enumerate() {
        log.append(&[exim_fail(t, ip, "alice"), exim_fail(t + 1, ip, "bob")]);
        in_store(2 * (k as u64 + 1));
    }
    for (c, a) in calls.iter().zip(&agents) {
        let got = wait_for("each agent to run its block action", || {
            let l = lines_of(c);
            (!l.is_empty()).then_some(l)
        });
        assert_eq!(got, vec![ip.to_string()], "{}", a.stderr_text());
    }
    let mails = sink.wait_mails(1);
    let m = &mails[0].mail;
    assert_fleet_alert(m, ip);
    assert!(m.body.contains("Status: BLOCKED by block\n"), "{}", m.body);
    assert!(
        m.subject().contains(&format!(": {ip} BLOCKED - ")),
        "{}",
        m.subject()
    );
    let sender = "mx3";
    assert!(
        m.subject().starts_with("[authwatch] mx3.test: "),
        "{}",
        m.subject()
    );
    assert!(
        m.body.contains(
            "The other servers that saw this attacker (mx1, mx2) run their own configured actions"
        ),
        "{}",
        m.body
    );

    // A second burst within the cooldown: counted by the fleet (12 lines in the store), and
    // nothing more runs or is mailed. A negative can only be shown by waiting: several
    // crossed-stream reads and claim round trips.
    let t = now_unix() - 20;
    for log in &logs {
        log.append(&[exim_fail(t, ip, "carol"), exim_fail(t + 1, ip, "dave")]);
    }
    in_store(12);
    std::thread::sleep(Duration::from_secs(2));
    for (c, name) in calls.iter().zip(["mx1", "mx2", "mx3"]) {
        assert_eq!(
            lines_of(c).len(),
            1,
            "{name} ran its action once: {:?}",
            lines_of(c)
        );
    }
    assert_eq!(sink.mails().len(), 1, "{:?}", subjects(&sink));

    // Each agent's incident says what its action did, and who mailed.
    for (cfg, name) in cfgs.iter().zip(["mx1", "mx2", "mx3"]) {
        let out = control_ok(cfg, &["incidents"]);
        assert!(out.contains(&format!("  {ip} (IP burst)")), "{name}: {out}");
        assert!(out.contains("block: exit 0"), "{name}: {out}");
        if name == sender {
            assert!(out.contains("; mailed\n"), "{name}: {out}");
        } else {
            assert!(
                out.contains(&format!("mailed by {sender} (fleet)")),
                "{name}: {out}"
            );
        }
    }
    // `authwatch unblock` on a server that only ran its action runs its undo.
    control_ok(&cfgs[0], &["unblock", ip]);
    assert_eq!(lines_of(&undos[0]), vec![format!("--remove {ip}")]);
    for a in &mut agents {
        a.assert_running();
    }
}

#[test]
fn store_unreachable_from_the_start_alerts_locally_and_says_so() {
    let tmp = tempdir();
    let dir = tmp.path();
    let sink = Sink::start(dir, &["--tls", "none"]);
    let log = LogWriter::new(dir.join("mainlog"));
    log.append(&exim_noise(now_unix() - 60));
    // Nothing listens on this port (taken and released by the test): connections are refused.
    let dead = format!("redis://127.0.0.1:{}", free_port());
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &agent_yaml(dir, &log.path, "mx1", sink.port, &dead),
    );
    let mut agent = Agent::run(&cfg);
    agent.wait_following(&log);
    let t = now_unix() - 10;
    let burst: Vec<String> = (0..5)
        .map(|k| exim_fail(t + k, "203.0.113.70", "alice"))
        .collect();
    log.append(&burst);
    let mails = sink.wait_mails(1);
    let m = &mails[0].mail;
    assert!(
        m.subject()
            .starts_with("[authwatch] mx1.test: 203.0.113.70 5 failed Exim logins in 10m"),
        "{}",
        m.subject()
    );
    assert!(
        m.body.contains("fleet store unavailable"),
        "the alert says it was counted locally:\n{}",
        m.body
    );
    assert!(per_host_lines(&m.body).is_empty(), "{}", m.body);
    agent.assert_running();
}

/// The same for a subnet spread over the fleet: 2 addresses of one /24, one failure each on each
/// host (6 in the fleet, 3 per address: no IP alert); each host runs its subnet action once on
/// the network.
#[test]
fn three_agents_each_block_a_spread_subnet_once() {
    need_redis!();
    let tmp = tempdir();
    let dir = tmp.path();
    let r = Redis::start(dir);
    let sink = Sink::start(dir, &["--tls", "none"]);
    let (mut agents, mut logs, mut calls) = (Vec::new(), Vec::new(), Vec::new());
    for name in ["mx1", "mx2", "mx3"] {
        let n = ActingAgent::start(dir, name, &sink, &r, "{network}", "subnet_burst", |y| {
            let y = y.replace(
                "per_subnet: {enabled: false}",
                "per_subnet: {attempts: 6, window: 10m, ipv4_prefix: 24, min_addresses: 2}",
            );
            assert!(y.contains("ipv4_prefix: 24"), "{y}");
            y
        });
        agents.push(n.agent);
        logs.push(n.log);
        calls.push(n.blocked);
    }
    let net = "198.51.100.0/24";
    let t = now_unix() - 30;
    for (k, log) in logs.iter().enumerate() {
        log.append(&[
            exim_fail(t, "198.51.100.1", "alice"),
            exim_fail(t + 1, "198.51.100.2", "bob"),
        ]);
        let want = 2 * (k as u64 + 1);
        wait_for(
            &format!("{want} attempts of the subnet in the store"),
            || {
                let got: u64 = redis::cmd("ZCARD")
                    .arg(format!("aw3:w:net:{net}"))
                    .query(&mut r.con())
                    .ok()?;
                (got == want).then_some(())
            },
        );
    }
    for (c, a) in calls.iter().zip(&agents) {
        let got = wait_for("each agent to run its subnet action", || {
            let l = lines_of(c);
            (!l.is_empty()).then_some(l)
        });
        assert_eq!(got, vec![net.to_string()], "{}", a.stderr_text());
    }
    let mails = sink.wait_mails(1);
    let m = &mails[0].mail;
    assert!(
        m.subject().starts_with("[authwatch] mx3.test: "),
        "{}",
        m.subject()
    );
    assert!(m.subject().contains(net), "{}", m.subject());
    assert!(m.body.contains("BLOCKED by block"), "{}", m.body);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(sink.mails().len(), 1, "{:?}", subjects(&sink));
    for c in &calls {
        assert_eq!(lines_of(c).len(), 1);
    }
    for a in &mut agents {
        a.assert_running();
    }
}

/// A local alert held while the fleet decided, and sent because the store failed meanwhile,
/// went out without running its actions (an unreachable store at start is such a case).
#[test]
fn a_held_alert_released_because_the_store_failed_runs_its_actions_regression() {
    let tmp = tempdir();
    let dir = tmp.path();
    let sink = Sink::start(dir, &["--tls", "none"]);
    let log = LogWriter::new(dir.join("mainlog"));
    log.append(&exim_noise(now_unix() - 60));
    let dead = format!("redis://127.0.0.1:{}", free_port());
    let calls = dir.join("blocked");
    let block = argv_recorder(dir, "block", &calls);
    let yaml = format!(
        "{}actions:\n  - {{name: block, program: '{}', args: ['{{ip}}'], timeout: 5s, on: [ip_burst]}}\n",
        agent_yaml(dir, &log.path, "mx1", sink.port, &dead),
        block.display()
    );
    let cfg = write_file(dir, "authwatch.yaml", &yaml);
    let mut agent = Agent::run(&cfg);
    agent.wait_following(&log);
    let t = now_unix() - 10;
    let burst: Vec<String> = (0..5)
        .map(|k| exim_fail(t + k, "203.0.113.72", "alice"))
        .collect();
    log.append(&burst);
    let mails = sink.wait_mails(1);
    let m = &mails[0].mail;
    assert!(m.body.contains("fleet store unavailable"), "{}", m.body);
    assert_eq!(
        m.body.matches("fleet store unavailable").count(),
        1,
        "the note once:\n{}",
        m.body
    );
    assert!(m.body.contains("Status: BLOCKED by block\n"), "{}", m.body);
    assert_eq!(lines_of(&calls), vec!["203.0.113.72".to_string()]);
    agent.assert_running();
}

#[test]
fn a_store_down_longer_than_down_alert_after_mails_once_and_again_when_back() {
    let tmp = tempdir();
    let dir = tmp.path();
    let sink = Sink::start(dir, &["--tls", "none"]);
    let log = LogWriter::new(dir.join("mainlog"));
    log.append(&exim_noise(now_unix() - 60));
    // The store's port is free at the start (connections refused) and a redis-server is
    // started on it later: one outage, from the agent's start to the store's.
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let yaml = agent_yaml(dir, &log.path, "mx1", sink.port, &url)
        .replace("key_prefix: aw3}", "key_prefix: aw3, down_alert_after: 1s}");
    assert!(yaml.contains("down_alert_after: 1s"), "{yaml}");
    let cfg = write_file(dir, "authwatch.yaml", &yaml);
    let mut agent = Agent::run(&cfg);
    agent.wait_following(&log);
    let mails = sink.wait_mails(1);
    let down = &mails[0].mail;
    let want = format!("authwatch health on mx1.test: fleet store {url} unavailable");
    assert!(down.subject().contains(&want), "{}", down.subject());
    assert!(
        down.body.contains("hits waiting to be replayed"),
        "{}",
        down.body
    );
    wait_log(&agent, "longer than fleet.down_alert_after", 1);

    let _store = Redis::start_on(dir, port);
    let mails = sink.wait_mails(2);
    let back = &mails[1].mail;
    let want = format!("authwatch health on mx1.test: fleet store {url} available again");
    assert!(back.subject().contains(&want), "{}", back.subject());
    // Once per outage: the fleet answers again, so an attack is decided by the fleet total
    // and its alert is the next mail, with no further health mail in between.
    wait_log(&agent, "fleet store available again", 1);
    let t = now_unix() - 10;
    let burst: Vec<String> = (0..5)
        .map(|k| exim_fail(t + k, "203.0.113.71", "alice"))
        .collect();
    log.append(&burst);
    let mails = sink.wait_mails(3);
    assert_eq!(mails.len(), 3, "{:?}", subjects(&sink));
    let alert = &mails[2].mail;
    assert_eq!(alert.attacking_ip(), "203.0.113.71", "{}", alert.subject());
    assert!(
        !alert.body.contains("fleet store unavailable"),
        "counted by the fleet, not locally:\n{}",
        alert.body
    );
    assert_eq!(
        agent
            .stderr_text()
            .matches("longer than fleet.down_alert_after")
            .count(),
        1,
        "one outage, one error"
    );
    agent.assert_running();
}

/// A SIGHUP that changes the `fleet:` section is refused with a reason (it needs a restart)
/// and the running fleet settings go on; one that leaves it alone reloads.
#[test]
fn a_reload_that_changes_the_fleet_section_is_refused_and_says_why() {
    need_redis!();
    let tmp = tempdir();
    let dir = tmp.path();
    let r = Redis::start(dir);
    let sink = Sink::start(dir, &["--tls", "none"]);
    let log = LogWriter::new(dir.join("mainlog"));
    log.append(&exim_noise(now_unix() - 60));
    let yaml = agent_yaml(dir, &log.path, "mx1", sink.port, &r.url());
    let cfg = write_file(dir, "authwatch.yaml", &yaml);
    let mut agent = Agent::run(&cfg);
    agent.wait_following(&log);
    let hup = |a: &Agent| {
        let st = Command::new("kill")
            .args(["-HUP", &a.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    };
    std::fs::write(&cfg, yaml.replace("key_prefix: aw3", "key_prefix: other")).unwrap();
    hup(&agent);
    wait_log(
        &agent,
        "the fleet section changed: restart authwatch to apply it",
        1,
    );
    // The running prefix goes on: an attack is counted under aw3.
    let ip = "203.0.113.73";
    let t = now_unix() - 10;
    log.append(
        &(0..5)
            .map(|k| exim_fail(t + k, ip, "alice"))
            .collect::<Vec<_>>(),
    );
    let mails = sink.wait_mails(1);
    assert_fleet_alert_single(&mails[0].mail, ip);
    let n: u64 = redis::cmd("ZCARD")
        .arg(format!("aw3:w:ip:{ip}"))
        .query(&mut r.con())
        .unwrap();
    assert_eq!(n, 5);
    // Another change with the fleet section as it runs: reloaded.
    std::fs::write(&cfg, yaml.replace("cooldown: 1h", "cooldown: 2h")).unwrap();
    hup(&agent);
    wait_log(&agent, "configuration reloaded", 1);
    agent.assert_running();
}

/// The mail whose Subject names `ip`.
fn mail_about<'a>(mails: &'a [SinkMail], ip: &str) -> &'a Mail {
    mails
        .iter()
        .map(|m| &m.mail)
        .find(|m| m.subject().contains(&format!(" {ip} ")))
        .unwrap_or_else(|| panic!("no mail about {ip}"))
}

/// A fleet alert about `ip` from a one-agent fleet (5 attempts, all on mx1).
fn assert_fleet_alert_single(m: &Mail, ip: &str) {
    assert_eq!(m.attacking_ip(), ip, "{}", m.subject());
    assert_eq!(
        per_host_lines(&m.body),
        vec!["mx1: 5".to_string()],
        "{}",
        m.body
    );
}

/// `authwatch ARGS -c CFG` to completion; panics unless it exits 0.
fn control_ok(cfg: &Path, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-c", cfg.to_str().expect("utf-8 path")]);
    let (code, out, err) = run_to_end(&all, cfg.parent().expect("config in a folder"));
    assert_eq!(code, Some(0), "authwatch {args:?}: {out}{err}");
    out
}

/// Wait until `a`'s log holds `needle` at least `n` times.
fn wait_log(a: &Agent, needle: &str, n: usize) {
    wait_for(&format!("{n}× {needle:?} in the agent's log"), || {
        (a.stderr_text().matches(needle).count() >= n).then_some(())
    });
}

fn subjects(sink: &Sink) -> Vec<String> {
    sink.mails()
        .iter()
        .map(|m| m.mail.subject().to_string())
        .collect()
}

#[test]
fn silences_and_allows_taken_on_one_agent_apply_on_the_other() {
    use redis::Commands;
    need_redis!();
    let tmp = tempdir();
    let dir = tmp.path();
    let r = Redis::start(dir);
    let sink = Sink::start(dir, &["--tls", "none"]);
    let mut agents = Vec::new();
    let mut logs = Vec::new();
    let mut cfgs = Vec::new();
    for name in ["mx1", "mx2"] {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let log = LogWriter::new(d.join("mainlog"));
        log.append(&exim_noise(now_unix() - 60));
        let cfg = write_file(
            &d,
            "authwatch.yaml",
            &agent_yaml(&d, &log.path, name, sink.port, &r.url()),
        );
        let mut a = Agent::run(&cfg);
        a.wait_following(&log);
        agents.push(a);
        logs.push(log);
        cfgs.push(cfg);
    }

    // Silenced on mx1: mx2 learns it from the store, and whoever wins the claim sends nothing.
    let out = control_ok(&cfgs[0], &["silence", "203.0.113.80", "--for", "1h"]);
    assert!(out.contains("applied now"), "{out}");
    wait_log(&agents[1], "fleet decisions merged", 1);
    assert!(
        r.con()
            .hexists::<_, _, bool>("aw3:silence", "203.0.113.80")
            .unwrap(),
        "the silence is in the store"
    );
    let t = now_unix() - 30;
    for log in &logs {
        // 3 + 3 in the fleet for each address: over the threshold (5), under it on each host.
        let mut lines = Vec::new();
        for k in 0..3 {
            lines.push(exim_fail(t + k, "203.0.113.80", "alice"));
            lines.push(exim_fail(t + k, "203.0.113.81", "alice"));
        }
        log.append(&lines);
    }
    // The address that is not silenced alerts: its burst went through the same path.
    let mails = sink.wait_mails(1);
    assert!(
        mails[0].mail.subject().contains(" 203.0.113.81 "),
        "{}",
        mails[0].mail.subject()
    );
    // A negative can only be shown by waiting: several claim round trips and mail retries.
    std::thread::sleep(Duration::from_secs(3));
    let all = subjects(&sink);
    assert_eq!(all.len(), 1, "no mail about the silenced address: {all:?}");

    // Allowed on mx2: mx1 stops counting the address (5 lines there alone would alert).
    let merged = agents[0]
        .stderr_text()
        .matches("fleet decisions merged")
        .count();
    control_ok(&cfgs[1], &["allow", "203.0.113.90"]);
    wait_log(&agents[0], "fleet decisions merged", merged + 1);
    let t = now_unix() - 20;
    let mut lines: Vec<String> = (0..5)
        .map(|k| exim_fail(t + k, "203.0.113.90", "bob"))
        .collect();
    lines.extend((0..5).map(|k| exim_fail(t + k, "203.0.113.91", "bob")));
    logs[0].append(&lines);
    let mails = sink.wait_mails(2);
    assert!(
        mails[1].mail.subject().contains(" 203.0.113.91 "),
        "{}",
        mails[1].mail.subject()
    );
    std::thread::sleep(Duration::from_secs(3));
    let all = subjects(&sink);
    assert_eq!(all.len(), 2, "no mail about the allowed address: {all:?}");
    assert!(
        agents[0]
            .stderr_text()
            .contains("allowed by `authwatch allow`; not counted"),
        "mx1 did not count the allowed address"
    );

    // Lifted on mx2 (which had the silence from the store): lifted on mx1 too.
    control_ok(&cfgs[1], &["unsilence", "203.0.113.80"]);
    wait_log(&agents[0], "lifted on another agent", 1);
    for a in &mut agents {
        a.assert_running();
    }
}

/// `redis-server` arguments: the default user needs `PASSWORD`, and the ACL user `fleet`
/// (password `fleetpw`) may use only authwatch's keys, as the README advises.
const AUTH_ARGS: &[&str] = &[
    "--requirepass",
    "s3cret-default",
    // One config line, one argument per word (as in redis.conf).
    "--user",
    "fleet",
    "on",
    ">fleetpw",
    "~awtest:*",
    "~aw3:*",
    "+@all",
    "-@dangerous",
];

#[test]
fn store_with_auth_takes_the_password_and_an_acl_user_and_refuses_a_wrong_one() {
    need_redis!();
    let dir = tempdir();
    let r = Redis::start_with(dir.path(), free_port(), AUTH_ARGS, ":s3cret-default@");
    let at = |login: &str| format!("redis://{login}127.0.0.1:{}", r.port);
    rt().block_on(async {
        let t0 = 1_800_000_000;
        let old = Store::open(&cfg(&at(":s3cret-default@"), "mx1")).unwrap();
        old.add(&[hit("198.51.100.30", "alice", t0, 1, 0)], &windows())
            .await
            .expect("requirepass login");
        let acl = Store::open(&cfg(&at("fleet:fleetpw@"), "mx2")).unwrap();
        let t = acl
            .add(&[hit("198.51.100.30", "alice", t0 + 1, 2, 0)], &windows())
            .await
            .expect("ACL user login");
        assert_eq!(total_of(&t, KeyKind::Ip, "198.51.100.30").total, 2);
        assert_eq!(
            acl.claim("ip", "198.51.100.30", Duration::from_secs(60))
                .await
                .unwrap(),
            None
        );
        acl.put_decision(DecisionKind::Allow, "192.0.2.0/24", None)
            .await
            .expect("the ACL user writes the decisions");

        for (login, what) in [
            ("fleet:wrongpw@", "wrong password"),
            (":wrongpw@", "wrong default password"),
            ("", "no password"),
        ] {
            let s = Store::open(&cfg(&at(login), "mx3")).unwrap();
            let e = s.ping().await.expect_err(what);
            let text = authwatch::fleet::describe_error(&e);
            assert!(
                text.contains("the store refused the login"),
                "{what}: {text} ({:?} {:?})",
                e.kind(),
                e.code()
            );
            assert!(!text.contains("wrongpw"), "{text}");
        }
        // The ACL user may not touch other keys: named as such.
        let mut con = redis::Client::open(at("fleet:fleetpw@"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let e = redis::cmd("SET")
            .arg("other:key")
            .arg(1)
            .query_async::<()>(&mut con)
            .await
            .expect_err("outside ~aw*");
        assert!(
            authwatch::fleet::describe_error(&e).contains("ACL user may not"),
            "{e}"
        );
    });
}

#[test]
fn agent_logs_in_with_an_acl_user_and_a_wrong_password_is_a_clear_masked_error() {
    need_redis!();
    let tmp = tempdir();
    let dir = tmp.path();
    let r = Redis::start_with(dir, free_port(), AUTH_ARGS, ":s3cret-default@");
    let sink = Sink::start(dir, &["--tls", "none"]);
    let mut agents = Vec::new();
    let mut logs = Vec::new();
    for (name, login) in [("mx1", "fleet:fleetpw@"), ("mx2", "fleet:wrongpw@")] {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let log = LogWriter::new(d.join("mainlog"));
        log.append(&exim_noise(now_unix() - 60));
        let url = format!("redis://{login}127.0.0.1:{}", r.port);
        let cfg = write_file(
            &d,
            "authwatch.yaml",
            &agent_yaml(&d, &log.path, name, sink.port, &url),
        );
        let mut a = Agent::run(&cfg);
        a.wait_following(&log);
        agents.push(a);
        logs.push(log);
    }
    let bad = &agents[1];
    wait_for("mx2 to report the refused login", || {
        bad.stderr_text()
            .contains("fleet store unavailable: detecting with local thresholds")
            .then_some(())
    });
    let err = bad.stderr_text();
    let line = err
        .lines()
        .find(|l| l.contains("fleet store unavailable: detecting"))
        .unwrap();
    assert!(
        line.contains(&format!("redis://fleet:MASKED@127.0.0.1:{}", r.port)),
        "the line names the store: {line}"
    );
    assert!(
        line.contains("the store refused the login: check the user and password in fleet.redis"),
        "{line}"
    );
    assert!(!err.contains("wrongpw"), "the password is never logged");

    let t = now_unix() - 20;
    for (log, ip) in logs.iter().zip(["203.0.113.100", "203.0.113.101"]) {
        let burst: Vec<String> = (0..5).map(|k| exim_fail(t + k, ip, "alice")).collect();
        log.append(&burst);
    }
    let mails = sink.wait_mails(2);
    let by_ip = |ip: &str| mail_about(&mails, ip);
    // mx1 logged in as the ACL user: a fleet alert.
    let m = by_ip("203.0.113.100");
    assert_fleet_alert_single(m, "203.0.113.100");
    assert!(!m.body.contains("fleet store unavailable"), "{}", m.body);
    // mx2 was refused: it alerts on its own, and says so.
    let m = by_ip("203.0.113.101");
    assert!(m.body.contains("fleet store unavailable"), "{}", m.body);
    assert!(!m.body.contains("wrongpw"), "{}", m.body);
    for a in &mut agents {
        a.assert_running();
    }
}

/// (hits sent, hits buffered) from the `Fleet:` line of `authwatch status`.
fn fleet_counts(status: &str) -> Option<(u64, u64)> {
    let line = status.lines().find(|l| l.starts_with("Fleet: "))?;
    let number_before = |what: &str| -> Option<u64> {
        let head = &line[..line.find(what)?];
        head.rsplit(' ').next()?.parse().ok()
    };
    Some((
        number_before(" hits sent")?,
        number_before(" buffered for replay")?,
    ))
}

/// The fleet store in `authwatch status` and the metrics (issue 16), with a store that needs a
/// password: available with the hits sent after an attack; after the store is killed,
/// unavailable with the hits since then buffered for replay, and `status` exits 1. The password
/// shows nowhere (status text, `status.json`, metrics).
#[test]
fn status_and_metrics_show_the_fleet_store_up_then_down_with_buffered_hits() {
    need_redis!();
    let tmp = tempdir();
    let dir = tmp.path();
    let mut r = Redis::start_with(dir, free_port(), AUTH_ARGS, ":s3cret-default@");
    let sink = Sink::start(dir, &["--tls", "none"]);
    let log = LogWriter::new(dir.join("mainlog"));
    log.append(&exim_noise(now_unix() - 60));
    let url = format!("redis://fleet:fleetpw@127.0.0.1:{}", r.port);
    let metrics_port = free_port();
    let yaml = agent_yaml(dir, &log.path, "mx1", sink.port, &url).replace(
        "follow: {poll_interval: 50ms}",
        &format!(
            "follow: {{poll_interval: 50ms, checkpoint_interval: 100ms}}\nmetrics: {{listen: '127.0.0.1:{metrics_port}'}}"
        ),
    );
    assert!(yaml.contains("checkpoint_interval"), "{yaml}");
    let cfg = write_file(dir, "authwatch.yaml", &yaml);
    let mut agent = Agent::run(&cfg);
    agent.wait_following(&log);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let status = || {
        let (code, out, err) = run_to_end(&["status", "--config", cfg.to_str().unwrap()], dir);
        (code, format!("{out}{err}"))
    };
    let masked = format!("redis://fleet:MASKED@127.0.0.1:{}", r.port);
    let no_password = |what: &str, text: &str| {
        assert!(
            !text.contains("fleetpw") && !text.contains("s3cret"),
            "the password in {what}:\n{text}"
        );
    };

    let t = now_unix() - 20;
    let burst: Vec<String> = (0..5)
        .map(|k| exim_fail(t + k, "203.0.113.120", "alice"))
        .collect();
    log.append(&burst);
    // The alert: the fleet total crossed, so the 5 hits reached the store (with the lines the
    // agent read before, when they were failures).
    sink.wait_mails(1);
    let (code, text, sent) = wait_for("status: store available, the hits sent", || {
        let (code, text) = status();
        let (sent, buffered) = fleet_counts(&text)?;
        (sent >= 5 && buffered == 0).then_some((code, text, sent))
    });
    assert!(
        text.contains(&format!(
            "Fleet: OK  {masked} as mx1, available, {sent} hits sent, 0 buffered for replay\n"
        )),
        "{text}"
    );
    assert_eq!(code, Some(0), "{text}");
    no_password("status", &text);
    let body = wait_for("metrics: the hits sent", || {
        let body = crate::metrics::scrape(addr);
        let m = crate::metrics::samples(&body);
        (m.get("authwatch_fleet_hits_sent_total") == Some(&(sent as f64))).then_some(body)
    });
    let m = crate::metrics::samples(&body);
    assert_eq!(m["authwatch_fleet_store_up"], 1.0, "{body}");
    assert_eq!(m["authwatch_fleet_buffered_hits"], 0.0, "{body}");
    assert_eq!(m["authwatch_fleet_dropped_hits_total"], 0.0, "{body}");
    no_password("the metrics", &body);

    // The store dies; failures go on: they wait in the buffer.
    r.kill();
    let t = now_unix() - 10;
    let more: Vec<String> = (0..3)
        .map(|k| exim_fail(t + k, "203.0.113.121", "bob"))
        .collect();
    log.append(&more);
    let (code, text) = wait_for("status: store unavailable, the 3 new hits buffered", || {
        let (code, text) = status();
        (text.contains("Fleet: FAIL") && fleet_counts(&text)? == (sent, 3)).then_some((code, text))
    });
    assert!(
        text.contains(&format!(
            "Fleet: FAIL  {masked} as mx1, unavailable, down for "
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(", {sent} hits sent, 3 buffered for replay\n")),
        "{text}"
    );
    assert!(
        text.contains("own thresholds until the store answers"),
        "{text}"
    );
    assert_eq!(code, Some(1), "a store down is unhealthy:\n{text}");
    no_password("status", &text);
    let json = std::fs::read_to_string(dir.join("state/status.json")).unwrap();
    let st: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        st["fleet"]["store"].as_str(),
        Some(masked.as_str()),
        "{json}"
    );
    assert_eq!(st["fleet"]["name"].as_str(), Some("mx1"), "{json}");
    assert_eq!(st["fleet"]["available"].as_bool(), Some(false), "{json}");
    no_password("status.json", &json);
    let body = wait_for("metrics: store down, 3 hits buffered", || {
        let body = crate::metrics::scrape(addr);
        let m = crate::metrics::samples(&body);
        (m.get("authwatch_fleet_store_up") == Some(&0.0)
            && m.get("authwatch_fleet_buffered_hits") == Some(&3.0))
        .then_some(body)
    });
    let m = crate::metrics::samples(&body);
    assert_eq!(m["authwatch_fleet_hits_sent_total"], sent as f64, "{body}");
    no_password("the metrics", &body);
    agent.assert_running();
}

/// Make a test CA and a server certificate for 127.0.0.1 with `openssl` in `dir`: (CA file,
/// certificate, key).
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=authwatch test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    (dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key"))
}

/// `authwatch run` with one more environment variable (the harness's `Agent` takes none),
/// killed (by PID) on drop; its stderr goes to `stderr`.
struct EnvAgent {
    child: Child,
    stderr: PathBuf,
}

impl EnvAgent {
    fn run(cfg: &Path, env: Option<(&str, &Path)>) -> EnvAgent {
        let dir = cfg.parent().unwrap();
        let stderr = dir.join("agent.stderr");
        let mut c = Command::new(bin());
        c.args([
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--log-level",
            "debug",
        ])
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        EnvAgent {
            child: c.spawn().expect("starting authwatch"),
            stderr,
        }
    }

    fn stderr_text(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(
            &std::fs::read(&self.stderr).unwrap_or_default(),
        ))
    }
}

impl Drop for EnvAgent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- agent stderr ---\n{}", self.stderr_text());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn agent_reaches_a_tls_store_that_its_ca_signed_and_refuses_one_it_cannot_verify() {
    need_redis!();
    let tmp = tempdir();
    let dir = tmp.path();
    let (ca, cert, key) = tls_files(dir);
    let port = free_port();
    let tls_args: Vec<String> = vec![
        "--tls-port".into(),
        port.to_string(),
        "--tls-cert-file".into(),
        cert.display().to_string(),
        "--tls-key-file".into(),
        key.display().to_string(),
        "--tls-ca-cert-file".into(),
        ca.display().to_string(),
        "--tls-auth-clients".into(),
        "no".into(),
    ];
    let args: Vec<&str> = tls_args.iter().map(String::as_str).collect();
    // The plain port is only for the harness's readiness check.
    let _r = Redis::start_with(dir, free_port(), &args, "");
    let url = format!("rediss://127.0.0.1:{port}");
    let sink = Sink::start(dir, &["--tls", "none"]);
    let t = now_unix() - 20;
    let mut agents = Vec::new();
    for (name, ip, trust) in [
        ("mx1", "203.0.113.110", Some(ca.as_path())),
        ("mx2", "203.0.113.111", None),
    ] {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let log = LogWriter::new(d.join("mainlog"));
        let burst: Vec<String> = (0..5).map(|k| exim_fail(t + k, ip, "alice")).collect();
        log.append(&burst);
        let yaml = agent_yaml(&d, &log.path, name, sink.port, &url)
            .replace("start: end", "start: beginning");
        let cfg = write_file(&d, "authwatch.yaml", &yaml);
        agents.push(EnvAgent::run(&cfg, trust.map(|p| ("SSL_CERT_FILE", p))));
    }
    let mails = sink.wait_mails(2);
    let by_ip = |ip: &str| mail_about(&mails, ip);
    // mx1 trusts the CA (SSL_CERT_FILE): its hits went through the TLS store.
    let m = by_ip("203.0.113.110");
    assert_fleet_alert_single(m, "203.0.113.110");
    assert!(!m.body.contains("fleet store unavailable"), "{}", m.body);
    // mx2 does not: the store is unavailable to it, and it says why.
    let m = by_ip("203.0.113.111");
    assert!(m.body.contains("fleet store unavailable"), "{}", m.body);
    let err = agents[1].stderr_text();
    let line = err
        .lines()
        .find(|l| l.contains("fleet store unavailable: detecting"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains(&url), "{line}");
    assert!(line.contains("certificate"), "{line}");
}
