//! Rendering for the [`Engine`], the one place alerts become mail text, after the alert policy
//! has decided: what the policy lets go (one alert, a group, a digest with held-back alerts)
//! and health alerts are filled from the configured templates (a template that fails still
//! gives a plain mail with the essentials). An alert the policy held in a `state.json` of an
//! older version, which rendered before the policy, is sent with that old text.

use super::engine::Engine;
use super::health::HealthContextParts;
use crate::message::Rendered;
use crate::policy::{Notice, Outgoing};
use jiff::Timestamp;
use tracing::error;

/// The alerts a group or digest follows up, for its `In-Reply-To`/`References`: the first
/// alert of each incident it lists, then those the carried alerts follow, each once, in order.
fn thread_of(incidents: &[crate::policy::DigestLine], alerts: &[Rendered]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let ids = incidents
        .iter()
        .filter_map(|i| i.thread.as_ref())
        .chain(alerts.iter().flat_map(|a| a.thread.iter()));
    for id in ids {
        if !out.contains(id) {
            out.push(id.clone());
        }
    }
    out
}

impl Engine {
    /// Render a health alert.
    pub(super) fn render_health(&self, p: HealthContextParts) -> Rendered {
        let tz = &self.env.tz;
        let now = self.clock.now();
        let ctx = crate::render::HealthContext {
            subject_prefix: self.env.subject_prefix.clone(),
            host_name: self.env.host_name.clone(),
            host_ip: self.env.host_ip.clone(),
            title: p.title,
            what: p.what,
            detail: crate::text::inert(&p.detail),
            since: crate::text::human_time(p.since, tz),
            until: p
                .until
                .map(|t| crate::text::human_time(t, tz))
                .unwrap_or_default(),
            advice: p.advice,
            generated_at: crate::text::human_time(now, tz),
        };
        let title = ctx.title.clone();
        self.render("health", &ctx, &title, 0)
    }

    pub(super) fn render_outgoing(&self, o: Outgoing, now: Timestamp) -> Rendered {
        let (id, legacy_id) = (o.id(), o.legacy_id());
        let (mut r, thread) = match o {
            Outgoing::Single(n) => return self.render_notice(n),
            Outgoing::Group(alerts) => {
                let alerts: Vec<Rendered> =
                    alerts.into_iter().map(|n| self.render_notice(n)).collect();
                let thread = thread_of(&[], &alerts);
                let r = self.render_digest(alerts, Vec::new(), 0, Vec::new(), now);
                (r, thread)
            }
            Outgoing::Digest {
                incidents,
                held,
                records,
                after: _,
            } => {
                let n = held.len() as u64;
                let held: Vec<Rendered> = held.into_iter().map(|n| self.render_notice(n)).collect();
                let thread = thread_of(&incidents, &held);
                (self.render_digest(held, incidents, n, records, now), thread)
            }
        };
        r.id = id;
        r.legacy_id = legacy_id;
        r.thread = thread;
        r
    }

    /// Render one alert the policy let go, with its id and the alert it follows up.
    fn render_notice(&self, n: Notice) -> Rendered {
        let mut r = match n.prerendered {
            Some(old) => Rendered {
                subject: old.subject,
                text: old.text,
                html: old.html,
                ..Default::default()
            },
            None => self.render(n.kind.as_str(), &n.context, &n.key, n.attempts),
        };
        r.id = n.id;
        r.legacy_id = n.legacy_id;
        r.thread = n.thread;
        for para in &n.notes {
            super::fleet::append(&mut r, para);
        }
        r
    }

    fn render_digest(
        &self,
        new_alerts: Vec<Rendered>,
        incidents: Vec<crate::policy::DigestLine>,
        held_count: u64,
        records: Vec<crate::policy::HeldRecord>,
        now: Timestamp,
    ) -> Rendered {
        let tz = &self.env.tz;
        let csv = crate::render::held_csv(&records);
        let ctx = crate::render::DigestContext {
            subject_prefix: self.env.subject_prefix.clone(),
            host_name: self.env.host_name.clone(),
            host_ip: self.env.host_ip.clone(),
            new_attempts: incidents.iter().map(|i| i.new_attempts).sum(),
            incidents: incidents
                .into_iter()
                .map(|i| {
                    let (service, first_attempt, last_attempt) =
                        self.incident_log_view(i.kind, &i.key);
                    crate::render::DigestIncident {
                        kind: i.kind.to_string(),
                        service,
                        first_attempt,
                        last_attempt,
                        key: i.key,
                        new_attempts: i.new_attempts,
                        total: i.total,
                        opened: crate::text::human_time(i.opened, tz),
                        last_activity: crate::text::human_time(i.last_activity, tz),
                        repeated: i.repeated,
                    }
                })
                .collect(),
            new_alerts,
            held_count,
            held_dropped: 0,
            held_records: records
                .iter()
                .take(crate::render::DIGEST_TABLE_ROWS)
                .cloned()
                .collect(),
            held_records_total: records.len() as u64,
            held_csv: csv
                .as_ref()
                .map(|a| a.file_name.clone())
                .unwrap_or_default(),
            max_per_hour: self.max_per_hour,
            group_interval: crate::text::format_duration(self.group_interval),
            generated_at: crate::text::human_time(now, tz),
        };
        let n = ctx.new_alerts.len() as u64;
        let mut r = self.render("digest", &ctx, "digest", n);
        r.attachments.extend(csv);
        r
    }

    /// Render an alert; a template that fails still gives a plain mail with the essentials.
    pub(super) fn render<C: serde::Serialize>(
        &self,
        kind: &str,
        ctx: &C,
        target: &str,
        attempts: u64,
    ) -> Rendered {
        match self.renderer.render(kind, ctx) {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, kind, target, "alert template failed; sending a plain fallback");
                Rendered {
                    html: None,
                    id: None,
                    legacy_id: None,
                    attachments: Vec::new(),
                    thread: Vec::new(),
                    subject: format!(
                        "{} {kind}: {target} ({attempts} failed logins) on {}",
                        self.env.subject_prefix, self.env.host_name
                    ),
                    text: format!(
                        "Automatic alert from authwatch - DO NOT reply\n\nThe {kind} alert template failed ({e}).\n\nTarget: {target}\nAttempts in window: {attempts}\nHost: {} ({})\n",
                        self.env.host_name, self.env.host_ip
                    ),
                }
            }
        }
    }
}
