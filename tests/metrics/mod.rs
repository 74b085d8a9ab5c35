//! The metrics endpoint, scraped over loopback with a raw TCP client: Prometheus text format,
//! 404/405/431 for anything else, a silent client does not block later scrapes, and only
//! loopback addresses are accepted.

use authwatch::metrics::{
    format_status, read_status, serve, write_status, IncidentLine, MailHealth, Metrics,
    SourceHealth, StatusSnapshot, STATUS_VERSION,
};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Send `request` and read the whole response (the server closes the connection).
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read the response");
    String::from_utf8(out).expect("UTF-8 response")
}

fn split_response(resp: &str) -> (String, BTreeMap<String, String>, String) {
    let (head, body) = resp.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_string();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    (status, headers, body.to_string())
}

/// `GET /metrics` from the endpoint at `addr`: the body (the fleet tests scrape it too).
pub(crate) fn scrape(addr: SocketAddr) -> String {
    split_response(&exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")).2
}

/// `name{labels}` → value, for every sample line.
pub(crate) fn samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("sample line");
            (k.to_string(), v.parse().expect("numeric value"))
        })
        .collect()
}

#[test]
fn metrics_endpoint_scraped_over_loopback() {
    let m = Arc::new(Metrics::new());
    m.register(
        &["/var/log/exim4/mainlog", "/var/log/mail.log"],
        &["exim", "dovecot"],
    );
    m.add_lines_read("/var/log/exim4/mainlog", 120);
    m.add_hits("exim", 7);
    m.inc_incidents_opened();
    m.inc_alerts_sent();
    m.inc_alerts_sent();
    m.inc_send_failures();
    m.set_spool_size(3);
    m.add_evictions("ips", 4);
    m.add_evictions("subnets", 2);
    m.set_lag_seconds("/var/log/exim4/mainlog", 0.75);
    let server = serve("127.0.0.1:0".parse().unwrap(), Arc::clone(&m)).expect("serve");
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0);

    let resp = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n",
    );
    let (status, headers, body) = split_response(&resp);
    assert_eq!(status, "HTTP/1.1 200 OK", "{resp}");
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(
        headers.get("content-length").map(String::as_str),
        Some(body.len().to_string().as_str())
    );
    assert!(body.contains("# HELP authwatch_hits_total "), "{body}");
    assert!(
        body.contains("# TYPE authwatch_hits_total counter\n"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE authwatch_spool_messages gauge\n"),
        "{body}"
    );
    let s = samples(&body);
    let want = [
        (
            "authwatch_lines_read_total{source=\"/var/log/exim4/mainlog\"}",
            120.0,
        ),
        (
            "authwatch_lines_read_total{source=\"/var/log/mail.log\"}",
            0.0,
        ),
        ("authwatch_hits_total{service=\"exim\"}", 7.0),
        ("authwatch_hits_total{service=\"dovecot\"}", 0.0),
        ("authwatch_incidents_opened_total", 1.0),
        ("authwatch_alerts_sent_total", 2.0),
        ("authwatch_alert_send_failures_total", 1.0),
        ("authwatch_spool_messages", 3.0),
        ("authwatch_evictions_total{map=\"ips\"}", 4.0),
        ("authwatch_evictions_total{map=\"subnets\"}", 2.0),
        ("authwatch_evictions_total{map=\"accounts\"}", 0.0),
        (
            "authwatch_source_lag_seconds{source=\"/var/log/exim4/mainlog\"}",
            0.75,
        ),
    ];
    for (k, v) in want {
        assert_eq!(s.get(k), Some(&v), "{k} in\n{body}");
    }

    // Counters move between scrapes; a query string is ignored; HEAD has no body.
    m.add_hits("exim", 1);
    let (_, _, body) = split_response(&exchange(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"));
    assert_eq!(
        samples(&body).get("authwatch_hits_total{service=\"exim\"}"),
        Some(&8.0)
    );
    let (status, headers, body) =
        split_response(&exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n"));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.is_empty());
    assert_ne!(headers.get("content-length").map(String::as_str), Some("0"));

    // Anything else.
    let (status, _, _) = split_response(&exchange(addr, b"GET / HTTP/1.1\r\n\r\n"));
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, headers, _) = split_response(&exchange(
        addr,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    ));
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(headers.get("allow").map(String::as_str), Some("GET, HEAD"));
    let (status, _, _) = split_response(&exchange(addr, b"garbage\r\n\r\n"));
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20_000));
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(&huge);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    assert!(
        String::from_utf8_lossy(&resp).starts_with("HTTP/1.1 431 "),
        "{}",
        String::from_utf8_lossy(&resp)
    );

    // A client that connects and says nothing is dropped after the read timeout; the next
    // scrape is answered.
    let silent = TcpStream::connect(addr).unwrap();
    let t = Instant::now();
    let (status, _, _) = split_response(&exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n"));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t.elapsed()
    );
    drop(silent);

    server.shutdown();
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "still listening after shutdown"
    );
}

