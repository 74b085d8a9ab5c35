//! Integration tests: the `authwatch` binary against real servers on loopback (an aiosmtpd sink
//! in plain, STARTTLS and implicit-TLS mode, and a real Exim), plus `check` and the embedded
//! default config. Each test uses its own temp folder and ports, so they run in parallel.
//! The harness (`tests/harness/`) stops every process it started, also when a test fails, and
//! then prints the captured output.

mod actions;
mod admin;
mod durability;
mod fleet;
mod harness;
mod journal;
mod mail;
mod metrics;
mod packaging;
mod policy;
mod scan;
mod services;
mod stdin;

use harness::*;
use std::fs;
use std::path::Path;
use std::time::Duration;

/// The config every agent test starts from; `mail_extra` goes under `mail:` (indented by 2).
fn config_yaml(dir: &Path, log: &Path, start: &str, mail_extra: &str) -> String {
    format!(
        r#"state_dir: '{state}'
host: {{name: mx1.test, ip: 192.0.2.25}}
time_zone: UTC
sources:
  - path: '{log}'
    start: {start}
follow: {{poll_interval: 50ms}}
detect: {{per_ip: {{attempts: 5, window: 10m}}}}
alerts: {{cooldown: 1h}}
mail:
  from: "authwatch <authwatch@mx1.test>"
  to: [admin@example.test, second@example.test]
{mail_extra}"#,
        state = dir.join("state").display(),
        log = log.display(),
    )
}

/// Assert what every alert about `ip` with `attempts` attempts in the window says.
fn assert_alert(m: &Mail, ip: &str, attempts: u64, total: u64, host_name: &str) {
    let subject = m.subject();
    assert_eq!(
        subject,
        format!("[authwatch] {host_name}: {ip} {attempts} failed Exim logins in 10m"),
        "subject of {}",
        m.source.display()
    );
    assert!(
        m.body
            .starts_with("Automatic alert from authwatch - DO NOT reply\n"),
        "first line of the body:\n{}",
        m.body
    );
    assert_eq!(m.attacking_ip(), ip, "body:\n{}", m.body);
    assert_eq!(
        m.body_field("Total attempts so far:"),
        Some(total.to_string().as_str()),
        "body:\n{}",
        m.body
    );
    assert!(
        m.body.contains(&format!("Host Name:  {host_name}\n")),
        "host name missing:\n{}",
        m.body
    );
    assert!(
        m.body.contains(&format!(
            "nft add element inet authwatch blocked4 {{ {ip} timeout 1h }}"
        )) && m
            .body
            .contains(&format!("authwatch silence {ip} --for 24h")),
        "nft command missing:\n{}",
        m.body
    );
    assert!(
        m.header("Message-ID").is_some(),
        "no Message-ID:\n{}",
        m.raw
    );
    assert!(m.header("Date").is_some(), "no Date:\n{}", m.raw);
    assert_eq!(
        m.header("Auto-Submitted"),
        Some("auto-generated"),
        "headers:\n{}",
        m.raw
    );
}

