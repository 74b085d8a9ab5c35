//! The journal source against the real `journalctl`, reading a journal file made in the test:
//! entries are written in the journal export format and turned into a `.journal` file by
//! `systemd-journal-remote` (Debian package `systemd-journal-remote`, installed by
//! `.ci/install-test-deps`); appending more the same way while a source follows the file shows
//! that it follows (`journalctl -f` notices the file growing through inotify). No journald is
//! needed. When the tools are missing the tests say so and pass, except in CI (`CI` set), where
//! they fail.

use authwatch::rules::{HitKind, ParseCtx, RuleSet};
use authwatch::source::journal::{JournalArgs, JournalSource};
use authwatch::source::StartAt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// 2026-11-23T15:59:08.123456Z in microseconds.
const T0: u64 = 1_795_449_548_123_456;
const BOOT_ID: &str = "0123456789abcdef0123456789abcdef";
const DEADLINE: Duration = Duration::from_secs(20);

/// Where Debian puts systemd-journal-remote.
const JOURNAL_REMOTE: &[&str] = &[
    "/lib/systemd/systemd-journal-remote",
    "/usr/lib/systemd/systemd-journal-remote",
];

/// The path of systemd-journal-remote when both tools are here; otherwise `None` after
/// reporting the skip (or failing, in CI).
fn tools(test: &str) -> Option<PathBuf> {
    let why = match Command::new("journalctl").arg("--version").output() {
        Ok(o) if o.status.success() => match JOURNAL_REMOTE.iter().find(|p| Path::new(p).exists())
        {
            Some(p) => return Some(PathBuf::from(p)),
            None => format!(
                "systemd-journal-remote not found at {JOURNAL_REMOTE:?} (Debian package systemd-journal-remote)"
            ),
        },
        Ok(o) => format!("journalctl --version failed: {}", o.status),
        Err(e) => format!("journalctl cannot be run: {e} (Debian package systemd)"),
    };
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but {test} cannot run: {why}; run .ci/install-test-deps");
    }
    eprintln!("SKIPPED {test}: {why}");
    None
}

