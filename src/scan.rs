//! `authwatch scan` and `authwatch explain`: whole logs read once, after the fact, with the same
//! rules the agent uses. `scan` reports offenders, targeted accounts, subnets, threshold
//! crossings and attempts per hour (table or JSON), or one JSON object per matching line
//! (`--events`); `explain` shows how the rules match a log, and why one line matches or not.
//!
//! Two stages, as in ripgrep's CLI: [`Settings::new`] turns the raw command-line values
//! (service names, `--config`) into what the scan uses (rules, zone, threshold), reporting
//! usage (64) and config (78) errors; the scan itself then has no failure mode but unreadable
//! inputs, which are reported by name, skipped, and end in exit status 1.
//!
//! Hot path ([`chunk`]): a regular file is cut into blocks at fixed offsets, matched on every
//! core and merged in order; stdin and gzip are read in large blocks on one thread. A block is
//! searched as one buffer with the rules' combined literal prefilter, and only the lines around
//! its finds are offered to the rules; nothing is copied or allocated for a line no rule
//! matches. Merging in order keeps the report exactly that of a line-by-line read (the tests
//! compare both), including threshold crossings, the rules that pair lines of one session, and
//! "the previous stamped line's time" for hits without a stamp.

mod aggregate;
mod chunk;
mod explain;
mod input;
mod options;
mod report;

pub use options::{ExplainOptions, ScanFormat, ScanOptions};
pub use report::{
    AccountCount, AccountRow, CrossingRow, FileSummary, HourRow, Limits, Offender, Report,
    SubnetRow, Threshold,
};

use crate::config::Config;
use crate::rules::custom::CustomRule;
use crate::rules::time::parse_leading_time;
use crate::rules::{Hit, HitKind, ParseCtx, RuleSet, BUILTIN};
use crate::text::format_duration;
use aggregate::{Aggregate, Caps};
use chunk::{Matcher, Merger};
use input::Stop;
use jiff::{tz::TimeZone, Timestamp};
use serde::Serialize;
use std::io::{self, BufRead, Write};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// Exit statuses: defined once, in the command layer.
pub use crate::cmd::exit::{EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE};

/// The threshold when no `--config` is given: 5 failures within 10 minutes.
pub const DEFAULT_ATTEMPTS: u32 = 5;
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(600);
/// Longer lines are cut (as `follow.max_line_bytes` does for the agent).
pub const DEFAULT_MAX_LINE_BYTES: usize = 65536;

/// What went wrong before scanning started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupError {
    /// Exit 64.
    Usage(String),
    /// Exit 78.
    Config(String),
}

impl SetupError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SetupError::Usage(_) => EXIT_USAGE,
            SetupError::Config(_) => EXIT_CONFIG,
        }
    }
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::Usage(m) | SetupError::Config(m) => f.write_str(m),
        }
    }
}

/// Everything a scan needs, resolved from the command line and the config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Rule names asked for; empty: every built-in and custom rule.
    pub services: Vec<String>,
    pub custom_rules: Vec<CustomRule>,
    pub attempts: u32,
    pub window: Duration,
    /// Zone of stamps that carry none.
    pub tz: TimeZone,
    pub max_line_bytes: usize,
    /// Whether a progress bar may be shown for large files (on a terminal only).
    pub progress: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            services: Vec::new(),
            custom_rules: Vec::new(),
            attempts: DEFAULT_ATTEMPTS,
            window: DEFAULT_WINDOW,
            tz: TimeZone::system(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            progress: true,
        }
    }
}

