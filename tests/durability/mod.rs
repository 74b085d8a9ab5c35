//! Durability: the agent under the failures a long-running daemon meets. An SMTP relay that is
//! down for a while, `kill -9` at random moments while lines and alerts flow, rename and
//! copytruncate rotation with a restart in between, hostile log contents and paths, a full disk
//! under `state_dir`, and a `state_dir` that cannot be written.
//!
//! What "no loss, no double count" means here: every failed-login burst is written with one
//! distinct account name per line, so an alert whose "Accounts tried" list is not exactly one
//! attempt per name (or whose "Total attempts so far" differs from what was written) shows a
//! lost or twice-counted line. Lines and alerts are handled in order per source, so once the
//! alert of a final marker burst is in the outbox every earlier line has been processed, and
//! counting alerts is then settled.

use crate::harness::*;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A config with the given sources (`(path, start)`), `alerts:` fields and text under `mail:`.
fn config(state: &Path, sources: &[(&Path, &str)], alerts: &str, mail_extra: &str) -> String {
    let mut s = format!(
        "state_dir: '{}'\nhost: {{name: mx1.test, ip: 192.0.2.25}}\ntime_zone: UTC\nsources:\n",
        state.display()
    );
    for (p, start) in sources {
        s += &format!("  - path: '{}'\n    start: {start}\n", p.display());
    }
    s += "follow: {poll_interval: 50ms, checkpoint_interval: 100ms}\n";
    // Only the per-IP detector: these tests count per-IP alerts, and their bursts share
    // account names across many IPs (which the per-account detector would report too).
    s += "detect:\n  per_ip: {attempts: 5, window: 10m}\n";
    s += "  per_subnet: {enabled: false}\n  per_account: {enabled: false}\n";
    s += "  compromised: {enabled: false}\n";
    // No hourly cap: these tests count one mail per burst (the cap is tested elsewhere).
    let alerts = if alerts.is_empty() {
        "max_per_hour: 0".to_string()
    } else {
        format!("{alerts}, max_per_hour: 0")
    };
    s += &format!("alerts: {{{alerts}}}\n");
    s += "mail:\n  from: \"authwatch <authwatch@mx1.test>\"\n  to: [admin@example.test]\n";
    s += "  retry_first_delay: 100ms\n  retry_max_delay: 500ms\n  retry_for: 1h\n";
    s += mail_extra;
    s
}

/// Failure lines from `ip`, one per account in `users`, one second apart from `t`.
fn burst(ip: &str, t: i64, users: &[String]) -> Vec<String> {
    users
        .iter()
        .enumerate()
        .map(|(i, u)| exim_fail(t + i as i64, ip, u))
        .collect()
}

/// `prefix0` .. `prefix{n-1}`.
fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Append lines one `write()` each, pausing `gap` between them (a steady writer).
fn append_slowly(log: &LogWriter, lines: &[String], gap: Duration) {
    for l in lines {
        log.append(&[l]);
        if !gap.is_zero() {
            thread::sleep(gap);
        }
    }
}

/// Append raw bytes (for contents that are not text).
fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    f.write_all(bytes).expect("appending bytes");
}

/// Start `authwatch run` on `cfg` with its output in `<cfg folder>/<run>/`.
fn start_agent(cfg: &Path, run: &str) -> Agent {
    let dir = cfg.parent().expect("config in a folder");
    let logdir = dir.join(run);
    fs::create_dir_all(&logdir).expect("creating a run folder");
    Agent::spawn(
        &[
            "run",
            "--config",
            cfg.to_str().expect("utf-8 path"),
            "--log-level",
            "debug",
        ],
        dir,
        &logdir,
    )
}

fn read_lossy(p: &Path) -> String {
    strip_ansi(&String::from_utf8_lossy(&fs::read(p).unwrap_or_default()))
}

