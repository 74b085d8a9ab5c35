//! Finding and following rotations for the [`Tailer`]: opening the path, holding each new
//! file that appears at it and letting old ones go after their grace, remembering files
//! read and let go, and searching the rotated siblings (`<name>.1`, `<name>-20261123`, …)
//! for a file rotated away between two polls or for the rotated copy of a truncated file.

use super::*;

impl Tailer {
    /// Open the path and hold it, read from its beginning (a file that appears is new). Logs
    /// once per change.
    pub(super) fn open_path(&mut self, sink: &mut Sink<'_>) -> bool {
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
    pub(super) fn hold(&mut self, held: Held, sink: &mut Sink<'_>) {
        if self.held.len() >= MAX_HELD_FILES {
            warn!(path = %self.path.display(), max = MAX_HELD_FILES,
                "log file rotated more often than the rotation grace allows to follow; letting the oldest rotated file go early (lines written to it from now on are not read)");
            self.let_go(0, sink, "let go of the oldest rotated log file");
        }
        self.held.push_back(held);
    }

    /// Finish the held file `i` (its unterminated last line is final now) and forget it.
    pub(super) fn let_go(&mut self, i: usize, sink: &mut Sink<'_>, what: &str) {
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
    pub(super) fn let_go_quiet(&mut self, sink: &mut Sink<'_>) {
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
    pub(super) fn look_at_path(&mut self, sink: &mut Sink<'_>) {
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
    pub(super) fn mark_rotated(&mut self, why: &str) {
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
    pub(super) fn unseen_rotated(&self, path_id: (u64, u64), since: SystemTime) -> Vec<Pending> {
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

    pub(super) fn report_following(&mut self, whence: &str) {
        self.status = Status::Following;
        let offset = self.held.back().map_or(0, |h| h.read_pos);
        info!(path = %self.path.display(), offset, "following log file {whence}");
    }

    /// Position a freshly opened file at the start of its unterminated last line (so that a line
    /// being written now is delivered whole), or at its end.
    pub(super) fn position_at_end(&mut self, file: File, meta: &Metadata) -> io::Result<()> {
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
}

/// Add `done` to the remembered files, forgetting the oldest beyond [`MAX_DONE`].
pub(super) fn remember(list: &mut VecDeque<Done>, done: Done) {
    list.retain(|d| d.id != done.id);
    if list.len() >= MAX_DONE {
        list.pop_front();
    }
    list.push_back(done);
}

/// Whether `p` is a file read and let go before (same identity and first bytes: an inode
/// number reused by a new file does not count).
pub(super) fn is_done(list: &VecDeque<Done>, p: &Pending) -> bool {
    let id = identity(&p.meta);
    list.iter()
        .any(|d| d.id == id && region_matches(&p.file, 0, &d.head).unwrap_or(false))
}

/// The newest rotated sibling whose content up to our offset is the content we read.
pub(super) fn find_rotated_copy(path: &Path, cur: &Held) -> Option<(Candidate, File)> {
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
pub(super) struct Candidate {
    pub(super) path: PathBuf,
    pub(super) meta: Metadata,
    pub(super) age: Age,
    /// Named the way logrotate names rotated logs: `<name>.N` or `<name>-*`.
    pub(super) rotation_name: bool,
}

/// Where a rotated file stands in rotation order: older compares less. By modification time;
/// between equal times (a coarse clock, rotations in quick succession) by name: `<name>.2` is
/// older than `<name>.1`, other suffixes (dates) compare as text, numbered ones last.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Age {
    pub(super) mtime: SystemTime,
    pub(super) rank: NameRank,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum NameRank {
    Other(Vec<u8>),
    Numbered(Reverse<u64>),
}

/// The `candidates` named numbered (`<name>.N`) or not, as `numbered` says: a later rotation
/// names its file the way the earlier one did, so a stale file of the other scheme (say
/// `<name>.1` beside dated copies) is never taken for one.
pub(super) fn same_scheme(candidates: Vec<Candidate>, numbered: bool) -> Vec<Candidate> {
    candidates
        .into_iter()
        .filter(|c| c.numbered() == numbered)
        .collect()
}

impl Candidate {
    pub(super) fn numbered(&self) -> bool {
        matches!(self.age.rank, NameRank::Numbered(_))
    }
}

impl Age {
    /// Older than any rotated file (their names have a suffix).
    pub(super) const OLDEST: Age = Age {
        mtime: SystemTime::UNIX_EPOCH,
        rank: NameRank::Other(Vec::new()),
    };
}

/// Whether `a` was rotated after `b`. Between numbered files by their numbers (logrotate
/// shifts `.N` to `.N+1` before it makes `.1`, so the numbers are the rotation order even
/// when a writer went on writing to an older file after a newer one was made); otherwise by
/// [`Age`].
pub(super) fn rotated_after(a: &Candidate, b: &Candidate) -> bool {
    match (&a.age.rank, &b.age.rank) {
        (NameRank::Numbered(x), NameRank::Numbered(y)) => x > y,
        _ => a.age > b.age,
    }
}

/// Regular, uncompressed files named `<name>.*` or `<name>-*` beside `path`, newest first
/// (see [`Age`]), at most [`MAX_CANDIDATES`].
pub(super) fn rotated_candidates(path: &Path) -> Vec<Candidate> {
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
pub(super) fn newer_rotated(
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
