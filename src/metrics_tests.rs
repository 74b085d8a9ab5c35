//! Tests of the metrics: the Prometheus text with escaped and capped labels, the loopback-only
//! listen address, and the status snapshot written, read and formatted.

use super::*;
use jiff::{tz::TimeZone, Timestamp};

#[test]
fn render_has_help_type_and_escaped_labels() {
    let m = Metrics::new();
    m.register(&["/var/log/a\"b\\c\nd"], &["exim"]);
    m.add_lines_read("/var/log/mail.log", 3);
    m.add_hits("exim", 2);
    m.set_lag_seconds("/var/log/mail.log", 1.5);
    m.set_evictions_total("ips", 7);
    m.set_evictions_total("ips", 5);
    let text = m.render();
    assert!(text.contains("# TYPE authwatch_lines_read_total counter\n"));
    assert!(text.contains("authwatch_lines_read_total{source=\"/var/log/a\\\"b\\\\c\\nd\"} 0\n"));
    assert!(text.contains("authwatch_lines_read_total{source=\"/var/log/mail.log\"} 3\n"));
    assert!(text.contains("authwatch_hits_total{service=\"exim\"} 2\n"));
    assert!(text.contains("authwatch_source_lag_seconds{source=\"/var/log/mail.log\"} 1.5\n"));
    assert!(text.contains("authwatch_evictions_total{map=\"ips\"} 7\n"));
    assert!(text.contains("authwatch_evictions_total{map=\"accounts\"} 0\n"));
    // Every sample line belongs to a declared family.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(text.contains(&format!("# TYPE {name} ")), "{line}");
    }
}

#[test]
fn label_values_are_capped() {
    let m = Metrics::new();
    for i in 0..(MAX_LABEL_VALUES + 10) {
        m.add_hits(&format!("s{i}"), 1);
    }
    assert_eq!(m.hits.snapshot().len(), MAX_LABEL_VALUES + 1);
}

#[test]
fn listen_must_be_loopback_with_a_port() {
    assert!(parse_listen("127.0.0.1:9464").is_ok());
    assert!(parse_listen("[::1]:9464").is_ok());
    assert!(parse_listen("127.0.0.2:9464").is_ok());
    assert!(parse_listen("0.0.0.0:9464").is_err());
    assert!(parse_listen("[::]:9464").is_err());
    assert!(parse_listen("192.0.2.1:9464").is_err());
    assert!(parse_listen("127.0.0.1:0").is_err());
    assert!(parse_listen("localhost:9464").is_err());
}

