//! The detectors on disk: generations and their journals, and the [`Checkpointer`] that writes
//! them at every checkpoint.
//!
//! A generation `G` is a full snapshot, `detectors-G.json` (temp file, fsync, rename), plus an
//! append-only journal, `detectors-G.journal`: one line per checkpoint with the keys changed
//! and forgotten since the previous one (`detect::wire` delta layout). A line is fsynced before
//! the `state.json` that names the journal's new length, so a state never names bytes that are
//! not on disk; bytes after the named length (a crash between the two) are ignored on load and
//! cut off when the journal continues. A torn last line is ignored with a warning.
//!
//! At each checkpoint the checkpointer writes a delta while the journal plus the estimated
//! delta stays within the snapshot's size (at least [`MIN_COMPACT_BYTES`]) and the delta is
//! under half of that; beyond, or after a failed write, a reload, or a start from an older
//! state, it writes a new generation.
//! After a new generation is named by `state.json`, the generations named neither by
//! `state.json` nor by `state.json.1` (the previous save, kept for corruption recovery) are
//! deleted.

use super::private::{create_private, open_private_append};
use super::{save, set_aside, sync_dir, CursorState, Detectors, DetectorsView, Saving};
use super::{DetectorFiles, SourceState, BACKUP, FILE, STATE_VERSION};
use crate::detect::{Delta, DeltaView};
use crate::policy::PolicyState;
use ipnet::IpNet;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use tracing::{debug, warn};

/// Journals smaller than this are never compacted, whatever the snapshot's size: a small state
/// (a few thousand keys) would otherwise get a new generation every few checkpoints, while
/// replaying 1 MiB of deltas at load takes a few milliseconds. Above it, the journal is kept
/// within one snapshot's size, so a load reads at most about twice the snapshot.
pub const MIN_COMPACT_BYTES: u64 = 1 << 20;

/// Bytes per key assumed for the delta estimate before any snapshot was measured (a key with a
/// few accounts and quoted lines in the `detect::wire` layout is 100 to 400 bytes).
const KEY_BYTES_GUESS: u64 = 300;

const PREFIX: &str = "detectors-";

fn snapshot_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{generation}.json"))
}

fn journal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{generation}.journal"))
}

/// The generation a detector file belongs to (`detectors-G.json`, `detectors-G.journal`, and
/// the snapshot's temp file), if the name is one.
fn generation_of(name: &str) -> Option<u64> {
    let rest = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".json.tmp"))
        .and_then(|n| n.strip_prefix(PREFIX))
        .or_else(|| {
            let n = name.strip_prefix(PREFIX)?;
            n.strip_suffix(".json")
                .or_else(|| n.strip_suffix(".journal"))
        })?;
    rest.parse().ok()
}

/// One journal line: the delta of each detector (an absent detector has none).
#[derive(Debug, Clone, Deserialize)]
pub struct DetectorsDelta {
    #[serde(default)]
    pub ips: Option<Delta<IpAddr>>,
    #[serde(default)]
    pub subnets: Option<Delta<IpNet>>,
    #[serde(default)]
    pub accounts: Option<Delta<String>>,
}

/// One journal line, serialized from the live detectors; writing it marks their keys written.
pub struct DetectorsDeltaView<'a> {
    pub ips: DeltaView<'a, IpAddr>,
    pub subnets: Option<DeltaView<'a, IpNet>>,
    pub accounts: Option<DeltaView<'a, String>>,
}

impl Serialize for DetectorsDeltaView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("ips", &self.ips)?;
        if let Some(v) = &self.subnets {
            m.serialize_entry("subnets", v)?;
        }
        if let Some(v) = &self.accounts {
            m.serialize_entry("accounts", v)?;
        }
        m.end()
    }
}

/// What the checkpointer needs from the engine: the detectors as a snapshot or as a delta, and
/// the policy saved beside them.
pub trait Checkpointed {
    /// Every detector in full (a generation's snapshot).
    fn full(&self) -> DetectorsView<'_>;
    /// What changed since the last delta or snapshot; writing it marks those keys written.
    fn delta(&self) -> DetectorsDeltaView<'_>;
    /// Keys the next delta would hold (changed or forgotten), for its size estimate.
    fn pending_keys(&self) -> usize;
    /// Keys a snapshot written now would hold, in all detectors (for the bytes per key).
    fn snapshot_keys(&self) -> usize;
    /// A snapshot was written: nothing is pending.
    fn mark_written(&mut self);
    fn policy(&self) -> &PolicyState;
}

/// What a checkpoint wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// A new generation (full snapshot) rather than a journal line.
    pub full: bool,
    /// Bytes of detector files written (the snapshot or the journal line).
    pub detector_bytes: u64,
    /// Bytes of `state.json` written.
    pub state_bytes: u64,
}

