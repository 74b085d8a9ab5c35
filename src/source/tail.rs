//! The polling file follower: one [`Tailer`] follows one path through rotation, truncation,
//! deletion and permission trouble, and hands out complete lines.
//!
//! Per poll it reads the open handle in large chunks up to end of file (positional reads, so the
//! offset is ours), checks after every chunk that the bytes before the offset are still the ones
//! it read (first bytes and last bytes, so a truncation that regrew past the offset is caught),
//! splits lines with `memchr` and delivers them as `&str` (zero-copy when the line lies in one
//! chunk and is valid UTF-8). Once at end of file it stats the path: if the path now names a
//! different file (or nothing), the old handle is kept and drained until it has been quiet for
//! [`DEFAULT_ROTATION_GRACE`] (configurable), then the tailer switches to the path and reads the
//! new file from its start.

use super::{Checkpoint, StartAt};
use std::cmp::Reverse;
use std::collections::VecDeque;
use std::fs::{self, File, Metadata};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use tracing::{info, warn};

/// How many leading bytes identify a file (kept, compared and stored in a [`Checkpoint`]), and
/// how many bytes just before the read offset are re-checked to detect a truncated file.
pub const FINGERPRINT_LEN: usize = 64;

/// How long the old file must stay quiet after a rename rotation before the tailer moves on to
/// the new file at the path. Daemons that keep writing to the old descriptor until they reopen
/// (on a signal, or on their next log write) do so within this window in practice; lines they
/// write to the old file after it are not read.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(1);

/// Size of the read buffer (one allocation per tailer).
const READ_BUF_LEN: usize = 256 * 1024;

/// A poll returns after reading this much even if more is there, so that a writer faster than
/// the reader cannot keep `poll` from returning; [`Tailer::caught_up`] then says `false`.
const DEFAULT_MAX_BYTES_PER_POLL: u64 = 256 * 1024 * 1024;

/// With [`StartAt::End`], how far back to look for the start of an unterminated last line.
const BACKSCAN_LEN: usize = 64 * 1024;

/// At most this many rotated siblings are examined when looking for a copy or an old file.
const MAX_CANDIDATES: usize = 32;

/// Rotated files with these extensions are compressed: never the copy we are looking for.
const COMPRESSED_EXTENSIONS: &[&str] = &[
    "gz", "bz2", "xz", "zst", "lz4", "lzma", "lzo", "z", "zip", "br",
];

/// Follows one log file by polling; see the [module docs](super).
pub struct Tailer {
    path: PathBuf,
    rotation_grace: Duration,
    max_bytes_per_poll: u64,
    buf: Vec<u8>,
    lines: LineBuf,
    cur: Option<Current>,
    /// Rotated files to read whole, in this order, once `cur` is finished and before the path:
    /// on resume, those newer than the checkpoint's file (rotated more than once while stopped).
    backlog: VecDeque<Pending>,
    status: Status,
    caught_up: bool,
}

/// A rotated file queued in [`Tailer::backlog`], already open (later renames do not matter).
struct Pending {
    path: PathBuf,
    file: File,
    meta: Metadata,
}

/// The file being read.
struct Current {
    file: File,
    dev: u64,
    ino: u64,
    /// Bytes of the file consumed so far (delivered or held in the line buffer).
    read_pos: u64,
    /// The file's first `min(FINGERPRINT_LEN, bytes known)` bytes.
    head: Vec<u8>,
    /// The last up to `FINGERPRINT_LEN` bytes before `read_pos`.
    recent: Vec<u8>,
    last_growth: Instant,
    /// When we first saw the path name another file (or nothing): rotation under way.
    rotated_at: Option<Instant>,
    /// Verify the fingerprint before the next read even if the file did not change size
    /// (set when resuming from a checkpoint).
    suspect: bool,
}

/// What the tailer last reported, so that each problem is logged once, not on every poll.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Start,
    Following,
    Missing,
    NotRegular,
    OpenFailed(ErrorKind),
    ReadFailed(ErrorKind),
    StatFailed(ErrorKind),
}

enum OpenError {
    Missing,
    NotRegular(fs::FileType),
    Io(io::Error),
}

enum Drained {
    Eof,
    Budget,
    Failed,
}

