//! Lines from standard input (`authwatch run --stdin`, `scan -`), or from any other reader.
//!
//! A [`StdinSource`] reads in a thread of its own (a blocking `read` cannot be polled), so it
//! has the same contract as the file tailer: [`StdinSource::poll`] hands out the complete lines
//! read so far and returns at once. Invalid UTF-8 is kept as replacement characters, lines longer
//! than `max_line_bytes` are cut (a multi-byte character the cut would split is left out) and
//! counted, `"\r\n"` ends a line like `"\n"`, and an unterminated last line is delivered at end of
//! input. End of input (or a read error, which is logged and ends the input too) is reported by
//! [`StdinSource::is_done`] once every line before it has been delivered.
//!
//! There is nothing to checkpoint: a pipe cannot be re-read after a restart.
//!
//! The helpers [`read_line_bounded`] and [`lossy_line`] are shared with the journal source.

use memchr::memchr;
use std::io::{self, BufRead, BufReader, ErrorKind, Read};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::Duration;
use tracing::{debug, warn};

/// Lines buffered between the reading thread and [`StdinSource::poll`]; when full, the thread
/// waits (and so does the writer of the pipe): memory stays bounded.
const CHANNEL_LINES: usize = 4096;

/// A poll returns after this many lines even if more are waiting (the caller may poll again at
/// once; [`StdinSource::caught_up`] says `false` then).
pub const MAX_LINES_PER_POLL: usize = 16_384;

/// Buffer size of the reading thread.
const READ_BUF_LEN: usize = 64 * 1024;

enum Msg {
    Line { text: String, cut: bool },
    Eof,
    Error(String),
}

/// Follows standard input (or any reader) line by line; see the [module docs](self).
pub struct StdinSource {
    rx: Receiver<Msg>,
    max_line_bytes: usize,
    done: bool,
    error: Option<String>,
    lines: u64,
    cut_lines: u64,
    caught_up: bool,
}

impl StdinSource {
    /// Read this process's standard input. Fails only if the reading thread cannot be started.
    pub fn stdin(max_line_bytes: usize) -> io::Result<StdinSource> {
        StdinSource::from_reader(io::stdin(), max_line_bytes)
    }

    /// Read `reader` to its end in a new thread. `max_line_bytes` (at least 1): longer lines are
    /// cut to this many bytes, the rest up to the newline is discarded.
    ///
    /// The thread ends at end of input, on a read error, or when the source is dropped and the
    /// thread next has a line to hand over; a thread blocked in `read` (a pipe nobody writes to)
    /// stays blocked until its input ends, it holds nothing but the reader.
    pub fn from_reader<R: Read + Send + 'static>(
        reader: R,
        max_line_bytes: usize,
    ) -> io::Result<StdinSource> {
        let max_line_bytes = max_line_bytes.max(1);
        let (tx, rx) = sync_channel(CHANNEL_LINES);
        std::thread::Builder::new()
            .name("stdin-reader".into())
            .spawn(move || read_all(reader, max_line_bytes, tx))?;
        Ok(StdinSource {
            rx,
            max_line_bytes,
            done: false,
            error: None,
            lines: 0,
            cut_lines: 0,
            caught_up: true,
        })
    }

    /// Hand every complete line read so far to `on_line` (without its `"\n"` or `"\r\n"`), at
    /// most [`MAX_LINES_PER_POLL`]; returns at once. Returns the number of lines delivered.
    pub fn poll(&mut self, on_line: &mut dyn FnMut(&str)) -> usize {
        self.poll_inner(None, on_line)
    }

    /// Like [`StdinSource::poll`], but when no line is ready, waits up to `timeout` for one
    /// (returns early at end of input).
    pub fn poll_timeout(&mut self, timeout: Duration, on_line: &mut dyn FnMut(&str)) -> usize {
        self.poll_inner(Some(timeout), on_line)
    }

    fn poll_inner(&mut self, mut wait: Option<Duration>, on_line: &mut dyn FnMut(&str)) -> usize {
        let mut delivered = 0;
        let mut cut = 0;
        self.caught_up = true;
        while !self.done {
            if delivered >= MAX_LINES_PER_POLL {
                self.caught_up = false;
                break;
            }
            let msg = match wait.take() {
                Some(t) => match self.rx.recv_timeout(t) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => Msg::Eof,
                },
                None => match self.rx.try_recv() {
                    Ok(m) => m,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => Msg::Eof,
                },
            };
            match msg {
                Msg::Line { text, cut: was_cut } => {
                    on_line(&text);
                    delivered += 1;
                    cut += usize::from(was_cut);
                }
                Msg::Eof => {
                    self.done = true;
                    debug!(
                        lines = self.lines + delivered as u64,
                        "end of standard input"
                    );
                }
                Msg::Error(e) => {
                    warn!(error = %e, "cannot read standard input; treating it as ended");
                    self.error = Some(e);
                    self.done = true;
                }
            }
        }
        if cut > 0 {
            warn!(
                lines = cut,
                max_line_bytes = self.max_line_bytes,
                "cut over-long input lines to max_line_bytes"
            );
        }
        self.lines += delivered as u64;
        self.cut_lines += cut as u64;
        delivered
    }

    /// Whether the input has ended (end of file, or a read error) and every line was delivered.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The read error that ended the input, if it did not end normally.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Whether the last poll handed out everything that was ready (`false`: it stopped at
    /// [`MAX_LINES_PER_POLL`] and the caller may poll again at once).
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// Lines delivered so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Lines cut to `max_line_bytes` so far.
    pub fn cut_lines(&self) -> u64 {
        self.cut_lines
    }
}

