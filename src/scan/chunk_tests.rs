//! Tests of the parallel scan: blocks on threads and gzip or long-line streams give the same
//! report as reading line by line; line views.

use super::super::{match_lines, FileSummary, Report, Scanner, Settings};
use super::*;
use jiff::tz::TimeZone;
use std::io::{Cursor, Write};

fn now() -> Timestamp {
    "2026-11-24T00:00:00Z".parse().unwrap()
}

fn settings(max_line_bytes: usize) -> Settings {
    Settings {
        tz: TimeZone::UTC,
        progress: false,
        max_line_bytes,
        ..Settings::default()
    }
}

/// A log that exercises every path: stamped and stampless hits, stamp-shaped junk,
/// Dovecot lines paired by session (a rule with state), CRLF, invalid UTF-8, empty lines,
/// lines longer than kept (with a literal before and after the cut), no final newline.
fn mixed_log(seed: u64, lines: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    let mut sec = 0u32;
    for i in 0..lines {
        sec += rng.u32(0..40);
        let (h, m, s) = (10 + sec / 3600 % 12, sec / 60 % 60, sec % 60);
        let stamp = format!("2026-11-23 {h:02}:{m:02}:{s:02}");
        let syslog = format!("Nov 23 {h:02}:{m:02}:{s:02}");
        let ip = format!("192.0.2.{}", rng.u8(1..12));
        let user = ["alice", "bob", "root", "x y (z)"][rng.usize(0..4)];
        let line = match rng.u8(0..16) {
                0..=4 => format!(
                    "{stamp} dovecot_login authenticator failed for (x) [{ip}]:{}: 535 Incorrect authentication data (set_id={user})",
                    rng.u16(1..60000)
                ),
                5 => format!(
                    "dovecot_login authenticator failed for (x) [{ip}]: 535 Incorrect authentication data (set_id={user})"
                ),
                6 => format!("{stamp} Start queue run: pid={i}"),
                7 => "continuation without stamp".to_string(),
                8 => "2026-99-99 99:99:99 shaped like a stamp".to_string(),
                9 => format!("{syslog} host auth: Info: passwd-file({user},{ip},<nO2SsvRg5Ox/AAAB>): Password mismatch"),
                10 => format!(
                    "{syslog} host imap-login: Info: Disconnected: Aborted login by logging out (auth failed, {} attempts in 10 secs): user=<{user}>, method=PLAIN, rip={ip}, lip=127.0.0.1, secured, session=<nO2SsvRg5Ox/AAAB>",
                    rng.u8(1..4)
                ),
                11 => format!(
                    "{stamp} 1xNIzQ-0005zM-p6 <= a@example.com H=(x) [{ip}]:4068 P=esmtpsa A=dovecot_plain:{user} S=3 id=1@x"
                ),
                12 => format!(
                    "{stamp} plain authenticator failed for (x) [{ip}]: 535 Incorrect authentication data (set_id=\u{e9}{user})\r"
                ),
                13 => String::new(),
                // Long lines: the padding is in the attacker's set_id, where Exim writes it.
                14 => format!(
                    "{stamp} dovecot_login authenticator failed for (x) [{ip}]: 535 Incorrect authentication data (set_id={})",
                    "pad ".repeat(rng.usize(0..120))
                ),
                _ => format!("{stamp} \u{fffd}junk [{ip}] auth"),
            };
        out.extend_from_slice(line.as_bytes());
        if rng.u8(0..50) == 0 {
            out.extend_from_slice(b"\xff\xfe invalid utf-8 [192.0.2.1] rip=");
        }
        if i + 1 < lines || rng.bool() {
            out.push(b'\n');
        }
    }
    out
}

/// The report of the line-by-line reader (`match_lines`), as `scan` made it before blocks.
fn reference(s: &Settings, data: &[u8]) -> Report {
    let mut sc = Scanner::new(s.clone());
    let ctx = ParseCtx::new(s.tz.clone(), now());
    let agg = &mut sc.agg;
    let (lines, matched, r) = match_lines(
        &mut sc.rules,
        &ctx,
        &mut Cursor::new(data.to_vec()),
        &mut Vec::new(),
        s.max_line_bytes,
        |no, hit, time, _| {
            agg.observe(hit, time, 0, no);
            Ok::<(), ()>(())
        },
    );
    assert!(r.is_ok());
    sc.files.push(FileSummary {
        name: "log".into(),
        lines,
        matched,
        error: None,
    });
    sc.finish()
}

