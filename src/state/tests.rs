//! Tests of the saved state: `state.json`, the detector generations and their journal, the
//! migrations from older versions, corruption recovery and private files.

use super::journal::MIN_COMPACT_BYTES;
use super::*;
use crate::detect::{DetectorSettings, KeyDetector};
use jiff::{SignedDuration, Timestamp};
use std::os::unix::fs::PermissionsExt;

fn settings(cap: usize) -> DetectorSettings {
    DetectorSettings {
        attempts: 5,
        window: std::time::Duration::from_secs(600),
        cooldown: std::time::Duration::from_secs(3600),
        max_tracked_ips: cap,
        top_accounts: 3,
        log_lines: 3,
        min_distinct_members: 0,
    }
}

/// The engine's part in a checkpoint: detectors per IP and per account, and a policy.
struct Fake {
    ips: KeyDetector<IpAddr>,
    accounts: KeyDetector<String>,
    policy: PolicyState,
}

impl Fake {
    fn new(cap: usize) -> Self {
        Fake {
            ips: KeyDetector::new(settings(cap)),
            accounts: KeyDetector::new(settings(cap)),
            policy: PolicyState::default(),
        }
    }

    /// A restart: a new engine restored from the loaded state, as `agent::run` does it.
    fn from_state(st: State, cap: usize) -> Self {
        let mut f = Fake::new(cap);
        f.ips.restore(st.detector.ips);
        f.accounts.restore(st.detector.accounts);
        for d in st.journal {
            if let Some(d) = d.ips {
                f.ips.apply(d);
            }
            if let Some(d) = d.accounts {
                f.accounts.apply(d);
            }
        }
        f.policy = st.policy;
        f
    }

    /// One failed login of `user` from `ip` at `at`.
    fn hit(&mut self, ip: IpAddr, user: &str, at: Timestamp) {
        let line = format!("{at} login failed for {user} from {ip}");
        self.ips.observe_key(ip, Some(user), 1, "exim", &line, at);
        self.accounts.observe_key(
            user.to_string(),
            Some(&ip.to_string()),
            1,
            "exim",
            &line,
            at,
        );
    }

    fn same_as(&self, o: &Fake) -> bool {
        self.ips.snapshot() == o.ips.snapshot() && self.accounts.snapshot() == o.accounts.snapshot()
    }
}

impl Checkpointed for Fake {
    fn full(&self) -> DetectorsView<'_> {
        DetectorsView {
            ips: self.ips.view(),
            subnets: None,
            accounts: Some(self.accounts.view()),
        }
    }

    fn delta(&self) -> DetectorsDeltaView<'_> {
        DetectorsDeltaView {
            ips: self.ips.delta(),
            subnets: None,
            accounts: Some(self.accounts.delta()),
        }
    }

    fn pending_keys(&self) -> usize {
        self.ips.pending_keys() + self.accounts.pending_keys()
    }

    fn snapshot_keys(&self) -> usize {
        self.ips.snapshot_keys() + self.accounts.snapshot_keys()
    }

    fn mark_written(&mut self) {
        self.ips.mark_written();
        self.accounts.mark_written();
    }

    fn policy(&self) -> &PolicyState {
        &self.policy
    }
}

fn source(offset: u64) -> SourceState {
    SourceState {
        path: "/var/log/mail.log".into(),
        checkpoint: Checkpoint {
            dev: 1,
            inode: 2,
            fingerprint: b"x".to_vec(),
            offset,
        },
    }
}

/// A checkpoint with one source at `offset`.
fn checkpoint(dir: &Path, c: &mut Checkpointer, f: &mut Fake, offset: u64) -> Written {
    c.checkpoint(dir, vec![source(offset)], Vec::new(), f)
        .unwrap()
}

fn offset(st: &State) -> Option<u64> {
    st.checkpoint_for(Path::new("/var/log/mail.log"))
        .map(|c| c.offset)
}