impl std::fmt::Debug for StdinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdinSource")
            .field("done", &self.done)
            .field("lines", &self.lines)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

fn read_all<R: Read>(reader: R, max_line_bytes: usize, tx: SyncSender<Msg>) {
    let mut r = BufReader::with_capacity(READ_BUF_LEN, reader);
    let mut buf = Vec::new();
    loop {
        let msg = match read_line_bounded(&mut r, &mut buf, max_line_bytes) {
            Ok(Some(was_cut)) => {
                let (text, cut_here) = lossy_line(&buf, max_line_bytes);
                Msg::Line {
                    text,
                    cut: was_cut || cut_here,
                }
            }
            Ok(None) => Msg::Eof,
            Err(e) => Msg::Error(e.to_string()),
        };
        let last = !matches!(msg, Msg::Line { .. });
        if tx.send(msg).is_err() || last {
            return;
        }
    }
}

/// Reads one line into `buf` (cleared first): the bytes up to `"\n"`, without it and without a
/// `"\r"` just before it. At most `max + 1` bytes are kept, the rest of a longer line is read and
/// discarded. Returns `Ok(None)` at end of input with nothing read, otherwise `Ok(Some(cut))`,
/// `cut` saying whether bytes were discarded (the caller still cuts `buf` to `max`, see
/// [`lossy_line`]). An unterminated last line is returned as a line.
pub(crate) fn read_line_bounded<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<bool>> {
    buf.clear();
    let keep = max.saturating_add(1);
    let mut any = false;
    let mut discarded = false;
    let mut terminated = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            break;
        }
        any = true;
        let (chunk, used) = match memchr(b'\n', avail) {
            Some(i) => (&avail[..i], i + 1),
            None => (avail, avail.len()),
        };
        let room = keep - buf.len().min(keep);
        if chunk.len() > room {
            discarded = true;
            buf.extend_from_slice(&chunk[..room]);
        } else {
            buf.extend_from_slice(chunk);
        }
        terminated = used > chunk.len();
        r.consume(used);
        if terminated {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if terminated && !discarded && buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(discarded))
}

/// `bytes` as text: invalid UTF-8 becomes U+FFFD, and the result is cut to at most `max` bytes
/// on a character boundary (a character that a cut of the raw bytes would split is left out).
/// Returns the text and whether it was cut.
pub(crate) fn lossy_line(bytes: &[u8], max: usize) -> (String, bool) {
    let mut cut = false;
    let mut b = bytes;
    if b.len() > max {
        cut = true;
        b = trim_partial_char(&b[..max]);
    }
    let mut text = String::from_utf8_lossy(b).into_owned();
    cut |= truncate_at_boundary(&mut text, max);
    (text, cut)
}

/// Cut `s` to at most `max` bytes on a character boundary; whether it was cut.
pub(crate) fn truncate_at_boundary(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}

