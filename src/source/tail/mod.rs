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
//!
//! This file holds the [`Tailer`], its state and its public calls ([`Tailer::poll`]);
//! `rotation.rs` opens the path, holds new files and searches rotated siblings; `drain.rs`
//! reads held files and handles truncation; `read.rs` has the held file, positional reads and
//! the line splitter. Tests are in `src/source/tests.rs`.

mod drain;
mod read;
mod rotation;

use super::{Checkpoint, StartAt};
use drain::{is_missing, set_status};
use read::{
    identity, open_regular, read_at, read_full_at, region_matches, validate, LineBuf, Sink,
};
use rotation::{
    find_rotated_copy, is_done, newer_rotated, remember, rotated_after, rotated_candidates,
    same_scheme, Age,
};
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