#[test]
fn status_round_trips_and_formats() {
    let t: Timestamp = "2026-11-23T03:14:00Z".parse().unwrap();
    let snap = StatusSnapshot {
        version: STATUS_VERSION,
        generated_at: t,
        pid: 42,
        interval_seconds: 5,
        sources: vec![
            SourceHealth {
                name: "/var/log/exim4/mainlog".into(),
                ok: true,
                detail: "following".into(),
                lag_seconds: Some(12.5),
                lines_read: 10,
            },
            SourceHealth {
                name: "/var/log/mail.log".into(),
                ok: false,
                detail: "cannot read: Permission denied\x1b[2J".into(),
                lag_seconds: None,
                lines_read: 0,
            },
        ],
        mail: MailHealth {
            target: "smtp.example.com:587 (starttls)".into(),
            spooled: 2,
            failed: 0,
            last_error: Some("connection refused".into()),
            last_delivered: None,
        },
        incidents: vec![
            IncidentLine {
                key: "203.0.113.47".into(),
                kind: "ip_burst".into(),
                service: "exim".into(),
                attempts: 48,
                since: t,
                last_seen: t,
                first_attempt: "2026-11-23 03:14:00 UTC".into(),
                last_attempt: "2026-11-23 03:59:41 UTC".into(),
                alerts: 1,
            },
            IncidentLine {
                key: "2001:db8:7::/64".into(),
                kind: "subnet_burst".into(),
                service: String::new(),
                attempts: 30,
                since: t,
                last_seen: t,
                first_attempt: String::new(),
                last_attempt: String::new(),
                alerts: 1,
            },
            IncidentLine {
                key: "bob\u{1b}[2J@example.com".into(),
                kind: "account_attack".into(),
                service: String::new(),
                attempts: 20,
                since: t,
                last_seen: t,
                first_attempt: String::new(),
                last_attempt: String::new(),
                alerts: 1,
            },
        ],
        tracking: Some(Tracking {
            cap: 100_000,
            ips: 100_000,
            subnets: 1_234,
            accounts: 7,
            evicted_ips: 900,
            evicted_subnets: 0,
            evicted_accounts: 0,
        }),
        fleet: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("status.json");
    write_status(&p, &snap).unwrap();
    let back = read_status(&p).unwrap();
    assert_eq!(back, snap);
    let text = format_status_with(
        &back,
        &TimeZone::UTC,
        Some(t + jiff::SignedDuration::from_secs(60)),
    );
    assert!(text.contains("by pid 42 (1m ago)"), "{text}");
    assert!(text.contains("stale"), "{text}");
    assert!(
        text.contains("OK    /var/log/exim4/mainlog  lag 12s"),
        "{text}"
    );
    assert!(text.contains("FAIL  /var/log/mail.log"), "{text}");
    assert!(text.contains("<U+001B>[2J"), "{text}");
    assert!(
        text.contains("Mail: FAIL  smtp.example.com:587 (starttls), 2 spooled"),
        "{text}"
    );
    assert!(text.contains("last error: connection refused"), "{text}");
    // Each incident on a line of its own, most attempts first, the counts in one column.
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("INCIDENT"))
        .skip(1)
        .collect();
    assert!(rows[0].trim_start().starts_with("203.0.113.47 "), "{text}");
    assert!(rows[0].contains(" 48  exim "), "{text}");
    assert!(rows[0].contains(" IP burst "), "{text}");
    // Log times of the attempts when the agent knows them (issue 15).
    assert!(
        rows[0].contains("2026-11-23 03:14:00 UTC  2026-11-23 03:59:41 UTC"),
        "{text}"
    );
    assert!(
        rows[1].contains("2001:db8:7::/64 ") && rows[1].contains(" network burst "),
        "{text}"
    );
    assert!(
        rows[2].contains("bob<U+001B>[2J@example.com ") && rows[2].contains(" account attack "),
        "{text}"
    );
    // A source that holds nothing more shows no lag.
    let mut caught_up = back.clone();
    caught_up.sources[0].lag_seconds = Some(0.0);
    let text = format_status_with(&caught_up, &TimeZone::UTC, None);
    assert!(
        text.contains("OK    /var/log/exim4/mainlog  caught up"),
        "{text}"
    );
    let end = |r: &str, n: &str| r.find(&format!(" {n}  ")).map(|i| i + 1 + n.len());
    assert!(end(rows[0], "48").is_some(), "{text}");
    assert_eq!(end(rows[0], "48"), end(rows[1], "30"), "{text}");
    assert_eq!(end(rows[0], "48"), end(rows[2], "20"), "{text}");
    assert!(
        text.contains("Tracked: 100000 IPs, 1234 networks, 7 accounts (cap 100000 each)"),
        "{text}"
    );
    assert!(
        text.contains("forgotten because of the cap: 900 IPs, 0 networks, 0 accounts"),
        "{text}"
    );
    // A status file from before incident kinds and tracking still reads.
    let old = serde_json::json!({
        "generated_at": t, "sources": [], "incidents": [{"ip": "198.51.100.9",
        "attempts": 5, "since": t, "last_seen": t}],
        "mail": {"target": "x", "spooled": 0, "failed": 0}
    });
    let old: StatusSnapshot = serde_json::from_value(old).unwrap();
    assert_eq!(old.incidents[0].key, "198.51.100.9");
    assert!(old.tracking.is_none());
    assert!(!back.is_healthy(t));
}

/// A status snapshot with nothing in it but the fleet part, fresh at `t`.
fn fleet_snapshot(t: Timestamp, fleet: Option<FleetHealth>) -> StatusSnapshot {
    StatusSnapshot {
        version: STATUS_VERSION,
        generated_at: t,
        pid: 7,
        interval_seconds: 5,
        sources: Vec::new(),
        mail: MailHealth {
            target: "outbox /var/lib/authwatch/outbox".into(),
            spooled: 0,
            failed: 0,
            last_error: None,
            last_delivered: None,
        },
        incidents: Vec::new(),
        tracking: None,
        fleet,
    }
}

