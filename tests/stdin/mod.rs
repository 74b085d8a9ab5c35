//! `authwatch run --stdin`: lines from a pipe instead of the configured sources. The agent
//! alerts as it reads and ends by itself after the last line, with its alerts spooled.

use crate::harness::{bin, eml_files, exim_fail, now_unix, Mail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A config whose own source is a file that never gets a line: with `--stdin` it is not read.
pub fn stdin_config(dir: &Path, extra: &str) -> PathBuf {
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: '{state}'\nhost: {{name: mx1.test, ip: 192.0.2.25}}\ntime_zone: UTC\nsources: [{{path: '{unused}'}}]\nmail: {{to: [admin@example.test]}}\n{extra}",
            state = dir.join("state").display(),
            unused = dir.join("unused.log").display(),
        ),
    )
    .unwrap();
    cfg
}

/// Run `authwatch run --config CFG --stdin ARGS` with `input` on its stdin, to its end.
pub fn run_stdin(cfg: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(bin())
        .args(["run", "--config", cfg.to_str().unwrap(), "--stdin"])
        .args(args)
        .args(["--log-level", "debug"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting authwatch");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn run_stdin_alerts_and_ends_with_its_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cfg = stdin_config(dir, "");
    let t = now_unix();
    let mut input = String::new();
    for i in 0..6 {
        input.push_str(&exim_fail(t + i, "203.0.113.47", "info@example.com"));
        input.push('\n');
    }
    // Below the threshold, and a line no rule knows.
    input.push_str(&exim_fail(t, "198.51.100.3", "bob"));
    input.push_str("\nsomething else entirely\n");
    let out = run_stdin(&cfg, &[], input.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{err}", out.status);
    assert!(err.contains("end of input; finishing"), "{err}");
    let files = eml_files(&dir.join("state").join("outbox"));
    assert_eq!(files.len(), 1, "{err}");
    let m = Mail::read(&files[0]);
    assert_eq!(m.attacking_ip(), "203.0.113.47");
    assert!(m.subject().contains(" 5 failed "), "{}", m.subject());
    // The configured file source was not followed.
    assert!(!err.contains("unused.log"), "{err}");

    // --service limits the rules: Exim lines are not read by the dovecot rule.
    let tmp2 = tempfile::tempdir().unwrap();
    let cfg2 = stdin_config(tmp2.path(), "");
    let out = run_stdin(&cfg2, &["--service", "dovecot"], input.as_bytes());
    assert!(out.status.success());
    assert!(eml_files(&tmp2.path().join("state").join("outbox")).is_empty());
    let out = run_stdin(&cfg2, &["--service", "nope"], b"");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown service \"nope\""));
}

#[test]
fn evictions_are_reported_at_stop_per_map() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // 30 addresses in 30 /64s, 30 accounts, one failure each, and room for 10 keys per map:
    // 20 evictions from each map, reported at the end although no minute has passed.
    let cfg = stdin_config(
        dir,
        "detect: {max_tracked_ips: 10, per_subnet: {enabled: true}, per_account: {enabled: true}}\n",
    );
    let t = now_unix();
    let mut input = String::new();
    for i in 0..30 {
        input.push_str(&exim_fail(
            t,
            &format!("2001:db8:{i:x}::1"),
            &format!("user{i}"),
        ));
        input.push('\n');
    }
    let out = run_stdin(&cfg, &[], input.as_bytes());
    let err = crate::harness::strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{}\n{err}", out.status);
    for map in ["IPs", "subnets", "accounts"] {
        let line = err
            .lines()
            .find(|l| l.contains(&format!("tracked {map} reached detect.max_tracked_ips")))
            .unwrap_or_else(|| panic!("no eviction warning for {map}:\n{err}"));
        assert!(
            line.contains("evicted=20") && line.contains("cap=10"),
            "{line}"
        );
    }
    let stopped = err
        .lines()
        .find(|l| l.contains("authwatch stopped"))
        .expect("stop line");
    for field in [
        "evicted_ips=20",
        "evicted_subnets=20",
        "evicted_accounts=20",
    ] {
        assert!(stopped.contains(field), "{field} in {stopped}");
    }
}