impl Tailer {
    /// Follow `path`. `max_line_bytes`: longer lines are cut to this many bytes (at least 1; a
    /// multi-byte character that the cut would split is left out), counted and warn-logged once
    /// per poll; the rest of such a line is discarded up to its newline.
    ///
    /// With [`StartAt::End`] the file is opened now and positioned at its end; if it does not
    /// exist yet it is read from its beginning once it appears.
    pub fn new(path: impl Into<PathBuf>, start: StartAt, max_line_bytes: usize) -> Tailer {
        let mut tailer = Tailer::blank(path.into(), max_line_bytes);
        if start == StartAt::End {
            if let Ok((file, meta)) = open_regular(&tailer.path) {
                match tailer.position_at_end(file, &meta) {
                    Ok(()) => tailer.report_following("at its end"),
                    Err(e) => {
                        // Try again (from the beginning) on the first poll.
                        warn!(path = %tailer.path.display(), error = %e, "cannot read the end of the log file");
                        tailer.cur = None;
                    }
                }
            }
        }
        tailer
    }

    /// Resume from a checkpoint taken by [`Tailer::checkpoint`], possibly in an earlier process.
    ///
    /// If the file at `path` is the checkpoint's file (same device, inode and first bytes, and at
    /// least `offset` long), reading continues at `offset`. If it is the same inode but was
    /// truncated since (copytruncate), the first poll handles it like any truncation: the rest is
    /// read from the rotated copy if one matches (and, as the log may have been copied and
    /// truncated more than once while stopped, so are the rotated files newer than that copy).
    /// If `path` now names another file, the rotated siblings (`<path>.1`, `<path>-*`,
    /// `<path>.*`) are searched for the checkpoint's file; if found, it is drained from `offset`
    /// first, then every rotated file newer than it (`<path>.N`, `<path>-*`, uncompressed; by
    /// modification time, oldest first: the log was rotated more than once while stopped) is
    /// read whole, then `path` from its beginning. Otherwise `path` is read from its beginning
    /// (it is new since the checkpoint).
    pub fn resume(path: impl Into<PathBuf>, cp: Checkpoint, max_line_bytes: usize) -> Tailer {
        let mut tailer = Tailer::blank(path.into(), max_line_bytes);
        let mut fingerprint = cp.fingerprint;
        fingerprint.truncate(FINGERPRINT_LEN);
        let cp_id = (cp.dev, cp.inode);
        match open_regular(&tailer.path).ok() {
            Some((file, meta)) if identity(&meta) == cp_id => {
                let mut cur = Current::new(file, &meta, cp.offset, fingerprint);
                cur.suspect = true;
                tailer.cur = Some(cur);
                tailer.report_following(&format!("at checkpoint offset {}", cp.offset));
            }
            at_path => {
                let current = at_path.map(|(_, meta)| identity(&meta));
                let candidates = rotated_candidates(&tailer.path);
                // With inode numbers the identity suffices: if the content no longer matches
                // (copied and truncated, then renamed), the first poll handles it as a truncated
                // file (`suspect`), reading the rest from the copy.
                let found = candidates
                    .iter()
                    .filter(|c| identity(&c.meta) == cp_id)
                    .find_map(|c| {
                        let file = File::open(&c.path).ok()?;
                        let meta = file.metadata().ok()?;
                        let same = identity(&meta) == cp_id
                            && (cfg!(unix)
                                || (meta.len() >= cp.offset
                                    && region_matches(&file, 0, &fingerprint).unwrap_or(false)));
                        same.then_some((c, file, meta))
                    });
                match found {
                    Some((old, file, meta)) => {
                        let mut exclude = vec![cp_id];
                        exclude.extend(current);
                        tailer.backlog =
                            newer_rotated(&tailer.path, &candidates, &old.age, &exclude).into();
                        info!(path = %tailer.path.display(), rotated = %old.path.display(), offset = cp.offset,
                            newer_rotated = tailer.backlog.len(),
                            "log file was rotated while stopped; reading the rest of the old file, then the files rotated after it, then the new one");
                        let mut cur = Current::new(file, &meta, cp.offset, fingerprint);
                        cur.suspect = true;
                        cur.rotated_at = Some(Instant::now());
                        tailer.cur = Some(cur);
                        tailer.status = Status::Following;
                    }
                    None => info!(path = %tailer.path.display(),
                        "log file is not the one of the checkpoint (rotated or replaced while stopped); it will be read from its beginning"),
                }
            }
        }
        tailer
    }

    fn blank(path: PathBuf, max_line_bytes: usize) -> Tailer {
        Tailer {
            path,
            rotation_grace: DEFAULT_ROTATION_GRACE,
            max_bytes_per_poll: DEFAULT_MAX_BYTES_PER_POLL,
            buf: vec![0; READ_BUF_LEN],
            lines: LineBuf::new(max_line_bytes.max(1)),
            cur: None,
            backlog: VecDeque::new(),
            status: Status::Start,
            caught_up: false,
        }
    }

