//! Metrics and status: counters the agent updates as it works, a Prometheus text endpoint on a
//! loopback address, and the status snapshot behind `authwatch status`.
//!
//! [`Metrics`] is lock-free on the hot path (atomics; labelled series take a read lock to find
//! their counter). [`serve`] answers `GET /metrics` from a small HTTP/1.1 responder on a
//! std `TcpListener` in its own thread: the endpoint is loopback-only ([`validate_listen`]),
//! serves each connection in a thread of its own (at most `MAX_CLIENTS` at once, so a client
//! that sends nothing blocks no other scrape) with a capped request head and short timeouts,
//! and closes every connection after one answer.
//!
//! The agent writes a [`StatusSnapshot`] as JSON to `state_dir/status.json` ([`write_status`]);
//! `authwatch status` reads it ([`read_status`]) and prints [`format_status_with`].

use crate::text::inert;
use jiff::{tz::TimeZone, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Distinct label values kept per labelled metric; further values are counted under `other`.
const MAX_LABEL_VALUES: usize = 1000;

/// The per-key maps whose evictions are counted.
pub const EVICTION_MAPS: [&str; 3] = ["ips", "subnets", "accounts"];

/// Counters keyed by one label value.
#[derive(Debug, Default)]
struct Labelled {
    values: RwLock<BTreeMap<String, Arc<AtomicU64>>>,
}

impl Labelled {
    fn cell(&self, label: &str) -> Arc<AtomicU64> {
        if let Some(c) = self
            .values
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(label)
        {
            return Arc::clone(c);
        }
        let mut map = self.values.write().unwrap_or_else(|e| e.into_inner());
        let key = if map.len() >= MAX_LABEL_VALUES && !map.contains_key(label) {
            "other"
        } else {
            label
        };
        Arc::clone(map.entry(key.to_string()).or_default())
    }

    fn add(&self, label: &str, n: u64) {
        self.cell(label).fetch_add(n, Ordering::Relaxed);
    }

    fn set(&self, label: &str, v: u64) {
        self.cell(label).store(v, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Vec<(String, u64)> {
        self.values
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Everything the metrics endpoint reports. Share it with `Arc`; every method takes `&self`.
#[derive(Debug, Default)]
pub struct Metrics {
    lines_read: Labelled,
    hits: Labelled,
    /// f64 bits.
    lag_seconds: Labelled,
    incidents_opened: AtomicU64,
    open_incidents: AtomicU64,
    alerts_sent: AtomicU64,
    send_failures: AtomicU64,
    spool_size: AtomicU64,
    evictions: Labelled,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Create the series for these sources and services at 0, so they show before any line.
    pub fn register(&self, sources: &[&str], services: &[&str]) {
        for s in sources {
            self.lines_read.add(s, 0);
            self.lag_seconds.set(s, 0f64.to_bits());
        }
        for s in services {
            self.hits.add(s, 0);
        }
        for m in EVICTION_MAPS {
            self.evictions.add(m, 0);
        }
    }

    /// Lines read from a source (label: the source's path or name).
    pub fn add_lines_read(&self, source: &str, n: u64) {
        self.lines_read.add(source, n);
    }

    /// Lines read so far from a source.
    pub fn lines_read(&self, source: &str) -> u64 {
        self.lines_read
            .snapshot()
            .into_iter()
            .find(|(k, _)| k == source)
            .map_or(0, |(_, v)| v)
    }

    /// The lag last measured for a source, if any line with a stamp was read.
    pub fn lag_seconds(&self, source: &str) -> Option<f64> {
        self.lag_seconds
            .snapshot()
            .into_iter()
            .find(|(k, _)| k == source)
            .map(|(_, v)| f64::from_bits(v))
    }

    /// Failed logins matched by a service's rules.
    pub fn add_hits(&self, service: &str, n: u64) {
        self.hits.add(service, n);
    }

    /// An incident opened (an IP crossed the threshold).
    pub fn inc_incidents_opened(&self) {
        self.incidents_opened.fetch_add(1, Ordering::Relaxed);
    }

    /// Incidents open now (IPs alerted and still within their cooldown).
    pub fn set_open_incidents(&self, n: u64) {
        self.open_incidents.store(n, Ordering::Relaxed);
    }

    /// An alert accepted by the relay (or written to the outbox).
    pub fn inc_alerts_sent(&self) {
        self.alerts_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// A delivery attempt that failed.
    pub fn inc_send_failures(&self) {
        self.send_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Alerts waiting in the spool now.
    pub fn set_spool_size(&self, n: u64) {
        self.spool_size.store(n, Ordering::Relaxed);
    }

    /// Keys evicted from a tracking map (`ips`, `subnets`, `accounts`).
    pub fn add_evictions(&self, map: &str, n: u64) {
        self.evictions.add(map, n);
    }

    /// Evictions from a map as a running total from its detector; never goes down.
    pub fn set_evictions_total(&self, map: &str, total: u64) {
        self.evictions.cell(map).fetch_max(total, Ordering::Relaxed);
    }

    /// How far a source is behind: seconds between now and the stamp of the last line read
    /// (0 when caught up).
    pub fn set_lag_seconds(&self, source: &str, seconds: f64) {
        self.lag_seconds.set(source, seconds.to_bits());
    }

    /// The metrics in Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let labelled = |out: &mut String,
                        name: &str,
                        kind: &str,
                        help: &str,
                        label: &str,
                        v: Vec<(String, String)>| {
            header(out, name, kind, help);
            for (l, value) in v {
                let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {value}", escape_label(&l));
            }
        };
        let counts = |l: &Labelled| -> Vec<(String, String)> {
            l.snapshot()
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect()
        };
        labelled(
            &mut out,
            "authwatch_lines_read_total",
            "counter",
            "Log lines read, per source.",
            "source",
            counts(&self.lines_read),
        );
        labelled(
            &mut out,
            "authwatch_hits_total",
            "counter",
            "Failed logins recognised, per service.",
            "service",
            counts(&self.hits),
        );
        labelled(
            &mut out,
            "authwatch_source_lag_seconds",
            "gauge",
            "Seconds between now and the time of the last line read, per source.",
            "source",
            self.lag_seconds
                .snapshot()
                .into_iter()
                .map(|(k, v)| (k, format_float(f64::from_bits(v))))
                .collect(),
        );
        let single = |out: &mut String, name: &str, kind: &str, help: &str, v: &AtomicU64| {
            header(out, name, kind, help);
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        };
        single(
            &mut out,
            "authwatch_incidents_opened_total",
            "counter",
            "Incidents opened (an IP crossed the threshold).",
            &self.incidents_opened,
        );
        single(
            &mut out,
            "authwatch_open_incidents",
            "gauge",
            "Incidents open now.",
            &self.open_incidents,
        );
        single(
            &mut out,
            "authwatch_alerts_sent_total",
            "counter",
            "Alerts delivered to the relay or the outbox.",
            &self.alerts_sent,
        );
        single(
            &mut out,
            "authwatch_alert_send_failures_total",
            "counter",
            "Alert delivery attempts that failed.",
            &self.send_failures,
        );
        single(
            &mut out,
            "authwatch_spool_messages",
            "gauge",
            "Alerts waiting in the spool for delivery.",
            &self.spool_size,
        );
        labelled(
            &mut out,
            "authwatch_evictions_total",
            "counter",
            "Keys evicted because of the detect.max_tracked_ips cap, per map (ips, subnets, accounts).",
            "map",
            counts(&self.evictions),
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escape a label value: backslash, double quote and line feed.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP endpoint

/// Largest request head read.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Per-read and per-write timeout of a connection.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a client may take to send its request head.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once, each by a thread of its own, so that a client that connects
/// and sends nothing holds back no other scrape (it is dropped after [`IO_TIMEOUT`]). Beyond
/// this, new connections are closed at once: a scraper needs one, and threads stay bounded.
const MAX_CLIENTS: usize = 16;

/// Check a listen address from the config: a loopback IP (127.0.0.0/8 or ::1) and a port.
pub fn validate_listen(addr: SocketAddr) -> Result<(), String> {
    if !addr.ip().to_canonical().is_loopback() {
        return Err(format!(
            "{addr}: the metrics endpoint has no authentication and listens on loopback only (127.0.0.1 or [::1])"
        ));
    }
    if addr.port() == 0 {
        return Err(format!("{addr}: choose a port, e.g. {}:9464", addr.ip()));
    }
    Ok(())
}

/// Parse and check a listen address written as `127.0.0.1:9464` or `[::1]:9464` (no names).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s.trim().parse().map_err(|_| {
        format!("{s:?}: expected IP:port such as 127.0.0.1:9464 or [::1]:9464 (no host names)")
    })?;
    validate_listen(addr)?;
    Ok(addr)
}

/// A running metrics endpoint. Dropping it leaves the endpoint running; call
/// [`shutdown`](Self::shutdown) to stop it.
#[derive(Debug)]
#[must_use = "the endpoint runs until shutdown() is called"]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting and wait for the thread (at most one request's timeouts).
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Listen on `addr` (loopback only; port 0 picks a free port) and answer `GET /metrics` with
/// `metrics.render()` from a thread. Binding happens before this returns, so a port in use is
/// reported here.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> io::Result<MetricsServer> {
    if !addr.ip().to_canonical().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr}: the metrics endpoint listens on loopback addresses only"),
        ));
    }
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || accept_loop(listener, metrics, stop))?
    };
    tracing::info!(addr = %local, "metrics endpoint listening");
    Ok(MetricsServer {
        addr: local,
        stop,
        thread: Some(thread),
    })
}

fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>, stop: Arc<AtomicBool>) {
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    tracing::debug!(%peer, "metrics endpoint: too many clients; connection closed");
                    continue;
                }
                let (metrics, mine) = (Arc::clone(&metrics), Arc::clone(&active));
                let spawned = std::thread::Builder::new()
                    .name("metrics-client".into())
                    .spawn(move || {
                        if let Err(e) = handle(stream, &metrics) {
                            tracing::debug!(%peer, "metrics request: {e}");
                        }
                        mine.fetch_sub(1, Ordering::SeqCst);
                    });
                if let Err(e) = spawned {
                    tracing::warn!("metrics endpoint: cannot start a thread: {e}");
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                tracing::warn!("metrics endpoint: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Read one request head (up to the blank line), answer, close.
fn handle(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let started = Instant::now();
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() >= MAX_REQUEST_HEAD || started.elapsed() > REQUEST_DEADLINE {
            break false;
        }
        match stream.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    let (status, body, head_only) = if !complete {
        if head.len() >= MAX_REQUEST_HEAD {
            ("431 Request Header Fields Too Large", String::new(), false)
        } else if head.is_empty() {
            return Ok(());
        } else {
            ("400 Bad Request", String::new(), false)
        }
    } else {
        let text = String::from_utf8_lossy(&head);
        let line = text.lines().next().unwrap_or("");
        let mut parts = line.split(' ');
        let (method, target, version) = (parts.next(), parts.next(), parts.next());
        let path = target.map(|t| t.split('?').next().unwrap_or(""));
        match (method, path, version) {
            (Some(m), Some(p), Some(v)) if v.starts_with("HTTP/1.") && parts.next().is_none() => {
                match (m, p) {
                    ("GET" | "HEAD", "/metrics") => ("200 OK", metrics.render(), m == "HEAD"),
                    (_, "/metrics") => ("405 Method Not Allowed", String::new(), false),
                    _ => ("404 Not Found", "Not found; try /metrics\n".into(), false),
                }
            }
            _ => ("400 Bad Request", String::new(), false),
        }
    };
    let content_type = if status.starts_with("200") {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("\r\n");
    if !head_only {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes())?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Status

/// Version of the status file format.
pub const STATUS_VERSION: u32 = 1;

/// What `authwatch status` shows; the agent writes it to `state_dir/status.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusSnapshot {
    #[serde(default = "status_version")]
    pub version: u32,
    /// When the agent wrote this.
    pub generated_at: Timestamp,
    /// The agent's process id.
    #[serde(default)]
    pub pid: u32,
    /// How often the agent rewrites the file; an older file means the agent is not running.
    #[serde(default)]
    pub interval_seconds: u64,
    pub sources: Vec<SourceHealth>,
    pub mail: MailHealth,
    /// Open incidents, most attempts first.
    pub incidents: Vec<IncidentLine>,
    /// How full the per-key maps are, and what their cap made the agent forget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<Tracking>,
}

/// The per-key maps of detection against their cap (`detect.max_tracked_ips`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracking {
    pub cap: u64,
    pub ips: u64,
    pub subnets: u64,
    pub accounts: u64,
    /// Keys evicted since start (and before, when restored), per map.
    pub evicted_ips: u64,
    pub evicted_subnets: u64,
    pub evicted_accounts: u64,
}

fn status_version() -> u32 {
    STATUS_VERSION
}

/// Health of one followed log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceHealth {
    pub name: String,
    pub ok: bool,
    /// `following`, `waiting for the file to appear`, `cannot read: Permission denied`, ...
    #[serde(default)]
    pub detail: String,
    /// Seconds behind (now minus the stamp of the last line read), when known.
    #[serde(default)]
    pub lag_seconds: Option<f64>,
    #[serde(default)]
    pub lines_read: u64,
}

/// Health of mail delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailHealth {
    /// `smtp.example.com:587 (starttls)` or `outbox /var/lib/authwatch/outbox`.
    pub target: String,
    /// Alerts waiting in the spool.
    pub spooled: u64,
    /// Alerts given up on (in `failed/`).
    #[serde(default)]
    pub failed: u64,
    /// The last delivery error, cleared by the next success.
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_delivered: Option<Timestamp>,
}

