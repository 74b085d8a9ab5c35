//! The systemd journal as a log source: follows `journalctl -f -o json` for the configured units
//! and turns each entry into one syslog-style line the rules understand:
//!
//! ```text
//! 2026-11-23T15:59:08.123456+00:00 mx1 postfix/smtpd[4242]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: ...
//! ```
//!
//! The stamp is RFC 3339 with microseconds and the offset of [`JournalArgs::time_zone`], so
//! neither the year nor the zone has to be guessed (`rules::time::parse_leading_time` reads it).
//! It is the entry's `_SOURCE_REALTIME_TIMESTAMP` (when the program logged it) if present, else
//! `__REALTIME_TIMESTAMP` (when journald received it), like `journalctl -o short`. Then come
//! `_HOSTNAME` (`-` if absent), `SYSLOG_IDENTIFIER` (else `_COMM`, else `unknown`; characters a
//! syslog tag cannot hold become `_`), `[_PID]` (else `[SYSLOG_PID]`, else nothing) and
//! `MESSAGE`. A `MESSAGE` that is not UTF-8 (journalctl writes it as an array of bytes) is
//! decoded lossily; control characters in it are escaped the way rsyslog writes them to files
//! (`\n` becomes `#012`), so one entry is always one line and text inside a message can never
//! pose as a line of its own. An entry without a `MESSAGE` delivers no line. Lines are cut to
//! `max_line_bytes`.
//!
//! journalctl runs as a child process (arguments passed one by one, never through a shell),
//! read by two threads (stdout: entries, stderr: diagnostics). [`JournalSource::cursor`] is the
//! `__CURSOR` of the last entry handed out by [`JournalSource::poll`]; saved as the checkpoint
//! and given back to [`JournalSource::new`], the next run continues right after it
//! (`--after-cursor`). A journal that cannot be read is reported: journalctl missing, exiting
//! (no permission, no such file, a cursor it rejects) or writing to stderr is logged and shown
//! by [`JournalSource::health`], and journalctl is started again with exponential backoff,
//! after the last cursor. The child is killed when the source is dropped.
//!
//! This file runs and watches journalctl; `journal/entry.rs` turns one JSON entry into its line
//! ([`parse_entry`]).

mod entry;

#[cfg(test)]
use entry::format_stamp;
pub use entry::{parse_entry, JournalEntry};

use super::stdin::{read_line_bounded, truncate_at_boundary};
use super::StartAt;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// The fields journalctl is asked for (`--output-fields`); it always adds `__CURSOR`,
/// `__REALTIME_TIMESTAMP`, `__MONOTONIC_TIMESTAMP` and `_BOOT_ID`. (systemd 236 or later.)
pub const OUTPUT_FIELDS: &str =
    "MESSAGE,SYSLOG_IDENTIFIER,_COMM,_PID,SYSLOG_PID,_HOSTNAME,_SOURCE_REALTIME_TIMESTAMP";

/// A poll returns after this many entries even if more are waiting.
pub const MAX_ENTRIES_PER_POLL: usize = 16_384;

/// Entries buffered between the reading thread and [`JournalSource::poll`] (journalctl waits
/// when the buffer is full: memory stays bounded).
const CHANNEL_ENTRIES: usize = 4096;

/// Lines of journalctl's stderr kept for [`JournalHealth::stderr_tail`].
const STDERR_TAIL_LINES: usize = 20;

/// Lines of journalctl's stderr logged per run (the rest is kept in the tail only).
const STDERR_LOGGED_LINES: usize = 20;

/// Longest stderr line kept.
const STDERR_LINE_BYTES: usize = 1024;

/// A journalctl that ran this long (or delivered an entry) resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// The same failure is logged as an error again after this long (in between: at debug).
const REPEAT_REPORT: Duration = Duration::from_secs(600);