fn t0() -> Timestamp {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

fn ip(i: u64) -> IpAddr {
    format!("2001:db8:{:x}::{:x}", i / 4, i % 4 + 1)
        .parse()
        .unwrap()
}

/// Files in `dir` whose name starts with `prefix`, sorted.
fn files(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

#[test]
fn round_trip_and_bad_files_are_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    assert!(load(dir.path()).is_none());
    let mut f = Fake::new(100);
    f.hit(ip(1), "alice", t0());
    let cursors = vec![CursorState {
        source: "journal:postfix@-.service".into(),
        cursor: "s=abc;i=1".into(),
    }];
    Checkpointer::default()
        .checkpoint(dir.path(), vec![source(42)], cursors, &mut f)
        .unwrap();
    let back = load(dir.path()).unwrap();
    assert_eq!(back.sources, vec![source(42)]);
    assert_eq!(offset(&back), Some(42));
    assert_eq!(
        back.cursor_for("journal:postfix@-.service").as_deref(),
        Some("s=abc;i=1")
    );
    assert_eq!(back.cursor_for("journal:dovecot.service"), None);
    assert!(Fake::from_state(back, 100).same_as(&f));
    std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
    std::fs::remove_file(dir.path().join(BACKUP)).ok();
    assert!(load(dir.path()).is_none());
    assert!(
        !dir.path().join(FILE).exists(),
        "the bad file is renamed away"
    );
}

/// Issue 17: restarts after any number of checkpoints (new generations and journal lines,
/// keys counted again, forgotten, evicted) rebuild exactly the detectors that were saved.
#[test]
fn restart_after_checkpoints_rebuilds_the_same_detectors() {
    for seed in 0..12u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let dir = tempfile::tempdir().unwrap();
        // Some seeds run with a cap that evicts.
        let cap = if seed % 3 == 0 { 40 } else { 10_000 };
        let mut live = Fake::new(cap);
        let mut c = Checkpointer::default();
        let mut at = t0();
        let mut fulls = 0;
        for round in 0..40u64 {
            for _ in 0..rng.usize(0..30) {
                at += SignedDuration::from_secs(rng.i64(0..20));
                let user = format!("u{}", rng.u8(0..6));
                // Now and then a line from long ago (a source lagging behind): a changed key
                // already too old to keep.
                let when = if rng.u8(0..8) == 0 {
                    at - SignedDuration::from_secs(rng.i64(0..3000))
                } else {
                    at
                };
                live.hit(ip(rng.u64(0..60)), &user, when);
            }
            for _ in 0..rng.usize(0..3) {
                live.ips.forget(&ip(rng.u64(0..60)));
                live.accounts.forget(&format!("u{}", rng.u8(0..6)));
            }
            // A key counted and forgotten before the checkpoint.
            let gone: IpAddr = "2001:db8:ffff::1".parse().unwrap();
            live.hit(gone, "ghost", at);
            live.ips.forget(&gone);
            if rng.u8(0..10) == 0 {
                c.force_full();
            }
            let w = checkpoint(dir.path(), &mut c, &mut live, round);
            fulls += usize::from(w.full);
            if rng.u8(0..4) == 0 {
                // Restart: continue from what is on disk.
                let loaded = load_checked(dir.path());
                assert!(loaded.problem.is_none(), "{:?}", loaded.problem);
                c = Checkpointer::resume(dir.path(), &loaded);
                let st = loaded.state.unwrap();
                assert_eq!(offset(&st), Some(round));
                let back = Fake::from_state(st, cap);
                assert!(back.same_as(&live), "seed {seed} round {round}");
                live = back;
            }
        }
        let back = Fake::from_state(load(dir.path()).unwrap(), cap);
        assert!(back.same_as(&live), "seed {seed} at the end");
        assert!(fulls < 40, "seed {seed}: deltas were written");
        assert!(back
            .ips
            .total(&"2001:db8:ffff::1".parse().unwrap())
            .is_none());
        // At most the generations of state.json and state.json.1 are kept.
        assert!(
            files(dir.path(), "detectors-").len() <= 4,
            "{:?}",
            files(dir.path(), "detectors-")
        );
    }
}

