//! Tests of the engine's hooks into the administrator's decisions (`authwatch allow | silence
//! | ack`): an allow stops counting at once, a silence keeps mail back but the incident is
//! counted and listed, an ack holds back repeats and digest lines until the class changes.

use super::engine::Engine;
use crate::clock::ManualClock;
use crate::config::Config;
use crate::control::{decisions::parse_net, incident_id, Decisions, Target};
use crate::hostinfo::HostInfo;
use jiff::{SignedDuration, Timestamp};
use std::path::Path;
use std::sync::{Arc, Mutex};

fn setup() -> (Engine, Arc<ManualClock>, Arc<Mutex<Decisions>>) {
    setup_with("")
}

fn setup_with(extra: &str) -> (Engine, Arc<ManualClock>, Arc<Mutex<Decisions>>) {
    let clock = Arc::new(ManualClock::new("2026-11-23T12:00:00Z".parse().unwrap()));
    let cfg = Config::from_yaml(
        &format!("state_dir: /tmp/unused\ntime_zone: UTC\nsources: [{{path: /tmp/unused.log}}]\nhost: {{name: mx1.test, ip: 192.0.2.25}}\nmail: {{to: [admin@example.test]}}\nalerts: {{cooldown: 10m, group_interval: 1m}}\n{extra}"),
        "test.yaml",
        Path::new("/"),
    )
    .unwrap();
    let host = HostInfo::discover(&cfg.host);
    let mut e = Engine::new(&cfg, &host, clock.clone()).unwrap();
    let d = Arc::new(Mutex::new(Decisions::default()));
    e.set_decisions(d.clone());
    (e, clock, d)
}

fn fail(sec: u32, ip: &str) -> String {
    format!(
        "2026-11-23 10:{:02}:{:02} dovecot_plain authenticator failed for (x) [{ip}]:4000: 535 Incorrect authentication data (set_id=alice)",
        sec / 60,
        sec % 60
    )
}

fn login(sec: u32, ip: &str) -> String {
    format!(
        "2026-11-23 10:{:02}:{:02} 1vAbCd-0001Xy-Q1 <= alice H=(laptop) [{ip}]:51544 P=esmtpsa A=dovecot_plain:alice S=2121 id=1a2b@example.com",
        sec / 60,
        sec % 60
    )
}

fn now(c: &ManualClock) -> Timestamp {
    use crate::clock::Clock;
    c.now()
}

#[test]
fn an_allow_stops_counting_at_once() {
    let (mut e, clock, d) = setup();
    for i in 0..3 {
        assert!(e.line(0, &fail(i, "203.0.113.7")).is_empty());
    }
    d.lock()
        .unwrap()
        .allow(
            parse_net("203.0.113.0/24").unwrap(),
            None,
            "root",
            now(&clock),
        )
        .unwrap();
    for i in 3..30 {
        assert!(e.line(0, &fail(i, "203.0.113.7")).is_empty(), "line {i}");
    }
    // Removed: counting goes on from the three seen before.
    d.lock()
        .unwrap()
        .remove_allow(&parse_net("203.0.113.0/24").unwrap());
    assert!(e.line(0, &fail(40, "203.0.113.7")).is_empty());
    assert_eq!(e.line(0, &fail(41, "203.0.113.7")).len(), 1);
}

#[test]
fn a_silenced_ip_sends_no_mail_but_is_counted_and_listed() {
    let (mut e, clock, d) = setup();
    let until = now(&clock) + SignedDuration::from_hours(24);
    d.lock()
        .unwrap()
        .silence(
            Target::parse("203.0.113.7").unwrap(),
            until,
            Some("our scanner".into()),
            "root",
            now(&clock),
        )
        .unwrap();
    for i in 0..9 {
        assert!(e.line(0, &fail(i, "203.0.113.7")).is_empty(), "line {i}");
    }
    clock.advance(SignedDuration::from_mins(2));
    assert!(e.tick().is_empty(), "no digest line either");
    let list = e.incidents();
    assert_eq!(list.len(), 1, "{list:?}");
    let i = &list[0];
    assert_eq!(i.id, incident_id("ip_burst", "203.0.113.7"));
    assert!(i.silenced);
    assert_eq!(i.attempts, 9);
    assert_eq!(i.service, "exim");
    assert_eq!(i.first_attempt, "2026-11-23 10:00:00 UTC");
    assert_eq!(i.last_attempt, "2026-11-23 10:00:08 UTC");
    assert!(
        i.done
            .iter()
            .any(|d| d.starts_with("silenced until 2026-11-24") && d.contains("our scanner")),
        "{:?}",
        i.done
    );
    // A login after the failures is never silenced.
    let urgent = e.line(0, &login(20, "203.0.113.7"));
    assert_eq!(urgent.len(), 1);
    assert!(
        urgent[0].subject.contains("URGENT"),
        "{}",
        urgent[0].subject
    );
}