/// How journalctl is run; [`JournalArgs::default`] follows the system journal.
#[derive(Debug, Clone)]
pub struct JournalArgs {
    /// The program (default `journalctl`, looked up in `PATH`).
    pub binary: PathBuf,
    /// Read these journal files instead of the system journal (`--file`, one per file).
    /// Relative paths are made absolute (`journalctl -f` needs that).
    pub files: Vec<PathBuf>,
    /// Read the journal files in this folder instead (`--directory`).
    pub directory: Option<PathBuf>,
    /// More arguments, passed as they are after ours (e.g. `--merge`, `--namespace=mail`).
    /// Nothing that changes the output format.
    pub extra_args: Vec<String>,
    /// Where to start when there is no cursor: [`StartAt::End`] (default) only entries from now
    /// on (`-n 0`), [`StartAt::Beginning`] the whole journal of the units (`--no-tail`).
    pub start: StartAt,
    /// Longer lines are cut to this many bytes (at least 1).
    pub max_line_bytes: usize,
    /// Zone of the stamps written at the start of each line (default UTC; the instant is the
    /// same either way, this only changes how it reads in quoted lines).
    pub time_zone: TimeZone,
    /// First delay before journalctl is started again after it failed or ended.
    pub retry_min: Duration,
    /// The delay doubles per failure up to this.
    pub retry_max: Duration,
}

impl Default for JournalArgs {
    fn default() -> Self {
        JournalArgs {
            binary: PathBuf::from("journalctl"),
            files: Vec::new(),
            directory: None,
            extra_args: Vec::new(),
            start: StartAt::End,
            max_line_bytes: 65_536,
            time_zone: TimeZone::UTC,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }
}

/// Where a journalctl run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StartFrom {
    Cursor(String),
    /// `--since @<seconds>`: after a failure before any entry was read, with `start: end`.
    Since(i64),
    End,
    Beginning,
}

/// What [`JournalSource::health`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalHealth {
    /// journalctl is running.
    pub running: bool,
    /// Its process id, while running.
    pub pid: Option<u32>,
    /// How often journalctl could not be started or ended (every time, it is started again).
    pub failures: u64,
    /// The last failure, e.g. `journalctl exited with exit status: 1: Failed to open files:
    /// Permission denied` or `cannot start journalctl: No such file or directory (os error 2)`.
    /// Cleared once a restarted journalctl delivers an entry or runs for a minute.
    pub last_error: Option<String>,
    /// The last lines journalctl wrote to stderr (this run's, or the failed run's).
    pub stderr_tail: Vec<String>,
    /// While not running: when the next start is due.
    pub retry_in: Option<Duration>,
    /// Entries read so far (over all runs).
    pub entries: u64,
}

impl JournalHealth {
    /// `None` when journalctl is running and has not complained; otherwise what is wrong, for
    /// a log line or a status report.
    pub fn problem(&self) -> Option<String> {
        if !self.running {
            let what = self
                .last_error
                .clone()
                .unwrap_or_else(|| "journalctl is not running".to_string());
            return Some(match self.retry_in {
                Some(d) => format!("{what} (retrying in {}s)", d.as_secs_f64().ceil()),
                None => what,
            });
        }
        if let Some(last) = self.stderr_tail.last() {
            return Some(format!("journalctl reports: {last}"));
        }
        self.last_error.clone()
    }
}

enum Msg {
    Entry {
        entry: JournalEntry,
        cut: bool,
    },
    /// A line of journalctl's output that is not a JSON entry (or is too long to be one).
    Bad(String),
}

struct Running {
    child: Child,
    rx: Receiver<Msg>,
    stderr: Arc<Mutex<StderrTail>>,
    stderr_thread: Option<JoinHandle<()>>,
    started: Instant,
    from: StartFrom,
    entries: u64,
}

#[derive(Default)]
struct StderrTail {
    lines: VecDeque<String>,
}

/// Follows the systemd journal through `journalctl`; see the [module docs](self).
pub struct JournalSource {
    units: Vec<String>,
    args: JournalArgs,
    cursor: Option<String>,
    /// With `start: end` and no cursor: the creation time, where a restarted journalctl starts.
    since: Option<i64>,
    started_once: bool,
    run: Option<Running>,
    retry_at: Option<Instant>,
    backoff: Duration,
    failures: u64,
    last_error: Option<String>,
    /// The failure last logged as an error, and when.
    reported: Option<(String, Instant)>,
    last_stderr: Vec<String>,
    entries: u64,
    cut_lines: u64,
    skipped: u64,
    caught_up: bool,
}