impl MailHealth {
    pub fn ok(&self) -> bool {
        self.last_error.is_none()
    }
}

/// One open incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentLine {
    /// What the incident is about: an IP, a network (`2001:db8:1::/64`) or an account
    /// (attacker-chosen text, made inert when shown).
    #[serde(alias = "ip")]
    pub key: String,
    /// `ip_burst`, `subnet_burst` or `account_attack` (empty in files from before kinds).
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub service: String,
    pub attempts: u64,
    pub since: Timestamp,
    pub last_seen: Timestamp,
    #[serde(default)]
    pub alerts: u32,
}

impl StatusSnapshot {
    /// How old the snapshot is at `now` (zero if it is from the future).
    pub fn age(&self, now: Timestamp) -> Duration {
        let d = now.duration_since(self.generated_at);
        Duration::try_from(d).unwrap_or(Duration::ZERO)
    }

    /// Whether the agent has stopped rewriting the file: older than three intervals (and 10s).
    pub fn is_stale(&self, now: Timestamp) -> bool {
        let limit = Duration::from_secs(self.interval_seconds.saturating_mul(3).max(10));
        self.age(now) > limit
    }

    /// Every source and mail fine, and the snapshot fresh.
    pub fn is_healthy(&self, now: Timestamp) -> bool {
        !self.is_stale(now) && self.mail.ok() && self.sources.iter().all(|s| s.ok)
    }
}

