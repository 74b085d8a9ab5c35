//! The pieces under the [`Tailer`]: a held file and its fingerprints (first bytes, bytes
//! before the offset), positional reads, opening only regular files, file identity, and
//! splitting bytes into lines ([`LineBuf`]) delivered as `&str` ([`Sink`]), with long
//! lines cut and invalid UTF-8 replaced.

use super::*;

impl Held {
    pub(super) fn new(
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

    pub(super) fn id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// After a checkpoint was found valid: take the full first bytes and the bytes before the
    /// offset from the file (a checkpoint's fingerprint may be shorter; `recent` is not stored).
    pub(super) fn refresh_signatures(&mut self) -> io::Result<()> {
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
    pub(super) fn absorb(&mut self, data: &[u8]) {
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
pub(super) fn validate(h: &Held) -> io::Result<bool> {
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

/// Open `path` if it is a regular file. Checks the type before opening, so that a FIFO put at
/// the path cannot block us in `open`.
pub(super) fn open_regular(path: &Path) -> Result<(File, Metadata), OpenError> {
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
pub(super) fn region_matches(file: &File, pos: u64, expected: &[u8]) -> io::Result<bool> {
    let mut tmp = [0u8; FINGERPRINT_LEN];
    let len = expected.len().min(FINGERPRINT_LEN);
    let n = read_full_at(file, &mut tmp[..len], pos)?;
    Ok(n == expected.len() && tmp[..n] == *expected)
}

/// Read until `buf` is full or end of file; returns the bytes read.
pub(super) fn read_full_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
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
pub(super) fn read_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, pos)
}

#[cfg(not(unix))]
pub(super) fn read_at(mut file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(pos))?;
    file.read(buf)
}

#[cfg(unix)]
pub(super) fn identity(meta: &Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// Without inode numbers a rename rotation cannot be told apart; truncation still can.
#[cfg(not(unix))]
pub(super) fn identity(_meta: &Metadata) -> (u64, u64) {
    (0, 0)
}

/// Where lines go: converts to `&str` and counts.
pub(super) struct Sink<'a> {
    pub(super) on_line: &'a mut dyn FnMut(&str),
    pub(super) lines: usize,
    pub(super) cut: usize,
    /// Lines with invalid UTF-8 and with NUL bytes in this poll (logged once per poll).
    pub(super) invalid_utf8: usize,
    pub(super) nul: usize,
}

impl Sink<'_> {
    pub(super) fn emit(&mut self, line: &[u8]) {
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
    pub(super) fn emit_cut(&mut self, line: &[u8]) {
        self.cut += 1;
        let line = match std::str::from_utf8(line) {
            Err(e) if e.error_len().is_none() => &line[..e.valid_up_to()],
            _ => line,
        };
        self.emit(line);
    }
}

/// Splits bytes into lines, holding an unterminated line until its newline arrives.
pub(super) struct LineBuf {
    pub(super) max: usize,
    /// Start of the current unfinished line, at most `max + 1` bytes (room for a `\r`).
    pub(super) pending: Vec<u8>,
    /// The current line is longer than `pending` can hold; the rest is discarded.
    pub(super) overflow: bool,
    /// Discard up to and including the next newline without delivering anything.
    pub(super) skip: bool,
    /// Bytes of the current unfinished line consumed from the current file.
    pub(super) partial: u64,
}

impl LineBuf {
    pub(super) fn new(max: usize) -> LineBuf {
        LineBuf {
            max,
            pending: Vec::new(),
            overflow: false,
            skip: false,
            partial: 0,
        }
    }

    pub(super) fn cap(&self) -> usize {
        self.max.saturating_add(1)
    }

    pub(super) fn feed(&mut self, mut data: &[u8], sink: &mut Sink<'_>) {
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
    pub(super) fn finish(&mut self, sink: &mut Sink<'_>) {
        if self.overflow {
            sink.emit_cut(&self.pending[..self.max]);
        } else if !self.skip && !self.pending.is_empty() {
            emit_complete(self.max, &self.pending, sink);
        }
        self.reset();
    }

    pub(super) fn reset(&mut self) {
        self.pending.clear();
        self.overflow = false;
        self.skip = false;
        self.partial = 0;
    }
}

pub(super) fn emit_complete(max: usize, line: &[u8], sink: &mut Sink<'_>) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > max {
        sink.emit_cut(&line[..max]);
    } else {
        sink.emit(line);
    }
}
