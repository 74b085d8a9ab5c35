//! Tests of `authwatch scan`: the report (offenders, accounts, threshold crossings), stamps
//! carried to stampless lines, JSON events, usage and config errors, and read errors.

use super::*;
use std::io::Cursor;

fn settings() -> Settings {
    Settings {
        tz: TimeZone::UTC,
        progress: false,
        ..Settings::default()
    }
}

fn now() -> Timestamp {
    "2026-11-24T00:00:00Z".parse().unwrap()
}

fn fail(ts: &str, ip: &str, user: &str) -> String {
    format!(
            "{ts} dovecot_login authenticator failed for (User) [{ip}]:4711: 535 Incorrect authentication data (set_id={user})"
        )
}

fn scan_text(s: Settings, text: &str) -> Report {
    let mut sc = Scanner::new(s);
    sc.scan("log", &mut Cursor::new(text.as_bytes().to_vec()), now())
        .unwrap();
    sc.finish()
}

#[test]
fn write_json_gives_the_bytes_of_the_derived_serialisation() {
    // Enough offenders for several rounds on several threads, hostile names included.
    let mut text = String::new();
    for i in 0..20_000u32 {
        let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        let user = match i % 3 {
            0 => format!("user{i}@example.com"),
            1 => format!("\"q\\uote\" {i} ✓"),
            _ => format!("x) [10.0.0.{}]:1: 535", i % 250),
        };
        text.push_str(&fail(
            &format!("2026-11-23 10:{:02}:{:02}", (i / 60) % 60, i % 60),
            &ip,
            &user,
        ));
        text.push('\n');
    }
    let r = scan_text(settings(), &text);
    assert!(r.offenders.len() > 2 * report::JSON_ROWS_PER_THREAD);
    let want = serde_json::to_vec(&r).unwrap();
    for threads in [1, 2, 3] {
        let mut got = Vec::new();
        r.write_json(&mut got, threads).unwrap();
        assert!(got == want, "{threads} threads: output differs");
    }
    let empty = scan_text(settings(), "");
    let mut got = Vec::new();
    empty.write_json(&mut got, 2).unwrap();
    assert_eq!(got, serde_json::to_vec(&empty).unwrap());
}

#[test]
fn a_table_from_the_first_rows_equals_the_table_from_all_rows() {
    // Offenders of many sizes, some crossing the threshold, some also logging in.
    let mut text = String::new();
    for i in 0..300u32 {
        let ip = format!("192.0.2.{}", i % 250);
        let ip = if i >= 250 {
            format!("2001:db8::{i:x}")
        } else {
            ip
        };
        for k in 0..(i % 9 + 1) {
            let t = format!("2026-11-23 10:{:02}:{:02}", (i / 10) % 60, (k * 7) % 60);
            text.push_str(&fail(&t, &ip, &format!("user{}", (i + k) % 13)));
            text.push('\n');
        }
        if i % 7 == 0 {
            text.push_str(&format!(
                    "2026-11-23 11:00:00 1vAbCd-0001Xy-Q1 <= u{i}@example.com H=(laptop) [{ip}]:51544 P=esmtpsa A=dovecot_plain:u{i} S=2121 id=1a2b@example.com\n"
                ));
        }
    }
    let full = scan_text(settings(), &text);
    assert!(full.offender_count > 250 && !full.also_succeeded.is_empty());
    assert!(!full.crossings.is_empty());
    // The counts kept beside the rows agree with the rows themselves.
    assert_eq!(full.offender_count, full.offenders.len());
    let sum: u64 = full.offenders.iter().map(|o| o.attempts).sum();
    assert_eq!(full.offender_attempts, sum);
    let succeeded: Vec<_> = full
        .offenders
        .iter()
        .filter(|o| o.successes > 0)
        .map(|o| (o.ip, o.attempts, o.successes))
        .collect();
    let kept: Vec<_> = full
        .also_succeeded
        .iter()
        .map(|a| (a.ip, a.failures, a.successes))
        .collect();
    assert_eq!(kept, succeeded);
    let rest: u64 = full.offenders[5..].iter().map(|o| o.attempts).sum();
    let line = format!(
        "  … and {} more IPs with {rest} attempts\n",
        full.offender_count - 5
    );
    assert!(full.to_table(5).contains(&line), "{}", full.to_table(5));
    for top in [1, 5, 20, 299, 300, 1000] {
        let mut sc = Scanner::new(settings());
        sc.scan("log", &mut Cursor::new(text.as_bytes().to_vec()), now())
            .unwrap();
        let part = sc.finish_with_rows(Some(top));
        assert_eq!(part.offenders.len(), top.min(full.offender_count));
        assert_eq!(part.to_table(top), full.to_table(top), "--top {top}");
    }
    assert_eq!(full.to_table(0), scan_text(settings(), &text).to_table(0));
}