impl JournalSource {
    /// Follow the journal entries of `units` (`-u`, e.g. `postfix@-.service`,
    /// `dovecot.service`; an empty list follows every entry). With a `cursor` (from
    /// [`JournalSource::cursor`] of an earlier run), reading continues right after that entry,
    /// otherwise per [`JournalArgs::start`]. journalctl is started now; if it cannot be, that is
    /// reported (see [`JournalSource::health`]) and retried on later polls.
    pub fn new(units: Vec<String>, cursor: Option<String>, args: JournalArgs) -> JournalSource {
        let mut args = args;
        args.max_line_bytes = args.max_line_bytes.max(1);
        args.retry_min = args.retry_min.max(Duration::from_millis(1));
        args.retry_max = args.retry_max.max(args.retry_min);
        for f in &mut args.files {
            if let Ok(abs) = std::path::absolute(&*f) {
                *f = abs;
            }
        }
        if let Some(d) = &mut args.directory {
            if let Ok(abs) = std::path::absolute(&*d) {
                *d = abs;
            }
        }
        let cursor = cursor.filter(|c| !c.is_empty());
        let since =
            (cursor.is_none() && args.start == StartAt::End).then(|| Timestamp::now().as_second());
        let mut src = JournalSource {
            units,
            backoff: args.retry_min,
            args,
            cursor,
            since,
            started_once: false,
            run: None,
            retry_at: None,
            failures: 0,
            last_error: None,
            reported: None,
            last_stderr: Vec::new(),
            entries: 0,
            cut_lines: 0,
            skipped: 0,
            caught_up: true,
        };
        src.start();
        src
    }

    /// The units followed.
    pub fn units(&self) -> &[String] {
        &self.units
    }

    /// Short description for logs: `journal (units: a.service, b.service)`.
    pub fn describe(&self) -> String {
        let mut s = if self.units.is_empty() {
            "journal (all units)".to_string()
        } else {
            format!("journal (units: {})", self.units.join(", "))
        };
        for f in &self.args.files {
            s.push_str(&format!(" file {}", f.display()));
        }
        if let Some(d) = &self.args.directory {
            s.push_str(&format!(" directory {}", d.display()));
        }
        s
    }

    /// The `__CURSOR` of the last entry handed out by [`JournalSource::poll`] (also of entries
    /// without a message, which deliver no line), or the cursor given to
    /// [`JournalSource::new`] while none was. Save it as the checkpoint: it moves only past
    /// entries that `poll` has delivered.
    pub fn cursor(&self) -> Option<String> {
        self.cursor.clone()
    }

    /// Whether the last poll handed out everything that was ready (`false`: it stopped at
    /// [`MAX_ENTRIES_PER_POLL`] and the caller may poll again at once).
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// Lines cut to `max_line_bytes` so far.
    pub fn cut_lines(&self) -> u64 {
        self.cut_lines
    }

    /// Whether journalctl runs, and what went wrong last.
    pub fn health(&self) -> JournalHealth {
        let (running, pid, stderr_tail) = match &self.run {
            Some(r) => (
                true,
                Some(r.child.id()),
                lock(&r.stderr).lines.iter().cloned().collect(),
            ),
            None => (false, None, self.last_stderr.clone()),
        };
        JournalHealth {
            running,
            pid,
            failures: self.failures,
            last_error: self.last_error.clone(),
            stderr_tail,
            retry_in: match (&self.run, self.retry_at) {
                (None, Some(at)) => Some(at.saturating_duration_since(Instant::now())),
                _ => None,
            },
            entries: self.entries,
        }
    }

    /// Hand each entry read so far to `on_line` as one line (see the [module docs](self)), at
    /// most [`MAX_ENTRIES_PER_POLL`]; returns at once. Restarts journalctl when it has ended and
    /// the backoff delay has passed. Returns the number of lines delivered.
    pub fn poll(&mut self, on_line: &mut dyn FnMut(&str)) -> usize {
        self.poll_inner(None, on_line)
    }

    /// Like [`JournalSource::poll`], but when nothing is ready, waits up to `timeout` for an
    /// entry (or for the next restart of journalctl, if that comes first).
    pub fn poll_timeout(&mut self, timeout: Duration, on_line: &mut dyn FnMut(&str)) -> usize {
        self.poll_inner(Some(timeout), on_line)
    }