/// Writes the checkpoints: chooses between a journal line and a new generation, writes
/// `state.json` naming them, and prunes old generations.
#[derive(Debug, Default)]
pub struct Checkpointer {
    /// The current generation (0: none yet).
    generation: u64,
    /// The current journal, open for appending (opened at the first delta).
    journal: Option<File>,
    /// Bytes in the current journal that are on disk (fsynced).
    journal_bytes: u64,
    /// On the first open of a resumed journal: cut it to this length (the bytes the loaded
    /// state named; more would belong to a state never saved).
    cut_to: Option<u64>,
    /// Size of the current generation's snapshot, and the keys it holds.
    snapshot_bytes: u64,
    snapshot_keys: u64,
    /// The next checkpoint writes a new generation.
    need_full: bool,
    /// The save after a new generation prunes again: by then `state.json.1` names the new
    /// generation too, and the one before it can go.
    prune_next: bool,
}

impl Checkpointer {
    /// A checkpointer that continues the generation named by the loaded state (when it was
    /// loaded without trouble), or starts a new one at its first checkpoint.
    pub fn resume(state_dir: &Path, loaded: &super::Loaded) -> Self {
        let newest = newest_generation(state_dir);
        let files = match (&loaded.state, &loaded.problem) {
            (Some(st), None) => st.files,
            _ => None,
        };
        match files {
            Some(f) => Checkpointer {
                generation: f.generation,
                journal_bytes: f.journal_bytes,
                cut_to: Some(f.journal_bytes),
                snapshot_bytes: std::fs::metadata(snapshot_path(state_dir, f.generation))
                    .map(|m| m.len())
                    .unwrap_or(0),
                snapshot_keys: loaded.state.as_ref().map_or(0, |s| s.detector.len() as u64),
                ..Checkpointer::default()
            },
            None => Checkpointer {
                generation: newest,
                need_full: true,
                ..Checkpointer::default()
            },
        }
    }

    /// The next checkpoint writes a full generation (for example after a reload replaced the
    /// detectors: their changes since the last checkpoint are no longer marked).
    pub fn force_full(&mut self) {
        self.need_full = true;
    }

    /// Save a checkpoint: the detectors (a journal line or a new generation), then
    /// `state.json` naming them with the sources' positions and the policy.
    pub fn checkpoint(
        &mut self,
        state_dir: &Path,
        sources: Vec<SourceState>,
        cursors: Vec<CursorState>,
        det: &mut dyn Checkpointed,
    ) -> std::io::Result<Written> {
        super::create_private_dir(state_dir)?;
        let full = self.need_full || self.generation == 0 || {
            let per_key = match self.snapshot_keys {
                0 => KEY_BYTES_GUESS,
                n => (self.snapshot_bytes / n).max(1),
            };
            let estimate = per_key.saturating_mul(det.pending_keys() as u64);
            let limit = self.snapshot_bytes.max(MIN_COMPACT_BYTES);
            // A delta of half a snapshot or more saves little over the snapshot, and would
            // make the next checkpoint compact anyway (a burst that replaces most keys).
            self.journal_bytes.saturating_add(estimate) > limit
                || estimate.saturating_mul(2) > limit
        };
        let detector_bytes = if full {
            self.write_generation(state_dir, det)?
        } else {
            self.append(state_dir, det)?
        };
        let files = DetectorFiles {
            generation: self.generation,
            journal_bytes: self.journal_bytes,
        };
        let state_bytes = save(
            state_dir,
            &Saving {
                version: STATE_VERSION,
                sources,
                cursors,
                detectors: files,
                policy: det.policy(),
            },
        )?;
        if full || self.prune_next {
            prune(state_dir, self.generation);
            self.prune_next = full;
        }
        debug!(
            full,
            detector_bytes,
            state_bytes,
            generation = self.generation,
            "checkpoint written"
        );
        Ok(Written {
            full,
            detector_bytes,
            state_bytes,
        })
    }