/// The same attack, with or without an ack after the first alert: the mails after it.
fn after_first_alert(ack: bool) -> Vec<String> {
    let (mut e, clock, d) = setup();
    let mut first = Vec::new();
    for i in 0..5 {
        first.extend(e.line(0, &fail(i, "203.0.113.7")));
    }
    assert_eq!(first.len(), 1);
    assert!(
        first[0]
            .text
            .contains(&incident_id("ip_burst", "203.0.113.7"))
            || !first[0].text.contains("authwatch ack"),
        "an alert that prints the ack command prints this incident's id"
    );
    if ack {
        let id = incident_id("ip_burst", "203.0.113.7");
        d.lock().unwrap().ack(&id, "root", now(&clock)).unwrap();
    }
    let mut later = Vec::new();
    for i in 5..20 {
        later.extend(e.line(0, &fail(i, "203.0.113.7")));
    }
    clock.advance(SignedDuration::from_mins(2));
    later.extend(e.tick());
    later.extend(e.line(0, &login(40, "203.0.113.7")));
    later.into_iter().map(|r| r.subject).collect()
}

#[test]
fn an_ack_holds_back_repeats_until_the_class_changes() {
    let without = after_first_alert(false);
    assert_eq!(
        without.len(),
        2,
        "a digest and the urgent alert: {without:?}"
    );
    let with = after_first_alert(true);
    assert_eq!(with.len(), 1, "only the urgent alert: {with:?}");
    assert!(with[0].contains("URGENT"), "{with:?}");
}

#[test]
fn incidents_say_what_the_actions_did() {
    let (mut e, _clock, _d) = setup_with(
        "actions:\n  - {name: fw, program: /bin/echo, args: ['blocked', '{ip}'], on: [ip_burst]}\n",
    );
    for i in 0..5 {
        assert!(
            e.line(0, &fail(i, "203.0.113.7")).is_empty(),
            "waits for its action"
        );
    }
    assert_eq!(e.run_pending_blocking().len(), 1);
    let list = e.incidents();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].done, ["fw: exit 0", "mailed"], "{:?}", list[0]);
    assert_eq!(list[0].kind_name, "IP burst");
}

#[test]
fn a_reload_keeps_the_decisions() {
    let (mut e, clock, d) = setup();
    d.lock()
        .unwrap()
        .allow(parse_net("203.0.113.7").unwrap(), None, "root", now(&clock))
        .unwrap();
    let text = |extra: &str| {
        Config::from_yaml(
            &format!("state_dir: /tmp/unused\ntime_zone: UTC\nsources: [{{path: /tmp/unused.log}}]\nhost: {{name: mx1.test, ip: 192.0.2.25}}\nmail: {{to: [admin@example.test]}}\nalerts: {{cooldown: 10m, group_interval: 1m}}\n{extra}"),
            "test.yaml",
            Path::new("/"),
        )
        .unwrap()
    };
    let (old, new) = (
        text(""),
        text("detect: {per_ip: {attempts: 3, window: 10m}}\n"),
    );
    let host = HostInfo::discover(&old.host);
    e.reload(&old, &new, &host).unwrap();
    assert!(
        Arc::ptr_eq(&e.decisions(), &d),
        "the socket's copy is the engine's"
    );
    for i in 0..10 {
        assert!(e.line(0, &fail(i, "203.0.113.7")).is_empty(), "line {i}");
    }
}