    fn poll_inner(&mut self, mut wait: Option<Duration>, on_line: &mut dyn FnMut(&str)) -> usize {
        if self.run.is_none() {
            let now = Instant::now();
            let due = self.retry_at.unwrap_or(now);
            if due > now {
                match wait.take() {
                    Some(w) if due - now <= w => std::thread::sleep(due - now),
                    Some(w) => {
                        std::thread::sleep(w);
                        return 0;
                    }
                    None => return 0,
                }
            }
            self.start();
        }
        let Some(run) = self.run.as_mut() else {
            return 0;
        };
        let mut delivered = 0;
        let mut cut = 0;
        let mut bad = 0;
        let mut first_bad = None;
        let mut ended = false;
        self.caught_up = true;
        let mut seen = 0;
        loop {
            if seen >= MAX_ENTRIES_PER_POLL {
                self.caught_up = false;
                break;
            }
            let msg = match wait.take() {
                Some(t) => match run.rx.recv_timeout(t) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        ended = true;
                        break;
                    }
                },
                None => match run.rx.try_recv() {
                    Ok(m) => m,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        ended = true;
                        break;
                    }
                },
            };
            seen += 1;
            match msg {
                Msg::Entry { entry, cut: c } => {
                    run.entries += 1;
                    self.entries += 1;
                    match entry.line {
                        Some(line) => {
                            on_line(&line);
                            delivered += 1;
                            cut += usize::from(c);
                        }
                        None => self.skipped += 1,
                    }
                    if let Some(c) = entry.cursor {
                        self.cursor = Some(c);
                    }
                }
                Msg::Bad(why) => {
                    bad += 1;
                    first_bad.get_or_insert(why);
                }
            }
        }
        if let Some(why) = first_bad {
            warn!(source = %self.describe(), lines = bad, problem = %why,
                "journalctl wrote lines that are not journal entries; skipped");
        }
        if cut > 0 {
            warn!(source = %self.describe(), lines = cut, max_line_bytes = self.args.max_line_bytes,
                "cut over-long journal messages to max_line_bytes");
        }
        self.cut_lines += cut as u64;
        if let Some(run) = &self.run {
            if self.last_error.is_some()
                && (run.entries > 0 || run.started.elapsed() >= HEALTHY_RUN)
            {
                info!(source = %self.describe(), "the journal is readable again");
                self.last_error = None;
                self.reported = None;
                self.backoff = self.args.retry_min;
            }
        }
        if ended {
            self.reap();
        }
        delivered
    }

    fn start_from(&self) -> StartFrom {
        if let Some(c) = &self.cursor {
            return StartFrom::Cursor(c.clone());
        }
        match (self.args.start, self.since) {
            (StartAt::End, Some(since)) if self.started_once => StartFrom::Since(since),
            (StartAt::End, _) => StartFrom::End,
            (StartAt::Beginning, _) => StartFrom::Beginning,
        }
    }

    fn start(&mut self) {
        let from = self.start_from();
        let args = command_args(&self.units, &self.args, &from);
        let first = !self.started_once;
        self.started_once = true;
        self.retry_at = None;
        let spawned = Command::new(&self.args.binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let msg = format!(
                    "cannot start journalctl ({}): {e}",
                    self.args.binary.display()
                );
                self.failed(msg, Vec::new());
                return;
            }
        };
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let (tx, rx) = sync_channel(CHANNEL_ENTRIES);
        let tail = Arc::new(Mutex::new(StderrTail::default()));
        let conv = Converter {
            tz: self.args.time_zone.clone(),
            max_line_bytes: self.args.max_line_bytes,
        };
        let reader = stdout.and_then(|out| {
            std::thread::Builder::new()
                .name("journal-stdout".into())
                .spawn(move || read_entries(out, conv, tx))
                .ok()
        });
        let describe = self.describe();
        let known = self.last_stderr.clone();
        let stderr_thread = stderr.and_then(|err| {
            let tail = tail.clone();
            std::thread::Builder::new()
                .name("journal-stderr".into())
                .spawn(move || read_stderr(err, tail, describe, known))
                .ok()
        });
        if reader.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            self.failed(
                "cannot start a thread to read journalctl".to_string(),
                Vec::new(),
            );
            return;
        }
        let how = match &from {
            StartFrom::Cursor(_) => "after the saved cursor".to_string(),
            StartFrom::Since(s) => {
                format!("since {}", Timestamp::from_second(*s).unwrap_or_default())
            }
            StartFrom::End => "new entries only".to_string(),
            StartFrom::Beginning => "from the beginning".to_string(),
        };
        if first || self.last_error.is_none() {
            info!(source = %self.describe(), pid = child.id(), from = %how, "following the journal");
        } else {
            // Success is reported once it delivers (or runs a while): "readable again".
            debug!(source = %self.describe(), pid = child.id(), from = %how, "journalctl started again");
        }
        self.run = Some(Running {
            child,
            rx,
            stderr: tail,
            stderr_thread,
            started: Instant::now(),
            from,
            entries: 0,
        });
    }

    /// journalctl's stdout has ended: collect its exit status and stderr, report, schedule a
    /// restart.
    fn reap(&mut self) {
        let Some(mut run) = self.run.take() else {
            return;
        };
        let status = wait_briefly(&mut run.child);
        if let Some(t) = run.stderr_thread.take() {
            let deadline = Instant::now() + Duration::from_millis(500);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        let stderr: Vec<String> = lock(&run.stderr).lines.iter().cloned().collect();
        let ran = run.started.elapsed();
        let status_text = match status {
            Some(s) => format!("journalctl exited with {s}"),
            None => "journalctl closed its output and was stopped".to_string(),
        };
        let mut msg = status_text;
        if let Some(last) = stderr.last() {
            msg.push_str(": ");
            msg.push_str(last);
        }
        // A cursor journalctl rejects ("Failed to seek to cursor") would fail every restart:
        // continue from the time the cursor names instead (or from now).
        if let StartFrom::Cursor(c) = &run.from {
            let rejected = run.entries == 0
                && !status.is_some_and(|s| s.success())
                && stderr
                    .iter()
                    .any(|l| l.to_ascii_lowercase().contains("cursor"));
            if rejected && self.cursor.as_deref() == Some(c.as_str()) {
                let since = cursor_time(c).unwrap_or_else(|| Timestamp::now().as_second());
                error!(source = %self.describe(), cursor = %c, since = %Timestamp::from_second(since).unwrap_or_default(),
                    "journalctl rejected the saved cursor; continuing from the time it names instead");
                self.cursor = None;
                self.since = Some(since);
                self.args.start = StartAt::End;
                self.started_once = true;
                self.backoff = self.args.retry_min;
            }
        }
        if run.entries > 0 || ran >= HEALTHY_RUN {
            self.backoff = self.args.retry_min;
        }
        self.failed(msg, stderr);
    }

    /// Record and report a failure; schedule the next start.
    fn failed(&mut self, msg: String, stderr: Vec<String>) {
        self.failures += 1;
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.args.retry_max);
        self.retry_at = Some(Instant::now() + delay);
        let now = Instant::now();
        let repeat = matches!(&self.reported, Some((m, at)) if *m == msg && now.duration_since(*at) < REPEAT_REPORT);
        if repeat {
            debug!(source = %self.describe(), problem = %msg, retry_in_ms = delay.as_millis() as u64,
                "the journal still cannot be read");
        } else {
            error!(source = %self.describe(), problem = %msg, stderr = %stderr.join(" | "),
                retry_in_ms = delay.as_millis() as u64,
                "the journal cannot be read; journalctl will be started again");
            self.reported = Some((msg.clone(), now));
        }
        self.last_error = Some(msg);
        self.last_stderr = stderr;
    }
}