impl Settings {
    /// Resolve `--service` names (repeatable, comma-separated allowed) and `--config`.
    pub fn new(services: &[String], config: Option<&Path>) -> Result<Settings, SetupError> {
        let mut s = Settings::default();
        if let Some(path) = config {
            let cfg = Config::load(path).map_err(|e| SetupError::Config(e.to_string()))?;
            s.attempts = cfg.detect.per_ip.attempts;
            s.window = cfg.detect.per_ip.window;
            s.tz = cfg.time_zone.clone();
            s.max_line_bytes = cfg.follow.max_line_bytes.max(1);
            s.custom_rules = cfg.custom_rules.clone();
        }
        let known = s.known_services();
        let mut wanted: Vec<String> = Vec::new();
        for name in services.iter().flat_map(|s| s.split(',')) {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            if !known.iter().any(|k| k == name) {
                return Err(SetupError::Usage(format!(
                    "unknown service {name:?}; known services: {}",
                    known.join(", ")
                )));
            }
            if !wanted.iter().any(|w| w == name) {
                wanted.push(name.to_string());
            }
        }
        s.services = wanted;
        Ok(s)
    }

    /// Built-in rule names, then the config's custom rules.
    pub fn known_services(&self) -> Vec<String> {
        BUILTIN
            .iter()
            .map(|s| s.to_string())
            .chain(self.custom_rules.iter().map(|c| c.name().to_string()))
            .collect()
    }

    /// The rules asked for (all when none were named), in the order they are tried.
    pub fn rules(&self) -> RuleSet {
        RuleSet::for_services(&self.services, &self.custom_rules)
    }

