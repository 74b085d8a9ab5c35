//! The polling file follower: one [`Tailer`] follows one path through rotation, truncation,
//! deletion and permission trouble, and hands out complete lines.
//!
//! It holds every file that was at the path since the oldest one still being drained, open and
//! in order (at most [`MAX_HELD_FILES`]). Per poll it reads each held file, oldest first, in
//! large chunks up to its end (positional reads, so the offsets are ours), checks after every
//! chunk and at end of file that the bytes before the offset are still the ones it read (first
//! bytes and last bytes, so a truncation that regrew to or past the offset is caught), splits
//! lines with `memchr` and delivers them as `&str` (zero-copy when the line lies in one chunk
//! and is valid UTF-8). Then it stats the path once: if the path names a file it does not hold,
//! that file is held too and read from its start (after any rotated sibling newer than the
//! newest held file, i.e. a file rotated away between two polls), and the older files are
//! drained alongside until each has been quiet for [`DEFAULT_ROTATION_GRACE`] (configurable).
//! So a burst of rotations within one grace loses no file the tailer saw (or could find among
//! the rotated siblings), and a truncated file's lost tail is read from its rotated copy.

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

/// How long a file the path no longer names must stay quiet before the tailer lets it go
/// (it reads the new file at the path meanwhile). Daemons that keep writing to the old
/// descriptor until they reopen (on a signal, or on their next log write) do so within this
/// window in practice; lines they write to the old file after it are not read.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(1);

/// At most this many files are held at once (the path's file and those rotated away from it
/// that are still drained). A burst renames the log a few times within one grace; each held
/// file costs a descriptor and a few reads per poll, and keeps a deleted file's disk space.
/// Beyond this the oldest is let go early: lines its writer adds later are not read.
const MAX_HELD_FILES: usize = 8;

/// A file created this long before the path was last looked at still counts as created
/// since: file times come from a coarse clock, up to a scheduler tick (4-10 ms) behind ours.
const BIRTH_SLACK: Duration = Duration::from_millis(50);

/// Size of the read buffer (one allocation per tailer).
const READ_BUF_LEN: usize = 256 * 1024;

/// A poll returns after reading this much even if more is there, so that a writer faster than
/// the reader cannot keep `poll` from returning; [`Tailer::caught_up`] then says `false`.
const DEFAULT_MAX_BYTES_PER_POLL: u64 = 256 * 1024 * 1024;

/// With [`StartAt::End`], how far back to look for the start of an unterminated last line.
const BACKSCAN_LEN: usize = 64 * 1024;

/// At most this many rotated siblings are examined when looking for a copy or an old file.
const MAX_CANDIDATES: usize = 32;

/// The files read and let go that are remembered, so that a rotated sibling found by a search
/// is never read a second time: several times as many as a search examines (files may be
/// let go and rotated faster than they leave the newest siblings). Checked by identity first,
/// so the cost is a comparison per entry, and only when a search runs.
const MAX_DONE: usize = 4 * MAX_CANDIDATES;

/// Rotated files with these extensions are compressed: never the copy we are looking for.
const COMPRESSED_EXTENSIONS: &[&str] = &[
    "gz", "bz2", "xz", "zst", "lz4", "lzma", "lzo", "z", "zip", "br",
];

/// Follows one log file by polling; see the [module docs](super).
pub struct Tailer {
    path: PathBuf,
    rotation_grace: Duration,
    max_bytes_per_poll: u64,
    max_line_bytes: usize,
    buf: Vec<u8>,
    /// Every file that was at the path since the oldest one still being drained, oldest first,
    /// each open (later renames do not matter); the last is the one the path named when last
    /// looked at. Empty while no file is open (waiting for the path to appear).
    held: VecDeque<Held>,
    /// Files read and let go, newest last (at most [`MAX_DONE`]).
    done: VecDeque<Done>,
    /// When the path was last looked at (file times are wall-clock times), and when this
    /// tailer was made (files made before were read, if at all, by an earlier process).
    last_look: SystemTime,
    started: SystemTime,
    status: Status,
    caught_up: bool,
}

/// A rotated file found by a search, already open (later renames do not matter).
struct Pending {
    path: PathBuf,
    file: File,
    meta: Metadata,
}

/// A file read and let go: its identity and first bytes.
struct Done {
    id: (u64, u64),
    head: Vec<u8>,
}