/// Write the snapshot atomically (temp file in the same folder, then rename).
pub fn write_status(path: &Path, snapshot: &StatusSnapshot) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(snapshot).map_err(io::Error::other)?;
    // 0600, never through a symbolic link (see `state::write_private`).
    crate::state::write_private(path, &json)
}

/// Read a snapshot written by [`write_status`].
pub fn read_status(path: &Path) -> io::Result<StatusSnapshot> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// Incidents listed by [`format_status`]; the rest are counted.
const MAX_INCIDENT_LINES: usize = 50;

/// The status for people, times in UTC, without staleness (see [`format_status_with`]).
pub fn format_status(snapshot: &StatusSnapshot) -> String {
    format_status_with(snapshot, &TimeZone::UTC, None)
}

fn time(t: Timestamp, tz: &TimeZone) -> String {
    crate::text::human_time(t, tz)
}

fn seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1}s")
    } else {
        crate::text::format_duration(Duration::from_secs_f64(s.clamp(0.0, 1e12)))
    }
}

/// The status for people: times in `tz`; with `now`, the snapshot's age and a warning when the
/// agent seems to have stopped. Text from outside (errors, details) is made inert.
pub fn format_status_with(
    snapshot: &StatusSnapshot,
    tz: &TimeZone,
    now: Option<Timestamp>,
) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "authwatch status written {}",
        time(snapshot.generated_at, tz)
    );
    if snapshot.pid != 0 {
        let _ = write!(out, " by pid {}", snapshot.pid);
    }
    if let Some(now) = now {
        let age = snapshot.age(now);
        let _ = write!(out, " ({} ago)", seconds(age.as_secs_f64()));
        if snapshot.is_stale(now) {
            out.push_str("\nWARNING: the status is stale; authwatch does not seem to be running");
        }
    }
    out.push_str("\n\nSources:\n");
    if snapshot.sources.is_empty() {
        out.push_str("  (none)\n");
    }
    let width = snapshot
        .sources
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(60);
    for s in &snapshot.sources {
        let lag = match s.lag_seconds {
            Some(l) => format!("lag {}", seconds(l)),
            None => "lag -".into(),
        };
        let _ = writeln!(
            out,
            "  {:<4}  {:<width$}  {:<10}  {}",
            if s.ok { "OK" } else { "FAIL" },
            inert(&s.name),
            lag,
            inert(&s.detail),
        );
    }
    let m = &snapshot.mail;
    let _ = write!(
        out,
        "\nMail: {}  {}, {} spooled",
        if m.ok() { "OK" } else { "FAIL" },
        inert(&m.target),
        m.spooled
    );
    if m.failed > 0 {
        let _ = write!(out, ", {} failed", m.failed);
    }
    if let Some(t) = m.last_delivered {
        let _ = write!(out, ", last delivered {}", time(t, tz));
    }
    out.push('\n');
    if let Some(e) = &m.last_error {
        let _ = writeln!(out, "  last error: {}", inert(e));
    }
    if let Some(t) = &snapshot.tracking {
        let _ = writeln!(
            out,
            "\nTracked: {} IPs, {} networks, {} accounts (cap {} each)",
            t.ips, t.subnets, t.accounts, t.cap
        );
        if t.evicted_ips + t.evicted_subnets + t.evicted_accounts > 0 {
            let _ = writeln!(
                out,
                "  forgotten because of the cap: {} IPs, {} networks, {} accounts (raise detect.max_tracked_ips if memory allows)",
                t.evicted_ips, t.evicted_subnets, t.evicted_accounts
            );
        }
    }
    let _ = writeln!(out, "\nOpen incidents: {}", snapshot.incidents.len());
    if !snapshot.incidents.is_empty() {
        let mut list: Vec<&IncidentLine> = snapshot.incidents.iter().collect();
        list.sort_by(|a, b| b.attempts.cmp(&a.attempts).then(a.key.cmp(&b.key)));
        let shown: Vec<String> = list
            .iter()
            .take(MAX_INCIDENT_LINES)
            .map(|i| {
                let key: String = inert(&i.key).chars().take(60).collect();
                match i.kind.as_str() {
                    "subnet_burst" => format!("{key} (network)"),
                    "account_attack" => format!("{key} (account)"),
                    "compromised" => format!("{key} (logged in)"),
                    _ => key,
                }
            })
            .collect();
        let kw = shown
            .iter()
            .map(|k| k.chars().count())
            .max()
            .unwrap_or(8)
            .max(8);
        let _ = writeln!(
            out,
            "  {:<kw$}  {:>8}  {:<10}  {:<23}  LAST SEEN",
            "INCIDENT", "ATTEMPTS", "SERVICE", "SINCE"
        );
        for (i, key) in list.iter().zip(&shown) {
            let _ = writeln!(
                out,
                "  {:<kw$}  {:>8}  {:<10}  {:<23}  {}",
                key,
                i.attempts,
                inert(&i.service),
                time(i.since, tz),
                time(i.last_seen, tz),
            );
        }
        if list.len() > MAX_INCIDENT_LINES {
            let _ = writeln!(out, "  ... and {} more", list.len() - MAX_INCIDENT_LINES);
        }
    }
    out
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