/// One journal entry: its fields in order.
struct Entry(Vec<(&'static str, Vec<u8>)>);

/// An entry as a mail service writes it through syslog, `n` seconds after [`T0`].
fn svc(n: u64, unit: &str, ident: &str, pid: u32, message: &[u8]) -> Entry {
    Entry(vec![
        (
            "__REALTIME_TIMESTAMP",
            (T0 + n * 1_000_000).to_string().into(),
        ),
        ("__MONOTONIC_TIMESTAMP", (1_000_000 + n).to_string().into()),
        ("_BOOT_ID", BOOT_ID.into()),
        ("_HOSTNAME", "mx1".into()),
        ("_SYSTEMD_UNIT", unit.into()),
        ("SYSLOG_IDENTIFIER", ident.into()),
        ("_PID", pid.to_string().into()),
        ("PRIORITY", "4".into()),
        ("MESSAGE", message.to_vec()),
    ])
}

/// The journal export format (what `journalctl -o export` writes and systemd-journal-remote
/// reads): `NAME=value` lines, or for values with control characters or non-ASCII bytes the
/// name, a newline, the length as 64-bit little endian, the bytes and a newline; a blank line
/// after each entry.
fn export(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for Entry(fields) in entries {
        for (name, value) in fields {
            out.extend_from_slice(name.as_bytes());
            if value.iter().any(|c| !(32..127).contains(c)) {
                out.push(b'\n');
                out.extend_from_slice(&(value.len() as u64).to_le_bytes());
                out.extend_from_slice(value);
            } else {
                out.push(b'=');
                out.extend_from_slice(value);
            }
            out.push(b'\n');
        }
        out.push(b'\n');
    }
    out
}

/// Write `entries` into the journal file `journal` (created if new, else appended to).
fn append(remote: &Path, journal: &Path, entries: &[Entry]) {
    let mut child = Command::new(remote)
        .arg("-o")
        .arg(journal)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting systemd-journal-remote");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&export(entries))
        .expect("writing to systemd-journal-remote");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "systemd-journal-remote failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The cursors of the file's entries, in order, as `journalctl -o json` reports them.
fn cursors(journal: &Path) -> Vec<String> {
    let out = Command::new("journalctl")
        .arg("--file")
        .arg(journal)
        .args(["-o", "json", "--no-pager"])
        .output()
        .expect("running journalctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["__CURSOR"].as_str().unwrap().to_string()
        })
        .collect()
}

fn args(journal: &Path, start: StartAt) -> JournalArgs {
    JournalArgs {
        files: vec![journal.to_path_buf()],
        start,
        retry_min: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        ..JournalArgs::default()
    }
}

fn units() -> Vec<String> {
    vec!["postfix@-.service".into(), "dovecot.service".into()]
}

/// Poll until `n` lines have come in all (or panic after [`DEADLINE`]).
fn lines(src: &mut JournalSource, got: &mut Vec<String>, n: usize) {
    let start = Instant::now();
    while got.len() < n {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {n} lines; have {got:#?}; health {:?}",
            src.health()
        );
        src.poll_timeout(Duration::from_millis(50), &mut |l| got.push(l.to_string()));
    }
}

/// Poll for `d` and assert that no line comes. (A fixed wait: showing that something does
/// *not* happen needs one.)
fn quiet(src: &mut JournalSource, d: Duration) {
    let start = Instant::now();
    let mut extra = Vec::new();
    while start.elapsed() < d {
        src.poll_timeout(Duration::from_millis(50), &mut |l| {
            extra.push(l.to_string())
        });
    }
    assert!(extra.is_empty(), "unexpected lines: {extra:#?}");
}

fn postfix(n: u64, ip: &str) -> Entry {
    svc(
        n,
        "postfix@-.service",
        "postfix/smtpd",
        4242,
        format!("warning: unknown[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6")
            .as_bytes(),
    )
}

/// The line of `postfix(n, ip)` (`n` < 52: the stamp stays in minute 15:59).
fn postfix_line(n: u64, ip: &str) -> String {
    format!(
        "2026-11-23T15:59:{:02}.123456+00:00 mx1 postfix/smtpd[4242]: warning: unknown[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
        8 + n
    )
}

fn first_batch() -> Vec<Entry> {
    vec![
        postfix(0, "203.0.113.5"),
        svc(1, "dovecot.service", "dovecot", 811,
            b"imap-login: Disconnected: Connection closed (auth failed, 1 attempts in 2 secs): user=<alice>, method=PLAIN, rip=203.0.113.6, lip=192.0.2.25, TLS"),
        svc(2, "exim4.service", "exim", 3001,
            b"PLAIN authenticator failed for (User) [203.0.113.7]: 535 Incorrect authentication data (set_id=bob)"),
        // Not UTF-8, with a newline inside.
        svc(3, "dovecot.service", "dovecot", 812, b"auth: pam(\xff\xfeuser,203.0.113.8): unknown user\nsecond line"),
        svc(4, "cron.service", "CRON", 99, b"(root) CMD (true)"),
    ]
}

fn first_batch_lines() -> Vec<String> {
    vec![
        postfix_line(0, "203.0.113.5"),
        "2026-11-23T15:59:09.123456+00:00 mx1 dovecot[811]: imap-login: Disconnected: Connection closed (auth failed, 1 attempts in 2 secs): user=<alice>, method=PLAIN, rip=203.0.113.6, lip=192.0.2.25, TLS".into(),
        "2026-11-23T15:59:11.123456+00:00 mx1 dovecot[812]: auth: pam(\u{FFFD}\u{FFFD}user,203.0.113.8): unknown user#012second line".into(),
    ]
}

#[test]
fn journal_follows_units_and_resumes_after_the_cursor() {
    let Some(remote) = tools("journal_follows_units_and_resumes_after_the_cursor") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let journal = tmp.path().join("mail.journal");
    append(&remote, &journal, &first_batch());
    let all = cursors(&journal);
    assert_eq!(all.len(), 5);

    // From the beginning, only the two units: postfix, dovecot, dovecot (binary message).
    let mut src = JournalSource::new(units(), None, args(&journal, StartAt::Beginning));
    let mut got = Vec::new();
    lines(&mut src, &mut got, 3);
    quiet(&mut src, Duration::from_millis(300));
    assert_eq!(got, first_batch_lines());
    let c1 = src.cursor().expect("a cursor after entries");
    assert_eq!(c1, all[3], "cursor of the last delivered entry");
    let h = src.health();
    assert!(h.running && h.problem().is_none(), "{h:?}");

    // Entries appended while it runs are followed; the cron one is filtered out.
    append(
        &remote,
        &journal,
        &[
            postfix(10, "198.51.100.1"),
            svc(11, "cron.service", "CRON", 99, b"(root) CMD (true)"),
            postfix(12, "198.51.100.2"),
        ],
    );
    lines(&mut src, &mut got, 5);
    assert_eq!(
        got[3..],
        [
            postfix_line(10, "198.51.100.1"),
            postfix_line(12, "198.51.100.2")
        ]
    );
    let c2 = src.cursor().unwrap();
    assert_eq!(c2, cursors(&journal)[7]);
    let pid = src.health().pid.unwrap();
    drop(src);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "journalctl {pid} outlived its source"
    );

    // A new source from the first checkpoint reads exactly what came after it (start: end is
    // ignored when there is a cursor).
    let mut src = JournalSource::new(units(), Some(c1), args(&journal, StartAt::End));
    let mut again = Vec::new();
    lines(&mut src, &mut again, 2);
    quiet(&mut src, Duration::from_millis(300));
    assert_eq!(again, got[3..]);
    assert_eq!(src.cursor().as_deref(), Some(c2.as_str()));
    drop(src);

    // From the last checkpoint: nothing until something new is written.
    let mut src = JournalSource::new(units(), Some(c2), args(&journal, StartAt::Beginning));
    quiet(&mut src, Duration::from_millis(500));
    append(
        &remote,
        &journal,
        &[svc(
            20,
            "dovecot.service",
            "dovecot",
            813,
            b"after the restart",
        )],
    );
    let mut last = Vec::new();
    lines(&mut src, &mut last, 1);
    assert_eq!(
        last,
        ["2026-11-23T15:59:28.123456+00:00 mx1 dovecot[813]: after the restart"]
    );
}

#[test]
fn journal_lines_are_read_by_the_rules() {
    let Some(remote) = tools("journal_lines_are_read_by_the_rules") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let journal = tmp.path().join("exim.journal");
    append(&remote, &journal, &first_batch());
    let mut src = JournalSource::new(
        vec!["exim4.service".into()],
        None,
        args(&journal, StartAt::Beginning),
    );
    let mut got = Vec::new();
    lines(&mut src, &mut got, 1);
    assert_eq!(
        got,
        ["2026-11-23T15:59:10.123456+00:00 mx1 exim[3001]: PLAIN authenticator failed for (User) [203.0.113.7]: 535 Incorrect authentication data (set_id=bob)"]
    );
    let ctx = ParseCtx::new(
        jiff::tz::TimeZone::UTC,
        "2026-11-24T00:00:00Z".parse().unwrap(),
    );
    let hit = RuleSet::all_builtin()
        .parse(&got[0], &ctx)
        .expect("the exim rule reads the journal line");
    assert_eq!(hit.ip.to_string(), "203.0.113.7");
    assert_eq!(hit.user.as_deref(), Some("bob"));
    assert_eq!(hit.kind, HitKind::Failure);
    assert_eq!(
        hit.time,
        Some("2026-11-23T15:59:10.123456Z".parse().unwrap())
    );
}

/// Whether process `pid` has an inotify descriptor: `journalctl -f` has set up following (it
/// positions itself in the journal before that).
fn has_inotify(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten().any(|e| {
                std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains("inotify"))
            })
        })
        .unwrap_or(false)
}