/// `b` without a UTF-8 sequence that is incomplete at its end (the start of a multi-byte
/// character whose continuation bytes were cut off).
fn trim_partial_char(b: &[u8]) -> &[u8] {
    // Walk back over at most 3 continuation bytes to the lead byte.
    let mut i = b.len();
    let mut cont = 0;
    while i > 0 && cont < 3 && b[i - 1] & 0b1100_0000 == 0b1000_0000 {
        i -= 1;
        cont += 1;
    }
    if i == 0 {
        return b;
    }
    let lead = b[i - 1];
    let want = match lead {
        0xC0..=0xDF => 1,
        0xE0..=0xEF => 2,
        0xF0..=0xF7 => 3,
        _ => return b,
    };
    if cont < want {
        &b[..i - 1]
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::time::Instant;

    fn collect(src: &mut StdinSource) -> Vec<String> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !src.is_done() {
            assert!(Instant::now() < deadline, "no end of input");
            src.poll_timeout(Duration::from_millis(100), &mut |l| out.push(l.to_string()));
        }
        out
    }

    #[test]
    fn lines_crlf_lossy_unterminated_last_line_and_eof() {
        let input = b"one\r\ntwo\n\nbad \xff byte\nlast without newline".to_vec();
        let mut src = StdinSource::from_reader(Cursor::new(input), 100).unwrap();
        assert_eq!(
            collect(&mut src),
            vec![
                "one",
                "two",
                "",
                "bad \u{FFFD} byte",
                "last without newline"
            ]
        );
        assert!(src.is_done());
        assert_eq!(src.error(), None);
        assert_eq!(src.lines(), 5);
        // Polls after the end deliver nothing and stay done.
        assert_eq!(src.poll(&mut |_| panic!("no more lines")), 0);
        assert!(src.is_done());
    }

    #[test]
    fn empty_input_is_done_without_lines() {
        let mut src = StdinSource::from_reader(Cursor::new(Vec::new()), 10).unwrap();
        assert!(collect(&mut src).is_empty());
    }

    #[test]
    fn long_lines_are_cut_on_char_boundaries_and_counted() {
        // "é" is two bytes: a cut after 5 bytes would split the third one.
        let input = "ééééé\nabcdefgh\r\nabcde\r\nok\n".as_bytes().to_vec();
        let mut src = StdinSource::from_reader(Cursor::new(input), 5).unwrap();
        assert_eq!(collect(&mut src), vec!["éé", "abcde", "abcde", "ok"]);
        assert_eq!(src.cut_lines(), 2);
    }

    #[test]
    fn huge_line_in_small_reads_keeps_memory_bounded() {
        struct Trickle {
            left: usize,
        }
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.left == 0 {
                    return Ok(0);
                }
                let n = buf.len().min(self.left).min(7);
                buf[..n].fill(b'x');
                self.left -= n;
                if self.left == 0 {
                    buf[n - 1] = b'\n';
                }
                Ok(n)
            }
        }
        let mut r = BufReader::with_capacity(16, Trickle { left: 100_000 });
        let mut buf = Vec::new();
        assert_eq!(read_line_bounded(&mut r, &mut buf, 10).unwrap(), Some(true));
        assert_eq!(buf.len(), 11);
        assert_eq!(read_line_bounded(&mut r, &mut buf, 10).unwrap(), None);
    }

    #[test]
    fn read_error_ends_the_input_and_is_reported() {
        struct Failing(bool);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if std::mem::replace(&mut self.0, true) {
                    return Err(io::Error::other("device gone"));
                }
                buf[..6].copy_from_slice(b"a\nb\nc\n");
                Ok(6)
            }
        }
        let mut src = StdinSource::from_reader(Failing(false), 100).unwrap();
        assert_eq!(collect(&mut src), vec!["a", "b", "c"]);
        assert_eq!(src.error(), Some("device gone"));
    }

    #[test]
    fn partial_chars_are_trimmed() {
        assert_eq!(trim_partial_char(b"ab\xc3"), b"ab");
        assert_eq!(trim_partial_char(b"ab\xc3\xa9"), b"ab\xc3\xa9");
        assert_eq!(trim_partial_char(b"\xe2\x82"), b"");
        assert_eq!(trim_partial_char(b"\xf0\x9f\x98"), b"");
        assert_eq!(trim_partial_char(b"a\xff"), b"a\xff");
        let (s, cut) = lossy_line("aé".as_bytes(), 2);
        assert_eq!((s.as_str(), cut), ("a", true));
        // Replacement characters take 3 bytes: the text is still cut to the limit.
        let (s, cut) = lossy_line(b"\xff\xff", 4);
        assert_eq!((s.as_str(), cut), ("\u{FFFD}", true));
    }

    #[test]
    fn polls_are_capped() {
        let input = "x\n".repeat(MAX_LINES_PER_POLL + 10).into_bytes();
        let mut src = StdinSource::from_reader(Cursor::new(input), 10).unwrap();
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !src.is_done() {
            assert!(Instant::now() < deadline);
            let got = src.poll_timeout(Duration::from_millis(50), &mut |_| {});
            assert!(got <= MAX_LINES_PER_POLL);
            assert_eq!(src.caught_up(), got < MAX_LINES_PER_POLL);
            n += got;
        }
        assert_eq!(n, MAX_LINES_PER_POLL + 10);
    }
}