/// The stderr of every run under `dir` (`<dir>/<run>/agent.stderr`), concatenated.
fn all_stderr(dir: &Path) -> String {
    let mut runs: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    runs.sort();
    runs.iter()
        .map(|r| r.join("agent.stderr"))
        .filter(|p| p.exists())
        .map(|p| read_lossy(&p))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Prints the stderr of every earlier run when the test fails (the `Agent` guard prints only
/// its own, and killed agents are long gone by then).
struct DumpRunsOnPanic(PathBuf);

impl Drop for DumpRunsOnPanic {
    fn drop(&mut self) {
        if !thread::panicking() {
            return;
        }
        let mut runs: Vec<PathBuf> = fs::read_dir(&self.0)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        runs.sort();
        for r in runs {
            let p = r.join("agent.stderr");
            if p.exists() {
                let text = read_lossy(&p);
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(150);
                eprintln!(
                    "----- {} (last {} lines):\n{}",
                    p.display(),
                    lines.len() - from,
                    lines[from..].join("\n")
                );
            }
        }
    }
}

/// Reads the alerts in an outbox folder, parsing each file once.
struct Outbox {
    dir: PathBuf,
    seen: HashMap<PathBuf, Mail>,
}

impl Outbox {
    fn new(dir: PathBuf) -> Outbox {
        Outbox {
            dir,
            seen: HashMap::new(),
        }
    }

    /// All alerts so far, in file-name (creation) order.
    fn alerts(&mut self) -> Vec<Mail> {
        let files = eml_files(&self.dir);
        for f in &files {
            if !self.seen.contains_key(f) {
                self.seen.insert(f.clone(), Mail::read(f));
            }
        }
        files.iter().map(|f| self.seen[f].clone()).collect()
    }

    /// Wait until an alert about `ip` is there; returns all alerts.
    fn wait_for_ip(&mut self, ip: &str) -> Vec<Mail> {
        wait_for(
            &format!("an alert about {ip} in {}", self.dir.display()),
            || {
                let all = self.alerts();
                all.iter().any(|m| ip_in(m) == ip).then_some(all)
            },
        )
    }
}

/// The `Attacking IP:` of an alert, or a placeholder for another kind of alert.
fn ip_in(m: &Mail) -> &str {
    m.body_field("Attacking IP:")
        .unwrap_or("(an alert without `Attacking IP:`)")
}

/// Alerts grouped by attacking IP.
fn by_ip(alerts: &[Mail]) -> BTreeMap<String, Vec<&Mail>> {
    let mut m: BTreeMap<String, Vec<&Mail>> = BTreeMap::new();
    for a in alerts {
        m.entry(ip_in(a).to_string()).or_default().push(a);
    }
    m
}

fn total(m: &Mail) -> u64 {
    m.body_field("Total attempts so far:")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `Total attempts so far:` in:\n{}", m.body))
}

/// Whether the alert lists exactly these accounts, one attempt each.
fn one_attempt_each(m: &Mail, users: &[String]) -> bool {
    let mut got = m.accounts();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    let mut want: Vec<(u64, String)> = users.iter().map(|u| (1, u.clone())).collect();
    want.sort_by(|a, b| a.1.cmp(&b.1));
    got == want
}

fn eml_count(dir: &Path) -> usize {
    eml_files(dir).len()
}

/// Wait until the spool under `state` is empty (everything delivered).
fn wait_spool_empty(state: &Path) {
    let spool = state.join("spool");
    wait_for(&format!("an empty spool {}", spool.display()), || {
        (eml_count(&spool) == 0).then_some(())
    });
}

/// Deterministic pseudo-random numbers (xorshift64*), so kill moments repeat run to run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// A TCP forwarder from a fixed loopback port to another port: the SMTP relay "comes back" on
/// the exact port the agent was configured with, while smtp_sink.py itself only binds port 0.
struct Forwarder {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Forwarder {
    fn start(port: u16, target: u16) -> Forwarder {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("binding the reserved port {port} again: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                pipe(client, upstream);
            }
        });
        Forwarder {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

/// Copy both ways between two connections until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    for (mut from, mut to) in [
        (a.try_clone().expect("clone"), b.try_clone().expect("clone")),
        (b, a),
    ] {
        thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept() so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An IP per index, from 198.18.0.0/15 (benchmarking addresses).
fn ip_of(k: usize) -> String {
    format!("198.18.{}.{}", k / 250, k % 250 + 1)
}

fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked"),
        "the agent panicked:\n{}",
        stderr
            .lines()
            .filter(|l| l.contains("panicked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// SMTP relay down, then back

#[test]
fn smtp_down_then_back_every_alert_arrives_exactly_once() {
    let tmp = tempdir();
    let dir = tmp.path();
    let _dump = DumpRunsOnPanic(dir.to_path_buf());
    // Nothing listens here until the relay "comes back" (connections are refused meanwhile).
    let port = free_port();
    let log = LogWriter::new(dir.join("mainlog"));
    log.append(&exim_noise(now_unix() - 600));
    let state = dir.join("state");
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config(
            &state,
            &[(&log.path, "end")],
            "cooldown: 1h",
            &format!("  smtp: {{host: 127.0.0.1, port: {port}, tls: none, timeout: 5s}}\n"),
        ),
    );
    let mut agent = start_agent(&cfg, "run-1");
    agent.wait_following(&log);

    let t = now_unix() - 300;
    let ips = ["203.0.113.11", "203.0.113.12", "203.0.113.13"];
    for (i, ip) in ips.iter().enumerate() {
        log.append(&burst(ip, t + 10 * i as i64, &names("u", 5)));
    }
    let spool = state.join("spool");
    wait_for("3 alerts in the spool", || {
        (eml_count(&spool) == 3).then_some(())
    });
    // Down "for a while": several delivery attempts fail (and are logged) first.
    wait_for("3 failed delivery attempts in the log", || {
        (agent.stderr_text().matches("will retry").count() >= 3).then_some(())
    });
    agent.assert_running();
    assert_eq!(eml_count(&spool), 3, "the spool must keep all 3 alerts");

    // The relay comes back on the configured port.
    let sink = Sink::start(dir, &["--tls", "none"]);
    let _fwd = Forwarder::start(port, sink.port);
    let mails = sink.wait_mails(3);
    wait_spool_empty(&state);
    let mut got: Vec<&str> = mails.iter().map(|m| m.mail.attacking_ip()).collect();
    got.sort();
    assert_eq!(got, ips, "each spooled alert exactly once");
    for m in &mails {
        assert_eq!(total(&m.mail), 5, "{}", m.mail.body);
    }
    let stderr = agent.stderr_text();
    assert!(
        stderr.contains("mail delivery works again"),
        "no recovery logged"
    );

    // The agent has gone further: a fourth burst is mailed, and nothing else comes with it.
    log.append(&burst("203.0.113.14", t + 100, &names("v", 5)));
    let mails = sink.wait_mails(4);
    let st = agent.stop();
    assert!(st.success(), "exit after SIGTERM: {st}");
    let mails_after = sink.mails();
    assert_eq!(mails_after.len(), 4, "exactly 4 mails in all");
    assert_eq!(mails[3].mail.attacking_ip(), "203.0.113.14");
    let per_ip = by_ip(
        &mails_after
            .iter()
            .map(|m| m.mail.clone())
            .collect::<Vec<_>>(),
    )
    .into_iter()
    .map(|(ip, v)| (ip, v.len()))
    .collect::<Vec<_>>();
    assert!(
        per_ip.iter().all(|(_, n)| *n == 1),
        "duplicates: {per_ip:?}"
    );
    assert_no_panic(&agent.stderr_text());
}

/// The relay answers 451 (temporary failure) for a while: alerts are kept and retried.
#[test]
fn smtp_temporary_refusals_are_retried_exactly_once_each() {
    let tmp = tempdir();
    let dir = tmp.path();
    let _dump = DumpRunsOnPanic(dir.to_path_buf());
    let sink = Sink::start(
        dir,
        &["--tls", "none", "--reject", "451", "--reject-count", "4"],
    );
    let log = LogWriter::new(dir.join("mainlog"));
    let state = dir.join("state");
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config(
            &state,
            &[(&log.path, "end")],
            "cooldown: 1h",
            &format!(
                "  smtp: {{host: 127.0.0.1, port: {}, tls: none, timeout: 5s}}\n",
                sink.port
            ),
        ),
    );
    let mut agent = start_agent(&cfg, "run-1");
    agent.wait_following(&log);
    let t = now_unix() - 300;
    let ips = ["203.0.113.21", "203.0.113.22"];
    for (i, ip) in ips.iter().enumerate() {
        log.append(&burst(ip, t + 10 * i as i64, &names("u", 5)));
    }
    let mails = sink.wait_mails(2);
    wait_spool_empty(&state);
    log.append(&burst("203.0.113.23", t + 100, &names("v", 5)));
    sink.wait_mails(3);
    let st = agent.stop();
    assert!(st.success(), "exit after SIGTERM: {st}");
    let mails_after = sink.mails();
    let got: Vec<&str> = mails_after.iter().map(|m| m.mail.attacking_ip()).collect();
    assert_eq!(
        got,
        ["203.0.113.21", "203.0.113.22", "203.0.113.23"],
        "each alert once, in order"
    );
    assert_eq!(mails[0].mail.attacking_ip(), "203.0.113.21");
    assert!(agent.stderr_text().contains("will retry"));
    assert!(
        eml_count(&state.join("failed")) == 0,
        "a 451 is temporary: nothing may go to failed/"
    );
}

// ---------------------------------------------------------------------------------------------
// kill -9

/// Bursts per writer step: the first from a new IP (5 failures, accounts a0..a4); from step
/// [`LAG`] on also a second burst from the IP of step k - LAG (3 failures, accounts b0..b2),
/// 166 s (log time) after that IP's first alert: past the 2-minute cooldown, within the
/// 10-minute window, so its first line alerts again with "Total attempts so far: 6".
const LAG: usize = 8;

fn write_step(log: &LogWriter, k: usize, t0: i64) {
    let t = t0 + 20 * k as i64;
    let gap = Duration::from_millis(2);
    append_slowly(log, &burst(&ip_of(k), t, &names("a", 5)), gap);
    if k >= LAG {
        append_slowly(log, &burst(&ip_of(k - LAG), t + 10, &names("b", 3)), gap);
    }
    log.append(&exim_noise(t + 15));
}

#[test]
fn kill_9_at_random_moments_loses_no_alert_and_counts_no_line_twice() {
    const ROUNDS: usize = 6;
    const MAX_STEPS: usize = 400;
    let tmp = tempdir();
    let dir = tmp.path();
    let _dump = DumpRunsOnPanic(dir.to_path_buf());
    let log_path = dir.join("mainlog");
    fs::write(&log_path, "").unwrap();
    let state = dir.join("state");
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config(
            &state,
            &[(&log_path, "beginning")],
            "cooldown: 2m, top_accounts: 10",
            "",
        ),
    );
    // Log time starts 3 h ago and advances 20 s per step (MAX_STEPS steps stay in the past).
    let t0 = now_unix() - 3 * 3600;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let log = LogWriter::new(&log_path);
        thread::spawn(move || {
            let mut k = 0;
            while !stop.load(Ordering::SeqCst) && k < MAX_STEPS {
                write_step(&log, k, t0);
                k += 1;
                thread::sleep(Duration::from_millis(10));
            }
            k
        })
    };
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for round in 0..ROUNDS {
        let mut agent = start_agent(&cfg, &format!("run-{round}"));
        thread::sleep(Duration::from_millis(150 + rng.below(550)));
        if let Some(st) = agent.try_exit() {
            panic!("round {round}: the agent exited on its own with {st}");
        }
        agent.kill9();
        thread::sleep(Duration::from_millis(rng.below(150)));
    }
    stop.store(true, Ordering::SeqCst);
    let steps = writer.join().expect("writer thread");
    assert!(steps > 2 * LAG, "the writer wrote only {steps} steps");

    // A clean run catches up; the marker's alert comes after every other.
    let mut agent = start_agent(&cfg, "run-final");
    let marker = "198.51.100.250";
    LogWriter::new(&log_path).append(&burst(marker, t0 + 20 * steps as i64 + 100, &names("m", 5)));
    let mut outbox = Outbox::new(state.join("outbox"));
    outbox.wait_for_ip(marker);
    wait_spool_empty(&state);
    let st = agent.stop();
    assert!(st.success(), "exit after SIGTERM: {st}");
    let alerts = outbox.alerts();

    let first_users = names("a", 5);
    let mut second_users = names("a", 5);
    second_users.push("b0".into());
    let groups = by_ip(&alerts);
    let mut problems = Vec::new();
    let mut duplicates = 0;
    let mut dup_report = Vec::new();
    for k in 0..steps {
        let ip = ip_of(k);
        let got = groups.get(&ip).cloned().unwrap_or_default();
        let firsts = got.iter().filter(|m| total(m) == 5).count();
        let seconds = got.iter().filter(|m| total(m) == 6).count();
        let want_second = k + LAG < steps;
        if firsts == 0 {
            problems.push(format!("{ip}: first alert (5 attempts) lost"));
        }
        if want_second && seconds == 0 {
            problems.push(format!("{ip}: second alert (6 attempts) lost"));
        }
        if !want_second && seconds > 0 {
            problems.push(format!("{ip}: a second alert without a second burst"));
        }
        let dups = firsts.saturating_sub(1) + seconds.saturating_sub(1);
        duplicates += dups;
        if dups > 0 {
            // Which alerts repeat, and why their ids differ (the Message-ID carries the id).
            for m in &got {
                dup_report.push(format!(
                    "{ip}: {} total {} Message-ID {} Date {}",
                    m.source.display(),
                    total(m),
                    m.header("Message-ID").unwrap_or("-"),
                    m.header("Date").unwrap_or("-")
                ));
            }
        }
        for m in &got {
            let ok = match total(m) {
                5 => one_attempt_each(m, &first_users),
                6 => one_attempt_each(m, &second_users),
                _ => false,
            };
            if !ok {
                problems.push(format!(
                    "{ip}: alert {} says total {} with accounts {:?} (a line lost or counted twice)",
                    m.source.display(),
                    total(m),
                    m.accounts()
                ));
            }
        }
    }
    let stray: Vec<&String> = groups
        .keys()
        .filter(|ip| *ip != marker && !(0..steps).any(|k| ip_of(k) == **ip))
        .collect();
    if !stray.is_empty() {
        problems.push(format!("alerts about IPs never attacked: {stray:?}"));
    }
    let expected = steps + steps.saturating_sub(LAG) + 1;
    let stderr = all_stderr(dir);
    eprintln!(
        "kill -9 x{ROUNDS}: {steps} writer steps, {expected} distinct alerts expected, {} alert files, {duplicates} duplicate(s); \
         {} alert(s) made again and known by id, {} spooled just before a kill and finished at the restart",
        alerts.len(),
        stderr.matches("alert already sent before a restart").count(),
        stderr.matches("spooled just before a crash").count()
    );
    if !dup_report.is_empty() {
        eprintln!("duplicated alerts:\n{}", dup_report.join("\n"));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    // Duplicates: an alert is spooled before the state that covers its line is saved, so a
    // kill between the two makes it again from the re-read lines; its id, recorded in
    // `alert-ids` before the alert could be sent, stops it. Ids were once recorded after the
    // alerts were renamed into the spool: a kill in between sent a whole catch-up batch twice
    // (18 and 40 duplicates under load; see `SpoolWriter` in src/mail/spool.rs). The outbox
    // takes an alert by a rename, so no kill can leave it both sent and spooled: none may repeat.
    assert_eq!(
        duplicates, 0,
        "{duplicates} duplicate alerts after {ROUNDS} kills (the ids of each are listed above: \
         the same id means its record in alert-ids was lost, different ids that the alert was \
         made differently from the re-read lines)"
    );
    assert_no_panic(&all_stderr(dir));
}

/// The saved detector windows, as text: the generation `state.json` names and the part of its
/// journal that `state.json` covers (what a restart reads; see `state::journal`).
fn saved_windows_text(state: &Path) -> String {
    let Ok(st) = fs::read(state.join("state.json")) else {
        return String::new();
    };
    let Ok(st) = serde_json::from_slice::<serde_json::Value>(&st) else {
        return String::new();
    };
    let (Some(generation), Some(bytes)) = (
        st["detectors"]["generation"].as_u64(),
        st["detectors"]["journal_bytes"].as_u64(),
    ) else {
        return String::new();
    };
    let mut text =
        fs::read_to_string(state.join(format!("detectors-{generation}.json"))).unwrap_or_default();
    let journal =
        fs::read(state.join(format!("detectors-{generation}.journal"))).unwrap_or_default();
    let covered = &journal[..journal.len().min(bytes as usize)];
    text.push_str(&String::from_utf8_lossy(covered));
    text
}

/// A burst that straddles a kill: 3 failures processed (and saved), `kill -9`, 2 more written
/// while the agent is down; after the restart the window continues: one alert, 5 attempts.
#[test]
fn kill_9_mid_burst_the_window_survives() {
    let tmp = tempdir();
    let dir = tmp.path();
    let _dump = DumpRunsOnPanic(dir.to_path_buf());
    let log = LogWriter::new(dir.join("mainlog"));
    let state = dir.join("state");
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config(&state, &[(&log.path, "end")], "cooldown: 1h", ""),
    );
    let mut agent = start_agent(&cfg, "run-1");
    agent.wait_following(&log);
    let ip = "203.0.113.31";
    let t = now_unix() - 120;
    let users = names("s", 5);
    let lines = burst(ip, t, &users);
    log.append(&lines[..3]);
    let needle = format!("ip={ip} ");
    wait_for("3 hits from the straddling IP", || {
        (agent.stderr_text().matches(&needle).count() == 3).then_some(())
    });
    // Wait until a state save covers the third line (its quoted text is in the saved window).
    // If the state layout stops quoting lines this only waits 3 s, and the test still checks
    // that the alert comes (then perhaps from re-read lines).
    let start = Instant::now();
    let saved = loop {
        if saved_windows_text(&state).contains("set_id=s2)") {
            break true;
        }
        if start.elapsed() > Duration::from_secs(3) {
            break false;
        }
        thread::sleep(Duration::from_millis(20));
    };
    if !saved {
        eprintln!("note: no state save quoting the third line seen within 3 s; killing anyway");
    }
    agent.kill9();
    log.append(&lines[3..]);
    let mut agent = start_agent(&cfg, "run-2");
    let mut outbox = Outbox::new(state.join("outbox"));
    let alerts = outbox.wait_for_ip(ip);
    // The marker shows that nothing else is still coming.
    log.append(&burst("198.51.100.251", t + 20, &names("m", 5)));
    let alerts_all = outbox.wait_for_ip("198.51.100.251");
    let st = agent.stop();
    assert!(st.success(), "exit after SIGTERM: {st}");
    let about: Vec<&Mail> = alerts_all.iter().filter(|m| ip_in(m) == ip).collect();
    assert_eq!(about.len(), 1, "one alert for the straddling burst");
    assert_eq!(total(about[0]), 5, "{}", about[0].body);
    assert!(
        one_attempt_each(about[0], &users),
        "each of the 5 lines counted once: {:?}",
        about[0].accounts()
    );
    assert!(!alerts.is_empty());
    assert_no_panic(&all_stderr(dir));
}

/// The restart's "continuing from the saved state" line counts the keys restored from the
/// snapshot and the journal, as many as the first run tracked when it stopped, not the
/// snapshot's alone (it said 0 here: the first generation was written before any line).
#[test]
fn restart_counts_the_keys_of_the_snapshot_and_the_journal_regression_issue_17() {
    let tmp = tempdir();
    let dir = tmp.path();
    let _dump = DumpRunsOnPanic(dir.to_path_buf());
    let log = LogWriter::new(dir.join("mainlog"));
    let state = dir.join("state");
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config(&state, &[(&log.path, "end")], "cooldown: 1h", ""),
    );
    let mut agent = start_agent(&cfg, "run-1");
    agent.wait_following(&log);
    let t = now_unix() - 120;
    // Two failures per address: below the threshold, so every address stays tracked.
    let two = |range: std::ops::Range<usize>| -> Vec<String> {
        range
            .flat_map(|k| burst(&format!("203.0.113.{}", 100 + k), t, &names("j", 2)))
            .collect()
    };
    log.append(&two(0..3));
    // The first save: a generation holding the first 3 addresses.
    wait_for("a save holding the first 3 addresses", || {
        saved_windows_text(&state)
            .contains("203.0.113.102")
            .then_some(())
    });
    log.append(&two(3..7));
    wait_for("14 hits", || {
        (agent.stderr_text().matches("ip=203.0.113.1").count() >= 14).then_some(())
    });
    let st = agent.stop();
    assert!(st.success(), "exit after SIGTERM: {st}");
    // What the first run tracked when it stopped: the 7 addresses and its probe(s).
    let tracked = |l: &str| -> Option<u64> {
        l.split_whitespace()
            .find_map(|f| f.strip_prefix("tracked_ips="))
            .and_then(|n| n.parse().ok())
    };
    let stopped = strip_ansi(&agent.stderr_text())
        .lines()
        .find(|l| l.contains("authwatch stopped"))
        .and_then(tracked)
        .expect("the first run's stop line with tracked_ips");
    assert!(stopped >= 7, "{stopped}");
    assert!(
        fs::read_dir(&state)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".journal")),
        "the later addresses went to a journal (else this test checks nothing)"
    );
    let mut agent = start_agent(&cfg, "run-2");
    let line = wait_for("the restart's state line", || {
        strip_ansi(&agent.stderr_text())
            .lines()
            .find(|l| l.contains("continuing from the saved state"))
            .map(str::to_string)
    });
    assert_eq!(tracked(&line), Some(stopped), "{line}");
    let st = agent.stop();
    assert!(st.success(), "exit after SIGTERM: {st}");
}