#[test]
fn metrics_endpoint_refuses_non_loopback_addresses() {
    let m = Arc::new(Metrics::new());
    for a in ["0.0.0.0:0", "[::]:0", "192.0.2.1:0"] {
        let e = serve(a.parse().unwrap(), Arc::clone(&m)).expect_err(a);
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{a}");
    }
    // IPv6 loopback works where the host has it.
    if let Ok(server) = serve("[::1]:0".parse().unwrap(), Arc::clone(&m)) {
        let (status, _, _) = split_response(&exchange(
            server.local_addr(),
            b"GET /metrics HTTP/1.1\r\n\r\n",
        ));
        assert_eq!(status, "HTTP/1.1 200 OK");
        server.shutdown();
    }
}

#[test]
fn status_file_round_trip_and_text() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("status.json");
    let t: jiff::Timestamp = "2026-11-23T03:14:00Z".parse().unwrap();
    let snap = StatusSnapshot {
        version: STATUS_VERSION,
        generated_at: t,
        pid: 1234,
        interval_seconds: 5,
        sources: vec![SourceHealth {
            name: "/var/log/exim4/mainlog".into(),
            ok: true,
            detail: "following".into(),
            lag_seconds: Some(1.0),
            lines_read: 5,
        }],
        mail: MailHealth {
            target: "outbox /var/lib/authwatch/outbox".into(),
            spooled: 0,
            failed: 0,
            last_error: None,
            last_delivered: Some(t),
        },
        incidents: vec![IncidentLine {
            key: "2001:db8::7".into(),
            kind: "ip_burst".into(),
            service: "exim".into(),
            attempts: 9,
            since: t,
            last_seen: t,
            first_attempt: String::new(),
            last_attempt: String::new(),
            alerts: 1,
        }],
        tracking: None,
        fleet: None,
    };
    write_status(&path, &snap).unwrap();
    let back = read_status(&path).unwrap();
    assert_eq!(back, snap);
    assert!(back.is_healthy(t));
    let text = format_status(&back);
    assert!(
        text.starts_with("authwatch status written 2026-11-23 03:14:00 UTC by pid 1234\n"),
        "{text}"
    );
    assert!(
        text.contains("OK    /var/log/exim4/mainlog  lag 1.0s"),
        "{text}"
    );
    assert!(
        text.contains("Mail: OK  outbox /var/lib/authwatch/outbox, 0 spooled"),
        "{text}"
    );
    assert!(text.contains("Open incidents: 1"), "{text}");
    assert!(text.contains("2001:db8::7"), "{text}");
    std::fs::write(&path, "{not json").unwrap();
    assert_eq!(
        read_status(&path).unwrap_err().kind(),
        std::io::ErrorKind::InvalidData
    );
}

