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
//! `state.json.bad-<time>`) and the previous state, kept as `state.json.1` by every save, is
//! used instead; [`load_checked`] says so, and the agent raises a health alert.
//!
//! Everything authwatch writes under `state_dir` goes through [`create_private`] /
//! [`open_private_append`] / [`create_private_dir`]: files `0600` and folders `0700` whatever
//! the umask, opened with `O_NOFOLLOW` (a symbolic link planted in the folder is refused, never
//! followed). [`lock_state_dir`] keeps a second agent off the same folder.

use crate::detect::{DetectorSnapshot, DetectorSnapshotV2, SnapshotView};
use crate::policy::PolicyState;
use crate::source::Checkpoint;
use ipnet::IpNet;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::fs::{File, OpenOptions, Permissions};
use std::io::{Read, Seek, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tracing::{debug, info, warn};

pub const STATE_VERSION: u32 = 3;
const FILE: &str = "state.json";
/// The previous state, kept by every save (see [`load_checked`]).
const BACKUP: &str = "state.json.1";
/// The lock file in `state_dir` (see [`lock_state_dir`]).
pub const LOCK_FILE: &str = "lock";

/// `O_NOFOLLOW` (Linux; the same value on x86-64 and arm64): fail on a symbolic link.
const O_NOFOLLOW: i32 = 0o400_000;
/// Mode of every file authwatch creates in `state_dir`.
const FILE_MODE: u32 = 0o600;
/// Mode of every folder authwatch creates in `state_dir`.
const DIR_MODE: u32 = 0o700;

/// A clearer error for an open refused by `O_NOFOLLOW` (ELOOP).
fn nofollow_error(path: &Path, e: std::io::Error) -> std::io::Error {
    const ELOOP: i32 = 40;
    if e.raw_os_error() == Some(ELOOP) {
        std::io::Error::other(format!(
            "{} is a symbolic link; refusing to write through it (remove it)",
            path.display()
        ))
    } else {
        e
    }
}

/// Create (or truncate) a file for writing: `O_NOFOLLOW`, close-on-exec (std's default), mode
/// `0600` whatever the umask (set again with fchmod on the open file, also for a file that
/// existed with another mode).
pub(crate) fn create_private(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .custom_flags(O_NOFOLLOW)
        .open(path)
        .map_err(|e| nofollow_error(path, e))?;
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

/// Open a file for appending (created `0600` when missing), refusing a symbolic link.
pub(crate) fn open_private_append(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .custom_flags(O_NOFOLLOW)
        .open(path)
        .map_err(|e| nofollow_error(path, e))?;
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

/// Write a whole file atomically (temp file beside it, fsync, rename), `0600`, never through
/// a symbolic link (a link at the final name is replaced by the rename, not followed).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = create_private(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Create a folder (and its parents) with mode `0700` whatever the umask; an existing folder
/// is left as it is. A symbolic link where the folder should be is refused.
pub(crate) fn create_private_dir(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(std::io::Error::other(format!(
                "{} is a symbolic link; refusing to use it as authwatch's folder",
                path.display()
            )))
        }
        Ok(m) if m.is_dir() => return Ok(()),
        _ => {}
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)?;
    std::fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
}

/// The lock on `state_dir`, held while it lives (and by the kernel until the process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// Take the lock on `state_dir` (`flock` on `state_dir/lock`, which then holds our pid). When
/// another process holds it, the error names that process's pid: two agents on one folder
/// would overwrite each other's checkpoints and send every alert twice.
pub fn lock_state_dir(state_dir: &Path) -> std::io::Result<StateLock> {
    let path = state_dir.join(LOCK_FILE);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .custom_flags(O_NOFOLLOW)
        .open(&path)
        .map_err(|e| nofollow_error(&path, e))?;
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = f.take(32).read_to_string(&mut text);
            let pid = text.trim();
            return Err(std::io::Error::other(format!(
                "state_dir {} is in use by another authwatch (pid {}); stop it first, or give this one another state_dir",
                state_dir.display(),
                if pid.is_empty() { "unknown" } else { pid }
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    f.set_len(0)?;
    f.rewind()?;
    writeln!(f, "{}", std::process::id())?;
    f.sync_data()?;
    Ok(StateLock { _file: f })
}

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
    load_checked(state_dir).state
}

/// What [`load_checked`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub state: Option<State>,
    /// Set when `state.json` was unusable (and set aside): what was wrong, and whether the
    /// previous state (`state.json.1`) was used instead. The agent raises a health alert.
    pub problem: Option<String>,
}

/// Load the state of a previous run. A `state.json` that cannot be used is set aside and the
/// previous state (`state.json.1`, one save older) is used, so the sources resume from saved
/// offsets rather than from their configured start; either way `problem` says what happened.
pub fn load_checked(state_dir: &Path) -> Loaded {
    let path = state_dir.join(FILE);
    match load_file(&path) {
        Ok(state) => Loaded {
            state,
            problem: None,
        },
        Err(why) => {
            let backup = state_dir.join(BACKUP);
            match load_file(&backup) {
                Ok(Some(st)) => {
                    warn!(file = %backup.display(), "using the previous saved state instead");
                    Loaded {
                        state: Some(st),
                        problem: Some(format!(
                            "{} was unusable ({why}) and was set aside; authwatch resumed from the previous save ({BACKUP}): lines since then are read again",
                            path.display()
                        )),
                    }
                }
                _ => Loaded {
                    state: None,
                    problem: Some(format!(
                        "{} was unusable ({why}) and was set aside; no previous save was usable, so every source started from its configured start (lines written while authwatch was down may be missed)",
                        path.display()
                    )),
                },
            }
        }
    }
}

/// One state file: `Ok(None)` when missing, `Err` (set aside) when unusable.
fn load_file(path: &Path) -> Result<Option<State>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            warn!(file = %path.display(), error = %e, "cannot read the saved state");
            return Err(e.to_string());
        }
    };
    let path = path.to_path_buf();
    let loaded = match serde_json::from_slice::<Version>(&bytes) {
        Ok(v) if v.version == STATE_VERSION => serde_json::from_slice::<State>(&bytes),
        Ok(v) if v.version == 2 => serde_json::from_slice::<StateV2>(&bytes).map(|old| {
            info!(file = %path.display(), "saved state of version 2; migrated to version {STATE_VERSION}");
            old.migrate()
        }),
        Ok(v) => {
            let why = format!("version {} is not {STATE_VERSION}", v.version);
            set_aside(&path, &why);
            return Err(why);
        }
        Err(e) => Err(e),
    };
    match loaded {
        Ok(s) => Ok(Some(s)),
        Err(e) => {
            set_aside(&path, &e.to_string());
            Err(e.to_string())
        }
    }
}