/// A file being read.
struct Held {
    file: File,
    dev: u64,
    ino: u64,
    /// Bytes of the file consumed so far (delivered or held in `lines`).
    read_pos: u64,
    /// The file's first `min(FINGERPRINT_LEN, bytes known)` bytes.
    head: Vec<u8>,
    /// The last up to `FINGERPRINT_LEN` bytes before `read_pos`.
    recent: Vec<u8>,
    /// The unfinished line of this file (each file has its own).
    lines: LineBuf,
    last_growth: Instant,
    /// When we first saw the path name another file (or nothing): rotated away.
    rotated_at: Option<Instant>,
    /// Rotated, and a newer rotated file was found at the same time (on resume): its writer
    /// has moved on, so it is let go as soon as it has been read to its end.
    writer_gone: bool,
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
    /// The file no longer holds what we read before the offset: handle it, then read on.
    Truncated,
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
                        tailer.held.clear();
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
        let max = tailer.max_line_bytes;
        let mut fingerprint = cp.fingerprint;
        fingerprint.truncate(FINGERPRINT_LEN);
        let cp_id = (cp.dev, cp.inode);
        match open_regular(&tailer.path).ok() {
            Some((file, meta)) if identity(&meta) == cp_id => {
                let mut held = Held::new(file, &meta, cp.offset, fingerprint, max);
                held.suspect = true;
                tailer.held.push_back(held);
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
                        let newer = newer_rotated(&tailer.path, &candidates, &old.age, &exclude);
                        info!(path = %tailer.path.display(), rotated = %old.path.display(), offset = cp.offset,
                            newer_rotated = newer.len(),
                            "log file was rotated while stopped; reading the rest of the old file, then the files rotated after it, then the new one");
                        let now = Instant::now();
                        let mut held = Held::new(file, &meta, cp.offset, fingerprint, max);
                        held.suspect = true;
                        held.rotated_at = Some(now);
                        held.writer_gone = !newer.is_empty();
                        tailer.held.push_back(held);
                        let last = newer.len();
                        for (k, p) in newer.into_iter().enumerate() {
                            let mut held = Held::new(p.file, &p.meta, 0, Vec::new(), max);
                            held.rotated_at = Some(now);
                            // Only the newest rotated file may still be written to.
                            held.writer_gone = k + 1 < last;
                            tailer.held.push_back(held);
                        }
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
            max_line_bytes: max_line_bytes.max(1),
            buf: vec![0; READ_BUF_LEN],
            held: VecDeque::new(),
            done: VecDeque::new(),
            last_look: SystemTime::now(),
            started: SystemTime::now(),
            status: Status::Start,
            caught_up: false,
        }
    }

    /// Builder form of [`Tailer::set_rotation_grace`].
    pub fn with_rotation_grace(mut self, grace: Duration) -> Tailer {
        self.rotation_grace = grace;
        self
    }

    /// How long a file the path no longer names must show no growth before it is let go
    /// (default [`DEFAULT_ROTATION_GRACE`]). Zero lets it go as soon as it has been read to its
    /// end.
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

    /// The path being followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the last poll read everything there was (`false`: it stopped at the per-poll cap
    /// and the caller may poll again at once).
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// Whether a file the path no longer names (or nothing) is still being read until it has
    /// been quiet for the rotation grace.
    pub fn rotation_pending(&self) -> bool {
        self.held.front().is_some_and(|h| h.rotated_at.is_some())
    }