    /// Builder form of [`Tailer::set_rotation_grace`].
    pub fn with_rotation_grace(mut self, grace: Duration) -> Tailer {
        self.rotation_grace = grace;
        self
    }

    /// How long the old file must show no growth after a rename rotation before switching to
    /// the new file (default [`DEFAULT_ROTATION_GRACE`]). Zero switches as soon as the old file
    /// has been read to its end.
    pub fn set_rotation_grace(&mut self, grace: Duration) {
        self.rotation_grace = grace;
    }

    /// The current rotation grace.
    pub fn rotation_grace(&self) -> Duration {
        self.rotation_grace
    }

    /// Cap on the bytes one [`Tailer::poll`] reads (default 256 MiB, minimum 1).
    pub fn set_max_bytes_per_poll(&mut self, max: u64) {
        self.max_bytes_per_poll = max.max(1);
    }

    /// The path being followed.
    /// The problem that keeps this file from being read, if any (missing, not a regular file,
    /// cannot be opened or read), for health reports.
    pub fn problem(&self) -> Option<String> {
        match &self.status {
            Status::Start | Status::Following => None,
            Status::Missing => Some("the file does not exist".into()),
            Status::NotRegular => Some("the path is not a regular file".into()),
            Status::OpenFailed(k) => Some(format!("cannot open the file: {k}")),
            Status::ReadFailed(k) => Some(format!("cannot read the file: {k}")),
            Status::StatFailed(k) => Some(format!("cannot stat the file: {k}")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the last poll read everything there was (`false`: it stopped at the per-poll cap
    /// and the caller may poll again at once).
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// Whether the path names another file (or nothing) while the old file is still being read
    /// until it has been quiet for the rotation grace.
    pub fn rotation_pending(&self) -> bool {
        self.cur.as_ref().is_some_and(|c| c.rotated_at.is_some())
    }

    /// Identity and offset of the file being read, the offset just after the last delivered
    /// line. `None` while no file is open (waiting for the path to appear).
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.cur.as_ref().map(|cur| Checkpoint {
            dev: cur.dev,
            inode: cur.ino,
            fingerprint: cur.head.clone(),
            offset: cur.read_pos.saturating_sub(self.lines.partial),
        })
    }

    /// Read everything available now and call `on_line` for each complete line (without its
    /// `"\n"`, and without one `"\r"` before it). Returns the number of lines delivered.
    ///
    /// Never panics (unless `on_line` does); I/O problems are logged once per change of state
    /// and retried on the next poll.
    pub fn poll(&mut self, on_line: &mut dyn FnMut(&str)) -> usize {
        let mut sink = Sink {
            on_line,
            lines: 0,
            cut: 0,
            invalid_utf8: 0,
            nul: 0,
        };
        let mut budget = self.max_bytes_per_poll;
        self.caught_up = true;
        // At most: read the old file (and the queued rotated files), switch, read the new one. A
        // second rotation waits for the next poll.
        for _ in 0..2 + self.backlog.len() {
            if self.cur.is_none() && !self.open_next() {
                break;
            }
            match self.drain(&mut sink, &mut budget) {
                Drained::Eof => {}
                Drained::Budget => {
                    self.caught_up = false;
                    break;
                }
                Drained::Failed => break,
            }
            if !self.check_rotation(&mut sink) {
                break;
            }
        }
        if sink.cut > 0 {
            warn!(path = %self.path.display(), lines = sink.cut, max_line_bytes = self.lines.max,
                "cut over-long log lines to max_line_bytes");
        }
        if sink.invalid_utf8 > 0 {
            warn!(path = %self.path.display(), lines = sink.invalid_utf8,
                "log lines with invalid UTF-8; read with replacement characters");
        }
        if sink.nul > 0 {
            warn!(path = %self.path.display(), lines = sink.nul,
                "log lines with NUL bytes (binary data in the log?); read as they are");
        }
        sink.lines
    }

    /// Open the next queued rotated file, or else the path, from its beginning.
    fn open_next(&mut self) -> bool {
        while let Some(next) = self.backlog.pop_front() {
            // Never read a file twice: if the path names it (again), it is read as the path.
            let id = identity(&next.meta);
            if fs::metadata(&self.path).is_ok_and(|m| identity(&m) == id) {
                continue;
            }
            info!(path = %self.path.display(), rotated = %next.path.display(),
                "reading a log file rotated while stopped from its beginning");
            self.lines.reset();
            let mut cur = Current::new(next.file, &next.meta, 0, Vec::new());
            cur.rotated_at = Some(Instant::now());
            self.cur = Some(cur);
            return true;
        }
        self.try_open()
    }

    /// Open the path from its beginning (a file that appears is new). Logs once per change.
    fn try_open(&mut self) -> bool {
        match open_regular(&self.path) {
            Ok((file, meta)) => {
                self.lines.reset();
                self.cur = Some(Current::new(file, &meta, 0, Vec::new()));
                self.report_following("from its beginning");
                true
            }
            Err(OpenError::Missing) => {
                if set_status(&mut self.status, Status::Missing) {
                    info!(path = %self.path.display(), "log file does not exist; waiting for it to appear");
                }
                false
            }
            Err(OpenError::NotRegular(kind)) => {
                if set_status(&mut self.status, Status::NotRegular) {
                    warn!(path = %self.path.display(), kind = ?kind,
                        "log path is not a regular file; waiting for a regular file to appear there");
                }
                false
            }
            Err(OpenError::Io(e)) => {
                if set_status(&mut self.status, Status::OpenFailed(e.kind())) {
                    warn!(path = %self.path.display(), error = %e, "cannot open log file; retrying on every poll");
                }
                false
            }
        }
    }

    fn report_following(&mut self, whence: &str) {
        self.status = Status::Following;
        let offset = self.cur.as_ref().map_or(0, |c| c.read_pos);
        info!(path = %self.path.display(), offset, "following log file {whence}");
    }

    /// Position a freshly opened file at the start of its unterminated last line (so that a line
    /// being written now is delivered whole), or at its end.
    fn position_at_end(&mut self, file: File, meta: &Metadata) -> io::Result<()> {
        let size = meta.len();
        let from = size.saturating_sub(BACKSCAN_LEN as u64);
        let want = usize::try_from(size - from).unwrap_or(BACKSCAN_LEN);
        let n = read_full_at(&file, &mut self.buf[..want], from)?;
        let (start, skip) = match memchr::memrchr(b'\n', &self.buf[..n]) {
            Some(i) => (from + i as u64 + 1, false),
            None if from == 0 => (0, false),
            // No newline in the last 64 KiB: skip the rest of that (over-long) line.
            None => (from + n as u64, true),
        };
        let head_len = start.min(FINGERPRINT_LEN as u64) as usize;
        let mut head = vec![0; head_len];
        let got = read_full_at(&file, &mut head, 0)?;
        head.truncate(got);
        let mut cur = Current::new(file, meta, start, head);
        let recent_len = start.min(FINGERPRINT_LEN as u64) as usize;
        let mut recent = vec![0; recent_len];
        let got = read_full_at(&cur.file, &mut recent, start - recent_len as u64)?;
        recent.truncate(got);
        cur.recent = recent;
        self.lines.reset();
        self.lines.skip = skip;
        self.cur = Some(cur);
        Ok(())
    }

    /// Read the open file up to its end (or the byte budget), delivering lines.
    fn drain(&mut self, sink: &mut Sink<'_>, budget: &mut u64) -> Drained {
        let Tailer {
            path,
            buf,
            lines,
            cur,
            status,
            backlog,
            ..
        } = self;
        let Some(cur) = cur.as_mut() else {
            return Drained::Eof;
        };
        if cur.suspect {
            // Resumed from a checkpoint: is the file still the one we read up to the offset?
            match validate(cur) {
                Ok(true) => {
                    if let Err(e) = cur.refresh_signatures() {
                        return read_failed(path, status, &e);
                    }
                }
                Ok(false) => on_truncation(path, cur, backlog, buf, lines, sink),
                Err(e) => return read_failed(path, status, &e),
            }
            cur.suspect = false;
        }
        loop {
            if *budget == 0 {
                return Drained::Budget;
            }
            let want = usize::try_from(*budget).map_or(buf.len(), |b| b.min(buf.len()));
            let n = match read_at(&cur.file, &mut buf[..want], cur.read_pos) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return read_failed(path, status, &e),
            };
            if n == 0 {
                match cur.file.metadata() {
                    Ok(meta) if meta.len() < cur.read_pos => {
                        on_truncation(path, cur, backlog, buf, lines, sink);
                        continue;
                    }
                    Ok(_) => {
                        if set_status(status, Status::Following) {
                            info!(path = %path.display(), "reading log file again");
                        }
                        return Drained::Eof;
                    }
                    Err(e) => return read_failed(path, status, &e),
                }
            }
            *budget = budget.saturating_sub(n as u64);
            // The chunk is only trusted if the bytes before it are still the ones we read: a
            // file truncated and regrown past our offset since the last read fails this.
            match validate(cur) {
                Ok(true) => {}
                Ok(false) => {
                    on_truncation(path, cur, backlog, buf, lines, sink);
                    continue;
                }
                Err(e) => return read_failed(path, status, &e),
            }
            cur.absorb(&buf[..n]);
            lines.feed(&buf[..n], sink);
        }
    }

    /// At end of file: has the path been rotated away from the open file? Returns `true` when
    /// the old file is finished and closed (the caller then opens the path).
    fn check_rotation(&mut self, sink: &mut Sink<'_>) -> bool {
        let Some(cur) = self.cur.as_mut() else {
            return false;
        };
        let why = match fs::metadata(&self.path) {
            Ok(meta) if identity(&meta) == (cur.dev, cur.ino) => None,
            Ok(meta) if meta.is_file() => Some("replaced by a new file (rotated)"),
            Ok(_) => Some("replaced by something that is not a regular file"),
            Err(e) if is_missing(&e) => Some("removed or renamed"),
            Err(e) => {
                // We cannot tell; keep following the file we have open.
                if set_status(&mut self.status, Status::StatFailed(e.kind())) {
                    warn!(path = %self.path.display(), error = %e,
                        "cannot check whether the log file was rotated; still reading the open file");
                }
                return false;
            }
        };
        let Some(why) = why else {
            if cur.rotated_at.take().is_some() {
                info!(path = %self.path.display(), "log path names the followed file again");
            }
            if set_status(&mut self.status, Status::Following) {
                info!(path = %self.path.display(), "log path can be checked again");
            }
            return false;
        };
        let now = Instant::now();
        let rotated_at = *cur.rotated_at.get_or_insert_with(|| {
            info!(path = %self.path.display(), why,
                "log path no longer names the open file; reading the old file until it is quiet");
            now
        });
        let quiet_since = rotated_at.max(cur.last_growth);
        // A file with newer rotated files queued after it has no writer any more.
        let grace = if self.backlog.is_empty() {
            self.rotation_grace
        } else {
            Duration::ZERO
        };
        if now.saturating_duration_since(quiet_since) < grace {
            return false;
        }
        // The writer has moved on: an unterminated last line is final now.
        self.lines.finish(sink);
        if self.backlog.is_empty() {
            info!(path = %self.path.display(), old_size = cur.read_pos, "finished the old log file; switching to the path");
        } else {
            info!(path = %self.path.display(), old_size = cur.read_pos, "finished the old log file; reading the next rotated file");
        }
        self.cur = None;
        true
    }
}

impl std::fmt::Debug for Tailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Tailer");
        d.field("path", &self.path)
            .field("status", &self.status)
            .field("rotation_grace", &self.rotation_grace)
            .field("rotated_backlog", &self.backlog.len());
        if let Some(cur) = &self.cur {
            d.field("dev", &cur.dev)
                .field("inode", &cur.ino)
                .field("read_pos", &cur.read_pos)
                .field("rotating", &cur.rotated_at.is_some());
        }
        d.finish_non_exhaustive()
    }
}

