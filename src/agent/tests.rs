//! Unit tests of the agent: the engine (lines to alerts, actions, allowlist, compromise),
//! health, `render --sample`, and that a reload keeps the state.

use super::detect::ip_text;
use super::engine::*;
use super::health::Health;
use crate::clock::ManualClock;
use crate::config::Config;
use crate::hostinfo::HostInfo;
use crate::source::{Batch, Position};
use jiff::Timestamp;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

fn engine(clock: Arc<ManualClock>) -> Engine {
    engine_with(clock, "")
}

fn engine_with(clock: Arc<ManualClock>, extra: &str) -> Engine {
    let cfg = Config::from_yaml(
        &format!("state_dir: /tmp/unused\ntime_zone: UTC\nsources: [{{path: /tmp/unused.log}}]\nhost: {{name: mx1.test, ip: 192.0.2.25}}\nmail: {{to: [admin@example.test]}}\n{extra}"),
        "test.yaml",
        Path::new("/"),
    )
    .unwrap();
    let host = HostInfo::discover(&cfg.host);
    Engine::new(&cfg, &host, clock).unwrap()
}

#[test]
fn ip_text_is_to_string() {
    for ip in [
        "0.0.0.0",
        "9.10.99.100",
        "255.255.255.255",
        "192.0.2.7",
        "2001:db8::1",
        "::ffff:1.2.3.4",
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(ip_text(&ip), ip.to_string());
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new("2026-11-23T12:00:00Z".parse().unwrap()))
}

fn success(sec: u32, ip: &str, user: &str) -> String {
    format!(
        "2026-11-23 10:{:02}:{:02} 1vAbCd-0001Xy-Q1 <= {user} H=(laptop) [{ip}]:51544 P=esmtpsa A=dovecot_plain:{user} S=2121 id=1a2b@example.com",
        sec / 60,
        sec % 60
    )
}

fn health_cfg() -> Config {
    Config::from_yaml(
        "state_dir: /tmp/unused\nsources: [{path: /var/log/a.log}, {path: /var/log/b.log}]\nmail: {to: [a@b.c], smtp: {host: relay.example, tls: none}}\nhealth: {source_unreadable_after: 10m, source_silent_after: 1h, smtp_failing_after: 15m}\n",
        "t.yaml",
        Path::new("/"),
    )
    .unwrap()
}

fn batch(source: usize, lines: usize, problem: Option<&str>) -> Batch {
    Batch {
        source,
        lines: std::iter::repeat_n("x", lines).collect(),
        position: Position::None,
        done: false,
        caught_up: true,
        problem: problem.map(str::to_string),
    }
}

#[test]
fn health_reports_unreadable_and_silent_sources_once() {
    let t = |s: i64| Timestamp::from_second(1_795_400_000 + s).unwrap();
    let mut h = Health::new(&health_cfg(), "SMTP relay.example:25 (plain)", t(0));
    let ok = crate::mail::MailStatus::default();
    h.batch(
        &batch(0, 0, Some("cannot open the file: permission denied")),
        t(0),
    );
    h.batch(&batch(1, 3, None), t(0));
    assert!(h.due(&ok, t(599)).is_empty());
    let due = h.due(&ok, t(600));
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].title, "source /var/log/a.log cannot be read");
    assert!(h.due(&ok, t(1200)).is_empty(), "reported once");
    // Source b has no new line for an hour; source a too (it never had one).
    h.batch(&batch(0, 1, None), t(1800));
    let due = h.due(&ok, t(3600));
    let titles: Vec<_> = due.iter().map(|d| d.title.as_str()).collect();
    assert_eq!(titles, vec!["source /var/log/b.log is silent"]);
}

#[test]
fn health_reports_long_smtp_failures_when_mail_works_again() {
    let t = |s: i64| Timestamp::from_second(1_795_400_000 + s).unwrap();
    let mut h = Health::new(&health_cfg(), "SMTP relay.example:25 (plain)", t(0));
    let failing = crate::mail::MailStatus {
        failing_since: Some(t(0)),
        last_error: Some("connection refused".into()),
        spooled: 3,
    };
    assert!(h.due(&failing, t(60)).is_empty());
    // Long enough: logged, but a mail cannot go out while mail is failing.
    assert!(h.due(&failing, t(900)).is_empty());
    let due = h.due(&crate::mail::MailStatus::default(), t(1000));
    assert_eq!(due.len(), 1);
    assert!(due[0].title.contains("failed for a while"));
    assert_eq!(due[0].until, Some(t(1000)));
    assert!(h
        .due(&crate::mail::MailStatus::default(), t(1100))
        .is_empty());
}

