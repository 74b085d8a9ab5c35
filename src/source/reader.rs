//! Reading one configured source in a thread of its own: [`Reader`] wraps the file
//! [`Tailer`], the [`JournalSource`] and the [`StdinSource`] behind one poll interface, and
//! [`spawn_reader`] runs it on its own thread, handing the lines to the agent in [`Batch`]es
//! (at most [`MAX_BATCH_BYTES`] of text each) together with the [`Position`] to save after
//! them, the source's current problem (for health alerts), and whether it has ended. The
//! channel is bounded, so a slow consumer slows the reader instead of filling memory.

use super::journal::{JournalArgs, JournalSource};
use super::stdin::StdinSource;
use super::{Checkpoint, LineBatch, StartAt, Tailer};
use crate::config::{SourceConfig, SourceKind, Start};
use anyhow::{Context, Result};
use jiff::tz::TimeZone;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::info;

/// A file source hands over what it read after at most this many bytes, so that the engine works
/// on lines while more are read, a batch's alerts are spooled (and sent) without waiting for a
/// whole backlog, and a catch-up never holds the backlog in memory (the channel holds at most
/// 64 batches). The journal and stdin sources cap their batches by lines.
pub const MAX_BATCH_BYTES: u64 = 1 << 20;

/// Where a source stands: what is saved in `state.json` so a restart continues there.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Position {
    /// Nothing to save (stdin, or nothing read yet).
    #[default]
    None,
    File(Checkpoint),
    /// A journal entry's `__CURSOR`.
    Cursor(String),
}

/// A batch of lines from one source, and where the source stands after them.
pub struct Batch {
    /// The source's index in the configured list.
    pub source: usize,
    pub lines: LineBatch,
    pub position: Position,
    /// Why the source cannot be read right now, if it cannot.
    pub problem: Option<String>,
    /// The source has ended (end of standard input) and sends nothing more.
    pub done: bool,
    /// This batch read up to what the source holds now (it is not catching up): its lag is 0,
    /// however old its last line's stamp.
    pub caught_up: bool,
}

/// A source being read: a file, the journal or standard input.
pub enum Reader {
    File(Tailer),
    Journal(Box<JournalSource>),
    Stdin(StdinSource),
}

impl Reader {
    /// Open the source `s`, continuing from `resume` where that was saved. Lines longer than
    /// `max_line_bytes` are cut; journal stamps are written in `time_zone`.
    pub fn open(
        s: &SourceConfig,
        resume: Position,
        max_line_bytes: usize,
        time_zone: &TimeZone,
    ) -> Result<Reader> {
        let start = match s.start {
            Start::Beginning => StartAt::Beginning,
            Start::End => StartAt::End,
        };
        let max = max_line_bytes;
        Ok(match &s.kind {
            SourceKind::File(path) => {
                let mut tailer = match resume {
                    Position::File(cp) => {
                        info!(path = %path.display(), offset = cp.offset, "resuming from the saved checkpoint");
                        Tailer::resume(path.clone(), cp, max)
                    }
                    _ => Tailer::new(path.clone(), start, max),
                };
                tailer.set_max_bytes_per_poll(MAX_BATCH_BYTES);
                Reader::File(tailer)
            }
            SourceKind::Journal(j) => {
                let cursor = match resume {
                    Position::Cursor(c) => {
                        info!(source = %s.name(), "resuming the journal after the saved cursor");
                        Some(c)
                    }
                    _ => None,
                };
                let args = JournalArgs {
                    binary: j.journalctl.clone(),
                    files: j.files.clone(),
                    directory: j.directory.clone(),
                    start,
                    max_line_bytes: max,
                    time_zone: time_zone.clone(),
                    ..JournalArgs::default()
                };
                Reader::Journal(Box::new(JournalSource::new(j.units.clone(), cursor, args)))
            }
            SourceKind::Stdin => Reader::Stdin(
                StdinSource::stdin(max).context("starting the thread that reads stdin")?,
            ),
        })
    }

    /// Hand the lines ready now to `on_line`; the journal and stdin wait up to `wait` for the
    /// first one. Returns whether more are ready at once (the caller should not sleep).
    pub fn poll(&mut self, wait: Duration, on_line: &mut dyn FnMut(&str)) -> bool {
        match self {
            Reader::File(t) => {
                t.poll(on_line);
                !t.caught_up()
            }
            Reader::Journal(j) => {
                j.poll_timeout(wait, on_line);
                !j.caught_up()
            }
            Reader::Stdin(i) => {
                i.poll_timeout(wait, on_line);
                !i.caught_up()
            }
        }
    }

    pub fn position(&self) -> Position {
        match self {
            Reader::File(t) => t.checkpoint().map_or(Position::None, Position::File),
            Reader::Journal(j) => j.cursor().map_or(Position::None, Position::Cursor),
            Reader::Stdin(_) => Position::None,
        }
    }

    /// What keeps the source from being read, in words that stay the same while the problem
    /// lasts (health alerts time it).
    pub fn problem(&self) -> Option<String> {
        match self {
            Reader::File(t) => t.problem(),
            Reader::Journal(j) => {
                let h = j.health();
                if !h.running {
                    Some(
                        h.last_error
                            .unwrap_or_else(|| "journalctl is not running".to_string()),
                    )
                } else {
                    h.stderr_tail
                        .last()
                        .map(|l| format!("journalctl reports: {l}"))
                }
            }
            Reader::Stdin(i) => i.error().map(|e| format!("reading stdin failed: {e}")),
        }
    }

    /// Whether the source has ended for good (only stdin ends).
    pub fn done(&self) -> bool {
        matches!(self, Reader::Stdin(i) if i.is_done())
    }

    /// The thread that polls a file sleeps between polls; the others wait inside `poll`.
    pub fn sleeps(&self) -> bool {
        matches!(self, Reader::File(_))
    }
}

/// Read one source in a thread of its own and send its lines to the engine in batches.
pub fn spawn_reader(
    idx: usize,
    mut reader: Reader,
    poll: Duration,
    stop: Arc<AtomicBool>,
    tx: mpsc::Sender<Batch>,
) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("source-{idx}"))
        .spawn(move || {
            let mut last_pos = Position::None;
            let mut last_problem = None;
            loop {
                let stopping = stop.load(Ordering::SeqCst);
                let mut lines = LineBatch::default();
                let more = reader.poll(poll, &mut |l| lines.push(l));
                let position = reader.position();
                let problem = reader.problem();
                let done = reader.done();
                if (!lines.is_empty() || position != last_pos || problem != last_problem || done)
                    && tx
                        .blocking_send(Batch {
                            source: idx,
                            lines,
                            position: position.clone(),
                            problem: problem.clone(),
                            done,
                            caught_up: !more,
                        })
                        .is_err()
                {
                    return;
                }
                last_pos = position;
                last_problem = problem;
                if stopping || done {
                    return;
                }
                // Catching up (the poll stopped at its cap): read on at once.
                if !more && reader.sleeps() {
                    std::thread::sleep(poll);
                }
            }
        })
        .context("starting a source thread")
}
