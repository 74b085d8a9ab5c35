//! Health of the agent itself: [`Health`] times how long each source has been unreadable or
//! silent and how long mail delivery has been failing, and turns problems that last into
//! health alerts ([`HealthContextParts`]) and log lines, once per problem; [`write_status`]
//! updates the gauges (the fleet store's too, in fleet mode) and writes `state_dir/status.json`
//! for `authwatch status`.

use super::engine::Engine;
use crate::config::{Config, SourceKind};
use crate::mail::Spool;
use crate::source::Batch;
use jiff::Timestamp;
use tracing::{debug, error, info, warn};

/// What the agent knows about the health of one source.
pub(super) struct SourceHealth {
    pub(super) path: String,
    /// A journal source (advice differs).
    pub(super) journal: bool,
    pub(super) last_line: Timestamp,
    pub(super) problem: Option<(String, Timestamp)>,
    pub(super) reported_problem: bool,
    pub(super) reported_silent: bool,
}

/// Health of sources and of mail, turned into health alerts (and log lines) when problems last.
pub(super) struct Health {
    pub(super) cfg: crate::config::HealthConfig,
    pub(super) sources: Vec<SourceHealth>,
    pub(super) smtp_target: String,
    pub(super) smtp_reported: Option<(Timestamp, String)>,
}

impl Health {
    pub(super) fn new(cfg: &Config, target: &str, now: Timestamp) -> Health {
        Health {
            cfg: cfg.health.clone(),
            sources: cfg
                .sources
                .iter()
                .map(|s| SourceHealth {
                    path: s.name(),
                    journal: matches!(s.kind, SourceKind::Journal(_)),
                    last_line: now,
                    problem: None,
                    reported_problem: false,
                    reported_silent: false,
                })
                .collect(),
            smtp_target: target.to_string(),
            smtp_reported: None,
        }
    }

    pub(super) fn batch(&mut self, b: &Batch, now: Timestamp) {
        let Some(h) = self.sources.get_mut(b.source) else {
            return;
        };
        if !b.lines.is_empty() {
            h.last_line = now;
            if h.reported_silent {
                info!(path = %h.path, "source has new lines again");
            }
            h.reported_silent = false;
        }
        match (&b.problem, &h.problem) {
            (Some(p), None) => h.problem = Some((p.clone(), now)),
            (Some(p), Some((old, _))) if p != old => h.problem = Some((p.clone(), now)),
            (None, Some(_)) => {
                if h.reported_problem {
                    info!(path = %h.path, "source can be read again");
                }
                h.problem = None;
                h.reported_problem = false;
            }
            _ => {}
        }
    }

    /// Problems that have lasted long enough to report: (title, what, detail, since, until, advice).
    pub(super) fn due(
        &mut self,
        mail: &crate::mail::MailStatus,
        now: Timestamp,
    ) -> Vec<HealthContextParts> {
        let mut out = Vec::new();
        let age = |t: Timestamp| now.as_second() - t.as_second();
        for h in &mut self.sources {
            if let Some((p, since)) = &h.problem {
                if !h.reported_problem
                    && age(*since) >= self.cfg.source_unreadable_after.as_secs() as i64
                {
                    h.reported_problem = true;
                    error!(path = %h.path, problem = %p, "source cannot be read");
                    out.push(HealthContextParts {
                        title: format!("source {} cannot be read", h.path),
                        what: h.path.clone(),
                        detail: p.clone(),
                        since: *since,
                        until: None,
                        advice: if h.journal {
                            "authwatch keeps trying. Check that journalctl is installed and that the authwatch user may read the journal (group systemd-journal or adm): without, journalctl shows only the user's own entries.".into()
                        } else {
                            "authwatch keeps trying. Check that the file exists and that the authwatch user may read it (on Debian: group adm, or Debian-exim for Exim's logs).".into()
                        },
                    });
                }
            }
            if let Some(silent) = self.cfg.source_silent_after {
                if !h.reported_silent && age(h.last_line) >= silent.as_secs() as i64 {
                    h.reported_silent = true;
                    warn!(path = %h.path, since = %h.last_line, "source silent");
                    out.push(HealthContextParts {
                        title: format!("source {} is silent", h.path),
                        what: h.path.clone(),
                        detail: format!(
                            "no new line for {}",
                            crate::text::format_duration(silent)
                        ),
                        since: h.last_line,
                        until: None,
                        advice: "Is the mail service running and still logging to this file? A changed log path or a logging failure hides attacks.".into(),
                    });
                }
            }
        }
        match (&mail.failing_since, &self.smtp_reported) {
            (Some(since), None) if age(*since) >= self.cfg.smtp_failing_after.as_secs() as i64 => {
                let err = mail.last_error.clone().unwrap_or_default();
                error!(server = %self.smtp_target, since = %since, error = %err, spooled = mail.spooled, "mail delivery has been failing; alerts wait in the spool");
                self.smtp_reported = Some((*since, err));
            }
            (None, Some((since, err))) => {
                out.push(HealthContextParts {
                    title: format!("mail delivery via {} failed for a while", self.smtp_target),
                    what: self.smtp_target.clone(),
                    detail: err.clone(),
                    since: *since,
                    until: Some(now),
                    advice: "Alerts made meanwhile were kept in the spool and have been sent now. Check the relay if this happens often.".into(),
                });
                self.smtp_reported = None;
            }
            _ => {}
        }
        out
    }
}

