//! Persisted state in `state_dir/state.json`: per source the checkpoint (file identity and the
//! offset after the last line the engine has processed) and the detector's windows, cooldowns
//! and totals, written together (temp file, fsync, rename) so they always agree.
//!
//! On restart, each source continues from its checkpoint (a rotated file is finished first, see
//! `source`), and the windows continue where they were: a line is never counted twice, lines
//! written while authwatch was down are not skipped, and an attack that straddles a restart is
//! still seen.
//!
//! The file is versioned. Version 3 writes the detectors compactly (see `detect::wire`: one
//! array per key, times as seconds before a base, only the keys that can still alert or hold
//! back an alert) and is written straight from the live maps into the file, with no copy of the
//! state in memory. A version 2 file is read and migrated (same content, older layout). A file
//! of another version, or one that cannot be read, is set aside (renamed
//! `state.json.bad-<time>`) with a warning, and authwatch starts fresh.

use crate::detect::{DetectorSnapshot, DetectorSnapshotV2, SnapshotView};
use crate::policy::PolicyState;
use crate::source::Checkpoint;
use ipnet::IpNet;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use tracing::{debug, info, warn};

pub const STATE_VERSION: u32 = 3;
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
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct Detectors {
    pub ips: DetectorSnapshot<IpAddr>,
    #[serde(default)]
    pub subnets: DetectorSnapshot<IpNet>,
    #[serde(default)]
    pub accounts: DetectorSnapshot<String>,
}

/// The windows of every detector, serialized from the live detectors (for [`save`]); an absent
/// detector is written empty.
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

/// Everything that survives a restart. Loaded as `State`; saved from borrowed parts as
/// `State<DetectorsView, &PolicyState>`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct State<D = Detectors, P = PolicyState> {
    pub version: u32,
    pub sources: Vec<SourceState>,
    /// Journal sources' cursors (absent in files written before journal sources existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cursors: Vec<CursorState>,
    pub detector: D,
    #[serde(default)]
    pub policy: P,
}

impl<D, P> State<D, P> {
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

/// Version 2: the same content, detectors in the older layout.
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

impl StateV2 {
    fn migrate(self) -> State {
        State {
            version: STATE_VERSION,
            sources: self.sources,
            cursors: self.cursors,
            detector: Detectors {
                ips: self.detector.ips.migrate(),
                subnets: self.detector.subnets.migrate(),
                accounts: self.detector.accounts.migrate(),
            },
            policy: self.policy,
        }
    }
}

#[derive(Deserialize)]
struct Version {
    version: u32,
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
    let loaded = match serde_json::from_slice::<Version>(&bytes) {
        Ok(v) if v.version == STATE_VERSION => serde_json::from_slice::<State>(&bytes),
        Ok(v) if v.version == 2 => serde_json::from_slice::<StateV2>(&bytes).map(|old| {
            info!(file = %path.display(), "saved state of version 2; migrated to version {STATE_VERSION}");
            old.migrate()
        }),
        Ok(v) => {
            set_aside(
                &path,
                &format!("version {} is not {STATE_VERSION}", v.version),
            );
            return None;
        }
        Err(e) => Err(e),
    };
    match loaded {
        Ok(s) => Some(s),
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

/// Save the state atomically: serialized straight into a temp file (no copy in memory), fsync,
/// rename over `state.json`, fsync of the folder. Returns the bytes written.
pub fn save<D: Serialize, P: Serialize>(
    state_dir: &Path,
    state: &State<D, P>,
) -> std::io::Result<u64> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(state_dir)?;
    let tmp = state_dir.join(format!(".{FILE}.tmp"));
    let file = std::fs::File::create(&tmp)?;
    let mut w = std::io::BufWriter::with_capacity(256 * 1024, file);
    serde_json::to_writer(&mut w, state).map_err(std::io::Error::other)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, state_dir.join(FILE))?;
    if let Ok(d) = std::fs::File::open(state_dir) {
        let _ = d.sync_all();
    }
    debug!(bytes, took = ?started.elapsed(), "state saved");
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_files_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_none());
        let st: State = State {
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
            policy: PolicyState::default(),
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

    /// A state.json as version 2 wrote it (field names, RFC 3339 times).
    const V2: &str = r#"{"version":2,"sources":[{"path":"/var/log/exim4/mainlog","checkpoint":{"dev":1,"inode":2,"fingerprint":"3230","offset":42}}],
      "detector":{"ips":{"ips":[["203.0.113.7",{"buckets":[[1795428000,2],[1795428060,1]],"in_window":3,"total":9,
        "first_seen":"2026-11-23T09:00:00Z","last_seen":"2026-11-23T10:01:00Z","service":"exim",
        "members":{"alice":[6,1795428060],"bob":[3,1795428000]},"overflow_attempts":0,"overflow_names":0,"no_member":0,
        "lines":["l1","l2"],"last_alert":"2026-11-23T09:30:00Z","alerts_sent":1,"total_at_last_alert":5,"earlier_alerts":[]}]],
        "evictions":4}},
      "policy":{"pending":[],"group_started":null,"held":[],"held_dropped":0,"incidents":{},"sent":[],"last_digest":null}}"#;

    #[test]
    fn a_version_2_file_is_migrated_with_its_windows() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), V2).unwrap();
        let st = load(dir.path()).expect("migrated");
        assert_eq!(st.version, STATE_VERSION);
        assert_eq!(
            st.checkpoint_for(Path::new("/var/log/exim4/mainlog"))
                .map(|c| c.offset),
            Some(42)
        );
        assert_eq!(st.detector.ips.len(), 1);
        // Saved again as version 3, it reads back the same.
        save(dir.path(), &st).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(text.starts_with(r#"{"version":3,"#), "{text}");
        assert!(text.contains(r#""evictions":4"#), "{text}");
        let again = load(dir.path()).unwrap();
        assert_eq!(again.detector, st.detector);
        // The migrated windows work: 2 more attempts at 10:01:00 cross 5 in 600 s.
        let mut d = crate::detect::IpDetector::new(crate::detect::DetectorSettings {
            attempts: 5,
            window: std::time::Duration::from_secs(600),
            cooldown: std::time::Duration::from_secs(600),
            max_tracked_ips: 10,
            top_accounts: 5,
            log_lines: 5,
            min_distinct_members: 0,
        });
        d.restore(again.detector.ips);
        let at: jiff::Timestamp = "2026-11-23T10:01:00Z".parse().unwrap();
        assert_eq!(
            d.observe_key(
                "203.0.113.7".parse().unwrap(),
                Some("carol"),
                1,
                "exim",
                "l3",
                at
            ),
            None
        );
        let a = d
            .observe_key(
                "203.0.113.7".parse().unwrap(),
                Some("alice"),
                1,
                "exim",
                "l4",
                at,
            )
            .expect("crosses");
        assert_eq!(a.attempts_in_window, 5);
        assert_eq!(a.attempts_total, 11);
        assert_eq!(a.alert_number, 2);
        assert_eq!(
            a.previous_alert,
            Some("2026-11-23T09:30:00Z".parse().unwrap())
        );
        assert_eq!(a.recent_lines, vec!["l1", "l2", "l3", "l4"]);
        assert_eq!(a.top_members[0], ("alice".to_string(), 7));
    }

    #[test]
    fn an_unknown_version_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), r#"{"version":99,"sources":[]}"#).unwrap();
        assert!(load(dir.path()).is_none());
        assert!(!dir.path().join(FILE).exists());
    }
}