impl Current {
    fn new(file: File, meta: &Metadata, read_pos: u64, head: Vec<u8>) -> Current {
        let (dev, ino) = identity(meta);
        Current {
            file,
            dev,
            ino,
            read_pos,
            head,
            recent: Vec::with_capacity(FINGERPRINT_LEN),
            last_growth: Instant::now(),
            rotated_at: None,
            suspect: false,
        }
    }

    /// After a checkpoint was found valid: take the full first bytes and the bytes before the
    /// offset from the file (a checkpoint's fingerprint may be shorter; `recent` is not stored).
    fn refresh_signatures(&mut self) -> io::Result<()> {
        let len = self.read_pos.min(FINGERPRINT_LEN as u64) as usize;
        let mut head = vec![0; len];
        let got = read_full_at(&self.file, &mut head, 0)?;
        if got == len && head.starts_with(&self.head) {
            self.head = head;
        }
        let mut recent = vec![0; len];
        let got = read_full_at(&self.file, &mut recent, self.read_pos - len as u64)?;
        recent.truncate(got);
        self.recent = recent;
        Ok(())
    }

    /// Account for `data`, just read at `read_pos`.
    fn absorb(&mut self, data: &[u8]) {
        let head_len = self.head.len();
        if head_len < FINGERPRINT_LEN && self.read_pos <= head_len as u64 {
            let from = head_len - self.read_pos as usize;
            if from < data.len() {
                let take = (FINGERPRINT_LEN - head_len).min(data.len() - from);
                self.head.extend_from_slice(&data[from..from + take]);
            }
        }
        if data.len() >= FINGERPRINT_LEN {
            self.recent.clear();
            self.recent
                .extend_from_slice(&data[data.len() - FINGERPRINT_LEN..]);
        } else {
            self.recent.extend_from_slice(data);
            let excess = self.recent.len().saturating_sub(FINGERPRINT_LEN);
            self.recent.drain(..excess);
        }
        self.read_pos += data.len() as u64;
        self.last_growth = Instant::now();
    }
}