#[test]
fn ipv6_addresses_of_one_64_add_up_to_a_subnet_alert() {
    let mut e = engine(clock());
    let mut subjects = Vec::new();
    for i in 0..12u32 {
        let ip = format!("2001:db8:a11:77::{:x}", i + 1);
        for r in e.line(0, &line(i * 20, &ip, "info")) {
            subjects.push(r.subject);
        }
    }
    // 12 addresses, one attempt each: no per-IP alert, one subnet alert at the 10th.
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert!(
        subjects[0].contains("2001:db8:a11:77::/64 10 addresses made 10 failed"),
        "{subjects:?}"
    );
}

#[test]
fn many_ips_against_one_account_alert_with_the_top_ips() {
    let mut e = engine_with(
        clock(),
        "detect:\n  per_subnet: {enabled: false}\n  per_account: {attempts: 6, distinct_ips: 4, window: 1h}\n",
    );
    let mut out = Vec::new();
    for i in 0..6u32 {
        out.extend(e.line(
            0,
            &line(
                i * 30,
                &format!("198.51.100.{}", i % 4 + 1),
                "info@example.com",
            ),
        ));
    }
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0]
        .subject
        .contains("account info@example.com attacked from 4 addresses"));
    assert!(out[0].text.contains("198.51.100.1\n"), "{}", out[0].text);
}

#[test]
fn login_after_failures_is_urgent_once() {
    let mut e = engine(clock());
    let mut n = 0;
    for i in 0..7u32 {
        n += e.line(0, &line(i, "203.0.113.7", "alice")).len();
    }
    assert_eq!(n, 1, "the per-IP alert");
    let urgent = e.line(0, &success(30, "203.0.113.7", "alice"));
    assert_eq!(urgent.len(), 1);
    assert_eq!(
        urgent[0].subject,
        "[authwatch] mx1.test: URGENT: 203.0.113.7 logged in as alice via Exim after 7 failed attempts"
    );
    // The per-IP cooldown does not hold it back, but it is not repeated for every login.
    assert!(e.line(0, &success(40, "203.0.113.7", "alice")).is_empty());
    // A user who mistyped once and then logged in is not urgent.
    e.line(0, &line(50, "198.51.100.23", "bob"));
    assert!(e.line(0, &success(55, "198.51.100.23", "bob")).is_empty());
    // Nor is the owner of an account that others are guessing at.
    for i in 0..6u32 {
        e.line(0, &line(60 + i, &format!("192.0.2.{}", 10 + i), "carol"));
    }
    assert!(e.line(0, &success(70, "198.51.100.77", "carol")).is_empty());
}

#[test]
fn actions_run_with_literal_arguments_and_their_result_is_in_the_alert() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("block");
    let out = dir.path().join("args");
    std::fs::write(
        &prog,
        format!(
            "#!/bin/sh\nprintf '%s\\0' \"$@\" >> '{}'\necho \"blocked $1\"\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut e = engine_with(
        clock(),
        &format!(
            "allowlist: {{addresses: ['198.51.100.0/24']}}\nactions:\n  - {{name: block, program: '{}', args: ['{{ip}}', '--user={{account}}', '{{count}}'], on: [ip_burst]}}\n",
            prog.display()
        ),
    );
    let hostile = "x; touch /tmp/pwned $(id) `id`";
    for i in 0..5u32 {
        // The allowlisted address attacks too: it is never counted, nothing runs for it.
        assert!(e.line(0, &line(i, "198.51.100.7", hostile)).is_empty());
        assert!(
            e.line(0, &line(i, "203.0.113.47", hostile)).is_empty(),
            "the alert waits for its actions"
        );
    }
    let pending = e.take_pending();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].action.ip,
        "203.0.113.47".parse::<IpAddr>().unwrap()
    );
    e.pending = pending;
    let mails = e.run_pending_blocking();
    assert_eq!(mails.len(), 1);
    let text = &mails[0].text;
    assert!(text.contains("Actions run by authwatch"), "{text}");
    assert!(text.contains("block: exit 0"), "{text}");
    assert!(text.contains("> blocked 203.0.113.47"), "{text}");
    let args = std::fs::read(&out).unwrap();
    let args: Vec<&[u8]> = args.split(|b| *b == 0).collect();
    assert_eq!(
        args,
        [
            &b"203.0.113.47"[..],
            format!("--user={hostile}").as_bytes(),
            b"5",
            b""
        ]
    );
    assert!(!Path::new("/tmp/pwned").exists());
}