    /// Identity and offset of the oldest file still being read, the offset just after its last
    /// delivered line. `None` while no file is open (waiting for the path to appear).
    ///
    /// While a rotation is drained (several files held), this names the old file: a restart
    /// then finishes it and reads the files rotated after it and the path's file whole, so the
    /// lines of the newer files delivered meanwhile (within one rotation grace) are delivered
    /// again; none is lost.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.held.front().map(|h| Checkpoint {
            dev: h.dev,
            inode: h.ino,
            fingerprint: h.head.clone(),
            offset: h.read_pos.saturating_sub(h.lines.partial),
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
        if self.held.is_empty() {
            self.open_path(&mut sink);
        }
        // Read every held file to its end, oldest first; then look at the path once, and read
        // the files that adds. A further rotation is seen on the next poll.
        let mut i = 0;
        let mut looked = false;
        'poll: loop {
            while i < self.held.len() {
                match self.drain(i, &mut sink, &mut budget) {
                    Drained::Eof
                        if self.held[i].writer_gone && self.held[i].rotated_at.is_some() =>
                    {
                        self.let_go(
                            i,
                            &mut sink,
                            "finished a rotated log file; reading the next one",
                        );
                    }
                    Drained::Eof | Drained::Failed | Drained::Truncated => i += 1,
                    Drained::Budget => {
                        self.caught_up = false;
                        break 'poll;
                    }
                }
            }
            if looked || self.held.is_empty() {
                break;
            }
            looked = true;
            self.look_at_path(&mut sink);
        }
        if self.caught_up {
            self.let_go_quiet(&mut sink);
        }
        if sink.cut > 0 {
            warn!(path = %self.path.display(), lines = sink.cut, max_line_bytes = self.max_line_bytes,
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

    /// Open the path and hold it, read from its beginning (a file that appears is new). Logs
    /// once per change.
    fn open_path(&mut self, sink: &mut Sink<'_>) -> bool {
        match open_regular(&self.path) {
            Ok((file, meta)) => {
                self.hold(
                    Held::new(file, &meta, 0, Vec::new(), self.max_line_bytes),
                    sink,
                );
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

    /// Add a file after the held ones; beyond [`MAX_HELD_FILES`] the oldest is let go early.
    fn hold(&mut self, held: Held, sink: &mut Sink<'_>) {
        if self.held.len() >= MAX_HELD_FILES {
            warn!(path = %self.path.display(), max = MAX_HELD_FILES,
                "log file rotated more often than the rotation grace allows to follow; letting the oldest rotated file go early (lines written to it from now on are not read)");
            self.let_go(0, sink, "let go of the oldest rotated log file");
        }
        self.held.push_back(held);
    }

    /// Finish the held file `i` (its unterminated last line is final now) and forget it.
    fn let_go(&mut self, i: usize, sink: &mut Sink<'_>, what: &str) {
        let Some(mut held) = self.held.remove(i) else {
            return;
        };
        held.lines.finish(sink);
        info!(path = %self.path.display(), size = held.read_pos, held = self.held.len(), "{what}");
        remember(
            &mut self.done,
            Done {
                id: (held.dev, held.ino),
                head: held.head,
            },
        );
    }

    /// Let go of the rotated files that have been quiet for the grace.
    fn let_go_quiet(&mut self, sink: &mut Sink<'_>) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.held.len() {
            let h = &self.held[i];
            let quiet = h.rotated_at.is_some_and(|at| {
                h.writer_gone
                    || now.saturating_duration_since(at.max(h.last_growth)) >= self.rotation_grace
            });
            if quiet {
                let what = if i + 1 < self.held.len() {
                    "finished a rotated log file (quiet for the rotation grace); reading the newer ones"
                } else {
                    "finished the log file (quiet for the rotation grace); waiting for the path to name a file"
                };
                self.let_go(i, sink, what);
            } else {
                i += 1;
            }
        }
    }

    /// After reading the held files: does the path still name the newest? If it names another
    /// file, that one is held (after any rotated sibling newer than the newest held file: a file
    /// that was at the path only between two polls) and the others are marked rotated.
    fn look_at_path(&mut self, sink: &mut Sink<'_>) {
        let now = SystemTime::now();
        let since = std::mem::replace(&mut self.last_look, now);
        let meta = match fs::metadata(&self.path) {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => {
                self.mark_rotated("replaced by something that is not a regular file");
                return;
            }
            Err(e) if is_missing(&e) => {
                self.mark_rotated("removed or renamed");
                return;
            }
            Err(e) => {
                // We cannot tell; keep following the files we have open.
                if set_status(&mut self.status, Status::StatFailed(e.kind())) {
                    warn!(path = %self.path.display(), error = %e,
                        "cannot check whether the log file was rotated; still reading the open file");
                }
                return;
            }
        };
        let id = identity(&meta);
        if let Some(pos) = self.held.iter().position(|h| h.id() == id) {
            let now = Instant::now();
            for (j, h) in self.held.iter_mut().enumerate() {
                if j == pos {
                    if h.rotated_at.take().is_some() {
                        info!(path = %self.path.display(), "log path names the followed file again");
                    }
                } else if j > pos {
                    h.rotated_at.get_or_insert(now);
                }
            }
            if set_status(&mut self.status, Status::Following) {
                info!(path = %self.path.display(), "log path can be checked again");
            }
            return;
        }
        self.mark_rotated("replaced by a new file (rotated)");
        if cfg!(unix) {
            for p in self.unseen_rotated(id, since) {
                info!(path = %self.path.display(), rotated = %p.path.display(),
                    "a log file was rotated away between two polls; reading it from its beginning");
                let mut held = Held::new(p.file, &p.meta, 0, Vec::new(), self.max_line_bytes);
                held.rotated_at = Some(Instant::now());
                self.hold(held, sink);
            }
        }
        self.open_path(sink);
    }

    /// Mark every held file that the path named as rotated away (logged once per file).
    fn mark_rotated(&mut self, why: &str) {
        let now = Instant::now();
        for h in &mut self.held {
            if h.rotated_at.is_none() {
                info!(path = %self.path.display(), why,
                    "log path no longer names the open file; reading the old file until it is quiet");
                h.rotated_at = Some(now);
            }
        }
    }

    /// The rotated siblings newer than the newest held file or created since the path was
    /// last looked at, other than the held ones, the path's (`path_id`) and those read before:
    /// files that were at the path (or copies made of it) only between two polls. A file
    /// opened by its writer just before it was renamed away may be older, by modification
    /// time, than the newest held file; its creation time tells. Oldest first, opened.
    fn unseen_rotated(&self, path_id: (u64, u64), since: SystemTime) -> Vec<Pending> {
        let Some(newest) = self.held.back() else {
            return Vec::new();
        };
        let candidates = rotated_candidates(&self.path);
        // If deleted or moved away, only creation times tell.
        let newest = candidates
            .iter()
            .find(|c| identity(&c.meta) == newest.id())
            .cloned();
        let numbered = newest.as_ref().map(Candidate::numbered);
        let born_since = since
            .checked_sub(BIRTH_SLACK)
            .map(|since| since.max(self.started));
        let candidates: Vec<Candidate> = candidates
            .into_iter()
            .filter(|c| numbered.is_none_or(|n| c.numbered() == n))
            .filter(|c| {
                newest.as_ref().is_some_and(|n| rotated_after(c, n))
                    || born_since.is_some_and(|since| c.meta.created().is_ok_and(|b| b >= since))
            })
            .collect();
        let mut exclude: Vec<(u64, u64)> = self.held.iter().map(Held::id).collect();
        exclude.push(path_id);
        newer_rotated(&self.path, &candidates, &Age::OLDEST, &exclude)
            .into_iter()
            .filter(|p| !is_done(&self.done, p))
            .collect()
    }

    fn report_following(&mut self, whence: &str) {
        self.status = Status::Following;
        let offset = self.held.back().map_or(0, |h| h.read_pos);
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
        let mut held = Held::new(file, meta, start, head, self.max_line_bytes);
        let recent_len = start.min(FINGERPRINT_LEN as u64) as usize;
        let mut recent = vec![0; recent_len];
        let got = read_full_at(&held.file, &mut recent, start - recent_len as u64)?;
        recent.truncate(got);
        held.recent = recent;
        held.lines.skip = skip;
        self.held.clear();
        self.held.push_back(held);
        Ok(())
    }

    /// Read the held file `i` up to its end (or the byte budget), delivering lines; a
    /// truncation found on the way is handled (`Drained::Truncated` is never returned).
    fn drain(&mut self, i: usize, sink: &mut Sink<'_>, budget: &mut u64) -> Drained {
        loop {
            let Tailer {
                path,
                buf,
                held,
                status,
                ..
            } = self;
            let Some(h) = held.get_mut(i) else {
                return Drained::Eof;
            };
            match drain_file(path, h, buf, status, sink, budget) {
                Drained::Truncated => self.on_truncation(i, sink),
                other => return other,
            }
        }
    }

    /// The held file `i` was truncated (copytruncate, or `: > log`): deliver what only the
    /// rotated copy has, then continue from offset 0. The log may have been copied and
    /// truncated more than once since we read it (within one poll interval, or while stopped):
    /// the rotated files newer than the copy (other than the held ones, the path's and those
    /// read before) hold the lines written between those truncations and are read whole,
    /// oldest first, after the copy.
    fn on_truncation(&mut self, i: usize, sink: &mut Sink<'_>) {
        let mut exclude: Vec<(u64, u64)> = self.held.iter().map(Held::id).collect();
        exclude.extend(fs::metadata(&self.path).ok().map(|m| identity(&m)));
        let Tailer {
            path,
            buf,
            held,
            done,
            ..
        } = self;
        let Some(h) = held.get_mut(i) else {
            return;
        };
        let old_pos = h.read_pos;
        if old_pos > 0 {
            match find_rotated_copy(path, h) {
                Some((copy, file)) => {
                    info!(path = %path.display(), copy = %copy.path.display(), offset = old_pos,
                        "log file was truncated (copytruncate); reading the lines written before the truncation from the rotated copy");
                    feed_file(path, &copy.path, &file, old_pos, buf, &mut h.lines, sink);
                    remember(
                        done,
                        Done {
                            id: identity(&copy.meta),
                            head: h.head.clone(),
                        },
                    );
                    if h.suspect || cfg!(unix) {
                        exclude.push(identity(&copy.meta));
                        let mut candidates = same_scheme(rotated_candidates(path), copy.numbered());
                        // Copies of this file were made while it was at the path, before its
                        // last truncation: none was rotated after the file itself. (A file
                        // rotated after it is held, or found by the path's next look, as its
                        // writer may go on.)
                        let id = h.id();
                        match candidates.iter().find(|c| identity(&c.meta) == id).cloned() {
                            Some(own) => candidates.retain(|c| rotated_after(&own, c)),
                            None => {
                                let mtime = h.file.metadata().and_then(|m| m.modified());
                                let mtime = mtime.unwrap_or(SystemTime::UNIX_EPOCH);
                                candidates.retain(|c| c.age.mtime <= mtime);
                            }
                        }
                        candidates.retain(|c| rotated_after(c, &copy));
                        for next in newer_rotated(path, &candidates, &Age::OLDEST, &exclude) {
                            if is_done(done, &next) {
                                continue;
                            }
                            info!(path = %path.display(), rotated = %next.path.display(),
                                "reading a copy of the log file made after that one (truncated more than once)");
                            let mut head = [0u8; FINGERPRINT_LEN];
                            let n = read_full_at(&next.file, &mut head, 0).unwrap_or(0);
                            feed_file(path, &next.path, &next.file, 0, buf, &mut h.lines, sink);
                            remember(
                                done,
                                Done {
                                    id: identity(&next.meta),
                                    head: head[..n].to_vec(),
                                },
                            );
                        }
                    }
                    // A line cut by the copy (its start in the copy, its end written after the
                    // truncation) is completed by the start of the truncated file.
                }
                None => {
                    warn!(path = %path.display(), offset = old_pos,
                        "log file was truncated and no rotated copy matching it was found (looked for <path>.1, <path>-*, <path>.*): lines written between offset {old_pos} and the truncation may have been lost; continuing from its start");
                    h.lines.reset();
                }
            }
        }
        h.lines.partial = 0;
        h.read_pos = 0;
        h.head.clear();
        h.recent.clear();
        h.suspect = false;
    }
}

/// Read `h` from its offset up to its end (or the byte budget), delivering lines. Stops with
/// [`Drained::Truncated`] when the bytes before the offset are no longer the ones read.
fn drain_file(
    path: &Path,
    h: &mut Held,
    buf: &mut [u8],
    status: &mut Status,
    sink: &mut Sink<'_>,
    budget: &mut u64,
) -> Drained {
    if h.suspect {
        // Resumed from a checkpoint: is the file still the one we read up to the offset?
        match validate(h) {
            Ok(true) => {
                if let Err(e) = h.refresh_signatures() {
                    return read_failed(path, status, &e);
                }
            }
            Ok(false) => return Drained::Truncated,
            Err(e) => return read_failed(path, status, &e),
        }
        h.suspect = false;
    }
    loop {
        if *budget == 0 {
            return Drained::Budget;
        }
        let want = usize::try_from(*budget).map_or(buf.len(), |b| b.min(buf.len()));
        let n = match read_at(&h.file, &mut buf[..want], h.read_pos) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return read_failed(path, status, &e),
        };
        if n == 0 {
            return match h.file.metadata() {
                Ok(meta) if meta.len() < h.read_pos => Drained::Truncated,
                Ok(_) => {
                    // Truncated and regrown to exactly our offset: only the bytes tell (two
                    // small reads per file and poll).
                    match validate(h) {
                        Ok(true) => {}
                        Ok(false) => return Drained::Truncated,
                        Err(e) => return read_failed(path, status, &e),
                    }
                    if set_status(status, Status::Following) {
                        info!(path = %path.display(), "reading log file again");
                    }
                    Drained::Eof
                }
                Err(e) => read_failed(path, status, &e),
            };
        }
        *budget = budget.saturating_sub(n as u64);
        // The chunk is only trusted if the bytes before it are still the ones we read: a
        // file truncated and regrown past our offset since the last read fails this.
        match validate(h) {
            Ok(true) => {}
            Ok(false) => return Drained::Truncated,
            Err(e) => return read_failed(path, status, &e),
        }
        h.absorb(&buf[..n]);
        h.lines.feed(&buf[..n], sink);
    }
}

/// Add `done` to the remembered files, forgetting the oldest beyond [`MAX_DONE`].
fn remember(list: &mut VecDeque<Done>, done: Done) {
    list.retain(|d| d.id != done.id);
    if list.len() >= MAX_DONE {
        list.pop_front();
    }
    list.push_back(done);
}

/// Whether `p` is a file read and let go before (same identity and first bytes: an inode
/// number reused by a new file does not count).
fn is_done(list: &VecDeque<Done>, p: &Pending) -> bool {
    let id = identity(&p.meta);
    list.iter()
        .any(|d| d.id == id && region_matches(&p.file, 0, &d.head).unwrap_or(false))
}

impl std::fmt::Debug for Tailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Tailer");
        d.field("path", &self.path)
            .field("status", &self.status)
            .field("rotation_grace", &self.rotation_grace)
            .field("held", &self.held.len());
        if let Some(h) = self.held.front() {
            d.field("dev", &h.dev)
                .field("inode", &h.ino)
                .field("read_pos", &h.read_pos)
                .field("rotating", &h.rotated_at.is_some());
        }
        d.finish_non_exhaustive()
    }
}