// ---------------------------------------------------------------------------------------------
// Rotation with a restart in between

/// Write bursts `range` (IP `ip_of(k)`, accounts a0..a4, log time from `t0`), line by line.
fn write_bursts(log: &LogWriter, range: std::ops::Range<usize>, t0: i64) {
    for k in range {
        append_slowly(
            log,
            &burst(&ip_of(k), t0 + 10 * k as i64, &names("a", 5)),
            Duration::from_millis(1),
        );
        log.append(&exim_noise(t0 + 10 * k as i64 + 6));
    }
}

/// After the final marker: every burst `0..n` alerted exactly once, with its 5 lines.
fn assert_each_burst_once(alerts: &[Mail], n: usize, marker: &str) {
    let groups = by_ip(alerts);
    let users = names("a", 5);
    let mut problems = Vec::new();
    for k in 0..n {
        let ip = ip_of(k);
        match groups.get(&ip).map(Vec::as_slice) {
            None | Some([]) => problems.push(format!("burst {k} ({ip}): no alert (lines lost)")),
            Some([m]) => {
                if total(m) != 5 || !one_attempt_each(m, &users) {
                    problems.push(format!(
                        "burst {k} ({ip}): total {} accounts {:?}",
                        total(m),
                        m.accounts()
                    ));
                }
            }
            Some(v) => problems.push(format!("burst {k} ({ip}): {} alerts", v.len())),
        }
    }
    let others: Vec<&String> = groups
        .keys()
        .filter(|ip| *ip != marker && !(0..n).any(|k| ip_of(k) == **ip))
        .collect();
    if !others.is_empty() {
        problems.push(format!("unexpected alerts about {others:?}"));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// logrotate's `create` (rename) rotation: `log.1` → `log.2`, `log` → `log.1`; the writer then
/// creates a new `log`.
fn rename_rotate(log: &Path) {
    let p1 = PathBuf::from(format!("{}.1", log.display()));
    let p2 = PathBuf::from(format!("{}.2", log.display()));
    if p1.exists() {
        fs::rename(&p1, &p2).expect("log.1 -> log.2");
    }
    fs::rename(log, &p1).expect("log -> log.1");
}

/// logrotate's `copytruncate`: `log.1` → `log.2`, copy `log` to `log.1`, truncate `log`.
fn copytruncate(log: &Path) {
    let p1 = PathBuf::from(format!("{}.1", log.display()));
    let p2 = PathBuf::from(format!("{}.2", log.display()));
    if p1.exists() {
        fs::rename(&p1, &p2).expect("log.1 -> log.2");
    }
    fs::copy(log, &p1).expect("copying log to log.1");
    OpenOptions::new()
        .write(true)
        .open(log)
        .and_then(|f| f.set_len(0))
        .expect("truncating log");
}

fn rotation_with_restart(rotate: fn(&Path), wait_until_switched: bool) {
    let tmp = tempdir();
    let dir = tmp.path();
    let _dump = DumpRunsOnPanic(dir.to_path_buf());
    let log = LogWriter::new(dir.join("mainlog"));
    fs::write(&log.path, "").unwrap();
    let state = dir.join("state");
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config(&state, &[(&log.path, "beginning")], "cooldown: 1h", ""),
    );
    let t0 = now_unix() - 2 * 3600;
    let mut agent = start_agent(&cfg, "run-1");
    // Only once the agent has the file open is "rotated away" a rotation it must follow.
    agent.wait_following(&log);
    write_bursts(&log, 0..6, t0);
    rotate(&log.path);
    write_bursts(&log, 6..12, t0);
    if wait_until_switched {
        // The agent has read the new file (its last burst alerted) before it is stopped.
        Outbox::new(state.join("outbox")).wait_for_ip(&ip_of(11));
    }
    let st = agent.stop();
    assert!(st.success(), "exit after SIGTERM: {st}");
    // Rotated again while the agent is down, and written to.
    rotate(&log.path);
    write_bursts(&log, 12..18, t0);
    let mut agent = start_agent(&cfg, "run-2");
    write_bursts(&log, 18..20, t0);
    let marker = "198.51.100.252";
    log.append(&burst(marker, t0 + 1000, &names("m", 5)));
    let mut outbox = Outbox::new(state.join("outbox"));
    // Lines left in the old files are read before the new file, so the marker comes last.
    let alerts = wait_for_within(
        Duration::from_secs(15),
        &format!("the marker alert about {marker}"),
        || {
            let all = outbox.alerts();
            all.iter().any(|m| ip_in(m) == marker).then_some(all)
        },
    );
    let st = agent.stop();
    assert!(st.success(), "exit after SIGTERM: {st}");
    assert_each_burst_once(&alerts, 20, marker);
    assert_no_panic(&all_stderr(dir));
}

#[test]
fn rename_rotation_with_a_restart_in_between() {
    rotation_with_restart(rename_rotate, true);
}

/// The agent is stopped right after a rename rotation, while it still drains the old file (its
/// checkpoint names the old file), and the log is rotated once more before it starts again:
/// the old file is now `log.2`, and `log.1` holds lines it has never read.
#[test]
fn rename_rotation_stop_during_the_rotation_then_rotated_again() {
    rotation_with_restart(rename_rotate, false);
}

#[test]
fn copytruncate_rotation_with_a_restart_in_between() {
    rotation_with_restart(copytruncate, false);
}

// ---------------------------------------------------------------------------------------------
// Hostile input

#[test]
fn hostile_inputs_are_survived_and_other_sources_keep_alerting() {
    let tmp = tempdir();
    let dir = tmp.path();
    let _dump = DumpRunsOnPanic(dir.to_path_buf());
    let t = now_unix() - 600;
    let hostile = dir.join("hostile.log");
    // Invalid UTF-8, NUL bytes (also inside a failure line's account), a 10 MB line, and
    // random binary garbage, then a real burst from 203.0.113.41 in the same file.
    append_bytes(&hostile, b"\xff\xfe\xc3\x28 invalid utf-8 \xe2\x82\n");
    append_bytes(&hostile, b"nul\0bytes\0\0here\n");
    append_bytes(
        &hostile,
        format!("{}\n", exim_fail(t, "203.0.113.40", "nul\0user\u{1}")).as_bytes(),
    );
    let mut huge = exim_fail(t, "203.0.113.40", "huge").into_bytes();
    huge.resize(10 * 1024 * 1024, b'x');
    huge.push(b'\n');
    append_bytes(&hostile, &huge);
    let mut rng = Rng(0xbad_5eed);
    let garbage: Vec<u8> = (0..256 * 1024).map(|_| rng.below(256) as u8).collect();
    append_bytes(&hostile, &garbage);
    append_bytes(&hostile, b"\n");
    let mut hostile_users: Vec<String> = names("h", 3);
    hostile_users.push("bad\u{fffd}utf8".into());
    hostile_users.push("z\0z".into());
    for (i, u) in hostile_users.iter().enumerate() {
        append_bytes(
            &hostile,
            format!("{}\n", exim_fail(t + 10 + i as i64, "203.0.113.41", u)).as_bytes(),
        );
    }

    let good = LogWriter::new(dir.join("good.log"));
    fs::write(&good.path, "").unwrap();
    let vanish = dir.join("vanish.log");
    fs::write(&vanish, exim_noise(t).join("\n") + "\n").unwrap();
    let becomes_dir = dir.join("becomes-dir.log");
    fs::write(&becomes_dir, exim_noise(t).join("\n") + "\n").unwrap();
    let denied = dir.join("denied.log");
    fs::write(&denied, exim_noise(t).join("\n") + "\n").unwrap();
    // Running as root, permissions are not enforced: chmod cannot make a file unreadable, so
    // the permission-denied case is checked only when the tests run as another user.
    let check_denied = !is_root();
    if check_denied {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&denied, fs::Permissions::from_mode(0o000)).unwrap();
    } else {
        eprintln!("SKIPPED permission denied: running as root, chmod 000 does not deny root");
    }
    let state = dir.join("state");
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config(
            &state,
            &[
                (&hostile, "beginning"),
                (&good.path, "end"),
                (&vanish, "end"),
                (&becomes_dir, "end"),
                (&denied, "beginning"),
            ],
            "cooldown: 1h",
            "",
        ),
    );
    let mut agent = start_agent(&cfg, "run-1");
    let mut outbox = Outbox::new(state.join("outbox"));
    let alerts = outbox.wait_for_ip("203.0.113.41");
    let h = alerts.iter().find(|m| ip_in(m) == "203.0.113.41").unwrap();
    assert_eq!(total(h), 5, "{}", h.body);
    agent.wait_following(&good);

    // A source path that is deleted, and one replaced by a directory.
    fs::remove_file(&vanish).unwrap();
    fs::remove_file(&becomes_dir).unwrap();
    fs::create_dir(&becomes_dir).unwrap();
    let stderr = wait_for(
        "the agent to report the deleted and the replaced path",
        || {
            let s = agent.stderr_text();
            let vanished = s
                .lines()
                .any(|l| l.contains("does not exist") && l.contains("vanish.log"));
            let not_file = s
                .lines()
                .any(|l| l.contains("not a regular file") && l.contains("becomes-dir.log"));
            (vanished && not_file).then_some(s)
        },
    );

    // The other source still alerts, and the agent still runs.
    good.append(&burst("203.0.113.42", t + 100, &names("g", 5)));
    outbox.wait_for_ip("203.0.113.42");
    agent.assert_running();
    let stderr = agent.stderr_text() + &stderr;
    let cut = stderr
        .lines()
        .find(|l| l.contains("cut over-long") && l.contains("hostile.log"));
    assert!(
        cut.is_some_and(|l| l.contains("lines=1")),
        "the 10 MB line must be cut, counted and logged; log lines mentioning `cut`:\n{}",
        stderr
            .lines()
            .filter(|l| l.contains("cut"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Invalid UTF-8, NUL bytes and binary garbage are read (lossily) without a panic, and the
    // log says so for the file.
    for what in ["invalid UTF-8", "NUL bytes"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("hostile.log") && l.contains(what)),
            "no log line about {what} in hostile.log:\n{stderr}"
        );
    }
    if check_denied {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("denied.log") && l.contains("ermission denied")),
            "permission denied not logged with the path"
        );
    }
    let st = agent.stop();
    assert!(st.success(), "exit after SIGTERM: {st}");
    assert_no_panic(&agent.stderr_text());
}