    fn zone_name(&self) -> String {
        self.tz
            .iana_name()
            .map(str::to_string)
            .unwrap_or_else(|| "the system's time zone".to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Time of stampless lines

/// Bytes of a line kept to read its stamp later: longer than any stamp we read.
pub(crate) const STAMP_PREFIX: usize = 64;

/// Remembers the most recent line that looks stamped (a copy of its first bytes, not parsed),
/// and the last time read, so a hit on a line without a stamp can take the previous stamped
/// line's time. Parsing happens only when such a hit asks for it.
pub(crate) struct StampTracker {
    prefix: [u8; STAMP_PREFIX],
    len: usize,
    pending: bool,
    last: Option<Timestamp>,
}

/// Cheap shape check for the stamps `rules::time` reads: `YYYY-MM-DD?HH:`, `Mon DD HH:MM:`,
/// `@4000…` (TAI64N).
pub(crate) fn looks_stamped(b: &[u8]) -> bool {
    match b.first() {
        Some(c) if c.is_ascii_digit() => {
            b.len() >= 19 && b[4] == b'-' && b[7] == b'-' && b[13] == b':'
        }
        Some(b'@') => b.len() >= 25 && b[1..].starts_with(b"4000"),
        Some(c) if c.is_ascii_uppercase() => {
            b.len() >= 15 && b[3] == b' ' && b[9] == b':' && b[12] == b':'
        }
        _ => false,
    }
}

impl StampTracker {
    pub fn new() -> Self {
        StampTracker {
            prefix: [0; STAMP_PREFIX],
            len: 0,
            pending: false,
            last: None,
        }
    }

    /// A line no rule stamped: keep its start if it may carry a stamp.
    #[inline]
    pub fn see(&mut self, line: &[u8]) {
        if looks_stamped(line) {
            let n = line.len().min(STAMP_PREFIX);
            self.prefix[..n].copy_from_slice(&line[..n]);
            self.len = n;
            self.pending = true;
        }
    }

    /// A line whose stamp a rule read.
    #[inline]
    pub fn stamped(&mut self, t: Timestamp) {
        self.last = Some(t);
        self.pending = false;
    }

    /// The time of the most recent stamped line.
    pub fn previous(&mut self, ctx: &ParseCtx) -> Option<Timestamp> {
        if self.pending {
            self.pending = false;
            let b = &self.prefix[..self.len];
            let s = match std::str::from_utf8(b) {
                Ok(s) => s,
                Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
            };
            if let (Some(t), _) = parse_leading_time(s, ctx) {
                self.last = Some(t);
            }
        }
        self.last
    }
}

impl Default for StampTracker {
    fn default() -> Self {
        Self::new()
    }
}

/// Run the rules over every line of `reader`, calling `on_hit(line_number, hit, time, line)`
/// for each match, where `time` is the line's stamp or the previous stamped line's.
/// Returns (lines, matched lines) and how reading ended.
fn match_lines<E>(
    rules: &mut RuleSet,
    ctx: &ParseCtx,
    reader: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    max_line_bytes: usize,
    mut on_hit: impl FnMut(u64, &Hit, Option<Timestamp>, &str) -> Result<(), E>,
) -> (u64, u64, Result<(), Stop<E>>) {
    let mut stamps = StampTracker::new();
    let mut lines = 0;
    let mut matched = 0;
    let r = input::for_each_line(reader, buf, max_line_bytes, |no, line| {
        lines = no;
        match rules.parse(line, ctx) {
            Some(hit) => {
                matched += 1;
                let time = match hit.time {
                    Some(t) => {
                        stamps.stamped(t);
                        Some(t)
                    }
                    None => {
                        let t = stamps.previous(ctx);
                        stamps.see(line.as_bytes());
                        t
                    }
                };
                on_hit(no, &hit, time, line)
            }
            None => {
                stamps.see(line.as_bytes());
                Ok(())
            }
        }
    });
    (lines, matched, r.map(|_| ()))
}

// ---------------------------------------------------------------------------------------------
// Scanner (report mode)

/// Reads inputs one after the other into one [`Report`]. Windows and totals run across files:
/// give rotated logs oldest first (`mainlog.2.gz mainlog.1 mainlog`).
pub struct Scanner {
    settings: Settings,
    rules: RuleSet,
    agg: Aggregate,
    files: Vec<FileSummary>,
    /// Threads for regular files (default: the available parallelism).
    threads: usize,
    /// Block size for regular files (default: [`chunk::block_size`]); tests set small ones.
    block: Option<u64>,
}

impl Scanner {
    pub fn new(settings: Settings) -> Scanner {
        let window = settings.window.as_secs();
        Scanner {
            rules: settings.rules(),
            agg: Aggregate::new(settings.attempts, window, Caps::default()),
            settings,
            files: Vec::new(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            block: None,
        }
    }

    /// Scan one input named `name`, read as a stream (stdin, gzip), on this thread; `now` is
    /// "now" for yearless stamps (the file's mtime). On a read error the lines before it
    /// count, the error is recorded for the report and returned with the number of lines read
    /// before it.
    pub fn scan(
        &mut self,
        name: &str,
        reader: &mut dyn BufRead,
        now: Timestamp,
    ) -> Result<(), (u64, io::Error)> {
        let ctx = ParseCtx::new(self.settings.tz.clone(), now);
        let file = self.files.len() as u32;
        let mut matcher = Matcher::new(
            self.settings.rules(),
            ctx.clone(),
            self.settings.max_line_bytes,
        );
        let mut m = Merger::new(&mut self.agg, &mut self.rules, &ctx, file);
        let r = chunk::scan_stream(reader, &mut matcher, &mut |c| m.merge(c));
        let (lines, matched) = (m.lines, m.matched);
        self.file_done(name, lines, matched, r)
    }

    /// Scan the regular file `file` of `len` bytes, named `name`, cut into blocks matched on
    /// several threads (see [`chunk`]); the same report as [`Scanner::scan`] gives.
    pub fn scan_file(
        &mut self,
        name: &str,
        file: &std::fs::File,
        len: u64,
        now: Timestamp,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<(), (u64, io::Error)> {
        let ctx = ParseCtx::new(self.settings.tz.clone(), now);
        let index = self.files.len() as u32;
        let settings = &self.settings;
        let new_matcher = || Matcher::new(settings.rules(), ctx.clone(), settings.max_line_bytes);
        let block = self
            .block
            .unwrap_or_else(|| chunk::block_size(len, self.threads));
        let mut m = Merger::new(&mut self.agg, &mut self.rules, &ctx, index);
        let r = chunk::scan_file(
            file,
            len,
            self.threads,
            block,
            settings.max_line_bytes,
            &new_matcher,
            &mut |c| {
                m.merge(c);
                if let Some(pb) = progress {
                    pb.inc(c.bytes);
                }
            },
        );
        let (lines, matched) = (m.lines, m.matched);
        self.file_done(name, lines, matched, r)
    }

    fn file_done(
        &mut self,
        name: &str,
        lines: u64,
        matched: u64,
        r: io::Result<()>,
    ) -> Result<(), (u64, io::Error)> {
        let mut summary = FileSummary {
            name: name.to_string(),
            lines,
            matched,
            error: None,
        };
        let result = match r {
            Ok(()) => Ok(()),
            Err(error) => {
                summary.error = Some(error.to_string());
                Err((lines, error))
            }
        };
        self.files.push(summary);
        result
    }

    /// Record an input that could not be opened.
    pub fn unreadable(&mut self, name: &str, error: &io::Error) {
        self.files.push(FileSummary {
            name: name.to_string(),
            lines: 0,
            matched: 0,
            error: Some(error.to_string()),
        });
    }

    pub fn finish(self) -> Report {
        self.finish_with_rows(None)
    }

    /// [`Scanner::finish`] with offender rows for the first `rows` offenders only (the rest
    /// is still counted): enough for a table of `--top rows`.
    pub fn finish_with_rows(self, rows: Option<usize>) -> Report {
        let services = self
            .rules
            .services()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let time_zone = self.settings.zone_name();
        let failed_attempts = self.agg.failures;
        let successful_logins = self.agg.successes;
        let f = self.agg.figures(&self.settings.tz, rows);
        let crossings = f
            .crossings
            .into_iter()
            .map(|(file, mut row)| {
                row.file = self
                    .files
                    .get(file as usize)
                    .map(|f| f.name.clone())
                    .unwrap_or_default();
                row
            })
            .collect();
        Report {
            lines: self.files.iter().map(|f| f.lines).sum(),
            matched: self.files.iter().map(|f| f.matched).sum(),
            files: self.files,
            failed_attempts,
            successful_logins,
            services,
            time_zone,
            threshold: Threshold {
                attempts: self.settings.attempts,
                window_seconds: self.settings.window.as_secs(),
                window: format_duration(self.settings.window),
            },
            offenders: f.offenders,
            offender_count: f.offender_count,
            offender_attempts: f.offender_attempts,
            also_succeeded: f.also_succeeded,
            accounts: f.accounts,
            subnets: f.subnets,
            crossings,
            hourly: f.hourly,
            limits: f.limits,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Events (JSON Lines)

/// A time as RFC 3339 in the scan's zone, written without an intermediate String.
struct Rfc3339(Timestamp, jiff::tz::Offset);

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.display_with_offset(self.1))
    }
}

/// One matching line, as `--events` prints it.
#[derive(Serialize)]
struct EventOut<'a> {
    file: &'a str,
    line: u64,
    service: &'a str,
    ip: IpAddr,
    user: Option<&'a str>,
    attempts: u32,
    time: Option<Rfc3339>,
    kind: HitKind,
}

/// Write one JSON object per matching line of `reader` to `out`. Returns (lines, matched);
/// errors: reading (with the line count before it) or writing.
fn write_events(
    settings: &Settings,
    rules: &mut RuleSet,
    name: &str,
    reader: &mut dyn BufRead,
    now: Timestamp,
    buf: &mut Vec<u8>,
    out: &mut dyn Write,
) -> Result<(u64, u64), Stop<io::Error>> {
    let ctx = ParseCtx::new(settings.tz.clone(), now);
    let tz = &settings.tz;
    let (lines, matched, r) = match_lines(
        rules,
        &ctx,
        reader,
        buf,
        settings.max_line_bytes,
        |no, hit, time, _line| {
            let ev = EventOut {
                file: name,
                line: no,
                service: hit.service,
                ip: hit.ip,
                user: hit.user.as_deref(),
                attempts: hit.attempts.max(1),
                time: time.map(|t| Rfc3339(t, tz.to_offset(t))),
                kind: hit.kind,
            };
            serde_json::to_writer(&mut *out, &ev).map_err(io::Error::from)?;
            out.write_all(b"\n")
        },
    );
    r.map(|()| (lines, matched))
}

// ---------------------------------------------------------------------------------------------
// Commands

fn say(msg: impl std::fmt::Display) {
    eprintln!("authwatch: {msg}");
}

/// `authwatch scan`: returns the exit status.
pub fn scan_command(args: &ScanOptions) -> u8 {
    let settings = match Settings::new(&args.services, args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            say(&e);
            return e.exit_code();
        }
    };
    if args.events {
        return events_command(settings, args);
    }
    let progress = settings.progress;
    let mut scanner = Scanner::new(settings);
    let mut failed = false;
    for path in &args.files {
        match input::open(path, progress) {
            Err(e) => {
                say(format_args!("cannot read {}: {e}", path.display()));
                scanner.unreadable(&path.to_string_lossy(), &e);
                failed = true;
            }
            Ok(mut input) => {
                let now = input.mtime.unwrap_or_else(Timestamp::now);
                let name = input.name.clone();
                let r = match input.plain.take() {
                    Some((file, len)) => {
                        scanner.scan_file(&name, &file, len, now, input.progress.as_ref())
                    }
                    None => scanner.scan(&name, &mut *input.reader, now),
                };
                input.clear_progress();
                if let Err((after, e)) = r {
                    say(format_args!("error reading {name} after line {after}: {e}"));
                    failed = true;
                }
            }
        }
    }
    // A table shows the first `--top` offenders (0: all); JSON has them all.
    let report = match args.format {
        ScanFormat::Table if args.top > 0 => scanner.finish_with_rows(Some(args.top)),
        _ => scanner.finish(),
    };
    let mut stdout = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    // JSON goes straight to stdout, compact: the report of a large log is tens of megabytes.
    let written = match args.format {
        ScanFormat::Table => stdout.write_all(report.to_table(args.top).as_bytes()),
        ScanFormat::Json => report
            .write_json(
                &mut stdout,
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )
            .and_then(|()| stdout.write_all(b"\n")),
    };
    if let Err(e) = written.and_then(|()| stdout.flush()) {
        if e.kind() != io::ErrorKind::BrokenPipe {
            say(format_args!("cannot write the report: {e}"));
            return EXIT_RUNTIME;
        }
    }
    if failed {
        EXIT_RUNTIME
    } else {
        EXIT_OK
    }
}

fn events_command(settings: Settings, args: &ScanOptions) -> u8 {
    let mut rules = settings.rules();
    let mut buf = Vec::with_capacity(4096);
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut failed = false;
    for path in &args.files {
        let mut input = match input::open(path, settings.progress) {
            Ok(i) => i,
            Err(e) => {
                say(format_args!("cannot read {}: {e}", path.display()));
                failed = true;
                continue;
            }
        };
        let now = input.mtime.unwrap_or_else(Timestamp::now);
        let name = input.name.clone();
        let r = write_events(
            &settings,
            &mut rules,
            &name,
            &mut *input.reader,
            now,
            &mut buf,
            &mut out,
        );
        input.clear_progress();
        match r {
            Ok(_) => {}
            Err(Stop::Read { after_line, error }) => {
                say(format_args!(
                    "error reading {name} after line {after_line}: {error}"
                ));
                failed = true;
            }
            Err(Stop::Callback(e)) => return write_failed(e, failed),
        }
    }
    if let Err(e) = out.flush() {
        return write_failed(e, failed);
    }
    if failed {
        EXIT_RUNTIME
    } else {
        EXIT_OK
    }
}

/// A failed write to stdout: a closed pipe (`| head`) is a normal end, anything else an error.
fn write_failed(e: io::Error, failed_before: bool) -> u8 {
    if e.kind() == io::ErrorKind::BrokenPipe {
        if failed_before {
            EXIT_RUNTIME
        } else {
            EXIT_OK
        }
    } else {
        say(format_args!("cannot write to standard output: {e}"));
        EXIT_RUNTIME
    }
}

/// `authwatch explain`: returns the exit status.
pub fn explain_command(args: &ExplainOptions) -> u8 {
    let settings = match Settings::new(&args.services, args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            say(&e);
            return e.exit_code();
        }
    };
    explain::run(&settings, args)
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
