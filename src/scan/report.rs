//! What `scan` prints: the [`Report`] (serialised as-is for `--format json`) and its table
//! form: aligned columns with a header per section, attacker-chosen text (account names) made
//! inert with [`crate::text::inert`], long tables cut at `--top` with a count of the rest,
//! and attempts per hour as a bar chart of `▁▂▃▄▅▆▇█`.

use jiff::{
    tz::{Offset, TimeZone},
    Timestamp,
};
use serde::Serialize;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

/// A time as RFC 3339 with the offset of `tz` at that moment (e.g. `2026-11-23T15:59:08+01:00`).
pub(crate) fn rfc3339(ts: Timestamp, tz: &TimeZone) -> String {
    ts.display_with_offset(tz.to_offset(ts)).to_string()
}

/// A moment with the offset of the scan's zone at that moment: shown as RFC 3339 like
/// [`rfc3339`], but formatted only when written (a report of a large log holds hundreds of
/// thousands of them, and the table shows a few).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    ts: Timestamp,
    offset: Offset,
}

impl Stamp {
    pub(crate) fn new(ts: Timestamp, tz: &TimeZone) -> Stamp {
        Stamp {
            ts,
            offset: tz.to_offset(ts),
        }
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.ts.display_with_offset(self.offset), f)
    }
}

impl Serialize for Stamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The wall-clock part of an RFC 3339 time, for tables: `2026-11-23 15:59:08`.
fn wall(rfc: &str) -> String {
    match rfc.get(..19) {
        Some(s) if rfc.as_bytes().get(10) == Some(&b'T') => s.replacen('T', " ", 1),
        _ => rfc.to_string(),
    }
}

fn wall_opt<T: std::fmt::Display>(t: &Option<T>) -> String {
    t.as_ref()
        .map_or_else(|| "-".to_string(), |t| wall(&t.to_string()))
}

