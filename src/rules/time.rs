//! Reads the time stamp at the start of a log line, by hand on bytes (this runs for every
//! candidate line, so: no regex, no allocation). Understood: Exim `YYYY-MM-DD HH:MM:SS[.fff]`
//! with an optional detached zone (`+0100`, Exim's `log_timezone`), RFC 3339 (`T`, fraction,
//! `Z`/`+01:00`/`+0100`), yearless syslog `Mon DD HH:MM:SS` / `Mon  D HH:MM:SS` (the year is
//! inferred from `ParseCtx::now`), and TAI64N `@4000…` (daemontools, s6). Stamps without a zone
//! are read in `ParseCtx::tz`.

use super::ParseCtx;
use jiff::{civil::DateTime, tz::Offset, Timestamp};

/// A yearless stamp may lie this far in the future of `ctx.now` (clock skew between the host
/// that wrote the log and ours) and still be given the current year.
const FUTURE_TOLERANCE_SECS: i64 = 86_400;

/// TAI64 labels count from 2^62; daemontools and s6 (by default) write
/// `2^62 + 10 + unix_seconds`: a constant 10 s TAI-UTC offset, no leap-second table.
const TAI64_EPOCH: u64 = 1 << 62;
const TAI64_UTC_OFFSET_SECS: i64 = 10;

/// Parses the time stamp at the start of `line`.
///
/// Returns the stamp and the rest of the line after it and after any following spaces or tabs.
/// When the line does not start with a stamp we can read (or the stamp names an impossible
/// date), returns `(None, line)` unchanged.
///
/// TAI64N: the label minus 2^62 minus a constant 10 s, which gives back exactly the Unix time
/// that daemontools' `tai64n` / s6's `s6-log` encoded (they ignore leap seconds the same way).
pub fn parse_leading_time<'a>(line: &'a str, ctx: &ParseCtx) -> (Option<Timestamp>, &'a str) {
    let b = line.as_bytes();
    let parsed = match b.first() {
        Some(b'0'..=b'9') => parse_iso(b, ctx),
        Some(b'@') => parse_tai64n(b),
        Some(c) if c.is_ascii_alphabetic() => parse_syslog(b, ctx),
        _ => None,
    };
    match parsed {
        // `end` always sits right after an ASCII byte, so it is a char boundary.
        Some((ts, end)) => (Some(ts), skip_blanks(&line[end..])),
        None => (None, line),
    }
}

fn skip_blanks(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

/// A stamp must end at the end of the line or before a blank.
fn at_boundary(b: &[u8], i: usize) -> bool {
    matches!(b.get(i), None | Some(b' ' | b'\t'))
}

/// Exactly `n` ASCII digits at `at`, as a number.
fn digits(b: &[u8], at: usize, n: usize) -> Option<i32> {
    let s = b.get(at..at + n)?;
    let mut v: i32 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i32::from(c - b'0');
    }
    Some(v)
}

/// Optional `.fff` / `,fff` fraction at `i`: returns (nanoseconds, index after it). Digits past
/// the ninth are consumed and ignored.
fn fraction(b: &[u8], mut i: usize) -> (i32, usize) {
    if !matches!(b.get(i), Some(b'.' | b',')) || !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        return (0, i);
    }
    i += 1;
    let mut ns: i32 = 0;
    let mut n = 0;
    while let Some(&c) = b.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        if n < 9 {
            ns = ns * 10 + i32::from(c - b'0');
            n += 1;
        }
        i += 1;
    }
    for _ in n..9 {
        ns *= 10;
    }
    (ns, i)
}

/// `HH:MM:SS` at `i` (a leap second `:60` is read as `:59`).
fn clock(b: &[u8], i: usize) -> Option<(i8, i8, i8)> {
    let h = digits(b, i, 2)?;
    let m = digits(b, i + 3, 2)?;
    let s = digits(b, i + 6, 2)?;
    if b[i + 2] != b':' || b[i + 5] != b':' || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some((h as i8, m as i8, s.min(59) as i8))
}