impl Drop for JournalSource {
    fn drop(&mut self) {
        if let Some(mut run) = self.run.take() {
            let _ = run.child.kill();
            let _ = run.child.wait();
        }
    }
}

impl std::fmt::Debug for JournalSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalSource")
            .field("units", &self.units)
            .field("cursor", &self.cursor)
            .field("running", &self.run.is_some())
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// journalctl's arguments, in order.
fn command_args(units: &[String], args: &JournalArgs, from: &StartFrom) -> Vec<OsString> {
    let mut a: Vec<OsString> = ["-f", "-o", "json", "--no-pager", "--all"]
        .iter()
        .map(OsString::from)
        .collect();
    a.push(format!("--output-fields={OUTPUT_FIELDS}").into());
    for f in &args.files {
        a.push("--file".into());
        a.push(f.clone().into());
    }
    if let Some(d) = &args.directory {
        a.push("--directory".into());
        a.push(d.clone().into());
    }
    for u in units {
        a.push("-u".into());
        a.push(u.into());
    }
    match from {
        StartFrom::Cursor(c) => {
            a.push("--after-cursor".into());
            a.push(c.into());
        }
        StartFrom::Since(s) => {
            a.push("--since".into());
            a.push(format!("@{s}").into());
        }
        StartFrom::End => {
            a.push("-n".into());
            a.push("0".into());
        }
        StartFrom::Beginning => a.push("--no-tail".into()),
    }
    a.extend(args.extra_args.iter().map(OsString::from));
    a
}