#[test]
fn unknown_services_are_a_usage_error_naming_the_known_ones() {
    let e = Settings::new(&["exim,nosuch".to_string()], None).unwrap_err();
    assert_eq!(e.exit_code(), EXIT_USAGE);
    let msg = e.to_string();
    assert!(
        msg.contains("\"nosuch\"") && msg.contains("exim, postfix"),
        "{msg}"
    );
    let s = Settings::new(&["exim".into(), "exim,dovecot".into()], None).unwrap();
    assert_eq!(s.services, vec!["exim", "dovecot"]);
    assert_eq!(s.rules().services(), vec!["exim", "dovecot"]);
}

#[test]
fn a_missing_config_is_a_config_error() {
    let e = Settings::new(&[], Some(Path::new("/nonexistent/authwatch.yaml"))).unwrap_err();
    assert_eq!(e.exit_code(), EXIT_CONFIG);
}

#[test]
fn report_counts_offenders_accounts_and_crossings() {
    let mut text = String::new();
    for i in 0..6 {
        text += &fail(&format!("2026-11-23 10:00:0{i}"), "203.0.113.5", "alice");
        text.push('\n');
        text += "2026-11-23 10:00:09 Start queue run: pid=1\n";
    }
    text += &fail("2026-11-23 11:30:00", "203.0.113.6", "alice");
    text.push('\n');
    let r = scan_text(settings(), &text);
    assert_eq!((r.lines, r.matched, r.failed_attempts), (13, 7, 7));
    assert_eq!(r.offenders.len(), 2);
    assert_eq!(r.offenders[0].ip.to_string(), "203.0.113.5");
    assert_eq!(r.offenders[0].attempts, 6);
    assert_eq!(
        r.offenders[0].first_seen.map(|t| t.to_string()).as_deref(),
        Some("2026-11-23T10:00:00+00:00")
    );
    assert_eq!(&*r.accounts[0].name, "alice");
    assert_eq!((r.accounts[0].attempts, r.accounts[0].ips), (7, 2));
    assert_eq!(r.subnets.len(), 1);
    assert_eq!(r.subnets[0].subnet, "203.0.113.0/24");
    assert_eq!(r.crossings.len(), 1);
    // The fifth failure is on line 9 (failures on odd lines).
    assert_eq!(r.crossings[0].line, 9);
    assert_eq!(r.crossings[0].time.to_string(), "2026-11-23T10:00:04+00:00");
    let h: Vec<u64> = r.hourly.iter().map(|h| h.attempts).collect();
    assert_eq!(h, vec![6, 1]);
    let table = r.to_table(20);
    assert!(table.contains("OFFENDERS (2 of 2 IPs"), "{table}");
    assert!(table.contains("|█▂|"), "{table}");
}

#[test]
fn threshold_comes_from_settings() {
    let mut s = settings();
    s.attempts = 2;
    s.window = Duration::from_secs(5);
    let text = [
        fail("2026-11-23 10:00:00", "192.0.2.1", "a"),
        fail("2026-11-23 10:00:06", "192.0.2.1", "a"),
        fail("2026-11-23 10:00:11", "192.0.2.1", "a"),
    ]
    .join("\n");
    let r = scan_text(s, &text);
    assert_eq!(r.crossings.len(), 1);
    assert_eq!(r.crossings[0].line, 3);
}

