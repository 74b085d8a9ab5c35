//! End-to-end tests of the Dovecot, Postfix and Exim rules against the real servers on
//! loopback: a private Dovecot 2.3 (`tests/support/dovecot_ctl.py`), a private Postfix smtpd
//! using it for SASL (`tests/support/postfix_ctl.py`, Postfix unpacked from Debian's .deb
//! because the package conflicts with exim4), and a private Exim with
//! `helo_accept_junk_hosts = *` (`tests/support/exim_ctl.py --helo-accept-junk`). Each test makes the server log failed (and successful)
//! logins, then runs the built-in rules over the server's own log file and checks address,
//! users and attempt counts. Hostile usernames travel through the real servers, so the test
//! also proves what they look like in the log. The Postfix and Dovecot tests then feed that
//! log to the real agent (`authwatch run --stdin`) and read the alert it writes: the Subject
//! names the service and the body carries that service's advice, never Exim's (issue 15).
//! Without the servers the tests are skipped, except when `CI` is set: then they fail.

use crate::harness::*;
use crate::stdin::run_stdin;
use authwatch::rules::{builtin, Hit, HitKind, ParseCtx, RuleSet};
use jiff::{tz::TimeZone, Timestamp};
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Skip (outside CI) or fail (in CI) when a server cannot run here.
fn require(test: &str, ready: Result<(), String>) -> bool {
    match ready {
        Ok(()) => true,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but {test} cannot run: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}

fn run_ctl(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(support(script))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_text(p: &Path) -> String {
    fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn count_lines(p: &Path, needle: &str) -> usize {
    read_text(p).lines().filter(|l| l.contains(needle)).count()
}

/// Every hit of the named rules over the file, in order; one rule set for the whole file, as
/// the agent keeps it for a source.
fn parse_file(rules: &[&str], path: &Path) -> Vec<Hit> {
    for r in rules {
        assert!(builtin(r).is_some(), "no built-in rule {r}");
    }
    let mut set = RuleSet::named(rules);
    let ctx = ParseCtx::new(TimeZone::system(), Timestamp::now());
    read_text(path)
        .lines()
        .filter_map(|l| set.parse(l, &ctx))
        .collect()
}

fn failures(hits: &[Hit]) -> Vec<&Hit> {
    hits.iter().filter(|h| h.kind == HitKind::Failure).collect()
}

/// Every hit is from 127.0.0.1, for `service`, with a log time within 10 minutes of now.
fn assert_all_local(hits: &[Hit], service: &str, log: &Path) {
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let now = Timestamp::now().as_second();
    for h in hits {
        assert_eq!(
            h.ip,
            local,
            "blamed {} in {h:?}\nlog:\n{}",
            h.ip,
            read_text(log)
        );
        assert_eq!(h.service, service, "{h:?}");
        let t = h
            .time
            .unwrap_or_else(|| panic!("no time in {h:?}"))
            .as_second();
        assert!((now - t).abs() < 600, "time of {h:?} is not now (zone?)");
    }
}

/// Text that only the advice of another service has: (service, what must not show in its
/// alerts). Exim's words come from `src/render/advice.rs` (`server_advertise_condition`,
/// `$received_port`, `exiqgrep`) plus the ACL an Exim admin would reach for.
const FOREIGN_ADVICE: &[(&str, &[&str])] = &[
    (
        "postfix",
        &[
            "exim",
            "server_advertise_condition",
            "received_port",
            "acl_smtp_auth",
            "exiqgrep",
            "auth_failure_delay",
            "doveadm",
        ],
    ),
    (
        "dovecot",
        &[
            "exim",
            "server_advertise_condition",
            "received_port",
            "acl_smtp_auth",
            "exiqgrep",
            "smtpd_sasl_auth_enable",
            "master.cf",
            "postfix reload",
            "postqueue",
        ],
    ),
];

/// What one alert of the agent must say: its Subject, the heading its commands follow, lines
/// of its service's advice, and the ready commands (each a line of its own).
struct Expected<'a> {
    subject: String,
    heading: &'a str,
    advice: &'a [&'a str],
    commands: Vec<String>,
}

/// Issue 15 end to end: run the real agent (`authwatch run --stdin --service SERVICE`) over
/// the log a real server wrote, with a per-IP threshold of 3 in 1h and an empty allowlist
/// (the attacks come from 127.0.0.1), and read the alerts from its outbox. Both logs hold five
/// failures from 127.0.0.1 (the third crosses the threshold), then alice's login from there,
/// so exactly two alerts come, in this order: the burst (`name`, e.g. `Postfix`, in its
/// Subject, `burst_advice` in its body) and the urgent login after failures
/// (`login_advice`). Each ends with the commands for 127.0.0.1 and its incident's ack, and no
/// alert shows another service's advice or any Exim text (`FOREIGN_ADVICE`).
fn assert_agent_alerts_with_service_advice(
    dir: &Path,
    service: &str,
    name: &str,
    server_log: &Path,
    burst_advice: &[&str],
    login_advice: &[&str],
) {
    let foreign = FOREIGN_ADVICE
        .iter()
        .find(|(s, _)| *s == service)
        .map(|(_, words)| *words)
        .unwrap_or_else(|| panic!("no foreign advice listed for {service}"));
    fs::create_dir_all(dir).unwrap();
    // No `time_zone`: the agent reads the syslog stamps in the system zone, as the servers
    // wrote them. The source is never read (`--stdin`).
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &format!(
            "state_dir: '{state}'\nhost: {{name: mx1.test, ip: 192.0.2.25}}\nsources: [{{path: '{unused}'}}]\ndetect: {{per_ip: {{attempts: 3, window: 1h}}}}\nallowlist: {{addresses: []}}\nmail: {{to: [admin@example.test]}}\n",
            state = dir.join("state").display(),
            unused = dir.join("unused.log").display(),
        ),
    );
    let log_text = fs::read(server_log).expect("reading the server's log");
    let out = run_stdin(&cfg, &["--service", service], &log_text);
    let err = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "authwatch run --stdin: {}\n{err}",
        out.status
    );
    let mails: Vec<Mail> = eml_files(&dir.join("state/outbox"))
        .iter()
        .map(|p| Mail::read(p))
        .collect();

    let ip_cmds = |kind: &str, key: &str, silence: bool| {
        let mut v = Vec::new();
        if silence {
            v.push("authwatch silence 127.0.0.1 --for 24h".to_string());
        }
        v.push("authwatch allow 127.0.0.1".to_string());
        v.push("authwatch unblock 127.0.0.1".to_string());
        v.push(format!(
            "authwatch ack {}",
            authwatch::control::incident_id(kind, key)
        ));
        v
    };
    let expected = [
        Expected {
            subject: format!("[authwatch] mx1.test: 127.0.0.1 3 failed {name} logins in 1h"),
            heading: "What you can do",
            advice: burst_advice,
            commands: ip_cmds("ip_burst", "127.0.0.1", true),
        },
        Expected {
            subject: format!(
                "[authwatch] mx1.test: URGENT: 127.0.0.1 logged in as alice via {name} after 5 failed attempts"
            ),
            heading: "What to do now",
            advice: login_advice,
            commands: ip_cmds("compromised", "127.0.0.1 alice", false),
        },
    ];
    let subjects: Vec<&str> = mails.iter().map(Mail::subject).collect();
    assert_eq!(
        subjects,
        expected
            .iter()
            .map(|e| e.subject.as_str())
            .collect::<Vec<_>>(),
        "{err}"
    );
    for (m, e) in mails.iter().zip(&expected) {
        assert_eq!(m.body_field("Service:"), Some(service), "{}", m.body);
        // The advice and the commands come in the section after the heading.
        let (_, todo) = m
            .body
            .split_once(e.heading)
            .unwrap_or_else(|| panic!("no {:?} in {}:\n{}", e.heading, e.subject, m.body));
        for line in e.advice {
            assert!(
                todo.lines().any(|l| l.trim() == *line),
                "{service} advice {line:?} missing from {}:\n{}",
                e.subject,
                m.body
            );
        }
        for cmd in &e.commands {
            assert!(
                todo.lines().any(|l| l.trim() == cmd),
                "command {cmd:?} missing from {}:\n{}",
                e.subject,
                m.body
            );
        }
        let whole = format!("{}\n{}", m.subject(), m.body).to_lowercase();
        for word in foreign {
            assert!(
                !whole.contains(&word.to_lowercase()),
                "{word:?} in a {service} alert ({}):\n{}",
                e.subject,
                m.body
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Servers

struct Dovecot {
    dir: PathBuf,
    info: serde_json::Value,
}

impl Dovecot {
    fn available() -> Result<(), String> {
        if !Path::new("/usr/sbin/dovecot").exists() {
            return Err("/usr/sbin/dovecot is not installed (run .ci/install-test-deps)".into());
        }
        if !is_root() {
            return Err("dovecot_ctl.py needs root".into());
        }
        Ok(())
    }

    fn start(dir: &Path, verbose: bool) -> Dovecot {
        let mut d = Dovecot {
            dir: dir.to_path_buf(),
            info: serde_json::Value::Null,
        };
        let dir_s = dir.to_str().unwrap();
        let mut args = vec!["start", dir_s];
        if verbose {
            args.push("--verbose");
        }
        let out = run_ctl("dovecot_ctl.py", &args);
        d.info = serde_json::from_str(out.trim()).expect("dovecot_ctl.py start prints JSON");
        d
    }

    fn log(&self) -> PathBuf {
        PathBuf::from(self.info["log"].as_str().unwrap())
    }

    fn auth_socket(&self) -> &str {
        self.info["auth_socket"].as_str().unwrap()
    }

    /// One connection, one failed attempt per user, then logout.
    fn fail(&self, proto: &str, users: &[&str]) {
        let mut args = vec!["fail", self.dir.to_str().unwrap(), "--proto", proto];
        for u in users {
            args.extend(["--user", u]);
        }
        run_ctl("dovecot_ctl.py", &args);
    }

    fn login(&self, proto: &str) {
        run_ctl(
            "dovecot_ctl.py",
            &["login", self.dir.to_str().unwrap(), "--proto", proto],
        );
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("python3")
            .arg(support("dovecot_ctl.py"))
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
        if std::thread::panicking() {
            for f in ["log/dovecot.log", "log/daemon.stderr"] {
                eprintln!("----- dovecot {f}:\n{}", read_text(&self.dir.join(f)));
            }
        }
    }
}

struct Postfix {
    dir: PathBuf,
    info: serde_json::Value,
}

impl Postfix {
    fn available() -> Result<(), String> {
        Dovecot::available()?;
        let unpacked = Path::new("/var/cache/authwatch-tests");
        let cached = fs::read_dir(unpacked).is_ok_and(|mut d| {
            d.any(|e| e.is_ok_and(|e| e.path().join("usr/lib/postfix/sbin/master").exists()))
        });
        if !cached && !Path::new("/usr/bin/apt-get").exists() {
            return Err("no unpacked Postfix and no apt-get to fetch one".into());
        }
        Ok(())
    }

    fn start(dir: &Path, sasl_path: &str) -> Postfix {
        let mut p = Postfix {
            dir: dir.to_path_buf(),
            info: serde_json::Value::Null,
        };
        let out = run_ctl(
            "postfix_ctl.py",
            &["start", dir.to_str().unwrap(), "--sasl-path", sasl_path],
        );
        p.info = serde_json::from_str(out.trim()).expect("postfix_ctl.py start prints JSON");
        p
    }

    fn log(&self) -> PathBuf {
        PathBuf::from(self.info["log"].as_str().unwrap())
    }

    fn auth(&self, extra: &[&str], users: &[&str]) {
        let mut args = vec!["auth", self.dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        for u in users {
            args.extend(["--user", u]);
        }
        run_ctl("postfix_ctl.py", &args);
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("python3")
            .arg(support("postfix_ctl.py"))
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
        if std::thread::panicking() {
            for f in ["log/postfix.log", "log/daemon.stderr"] {
                eprintln!("----- postfix {f}:\n{}", read_text(&self.dir.join(f)));
            }
        }
    }
}

/// A private Exim accepting junk HELO names (`exim_ctl.py start --helo-accept-junk`); stopped
/// on drop.
struct JunkHeloExim {
    dir: PathBuf,
    port: String,
}

impl JunkHeloExim {
    fn available() -> Result<(), String> {
        if !Path::new("/usr/sbin/exim4").exists() {
            return Err("/usr/sbin/exim4 is not installed (run .ci/install-test-deps)".into());
        }
        if !is_root() {
            return Err("exim_ctl.py needs root (exim4 -oP)".into());
        }
        Ok(())
    }

    fn start(dir: &Path, log_selector: &str) -> JunkHeloExim {
        let mut e = JunkHeloExim {
            dir: dir.to_path_buf(),
            port: String::new(),
        };
        let out = run_ctl(
            "exim_ctl.py",
            &[
                "start",
                dir.to_str().unwrap(),
                "--helo-accept-junk",
                "--log-selector",
                log_selector,
            ],
        );
        e.port = out.trim().to_string();
        e
    }

    fn mainlog(&self) -> PathBuf {
        self.dir.join("log/mainlog")
    }

    /// `count` failed AUTH PLAIN attempts on one connection, from 127.0.0.1, after `EHLO helo`.
    fn fail(&self, helo: &str, user: &str, count: u32) {
        let count = count.to_string();
        run_ctl(
            "exim_fail_auth.py",
            &[
                "--port",
                &self.port,
                "--user",
                user,
                "--helo",
                helo,
                "--count",
                &count,
                "--per-connection",
                &count,
            ],
        );
    }
}

impl Drop for JunkHeloExim {
    fn drop(&mut self) {
        let _ = Command::new("python3")
            .arg(support("exim_ctl.py"))
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
        if std::thread::panicking() {
            for f in ["log/mainlog", "log/paniclog", "log/daemon.stderr"] {
                eprintln!("----- exim {f}:\n{}", read_text(&self.dir.join(f)));
            }
        }
    }
}

/// A HELO that writes a complete-looking failure for 198.51.100.123 in front of the real peer
/// (issue 14 point 2).
const JUNK_HELO: &str = "a) [198.51.100.123]:2: 535 Incorrect authentication data x";

/// A username that copies Dovecot's own elements, to move the blame to 9.9.9.9 if it could.
const HOSTILE_DOVECOT: &str = "x>, method=PLAIN, rip=9.9.9.9, lip=8.8.8.8, session=<abc";

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn real_dovecot_summary_lines() {
    if !require("real_dovecot_summary_lines", Dovecot::available()) {
        return;
    }
    let started = Instant::now();
    let tmp = tempdir();
    let dovecot = Dovecot::start(&tmp.path().join("dovecot"), false);
    let log = dovecot.log();
    dovecot.fail("imap", &["alice", "alice", "bob"]);
    dovecot.fail("pop3", &["carol", HOSTILE_DOVECOT]);
    dovecot.login("imap");
    wait_for("Dovecot's summary and login lines", || {
        (count_lines(&log, "(auth failed,") == 2 && count_lines(&log, " Login: ") == 1)
            .then_some(())
    });

    let hits = parse_file(&["dovecot"], &log);
    assert_all_local(&hits, "dovecot", &log);
    let got: Vec<(Option<&str>, u32, HitKind)> = hits
        .iter()
        .map(|h| (h.user.as_deref(), h.attempts, h.kind))
        .collect();
    // Dovecot logs the last username of the connection, as its auth process returned it
    // (lower-cased by passwd-file's default username_format).
    assert_eq!(
        got,
        vec![
            (Some("bob"), 3, HitKind::Failure),
            (
                Some(HOSTILE_DOVECOT.to_lowercase().as_str()),
                2,
                HitKind::Failure
            ),
            (Some("alice"), 1, HitKind::Success),
        ],
        "log:\n{}",
        read_text(&log)
    );

    // Issue 15: the agent's alert about this log is a Dovecot alert with Dovecot's advice.
    assert_agent_alerts_with_service_advice(
        &tmp.path().join("agent"),
        "dovecot",
        "Dovecot",
        &log,
        &[
            "auth_failure_delay = 5 secs",
            "(default 2 secs) and run: doveadm reload",
        ],
        &["Reset the password of alice now.", "doveadm kick alice"],
    );
    eprintln!("real_dovecot_summary_lines: {:?}", started.elapsed());
}

#[test]
fn real_dovecot_auth_verbose_counts_each_attempt_once() {
    if !require(
        "real_dovecot_auth_verbose_counts_each_attempt_once",
        Dovecot::available(),
    ) {
        return;
    }
    let started = Instant::now();
    let tmp = tempdir();
    let dovecot = Dovecot::start(&tmp.path().join("dovecot"), true);
    let log = dovecot.log();
    dovecot.fail("imap", &["alice", "alice", "bob"]);
    dovecot.fail("pop3", &["carol", HOSTILE_DOVECOT]);
    wait_for("Dovecot's summary lines", || {
        (count_lines(&log, "(auth failed,") == 2).then_some(())
    });
    // The log holds each attempt twice: once per attempt, once in its summary.
    assert_eq!(
        count_lines(&log, "auth: Info: passwd-file("),
        5,
        "auth_verbose lines:\n{}",
        read_text(&log)
    );

    let hits = parse_file(&["dovecot"], &log);
    assert_all_local(&hits, "dovecot", &log);
    let total: u32 = failures(&hits).iter().map(|h| h.attempts).sum();
    assert_eq!(total, 5, "5 attempts, each counted once: {hits:#?}");
    // Counted as they came: one hit per attempt, none left for the summaries.
    assert!(hits.iter().all(|h| h.attempts == 1), "{hits:#?}");
    let users: Vec<Option<&str>> = hits.iter().map(|h| h.user.as_deref()).collect();
    let hostile = HOSTILE_DOVECOT.to_lowercase();
    assert_eq!(
        users,
        vec![
            Some("alice"),
            Some("alice"),
            Some("bob"),
            Some("carol"),
            Some(hostile.as_str())
        ]
    );
    eprintln!(
        "real_dovecot_auth_verbose_counts_each_attempt_once: {:?}",
        started.elapsed()
    );
}

#[test]
fn real_postfix_with_dovecot_sasl() {
    if !require("real_postfix_with_dovecot_sasl", Postfix::available()) {
        return;
    }
    let started = Instant::now();
    let tmp = tempdir();
    // auth_verbose on: Dovecot then logs its own line for every SMTP attempt too.
    let dovecot = Dovecot::start(&tmp.path().join("dovecot"), true);
    let postfix = Postfix::start(&tmp.path().join("postfix"), dovecot.auth_socket());
    let log = postfix.log();
    let hostile = "x, sasl_username=root [9.9.9.9]: SASL 535 rip=9.9.9.9";
    postfix.auth(&[], &["alice", hostile]);
    postfix.auth(&["--mech", "LOGIN"], &["bob"]);
    // The second smtpd's auth server hangs up: "Connection lost to authentication server".
    postfix.auth(&["--lost"], &["alice", "dave"]);
    postfix.auth(&["--password", "secret", "--send"], &["alice"]);
    wait_for("Postfix's SASL and client= lines", || {
        (count_lines(&log, "authentication failed") == 5
            && count_lines(&log, "sasl_username=alice") >= 2
            && count_lines(&log, ": client=") == 1)
            .then_some(())
    });

    let hits = parse_file(&["postfix"], &log);
    assert_all_local(&hits, "postfix", &log);
    let got: Vec<(Option<&str>, u32, HitKind)> = hits
        .iter()
        .map(|h| (h.user.as_deref(), h.attempts, h.kind))
        .collect();
    // Postfix logs the username Dovecot returns (lower-cased); a lost connection has none.
    let hostile_logged = hostile.to_lowercase();
    assert_eq!(
        got,
        vec![
            (Some("alice"), 1, HitKind::Failure),
            (Some(hostile_logged.as_str()), 1, HitKind::Failure),
            (Some("bob"), 1, HitKind::Failure),
            (None, 1, HitKind::Failure),
            (None, 1, HitKind::Failure),
            (Some("alice"), 1, HitKind::Success),
        ],
        "log:\n{}",
        read_text(&log)
    );
    assert_eq!(
        count_lines(&log, "Connection lost to authentication server"),
        2
    );

    // Dovecot logged the three SMTP attempts it checked, without a session id: its rule must
    // not count them again, also when both logs are one file (a shared mail.log).
    let dlog = dovecot.log();
    assert_eq!(
        count_lines(&dlog, "auth: Info: passwd-file("),
        3,
        "{}",
        read_text(&dlog)
    );
    assert!(parse_file(&["dovecot"], &dlog).is_empty());
    let shared = tmp.path().join("mail.log");
    fs::write(&shared, read_text(&dlog) + &read_text(&log)).unwrap();
    let all = parse_file(&["postfix", "dovecot"], &shared);
    let total: u32 = failures(&all).iter().map(|h| h.attempts).sum();
    assert_eq!(total, 5, "{all:#?}");

    // Issue 15: the agent's alert about Postfix's log is a Postfix alert with Postfix's advice.
    assert_agent_alerts_with_service_advice(
        &tmp.path().join("agent"),
        "postfix",
        "Postfix",
        &log,
        &[
            "and in /etc/postfix/master.cf, only under the submission and smtps services:",
            "smtpd_sasl_auth_enable = no",
            "-o smtpd_sasl_auth_enable=yes",
        ],
        &["Reset the password of alice now.", "postqueue -p"],
    );
    eprintln!("real_postfix_with_dovecot_sasl: {:?}", started.elapsed());
}

/// Issue 14 point 2 on a real Exim: with `helo_accept_junk_hosts = *` the HELO text lands in
/// the failure line verbatim, in front of the real `[127.0.0.1]`; every rule together blames
/// 127.0.0.1 for each attempt and never the HELO's 198.51.100.123. Run with Exim's default log
/// selectors and with `+all` (ports, `I=`, pid, milliseconds).
fn real_exim_helo_junk(test: &str, log_selector: &str) {
    if !require(test, JunkHeloExim::available()) {
        return;
    }
    let tmp = tempdir();
    let exim = JunkHeloExim::start(&tmp.path().join("exim"), log_selector);
    let log = exim.mainlog();
    exim.fail(JUNK_HELO, "alice", 3);
    wait_for("Exim's three failure lines", || {
        (count_lines(&log, "authenticator failed for") == 3).then_some(())
    });
    // The attack really reached the log: each failure line holds the HELO's address before
    // the real one.
    let text = read_text(&log);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("authenticator failed for"))
        .collect();
    for l in &lines {
        let fake = l
            .find("[198.51.100.123]")
            .expect("the junk HELO is in the line");
        let real = l.find("[127.0.0.1]").expect("the peer is in the line");
        assert!(fake < real, "{l}");
        if log_selector == "+all" {
            assert!(l.contains(" I=[127.0.0.1]:"), "{l}");
        }
    }

    let all: Vec<&str> = authwatch::rules::BUILTIN.to_vec();
    let hits = parse_file(&all, &log);
    assert!(
        hits.iter()
            .all(|h| h.ip != "198.51.100.123".parse::<IpAddr>().unwrap()),
        "blamed the HELO's address: {hits:?}"
    );
    assert_all_local(&hits, "exim", &log);
    let fails = failures(&hits);
    assert_eq!(fails.len(), 3, "{hits:?}\nlog:\n{text}");
    for h in fails {
        assert_eq!(h.user.as_deref(), Some("alice"), "{h:?}");
        assert_eq!(h.attempts, 1, "{h:?}");
    }
}

#[test]
fn real_exim_helo_junk_blames_the_peer() {
    real_exim_helo_junk("real_exim_helo_junk_blames_the_peer", "");
}

#[test]
fn real_exim_helo_junk_blames_the_peer_with_log_selector_all() {
    real_exim_helo_junk(
        "real_exim_helo_junk_blames_the_peer_with_log_selector_all",
        "+all",
    );
}