/// Are the bytes before `read_pos` still those we read? (First bytes and last bytes.)
fn validate(cur: &Current) -> io::Result<bool> {
    if !region_matches(&cur.file, 0, &cur.head)? {
        return Ok(false);
    }
    let head_covers_recent = cur.read_pos <= cur.head.len() as u64;
    if !head_covers_recent && !cur.recent.is_empty() {
        let at = cur.read_pos - cur.recent.len() as u64;
        return region_matches(&cur.file, at, &cur.recent);
    }
    Ok(true)
}

/// The open file was truncated (copytruncate, or `: > log`): deliver what only the rotated copy
/// has, then continue from offset 0. When resuming from a checkpoint (`cur.suspect`), the log
/// may have been copied and truncated more than once while stopped: the rotated files newer than
/// the copy (other than the open file, the path's file and the queued `backlog`) hold the lines
/// written between those truncations and are read whole, oldest first, after the copy.
fn on_truncation(
    path: &Path,
    cur: &mut Current,
    backlog: &VecDeque<Pending>,
    buf: &mut [u8],
    lines: &mut LineBuf,
    sink: &mut Sink<'_>,
) {
    let old_pos = cur.read_pos;
    if old_pos > 0 {
        match find_rotated_copy(path, cur) {
            Some((copy, file)) => {
                info!(path = %path.display(), copy = %copy.path.display(), offset = old_pos,
                    "log file was truncated (copytruncate); reading the lines written before the truncation from the rotated copy");
                feed_file(path, &copy.path, &file, old_pos, buf, lines, sink);
                if cur.suspect {
                    let mut exclude = vec![(cur.dev, cur.ino), identity(&copy.meta)];
                    exclude.extend(fs::metadata(path).ok().map(|m| identity(&m)));
                    exclude.extend(backlog.iter().map(|p| identity(&p.meta)));
                    let candidates = rotated_candidates(path);
                    for next in newer_rotated(path, &candidates, &copy.age, &exclude) {
                        info!(path = %path.display(), rotated = %next.path.display(),
                            "reading a copy of the log file rotated after that one (truncated more than once while stopped)");
                        feed_file(path, &next.path, &next.file, 0, buf, lines, sink);
                    }
                }
                // A line cut by the copy (its start in the copy, its end written after the
                // truncation) is completed by the start of the truncated file.
            }
            None => {
                warn!(path = %path.display(), offset = old_pos,
                    "log file was truncated and no rotated copy matching it was found (looked for <path>.1, <path>-*, <path>.*): lines written between offset {old_pos} and the truncation may have been lost; continuing from its start");
                lines.reset();
            }
        }
    }
    lines.partial = 0;
    cur.read_pos = 0;
    cur.head.clear();
    cur.recent.clear();
    cur.suspect = false;
}