#[test]
fn stampless_hits_take_the_previous_stamped_lines_time() {
    // The second failure has no stamp; the line before it has none either; the time
    // comes from the queue-run line before that.
    let text = format!(
        "{}\n2026-11-23 10:05:00 Start queue run: pid=1\ncontinuation without stamp\n{}\n",
        fail("2026-11-23 10:00:00", "192.0.2.7", "a"),
        fail("", "192.0.2.7", "b").trim_start(),
    );
    let mut rules = settings().rules();
    let mut times = Vec::new();
    let ctx = ParseCtx::new(TimeZone::UTC, now());
    let (_, matched, r) = match_lines(
        &mut rules,
        &ctx,
        &mut Cursor::new(text.into_bytes()),
        &mut Vec::new(),
        1000,
        |no, _h, t, _l| {
            times.push((no, t.map(|t| t.to_string())));
            Ok::<(), ()>(())
        },
    );
    assert!(r.is_ok());
    assert_eq!(matched, 2);
    assert_eq!(
        times,
        vec![
            (1, Some("2026-11-23T10:00:00Z".to_string())),
            (4, Some("2026-11-23T10:05:00Z".to_string()))
        ]
    );
}

#[test]
fn stamp_tracker_parses_lazily_and_keeps_the_last_good_time() {
    let ctx = ParseCtx::new(TimeZone::UTC, now());
    let mut st = StampTracker::new();
    assert_eq!(st.previous(&ctx), None);
    st.see(b"2026-11-23 10:00:00 something");
    st.see(b"no stamp here");
    assert_eq!(
        st.previous(&ctx).map(|t| t.to_string()).as_deref(),
        Some("2026-11-23T10:00:00Z")
    );
    st.see(b"Nov 23 10:01:02 host prog: text");
    assert_eq!(
        st.previous(&ctx).map(|t| t.to_string()).as_deref(),
        Some("2026-11-23T10:01:02Z")
    );
    // Shaped like a stamp but not one: the last good time stays.
    st.see(b"2026-99-99 99:99:99 nonsense");
    assert_eq!(
        st.previous(&ctx).map(|t| t.to_string()).as_deref(),
        Some("2026-11-23T10:01:02Z")
    );
}

#[test]
fn events_are_json_lines_with_one_based_line_numbers() {
    let s = settings();
    let mut rules = s.rules();
    let text = format!(
        "2026-11-23 10:00:00 Start queue run: pid=1\n{}\n",
        fail("2026-11-23 10:00:01", "::ffff:192.0.2.9", "x\"y")
    );
    let mut out = Vec::new();
    let (lines, matched) = write_events(
        &s,
        &mut rules,
        "mainlog",
        &mut Cursor::new(text.into_bytes()),
        now(),
        &mut Vec::new(),
        &mut out,
    )
    .unwrap_or_else(|_| panic!("write_events failed"));
    assert_eq!((lines, matched), (2, 1));
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
    assert_eq!(v["file"], "mainlog");
    assert_eq!(v["line"], 2);
    assert_eq!(v["service"], "exim");
    assert_eq!(v["ip"], "192.0.2.9");
    assert_eq!(v["user"], "x\"y");
    assert_eq!(v["attempts"], 1);
    assert_eq!(v["time"], "2026-11-23T10:00:01+00:00");
    assert_eq!(v["kind"], "failure");
}

#[test]
fn a_read_error_keeps_the_lines_before_it() {
    struct Failing(Cursor<Vec<u8>>);
    impl io::Read for Failing {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            match self.0.read(b)? {
                0 => Err(io::Error::other("disk on fire")),
                n => Ok(n),
            }
        }
    }
    let text = format!("{}\n", fail("2026-11-23 10:00:00", "192.0.2.1", "a"));
    let mut sc = Scanner::new(settings());
    let mut r = io::BufReader::new(Failing(Cursor::new(text.into_bytes())));
    let err = sc.scan("bad", &mut r, now()).unwrap_err();
    assert_eq!(err.0, 1);
    let rep = sc.finish();
    assert_eq!(rep.failed_attempts, 1);
    assert_eq!(rep.files[0].error.as_deref(), Some("disk on fire"));
}