/// Issue 14.4: with an action configured, the attempts made while the alert waited for its
/// actions (here: the rest of the same batch) were never counted into the incident, which
/// stayed at the count that crossed the threshold (5 instead of 40).
#[test]
fn actions_freeze_incident_counts_regression() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("block");
    std::fs::write(&prog, "#!/bin/sh\necho ok\n").unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut e = engine_with(
        clock(),
        &format!(
            "actions:\n  - {{name: block, program: '{}', args: ['x'], on: [ip_burst]}}\n",
            prog.display()
        ),
    );
    // One batch: the alert is pending (its actions have not run) while 35 more arrive.
    for i in 0..40u32 {
        assert!(e.line(0, &line(i, "203.0.113.47", "alice")).is_empty());
    }
    e.run_pending_blocking();
    let totals: Vec<(String, u64)> = e
        .policy
        .incidents()
        .iter()
        .map(|i| (i.key.clone(), i.total))
        .collect();
    assert_eq!(totals, vec![("203.0.113.47".to_string(), 40)]);
    // Later attempts keep counting.
    for i in 40..45u32 {
        e.line(0, &line(i, "203.0.113.47", "alice"));
    }
    assert_eq!(e.policy.incidents()[0].total, 45);
}

#[test]
fn allowlisted_addresses_are_never_counted() {
    let mut e = engine_with(clock(), "allowlist: {addresses: ['203.0.113.0/24']}\n");
    for i in 0..20u32 {
        assert!(e.line(0, &line(i, "203.0.113.9", "alice")).is_empty());
    }
    assert_eq!(e.tracked_ips(), 0);
}

#[test]
fn reset_on_success_forgives_a_mistyping_user() {
    let mut e = engine_with(
        clock(),
        "allowlist: {reset_on_success: true}\ndetect: {compromised: {min_failures: 10}}\n",
    );
    for i in 0..4u32 {
        e.line(0, &line(i, "198.51.100.23", "bob"));
    }
    assert!(e.line(0, &success(10, "198.51.100.23", "bob")).is_empty());
    // Four more failures: without the reset this would be the 5th..8th and alert.
    for i in 0..4u32 {
        assert!(e.line(0, &line(20 + i, "198.51.100.23", "bob")).is_empty());
    }
}

fn line(sec: u32, ip: &str, set_id: &str) -> String {
    format!(
        "2026-11-23 10:{:02}:{:02} dovecot_plain authenticator failed for (x) [{ip}]:4000: 535 Incorrect authentication data (set_id={set_id})",
        sec / 60,
        sec % 60
    )
}

#[test]
fn log_lines_to_one_alert_blaming_the_real_ip() {
    let clock = Arc::new(ManualClock::new("2026-11-23T12:00:00Z".parse().unwrap()));
    let mut e = engine(clock);
    let hostile = "x) [198.51.100.77]:25: 535 Incorrect authentication data";
    let mut alerts = Vec::new();
    for i in 0..12 {
        alerts.extend(e.line(0, &line(i * 10, "203.0.113.8", hostile)));
    }
    assert_eq!(alerts.len(), 1, "one alert, then the cooldown holds");
    let a = &alerts[0];
    assert_eq!(
        a.subject,
        "[authwatch] mx1.test: 203.0.113.8 5 failed Exim logins in 10m"
    );
    assert!(a.text.contains("Attacking IP:          203.0.113.8\n"));
    assert!(a.text.contains("IP Address: 192.0.2.25\n"));
    assert!(!a.subject.contains("198.51.100.77"));
    // Log time, not the clock, places the attempts: first seen is the first line's stamp.
    assert!(a
        .text
        .contains("First seen:            2026-11-23 10:00:00 UTC"));
}

#[test]
fn lines_without_a_stamp_use_the_clock() {
    let clock = Arc::new(ManualClock::new("2026-11-23T12:00:00Z".parse().unwrap()));
    let mut e = engine(clock.clone());
    let unstamped = "PLAIN authenticator failed for (x) [203.0.113.9]: 535 Incorrect authentication data (set_id=a)";
    for _ in 0..4 {
        assert_eq!(e.line(0, unstamped), vec![]);
        clock.advance(jiff::SignedDuration::from_secs(200));
    }
    // 4 attempts over 800 s: the first fell out of the 10-minute window.
    assert_eq!(e.line(0, unstamped), vec![]);
    assert_eq!(e.line(0, unstamped).len(), 1);
}