// ---------------------------------------------------------------------------------------------
// Full disk under state_dir

/// A tmpfs mounted for the test; unmounted on drop (lazily, so a busy mount cannot hang).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        if !is_root() {
            return Err("not root: cannot mount a tmpfs".into());
        }
        fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs(at.to_path_buf()))
        } else {
            Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fill the file system of `dir` with `dir/filler` until it is full.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = fs::File::create(&p).expect("creating the filler");
    let chunk = vec![0u8; 4096];
    loop {
        if f.write_all(&chunk).is_err() || f.sync_all().is_err() {
            break;
        }
    }
    // Also use up the last bytes a smaller write could take.
    while f.write_all(&[0u8; 64]).is_ok() && f.sync_all().is_ok() {}
    p
}

#[test]
fn full_disk_under_state_dir_is_logged_and_survived() {
    let tmp = tempdir();
    let dir = tmp.path();
    let _dump = DumpRunsOnPanic(dir.to_path_buf());
    let state = dir.join("state");
    let _mount = match Tmpfs::mount(&state, "256k") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED full_disk_under_state_dir_is_logged_and_survived: {why}");
            return;
        }
    };
    let log = LogWriter::new(dir.join("mainlog"));
    let other = LogWriter::new(dir.join("other.log"));
    fs::write(&log.path, "").unwrap();
    fs::write(&other.path, "").unwrap();
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config(
            &state,
            &[(&log.path, "end"), (&other.path, "end")],
            "cooldown: 1h",
            "",
        ),
    );
    let mut agent = start_agent(&cfg, "run-1");
    agent.wait_following(&log);
    agent.wait_following(&other);
    let t = now_unix() - 600;
    let mut outbox = Outbox::new(state.join("outbox"));
    log.append(&burst("203.0.113.51", t, &names("u", 5)));
    outbox.wait_for_ip("203.0.113.51");

    let filler = fill(&state);
    log.append(&burst("203.0.113.52", t + 10, &names("u", 5)));
    other.append(&burst("203.0.113.53", t + 20, &names("u", 5)));
    let stderr = wait_for("the spool errors for both alerts", || {
        let s = agent.stderr_text();
        let spool_errors: Vec<&str> = s
            .lines()
            .filter(|l| l.contains("cannot write the alert to the spool"))
            .collect();
        (spool_errors.iter().any(|l| l.contains("203.0.113.52"))
            && spool_errors.iter().any(|l| l.contains("203.0.113.53")))
        .then_some(s)
    });
    let spool_error = stderr
        .lines()
        .find(|l| l.contains("cannot write the alert to the spool"))
        .unwrap();
    assert!(
        spool_error.contains("No space left") || spool_error.contains("StorageFull"),
        "the error should say the disk is full: {spool_error}"
    );
    assert!(
        spool_error.contains(&state.display().to_string()),
        "the error should name the folder: {spool_error}"
    );
    agent.assert_running();

    // Space again: alerting works as before.
    fs::remove_file(&filler).unwrap();
    other.append(&burst("203.0.113.54", t + 30, &names("u", 5)));
    outbox.wait_for_ip("203.0.113.54");
    agent.assert_running();
    let st = agent.stop();
    assert!(st.success(), "exit after SIGTERM: {st}");
    assert_no_panic(&agent.stderr_text());
}