/// Update the gauges and write `state_dir/status.json` for `authwatch status`.
pub(super) fn write_status(
    cfg: &Config,
    engine: &Engine,
    health: &Health,
    mail: &crate::mail::MailStatus,
    target: &str,
    spool: &Spool,
) {
    use crate::metrics::{IncidentLine, MailHealth, SourceHealth, StatusSnapshot};
    let spooled = spool.pending().map(|v| v.len()).unwrap_or(0) as u64;
    let m = &engine.metrics;
    m.set_spool_size(spooled);
    for (map, n) in engine.evictions_by_map() {
        m.set_evictions_total(map, n);
    }
    let fleet = engine.fleet().map(fleet_health);
    if let Some(f) = &fleet {
        m.set_fleet(f.available, f.buffered, f.sent, f.dropped);
    }
    let incidents = engine.policy.incidents();
    m.set_open_incidents(incidents.len() as u64);
    let snap = StatusSnapshot {
        version: crate::metrics::STATUS_VERSION,
        generated_at: engine.clock.now(),
        pid: std::process::id(),
        interval_seconds: cfg.follow.checkpoint_interval.as_secs().max(1),
        sources: health
            .sources
            .iter()
            .map(|h| SourceHealth {
                name: h.path.clone(),
                ok: h.problem.is_none(),
                detail: h
                    .problem
                    .as_ref()
                    .map(|(p, _)| p.clone())
                    .unwrap_or_else(|| "following".into()),
                lag_seconds: m.lag_seconds(&h.path),
                lines_read: m.lines_read(&h.path),
            })
            .collect(),
        mail: MailHealth {
            target: target.to_string(),
            spooled,
            failed: std::fs::read_dir(cfg.state_dir.join("failed"))
                .map(|d| d.count() as u64)
                .unwrap_or(0),
            last_error: mail.failing_since.and(mail.last_error.clone()),
            last_delivered: None,
        },
        incidents: incidents
            .into_iter()
            .map(|i| {
                let (service, first_attempt, last_attempt) =
                    engine.incident_log_view(i.kind, &i.key);
                IncidentLine {
                    key: i.key.clone(),
                    kind: i.kind.to_string(),
                    service,
                    first_attempt,
                    last_attempt,
                    attempts: i.total,
                    since: i.opened,
                    last_seen: i.last_activity,
                    alerts: 1,
                }
            })
            .collect(),
        tracking: Some(engine.tracking(cfg.detect.max_tracked_ips)),
        fleet,
    };
    if let Err(e) = crate::metrics::write_status(&cfg.state_dir.join("status.json"), &snap) {
        debug!(error = %e, "cannot write status.json");
    }
}

/// The fleet store's state for `status.json` and the metrics: its masked URL (never the
/// password), this agent's fleet name, and the handle's counts.
pub(super) fn fleet_health(h: &crate::fleet::FleetHandle) -> crate::metrics::FleetHealth {
    let (buffered, dropped) = h.pending();
    let (_, sent) = h.sent();
    let available = h.available();
    crate::metrics::FleetHealth {
        store: h.url().to_string(),
        name: h.store().name().to_string(),
        available,
        down_seconds: h.down_for().filter(|_| !available).map(|d| d.as_secs()),
        buffered: buffered as u64,
        dropped,
        sent,
    }
}

/// The parts of a health alert.
pub(super) struct HealthContextParts {
    pub(super) title: String,
    pub(super) what: String,
    pub(super) detail: String,
    pub(super) since: Timestamp,
    pub(super) until: Option<Timestamp>,
    pub(super) advice: String,
}