/// Feed a rotated file's bytes from `pos` to its end into `lines` (no line is finished: the
/// bytes continue in the next file).
fn feed_file(
    path: &Path,
    rotated: &Path,
    file: &File,
    mut pos: u64,
    buf: &mut [u8],
    lines: &mut LineBuf,
    sink: &mut Sink<'_>,
) {
    loop {
        match read_at(file, buf, pos) {
            Ok(0) => break,
            Ok(n) => {
                lines.feed(&buf[..n], sink);
                pos += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                warn!(path = %path.display(), rotated = %rotated.display(), error = %e,
                    "cannot read the rotated file; lines may have been lost");
                break;
            }
        }
    }
}

/// The newest rotated sibling whose content up to our offset is the content we read.
fn find_rotated_copy(path: &Path, cur: &Current) -> Option<(Candidate, File)> {
    if cur.head.is_empty() && cur.recent.is_empty() {
        return None; // nothing to recognise it by
    }
    for candidate in rotated_candidates(path) {
        if identity(&candidate.meta) == (cur.dev, cur.ino) || candidate.meta.len() < cur.read_pos {
            continue;
        }
        let Ok(file) = File::open(&candidate.path) else {
            continue;
        };
        let head_ok = region_matches(&file, 0, &cur.head).unwrap_or(false);
        let recent_ok = cur.recent.is_empty()
            || region_matches(&file, cur.read_pos - cur.recent.len() as u64, &cur.recent)
                .unwrap_or(false);
        if head_ok && recent_ok {
            return Some((candidate, file));
        }
    }
    None
}

/// A rotated sibling of the log file.
struct Candidate {
    path: PathBuf,
    meta: Metadata,
    age: Age,
    /// Named the way logrotate names rotated logs: `<name>.N` or `<name>-*`.
    rotation_name: bool,
}