// ---------------------------------------------------------------------------------------------
// state_dir not writable

#[test]
fn unwritable_state_dir_is_a_clear_error_at_start() {
    let tmp = tempdir();
    let dir = tmp.path();
    let log = dir.join("mainlog");
    fs::write(&log, "").unwrap();
    // A state_dir under a regular file can never be created, whoever runs the test.
    let file = write_file(dir, "a-file", "not a folder\n");
    let state = file.join("state");
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config(&state, &[(&log, "end")], "cooldown: 1h", ""),
    );
    let (code, out, err) = run_to_end(&["run", "--config", cfg.to_str().unwrap()], dir);
    assert!(
        code.is_some_and(|c| c != 0),
        "exit code {code:?} for an unusable state_dir:\n{out}\n{err}"
    );
    assert!(
        strip_ansi(&err).contains(&state.display().to_string()),
        "the error does not name {}:\n{err}",
        state.display()
    );

    if !is_root() {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.join("read-only");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        let cfg = write_file(
            dir,
            "ro.yaml",
            &config(&ro, &[(&log, "end")], "cooldown: 1h", ""),
        );
        let (code, out, err) = run_to_end(&["run", "--config", cfg.to_str().unwrap()], dir);
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(
            code.is_some_and(|c| c != 0),
            "exit code {code:?} for a read-only state_dir:\n{out}\n{err}"
        );
        assert!(
            strip_ansi(&err).contains(&ro.display().to_string()),
            "the error does not name {}:\n{err}",
            ro.display()
        );
    } else {
        eprintln!("SKIPPED read-only state_dir: running as root, mode 0555 does not deny root");
    }
}

