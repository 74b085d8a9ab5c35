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
//! In fleet mode the `authwatch_fleet_*` series show the fleet store's state
//! ([`Metrics::set_fleet`]); in local mode they are absent.
//!
//! The agent writes a [`StatusSnapshot`] as JSON to `state_dir/status.json` ([`write_status`]);
//! `authwatch status` reads it ([`read_status`]) and prints [`format_status_with`].
//!
//! This file holds the counters and their Prometheus text; `metrics/server.rs` the endpoint,
//! `metrics/status.rs` the status snapshot.

mod server;
mod status;

pub use server::{parse_listen, serve, validate_listen, MetricsServer};
pub use status::{
    format_status, format_status_with, read_status, write_status, FleetHealth, IncidentLine,
    MailHealth, SourceHealth, StatusSnapshot, Tracking, STATUS_VERSION,
};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

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
    /// Fleet mode: the `authwatch_fleet_*` series are shown only once this is set.
    fleet: std::sync::atomic::AtomicBool,
    fleet_up: AtomicU64,
    fleet_buffered: AtomicU64,
    fleet_sent: AtomicU64,
    fleet_dropped: AtomicU64,
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

    /// The fleet store's state (fleet mode only; the `authwatch_fleet_*` series appear with the
    /// first call): answering or not, hits buffered for replay now, and the running totals of
    /// hits the store accepted and hits dropped because the buffer was full.
    pub fn set_fleet(&self, up: bool, buffered: u64, sent_total: u64, dropped_total: u64) {
        self.fleet_up.store(u64::from(up), Ordering::Relaxed);
        self.fleet_buffered.store(buffered, Ordering::Relaxed);
        self.fleet_sent.fetch_max(sent_total, Ordering::Relaxed);
        self.fleet_dropped
            .fetch_max(dropped_total, Ordering::Relaxed);
        self.fleet.store(true, Ordering::Relaxed);
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
        if self.fleet.load(Ordering::Relaxed) {
            single(
                &mut out,
                "authwatch_fleet_store_up",
                "gauge",
                "1 when the fleet store answers, 0 while it is down (detection uses local thresholds).",
                &self.fleet_up,
            );
            single(
                &mut out,
                "authwatch_fleet_buffered_hits",
                "gauge",
                "Hits waiting for the fleet store, replayed when it answers.",
                &self.fleet_buffered,
            );
            single(
                &mut out,
                "authwatch_fleet_hits_sent_total",
                "counter",
                "Hits the fleet store accepted.",
                &self.fleet_sent,
            );
            single(
                &mut out,
                "authwatch_fleet_dropped_hits_total",
                "counter",
                "Hits dropped because the fleet replay buffer (fleet.buffer) was full.",
                &self.fleet_dropped,
            );
        }
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

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