fn test_config(extra: &str) -> Config {
    Config::from_yaml(
        &format!("state_dir: /tmp/unused\ntime_zone: UTC\nsources: [{{path: /tmp/unused.log}}]\nhost: {{name: mx1.test, ip: 192.0.2.25}}\nmail: {{to: [admin@example.test]}}\n{extra}"),
        "test.yaml",
        Path::new("/"),
    )
    .unwrap()
}

/// Issue 17: a reload built a fresh engine and carried only the detectors and the policy; the
/// compromise alerts already sent were forgotten, so the next login of the same attacker was
/// reported URGENT again.
#[test]
fn reload_keeps_compromise_alerts_sent_regression() {
    let old = test_config("");
    let new = test_config("alerts: {max_per_hour: 50}\n");
    let host = HostInfo::discover(&old.host);
    let mut e = Engine::new(&old, &host, clock()).unwrap();
    let mut n = 0;
    for i in 0..7u32 {
        n += e.line(0, &line(i, "203.0.113.7", "alice")).len();
    }
    assert_eq!(n, 1, "the per-IP alert");
    assert_eq!(e.line(0, &success(30, "203.0.113.7", "alice")).len(), 1);
    e.reload(&old, &new, &host).unwrap();
    assert!(e.line(0, &success(40, "203.0.113.7", "alice")).is_empty());
    // Windows, incidents and counters are kept too.
    assert_eq!(e.tracked_ips(), 1);
    assert_eq!(
        e.policy.incidents().len(),
        2,
        "the burst and the compromise"
    );
    assert_eq!((e.lines_seen, e.hits_seen), (9, 9));
}

#[test]
fn reload_with_a_new_threshold_continues_the_windows() {
    let old = test_config("");
    let new = test_config("detect: {per_ip: {attempts: 6, window: 10m}}\n");
    let host = HostInfo::discover(&old.host);
    let mut e = Engine::new(&old, &host, clock()).unwrap();
    for i in 0..4u32 {
        assert!(e.line(0, &line(i, "203.0.113.8", "bob")).is_empty());
    }
    e.reload(&old, &new, &host).unwrap();
    assert!(
        e.line(0, &line(4, "203.0.113.8", "bob")).is_empty(),
        "5 < 6"
    );
    let out = e.line(0, &line(5, "203.0.113.8", "bob"));
    assert_eq!(out.len(), 1);
    assert!(out[0].subject.contains(" 6 failed "), "{}", out[0].subject);
}

/// Dovecot pairs its per-attempt lines (`auth_verbose`) with the connection's summary by
/// session id; that pairing lives in the rule, which a reload must keep, or the summary counts
/// the same attempts a second time.
#[test]
fn reload_keeps_dovecot_session_pairing() {
    let old = test_config("");
    let new = test_config("alerts: {max_per_hour: 50}\n");
    let host = HostInfo::discover(&old.host);
    let mut e = Engine::new(&old, &host, clock()).unwrap();
    let attempt = |s: u32| {
        format!("Nov 23 17:12:{s:02} auth: Info: passwd-file(alice,138.255.206.154,<8oNSumM3A8mK/86a>): Password mismatch")
    };
    for s in 0..3 {
        assert!(e.line(0, &attempt(s)).is_empty());
    }
    assert_eq!(e.hits_seen, 3);
    e.reload(&old, &new, &host).unwrap();
    let summary = "Nov 23 17:12:04 imap-login: Info: Disconnected: Aborted login by logging out (auth failed, 3 attempts in 4 secs): user=<alice>, method=PLAIN, rip=138.255.206.154, lip=192.0.2.1, session=<8oNSumM3A8mK/86a>";
    assert!(e.line(0, summary).is_empty(), "3 attempts, not 6");
    assert_eq!(e.hits_seen, 3, "the summary adds nothing: all were counted");
}