impl Held {
    fn new(
        file: File,
        meta: &Metadata,
        read_pos: u64,
        head: Vec<u8>,
        max_line_bytes: usize,
    ) -> Held {
        let (dev, ino) = identity(meta);
        Held {
            file,
            dev,
            ino,
            read_pos,
            head,
            recent: Vec::with_capacity(FINGERPRINT_LEN),
            lines: LineBuf::new(max_line_bytes),
            last_growth: Instant::now(),
            rotated_at: None,
            writer_gone: false,
            suspect: false,
        }
    }

    fn id(&self) -> (u64, u64) {
        (self.dev, self.ino)
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
fn validate(h: &Held) -> io::Result<bool> {
    if !region_matches(&h.file, 0, &h.head)? {
        return Ok(false);
    }
    let head_covers_recent = h.read_pos <= h.head.len() as u64;
    if !head_covers_recent && !h.recent.is_empty() {
        let at = h.read_pos - h.recent.len() as u64;
        return region_matches(&h.file, at, &h.recent);
    }
    Ok(true)
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
fn find_rotated_copy(path: &Path, cur: &Held) -> Option<(Candidate, File)> {
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
#[derive(Clone)]
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

/// The `candidates` named numbered (`<name>.N`) or not, as `numbered` says: a later rotation
/// names its file the way the earlier one did, so a stale file of the other scheme (say
/// `<name>.1` beside dated copies) is never taken for one.
fn same_scheme(candidates: Vec<Candidate>, numbered: bool) -> Vec<Candidate> {
    candidates
        .into_iter()
        .filter(|c| c.numbered() == numbered)
        .collect()
}

impl Candidate {
    fn numbered(&self) -> bool {
        matches!(self.age.rank, NameRank::Numbered(_))
    }
}

impl Age {
    /// Older than any rotated file (their names have a suffix).
    const OLDEST: Age = Age {
        mtime: SystemTime::UNIX_EPOCH,
        rank: NameRank::Other(Vec::new()),
    };
}

/// Whether `a` was rotated after `b`. Between numbered files by their numbers (logrotate
/// shifts `.N` to `.N+1` before it makes `.1`, so the numbers are the rotation order even
/// when a writer went on writing to an older file after a newer one was made); otherwise by
/// [`Age`].
fn rotated_after(a: &Candidate, b: &Candidate) -> bool {
    match (&a.age.rank, &b.age.rank) {
        (NameRank::Numbered(x), NameRank::Numbered(y)) => x > y,
        _ => a.age > b.age,
    }
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