/// Where a rotated file stands in rotation order: older compares less. By modification time;
/// between equal times (a coarse clock, rotations in quick succession) by name: `<name>.2` is
/// older than `<name>.1`, other suffixes (dates) compare as text, numbered ones last.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Age {
    mtime: SystemTime,
    rank: NameRank,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum NameRank {
    Other(Vec<u8>),
    Numbered(Reverse<u64>),
}

/// Regular, uncompressed files named `<name>.*` or `<name>-*` beside `path`, newest first
/// (see [`Age`]), at most [`MAX_CANDIDATES`].
fn rotated_candidates(path: &Path) -> Vec<Candidate> {
    let Some(name) = path.file_name() else {
        return Vec::new();
    };
    let name = name.as_encoded_bytes();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<Candidate> = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let bytes = file_name.as_encoded_bytes();
        let Some(rest) = bytes.strip_prefix(name) else {
            continue;
        };
        if rest.len() < 2 || !(rest[0] == b'.' || rest[0] == b'-') {
            continue;
        }
        let ext = bytes.rsplit(|&b| b == b'.').next().unwrap_or_default();
        if COMPRESSED_EXTENSIONS
            .iter()
            .any(|c| c.as_bytes().eq_ignore_ascii_case(ext))
        {
            continue;
        }
        let candidate = entry.path();
        let Ok(meta) = fs::metadata(&candidate) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let number = (rest[0] == b'.' && rest[1..].iter().all(u8::is_ascii_digit))
            .then(|| std::str::from_utf8(&rest[1..]).ok()?.parse::<u64>().ok())
            .flatten();
        let rank = match number {
            Some(n) => NameRank::Numbered(Reverse(n)),
            None => NameRank::Other(rest.to_vec()),
        };
        found.push(Candidate {
            path: candidate,
            meta,
            rotation_name: number.is_some() || rest[0] == b'-',
            age: Age { mtime, rank },
        });
    }
    found.sort_by(|a, b| b.age.cmp(&a.age));
    found.truncate(MAX_CANDIDATES);
    found
}

/// The rotated files among `candidates` (newest first) that are newer than `than`, oldest
/// first, opened: only files named like rotated logs, each file once, none of `exclude`
/// (identities).
fn newer_rotated(
    path: &Path,
    candidates: &[Candidate],
    than: &Age,
    exclude: &[(u64, u64)],
) -> Vec<Pending> {
    let mut seen = exclude.to_vec();
    let mut out = Vec::new();
    for c in candidates.iter().rev() {
        let id = identity(&c.meta);
        if !c.rotation_name || c.age <= *than || seen.contains(&id) {
            continue;
        }
        seen.push(id);
        let opened = File::open(&c.path).and_then(|file| {
            let meta = file.metadata()?;
            Ok((file, meta))
        });
        match opened {
            Ok((file, meta)) if meta.is_file() && identity(&meta) == id => out.push(Pending {
                path: c.path.clone(),
                file,
                meta,
            }),
            Ok(_) => {} // replaced since it was listed
            Err(e) => {
                warn!(path = %path.display(), rotated = %c.path.display(), error = %e,
                    "cannot open a log file rotated while stopped; its lines are not read");
            }
        }
    }
    out
}

fn read_failed(path: &Path, status: &mut Status, e: &io::Error) -> Drained {
    if set_status(status, Status::ReadFailed(e.kind())) {
        warn!(path = %path.display(), error = %e, "cannot read log file; retrying on every poll");
    }
    Drained::Failed
}

/// Returns whether the status changed (and so should be logged).
fn set_status(status: &mut Status, new: Status) -> bool {
    if *status == new {
        false
    } else {
        *status = new;
        true
    }
}

fn is_missing(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

/// Open `path` if it is a regular file. Checks the type before opening, so that a FIFO put at
/// the path cannot block us in `open`.
fn open_regular(path: &Path) -> Result<(File, Metadata), OpenError> {
    let classify = |e: io::Error| {
        if is_missing(&e) {
            OpenError::Missing
        } else {
            OpenError::Io(e)
        }
    };
    let meta = fs::metadata(path).map_err(classify)?;
    if !meta.is_file() {
        return Err(OpenError::NotRegular(meta.file_type()));
    }
    let file = File::open(path).map_err(classify)?;
    let meta = file.metadata().map_err(OpenError::Io)?;
    if !meta.is_file() {
        return Err(OpenError::NotRegular(meta.file_type()));
    }
    Ok((file, meta))
}

/// Whether `file` holds exactly `expected` at `pos` (an empty `expected` always matches).
fn region_matches(file: &File, pos: u64, expected: &[u8]) -> io::Result<bool> {
    let mut tmp = [0u8; FINGERPRINT_LEN];
    let len = expected.len().min(FINGERPRINT_LEN);
    let n = read_full_at(file, &mut tmp[..len], pos)?;
    Ok(n == expected.len() && tmp[..n] == *expected)
}

/// Read until `buf` is full or end of file; returns the bytes read.
fn read_full_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match read_at(file, &mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, pos)
}