#[test]
fn alert_arrives_once_via_smtp_and_cooldown_holds() {
    let tmp = tempdir();
    let dir = tmp.path();
    let sink = Sink::start(dir, &["--tls", "none"]);
    let log = LogWriter::new(dir.join("mainlog"));
    let t0 = now_unix() - 120;
    // The log exists before the agent starts, with traffic and also four failures from the IP
    // the test attacks with: with `start: end` these must not count (if they did, the first
    // appended failure would already make five).
    let mut before = exim_noise(t0);
    for _ in 0..4 {
        before.push(exim_fail(t0, "203.0.113.7", "old"));
    }
    log.append(&before);
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config_yaml(
            dir,
            &log.path,
            "end",
            &format!(
                "  smtp: {{host: 127.0.0.1, port: {}, tls: none, timeout: 10s}}\n",
                sink.port
            ),
        ),
    );
    let mut agent = Agent::run(&cfg);
    agent.wait_following(&log);

    // Four failures: below the threshold. A marker burst from another IP follows; its alert
    // proves the four were processed (lines and mails are handled in order) without mail.
    let t = t0 + 10;
    log.append(&[
        exim_fail(t, "203.0.113.7", "alice"),
        exim_fail_all(t + 1, "203.0.113.7", 50001, "bob"),
        exim_fail(t + 2, "203.0.113.7", "alice"),
        exim_fail(t + 3, "203.0.113.7", "bob"),
    ]);
    log.append(&exim_noise(t + 3));
    let marker: Vec<String> = (0..5)
        .map(|i| exim_fail(t + 4, "198.51.100.50", &format!("m{i}")))
        .collect();
    log.append(&marker);
    let mails = sink.wait_mails(1);
    assert_eq!(mails.len(), 1, "only the marker alert may exist");
    assert_eq!(
        mails[0].mail.attacking_ip(),
        "198.51.100.50",
        "4 failures from 203.0.113.7 must not alert"
    );

    // The fifth failure, written in two write() calls with a pause longer than the poll
    // interval between them, cut inside the IP: a tailer that hands out the half line would
    // lose this attempt (and the IP), and no alert would come.
    let fifth = exim_fail(t + 5, "203.0.113.7", "alice");
    let cut = fifth.find("113.7]").expect("ip in line") + 2;
    log.append_split(&fifth, cut, Duration::from_millis(300));
    let mails = sink.wait_mails(2);
    assert_eq!(mails.len(), 2, "exactly one alert for the burst");
    let first = &mails[1];
    assert_alert(&first.mail, "203.0.113.7", 5, 5, "mx1.test");
    assert_eq!(
        first.rcpt_tos(),
        vec!["admin@example.test", "second@example.test"],
        "envelope: {}",
        first.envelope
    );
    assert_eq!(first.envelope["mail_from"], "authwatch@mx1.test");
    let body = &first.mail.body;
    assert!(body.contains("IP Address: 192.0.2.25\n"), "{body}");
    assert_eq!(
        first.mail.accounts(),
        vec![(3, "alice".to_string()), (2, "bob".to_string())],
        "accounts tried:\n{body}"
    );
    assert!(
        !body.contains("set_id=old"),
        "pre-start lines were read:\n{body}"
    );

    // Within the cooldown: ten more failures from 203.0.113.7 send nothing; a later burst from
    // 198.51.100.9 alerts, and since lines and mails are handled in order, once its alert is
    // here any mail about 203.0.113.7 would be too.
    let more: Vec<String> = (0..10)
        .map(|i| exim_fail(t + 10 + i, "203.0.113.7", "carol"))
        .collect();
    log.append(&more);
    let burst: Vec<String> = (0..5)
        .map(|i| exim_fail(t + 30 + i, "198.51.100.9", "root"))
        .collect();
    log.append(&burst);
    let mails = sink.wait_mails(3);
    assert_eq!(mails.len(), 3, "one more mail only");
    assert_alert(&mails[2].mail, "198.51.100.9", 5, 5, "mx1.test");
    let about_first: Vec<_> = mails
        .iter()
        .filter(|m| m.mail.attacking_ip() == "203.0.113.7")
        .collect();
    assert_eq!(about_first.len(), 1, "cooldown must hold for 203.0.113.7");

    // SIGTERM: exit 0, and nothing was left queued that shows up now.
    let st = agent.stop();
    assert!(st.success(), "authwatch exited with {st} after SIGTERM");
    assert_eq!(sink.mails().len(), 3);
}