fn lock(m: &Mutex<StderrTail>) -> std::sync::MutexGuard<'_, StderrTail> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The exit status of a child whose stdout has closed: it is exiting; wait up to a second, then
/// kill it.
fn wait_briefly(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// The realtime (seconds) a cursor names: its `t=` field, microseconds in hex.
fn cursor_time(cursor: &str) -> Option<i64> {
    let hex = cursor.split(';').find_map(|f| f.strip_prefix("t="))?;
    let us = u64::from_str_radix(hex, 16).ok()?;
    i64::try_from(us / 1_000_000).ok()
}

/// What the stdout thread needs to turn entries into lines.
struct Converter {
    tz: TimeZone,
    max_line_bytes: usize,
}

/// An entry's JSON may be much longer than its line (byte arrays take up to 4 characters a
/// byte, and the other fields come along): this many bytes are read of one, at least 1 MiB.
fn json_cap(max_line_bytes: usize) -> usize {
    max_line_bytes
        .saturating_mul(5)
        .saturating_add(64 * 1024)
        .max(1 << 20)
}

fn read_entries<R: Read>(out: R, conv: Converter, tx: SyncSender<Msg>) {
    let mut r = BufReader::with_capacity(256 * 1024, out);
    let mut buf = Vec::new();
    let cap = json_cap(conv.max_line_bytes);
    loop {
        let msg = match read_line_bounded(&mut r, &mut buf, cap) {
            Ok(None) => return,
            Err(e) => {
                let _ = tx.send(Msg::Bad(format!("reading journalctl's output: {e}")));
                return;
            }
            Ok(Some(true)) => Msg::Bad(format!("an entry longer than {cap} bytes")),
            Ok(Some(false)) if buf.iter().all(u8::is_ascii_whitespace) => continue,
            Ok(Some(false)) => match parse_entry(&buf, &conv.tz) {
                Ok(mut entry) => {
                    let mut cut = false;
                    if let Some(line) = &mut entry.line {
                        cut = truncate_at_boundary(line, conv.max_line_bytes);
                    }
                    Msg::Entry { entry, cut }
                }
                Err(e) => Msg::Bad(format!("not JSON: {e}")),
            },
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}

/// Keeps the tail of journalctl's stderr and logs it: as warnings, except lines the previous
/// run wrote too (`known`; a failure that repeats on every restart is logged once).
fn read_stderr<R: Read>(err: R, tail: Arc<Mutex<StderrTail>>, source: String, known: Vec<String>) {
    let mut r = BufReader::new(err);
    let mut buf = Vec::new();
    let mut logged = 0;
    while let Ok(Some(_)) = read_line_bounded(&mut r, &mut buf, STDERR_LINE_BYTES) {
        let (line, _) = super::stdin::lossy_line(&buf, STDERR_LINE_BYTES);
        let line = line.trim().to_string();
        if line.is_empty() {
            continue;
        }
        if known.contains(&line) {
            debug!(source = %source, message = %line, "journalctl reports a problem (again)");
        } else {
            if logged < STDERR_LOGGED_LINES {
                warn!(source = %source, message = %line, "journalctl reports a problem");
            } else if logged == STDERR_LOGGED_LINES {
                warn!(source = %source, "journalctl reports more problems; see the source's health");
            }
            logged += 1;
        }
        let mut t = lock(&tail);
        if t.lines.len() == STDERR_TAIL_LINES {
            t.lines.pop_front();
        }
        t.lines.push_back(line);
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
