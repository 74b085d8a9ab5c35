//! Persisted state in `state_dir`: per source the checkpoint (file identity and the offset after
//! the last line the engine has processed), the alert policy's state, and the detectors'
//! windows, cooldowns and totals, saved together so they always agree.
//!
//! On restart, each source continues from its checkpoint (a rotated file is finished first, see
//! `source`), and the windows continue where they were: a line is never counted twice, lines
//! written while authwatch was down are not skipped, and an attack that straddles a restart is
//! still seen.
//!
//! Files (state version 4):
//! - `state.json`: offsets, journal cursors, policy (small), and which detector files hold the
//!   windows: `"detectors": {"generation": G, "journal_bytes": N}`. Rewritten at every
//!   checkpoint (temp file, fsync, rename, fsync of the folder). The previous one is kept as
//!   `state.json.1` (a second name for it, made before the rename).
//! - `detectors-G.json`: a full snapshot of the detectors (`detect::wire` layout), and
//!   `detectors-G.journal`: the changes since, one delta per line, appended and fsynced before
//!   the `state.json` that names its length. See [`journal`] for when a new generation is
//!   written and which ones are kept.
//!
//! Versions 3 and 2 kept the detectors inline in `state.json` (109 MB at a million keys,
//! rewritten every 5 s); they are still read, and the first checkpoint writes a generation.
//! A `state.json` of another version, or one that cannot be read, is set aside (renamed
//! `state.json.bad-<time>`) and the previous state, `state.json.1`, is used instead; a detector
//! file that cannot be read is set aside the same way (then the previous save, or the offsets
//! without the windows, are used). [`load_checked`] says so, and the agent raises a health
//! alert.
//!
//! Every file here is written through [`private`]: `0600`, never through a symbolic link.

use crate::detect::{DetectorSnapshot, DetectorSnapshotV2, SnapshotView};
use crate::policy::PolicyState;
use crate::source::Checkpoint;
use ipnet::IpNet;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use tracing::{debug, info, warn};

pub mod journal;
mod private;
pub use journal::{Checkpointed, Checkpointer, DetectorsDelta, DetectorsDeltaView, Written};
pub(crate) use private::{create_private, create_private_dir, open_private_append, write_private};
pub use private::{lock_state_dir, StateLock, LOCK_FILE};

pub const STATE_VERSION: u32 = 4;
const FILE: &str = "state.json";
/// The previous state, kept by every save (see [`load_checked`]).
const BACKUP: &str = "state.json.1";

/// One source's position.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceState {
    pub path: PathBuf,
    pub checkpoint: Checkpoint,
}

/// A journal source's position: the `__CURSOR` of the last entry processed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CursorState {
    /// The source's name (`journal:postfix@-.service,dovecot.service`).
    pub source: String,
    pub cursor: String,
}

/// The windows of every detector.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct Detectors {
    pub ips: DetectorSnapshot<IpAddr>,
    #[serde(default)]
    pub subnets: DetectorSnapshot<IpNet>,
    #[serde(default)]
    pub accounts: DetectorSnapshot<String>,
}

impl Detectors {
    /// Keys in all three snapshots.
    pub fn len(&self) -> usize {
        self.ips.len() + self.subnets.len() + self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The windows of every detector, serialized from the live detectors (a generation's
/// snapshot); an absent detector is written empty.
pub struct DetectorsView<'a> {
    pub ips: SnapshotView<'a, IpAddr>,
    pub subnets: Option<SnapshotView<'a, IpNet>>,
    pub accounts: Option<SnapshotView<'a, String>>,
}

impl Serialize for DetectorsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("ips", &self.ips)?;
        match &self.subnets {
            Some(v) => m.serialize_entry("subnets", v)?,
            None => m.serialize_entry("subnets", &DetectorSnapshot::<IpNet>::default())?,
        }
        match &self.accounts {
            Some(v) => m.serialize_entry("accounts", v)?,
            None => m.serialize_entry("accounts", &DetectorSnapshot::<String>::default())?,
        }
        m.end()
    }
}

/// Which detector files a `state.json` names: the generation's snapshot, and how many bytes of
/// its journal belong to this state (bytes after that were written for a state that was never
/// saved, and are ignored).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct DetectorFiles {
    pub generation: u64,
    pub journal_bytes: u64,
}