/// The fleet store in `status` and in the metrics (issue 16): absent in local mode; its masked
/// URL, this agent's name and counts when up; how long it has been down and the buffered hits
/// when down, and the status then unhealthy.
#[test]
fn fleet_store_state_in_status_and_metrics() {
    let t: Timestamp = "2026-11-23T03:14:00Z".parse().unwrap();
    let fleet = |available: bool, down: Option<u64>, buffered: u64, dropped: u64| FleetHealth {
        store: "redis://fleet:MASKED@10.0.0.5:6379".into(),
        name: "mx1".into(),
        available,
        down_seconds: down,
        buffered,
        dropped,
        sent: 1234,
    };
    // (case, fleet part, status lines wanted, lines not wanted, healthy, metric lines wanted)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Option<FleetHealth>, Vec<&str>, Vec<&str>, bool, Vec<&str>)> = vec![
        ("local mode", None, vec![], vec!["Fleet:"], true, vec![]),
        (
            "fleet up",
            Some(fleet(true, None, 0, 0)),
            vec!["Fleet: OK  redis://fleet:MASKED@10.0.0.5:6379 as mx1, available, 1234 hits sent, 0 buffered for replay\n"],
            vec!["down for", "dropped", "own thresholds"],
            true,
            vec![
                "authwatch_fleet_store_up 1\n",
                "authwatch_fleet_buffered_hits 0\n",
                "authwatch_fleet_hits_sent_total 1234\n",
                "authwatch_fleet_dropped_hits_total 0\n",
            ],
        ),
        (
            "fleet down",
            Some(fleet(false, Some(125), 40, 3)),
            vec![
                "Fleet: FAIL  redis://fleet:MASKED@10.0.0.5:6379 as mx1, unavailable, down for 2m5s, 1234 hits sent, 40 buffered for replay, 3 dropped (buffer full)\n",
                "  detecting with this server's own thresholds until the store answers again\n",
            ],
            vec![],
            false,
            vec![
                "authwatch_fleet_store_up 0\n",
                "authwatch_fleet_buffered_hits 40\n",
                "authwatch_fleet_hits_sent_total 1234\n",
                "authwatch_fleet_dropped_hits_total 3\n",
            ],
        ),
        (
            "fleet down since less than a second",
            Some(fleet(false, Some(0), 1, 0)),
            vec![", unavailable, down for less than 1s, 1234 hits sent, 1 buffered for replay\n"],
            vec!["dropped"],
            false,
            vec!["authwatch_fleet_store_up 0\n", "authwatch_fleet_buffered_hits 1\n"],
        ),
    ];
    for (case, f, want, not, healthy, metrics) in cases {
        let snap = fleet_snapshot(t, f.clone());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("status.json");
        write_status(&p, &snap).unwrap();
        let json = std::fs::read_to_string(&p).unwrap();
        assert_eq!(json.contains("\"fleet\""), f.is_some(), "{case}: {json}");
        assert_eq!(read_status(&p).unwrap(), snap, "{case}");
        let text = format_status_with(&snap, &TimeZone::UTC, Some(t));
        for w in want {
            assert!(text.contains(w), "{case}: want {w:?} in\n{text}");
        }
        for n in not {
            assert!(!text.contains(n), "{case}: {n:?} not wanted in\n{text}");
        }
        assert_eq!(snap.is_healthy(t), healthy, "{case}");

        let m = Metrics::new();
        if let Some(f) = &f {
            m.set_fleet(f.available, f.buffered, f.sent, f.dropped);
        }
        let text = m.render();
        assert_eq!(
            text.contains("authwatch_fleet"),
            f.is_some(),
            "{case}: {text}"
        );
        for w in metrics {
            assert!(text.contains(w), "{case}: want {w:?} in\n{text}");
        }
        for name in [
            "authwatch_fleet_store_up gauge",
            "authwatch_fleet_buffered_hits gauge",
            "authwatch_fleet_hits_sent_total counter",
            "authwatch_fleet_dropped_hits_total counter",
        ] {
            assert_eq!(
                text.contains(&format!("# TYPE {name}\n")),
                f.is_some(),
                "{case}: {text}"
            );
        }
    }
}

#[test]
fn fleet_counters_never_go_down() {
    let m = Metrics::new();
    m.set_fleet(true, 5, 100, 2);
    m.set_fleet(false, 0, 90, 1);
    let text = m.render();
    assert!(
        text.contains("authwatch_fleet_hits_sent_total 100\n"),
        "{text}"
    );
    assert!(
        text.contains("authwatch_fleet_dropped_hits_total 2\n"),
        "{text}"
    );
    assert!(text.contains("authwatch_fleet_store_up 0\n"), "{text}");
    assert!(text.contains("authwatch_fleet_buffered_hits 0\n"), "{text}");
}