#[cfg(not(unix))]
fn read_at(mut file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(pos))?;
    file.read(buf)
}

#[cfg(unix)]
fn identity(meta: &Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// Without inode numbers a rename rotation cannot be told apart; truncation still can.
#[cfg(not(unix))]
fn identity(_meta: &Metadata) -> (u64, u64) {
    (0, 0)
}

/// Where lines go: converts to `&str` and counts.
struct Sink<'a> {
    on_line: &'a mut dyn FnMut(&str),
    lines: usize,
    cut: usize,
    /// Lines with invalid UTF-8 and with NUL bytes in this poll (logged once per poll).
    invalid_utf8: usize,
    nul: usize,
}

impl Sink<'_> {
    fn emit(&mut self, line: &[u8]) {
        if memchr::memchr(0, line).is_some() {
            self.nul += 1;
        }
        match std::str::from_utf8(line) {
            Ok(s) => (self.on_line)(s),
            Err(_) => {
                self.invalid_utf8 += 1;
                (self.on_line)(&String::from_utf8_lossy(line))
            }
        }
        self.lines += 1;
    }

    /// Emit a line that was cut; a character split by the cut is left out.
    fn emit_cut(&mut self, line: &[u8]) {
        self.cut += 1;
        let line = match std::str::from_utf8(line) {
            Err(e) if e.error_len().is_none() => &line[..e.valid_up_to()],
            _ => line,
        };
        self.emit(line);
    }
}

/// Splits bytes into lines, holding an unterminated line until its newline arrives.
struct LineBuf {
    max: usize,
    /// Start of the current unfinished line, at most `max + 1` bytes (room for a `\r`).
    pending: Vec<u8>,
    /// The current line is longer than `pending` can hold; the rest is discarded.
    overflow: bool,
    /// Discard up to and including the next newline without delivering anything.
    skip: bool,
    /// Bytes of the current unfinished line consumed from the current file.
    partial: u64,
}

impl LineBuf {
    fn new(max: usize) -> LineBuf {
        LineBuf {
            max,
            pending: Vec::new(),
            overflow: false,
            skip: false,
            partial: 0,
        }
    }

    fn cap(&self) -> usize {
        self.max.saturating_add(1)
    }

    fn feed(&mut self, mut data: &[u8], sink: &mut Sink<'_>) {
        while let Some(i) = memchr::memchr(b'\n', data) {
            let seg = &data[..i];
            data = &data[i + 1..];
            if self.skip {
                self.skip = false;
            } else if self.overflow {
                sink.emit_cut(&self.pending[..self.max]);
            } else if self.pending.is_empty() {
                emit_complete(self.max, seg, sink);
            } else if self.pending.len() + seg.len() <= self.cap() {
                self.pending.extend_from_slice(seg);
                emit_complete(self.max, &self.pending, sink);
            } else {
                let need = self.max.saturating_sub(self.pending.len());
                self.pending.extend_from_slice(&seg[..need]);
                sink.emit_cut(&self.pending[..self.max]);
            }
            self.pending.clear();
            self.overflow = false;
            self.partial = 0;
        }
        if data.is_empty() {
            return;
        }
        self.partial += data.len() as u64;
        if self.skip || self.overflow {
            return;
        }
        let room = self.cap() - self.pending.len();
        if data.len() > room {
            self.pending.extend_from_slice(&data[..room]);
            self.overflow = true;
        } else {
            self.pending.extend_from_slice(data);
        }
    }

    /// The file is finished: its unterminated last line, if any, is delivered.
    fn finish(&mut self, sink: &mut Sink<'_>) {
        if self.overflow {
            sink.emit_cut(&self.pending[..self.max]);
        } else if !self.skip && !self.pending.is_empty() {
            emit_complete(self.max, &self.pending, sink);
        }
        self.reset();
    }

    fn reset(&mut self) {
        self.pending.clear();
        self.overflow = false;
        self.skip = false;
        self.partial = 0;
    }
}

fn emit_complete(max: usize, line: &[u8], sink: &mut Sink<'_>) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > max {
        sink.emit_cut(&line[..max]);
    } else {
        sink.emit(line);
    }
}