/// Everything that survives a restart, as loaded: the detectors are a snapshot plus the
/// journal's deltas, applied in order by the engine.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub version: u32,
    pub sources: Vec<SourceState>,
    pub cursors: Vec<CursorState>,
    pub detector: Detectors,
    /// Deltas after `detector`, oldest first (empty for states of version 3 and 2).
    pub journal: Vec<DetectorsDelta>,
    pub policy: PolicyState,
    /// The detector files this state came from (`None` for versions 3 and 2, or when they were
    /// unusable).
    pub files: Option<DetectorFiles>,
}

impl State {
    /// The checkpoint saved for `path`, if any.
    pub fn checkpoint_for(&self, path: &Path) -> Option<Checkpoint> {
        self.sources
            .iter()
            .find(|s| s.path == path)
            .map(|s| s.checkpoint.clone())
    }

    /// The journal cursor saved for the source named `source`, if any.
    pub fn cursor_for(&self, source: &str) -> Option<String> {
        self.cursors
            .iter()
            .find(|c| c.source == source)
            .map(|c| c.cursor.clone())
    }
}

/// `state.json` as written: the detectors are named, not included.
#[derive(Serialize)]
pub struct Saving<'a> {
    pub version: u32,
    pub sources: Vec<SourceState>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cursors: Vec<CursorState>,
    pub detectors: DetectorFiles,
    pub policy: &'a PolicyState,
}

/// Version 4 as read.
#[derive(Deserialize)]
struct StateV4 {
    sources: Vec<SourceState>,
    #[serde(default)]
    cursors: Vec<CursorState>,
    detectors: DetectorFiles,
    #[serde(default)]
    policy: PolicyState,
}

/// Version 3: detectors inline, in the current layout.
#[derive(Deserialize)]
struct StateV3 {
    sources: Vec<SourceState>,
    #[serde(default)]
    cursors: Vec<CursorState>,
    detector: Detectors,
    #[serde(default)]
    policy: PolicyState,
}

/// Version 2: detectors inline, in the older layout.
#[derive(Deserialize)]
struct StateV2 {
    sources: Vec<SourceState>,
    #[serde(default)]
    cursors: Vec<CursorState>,
    detector: DetectorsV2,
    #[serde(default)]
    policy: PolicyState,
}

#[derive(Deserialize)]
struct DetectorsV2 {
    ips: DetectorSnapshotV2<IpAddr>,
    #[serde(default)]
    subnets: DetectorSnapshotV2<IpNet>,
    #[serde(default)]
    accounts: DetectorSnapshotV2<String>,
}

fn inline(
    sources: Vec<SourceState>,
    cursors: Vec<CursorState>,
    detector: Detectors,
    policy: PolicyState,
) -> State {
    State {
        version: STATE_VERSION,
        sources,
        cursors,
        detector,
        journal: Vec::new(),
        policy,
        files: None,
    }
}

impl StateV2 {
    fn migrate(self) -> State {
        let d = Detectors {
            ips: self.detector.ips.migrate(),
            subnets: self.detector.subnets.migrate(),
            accounts: self.detector.accounts.migrate(),
        };
        inline(self.sources, self.cursors, d, self.policy)
    }
}

#[derive(Deserialize)]
struct Version {
    version: u32,
}

/// Load the state of a previous run; `None` when there is none (or it was unusable).
pub fn load(state_dir: &Path) -> Option<State> {
    load_checked(state_dir).state
}

/// What [`load_checked`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub state: Option<State>,
    /// Set when `state.json` or the detector files it names were unusable (and set aside):
    /// what was wrong, and what was used instead. The agent raises a health alert.
    pub problem: Option<String>,
}

/// Why a saved state could not be used.
enum Unusable {
    /// `state.json` (or `state.json.1`) itself; it was set aside.
    File(String),
    /// The detector files it names; the rest of the state (offsets, policy) is here, with
    /// empty detectors.
    Detectors(Box<State>, String),
}

/// Load the state of a previous run. A `state.json` that cannot be used is set aside and the
/// previous state (`state.json.1`, one save older) is used, so the sources resume from saved
/// offsets rather than from their configured start; when only its detector files are unusable,
/// the previous state is used if its files are good, else the offsets and policy without the
/// windows. Either way `problem` says what happened.
pub fn load_checked(state_dir: &Path) -> Loaded {
    let path = state_dir.join(FILE);
    let backup = state_dir.join(BACKUP);
    let (why, fallback) = match load_file(state_dir, &path) {
        Ok(state) => {
            return Loaded {
                state,
                problem: None,
            }
        }
        Err(Unusable::File(why)) => (why, None),
        Err(Unusable::Detectors(meta, why)) => (why, Some(meta)),
    };
    match (load_file(state_dir, &backup), fallback) {
        (Ok(Some(st)), _) => {
            warn!(file = %backup.display(), "using the previous saved state instead");
            Loaded {
                state: Some(st),
                problem: Some(format!(
                    "{} was unusable ({why}) and was set aside; authwatch resumed from the previous save ({BACKUP}): lines since then are read again",
                    path.display()
                )),
            }
        }
        (_, Some(meta)) => Loaded {
            state: Some(*meta),
            problem: Some(format!(
                "the detector windows saved with {} were unusable ({why}) and were set aside; the sources resumed from their saved offsets, and attacks in progress are counted afresh",
                path.display()
            )),
        },
        (_, None) => Loaded {
            state: None,
            problem: Some(format!(
                "{} was unusable ({why}) and was set aside; no previous save was usable, so every source started from its configured start (lines written while authwatch was down may be missed)",
                path.display()
            )),
        },
    }
}