#[test]
fn hostile_set_id_never_blames_the_named_ip() {
    let tmp = tempdir();
    let dir = tmp.path();
    let log = LogWriter::new(dir.join("mainlog"));
    let t = now_unix() - 60;
    let hostile = [
        "x) [198.51.100.77]:25: 535 Incorrect authentication data",
        "bob smith) [198.51.100.77]: 535 Incorrect authentication data (set_id=root",
        "[198.51.100.77]",
        "admin (evil) [198.51.100.77]:587 I=[192.0.2.25]:25: 535 Incorrect authentication data (set_id=x)",
        "x) authenticator failed for (y) [198.51.100.77]:25: 535 Incorrect authentication data",
    ];
    let mut lines = exim_noise(t);
    for (i, sid) in hostile.iter().enumerate() {
        let t = t + i as i64;
        if i % 2 == 0 {
            lines.push(exim_fail(t, "203.0.113.8", sid));
        } else {
            lines.push(exim_fail_all(t, "203.0.113.8", 40000 + i as u16, sid));
        }
    }
    // Marker burst: once its alert exists, every earlier line has been handled.
    for i in 0..5 {
        lines.push(exim_fail(t + 10 + i, "198.51.100.60", "marker"));
    }
    log.append(&lines);
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config_yaml(dir, &log.path, "beginning", ""),
    );
    let mut agent = Agent::run(&cfg);
    let outbox = dir.join("state/outbox");
    let mails = wait_outbox(&outbox, 2);
    let ips: Vec<&str> = mails.iter().map(|m| m.attacking_ip()).collect();
    assert_eq!(
        ips,
        vec!["203.0.113.8", "198.51.100.60"],
        "alerts (in order) should name the connecting IP only"
    );
    assert_alert(&mails[0], "203.0.113.8", 5, 5, "mx1.test");
    for m in &mails {
        assert!(
            !m.subject().contains("198.51.100.77"),
            "subject blames the IP named in set_id: {}",
            m.subject()
        );
    }
    let st = agent.stop();
    assert!(st.success(), "exit after SIGTERM: {st}");
    assert_eq!(eml_files(&outbox).len(), 2, "no further alerts");
}

/// A TLS sink requiring AUTH, an agent using it with password_file and ca_file; the alert must
/// arrive authenticated over TLS, and the password must not show in the (debug) log.
fn tls_with_auth(mode: &str) {
    let tmp = tempdir();
    let dir = tmp.path();
    let st = std::process::Command::new("bash")
        .arg(support("make_cert.sh"))
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running make_cert.sh");
    assert!(st.success(), "make_cert.sh failed: {st}");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let password = "s3cret";
    let sink = Sink::start(
        dir,
        &[
            "--tls",
            mode,
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--auth-user",
            "aw",
            "--auth-password",
            password,
        ],
    );
    let pw_file = write_file(dir, "smtp-password", &format!("{password}\n"));
    let log = LogWriter::new(dir.join("mainlog"));
    let t = now_unix() - 30;
    let burst: Vec<String> = (0..5)
        .map(|i| exim_fail(t + i, "203.0.113.9", "info@example.com"))
        .collect();
    log.append(&burst);
    let cfg = write_file(
        dir,
        "authwatch.yaml",
        &config_yaml(
            dir,
            &log.path,
            "beginning",
            &format!(
                "  smtp:\n    host: 127.0.0.1\n    port: {}\n    tls: {mode}\n    username: aw\n    password_file: smtp-password\n    ca_file: cert.pem\n    timeout: 10s\n",
                sink.port
            ),
        ),
    );
    assert!(pw_file.exists());
    let mut agent = Agent::run(&cfg);
    let mails = sink.wait_mails(1);
    let m = &mails[0];
    assert_eq!(m.envelope["auth_user"], "aw", "envelope: {}", m.envelope);
    assert_eq!(m.envelope["tls"], mode, "envelope: {}", m.envelope);
    assert_alert(&m.mail, "203.0.113.9", 5, 5, "mx1.test");
    assert_eq!(m.mail.accounts(), vec![(5, "info@example.com".to_string())]);
    let st = agent.stop();
    assert!(st.success(), "exit after SIGTERM: {st}");
    let log_text = agent.stderr_text();
    for secret in [
        password.to_string(),
        encode_base64(password.as_bytes()),
        encode_base64(format!("\0aw\0{password}").as_bytes()),
    ] {
        assert!(
            !log_text.contains(&secret),
            "the agent's log (--log-level debug) contains the SMTP password as {secret:?}"
        );
    }
    assert_eq!(sink.mails().len(), 1);
}

#[test]
fn starttls_with_auth() {
    tls_with_auth("starttls");
}

#[test]
fn implicit_tls_with_auth() {
    tls_with_auth("tls");
}

