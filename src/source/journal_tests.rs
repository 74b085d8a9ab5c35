//! Unit tests of the journal source: the JSON → line conversion on real `journalctl -o json`
//! output (`tests/fixtures/journal/`, made with `systemd-journal-remote` and journalctl 252, see
//! the README there), the command line, and the process handling (restart, resume, reporting)
//! against stand-in `journalctl` scripts. The real journalctl is exercised by the integration
//! test `tests/journal/`.

use super::*;
use crate::rules::{HitKind, ParseCtx, RuleSet};
use serde_json::Value;
use std::path::Path;

/// `journalctl --file F -o json` (no `--all`: a field over 4096 bytes is `null`).
const PLAIN: &str = include_str!("../../tests/fixtures/journal/entries.json");
/// `journalctl --file F -o json --all --output-fields=…`: what the source asks for.
const ALL: &str = include_str!("../../tests/fixtures/journal/entries-all.json");

fn convert(fixture: &str) -> Vec<JournalEntry> {
    fixture
        .lines()
        .map(|l| parse_entry(l.as_bytes(), &TimeZone::UTC).expect("fixture line is an entry"))
        .collect()
}

fn expected_lines(long: Option<String>) -> Vec<Option<String>> {
    vec![
        // _SOURCE_REALTIME_TIMESTAMP (250 ms before reception) is the stamp.
        Some("2026-11-23T15:59:07.873456+00:00 mx1 postfix/smtpd[4242]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: UGFzc3dvcmQ6".into()),
        Some("2026-11-23T15:59:09.123456+00:00 mx1 dovecot[811]: imap-login: Disconnected: Connection closed (auth failed, 1 attempts in 2 secs): user=<alice>, method=PLAIN, rip=203.0.113.6, lip=192.0.2.25, TLS, session=<Kx8vY2YB1tTLAAAB>".into()),
        Some("2026-11-23T15:59:10.123456+00:00 mx1 exim[3001]: PLAIN authenticator failed for (User) [203.0.113.7]: 535 Incorrect authentication data (set_id=bob)".into()),
        // Bytes that are not UTF-8 (an array in the JSON), and an embedded newline escaped.
        Some("2026-11-23T15:59:11.123456+00:00 mx1 dovecot[812]: auth: pam(\u{FFFD}\u{FFFD}user,203.0.113.8): unknown user#012Nov 23 15:59:08 mx1 exim[1]: PLAIN authenticator failed for (x) [10.9.9.9]: 535 Incorrect authentication data".into()),
        Some("2026-11-23T15:59:12.123456+00:00 mx1 CRON[99]: (root) CMD (command -v debian-sa1 > /dev/null)".into()),
        // No MESSAGE.
        None,
        // MESSAGE twice: the first.
        Some("2026-11-23T15:59:14.123456+00:00 mx1 postfix/smtpd[4243]: first message".into()),
        long,
        Some("2026-11-23T15:59:16.123456+00:00 - doveadm[77]: no identifier".into()),
        Some("2026-11-23T15:59:17.123456+00:00 mx1 evil_tag__1_[5]: tagged".into()),
    ]
}

#[test]
fn real_journalctl_json_to_lines() {
    let entries = convert(PLAIN);
    let lines: Vec<Option<String>> = entries.iter().map(|e| e.line.clone()).collect();
    // Plain `-o json` leaves the 5009-byte message out (`null`): no line.
    assert_eq!(lines, expected_lines(None));
    for (i, e) in entries.iter().enumerate() {
        let c = e.cursor.as_deref().expect("every entry has a cursor");
        assert!(
            c.starts_with("s=a634127906954e9982c86cc56122c712;i=") && c.contains(";t="),
            "cursor {i}: {c}"
        );
    }
    assert!(entries[9].cursor.as_deref().unwrap().contains(";i=a;"));
}