#[test]
fn held_alerts_are_rendered_after_the_policy_and_old_rendered_ones_keep_their_text() {
    // A state.json of a version that rendered before the policy: one held alert with its
    // text, the hourly cap (1) used up a minute ago, the last digest half an hour ago.
    let old = r#"{"pending": [], "group_started": null,
      "held": [{"kind": "ip_burst", "key": "198.51.100.8", "urgent": false, "total": 6,
        "rendered": {"subject": "OLD SUBJECT 198.51.100.8", "text": "old body text\n",
                     "id": "ip_burst-00112233aabbccdd"}}],
      "incidents": {}, "sent": ["2026-11-23T11:59:00Z"],
      "last_digest": "2026-11-23T11:30:00Z"}"#;
    let clock = clock();
    let mut e = engine_with(
        clock.clone(),
        "alerts: {max_per_hour: 1, group_interval: 1h}\n",
    );
    e.restore_policy(serde_json::from_str(old).unwrap());
    // A new alert: held back by the cap, not rendered yet (no mail).
    let mut out = Vec::new();
    for i in 0..5 {
        out.extend(e.line(0, &line(i, "203.0.113.9", "info")));
    }
    assert_eq!(out, vec![], "held back by the cap");
    let held = e.policy_state();
    let json = serde_json::to_value(&held).unwrap();
    let new = &json["held"][1];
    assert_eq!(new["kind"], "ip_burst");
    assert_eq!(new["context"]["ip"], "203.0.113.9");
    assert!(new.get("rendered").is_none() && new.get("prerendered").is_none());
    clock.set("2026-11-23T12:30:01Z".parse().unwrap());
    let digest = e.tick();
    assert_eq!(digest.len(), 1, "{digest:?}");
    let text = &digest[0].text;
    assert!(text.contains("OLD SUBJECT 198.51.100.8\n"), "{text}");
    assert!(text.contains("old body text"), "{text}");
    assert!(text.contains("203.0.113.9 5 failed Exim logins"), "{text}");
}

#[test]
fn engine_alerts_carry_a_v2_id_and_the_legacy_id() {
    let mut e = engine(clock());
    let mut out = Vec::new();
    for i in 0..5 {
        out.extend(e.line(0, &line(i, "203.0.113.9", "info")));
    }
    assert_eq!(out.len(), 1, "{out:?}");
    let at: Timestamp = "2026-11-23T10:00:04Z".parse().unwrap();
    let want =
        crate::policy::id::alert_id(crate::alert_kind::AlertKind::IpBurst, "203.0.113.9", 1, at);
    assert_eq!(out[0].id.as_deref(), Some(want.id.as_str()));
    assert!(want.id.starts_with("ip_burst-v2-"));
    assert_eq!(out[0].legacy_id.as_deref(), Some(want.legacy.as_str()));
}

/// Fleet mode: an agent that ran its actions for an incident another agent mails keeps the
/// incident (what was done, who mailed: `authwatch incidents`) and sends nothing for it, not
/// even a digest line when attempts go on. The same alert mailed here (`Local`) does both.
#[test]
fn a_fleet_incident_mailed_elsewhere_is_listed_with_its_actions_and_never_mailed_here() {
    use super::engine::Origin;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("block");
    std::fs::write(&prog, "#!/bin/sh\necho ok\n").unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    for act_only in [true, false] {
        let clock = clock();
        let mut e = engine_with(
            clock.clone(),
            &format!(
                "alerts: {{group_wait: 0s, group_interval: 1m}}\nactions:\n  - {{name: block, program: '{}', args: ['{{ip}}'], on: [ip_burst]}}\n",
                prog.display()
            ),
        );
        // An alert mailed here first (so digests are due every group_interval).
        for i in 0..5u32 {
            assert!(e.line(0, &line(i, "203.0.113.9", "bob")).is_empty());
        }
        assert_eq!(e.run_pending_blocking().len(), 1);
        for i in 0..5u32 {
            assert!(e.line(0, &line(i, "203.0.113.47", "alice")).is_empty());
        }
        let mut pending = e.take_pending();
        assert_eq!(pending.len(), 1);
        if act_only {
            pending[0].origin = Origin::FleetActOnly {
                mailer: "mx3".into(),
            };
        }
        e.pending = pending;
        let mails = e.run_pending_blocking();
        assert_eq!(mails.len(), usize::from(!act_only), "act only: {act_only}");
        let list = e.incidents();
        let it = list
            .iter()
            .find(|i| i.target == "203.0.113.47")
            .unwrap_or_else(|| panic!("{list:?}"));
        let who = if act_only {
            "mailed by mx3 (fleet)"
        } else {
            "mailed"
        };
        assert_eq!(it.done, vec!["block: exit 0".to_string(), who.into()]);
        // Attempts go on; the digest time comes.
        for i in 5..8u32 {
            assert!(e.line(0, &line(i, "203.0.113.47", "alice")).is_empty());
        }
        clock.advance(jiff::SignedDuration::from_secs(90));
        let digests = e.tick();
        assert_eq!(
            digests.len(),
            usize::from(!act_only),
            "act only: {act_only}"
        );
    }
}
