//! Persisted state in `state_dir/state.json`: per source the checkpoint (file identity and the
//! offset after the last line the engine has processed) and the detector's windows, cooldowns
//! and totals, written together (temp file, fsync, rename) so they always agree.
//!
//! On restart, each source continues from its checkpoint (a rotated file is finished first, see
//! `source`), and the windows continue where they were: a line is never counted twice, lines
//! written while authwatch was down are not skipped, and an attack that straddles a restart is
//! still seen. The file is versioned; a file of another version, or one that cannot be read, is
//! set aside (renamed `state.json.bad-<time>`) with a warning, and authwatch starts fresh.

use crate::detect::DetectorSnapshot;
use crate::source::Checkpoint;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tracing::warn;

pub const STATE_VERSION: u32 = 2;
const FILE: &str = "state.json";

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
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Detectors {
    pub ips: DetectorSnapshot<std::net::IpAddr>,
    #[serde(default)]
    pub subnets: DetectorSnapshot<IpNet>,
    #[serde(default)]
    pub accounts: DetectorSnapshot<String>,
}

/// Everything that survives a restart.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct State {
    pub version: u32,
    pub sources: Vec<SourceState>,
    /// Journal sources' cursors (absent in files written before journal sources existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cursors: Vec<CursorState>,
    pub detector: Detectors,
    #[serde(default)]
    pub policy: crate::policy::PolicyState,
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

/// Load the state of a previous run; `None` when there is none (or it was unusable).
pub fn load(state_dir: &Path) -> Option<State> {
    let path = state_dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(file = %path.display(), error = %e, "cannot read the saved state; starting fresh");
            return None;
        }
    };
    match serde_json::from_slice::<State>(&bytes) {
        Ok(s) if s.version == STATE_VERSION => Some(s),
        Ok(s) => {
            set_aside(
                &path,
                &format!("version {} is not {STATE_VERSION}", s.version),
            );
            None
        }
        Err(e) => {
            set_aside(&path, &e.to_string());
            None
        }
    }
}

fn set_aside(path: &Path, why: &str) {
    let bad = path.with_extension(format!("json.bad-{}", jiff::Timestamp::now().as_second()));
    let _ = std::fs::rename(path, &bad);
    warn!(file = %path.display(), kept_as = %bad.display(), reason = why, "saved state unusable; starting fresh");
}

/// Save the state atomically.
pub fn save(state_dir: &Path, state: &State) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    crate::mail::write_atomic(state_dir, FILE, &bytes)?;
    if let Ok(d) = std::fs::File::open(state_dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_files_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_none());
        let st = State {
            version: STATE_VERSION,
            sources: vec![SourceState {
                path: "/var/log/exim4/mainlog".into(),
                checkpoint: Checkpoint {
                    dev: 1,
                    inode: 2,
                    fingerprint: b"2026-11-23".to_vec(),
                    offset: 42,
                },
            }],
            cursors: vec![CursorState {
                source: "journal:postfix@-.service".into(),
                cursor: "s=abc;i=1".into(),
            }],
            detector: Detectors::default(),
            policy: Default::default(),
        };
        save(dir.path(), &st).unwrap();
        let back = load(dir.path()).unwrap();
        assert_eq!(back.sources, st.sources);
        assert_eq!(
            back.checkpoint_for(Path::new("/var/log/exim4/mainlog"))
                .map(|c| c.offset),
            Some(42)
        );
        assert_eq!(
            back.cursor_for("journal:postfix@-.service").as_deref(),
            Some("s=abc;i=1")
        );
        assert_eq!(back.cursor_for("journal:dovecot.service"), None);
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert!(load(dir.path()).is_none());
        assert!(
            !dir.path().join(FILE).exists(),
            "the bad file is renamed away"
        );
    }
}