// ---------------------------------------------------------------------------------------------
// SIGTERM while catching up

/// A restart after downtime finds a backlog; SIGTERM while the agent works through it must
/// still be a clean stop (exit 0, state saved), and the next start finishes the backlog with
/// every alert exactly once.
#[test]
fn sigterm_while_catching_up_is_a_clean_stop() {
    const BURSTS: usize = 150;
    let tmp = tempdir();
    let dir = tmp.path();
    let _dump = DumpRunsOnPanic(dir.to_path_buf());
    let log = LogWriter::new(dir.join("mainlog"));
    let t0 = now_unix() - 2 * 3600;
    let mut backlog = Vec::new();
    for k in 0..BURSTS {
        backlog.extend(burst(&ip_of(k), t0 + 10 * k as i64, &names("a", 5)));
    }
    log.append(&backlog);
    let state = dir.join("state");
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config(&state, &[(&log.path, "beginning")], "cooldown: 1h", ""),
    );
    let outbox_dir = state.join("outbox");
    let mut agent = start_agent(&cfg, "run-1");
    wait_for("the first alert of the backlog", || {
        (eml_count(&outbox_dir) > 0).then_some(())
    });
    let st = agent.stop();
    assert_eq!(
        st.code(),
        Some(0),
        "SIGTERM during catch-up must be a clean stop, not {st} (is the SIGTERM handler installed only once the main loop first waits?)"
    );
    assert!(agent.stderr_text().contains("SIGTERM received"));
    let mut agent = start_agent(&cfg, "run-2");
    let marker = "198.51.100.253";
    log.append(&burst(
        marker,
        t0 + 10 * BURSTS as i64 + 100,
        &names("m", 5),
    ));
    let mut outbox = Outbox::new(outbox_dir);
    let alerts = wait_for_within(Duration::from_secs(30), "the marker alert", || {
        let all = outbox.alerts();
        all.iter().any(|m| ip_in(m) == marker).then_some(all)
    });
    let st = agent.stop();
    assert!(st.success(), "exit after SIGTERM: {st}");
    assert_each_burst_once(&alerts, BURSTS, marker);
    assert_no_panic(&all_stderr(dir));
}