    /// Write a new generation's snapshot; returns its size.
    fn write_generation(&mut self, dir: &Path, det: &mut dyn Checkpointed) -> std::io::Result<u64> {
        let generation = self.generation + 1;
        let path = snapshot_path(dir, generation);
        let tmp = dir.join(format!(".{PREFIX}{generation}.json.tmp"));
        let file = create_private(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, file);
        serde_json::to_writer(&mut w, &det.full()).map_err(std::io::Error::other)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        let bytes = file.metadata()?.len();
        file.sync_all()?;
        drop(file);
        // A journal left by an earlier run under this number is not this snapshot's.
        match std::fs::remove_file(journal_path(dir, generation)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::rename(&tmp, &path)?;
        sync_dir(dir);
        det.mark_written();
        *self = Checkpointer {
            generation,
            snapshot_bytes: bytes,
            snapshot_keys: det.snapshot_keys() as u64,
            ..Checkpointer::default()
        };
        Ok(bytes)
    }

    /// Append one delta line to the current journal and fsync it; returns its size. On a
    /// failure the delta's keys are already marked written, so the next checkpoint writes a
    /// new generation.
    fn append(&mut self, dir: &Path, det: &mut dyn Checkpointed) -> std::io::Result<u64> {
        let r = self.try_append(dir, det);
        if r.is_err() {
            self.journal = None;
            self.need_full = true;
        }
        r
    }

    fn try_append(&mut self, dir: &Path, det: &mut dyn Checkpointed) -> std::io::Result<u64> {
        if self.journal.is_none() {
            let f = open_private_append(&journal_path(dir, self.generation))?;
            if let Some(len) = self.cut_to.take() {
                f.set_len(len)?;
            }
            self.journal = Some(f);
        }
        let Some(file) = self.journal.as_mut() else {
            unreachable!("opened above")
        };
        let mut w = Counted {
            w: std::io::BufWriter::with_capacity(64 * 1024, &*file),
            n: 0,
        };
        serde_json::to_writer(&mut w, &det.delta()).map_err(std::io::Error::other)?;
        w.write_all(b"\n")?;
        w.flush()?;
        let n = w.n;
        drop(w);
        file.sync_data()?;
        self.journal_bytes += n;
        Ok(n)
    }
}

/// A writer that counts the bytes through it.
struct Counted<W> {
    w: W,
    n: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.w.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

/// The highest generation number of the detector files in `dir` (0 when none).
fn newest_generation(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter_map(|e| generation_of(&e.file_name().to_string_lossy()))
        .max()
        .unwrap_or(0)
}

/// The generation a state file names, if it is of version 4 and readable.
fn named_generation(path: &Path) -> Option<u64> {
    #[derive(Deserialize)]
    struct Named {
        detectors: DetectorFiles,
    }
    let f = File::open(path).ok()?;
    serde_json::from_reader::<_, Named>(BufReader::new(f))
        .ok()
        .map(|n| n.detectors.generation)
}

/// Delete the detector files of generations named neither by `state.json` nor by
/// `state.json.1`, nor `current`.
fn prune(dir: &Path, current: u64) {
    let keep = [
        Some(current),
        named_generation(&dir.join(FILE)),
        named_generation(&dir.join(BACKUP)),
    ];
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(g) = generation_of(&name.to_string_lossy()) else {
            continue;
        };
        if !keep.contains(&Some(g)) {
            match std::fs::remove_file(e.path()) {
                Ok(()) => debug!(file = %e.path().display(), "old detector generation removed"),
                Err(err) => {
                    warn!(file = %e.path().display(), error = %err, "cannot remove an old detector generation")
                }
            }
        }
    }
}

/// Read the detectors a state names: the generation's snapshot and its journal up to the named
/// length. A torn last line is ignored (with a warning); any other unreadable part is an error,
/// and the file is set aside.
pub(super) fn load_detectors(
    dir: &Path,
    files: DetectorFiles,
) -> Result<(Detectors, Vec<DetectorsDelta>), String> {
    let path = snapshot_path(dir, files.generation);
    let snap = match File::open(&path) {
        Ok(f) => serde_json::from_reader::<_, Detectors>(BufReader::with_capacity(256 * 1024, f))
            .map_err(|e| {
            let why = format!("{}: {e}", path.display());
            set_aside(&path, &why);
            why
        })?,
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let path = journal_path(dir, files.generation);
    let mut deltas = Vec::new();
    if files.journal_bytes == 0 {
        return Ok((snap, deltas));
    }
    let f = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let on_disk = f.metadata().map(|m| m.len()).unwrap_or(0);
    if on_disk > files.journal_bytes {
        // A line written (perhaps torn) for a save that did not complete: the state that
        // names the journal does not include it, and the next line replaces it.
        warn!(file = %path.display(), ignored_bytes = on_disk - files.journal_bytes, "the journal's last line was written after the last save; ignored");
    }
    let mut r = BufReader::new(f.take(files.journal_bytes));
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let n = r
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        number += 1;
        let complete = line.ends_with(b"\n");
        match serde_json::from_slice::<DetectorsDelta>(&line) {
            Ok(d) if complete => deltas.push(d),
            parsed => {
                // The last line may be torn (a crash while it was written); any other line
                // that cannot be read means the file is damaged.
                let last = r.fill_buf().map(|b| b.is_empty()).unwrap_or(true);
                if last {
                    warn!(file = %path.display(), line = number, error = ?parsed.err().map(|e| e.to_string()), "the journal's last line is torn; ignored");
                    break;
                }
                let why = format!(
                    "{} line {number}: {}",
                    path.display(),
                    parsed.err().map_or("no newline".into(), |e| e.to_string())
                );
                set_aside(&path, &why);
                return Err(why);
            }
        }
    }
    Ok((snap, deltas))
}
