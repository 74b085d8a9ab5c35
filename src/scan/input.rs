//! Inputs of `scan` and `explain`: opening a path or `-` (stdin), reading gzip transparently
//! (recognised by its magic bytes, so `mainlog.2.gz` and `zcat`-less pipes both work), the
//! progress bar on stderr for large files, and the line reader of the hot path: one large
//! `BufReader`, one reused byte buffer, lines cut at a maximum length so a file without
//! newlines cannot make us buffer it whole.

use flate2::bufread::MultiGzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;
use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read};
use std::path::Path;

/// Read buffer size: large enough that a read is a few hundred lines.
pub(crate) const READ_BUFFER: usize = 256 * 1024;
/// Files at least this large get a progress bar (when stderr is a terminal).
pub(crate) const PROGRESS_MIN_BYTES: u64 = 16 * 1024 * 1024;

/// One opened input.
pub(crate) struct Input {
    /// The name as given on the command line (`-` for stdin).
    pub name: String,
    pub reader: Box<dyn BufRead>,
    /// The file's modification time: "now" for inferring the year of yearless stamps.
    pub mtime: Option<Timestamp>,
    pub progress: Option<ProgressBar>,
    /// The file and its length when the input is a regular file that is not gzip: it can be
    /// read at offsets, in parallel, instead of through `reader`.
    pub plain: Option<(File, u64)>,
}

impl Input {
    /// Remove the progress bar from the terminal (before printing anything else).
    pub fn clear_progress(&mut self) {
        if let Some(pb) = self.progress.take() {
            pb.finish_and_clear();
        }
    }
}

/// Counts the bytes read (compressed bytes for a `.gz`) into the progress bar.
struct Counting<R> {
    inner: R,
    pb: ProgressBar,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pb.inc(n as u64);
        Ok(n)
    }
}

fn progress_bar(len: u64, name: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "[{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {wide_msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    ProgressBar::new(len)
        .with_style(style)
        .with_message(name.to_string())
}

/// Open `arg` (`-` is stdin). `progress`: whether a progress bar may be shown (it is only
/// shown for files of at least [`PROGRESS_MIN_BYTES`] and when stderr is a terminal).
pub(crate) fn open(arg: &Path, progress: bool) -> io::Result<Input> {
    let name = arg.to_string_lossy().into_owned();
    if arg.as_os_str() == "-" {
        let reader = BufReader::with_capacity(READ_BUFFER, io::stdin());
        return Ok(Input {
            name,
            reader: maybe_gunzip(reader)?,
            mtime: None,
            progress: None,
            plain: None,
        });
    }
    let file = File::open(arg)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::other("is a directory"));
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| Timestamp::try_from(t).ok());
    let plain = if meta.is_file() {
        let mut magic = [0u8; 2];
        let n = std::os::unix::fs::FileExt::read_at(&file, &mut magic, 0)?;
        if magic[..n] == [0x1f, 0x8b] {
            None
        } else {
            Some((file.try_clone()?, meta.len()))
        }
    } else {
        None
    };
    let show = progress
        && meta.is_file()
        && meta.len() >= PROGRESS_MIN_BYTES
        && io::stderr().is_terminal();
    if show {
        let pb = progress_bar(meta.len(), &name);
        let counting = Counting {
            inner: file,
            pb: pb.clone(),
        };
        let reader = BufReader::with_capacity(READ_BUFFER, counting);
        Ok(Input {
            name,
            reader: maybe_gunzip(reader)?,
            mtime,
            progress: Some(pb),
            plain,
        })
    } else {
        let reader = BufReader::with_capacity(READ_BUFFER, file);
        Ok(Input {
            name,
            reader: maybe_gunzip(reader)?,
            mtime,
            progress: None,
            plain,
        })
    }
}

/// Wrap `reader` in a gzip decoder when its first bytes are the gzip magic (1f 8b).
/// Concatenated gzip members (as `cat a.gz b.gz` makes) are all read.
fn maybe_gunzip<R: BufRead + 'static>(mut reader: R) -> io::Result<Box<dyn BufRead>> {
    let head = loop {
        match reader.fill_buf() {
            Ok(b) => break b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            READ_BUFFER,
            MultiGzDecoder::new(reader),
        )))
    } else {
        Ok(Box::new(reader))
    }
}

/// Like `BufRead::read_until(b'\n')`, but keeps at most `max` bytes of the line in `buf` (the
/// rest of a longer line is skipped). Returns the bytes consumed (0 at the end of input).
pub(crate) fn read_line_capped<R: BufRead + ?Sized>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<usize> {
    let mut total = 0;
    loop {
        let (used, done) = {
            let avail = match r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                return Ok(total);
            }
            let (used, done) = match memchr::memchr(b'\n', avail) {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            let room = max.saturating_sub(buf.len());
            buf.extend_from_slice(&avail[..used.min(room)]);
            (used, done)
        };
        r.consume(used);
        total += used;
        if done {
            return Ok(total);
        }
    }
}

/// Why reading lines stopped early.
#[derive(Debug)]
pub(crate) enum Stop<E> {
    /// Reading the input failed after this many complete lines.
    Read { after_line: u64, error: io::Error },
    /// The per-line callback asked to stop.
    Callback(E),
}

/// Call `f(line_number, line)` for every line of `r` (1-based numbers; the newline and a
/// trailing CR removed; invalid UTF-8 replaced, which allocates only for such lines).
/// Returns the number of lines.
pub(crate) fn for_each_line<R: BufRead + ?Sized, E>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max_line_bytes: usize,
    mut f: impl FnMut(u64, &str) -> Result<(), E>,
) -> Result<u64, Stop<E>> {
    let mut n: u64 = 0;
    loop {
        buf.clear();
        match read_line_capped(r, buf, max_line_bytes) {
            Ok(0) => return Ok(n),
            Ok(_) => {}
            Err(error) => {
                return Err(Stop::Read {
                    after_line: n,
                    error,
                })
            }
        }
        n += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        let line = match std::str::from_utf8(buf) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(buf),
        };
        f(n, &line).map_err(Stop::Callback)?;
    }
}

#[cfg(test)]
#[path = "input_tests.rs"]
mod tests;
