//! Reading held files for the [`Tailer`]: draining a file from its offset to its end (or
//! the poll's byte budget), checking before and after each chunk that the bytes before the
//! offset are still those read, handling a truncation (the lost tail read from the rotated
//! copy), and reporting read problems once.

use super::*;

impl Tailer {
    /// Read the held file `i` up to its end (or the byte budget), delivering lines; a
    /// truncation found on the way is handled (`Drained::Truncated` is never returned).
    pub(super) fn drain(&mut self, i: usize, sink: &mut Sink<'_>, budget: &mut u64) -> Drained {
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
    pub(super) fn on_truncation(&mut self, i: usize, sink: &mut Sink<'_>) {
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
pub(super) fn drain_file(
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

/// Feed a rotated file's bytes from `pos` to its end into `lines` (no line is finished: the
/// bytes continue in the next file).
pub(super) fn feed_file(
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

pub(super) fn read_failed(path: &Path, status: &mut Status, e: &io::Error) -> Drained {
    if set_status(status, Status::ReadFailed(e.kind())) {
        warn!(path = %path.display(), error = %e, "cannot read log file; retrying on every poll");
    }
    Drained::Failed
}

/// Returns whether the status changed (and so should be logged).
pub(super) fn set_status(status: &mut Status, new: Status) -> bool {
    if *status == new {
        false
    } else {
        *status = new;
        true
    }
}

pub(super) fn is_missing(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}