#[test]
fn journal_start_end_reads_only_new_entries() {
    let Some(remote) = tools("journal_start_end_reads_only_new_entries") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let journal = tmp.path().join("mail.journal");
    append(&remote, &journal, &first_batch());
    let mut src = JournalSource::new(units(), None, args(&journal, StartAt::End));
    let pid = src.health().pid.expect("journalctl runs");
    let start = Instant::now();
    while !has_inotify(pid) {
        assert!(
            start.elapsed() < DEADLINE,
            "journalctl never started following"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    quiet(&mut src, Duration::from_millis(300));
    assert_eq!(src.cursor(), None);
    append(&remote, &journal, &[postfix(30, "192.0.2.99")]);
    let mut got = Vec::new();
    lines(&mut src, &mut got, 1);
    assert_eq!(got, [postfix_line(30, "192.0.2.99")]);
    assert_eq!(src.cursor(), cursors(&journal).last().cloned());
}

#[test]
fn journal_that_cannot_be_read_is_reported_and_retried() {
    let Some(remote) = tools("journal_that_cannot_be_read_is_reported_and_retried") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let journal = tmp.path().join("later.journal");
    let mut src = JournalSource::new(units(), None, args(&journal, StartAt::Beginning));
    let start = Instant::now();
    while src.health().failures < 2 {
        assert!(
            start.elapsed() < DEADLINE,
            "no failure reported: {:?}",
            src.health()
        );
        src.poll_timeout(Duration::from_millis(50), &mut |l| panic!("line {l}"));
    }
    let h = src.health();
    let err = h.last_error.clone().unwrap_or_default();
    assert!(
        err.starts_with("journalctl exited with exit status: 1"),
        "{h:?}"
    );
    assert!(
        h.stderr_tail
            .iter()
            .any(|l| l.contains("No such file or directory")),
        "{h:?}"
    );
    assert!(h.problem().is_some());

    // Once the file exists, a retry reads it.
    append(&remote, &journal, &first_batch());
    let mut got = Vec::new();
    lines(&mut src, &mut got, 3);
    assert_eq!(got, first_batch_lines());
    let h = src.health();
    assert!(h.running && h.last_error.is_none(), "{h:?}");
}

// ---------------------------------------------------------------------------------------------
// The agent with a journal source in its config

fn agent_config(dir: &Path, journal_yaml: &str) -> PathBuf {
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: '{state}'\nhost: {{name: mx1.test, ip: 192.0.2.25}}\ntime_zone: UTC\nsources:\n  - journal: {journal_yaml}\n    start: beginning\nfollow: {{poll_interval: 50ms, checkpoint_interval: 1s}}\nhealth: {{source_unreadable_after: 1s}}\nmail: {{to: [admin@example.test]}}\n",
            state = dir.join("state").display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn agent_follows_a_journal_source_and_resumes_after_the_cursor() {
    use crate::harness::{eml_files, wait_outbox, Agent, Mail};
    let Some(remote) = tools("agent_follows_a_journal_source_and_resumes_after_the_cursor") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let journal = dir.join("mail.journal");
    let mut first: Vec<Entry> = (0..5).map(|n| postfix(n, "203.0.113.5")).collect();
    first.push(svc(5, "cron.service", "CRON", 99, b"(root) CMD (true)"));
    append(&remote, &journal, &first);
    let cfg = agent_config(
        dir,
        &format!(
            "{{units: [postfix@-.service], files: ['{}']}}",
            journal.display()
        ),
    );
    let outbox = dir.join("state").join("outbox");

    let mut agent = Agent::run(&cfg);
    let mails = wait_outbox(&outbox, 1);
    assert!(
        mails[0].subject().contains("203.0.113.5 5 failed "),
        "{}",
        mails[0].subject()
    );
    // The cursor reaches state.json (checkpoint_interval 1s) before the agent stops.
    crate::harness::wait_for("the journal cursor in state.json", || {
        let st = std::fs::read_to_string(dir.join("state").join("state.json")).ok()?;
        st.contains("journal:postfix@-.service").then_some(())
    });
    assert!(agent.stop().success());

    // While the agent is down, more entries; the next run reads only those.
    let second: Vec<Entry> = (10..15).map(|n| postfix(n, "203.0.113.9")).collect();
    append(&remote, &journal, &second);
    let mut agent = Agent::run(&cfg);
    let mails = wait_outbox(&outbox, 2);
    assert!(
        mails
            .iter()
            .any(|m| m.subject().contains("203.0.113.9 5 failed ")),
        "{:?}",
        mails.iter().map(Mail::subject).collect::<Vec<_>>()
    );
    assert!(agent.stop().success());
    let log = agent.stderr_text();
    assert!(
        log.contains("resuming the journal after the saved cursor"),
        "{log}"
    );
    assert!(
        !log.contains("ip=203.0.113.5 "),
        "entries before the cursor were read again:\n{log}"
    );
    assert_eq!(eml_files(&outbox).len(), 2);
}

#[test]
fn agent_reports_a_journal_it_cannot_read() {
    use crate::harness::{wait_outbox, Agent};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A journalctl that fails the way it does without permission.
    let fake = dir.join("journalctl");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'Failed to open files: Permission denied' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = agent_config(
        dir,
        &format!(
            "{{units: [dovecot.service], journalctl: '{}'}}",
            fake.display()
        ),
    );
    let mut agent = Agent::run(&cfg);
    let mails = wait_outbox(&dir.join("state").join("outbox"), 1);
    let m = &mails[0];
    assert!(
        m.subject()
            .contains("journal:dovecot.service cannot be read"),
        "{}",
        m.subject()
    );
    assert!(m.body.contains("Permission denied"), "{}", m.body);
    assert!(m.body.contains("systemd-journal"), "{}", m.body);
    assert!(agent.stop().success());
}