/// A numeric zone `+HH:MM`, `+HHMM` (or `-`) at `i`: returns (offset, index after it).
fn numeric_zone(b: &[u8], i: usize) -> Option<(Offset, usize)> {
    let sign = match b.get(i)? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let h = digits(b, i + 1, 2)?;
    let (m, end) = if b.get(i + 3) == Some(&b':') {
        (digits(b, i + 4, 2)?, i + 6)
    } else {
        (digits(b, i + 3, 2)?, i + 5)
    };
    if h > 23 || m > 59 {
        return None;
    }
    let off = Offset::from_seconds(sign * (h * 3600 + m * 60)).ok()?;
    Some((off, end))
}

/// Exim (`2026-11-23 15:59:08[.047][ +0100]`) and RFC 3339 (`2026-11-23T15:59:08.123+01:00`).
fn parse_iso(b: &[u8], ctx: &ParseCtx) -> Option<(Timestamp, usize)> {
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let sep = b[10];
    if !matches!(sep, b' ' | b'T' | b't') {
        return None;
    }
    let (h, mi, s) = clock(b, 11)?;
    let (ns, mut i) = fraction(b, 19);
    let mut offset = None;
    match b.get(i) {
        Some(b'Z' | b'z') => {
            offset = Some(Offset::UTC);
            i += 1;
        }
        Some(b'+' | b'-') => {
            let (off, end) = numeric_zone(b, i)?;
            offset = Some(off);
            i = end;
        }
        // Exim with `log_timezone = true`: "2026-11-23 15:59:08 +0100 ...".
        Some(b' ') if sep == b' ' => {
            if let Some((off, end)) = numeric_zone(b, i + 1) {
                if at_boundary(b, end) {
                    offset = Some(off);
                    i = end;
                }
            }
        }
        _ => {}
    }
    if !at_boundary(b, i) {
        return None;
    }
    let dt = DateTime::new(year as i16, month as i8, day as i8, h, mi, s, ns).ok()?;
    let ts = match offset {
        Some(off) => off.to_timestamp(dt).ok()?,
        None => ctx.tz.to_ambiguous_timestamp(dt).compatible().ok()?,
    };
    Some((ts, i))
}

fn month_number(b: &[u8]) -> Option<i8> {
    let m = [
        b[0].to_ascii_lowercase(),
        b[1].to_ascii_lowercase(),
        b[2].to_ascii_lowercase(),
    ];
    Some(match &m {
        b"jan" => 1,
        b"feb" => 2,
        b"mar" => 3,
        b"apr" => 4,
        b"may" => 5,
        b"jun" => 6,
        b"jul" => 7,
        b"aug" => 8,
        b"sep" => 9,
        b"oct" => 10,
        b"nov" => 11,
        b"dec" => 12,
        _ => return None,
    })
}

/// Syslog (RFC 3164) `Nov 23 15:59:08`, `Nov  3 15:59:08` (also `Nov 03`), optional fraction.
fn parse_syslog(b: &[u8], ctx: &ParseCtx) -> Option<(Timestamp, usize)> {
    if b.len() < 15 || b[3] != b' ' {
        return None;
    }
    let month = month_number(&b[..3])?;
    let (day, i) = if b[4] == b' ' {
        (digits(b, 5, 1)?, 6)
    } else {
        (digits(b, 4, 2)?, 6)
    };
    if b.get(i) != Some(&b' ') || b.len() < i + 9 {
        return None;
    }
    let (h, mi, s) = clock(b, i + 1)?;
    let (ns, end) = fraction(b, i + 9);
    if !at_boundary(b, end) {
        return None;
    }
    let ts = infer_year(month, day as i8, h, mi, s, ns, ctx)?;
    Some((ts, end))
}