#[test]
fn output_with_the_fields_the_source_asks_for() {
    let entries = convert(ALL);
    let long = format!(
        "2026-11-23T15:59:15.123456+00:00 mx1 postfix/smtpd[4244]: warning: {}",
        "A".repeat(5000)
    );
    let lines: Vec<Option<String>> = entries.iter().map(|e| e.line.clone()).collect();
    assert_eq!(lines, expected_lines(Some(long)));
    // Same cursors as the full output.
    let plain: Vec<_> = convert(PLAIN).into_iter().map(|e| e.cursor).collect();
    let all: Vec<_> = entries.into_iter().map(|e| e.cursor).collect();
    assert_eq!(plain, all);
}

#[test]
fn stamp_in_another_zone() {
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    let line = ALL.lines().nth(2).unwrap();
    let e = parse_entry(line.as_bytes(), &berlin).unwrap();
    assert!(
        e.line
            .as_deref()
            .unwrap()
            .starts_with("2026-11-23T16:59:10.123456+01:00 mx1 exim[3001]: "),
        "{e:?}"
    );
    let ny = TimeZone::get("America/New_York").unwrap();
    let ts: Timestamp = "2026-07-01T12:00:00.5Z".parse().unwrap();
    assert_eq!(
        format_stamp(ts, &ny).as_deref(),
        Some("2026-07-01T08:00:00.500000-04:00")
    );
    assert_eq!(
        format_stamp(ts, &TimeZone::get("Asia/Kolkata").unwrap()).as_deref(),
        Some("2026-07-01T17:30:00.500000+05:30")
    );
}

/// The lines read by the rules: Exim's behind the journal prefix is a hit with the journal's
/// stamp; the line forged inside the binary message (after an escaped newline) is not.
#[test]
fn rules_read_journal_lines() {
    let ctx = ParseCtx::new(TimeZone::UTC, "2026-11-24T00:00:00Z".parse().unwrap());
    let mut rules = RuleSet::all_builtin();
    let lines: Vec<String> = convert(ALL).into_iter().filter_map(|e| e.line).collect();
    let exim = rules.parse(&lines[2], &ctx).expect("exim line is a hit");
    assert_eq!(exim.ip.to_string(), "203.0.113.7");
    assert_eq!(exim.user.as_deref(), Some("bob"));
    assert_eq!(exim.service, "exim");
    assert_eq!(exim.kind, HitKind::Failure);
    assert_eq!(
        exim.time,
        Some("2026-11-23T15:59:10.123456Z".parse().unwrap())
    );
    let forged = &lines[3];
    assert!(
        rules
            .parse(forged, &ctx)
            .is_none_or(|h| h.ip.to_string() != "10.9.9.9"),
        "an escaped newline must not let message text pose as a line: {forged}"
    );
}