#[derive(Debug, Clone, Serialize)]
pub struct FileSummary {
    pub name: String,
    pub lines: u64,
    pub matched: u64,
    /// Why the file could not be read (completely), if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Threshold {
    pub attempts: u32,
    pub window_seconds: u64,
    /// The window as written in configs, e.g. `10m`.
    pub window: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AccountCount {
    /// Shared with the account table: one copy of each name however many IPs tried it.
    pub name: Arc<str>,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Offender {
    pub ip: IpAddr,
    /// Failed attempts.
    pub attempts: u64,
    /// The accounts tried (at most 100 per IP), most tried first.
    pub accounts: Vec<AccountCount>,
    /// Attempts on accounts not listed (beyond the per-IP cap).
    pub other_account_attempts: u64,
    /// Attempts that named no account.
    pub no_account_attempts: u64,
    pub first_seen: Option<Stamp>,
    pub last_seen: Option<Stamp>,
    /// The service(s) that logged the failures, comma-separated, first seen first.
    pub service: Cow<'static, str>,
    /// Successful logins from this IP (in the same logs).
    pub successes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountRow {
    pub name: Arc<str>,
    pub attempts: u64,
    /// Distinct IPs that tried this account.
    pub ips: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubnetRow {
    /// IPv4 /24 or IPv6 /64.
    pub subnet: String,
    /// Attacking addresses inside it.
    pub addresses: u64,
    pub attempts: u64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrossingRow {
    pub ip: IpAddr,
    /// Log time of the failure that filled the window.
    pub time: Stamp,
    pub file: String,
    /// Its line number in `file` (1-based).
    pub line: u64,
    /// Failures inside the window at that moment.
    pub in_window: u64,
    /// All failures of the IP (the table shows them; JSON has them in `offenders`).
    #[serde(skip)]
    pub attempts: u64,
}

/// An attacking IP that also logged in successfully (for the table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlsoSucceeded {
    pub ip: IpAddr,
    pub failures: u64,
    pub successes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HourRow {
    /// Start of the hour.
    pub hour: String,
    pub attempts: u64,
}

/// What did not fit under the caps (all zero / false normally).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Limits {
    pub attempts_from_untracked_ips: u64,
    pub attempts_on_untracked_accounts: u64,
    pub distinct_ip_counts_are_lower_bounds: bool,
    /// Failed attempts on lines without a time stamp and with no stamped line before them:
    /// counted, but in no window and no hour.
    pub attempts_without_time: u64,
}

/// The result of `authwatch scan`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub files: Vec<FileSummary>,
    pub lines: u64,
    /// Lines a rule matched (failures and successes).
    pub matched: u64,
    pub failed_attempts: u64,
    pub successful_logins: u64,
    pub services: Vec<String>,
    pub time_zone: String,
    pub threshold: Threshold,
    /// All attacking IPs, most attempts first; only the first ones when the report was made
    /// for a table (see [`Report::offender_count`]).
    pub offenders: Vec<Offender>,
    /// Attacking IPs in all, and their failed attempts.
    #[serde(skip)]
    pub offender_count: usize,
    #[serde(skip)]
    pub offender_attempts: u64,
    /// Attacking IPs that also logged in, in the order of `offenders`.
    #[serde(skip)]
    pub also_succeeded: Vec<AlsoSucceeded>,
    pub accounts: Vec<AccountRow>,
    pub subnets: Vec<SubnetRow>,
    pub crossings: Vec<CrossingRow>,
    pub hourly: Vec<HourRow>,
    pub limits: Limits,
}

// ---------------------------------------------------------------------------------------------
// JSON

/// Offender rows serialised per thread and round: large enough to be worth a thread, small
/// enough that a round's text (a few MB) is all that is held in memory.
pub(crate) const JSON_ROWS_PER_THREAD: usize = 8192;

impl Report {
    /// Write the report as compact JSON: the same bytes as `serde_json::to_writer(out, self)`,
    /// with the offender rows (most of the report of a large log: hundreds of thousands of
    /// rows) serialised on up to `threads` threads, round by round, written in order.
    pub fn write_json(&self, out: &mut dyn std::io::Write, threads: usize) -> std::io::Result<()> {
        fn put(
            out: &mut dyn std::io::Write,
            first: bool,
            key: &str,
            value: &impl Serialize,
        ) -> std::io::Result<()> {
            out.write_all(if first { b"{\"" } else { b",\"" })?;
            out.write_all(key.as_bytes())?;
            out.write_all(b"\":")?;
            serde_json::to_writer(&mut *out, value).map_err(std::io::Error::from)
        }
        put(out, true, "files", &self.files)?;
        put(out, false, "lines", &self.lines)?;
        put(out, false, "matched", &self.matched)?;
        put(out, false, "failed_attempts", &self.failed_attempts)?;
        put(out, false, "successful_logins", &self.successful_logins)?;
        put(out, false, "services", &self.services)?;
        put(out, false, "time_zone", &self.time_zone)?;
        put(out, false, "threshold", &self.threshold)?;
        out.write_all(b",\"offenders\":[")?;
        let threads = threads.max(1);
        let rows = |part: &[Offender]| -> Vec<u8> {
            let mut v = Vec::with_capacity(part.len() * 320);
            for (i, o) in part.iter().enumerate() {
                if i > 0 {
                    v.push(b',');
                }
                // Writing into a Vec cannot fail, and every field serialises.
                let _ = serde_json::to_writer(&mut v, o);
            }
            v
        };
        let mut first = true;
        for round in self.offenders.chunks(JSON_ROWS_PER_THREAD * threads) {
            let parts: Vec<Vec<u8>> = if threads == 1 || round.len() <= JSON_ROWS_PER_THREAD {
                vec![rows(round)]
            } else {
                let per = round.len().div_ceil(threads);
                std::thread::scope(|scope| {
                    let handles: Vec<_> = round
                        .chunks(per)
                        .map(|part| scope.spawn(move || rows(part)))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                        .collect()
                })
            };
            for p in parts.iter().filter(|p| !p.is_empty()) {
                if !first {
                    out.write_all(b",")?;
                }
                out.write_all(p)?;
                first = false;
            }
        }
        out.write_all(b"]")?;
        put(out, false, "accounts", &self.accounts)?;
        put(out, false, "subnets", &self.subnets)?;
        put(out, false, "crossings", &self.crossings)?;
        put(out, false, "hourly", &self.hourly)?;
        put(out, false, "limits", &self.limits)?;
        out.write_all(b"}")
    }
}

// ---------------------------------------------------------------------------------------------
// Table

/// Column alignment.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// A table with a header row; the last column is never padded.
struct Table {
    head: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(head: &[(&'static str, Align)]) -> Table {
        Table {
            head: head.to_vec(),
            rows: Vec::new(),
        }
    }

    fn render(&self, out: &mut String) {
        let n = self.head.len();
        let mut width: Vec<usize> = self.head.iter().map(|h| h.0.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |cells: Vec<&str>, out: &mut String| {
            let mut s = String::from("  ");
            for (i, c) in cells.iter().enumerate() {
                let pad = width[i].saturating_sub(c.chars().count());
                let last = i + 1 == n;
                if self.head[i].1 == Align::Right {
                    s.extend(std::iter::repeat_n(' ', pad));
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    if !last {
                        s.extend(std::iter::repeat_n(' ', pad));
                    }
                }
                if !last {
                    s.push_str("  ");
                }
            }
            out.push_str(s.trim_end());
            out.push('\n');
        };
        line(self.head.iter().map(|h| h.0).collect(), out);
        for r in &self.rows {
            line(r.iter().map(String::as_str).collect(), out);
        }
    }
}

/// Attacker text made inert and cut to `max` chars.
fn shown(s: &str, max: usize) -> String {
    let s = crate::text::inert(s);
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// How many rows of `total` to show for `--top N` (0: all).
fn shown_rows(total: usize, top: usize) -> usize {
    if top == 0 {
        total
    } else {
        total.min(top)
    }
}

/// The most tried accounts of one offender, for its table row.
fn top_accounts(o: &Offender) -> String {
    const LIST: usize = 3;
    let mut s = o
        .accounts
        .iter()
        .take(LIST)
        .map(|a| format!("{} ({})", shown(&a.name, 32), a.count))
        .collect::<Vec<_>>()
        .join(", ");
    if o.accounts.len() > LIST || o.other_account_attempts > 0 {
        s.push_str(", …");
    }
    if s.is_empty() && o.no_account_attempts > 0 {
        s.push_str("(none named)");
    }
    s
}

/// Number of distinct accounts an offender tried, as far as listed.
fn account_count(o: &Offender) -> String {
    if o.other_account_attempts > 0 {
        format!("{}+", o.accounts.len())
    } else {
        o.accounts.len().to_string()
    }
}

/// Widest chart; longer spans put several hours into one bar.
pub(crate) const CHART_WIDTH: usize = 96;

/// `values` as bars: 0 is a blank, the largest value a full block, others scaled in between
/// (any non-zero value gets at least the lowest bar). The same chart alerts draw.
pub(crate) use crate::text::sparkline;

/// "… and 3 more IPs with 5 attempts"
fn rest_line(out: &mut String, rest: usize, one: &str, many: &str, attempts: Option<u64>) {
    let what = if rest == 1 { one } else { many };
    let _ = match attempts {
        Some(a) => writeln!(
            out,
            "  … and {rest} more {what} with {}",
            plural(a, "attempt", "attempts")
        ),
        None => writeln!(out, "  … and {rest} more {what}"),
    };
}

impl Report {
    /// The report as aligned tables, `top` rows per table (0: all).
    pub fn to_table(&self, top: usize) -> String {
        let mut out = String::new();
        let files = self.files.len() as u64;
        let _ = writeln!(
            out,
            "Scanned {} ({}), {} matched: {} failed, {} successful.",
            plural(files, "file", "files"),
            plural(self.lines, "line", "lines"),
            plural(self.matched, "line", "lines"),
            plural(self.failed_attempts, "attempt", "attempts"),
            plural(self.successful_logins, "login", "logins"),
        );
        let unread = self.files.iter().filter(|f| f.error.is_some()).count();
        if unread > 0 {
            let _ = writeln!(
                out,
                "{} could not be read completely (see the messages above).",
                plural(unread as u64, "file", "files")
            );
        }
        let _ = writeln!(
            out,
            "Times in {}. Threshold: {} failures within {}.",
            self.time_zone, self.threshold.attempts, self.threshold.window
        );

        self.offenders_table(&mut out, top);
        self.accounts_table(&mut out, top);
        self.subnets_table(&mut out, top);
        self.crossings_table(&mut out, top);
        self.successes_table(&mut out, top);
        self.hourly_chart(&mut out);
        self.limits_note(&mut out);
        out
    }

    fn offenders_table(&self, out: &mut String, top: usize) {
        let total = self.offender_count;
        let _ = writeln!(out);
        if total == 0 {
            let _ = writeln!(out, "OFFENDERS: none (no failed logins found)");
            return;
        }
        let n = shown_rows(total, top).min(self.offenders.len());
        let _ = writeln!(
            out,
            "OFFENDERS ({} of {}, most attempts first)",
            n,
            plural(total as u64, "IP", "IPs")
        );
        let mut t = Table::new(&[
            ("IP", Align::Left),
            ("ATTEMPTS", Align::Right),
            ("ACCOUNTS", Align::Right),
            ("FIRST SEEN", Align::Left),
            ("LAST SEEN", Align::Left),
            ("SERVICE", Align::Left),
            ("MOST TRIED", Align::Left),
        ]);
        for o in &self.offenders[..n] {
            t.rows.push(vec![
                o.ip.to_string(),
                o.attempts.to_string(),
                account_count(o),
                wall_opt(&o.first_seen),
                wall_opt(&o.last_seen),
                o.service.to_string(),
                top_accounts(o),
            ]);
        }
        t.render(out);
        if n < total {
            let shown: u64 = self.offenders[..n].iter().map(|o| o.attempts).sum();
            let rest = self.offender_attempts.saturating_sub(shown);
            rest_line(out, total - n, "IP", "IPs", Some(rest));
        }
    }

    fn accounts_table(&self, out: &mut String, top: usize) {
        let total = self.accounts.len();
        if total == 0 {
            return;
        }
        let n = shown_rows(total, top);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "TARGETED ACCOUNTS ({} of {})",
            n,
            plural(total as u64, "account", "accounts")
        );
        let mut t = Table::new(&[
            ("ACCOUNT", Align::Left),
            ("ATTEMPTS", Align::Right),
            ("IPS", Align::Right),
        ]);
        for a in &self.accounts[..n] {
            t.rows.push(vec![
                shown(&a.name, 48),
                a.attempts.to_string(),
                a.ips.to_string(),
            ]);
        }
        t.render(out);
        if n < total {
            let rest: u64 = self.accounts[n..].iter().map(|a| a.attempts).sum();
            rest_line(out, total - n, "account", "accounts", Some(rest));
        }
    }

    fn subnets_table(&self, out: &mut String, top: usize) {
        let total = self.subnets.len();
        if total == 0 {
            return;
        }
        let n = shown_rows(total, top);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "SUBNETS WITH MORE THAN ONE ATTACKING ADDRESS ({n} of {total})"
        );
        let mut t = Table::new(&[
            ("SUBNET", Align::Left),
            ("ADDRESSES", Align::Right),
            ("ATTEMPTS", Align::Right),
            ("FIRST SEEN", Align::Left),
            ("LAST SEEN", Align::Left),
        ]);
        for s in &self.subnets[..n] {
            t.rows.push(vec![
                s.subnet.clone(),
                s.addresses.to_string(),
                s.attempts.to_string(),
                wall_opt(&s.first_seen),
                wall_opt(&s.last_seen),
            ]);
        }
        t.render(out);
        if n < total {
            rest_line(out, total - n, "subnet", "subnets", None);
        }
    }

    fn crossings_table(&self, out: &mut String, top: usize) {
        let total = self.crossings.len();
        let _ = writeln!(out);
        let th = format!(
            "{} failures within {}",
            self.threshold.attempts, self.threshold.window
        );
        if total == 0 {
            let _ = writeln!(out, "THRESHOLD CROSSINGS: none ({th})");
            return;
        }
        let n = shown_rows(total, top);
        let _ = writeln!(
            out,
            "THRESHOLD CROSSINGS ({n} of {} reached {th}, earliest first)",
            plural(total as u64, "IP", "IPs")
        );
        let many_files = self.files.len() > 1;
        let mut t = Table::new(&[
            ("IP", Align::Left),
            ("CROSSED AT", Align::Left),
            ("LINE", Align::Right),
            ("ATTEMPTS", Align::Right),
        ]);
        for c in &self.crossings[..n] {
            let line = if many_files {
                format!("{}:{}", c.file, c.line)
            } else {
                c.line.to_string()
            };
            t.rows.push(vec![
                c.ip.to_string(),
                wall(&c.time.to_string()),
                line,
                c.attempts.to_string(),
            ]);
        }
        t.render(out);
        if n < total {
            rest_line(out, total - n, "IP", "IPs", None);
        }
    }

    fn successes_table(&self, out: &mut String, top: usize) {
        let hits = &self.also_succeeded;
        if hits.is_empty() {
            return;
        }
        let n = shown_rows(hits.len(), top);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "ATTACKING IPS THAT ALSO LOGGED IN SUCCESSFULLY ({n} of {})",
            hits.len()
        );
        let mut t = Table::new(&[
            ("IP", Align::Left),
            ("FAILED", Align::Right),
            ("SUCCEEDED", Align::Right),
        ]);
        for o in &hits[..n] {
            t.rows.push(vec![
                o.ip.to_string(),
                o.failures.to_string(),
                o.successes.to_string(),
            ]);
        }
        t.render(out);
        if n < hits.len() {
            rest_line(out, hits.len() - n, "IP", "IPs", None);
        }
    }

    fn hourly_chart(&self, out: &mut String) {
        let Some(first) = self.hourly.first() else {
            return;
        };
        let last = self.hourly.last().unwrap_or(first);
        let hours = self.hourly.len();
        let per_bar = hours.div_ceil(CHART_WIDTH).max(1);
        let bars: Vec<u64> = self
            .hourly
            .chunks(per_bar)
            .map(|c| c.iter().map(|h| h.attempts).sum())
            .collect();
        let peak = self
            .hourly
            .iter()
            .max_by(|a, b| a.attempts.cmp(&b.attempts).then(b.hour.cmp(&a.hour)))
            .unwrap_or(first);
        let hm = |rfc: &str| wall(rfc).get(..16).map(str::to_string).unwrap_or_default();
        let _ = writeln!(out);
        let unit = if per_bar == 1 {
            "one bar per hour".to_string()
        } else {
            format!("one bar per {per_bar} hours")
        };
        let _ = writeln!(
            out,
            "ATTEMPTS PER HOUR ({} to {}, {unit}; peak {} at {})",
            hm(&first.hour),
            hm(&last.hour),
            peak.attempts,
            hm(&peak.hour)
        );
        let _ = writeln!(out, "  |{}|", sparkline(&bars));
    }

    fn limits_note(&self, out: &mut String) {
        let l = &self.limits;
        let mut notes = Vec::new();
        if l.attempts_without_time > 0 {
            notes.push(format!(
                "{} had no readable time stamp: counted, but in no window or hour",
                plural(l.attempts_without_time, "attempt", "attempts")
            ));
        }
        if l.attempts_from_untracked_ips > 0 {
            notes.push(format!(
                "{} came from IPs beyond the cap on tracked IPs",
                plural(l.attempts_from_untracked_ips, "attempt", "attempts")
            ));
        }
        if l.attempts_on_untracked_accounts > 0 {
            notes.push(format!(
                "{} named accounts beyond the cap on tracked accounts",
                plural(l.attempts_on_untracked_accounts, "attempt", "attempts")
            ));
        }
        if l.distinct_ip_counts_are_lower_bounds {
            notes.push("distinct IP counts per account are lower bounds".to_string());
        }
        if !notes.is_empty() {
            let _ = writeln!(out);
            for n in notes {
                let _ = writeln!(out, "Note: {n}.");
            }
        }
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