// ---------------------------------------------------------------------------------------------
// Local hardening (issue 14.8)

/// A second agent on the same `state_dir` refuses to start and names the first one's pid (two
/// agents overwrote each other's checkpoints and sent every alert twice).
#[test]
fn second_agent_on_one_state_dir_refuses_naming_the_pid_regression() {
    let tmp = tempdir();
    let dir = tmp.path();
    let log = LogWriter::new(dir.join("mainlog"));
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config(&dir.join("state"), &[(&log.path, "end")], "", ""),
    );
    let mut first = start_agent(&cfg, "run1");
    first.wait_following(&log);
    let (code, out, err) = run_to_end(&["run", "--config", cfg.to_str().unwrap()], dir);
    assert!(
        code.is_some_and(|c| c != 0),
        "a second agent started ({code:?}):\n{out}\n{err}"
    );
    let err = strip_ansi(&err);
    assert!(
        err.contains(&format!("pid {}", first.pid())) && err.contains("in use"),
        "{err}"
    );
    let lock = dir.join("state/lock");
    assert_eq!(
        fs::read_to_string(&lock).unwrap().trim(),
        first.pid().to_string()
    );
    assert!(first.stop().success());
    // The lock goes with the process.
    let mut again = start_agent(&cfg, "run2");
    again.wait_following(&log);
    assert!(again.stop().success());
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// `authwatch run --stdin` under `umask 000`, with `input`; returns (exit code, stderr).
fn run_stdin_umask0(cfg: &Path, input: &str) -> (Option<i32>, String) {
    use std::process::{Command, Stdio};
    let mut child = Command::new("sh")
        .args(["-c", "umask 000 && exec \"$0\" \"$@\""])
        .arg(bin())
        .args(["run", "--config", cfg.to_str().unwrap(), "--stdin"])
        .args(["--log-level", "debug"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        strip_ansi(&String::from_utf8_lossy(&out.stderr)),
    )
}

/// Files in `state_dir` are 0600 and folders 0700 even under `umask 000` (they were 0666 and
/// 0777: any local user could read the alerts or plant checkpoints).
#[test]
fn state_dir_files_are_private_whatever_the_umask_regression() {
    let tmp = tempdir();
    let dir = tmp.path();
    let state = dir.join("state");
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config(&state, &[(&dir.join("unused.log"), "end")], "", ""),
    );
    let input: String = burst("203.0.113.47", now_unix() - 60, &names("u", 5))
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    let (code, err) = run_stdin_umask0(&cfg, &input);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(mode(&state), 0o700, "state_dir");
    for d in ["spool", "failed", "outbox"] {
        assert_eq!(mode(&state.join(d)), 0o700, "{d}");
    }
    for f in ["state.json", "alert-ids", "lock"] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
    let mails = eml_files(&state.join("outbox"));
    assert_eq!(mails.len(), 1, "{err}");
    assert_eq!(mode(&mails[0]), 0o600);
}