/// The running agent serves its counters: a burst shows up as lines, hits, an incident and a
/// mail in the outbox, and `status.json` lists the open incident.
#[test]
fn the_agent_serves_metrics_and_status() {
    use crate::harness::*;
    let tmp = tempdir();
    let dir = tmp.path();
    let port = free_port();
    let log = LogWriter::new(dir.join("mainlog"));
    let state = dir.join("state");
    let cfg = write_file(
        dir,
        "a.yaml",
        &format!(
            "state_dir: '{}'\nsources: [{{path: '{}', start: end}}]\nfollow: {{poll_interval: 50ms, checkpoint_interval: 100ms}}\ntime_zone: UTC\nmetrics: {{listen: '127.0.0.1:{port}'}}\nmail: {{to: [admin@example.test]}}\n",
            state.display(),
            log.path.display()
        ),
    );
    let mut agent = Agent::run(&cfg);
    agent.wait_following(&log);
    let t = now_unix() - 60;
    log.append(
        &(0..5)
            .map(|i| exim_fail(t + i, "203.0.113.77", "alice"))
            .collect::<Vec<_>>(),
    );
    wait_outbox(&state.join("outbox"), 1);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let m = wait_for("metrics showing the incident", || {
        let (_, _, body) =
            split_response(&exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
        let m = samples(&body);
        (m.get("authwatch_alerts_sent_total").copied() == Some(1.0)).then_some(m)
    });
    assert!(m["authwatch_incidents_opened_total"] >= 1.0, "{m:?}");
    assert!(
        m.get("authwatch_hits_total{service=\"exim\"}")
            .copied()
            .unwrap_or(0.0)
            >= 5.0,
        "{m:?}"
    );
    let status = wait_for("status.json with the incident", || {
        let s = std::fs::read_to_string(state.join("status.json")).ok()?;
        s.contains("203.0.113.77").then_some(s)
    });
    assert!(status.contains("\"incidents\""), "{status}");
    // Lag: the attack lines were stamped a minute before they were appended, but the agent
    // has read all the log holds: caught up, no lag (not the age of the last line).
    let lag = m[&format!(
        "authwatch_source_lag_seconds{{source=\"{}\"}}",
        log.path.display()
    )];
    assert_eq!(lag, 0.0, "{m:?}");
    let st: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(
        st["sources"][0]["lines_read"].as_u64().unwrap_or(0) >= 5,
        "{status}"
    );
    assert!(
        st["sources"][0]["lag_seconds"].as_f64().is_some(),
        "{status}"
    );
    // The maps against their cap: the attacker and the probe lines' addresses are tracked.
    assert!(st["tracking"]["ips"].as_u64().unwrap_or(0) >= 1, "{status}");
    assert_eq!(st["tracking"]["cap"].as_u64(), Some(100_000), "{status}");
    // Local mode: no fleet part, no fleet series (issue 16).
    assert!(st.get("fleet").is_none(), "{status}");
    assert!(!m.keys().any(|k| k.starts_with("authwatch_fleet")), "{m:?}");
    assert_eq!(
        st["incidents"][0]["kind"].as_str(),
        Some("ip_burst"),
        "{status}"
    );
    assert!(agent.stop().success());
}

/// Issue 14.8: the endpoint answered one client at a time, so a client that connected and sent
/// nothing held every scrape back until its read timed out. Scrapes are answered while silent
/// clients are still connected (their connections not yet closed by the server).
#[test]
fn silent_clients_do_not_block_scrapes_regression() {
    let m = Arc::new(Metrics::new());
    m.register(&["/var/log/mail.log"], &["exim"]);
    let server = serve("127.0.0.1:0".parse().unwrap(), m).unwrap();
    let addr = server.local_addr();
    let silent: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for _ in 0..3 {
        let (status, _, _) = split_response(&exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n"));
        assert_eq!(status, "HTTP/1.1 200 OK");
    }
    // The silent connections are still open: the scrapes did not wait for them to time out.
    for s in &silent {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let r = (&*s).read(&mut b);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a silent connection was already closed (read gave {r:?}): the scrapes waited for it"
        );
    }
    drop(silent);
    server.shutdown();
}