/// Issue 17: state.json was rewritten in full (109 MB at a million keys) every 5 s. With 20,000
/// keys saved, a checkpoint after 5 keys changed writes a journal line and a small state.json:
/// under 1% of the snapshot.
#[test]
fn steady_state_checkpoints_write_only_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fake::new(100_000);
    let mut c = Checkpointer::default();
    for i in 0..20_000u64 {
        f.hit(
            ip(i),
            &format!("user{}", i % 50),
            t0() + SignedDuration::from_millis(i as i64 * 10),
        );
    }
    let first = checkpoint(dir.path(), &mut c, &mut f, 1);
    assert!(first.full);
    let snapshot = first.detector_bytes;
    assert!(snapshot > 1_000_000, "{snapshot}");
    let later = t0() + SignedDuration::from_secs(300);
    for round in 0..20u64 {
        for k in 0..5 {
            f.hit(
                ip(round * 7 + k),
                "admin",
                later + SignedDuration::from_secs(round as i64),
            );
        }
        let w = checkpoint(dir.path(), &mut c, &mut f, 2 + round);
        assert!(!w.full, "round {round}");
        let bytes = w.detector_bytes + w.state_bytes;
        assert!(
            bytes * 100 < snapshot,
            "round {round}: {bytes} bytes of {snapshot}"
        );
    }
    let back = Fake::from_state(load(dir.path()).unwrap(), 100_000);
    assert!(back.same_as(&f));
}

/// When the journal outgrows the snapshot (at least MIN_COMPACT_BYTES), a new generation is
/// written and the older ones are removed.
#[test]
fn a_journal_larger_than_its_snapshot_is_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fake::new(100_000);
    let mut c = Checkpointer::default();
    let mut at = t0();
    let mut fulls = Vec::new();
    for round in 0..60u64 {
        // The same 400 keys counted again every round: about 60 kB per delta.
        for i in 0..400 {
            at += SignedDuration::from_millis(100);
            f.hit(ip(i), &format!("u{round}"), at);
        }
        if checkpoint(dir.path(), &mut c, &mut f, round).full {
            fulls.push(round);
        }
    }
    assert!(fulls.len() >= 2 && fulls[0] == 0, "{fulls:?}");
    let journal = files(dir.path(), "detectors-")
        .into_iter()
        .filter(|n| n.ends_with(".journal"))
        .map(|n| std::fs::metadata(dir.path().join(n)).unwrap().len())
        .max()
        .unwrap_or(0);
    assert!(journal <= MIN_COMPACT_BYTES, "{journal}");
    assert!(files(dir.path(), "detectors-").len() <= 4);
    let back = Fake::from_state(load(dir.path()).unwrap(), 100_000);
    assert!(back.same_as(&f));
    // Once state.json.1 names the newest generation too, only that one is kept.
    c.force_full();
    checkpoint(dir.path(), &mut c, &mut f, 100);
    f.hit(ip(1), "late", at);
    checkpoint(dir.path(), &mut c, &mut f, 101);
    let generations: std::collections::BTreeSet<String> = files(dir.path(), "detectors-")
        .into_iter()
        .map(|n| n.split('.').next().unwrap().to_string())
        .collect();
    assert_eq!(generations.len(), 1, "{generations:?}");
}

