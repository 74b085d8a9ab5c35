//! Tests of the detectors: windows, cooldowns, caps, snapshots.

use super::key::{MemberName, Members};
use super::*;
use crate::clock::{Clock, ManualClock};
use jiff::SignedDuration;

fn settings() -> DetectorSettings {
    DetectorSettings {
        attempts: 5,
        window: Duration::from_secs(600),
        cooldown: Duration::from_secs(3600),
        max_tracked_ips: 1000,
        top_accounts: 2,
        log_lines: 3,
        min_distinct_members: 0,
    }
}

fn hit(ip: &str, user: Option<&str>) -> Hit {
    Hit {
        time: None,
        ip: ip.parse().unwrap(),
        user: user.map(str::to_string),
        service: "exim",
        attempts: 1,
        kind: HitKind::Failure,
    }
}

fn t0() -> Timestamp {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

#[test]
fn fifth_attempt_inside_window_alerts_once() {
    let clock = ManualClock::new(t0());
    let mut d = IpDetector::new(settings());
    for i in 0..4 {
        assert_eq!(
            d.observe(&hit("203.0.113.7", Some("a")), "l", clock.now()),
            None,
            "{i}"
        );
        clock.advance(SignedDuration::from_secs(60));
    }
    let a = d
        .observe(&hit("203.0.113.7", Some("b")), "l", clock.now())
        .expect("fifth attempt alerts");
    assert_eq!(a.attempts_in_window, 5);
    assert_eq!(a.attempts_total, 5);
    assert_eq!(a.alert_number, 1);
    assert_eq!(a.first_seen, t0());
    assert_eq!(
        a.top_members,
        vec![("a".to_string(), 4), ("b".to_string(), 1)]
    );
}

#[test]
fn attempts_spread_wider_than_the_window_never_alert() {
    let clock = ManualClock::new(t0());
    let mut d = IpDetector::new(settings());
    for _ in 0..50 {
        assert_eq!(d.observe(&hit("203.0.113.8", None), "l", clock.now()), None);
        // 4 attempts per 600 s at most: one every 151 s.
        clock.advance(SignedDuration::from_secs(151));
    }
}

#[test]
fn window_edge_is_inclusive() {
    // Failures at t, t+150, t+300, t+450, t+600: all five lie in [t+600-600, t+600].
    let mut d = IpDetector::new(settings());
    let mut last = None;
    for k in 0..5 {
        let at = t0() + SignedDuration::from_secs(150 * k);
        last = d.observe(&hit("203.0.113.9", None), "l", at);
    }
    assert_eq!(last.map(|a| a.attempts_in_window), Some(5));
    // One second more and the first falls out.
    let mut d = IpDetector::new(settings());
    let mut last = None;
    for k in 0..5 {
        let at = t0() + SignedDuration::from_secs(150 * k + if k == 4 { 1 } else { 0 });
        last = d.observe(&hit("203.0.113.9", None), "l", at);
    }
    assert_eq!(last, None);
}

#[test]
fn cooldown_counts_silently_then_reports_total() {
    let clock = ManualClock::new(t0());
    let mut d = IpDetector::new(settings());
    let mut alerts = Vec::new();
    // 5 quick attempts: alert. Then 40 more over 50 minutes: silent.
    for _ in 0..45 {
        if let Some(a) = d.observe(&hit("198.51.100.4", Some("x")), "l", clock.now()) {
            alerts.push(a);
        }
        clock.advance(SignedDuration::from_secs(75));
    }
    assert_eq!(alerts.len(), 1);
    // Past the hour since the first alert: the next crossing alerts again.
    // The first alert went out at t0+300 s; the cooldown ends at t0+3900 s.
    clock.set(t0() + SignedDuration::from_secs(3600 + 300 + 10));
    let mut again = None;
    for _ in 0..5 {
        again = again.or(d.observe(&hit("198.51.100.4", Some("x")), "l", clock.now()));
    }
    let a = again.expect("alert after cooldown");
    assert_eq!(a.alert_number, 2);
    assert_eq!(a.attempts_total, 50);
    assert_eq!(a.attempts_since_last_alert, 45);
    assert_eq!(a.previous_alert, Some(alerts[0].last_seen));
}

#[test]
fn a_line_with_many_attempts_counts_them_all() {
    let mut d = IpDetector::new(settings());
    let mut h = hit("192.0.2.77", Some("alice"));
    h.attempts = 5;
    let a = d
        .observe(&h, "l", t0())
        .expect("one line with 5 attempts crosses");
    assert_eq!(a.attempts_total, 5);
}

#[test]
fn success_hits_are_not_counted() {
    let mut d = IpDetector::new(settings());
    let mut h = hit("192.0.2.78", Some("alice"));
    h.kind = HitKind::Success;
    for _ in 0..10 {
        assert_eq!(d.observe(&h, "l", t0()), None);
    }
    assert_eq!(d.tracked(), 0);
}

#[test]
fn other_ips_do_not_add_up() {
    let mut d = IpDetector::new(settings());
    for i in 0..20 {
        assert_eq!(
            d.observe(&hit(&format!("192.0.2.{i}"), None), "l", t0()),
            None
        );
    }
}

#[test]
fn tracked_ips_are_capped_and_least_recent_evicted() {
    let mut s = settings();
    s.max_tracked_ips = 100;
    let mut d = IpDetector::new(s);
    // One IP keeps attacking while 10,000 one-shot IPv6 addresses pass by.
    let mut alerted = false;
    for i in 0..10_000u32 {
        let v6 = format!("2001:db8:{:x}:{:x}::1", i >> 16, i & 0xffff);
        d.observe(&hit(&v6, None), "l", t0());
        if i % 50 == 0 {
            alerted |= d.observe(&hit("203.0.113.50", None), "l", t0()).is_some();
        }
    }
    assert!(d.tracked() <= 100);
    assert!(d.evictions() >= 9_900);
    assert!(alerted, "the persistent attacker stays tracked");
}

#[test]
fn snapshot_restores_windows_and_cooldowns() {
    let mut d = IpDetector::new(settings());
    for k in 0..4 {
        d.observe(
            &hit("203.0.113.70", Some("a")),
            "l",
            t0() + SignedDuration::from_secs(k),
        );
    }
    for k in 0..5 {
        d.observe(
            &hit("203.0.113.71", Some("a")),
            "l",
            t0() + SignedDuration::from_secs(k),
        );
    }
    let json = serde_json::to_string(&d.snapshot()).unwrap();
    let mut d2 = IpDetector::new(settings());
    d2.restore(serde_json::from_str(&json).unwrap());
    // The fifth attempt after the restart crosses: the four before it were kept.
    let a = d2.observe(
        &hit("203.0.113.70", Some("a")),
        "l",
        t0() + SignedDuration::from_secs(9),
    );
    assert_eq!(a.map(|a| a.attempts_total), Some(5));
    // The other IP is in its cooldown: no second alert.
    let b = d2.observe(
        &hit("203.0.113.71", Some("a")),
        "l",
        t0() + SignedDuration::from_secs(9),
    );
    assert_eq!(b, None);
    assert_eq!(
        d2.service_name(d2.ips.peek(&"203.0.113.71".parse().unwrap()).unwrap()),
        "exim"
    );
}

#[test]
fn snapshot_drops_ips_older_than_window_and_cooldown() {
    let mut d = IpDetector::new(settings());
    d.observe(&hit("203.0.113.80", None), "l", t0());
    d.observe(
        &hit("203.0.113.81", None),
        "l",
        t0() + SignedDuration::from_secs(7200),
    );
    let snap = d.snapshot();
    assert_eq!(snap.len(), 1);
}

#[test]
fn accounts_and_lines_are_bounded() {
    let mut s = settings();
    s.attempts = 1_000_000;
    let mut d = IpDetector::new(s);
    let long = "u".repeat(10_000);
    for i in 0..1000 {
        d.observe(
            &hit("203.0.113.60", Some(&format!("{i}{long}"))),
            &long,
            t0(),
        );
    }
    let st = d.ips.peek(&"203.0.113.60".parse().unwrap()).unwrap();
    assert_eq!(st.members.len(), MAX_MEMBERS_PER_KEY);
    assert!(st
        .members
        .list()
        .iter()
        .all(|m| m.name.text().chars().count() <= MAX_ACCOUNT_CHARS + 1));
    assert_eq!(d.lines_of(st).len(), 3);
    assert!(d
        .lines_of(st)
        .iter()
        .all(|l| l.chars().count() <= MAX_QUOTED_LINE_CHARS + 1));
    assert_eq!(st.cold().overflow_names, 1000 - MAX_MEMBERS_PER_KEY as u64);
}

#[test]
fn snapshot_json_round_trip_is_exact_and_the_live_view_writes_the_same() {
    let mut s = settings();
    s.attempts = 3;
    let mut d = IpDetector::new(s.clone());
    for k in 0..40i64 {
        let ip = format!("2001:db8:{:x}::{:x}", k % 7, k);
        let user = format!("user{}", k % 23);
        d.observe(
            &hit(&ip, Some(&user)),
            &format!("line {k} \"quoted\" ✓"),
            t0() + SignedDuration::from_secs(k * 17),
        );
        // One key with many members (past the member index threshold) and alerts.
        d.observe(
            &hit("198.51.100.9", Some(&user)),
            "l",
            t0() + SignedDuration::from_secs(k * 17),
        );
    }
    let owned = d.snapshot();
    let from_owned = serde_json::to_string(&owned).unwrap();
    let from_view = serde_json::to_string(&d.view()).unwrap();
    assert_eq!(from_owned, from_view);
    let back: DetectorSnapshot<IpAddr> = serde_json::from_str(&from_view).unwrap();
    assert_eq!(back, owned);
    // Compact: no field names, no RFC 3339 times.
    assert!(!from_view.contains("first_seen") && !from_view.contains("2026-"));
    // A restored detector continues exactly: the next observation alerts the same way.
    let mut d2 = IpDetector::new(s);
    d2.restore(back);
    let at = t0() + SignedDuration::from_secs(40 * 17 + 4000);
    for _ in 0..2 {
        let a = d.observe(&hit("198.51.100.9", Some("zz")), "l", at);
        let b = d2.observe(&hit("198.51.100.9", Some("zz")), "l", at);
        assert_eq!((a, b), (None, None));
    }
    let a = d.observe(&hit("198.51.100.9", Some("zz")), "l", at);
    let b = d2.observe(&hit("198.51.100.9", Some("zz")), "l", at);
    assert_eq!(a, b);
    assert_eq!(
        a.map(|a| (a.alert_number, a.distinct_members)),
        Some((2, 24))
    );
}

#[test]
fn snapshot_keeps_alerted_keys_for_the_cooldown_and_drops_expired_quiet_ones() {
    let mut d = IpDetector::new(settings());
    // Alerted at t0 (5 attempts): its cooldown (1 h) holds until t0 + 3600.
    for _ in 0..5 {
        d.observe(&hit("203.0.113.90", None), "l", t0());
    }
    // Seen at t0 but never alerted: its window (600 s) ends at t0 + 600.
    d.observe(&hit("203.0.113.91", None), "l", t0());
    d.observe(
        &hit("203.0.113.92", None),
        "l",
        t0() + SignedDuration::from_secs(1800),
    );
    let keys = |d: &IpDetector| -> Vec<String> {
        d.snapshot()
            .ips
            .iter()
            .map(|(k, _)| k.to_string())
            .collect()
    };
    assert_eq!(keys(&d), vec!["203.0.113.90", "203.0.113.92"]);
    d.observe(
        &hit("203.0.113.92", None),
        "l",
        t0() + SignedDuration::from_secs(3601),
    );
    assert_eq!(keys(&d), vec!["203.0.113.92"]);
}

#[test]
fn members_past_the_index_threshold_are_still_found() {
    let mut m = Members::default();
    let name = |i: u32| MemberName::Text(format!("u{i}").into());
    for i in 0..40u32 {
        m.push(Member {
            name: name(i),
            attempts: i,
            last: 0,
        });
    }
    assert!(matches!(m, Members::Indexed(_)));
    for i in 0..40u32 {
        assert_eq!(m.get_mut(&name(i)).map(|x| x.attempts), Some(i));
    }
    assert!(m.get_mut(&name(40)).is_none());
}

#[test]
fn a_snapshot_and_the_deltas_after_it_restore_the_same_detector() {
    let mut s = settings();
    s.attempts = 3;
    let mut d = IpDetector::new(s.clone());
    let at = |k: i64| t0() + SignedDuration::from_secs(k);
    for k in 0..30i64 {
        let ip = format!("2001:db8:{:x}::{:x}", k % 5, k);
        d.observe(
            &hit(&ip, Some(&format!("u{}", k % 4))),
            &format!("line {k}"),
            at(k),
        );
    }
    let snap = serde_json::to_string(&d.snapshot()).unwrap();
    d.mark_written();
    // Nothing changed: an empty delta.
    let empty = serde_json::to_string(&d.delta()).unwrap();
    assert!(
        empty.contains(r#""keys":[]"#) && empty.contains(r#""forgotten":[]"#),
        "{empty}"
    );

    // Changes: old keys counted again (one alerts), new keys, one key forgotten.
    let mut deltas = Vec::new();
    for round in 0..3i64 {
        for k in 0..10i64 {
            let ip = format!("2001:db8:{:x}::{:x}", k % 5, k * (round + 1));
            d.observe(
                &hit(&ip, Some("admin")),
                &format!("r{round} {k}"),
                at(40 + round * 10 + k),
            );
        }
        if round == 1 {
            d.forget(&"2001:db8:1::1".parse().unwrap());
        }
        let delta = serde_json::to_string(&d.delta()).unwrap();
        // Written keys are not written again.
        assert!(serde_json::to_string(&d.delta())
            .unwrap()
            .contains(r#""keys":[]"#));
        deltas.push(delta);
    }
    // Only what changed: much less than a full snapshot.
    assert!(deltas[2].len() < serde_json::to_string(&d.view()).unwrap().len() / 2);

    let mut back = IpDetector::new(s);
    back.restore(serde_json::from_str(&snap).unwrap());
    for delta in &deltas {
        back.apply(serde_json::from_str(delta).unwrap());
    }
    assert_eq!(back.snapshot(), d.snapshot());
    assert!(back.ips.peek(&"2001:db8:1::1".parse().unwrap()).is_none());
    assert_eq!(back.tracked(), d.tracked());
}