#[test]
fn real_exim_end_to_end() {
    if let Err(why) = Exim::available() {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but the real-Exim test cannot run: {why}");
        }
        eprintln!("SKIPPED real_exim_end_to_end: {why}");
        return;
    }
    let tmp = tempdir();
    let dir = tmp.path();
    let exim = Exim::start(&dir.join("exim"));
    let mainlog = exim.mainlog();
    wait_for("Exim's mainlog", || mainlog.exists().then_some(()));
    // Exim writes local time; the agent's `time_zone` defaults to the system zone, the one
    // Exim uses (exim_ctl.py starts it without TZ), so `time_zone` is left out here.
    let agent_dir = dir.join("agent");
    fs::create_dir_all(&agent_dir).unwrap();
    let cfg = write_file(
        &agent_dir,
        "authwatch.yaml",
        &format!(
            r#"state_dir: '{state}'
sources:
  - path: '{log}'
    start: end
follow: {{poll_interval: 50ms}}
detect: {{per_ip: {{attempts: 5, window: 10m}}}}
mail:
  from: "authwatch <authwatch@agent.test>"
  to: [admin@mx.test]
  smtp: {{host: 127.0.0.1, port: {port}, tls: none, timeout: 10s}}
"#,
            state = agent_dir.join("state").display(),
            log = mainlog.display(),
            port = exim.port,
        ),
    );
    let mut agent = Agent::run(&cfg);
    // The probe lines the harness appends to Exim's log come from 192.0.2.x, not 127.0.0.1.
    agent.wait_following(&LogWriter::new(&mainlog));

    let out = std::process::Command::new("python3")
        .arg(support("exim_fail_auth.py"))
        .args(["--port", &exim.port.to_string(), "--user", "alice"])
        .args(["--count", "5", "--per-connection", "5"])
        .output()
        .expect("running exim_fail_auth.py");
    assert!(
        out.status.success(),
        "exim_fail_auth.py: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let new = exim.maildir_new("admin");
    let file = wait_for("the alert in Exim's Maildir/admin/new", || {
        plain_files(&new).into_iter().next()
    });
    let m = Mail::read(&file);
    let host_name = fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("host name")
        .trim()
        .to_string();
    assert_alert(&m, "127.0.0.1", 5, 5, &host_name);
    assert_eq!(m.accounts(), vec![(5, "alice".to_string())], "{}", m.body);
    // The window and "First seen" use Exim's stamps read in the configured zone: the first
    // failure's stamp as Exim wrote it must be what the alert shows.
    let mainlog_text = fs::read_to_string(&mainlog).expect("reading Exim's mainlog");
    let first_fail = mainlog_text
        .lines()
        .find(|l| l.contains("authenticator failed for") && l.contains("[127.0.0.1]"))
        .expect("Exim logged the failures");
    let first_seen = m.body_field("First seen:").expect("First seen line");
    assert!(
        first_seen.starts_with(&first_fail[..19]),
        "First seen {first_seen:?} is not Exim's stamp {:?} (time zone mismatch?)",
        &first_fail[..19]
    );
    let st = agent.stop();
    assert!(st.success(), "exit after SIGTERM: {st}");
    assert_eq!(plain_files(&new).len(), 1, "exactly one alert delivered");
}