#[test]
fn field_shapes() {
    let tz = TimeZone::UTC;
    let e = |j: &str| parse_entry(j.as_bytes(), &tz).unwrap();
    // Without any stamp, host or identifier.
    assert_eq!(
        e(r#"{"MESSAGE":"hi"}"#).line.as_deref(),
        Some("- unknown: hi")
    );
    // A bad PID is left out; a number where a string is expected is read as text.
    assert_eq!(
        e(r#"{"MESSAGE":"hi","_PID":"12x","SYSLOG_IDENTIFIER":"a","_HOSTNAME":"h"}"#)
            .line
            .as_deref(),
        Some("h a: hi")
    );
    assert_eq!(
        e(r#"{"MESSAGE":"hi","_PID":12,"SYSLOG_IDENTIFIER":"a","_HOSTNAME":"h"}"#)
            .line
            .as_deref(),
        Some("h a[12]: hi")
    );
    // Binary, binary among several values, null, nonsense.
    assert_eq!(
        e(r#"{"MESSAGE":[104,0,105,13,10,10],"_HOSTNAME":"h","SYSLOG_IDENTIFIER":"a"}"#)
            .line
            .as_deref(),
        Some("h a: h#000i#015")
    );
    assert_eq!(
        e(r#"{"MESSAGE":[[111,107],"second"],"_HOSTNAME":"h","SYSLOG_IDENTIFIER":"a"}"#)
            .line
            .as_deref(),
        Some("h a: ok")
    );
    assert_eq!(e(r#"{"MESSAGE":null,"__CURSOR":"c"}"#).line, None);
    assert_eq!(
        e(r#"{"MESSAGE":null,"__CURSOR":"c"}"#).cursor.as_deref(),
        Some("c")
    );
    assert_eq!(e(r#"{"MESSAGE":[300]}"#).line, None);
    assert_eq!(e(r#"{"MESSAGE":{}}"#).line, None);
    // A stamp out of range is left out.
    assert_eq!(
        e(r#"{"MESSAGE":"x","__REALTIME_TIMESTAMP":"999999999999999999"}"#)
            .line
            .as_deref(),
        Some("- unknown: x")
    );
    // Tabs stay; DEL is escaped; non-ASCII text stays.
    assert_eq!(
        e("{\"MESSAGE\":\"a\\tb\\u007fc \u{e9}\"}").line.as_deref(),
        Some("- unknown: a\tb#177c \u{e9}")
    );
    assert!(parse_entry(b"not json", &tz).is_err());
    assert!(parse_entry(b"[1,2]", &tz).is_err());
}

#[test]
fn cursor_time_reads_the_t_field() {
    assert_eq!(
        cursor_time("s=a6;i=1;b=01;m=4c4b40;t=660f3ac872d40;x=3f"),
        Some(1_795_449_548)
    );
    assert_eq!(cursor_time("garbage"), None);
    assert_eq!(cursor_time("t=zz"), None);
}

#[test]
fn command_lines() {
    let args = JournalArgs {
        files: vec!["/j/a.journal".into()],
        extra_args: vec!["--merge".into()],
        ..JournalArgs::default()
    };
    let units = vec![
        "postfix@-.service".to_string(),
        "dovecot.service".to_string(),
    ];
    let text = |from: &StartFrom| -> Vec<String> {
        command_args(&units, &args, from)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    };
    let common = [
        "-f",
        "-o",
        "json",
        "--no-pager",
        "--all",
        "--output-fields=MESSAGE,SYSLOG_IDENTIFIER,_COMM,_PID,SYSLOG_PID,_HOSTNAME,_SOURCE_REALTIME_TIMESTAMP",
        "--file",
        "/j/a.journal",
        "-u",
        "postfix@-.service",
        "-u",
        "dovecot.service",
    ];
    let with = |tail: &[&str]| -> Vec<String> {
        common
            .iter()
            .chain(tail)
            .chain(&["--merge"])
            .map(|s| s.to_string())
            .collect()
    };
    assert_eq!(text(&StartFrom::End), with(&["-n", "0"]));
    assert_eq!(text(&StartFrom::Beginning), with(&["--no-tail"]));
    assert_eq!(
        text(&StartFrom::Cursor("s=1;i=2".into())),
        with(&["--after-cursor", "s=1;i=2"])
    );
    assert_eq!(
        text(&StartFrom::Since(1_795_449_548)),
        with(&["--since", "@1795449548"])
    );
}

// --- process handling, against stand-in journalctl scripts ---------------------------------

/// A stand-in `journalctl`: a shell script that logs its arguments (one invocation per line)
/// to `args.log` beside it, then runs `body`.
fn fake_journalctl(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("journalctl");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\n{body}\n",
        dir.join("args.log").display()
    );
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn invocations(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("args.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn quick(binary: PathBuf) -> JournalArgs {
    JournalArgs {
        binary,
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(80),
        ..JournalArgs::default()
    }
}

/// Poll until `done` says so (10 s at most), collecting lines.
fn poll_until(
    src: &mut JournalSource,
    lines: &mut Vec<String>,
    mut done: impl FnMut(&JournalSource, &[String]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(src, lines) {
        assert!(
            Instant::now() < deadline,
            "timed out; lines {lines:?}, health {:?}",
            src.health()
        );
        src.poll_timeout(Duration::from_millis(20), &mut |l| {
            lines.push(l.to_string())
        });
    }
}

#[test]
fn exits_are_reported_and_restarts_resume_after_the_last_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("entries.json");
    std::fs::write(&fixture, ALL).unwrap();
    // First run: all entries, a complaint, exit 3. Later runs: one more entry, then stay up.
    let body = format!(
        r#"n=$(wc -l < '{log}')
if [ "$n" -eq 1 ]; then
  cat '{fixture}'
  echo 'Failed to do something: Permission denied' >&2
  exit 3
fi
echo '{{"__CURSOR":"next","MESSAGE":"later","_HOSTNAME":"h","SYSLOG_IDENTIFIER":"x"}}'
exec sleep 30"#,
        log = dir.path().join("args.log").display(),
        fixture = fixture.display(),
    );
    let bin = fake_journalctl(dir.path(), &body);
    let mut src = JournalSource::new(
        vec!["dovecot.service".into()],
        Some("s=old;i=1".into()),
        quick(bin),
    );
    assert_eq!(src.cursor().as_deref(), Some("s=old;i=1"));
    let mut lines = Vec::new();
    poll_until(&mut src, &mut lines, |s, _| s.health().failures >= 1);
    assert_eq!(lines.len(), 9, "{lines:?}");
    let h = src.health();
    assert!(!h.running);
    assert_eq!(h.entries, 10);
    let err = h.last_error.clone().unwrap();
    assert!(
        err.contains("exit status: 3") && err.contains("Permission denied"),
        "{err}"
    );
    assert_eq!(
        h.stderr_tail,
        vec!["Failed to do something: Permission denied"]
    );
    assert!(h.problem().unwrap().contains("Permission denied"));
    let last_cursor = convert(ALL).pop().unwrap().cursor.unwrap();
    assert_eq!(src.cursor().as_deref(), Some(last_cursor.as_str()));

    // The restart continues after the last entry read, and recovers.
    poll_until(&mut src, &mut lines, |_, l| l.len() == 10);
    assert_eq!(lines[9], "h x: later");
    assert_eq!(src.cursor().as_deref(), Some("next"));
    let h = src.health();
    assert!(h.running && h.pid.is_some(), "{h:?}");
    assert_eq!(h.last_error, None);
    assert_eq!(h.problem(), None);
    let calls = invocations(dir.path());
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[0].ends_with("-u dovecot.service --after-cursor s=old;i=1"),
        "{calls:?}"
    );
    assert!(
        calls[1].ends_with(&format!("-u dovecot.service --after-cursor {last_cursor}")),
        "{calls:?}"
    );
    let pid = h.pid.unwrap();
    drop(src);
    // Dropping the source killed journalctl (a zombie has been reaped by wait()).
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "journalctl {pid} still runs"
    );
}

#[test]
fn missing_journalctl_is_reported_and_retried_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = JournalSource::new(vec![], None, quick(dir.path().join("no-such-journalctl")));
    let h = src.health();
    assert!(!h.running);
    assert_eq!(h.failures, 1);
    let err = h.last_error.unwrap();
    assert!(
        err.starts_with("cannot start journalctl (") && err.contains("No such file"),
        "{err}"
    );
    assert!(h.retry_in.is_some());
    let mut lines = Vec::new();
    poll_until(&mut src, &mut lines, |s, _| s.health().failures >= 4);
    assert!(lines.is_empty());
    assert_eq!(src.cursor(), None);
    // The delay doubled up to retry_max.
    assert!(src.health().retry_in.unwrap() <= Duration::from_millis(80));
    assert_eq!(src.backoff, Duration::from_millis(80));
}

#[test]
fn without_a_cursor_a_restart_starts_at_the_creation_time() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_journalctl(dir.path(), "exit 1");
    let before = Timestamp::now().as_second();
    let mut src = JournalSource::new(vec!["a.service".into()], None, quick(bin));
    let mut lines = Vec::new();
    poll_until(&mut src, &mut lines, |s, _| s.health().failures >= 2);
    let calls = invocations(dir.path());
    assert!(calls[0].ends_with("-u a.service -n 0"), "{calls:?}");
    let since: i64 = calls[1]
        .rsplit_once("--since @")
        .expect("restart with --since")
        .1
        .parse()
        .unwrap();
    assert!(since >= before && since <= Timestamp::now().as_second());
    // With start: beginning, every start reads from the beginning until a cursor is known.
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_journalctl(dir.path(), "exit 1");
    let args = JournalArgs {
        start: StartAt::Beginning,
        ..quick(bin)
    };
    let mut src = JournalSource::new(vec![], None, args);
    poll_until(&mut src, &mut lines, |s, _| s.health().failures >= 2);
    let calls = invocations(dir.path());
    assert!(
        calls[..2].iter().all(|c| c.ends_with("--no-tail")),
        "{calls:?}"
    );
}

#[test]
fn a_rejected_cursor_falls_back_to_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"case "$*" in
  *--after-cursor*) echo 'Failed to seek to cursor: Invalid argument' >&2; exit 1;;
esac
exec sleep 30"#;
    let bin = fake_journalctl(dir.path(), body);
    let cursor = "s=x;i=1;b=y;m=1;t=660f3ac872d40;x=1";
    let mut src = JournalSource::new(vec![], Some(cursor.into()), quick(bin));
    let mut lines = Vec::new();
    poll_until(&mut src, &mut lines, |s, _| {
        s.health().running && invocations(dir.path()).len() == 2
    });
    let calls = invocations(dir.path());
    assert!(calls[0].ends_with(&format!("--after-cursor {cursor}")));
    assert!(calls[1].ends_with("--since @1795449548"), "{calls:?}");
    assert_eq!(src.cursor(), None);
}

#[test]
fn output_that_is_not_an_entry_is_skipped_and_long_lines_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"echo 'garbage'
echo ''
echo '{"__CURSOR":"c1","MESSAGE":"0123456789abcdef","_HOSTNAME":"h","SYSLOG_IDENTIFIER":"x"}'
exec sleep 30"#;
    let bin = fake_journalctl(dir.path(), body);
    let args = JournalArgs {
        max_line_bytes: 10,
        ..quick(bin)
    };
    let mut src = JournalSource::new(vec![], None, args);
    let mut lines = Vec::new();
    poll_until(&mut src, &mut lines, |_, l| !l.is_empty());
    assert_eq!(lines, vec!["h x: 01234"]);
    assert_eq!(src.cut_lines(), 1);
    assert_eq!(src.cursor().as_deref(), Some("c1"));
    assert!(src.health().running);
}

#[test]
fn relative_files_are_made_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_journalctl(dir.path(), "exec sleep 30");
    let args = JournalArgs {
        files: vec!["rel/x.journal".into()],
        directory: Some("reldir".into()),
        ..quick(bin)
    };
    let src = JournalSource::new(vec![], None, args);
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(src.args.files, vec![cwd.join("rel/x.journal")]);
    assert_eq!(src.args.directory, Some(cwd.join("reldir")));
    assert!(src.describe().starts_with("journal (all units) file /"));
}

/// A syslog line `Mon DD HH:MM:SS host tag[pid]: message` as the journal entry syslog would have
/// made of it, in `journalctl -o json` form (the year from `ctx`).
fn entry_json(syslog: &str, ctx: &ParseCtx) -> String {
    let (ts, rest) = crate::rules::time::parse_leading_time(syslog, ctx);
    let us = ts.expect("syslog stamp").as_microsecond();
    let (host, rest) = rest.split_once(' ').unwrap();
    let (tag, msg) = rest.split_once(": ").unwrap();
    let (ident, pid) = match tag.strip_suffix(']').and_then(|t| t.split_once('[')) {
        Some((i, p)) => (i, Some(p)),
        None => (tag, None),
    };
    let mut m = serde_json::Map::new();
    m.insert("__CURSOR".into(), "c".into());
    m.insert("__REALTIME_TIMESTAMP".into(), us.to_string().into());
    m.insert("_HOSTNAME".into(), host.into());
    m.insert("SYSLOG_IDENTIFIER".into(), ident.into());
    if let Some(p) = pid {
        m.insert("_PID".into(), p.into());
    }
    m.insert("MESSAGE".into(), msg.into());
    Value::Object(m).to_string()
}

/// Every rule reads the journal's form of a line (RFC 3339 stamp, host, tag) exactly as the
/// syslog form: same hits, same times, in sequence (some rules pair lines of a session).
#[test]
fn rules_read_the_journal_form_like_the_syslog_form() {
    let ctx = ParseCtx::new(TimeZone::UTC, "2026-11-24T00:00:00Z".parse().unwrap());
    let syslog = [
        "Nov 23 15:59:08 mx1 exim[1234]: PLAIN authenticator failed for (a) [192.0.2.9]: 535 Incorrect authentication data (set_id=dave)",
        "Apr 17 19:17:11 SERVER courierpop3login: LOGIN FAILED, user=USER@EXAMPLE.org, ip=[::ffff:1.2.3.4]",
        "Feb 25 04:02:27 relay1 sendmail[16664]: 06I02CNi016764: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=user@example.com, relay=example.com [192.0.2.3] (may be forged)",
        "Jul 29 18:30:19 Linux2 ipop3d[25745]: Login failed user=info auth=info host=74-115-52-198-dedicated.multacom.com [198.52.115.74]",
        "Nov 23 15:59:08 mx cyrus/imap[3110]: badlogin: [203.0.113.5] LOGIN (-notset-) [SASL(-13): user not found: checkpass failed]",
        "Jul 11 03:06:37 myhostname roundcube: IMAP Error: Login failed for admin from 1.2.3.4. AUTHENTICATE PLAIN: A0002 NO Login failed. in /usr/share/roundcube/program/include/rcube_imap.php on line 205 (POST /wmail/?_task=login&_action=login)",
        "Nov 23 15:59:08 web HORDE[812]: [horde] FAILED LOGIN for carol to horde (203.0.113.64) [pid 812 on line 96 of \"/usr/share/horde/login.php\"]",
        "Mar 24 08:58:32 mx1 sogod[26818]: SOGoRootPage Login from '173.194.44.31' for user 'hack0r' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0",
        "Nov 23 15:59:08 mx smtpd[811]: 4b8a5d0a2c3e1f6b smtp connected address=203.0.113.60 host=<unknown>",
        "Nov 23 15:59:09 mx smtpd[811]: 4b8a5d0a2c3e1f6b smtp authentication user=admin result=permfail",
        "Nov 23 15:59:12 mx smtpd[811]: 4b8a5d0a2c3e1f6b smtp disconnected reason=quit",
    ];
    let mut from_syslog = RuleSet::all_builtin();
    let mut from_journal = RuleSet::all_builtin();
    let mut hits = 0;
    for l in syslog {
        let journal_line = parse_entry(entry_json(l, &ctx).as_bytes(), &TimeZone::UTC)
            .unwrap()
            .line
            .unwrap();
        let a = from_syslog.parse(l, &ctx);
        let b = from_journal.parse(&journal_line, &ctx);
        assert_eq!(a, b, "\nsyslog:  {l}\njournal: {journal_line}");
        hits += usize::from(a.is_some());
    }
    assert!(hits > 0, "no rule matched any of the sample lines");
}