/// A symbolic link planted where authwatch writes in `state_dir` (temp file of state.json,
/// alert-ids) is refused, never followed: the file it points to stays untouched.
#[test]
fn symlinks_in_state_dir_are_refused_not_followed_regression() {
    let tmp = tempdir();
    let dir = tmp.path();
    let state = dir.join("state");
    fs::create_dir_all(&state).unwrap();
    let victim = write_file(dir, "victim", "precious\n");
    for name in [".state.json.tmp", "alert-ids", ".status.json.tmp"] {
        std::os::unix::fs::symlink(&victim, state.join(name)).unwrap();
    }
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config(&state, &[(&dir.join("unused.log"), "end")], "", ""),
    );
    let input: String = burst("203.0.113.47", now_unix() - 60, &names("u", 5))
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    let (_, err) = run_stdin_umask0(&cfg, &input);
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n", "{err}");
    assert!(err.contains("symbolic link"), "{err}");
    assert_no_panic(&err);
}

/// An allowlist or password file that is a FIFO is refused at once, naming the file (a plain
/// open waited for a writer forever: the agent froze at start and at `check`).
#[test]
fn fifo_as_allowlist_or_password_file_is_refused_regression() {
    let tmp = tempdir();
    let dir = tmp.path();
    let fifo = dir.join("allow.fifo");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    for (name, extra, mail) in [
        (
            "allow.yaml",
            format!("allowlist: {{files: ['{}']}}\n", fifo.display()),
            String::new(),
        ),
        (
            "pw.yaml",
            String::new(),
            format!(
                "  smtp: {{host: 127.0.0.1, port: 25, tls: none, username: u, password_file: '{}'}}\n",
                fifo.display()
            ),
        ),
    ] {
        let cfg = write_file(
            dir,
            name,
            &format!(
                "{}{extra}",
                config(&dir.join("state"), &[(&dir.join("x.log"), "end")], "", &mail)
            ),
        );
        for cmd in ["check", "run"] {
            let (code, out, err) = run_to_end(&[cmd, "--config", cfg.to_str().unwrap()], dir);
            assert_eq!(code, Some(78), "{name} {cmd}:\n{out}\n{err}");
            assert!(
                err.contains(&fifo.display().to_string()) && err.contains("not a regular file"),
                "{name} {cmd}: {err}"
            );
        }
    }
}

/// A corrupt state.json raises a health alert and resumes from the previous save's offsets:
/// lines written while authwatch was down are read (before, it started from `start: end`
/// silently and missed them).
#[test]
fn corrupt_state_raises_a_health_alert_and_resumes_from_saved_offsets_regression() {
    let tmp = tempdir();
    let dir = tmp.path();
    let state = dir.join("state");
    let log = LogWriter::new(dir.join("mainlog"));
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config(&state, &[(&log.path, "end")], "", ""),
    );
    let mut agent = start_agent(&cfg, "run1");
    agent.wait_following(&log);
    let t = now_unix() - 120;
    log.append(&burst("203.0.113.1", t, &names("a", 5)));
    wait_outbox(&state.join("outbox"), 1);
    // At least two saves: state.json and the previous one beside it.
    wait_for("a previous state kept beside state.json", || {
        state.join("state.json.1").exists().then_some(())
    });
    assert!(agent.stop().success());
    fs::write(
        state.join("state.json"),
        b"{\"version\":3,\"sources\":[{\"pa",
    )
    .unwrap();
    // Written while authwatch is down.
    log.append(&burst("203.0.113.2", t + 30, &names("b", 5)));
    let mut agent = start_agent(&cfg, "run2");
    let mails = wait_outbox(&state.join("outbox"), 3);
    let subjects: Vec<&str> = mails.iter().map(|m| m.subject()).collect();
    assert!(
        subjects
            .iter()
            .any(|s| s.contains("saved state was corrupt")),
        "{subjects:?}"
    );
    assert!(
        subjects.iter().any(|s| s.contains("203.0.113.2")),
        "the burst written while down was missed: {subjects:?}"
    );
    assert!(agent.stop().success());
    let bad: Vec<_> = fs::read_dir(&state)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.bad-")
        })
        .collect();
    assert_eq!(bad.len(), 1, "the corrupt file is kept for a look");
}

/// Issue 17: the windows live in detector files beside state.json. A damaged generation is
/// handled like a damaged state.json: a health alert, the file set aside, and the sources
/// resume from their saved offsets (the burst written while down is still seen).
#[test]
fn corrupt_detector_generation_raises_a_health_alert_and_keeps_the_offsets() {
    let tmp = tempdir();
    let dir = tmp.path();
    let state = dir.join("state");
    let log = LogWriter::new(dir.join("mainlog"));
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config(&state, &[(&log.path, "end")], "", ""),
    );
    let mut agent = start_agent(&cfg, "run1");
    agent.wait_following(&log);
    let t = now_unix() - 120;
    log.append(&burst("203.0.113.1", t, &names("a", 5)));
    wait_outbox(&state.join("outbox"), 1);
    assert!(agent.stop().success());
    let generations: Vec<PathBuf> = fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("detectors-") && n.ends_with(".json")
        })
        .collect();
    assert!(!generations.is_empty(), "no detector generation written");
    for g in &generations {
        fs::write(g, b"{\"ips\":{\"base\":17").unwrap();
    }
    // Written while authwatch is down.
    log.append(&burst("203.0.113.2", t + 30, &names("b", 5)));
    let mut agent = start_agent(&cfg, "run2");
    let mails = wait_outbox(&state.join("outbox"), 3);
    let subjects: Vec<&str> = mails.iter().map(|m| m.subject()).collect();
    assert!(
        subjects
            .iter()
            .any(|s| s.contains("saved state was corrupt")),
        "{subjects:?}"
    );
    assert!(
        subjects.iter().any(|s| s.contains("203.0.113.2")),
        "the burst written while down was missed: {subjects:?}"
    );
    assert!(agent.stop().success());
    let bad = fs::read_dir(&state)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".json.bad-"))
        .count();
    assert!(bad >= 1, "the damaged generation is kept for a look");
}