/// A journal line torn by a crash is ignored with a warning: bytes after the length state.json
/// names (the line was being written when the crash came) and a last line cut short.
#[test]
fn a_torn_journal_line_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fake::new(1000);
    let mut c = Checkpointer::default();
    f.hit(ip(1), "alice", t0());
    checkpoint(dir.path(), &mut c, &mut f, 1);
    f.hit(ip(2), "bob", t0());
    checkpoint(dir.path(), &mut c, &mut f, 2);
    let saved = Fake::from_state(load(dir.path()).unwrap(), 1000);
    assert!(saved.same_as(&f));
    let journal = dir.path().join("detectors-1.journal");
    let good = std::fs::read(&journal).unwrap();
    // A crash while the next line was written: its start is on disk, state.json does not
    // name it.
    let mut torn = good.clone();
    torn.extend_from_slice(br#"{"ips":{"base":17954"#);
    std::fs::write(&journal, &torn).unwrap();
    let loaded = load_checked(dir.path());
    assert!(loaded.problem.is_none());
    let mut c = Checkpointer::resume(dir.path(), &loaded);
    let mut back = Fake::from_state(loaded.state.unwrap(), 1000);
    assert!(back.same_as(&saved));
    // The journal continues after the named bytes: the torn start is cut off.
    back.hit(ip(3), "carol", t0());
    checkpoint(dir.path(), &mut c, &mut back, 3);
    let again = Fake::from_state(load(dir.path()).unwrap(), 1000);
    assert!(again.same_as(&back));
    assert!(!std::fs::read_to_string(&journal)
        .unwrap()
        .contains("17954{"));

    // The named last line cut short (the file lost its end): ignored, the lines before count.
    let text = std::fs::read(&journal).unwrap();
    std::fs::write(&journal, &text[..text.len() - 10]).unwrap();
    let loaded = load_checked(dir.path());
    assert!(loaded.problem.is_none(), "{:?}", loaded.problem);
    let st = loaded.state.unwrap();
    assert_eq!(offset(&st), Some(3));
    let back = Fake::from_state(st, 1000);
    assert!(back.same_as(&saved), "the state before the torn line");
}

/// Issue 17: a damaged generation is handled like a damaged state.json: set aside, reported
/// (the agent raises the same health alert), and the previous save or at least the saved
/// offsets are used.
#[test]
fn a_corrupt_generation_is_reported_and_the_offsets_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fake::new(1000);
    let mut c = Checkpointer::default();
    f.hit(ip(1), "alice", t0());
    checkpoint(dir.path(), &mut c, &mut f, 10);
    f.hit(ip(2), "bob", t0());
    checkpoint(dir.path(), &mut c, &mut f, 20);
    // Both saves name generation 1: its snapshot is damaged.
    std::fs::write(dir.path().join("detectors-1.json"), br#"{"ips":{"base":1,"#).unwrap();
    let loaded = load_checked(dir.path());
    let problem = loaded.problem.clone().expect("reported");
    assert!(problem.contains("detector windows"), "{problem}");
    let st = loaded.state.as_ref().expect("the offsets are kept");
    assert_eq!(offset(st), Some(20));
    assert!(st.detector.is_empty() && st.journal.is_empty());
    assert_eq!(files(dir.path(), "detectors-1.json.bad-").len(), 1);
    // The next checkpoint starts a new generation.
    let mut c = Checkpointer::resume(dir.path(), &loaded);
    let mut back = Fake::from_state(loaded.state.unwrap(), 1000);
    back.hit(ip(3), "carol", t0());
    assert!(checkpoint(dir.path(), &mut c, &mut back, 30).full);
    assert!(dir.path().join("detectors-2.json").exists());
    assert!(Fake::from_state(load(dir.path()).unwrap(), 1000).same_as(&back));

    // A damaged journal line that is not the last one: the same.
    back.hit(ip(4), "dave", t0());
    checkpoint(dir.path(), &mut c, &mut back, 40);
    back.hit(ip(5), "erin", t0());
    checkpoint(dir.path(), &mut c, &mut back, 50);
    let journal = dir.path().join("detectors-2.journal");
    let mut text = std::fs::read(&journal).unwrap();
    text[0] = b'[';
    std::fs::write(&journal, &text).unwrap();
    let loaded = load_checked(dir.path());
    assert!(loaded.problem.unwrap().contains("line 1"));
    assert_eq!(offset(&loaded.state.unwrap()), Some(50));
}