#[test]
fn check_command() {
    let tmp = tempdir();
    let dir = tmp.path();
    let log = dir.join("mainlog");
    fs::write(&log, "").unwrap();
    let good = write_file(dir, "good.yaml", &config_yaml(dir, &log, "end", ""));
    let (code, out, err) = run_to_end(&["check", "--config", good.to_str().unwrap()], dir);
    assert_eq!(code, Some(0), "check of a good config:\n{out}\n{err}");

    // A source path that does not exist, or is a folder: a config error naming it and the fix.
    for (path, want) in [
        (dir.join("no-such.log"), "does not exist: check the path"),
        (dir.to_path_buf(), "is a folder"),
    ] {
        let cfg = write_file(dir, "src.yaml", &config_yaml(dir, &path, "end", ""));
        let (code, out, err) = run_to_end(&["check", "--config", cfg.to_str().unwrap()], dir);
        assert_eq!(code, Some(78), "check of {}:\n{out}\n{err}", path.display());
        assert!(
            err.contains(&format!("source {}: {want}", path.display())),
            "{err}"
        );
    }

    // An unknown key (line 7, column 5) and a bad duration (line 9, column 13, where the
    // value starts) in one file: both reported, with their fields.
    let bad_text = format!(
        "state_dir: '{}'\nsources:\n  - path: '{}'\n    start: end\ndetect:\n  per_ip:\n    atempts: 5\nalerts:\n  cooldown: an hour\nmail:\n  to: [admin@example.test]\n",
        dir.join("state").display(),
        log.display()
    );
    let bad = write_file(dir, "bad.yaml", &bad_text);
    let bad_s = bad.to_str().unwrap();
    let (code, out, err) = run_to_end(&["check", "--config", bad_s], dir);
    assert_eq!(code, Some(78), "check of a bad config:\n{out}\n{err}");
    let re = regex::Regex::new(&format!(
        r"(?m){}:(\d+):(\d+): (\S+): (.*)$",
        regex::escape(bad_s)
    ))
    .unwrap();
    let found: Vec<(u32, u32, String, String)> = re
        .captures_iter(&err)
        .map(|c| {
            (
                c[1].parse().unwrap(),
                c[2].parse().unwrap(),
                c[3].to_string(),
                c[4].to_string(),
            )
        })
        .collect();
    let unknown = found.iter().find(|(_, _, _, msg)| msg.contains("atempts"));
    assert!(
        matches!(unknown, Some((7, 5, f, _)) if f == "detect.per_ip.atempts"),
        "unknown key not reported as {bad_s}:7:5: detect.per_ip.atempts:\n{err}"
    );
    let duration = found
        .iter()
        .find(|(_, _, field, _)| field == "alerts.cooldown");
    assert!(
        matches!(duration, Some((9, 13, _, _))),
        "bad duration not reported as {bad_s}:9:13: alerts.cooldown:\n{err}"
    );

    // A template with a variable no alert has.
    let tpl = dir.join("templates");
    write_file(
        &tpl,
        "ip_burst.body.txt",
        "Automatic alert\n{{ ip }} from {{ attacker_country }}\n",
    );
    let with_tpl = write_file(
        dir,
        "tpl.yaml",
        &format!(
            "{}templates_dir: templates\n",
            config_yaml(dir, &log, "end", "")
        ),
    );
    let (code, out, err) = run_to_end(&["check", "--config", with_tpl.to_str().unwrap()], dir);
    assert_eq!(code, Some(78), "check with a bad template:\n{out}\n{err}");
    assert!(
        err.contains("ip_burst.body.txt") && err.contains("attacker_country"),
        "template problem not named:\n{err}"
    );

    let (code, out, err) = run_to_end(&["frobnicate"], dir);
    assert_eq!(code, Some(64), "unknown subcommand:\n{out}\n{err}");
}

#[test]
fn embedded_default_writes_outbox() {
    let tmp = tempdir();
    let dir = tmp.path();
    let sample = fs::read_to_string(repo_file("samples/exim-mainlog")).expect("sample log");
    // A marker burst after the sample: once its alert is written, the whole sample has been
    // handled, so "exactly one alert about 203.0.113.47" is a settled count.
    let mut text = sample.clone();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    for i in 0..5 {
        text.push_str(&format!(
            "2026-11-23 03:30:0{i} PLAIN authenticator failed for (m) [198.51.100.70]: 535 Incorrect authentication data (set_id=marker)\n"
        ));
    }
    write_file(dir, "samples/exim-mainlog", &text);
    let mut agent = Agent::spawn(&["run"], dir, dir);
    let outbox = dir.join("authwatch-state/outbox");
    let mails = wait_outbox(&outbox, 2);
    let about: Vec<&Mail> = mails
        .iter()
        .filter(|m| m.attacking_ip() == "203.0.113.47")
        .collect();
    assert_eq!(about.len(), 1, "exactly one alert about 203.0.113.47");
    assert_eq!(mails.len(), 2);
    assert!(about[0].subject().contains("203.0.113.47"));
    assert_eq!(about[0].body_field("Total attempts so far:"), Some("5"));
    let st = agent.stop();
    assert!(st.success(), "exit after SIGTERM: {st}");
    assert_eq!(eml_files(&outbox).len(), 2);
}

#[test]
fn sigterm_exits_cleanly() {
    // An idle agent (nothing to read, nothing queued) stops at once with status 0.
    let tmp = tempdir();
    let dir = tmp.path();
    let log = dir.join("mainlog");
    fs::write(&log, "").unwrap();
    let cfg = write_file(dir, "authwatch.yaml", &config_yaml(dir, &log, "end", ""));
    let mut agent = Agent::run(&cfg);
    agent.wait_following(&LogWriter::new(&log));
    let st = agent.stop();
    assert_eq!(st.code(), Some(0), "exit after SIGTERM: {st}");
}