/// One state file with its detectors: `Ok(None)` when missing.
fn load_file(state_dir: &Path, path: &Path) -> Result<Option<State>, Unusable> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            warn!(file = %path.display(), error = %e, "cannot read the saved state");
            return Err(Unusable::File(e.to_string()));
        }
    };
    let loaded = match serde_json::from_slice::<Version>(&bytes) {
        Ok(v) if v.version == STATE_VERSION => serde_json::from_slice::<StateV4>(&bytes)
            .map(|s| {
                let files = s.detectors;
                let meta = State {
                    files: Some(files),
                    ..inline(s.sources, s.cursors, Detectors::default(), s.policy)
                };
                match journal::load_detectors(state_dir, files) {
                    Ok((detector, deltas)) => Ok(State {
                        detector,
                        journal: deltas,
                        ..meta
                    }),
                    Err(why) => Err(Unusable::Detectors(
                        Box::new(State { files: None, ..meta }),
                        why,
                    )),
                }
            }),
        Ok(v) if v.version == 3 => serde_json::from_slice::<StateV3>(&bytes).map(|s| {
            info!(file = %path.display(), "saved state of version 3; its windows move to detector files at the next save");
            Ok(inline(s.sources, s.cursors, s.detector, s.policy))
        }),
        Ok(v) if v.version == 2 => serde_json::from_slice::<StateV2>(&bytes).map(|old| {
            info!(file = %path.display(), "saved state of version 2; migrated to version {STATE_VERSION}");
            Ok(old.migrate())
        }),
        Ok(v) => {
            let why = format!("version {} is not {STATE_VERSION}", v.version);
            set_aside(path, &why);
            return Err(Unusable::File(why));
        }
        Err(e) => Err(e),
    };
    match loaded {
        Ok(Ok(s)) => Ok(Some(s)),
        Ok(Err(e)) => Err(e),
        Err(e) => {
            set_aside(path, &e.to_string());
            Err(Unusable::File(e.to_string()))
        }
    }
}

/// Rename an unusable file to `NAME.bad-<time>`, kept for a look.
fn set_aside(path: &Path, why: &str) {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let bad = path.with_file_name(format!("{name}.bad-{}", jiff::Timestamp::now().as_second()));
    let _ = std::fs::rename(path, &bad);
    warn!(file = %path.display(), kept_as = %bad.display(), reason = why, "saved state unusable; set aside");
}

/// Save `state.json` atomically: serialized into a temp file, fsync, rename over `state.json`,
/// fsync of the folder; the previous one stays as `state.json.1`. Returns the bytes written.
/// The detector files it names must be durable first (see [`Checkpointer::checkpoint`]).
pub fn save(state_dir: &Path, state: &Saving<'_>) -> std::io::Result<u64> {
    let started = std::time::Instant::now();
    create_private_dir(state_dir)?;
    let tmp = state_dir.join(format!(".{FILE}.tmp"));
    let file = create_private(&tmp)?;
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, file);
    serde_json::to_writer(&mut w, state).map_err(std::io::Error::other)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    file.sync_all()?;
    drop(file);
    // The current state stays as the previous one (used when a later state.json is corrupt):
    // a second name for it, so that state.json itself is replaced atomically as before.
    let current = state_dir.join(FILE);
    let backup = state_dir.join(BACKUP);
    let _ = std::fs::remove_file(&backup);
    match std::fs::hard_link(&current, &backup) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(error = %e, "cannot keep the previous state as {BACKUP}"),
    }
    std::fs::rename(&tmp, &current)?;
    sync_dir(state_dir);
    debug!(bytes, took = ?started.elapsed(), "state saved");
    Ok(bytes)
}

/// fsync a folder, so that renames and new files in it survive a crash.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests;