/// Issue 17: a state.json of version 3 (detectors inline, as saved before the generations)
/// still loads with its windows, and the first checkpoint moves them into a generation.
#[test]
fn a_version_3_file_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE), V3).unwrap();
    let st = load(dir.path()).expect("version 3");
    assert_eq!(offset(&st), Some(42));
    assert_eq!(st.detector.ips.len(), 1);
    assert_eq!(st.detector.accounts.len(), 1);
    let mut f = Fake::from_state(st, 10);
    let ip: IpAddr = "203.0.113.7".parse().unwrap();
    assert_eq!(f.ips.total(&ip), Some(9));
    assert_eq!(f.ips.alerted_total(&ip), Some(9));
    let at: Timestamp = "2026-11-23T10:01:30Z".parse().unwrap();
    assert_eq!(f.ips.attempts_within(&ip, at), 3);
    let loaded = load_checked(dir.path());
    let mut c = Checkpointer::resume(dir.path(), &loaded);
    let w = checkpoint(dir.path(), &mut c, &mut f, 43);
    assert!(w.full);
    let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
    assert!(
        !text.contains("203.0.113.7"),
        "windows left state.json: {text}"
    );
    assert!(Fake::from_state(load(dir.path()).unwrap(), 10).same_as(&f));
}

/// A state.json as version 3 wrote it (detectors inline, `detect::wire` layout).
const V3: &str = r#"{"version":3,"sources":[{"path":"/var/log/mail.log","checkpoint":{"dev":1,"inode":2,"fingerprint":"78","offset":42}}],
  "detector":{"ips":{"base":1795428060,"evictions":0,"keys":[["203.0.113.7",["exim",3660,0,9,[60,2,0,1],[["alice",6,0],["bob",3,60]],0,0,0,["l1","l2"],1860,1,9,[]]]]},
    "subnets":{"base":0,"evictions":0,"keys":[]},
    "accounts":{"base":1795428060,"evictions":0,"keys":[["alice",["exim",60,0,6,[0,6],[["203.0.113.7",6,0]],0,0,0,["l2"],null,0,0,[]]]]}},
  "policy":{"pending":[],"group_started":null,"held":[],"held_dropped":0,"incidents":{},"sent":[],"last_digest":null}}"#;

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
    // Saved again as version 4 (its windows in a generation), it reads back the same.
    let mut f = Fake::from_state(st.clone(), 10);
    let w = checkpoint(dir.path(), &mut Checkpointer::default(), &mut f, 42);
    assert!(w.full);
    let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
    assert!(text.starts_with(r#"{"version":4,"#), "{text}");
    let snap = std::fs::read_to_string(dir.path().join("detectors-1.json")).unwrap();
    assert!(snap.contains(r#""evictions":4"#), "{snap}");
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

/// Issue 14.8: a corrupt state.json made authwatch start every source from its configured
/// start (`end`), silently. The previous save is kept and used, and the problem reported.
#[test]
fn corrupt_state_resumes_from_the_previous_save_regression() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fake::new(100);
    let mut c = Checkpointer::default();
    f.hit(ip(1), "alice", t0());
    checkpoint(dir.path(), &mut c, &mut f, 10);
    let first = Fake::from_state(load(dir.path()).unwrap(), 100);
    f.hit(ip(2), "bob", t0());
    c.force_full();
    checkpoint(dir.path(), &mut c, &mut f, 20);
    std::fs::write(dir.path().join(FILE), b"{\"version\":4,\"sour").unwrap();
    let l = load_checked(dir.path());
    let st = l.state.expect("the previous save");
    assert_eq!(offset(&st), Some(10));
    // With the windows of that save (its generation was kept).
    assert!(Fake::from_state(st, 100).same_as(&first));
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
    let mut f = Fake::new(100);
    let mut c = Checkpointer::default();
    f.hit(ip(1), "alice", t0());
    checkpoint(&sd, &mut c, &mut f, 1);
    f.hit(ip(2), "alice", t0());
    checkpoint(&sd, &mut c, &mut f, 2);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sd), 0o700);
    for name in [FILE, BACKUP, "detectors-1.json", "detectors-1.journal"] {
        assert_eq!(mode(&sd.join(name)), 0o600, "{name}");
    }
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    for name in [format!(".{FILE}.tmp"), ".detectors-2.json.tmp".into()] {
        std::os::unix::fs::symlink(&victim, sd.join(&name)).unwrap();
    }
    f.hit(ip(3), "alice", t0());
    let e = c
        .checkpoint(&sd, vec![source(3)], Vec::new(), &mut f)
        .unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    c.force_full();
    let e = c
        .checkpoint(&sd, vec![source(3)], Vec::new(), &mut f)
        .unwrap_err();
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

/// An eviction storm (an attacker rotating addresses past the cap) evicts more saved keys
/// between two checkpoints than a delta lists: the next checkpoint is a full generation, and a
/// restart still rebuilds the same detectors. Evicted keys that were never saved are not
/// listed at all.
#[test]
fn an_eviction_storm_writes_a_generation_instead_of_a_long_delta() {
    let dir = tempfile::tempdir().unwrap();
    let cap = crate::detect::MAX_PENDING_FORGOTTEN + 100;
    let mut f = Fake::new(cap);
    let mut c = Checkpointer::default();
    let storm = |f: &mut Fake, from: u64, n: usize| {
        for i in from..from + n as u64 {
            let a = std::net::Ipv6Addr::from((0x2001_0db8_u128 << 96) | u128::from(i));
            f.ips.observe_key(a.into(), None, 1, "exim", "l", t0());
        }
    };
    // Never saved: evicted without a trace.
    storm(&mut f, 0, cap + 50);
    assert!(checkpoint(dir.path(), &mut c, &mut f, 1).full);
    storm(&mut f, 1_000_000, 10);
    assert_eq!(f.pending_keys(), 20, "10 new keys, 10 saved keys evicted");
    assert!(!checkpoint(dir.path(), &mut c, &mut f, 2).full);
    // Saved keys evicted beyond what a delta lists.
    storm(&mut f, 2_000_000, cap);
    assert_eq!(f.pending_keys(), usize::MAX);
    assert!(checkpoint(dir.path(), &mut c, &mut f, 3).full);
    assert!(Fake::from_state(load(dir.path()).unwrap(), cap).same_as(&f));
}

/// Issue 17: a key counted and forgotten between two checkpoints (a login that succeeded, say)
/// leaves no trace in the journal; forgetting a saved key is written.
#[test]
fn keys_counted_and_forgotten_between_checkpoints_are_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fake::new(100);
    let mut c = Checkpointer::default();
    f.ips.observe_key(ip(1), Some("a"), 1, "exim", "l1", t0());
    assert!(checkpoint(dir.path(), &mut c, &mut f, 1).full);
    let ghost: IpAddr = "2001:db8:ffff::77".parse().unwrap();
    f.ips
        .observe_key(ghost, Some("ghost"), 1, "exim", "ghost line", t0());
    f.ips.forget(&ghost);
    f.ips.forget(&ip(1));
    assert!(!checkpoint(dir.path(), &mut c, &mut f, 2).full);
    let journal = std::fs::read_to_string(dir.path().join("detectors-1.journal")).unwrap();
    assert!(
        !journal.contains("ffff") && !journal.contains("ghost"),
        "{journal}"
    );
    assert!(
        journal.contains(&format!(r#""forgotten":["{}"]"#, ip(1))),
        "{journal}"
    );
    let back = Fake::from_state(load(dir.path()).unwrap(), 100);
    assert_eq!(back.ips.tracked(), 0);
}