fn json(r: &Report) -> serde_json::Value {
    serde_json::to_value(r).unwrap()
}

fn by_file(s: &Settings, data: &[u8], threads: usize, block: u64) -> Report {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(data).unwrap();
    let mut sc = Scanner::new(s.clone());
    sc.threads = threads;
    sc.block = Some(block);
    sc.scan_file("log", &f, data.len() as u64, now(), None)
        .unwrap();
    sc.finish()
}

fn by_stream(s: &Settings, data: &[u8]) -> Report {
    let mut sc = Scanner::new(s.clone());
    sc.scan("log", &mut Cursor::new(data.to_vec()), now())
        .unwrap();
    sc.finish()
}

#[test]
fn blocks_on_threads_give_the_line_by_line_report() {
    for (seed, max) in [(1, 65536), (2, 120), (3, 30)] {
        let s = settings(max);
        let data = mixed_log(seed, 1500);
        let want = json(&reference(&s, &data));
        // With lines cut at 120 bytes most Exim lines lose the end Exim writes after
        // `535 …`, and a line whose end cannot be checked is not blamed: fewer matches.
        if max > 1000 {
            assert!(
                want["matched"].as_u64().unwrap() > 500,
                "{seed}: {}",
                want["matched"]
            );
            assert!(!want["crossings"].as_array().unwrap().is_empty());
        }
        assert_eq!(json(&by_stream(&s, &data)), want, "stream, seed {seed}");
        // Blocks of one byte, cut mid-line, a few lines, and many lines; 1 to 3 threads.
        for block in [1, 7, 64, 333, 4096, 1 << 20] {
            let threads: &[usize] = if block == 1 { &[2] } else { &[1, 2, 3] };
            for &threads in threads {
                let got = json(&by_file(&s, &data, threads, block));
                assert_eq!(got, want, "seed {seed}, block {block}, threads {threads}");
            }
        }
    }
}

#[test]
fn the_same_report_without_a_final_newline_and_for_empty_input() {
    let s = settings(65536);
    for data in [&b""[..], b"\n", b"\n\n", b"no newline", b"a\nb"] {
        let want = json(&reference(&s, data));
        assert_eq!(json(&by_stream(&s, data)), want);
        assert_eq!(json(&by_file(&s, data, 2, 1)), want);
    }
}

#[test]
fn gzip_streams_give_the_line_by_line_report() {
    use flate2::{read::MultiGzDecoder, write::GzEncoder, Compression};
    let s = settings(100);
    let data = mixed_log(7, 2000);
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(&data).unwrap();
    let gz = e.finish().unwrap();
    let mut sc = Scanner::new(s.clone());
    let mut r = std::io::BufReader::new(MultiGzDecoder::new(Cursor::new(gz)));
    sc.scan("log", &mut r, now()).unwrap();
    assert_eq!(json(&sc.finish()), json(&reference(&s, &data)));
}

#[test]
fn a_stream_with_lines_longer_than_a_read_is_cut_like_line_by_line() {
    // Lines far longer than the kept part and than one read of the stream.
    let s = settings(50);
    let mut data = Vec::new();
    for i in 0..3 {
        data.extend_from_slice(
                format!("2026-11-23 10:00:0{i} dovecot_login authenticator failed for (x) [192.0.2.{i}]: 535 Incorrect authentication data (set_id=a)")
                    .as_bytes(),
            );
        data.extend(std::iter::repeat_n(b'x', STREAM_BLOCK * 2 + 17));
        data.push(b'\n');
        data.extend_from_slice(b"2026-11-23 10:00:09 dovecot_login authenticator failed for (x) [192.0.2.9]: 535 Incorrect authentication data\n");
    }
    let want = json(&reference(&s, &data));
    assert_eq!(want["lines"], 6);
    assert_eq!(json(&by_stream(&s, &data)), want);
    assert_eq!(json(&by_file(&s, &data, 2, 1000)), want);
}

#[test]
fn line_views_cut_then_drop_one_cr() {
    assert_eq!(line_view(b"abc\r", 10), b"abc");
    assert_eq!(line_view(b"abc\r", 3), b"abc");
    assert_eq!(line_view(b"ab\rcd", 3), b"ab");
    assert_eq!(line_view(b"", 3), b"");
}
