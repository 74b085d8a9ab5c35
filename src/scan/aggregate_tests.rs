//! Tests of the scan aggregate: the window at one-second resolution, crossings, caps on IPs and
//! accounts, cut names, subnets, the hourly chart and successes.

use super::*;
use jiff::SignedDuration;

fn hit(ip: &str, user: Option<&str>, attempts: u32) -> Hit {
    Hit {
        time: None,
        ip: ip.parse().unwrap(),
        user: user.map(str::to_string),
        service: "exim",
        attempts,
        kind: HitKind::Failure,
    }
}

fn t0() -> Timestamp {
    "2026-11-01T00:00:00Z".parse().unwrap()
}

fn at(secs: i64) -> Option<Timestamp> {
    Some(t0() + SignedDuration::from_secs(secs))
}

#[test]
fn window_is_inclusive_at_one_second_resolution() {
    // Five failures spanning exactly 600 s cross; spanning 601 s do not.
    for (span, crosses) in [(599, true), (600, true), (601, false)] {
        let mut a = Aggregate::new(5, 600, Caps::default());
        for k in 0..5 {
            let off = if k == 4 { span } else { k * 100 };
            a.observe(&hit("192.0.2.1", None, 1), at(off), 0, k as u64 + 1);
        }
        let c = a.crossing("192.0.2.1".parse().unwrap());
        assert_eq!(c.is_some(), crosses, "span {span}");
        if let Some(c) = c {
            assert_eq!((c.line, c.in_window), (5, 5));
            assert_eq!(Some(c.time), at(span));
        }
    }
}

#[test]
fn sub_second_stamps_count_by_their_second() {
    let mut a = Aggregate::new(2, 10, Caps::default());
    let base = t0();
    a.observe(&hit("192.0.2.2", None, 1), Some(base), 0, 1);
    // 10.999 s later, but its second is 10 s later: inside [t-10, t].
    let later = base + SignedDuration::from_millis(10_999);
    a.observe(&hit("192.0.2.2", None, 1), Some(later), 0, 2);
    assert!(a.crossing("192.0.2.2".parse().unwrap()).is_some());
}

#[test]
fn a_line_of_several_attempts_can_cross_alone_and_lines_without_time_never_cross() {
    let mut a = Aggregate::new(5, 600, Caps::default());
    a.observe(&hit("192.0.2.3", Some("x"), 5), at(0), 0, 7);
    assert_eq!(a.crossing("192.0.2.3".parse().unwrap()).unwrap().line, 7);
    for i in 0..10 {
        a.observe(&hit("192.0.2.4", Some("x"), 1), None, 0, i);
    }
    assert!(a.crossing("192.0.2.4".parse().unwrap()).is_none());
    let f = a.figures(&TimeZone::UTC, None);
    let o = f.offenders.iter().find(|o| o.ip.to_string() == "192.0.2.4");
    assert_eq!(o.map(|o| (o.attempts, o.first_seen)), Some((10, None)));
    assert_eq!(f.limits.attempts_without_time, 10);
}

#[test]
fn accounts_per_ip_are_capped_and_totals_stay_exact() {
    let caps = Caps {
        accounts_per_ip: 3,
        ..Caps::default()
    };
    let mut a = Aggregate::new(1_000, 600, caps);
    for i in 0..10 {
        for _ in 0..=i {
            a.observe(&hit("198.51.100.1", Some(&format!("u{i}")), 1), at(i), 0, 1);
        }
    }
    // The same names from a second IP: every account has 2 distinct IPs.
    for i in 0..10 {
        a.observe(&hit("198.51.100.2", Some(&format!("u{i}")), 1), at(i), 0, 1);
    }
    let f = a.figures(&TimeZone::UTC, None);
    let o = &f.offenders[0];
    assert_eq!(o.ip.to_string(), "198.51.100.1");
    assert_eq!(o.attempts, 55);
    assert_eq!(o.accounts.len(), 3);
    let listed: u64 = o.accounts.iter().map(|a| a.count).sum();
    assert_eq!(listed + o.other_account_attempts, 55);
    assert_eq!(f.accounts.len(), 10);
    assert!(f.accounts.iter().all(|r| r.ips == 2), "{:?}", f.accounts);
    assert_eq!(&*f.accounts[0].name, "u9");
    assert_eq!(f.accounts[0].attempts, 11);
}

#[test]
fn ips_beyond_the_cap_are_counted_not_tracked() {
    let caps = Caps {
        ips: 10,
        ..Caps::default()
    };
    let mut a = Aggregate::new(5, 600, caps);
    for i in 0..1000u32 {
        let ip = format!("2001:db8::{i:x}");
        a.observe(&hit(&ip, Some("root"), 1), at(0), 0, 1);
    }
    assert_eq!(a.tracked_ips(), 10);
    assert_eq!(a.failures, 1000);
    let f = a.figures(&TimeZone::UTC, None);
    assert_eq!(f.limits.attempts_from_untracked_ips, 990);
}

#[test]
fn long_account_names_are_cut() {
    let mut a = Aggregate::new(5, 600, Caps::default());
    let long = "é".repeat(10_000);
    a.observe(&hit("192.0.2.9", Some(&long), 1), at(0), 0, 1);
    let f = a.figures(&TimeZone::UTC, None);
    assert_eq!(f.accounts[0].name.chars().count(), MAX_ACCOUNT_CHARS);
}

#[test]
fn subnets_need_two_addresses() {
    let mut a = Aggregate::new(5, 600, Caps::default());
    for ip in ["203.0.113.1", "203.0.113.200", "198.51.100.1"] {
        a.observe(&hit(ip, None, 2), at(0), 0, 1);
    }
    for ip in [
        "2001:db8:a11:77::1",
        "2001:db8:a11:77:ffff::2",
        "2001:db8:a11:78::1",
    ] {
        a.observe(&hit(ip, None, 1), at(60), 0, 1);
    }
    let f = a.figures(&TimeZone::UTC, None);
    let nets: Vec<(String, u64, u64)> = f
        .subnets
        .iter()
        .map(|s| (s.subnet.clone(), s.addresses, s.attempts))
        .collect();
    assert_eq!(
        nets,
        vec![
            ("203.0.113.0/24".to_string(), 2, 4),
            ("2001:db8:a11:77::/64".to_string(), 2, 2)
        ]
    );
}

#[test]
fn hourly_is_dense_between_first_and_last_hour() {
    let mut a = Aggregate::new(5, 600, Caps::default());
    a.observe(&hit("192.0.2.1", None, 3), at(10), 0, 1);
    a.observe(&hit("192.0.2.1", None, 1), at(3 * 3600 + 5), 0, 2);
    let f = a.figures(&TimeZone::UTC, None);
    let h: Vec<u64> = f.hourly.iter().map(|r| r.attempts).collect();
    assert_eq!(h, vec![3, 0, 0, 1]);
    assert_eq!(f.hourly[0].hour, "2026-11-01T00:00:00+00:00");
}

#[test]
fn successes_are_not_attempts() {
    let mut a = Aggregate::new(5, 600, Caps::default());
    let mut h = hit("192.0.2.50", Some("alice"), 1);
    h.kind = HitKind::Success;
    a.observe(&h, at(0), 0, 1);
    a.observe(&hit("192.0.2.50", Some("alice"), 1), at(1), 0, 2);
    let f = a.figures(&TimeZone::UTC, None);
    assert_eq!(f.offenders.len(), 1);
    assert_eq!((f.offenders[0].attempts, f.offenders[0].successes), (1, 1));
    assert_eq!(f.accounts[0].attempts, 1);
}