/// The latest year that does not put the stamp more than [`FUTURE_TOLERANCE_SECS`] after
/// `ctx.now` (both read in `ctx.tz`). Looks back up to 8 years, for 29 February.
fn infer_year(
    month: i8,
    day: i8,
    h: i8,
    mi: i8,
    s: i8,
    ns: i32,
    ctx: &ParseCtx,
) -> Option<Timestamp> {
    let now = ctx.tz.to_datetime(ctx.now);
    let limit = ctx.now.as_second().saturating_add(FUTURE_TOLERANCE_SECS);
    let this_year = now.year();
    // Next year is only reachable within the tolerance: a January stamp seen in December.
    let first = if month == 1 && now.month() == 12 {
        this_year.saturating_add(1)
    } else {
        this_year
    };
    for year in (this_year.saturating_sub(8)..=first).rev() {
        let Ok(dt) = DateTime::new(year, month, day, h, mi, s, ns) else {
            continue;
        };
        let Ok(ts) = ctx.tz.to_ambiguous_timestamp(dt).compatible() else {
            continue;
        };
        if ts.as_second() <= limit {
            return Some(ts);
        }
    }
    None
}

fn hex(b: &[u8], at: usize, n: usize) -> Option<u64> {
    let s = b.get(at..at + n)?;
    let mut v: u64 = 0;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

/// TAI64N `@` + 16 hex digits of label + 8 hex digits of nanoseconds.
fn parse_tai64n(b: &[u8]) -> Option<(Timestamp, usize)> {
    let label = hex(b, 1, 16)?;
    let nanos = hex(b, 17, 8)?;
    if !at_boundary(b, 25) || label < TAI64_EPOCH || nanos >= 1_000_000_000 {
        return None;
    }
    let secs = i64::try_from(label - TAI64_EPOCH).ok()? - TAI64_UTC_OFFSET_SECS;
    let ts = Timestamp::new(secs, nanos as i32).ok()?;
    Some((ts, 25))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    fn ctx_utc(now: &str) -> ParseCtx {
        ParseCtx::new(TimeZone::UTC, now.parse().unwrap())
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn parse<'a>(line: &'a str, ctx: &ParseCtx) -> (Option<Timestamp>, &'a str) {
        parse_leading_time(line, ctx)
    }

    #[test]
    fn exim_plain_in_ctx_zone() {
        let ctx = ctx_utc("2026-11-24T00:00:00Z");
        let (t, rest) = parse("2026-11-23 15:59:08 PLAIN authenticator failed", &ctx);
        assert_eq!(t, Some(ts("2026-11-23T15:59:08Z")));
        assert_eq!(rest, "PLAIN authenticator failed");

        let berlin = ParseCtx::new(
            TimeZone::get("Europe/Berlin").unwrap(),
            ts("2026-11-24T00:00:00Z"),
        );
        let (t, _) = parse("2026-11-23 15:59:08 x", &berlin);
        assert_eq!(t, Some(ts("2026-11-23T14:59:08Z")));
        // Summer time.
        let (t, _) = parse("2026-07-01 12:00:00 x", &berlin);
        assert_eq!(t, Some(ts("2026-07-01T10:00:00Z")));
    }

    #[test]
    fn exim_millis_pid_and_zone() {
        let ctx = ctx_utc("2026-11-24T00:00:00Z");
        let (t, rest) = parse("2026-11-23 15:40:35.047 [12345] PLAIN x", &ctx);
        assert_eq!(t, Some(ts("2026-11-23T15:40:35.047Z")));
        assert_eq!(rest, "[12345] PLAIN x");

        let (t, rest) = parse("2026-11-23 15:59:08 +0100 PLAIN x", &ctx);
        assert_eq!(t, Some(ts("2026-11-23T14:59:08Z")));
        assert_eq!(rest, "PLAIN x");

        let (t, rest) = parse("2026-11-23 15:40:35.047 -0530 [7] x", &ctx);
        assert_eq!(t, Some(ts("2026-11-23T21:10:35.047Z")));
        assert_eq!(rest, "[7] x");

        // Only a stamp: nothing left.
        let (t, rest) = parse("2026-11-23 15:59:08", &ctx);
        assert_eq!(t, Some(ts("2026-11-23T15:59:08Z")));
        assert_eq!(rest, "");
        // A zone-like token that is not a zone stays in the rest.
        let (t, rest) = parse("2026-11-23 15:59:08 +01000 x", &ctx);
        assert_eq!(t, Some(ts("2026-11-23T15:59:08Z")));
        assert_eq!(rest, "+01000 x");
    }

    #[test]
    fn rfc3339() {
        let ctx = ctx_utc("2026-11-24T00:00:00Z");
        let (t, rest) = parse("2026-11-23T15:59:08.123456+01:00 mx1 exim[1]: x", &ctx);
        assert_eq!(t, Some(ts("2026-11-23T14:59:08.123456Z")));
        assert_eq!(rest, "mx1 exim[1]: x");
        let (t, rest) = parse("2026-11-23T15:59:08Z host x", &ctx);
        assert_eq!(t, Some(ts("2026-11-23T15:59:08Z")));
        assert_eq!(rest, "host x");
        // journalctl -o short-iso writes +0100 without a colon.
        let (t, _) = parse("2026-11-23T15:59:08+0100 host x", &ctx);
        assert_eq!(t, Some(ts("2026-11-23T14:59:08Z")));
        let (t, _) = parse("2026-11-23T15:59:08.5-02:30 host", &ctx);
        assert_eq!(t, Some(ts("2026-11-23T18:29:08.5Z")));
        // No zone: read in ctx.tz.
        let (t, _) = parse("2026-11-23T15:59:08 host", &ctx);
        assert_eq!(t, Some(ts("2026-11-23T15:59:08Z")));
        // Leap second is clamped.
        let (t, _) = parse("2016-12-31T23:59:60Z x", &ctx);
        assert_eq!(t, Some(ts("2016-12-31T23:59:59Z")));
    }

    #[test]
    fn syslog_same_year() {
        let ctx = ctx_utc("2026-11-24T10:00:00Z");
        let (t, rest) = parse("Nov 23 15:59:08 mx1 exim[1234]: x", &ctx);
        assert_eq!(t, Some(ts("2026-11-23T15:59:08Z")));
        assert_eq!(rest, "mx1 exim[1234]: x");
        let (t, rest) = parse("Nov  3 01:02:03 mx1 x", &ctx);
        assert_eq!(t, Some(ts("2026-11-03T01:02:03Z")));
        assert_eq!(rest, "mx1 x");
        let (t, _) = parse("Nov 03 01:02:03 mx1 x", &ctx);
        assert_eq!(t, Some(ts("2026-11-03T01:02:03Z")));
        // Earlier months are this year, later months last year.
        let (t, _) = parse("Feb 10 00:00:00 x", &ctx);
        assert_eq!(t, Some(ts("2026-02-10T00:00:00Z")));
        let (t, _) = parse("Dec  1 00:00:00 x", &ctx);
        assert_eq!(t, Some(ts("2025-12-01T00:00:00Z")));
        // A few hours ahead (clock skew) still counts as this year.
        let (t, _) = parse("Nov 24 20:00:00 x", &ctx);
        assert_eq!(t, Some(ts("2026-11-24T20:00:00Z")));
        // More than a day ahead: last year.
        let (t, _) = parse("Nov 26 10:00:00 x", &ctx);
        assert_eq!(t, Some(ts("2025-11-26T10:00:00Z")));
    }

    #[test]
    fn syslog_around_new_year() {
        // Just after midnight on 1 January: December lines are from last year.
        let ctx = ctx_utc("2027-01-01T00:05:00Z");
        let (t, _) = parse("Dec 31 23:59:59 x", &ctx);
        assert_eq!(t, Some(ts("2026-12-31T23:59:59Z")));
        let (t, _) = parse("Jan  1 00:04:00 x", &ctx);
        assert_eq!(t, Some(ts("2027-01-01T00:04:00Z")));
        // Our clock is slightly behind the log writer's: still this year.
        let (t, _) = parse("Jan  1 00:30:00 x", &ctx);
        assert_eq!(t, Some(ts("2027-01-01T00:30:00Z")));

        // Just before midnight on 31 December, a January line from a host whose clock runs
        // ahead belongs to next year, not to 11 months ago.
        let ctx = ctx_utc("2026-12-31T23:50:00Z");
        let (t, _) = parse("Jan  1 00:02:00 x", &ctx);
        assert_eq!(t, Some(ts("2027-01-01T00:02:00Z")));
        let (t, _) = parse("Dec 31 23:49:00 x", &ctx);
        assert_eq!(t, Some(ts("2026-12-31T23:49:00Z")));
        // A January line far from the tolerance is this January.
        let (t, _) = parse("Jan 20 00:00:00 x", &ctx);
        assert_eq!(t, Some(ts("2026-01-20T00:00:00Z")));

        // New Year in the context zone, not in UTC: 2027-01-01 00:30 in Berlin is
        // 2026-12-31 23:30 UTC.
        let berlin = ParseCtx::new(
            TimeZone::get("Europe/Berlin").unwrap(),
            ts("2026-12-31T23:30:00Z"),
        );
        let (t, _) = parse("Jan  1 00:20:00 x", &berlin);
        assert_eq!(t, Some(ts("2026-12-31T23:20:00Z")));
        let (t, _) = parse("Dec 31 23:59:00 x", &berlin);
        assert_eq!(t, Some(ts("2026-12-31T22:59:00Z")));
    }

    #[test]
    fn syslog_leap_day() {
        // 29 February is taken from the latest leap year not in the future.
        let ctx = ctx_utc("2027-03-01T00:00:00Z");
        let (t, _) = parse("Feb 29 12:00:00 x", &ctx);
        assert_eq!(t, Some(ts("2024-02-29T12:00:00Z")));
        let ctx = ctx_utc("2028-03-01T00:00:00Z");
        let (t, _) = parse("Feb 29 12:00:00 x", &ctx);
        assert_eq!(t, Some(ts("2028-02-29T12:00:00Z")));
    }

    #[test]
    fn tai64n() {
        let ctx = ctx_utc("2026-11-24T00:00:00Z");
        // daemontools writes 2^62 + 10 + unix seconds.
        let (t, rest) = parse("@400000004c91b044077a9e94 exim x", &ctx);
        let want = Timestamp::new(0x4c91_b044 - 10, 0x077a_9e94).unwrap();
        assert_eq!(t, Some(want));
        assert_eq!(rest, "exim x");
        // 2026-11-23T15:59:08Z = 1795449548.
        let label = format!("@{:016x}{:08x} x", (1u64 << 62) + 10 + 1_795_449_548, 5_000);
        let (t, _) = parse(&label, &ctx);
        assert_eq!(t, Some(ts("2026-11-23T15:59:08.000005Z")));
        // Nanoseconds out of range, too short, junk.
        for bad in [
            "@400000004c91b0443b9aca00 x",
            "@400000004c91b044077a9e9 x",
            "@400000004c91b044077a9e9g x",
            "@000000004c91b044077a9e94 x",
        ] {
            assert_eq!(parse(bad, &ctx), (None, bad), "{bad}");
        }
    }

    #[test]
    fn not_a_stamp() {
        let ctx = ctx_utc("2026-11-24T00:00:00Z");
        for line in [
            "",
            "PLAIN authenticator failed",
            "2026-11-23",
            "2026-11-23 15:59",
            "2026-13-23 15:59:08 month 13",
            "2026-02-30 15:59:08 no such day",
            "2026-11-23 25:59:08 hour 25",
            "2026-11-23 15:59:08x glued",
            "2026-11-23T15:59:08+25:00 bad zone",
            "Foo 23 15:59:08 x",
            "Nov 32 15:59:08 x",
            "Nov 23 15:59 x",
            "Nov 23 15:59:08x",
            "1xNIze-0008bX-A5 <= x",
            "@ x",
            "été",
        ] {
            assert_eq!(parse(line, &ctx), (None, line), "{line:?}");
        }
    }
}