fn set_aside(path: &Path, why: &str) {
    let bad = path.with_extension(format!("json.bad-{}", jiff::Timestamp::now().as_second()));
    let _ = std::fs::rename(path, &bad);
    warn!(file = %path.display(), kept_as = %bad.display(), reason = why, "saved state unusable; set aside");
}

/// Save the state atomically: serialized straight into a temp file (no copy in memory), fsync,
/// rename over `state.json`, fsync of the folder. Returns the bytes written.
pub fn save<D: Serialize, P: Serialize>(
    state_dir: &Path,
    state: &State<D, P>,
) -> std::io::Result<u64> {
    let started = std::time::Instant::now();
    create_private_dir(state_dir)?;
    let tmp = state_dir.join(format!(".{FILE}.tmp"));
    let file = create_private(&tmp)?;
    let mut w = std::io::BufWriter::with_capacity(256 * 1024, file);
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

    fn sample(offset: u64) -> State {
        State {
            version: STATE_VERSION,
            sources: vec![SourceState {
                path: "/var/log/mail.log".into(),
                checkpoint: Checkpoint {
                    dev: 1,
                    inode: 2,
                    fingerprint: b"x".to_vec(),
                    offset,
                },
            }],
            ..State::default()
        }
    }

    /// Issue 14.8: a corrupt state.json made authwatch start every source from its configured
    /// start (`end`), silently. The previous save is kept and used, and the problem reported.
    #[test]
    fn corrupt_state_resumes_from_the_previous_save_regression() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &sample(10)).unwrap();
        save(dir.path(), &sample(20)).unwrap();
        std::fs::write(dir.path().join(FILE), b"{\"version\":3,\"sour").unwrap();
        let l = load_checked(dir.path());
        let st = l.state.expect("the previous save");
        assert_eq!(
            st.checkpoint_for(Path::new("/var/log/mail.log"))
                .map(|c| c.offset),
            Some(10)
        );
        assert!(l.problem.unwrap().contains("previous save"));
        // No previous save: nothing to resume from, but still reported.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"garbage").unwrap();
        let l = load_checked(dir.path());
        assert!(l.state.is_none());
        assert!(l.problem.unwrap().contains("configured start"));
    }

    /// Issue 14.8: files in state_dir are 0600 and folders 0700 whatever the umask, and a
    /// symbolic link planted where authwatch writes is refused, not followed.
    #[test]
    fn state_files_are_private_and_symlinks_refused_regression() {
        let dir = tempfile::tempdir().unwrap();
        let sd = dir.path().join("state");
        // A umask of 0 in this test process would make files 0666 without the fchmod; the
        // mode is checked directly.
        save(&sd, &sample(1)).unwrap();
        save(&sd, &sample(2)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sd), 0o700);
        assert_eq!(mode(&sd.join(FILE)), 0o600);
        assert_eq!(mode(&sd.join(BACKUP)), 0o600);
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, sd.join(format!(".{FILE}.tmp"))).unwrap();
        let e = save(&sd, &sample(3)).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let e = open_private_append(&sd.join(format!(".{FILE}.tmp"))).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }

    #[test]
    fn a_second_lock_names_the_first_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_state_dir(dir.path()).unwrap();
        let e = lock_state_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(first);
        lock_state_dir(dir.path()).unwrap();
    }

    #[test]
    fn an_unknown_version_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), r#"{"version":99,"sources":[]}"#).unwrap();
        assert!(load(dir.path()).is_none());
        assert!(!dir.path().join(FILE).exists());
    }
}
