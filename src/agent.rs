//! The agent behind `authwatch run` and `authwatch check`: wires sources, rules, detection,
//! rendering and mail together.
//!
//! Each source is followed by its own thread (the tailer polls; a slow disk never stalls the
//! others); lines reach one [`Engine`] over a bounded channel, in order per source. The engine is
//! synchronous and clock-injected: a line goes in, at most one rendered alert comes out. An
//! alert with actions waits in the engine's `pending` until the loop starts its actions in a
//! task of its own; the results come back over a channel and the alert goes out then, so no
//! alert waits for another alert's actions (see `start_actions`, `Holds`). Mail is delivered by
//! a separate task. SIGTERM and Ctrl-C stop the tailers, the lines already read
//! are processed, queued alerts are delivered, and the process exits 0.

use crate::actions::{ActionContext, ActionResult, ActionRunner};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, SourceConfig, SourceKind, Start};
use crate::detect::{DetectorSettings, IpDetector, KeyDetector};
use crate::hostinfo::HostInfo;
use crate::mail::{run_mailer, Composer, Sender, Spool, SpoolWriter};
use crate::policy::{Notice, Outgoing, Policy, PolicySettings};
use crate::render::{
    AlertEnv, CompromiseContext, GroupAlertContext, IpAlertContext, Rendered, Renderer,
};
use crate::rules::HitKind;
use crate::rules::{Hit, ParseCtx, RuleSet};
use crate::source::journal::{JournalArgs, JournalSource};
use crate::source::stdin::StdinSource;
use crate::source::{Checkpoint, LineBatch, StartAt, Tailer};
use crate::state::{self, CursorState, SourceState, State, STATE_VERSION};
use anyhow::{Context, Result};
use ipnet::IpNet;
use jiff::Timestamp;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

/// Set up tracing: `--log-level` wins, else `RUST_LOG`, else `info`. Logs go to stderr.
pub fn init_logging(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|e| {
            eprintln!("authwatch: bad --log-level {l:?} ({e}); using info");
            EnvFilter::new("info")
        }),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// `authwatch check`: the config already loaded; now the templates and the state folder.
/// Returns a summary, or every problem found.
pub fn check(cfg: &Config) -> std::result::Result<String, String> {
    let mut problems = Vec::new();
    match Renderer::new(cfg.templates_dir.as_deref()) {
        Ok(r) => problems.extend(r.check()),
        Err(e) => problems.push(e.0),
    }
    // lettre's SMTP pool spawns (and, dropped, stops) a task: it needs a runtime to exist,
    // even one that never runs (without it `check` of a config with mail.smtp panicked).
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let _rt = rt.enter();
    if let Err(e) = Sender::new(&cfg.mail, "localhost") {
        problems.push(format!("{e:#}"));
    }
    if problems.is_empty() {
        let mail = match &cfg.mail.smtp {
            Some(s) => format!("SMTP {}:{}", s.host, s.port),
            None => format!("outbox folder {}", cfg.mail.outbox_dir.display()),
        };
        let mut out = format!(
            "{}: OK ({} source{}, alert at {} attempts in {}, mail to {} via {mail})",
            cfg.origin,
            cfg.sources.len(),
            if cfg.sources.len() == 1 { "" } else { "s" },
            cfg.detect.per_ip.attempts,
            crate::config::format_duration(cfg.detect.per_ip.window),
            cfg.mail.to.join(", "),
        );
        for s in &cfg.sources {
            out.push_str(&format!("\n  source {}", s.name()));
            if let SourceKind::Journal(j) = &s.kind {
                if let Err(e) = std::process::Command::new(&j.journalctl)
                    .arg("--version")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                {
                    out.push_str(&format!(
                        " (warning: {} cannot be run: {e})",
                        j.journalctl.display()
                    ));
                }
            }
        }
        for w in crate::config::permission_warnings(cfg) {
            out.push_str(&format!("\n  warning: {w}"));
        }
        // What each action would run for a sample alert, argument by argument.
        if !cfg.actions.is_empty() {
            let specs = cfg.actions.iter().map(|a| a.spec.clone()).collect();
            if let Ok(runner) = ActionRunner::new(specs, cfg.actions_max_concurrent) {
                let sample = ActionContext {
                    ip: IpAddr::from([203, 0, 113, 47]),
                    network: None,
                    prefix: "203.0.113.0/24".parse().ok(),
                    account: Some("info@example.com".into()),
                    count: 17,
                    service: "exim".into(),
                };
                for ((name, program, args), a) in
                    runner.preview(&sample).into_iter().zip(&cfg.actions)
                {
                    out.push_str(&format!(
                        "\n  action {name} (on {}): {} {:?}",
                        a.on.join(", "),
                        program.display(),
                        args
                    ));
                }
            }
        }
        Ok(out)
    } else {
        Err(format!(
            "{} template problem{}:\n  {}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            problems.join("\n  ")
        ))
    }
}

/// `authwatch render --sample KIND`: the alert of that kind rendered with sample values from
/// the configured templates (so an administrator can preview edits). `Err` lists the kinds, or
/// says what is wrong with the template.
pub fn render_sample(cfg: &Config, kind: &str, html: bool) -> std::result::Result<String, String> {
    use crate::render::{sample_context, KINDS};
    let Some(ctx) = sample_context(kind) else {
        return Err(format!(
            "unknown alert kind {kind:?}; known: {}",
            KINDS.join(", ")
        ));
    };
    let r = Renderer::new(cfg.templates_dir.as_deref())
        .map_err(|e| e.0)?
        .with_html(html);
    let out = r.render(kind, &ctx).map_err(|e| e.0)?;
    let mut text = format!("Subject: {}\n\n{}", out.subject, out.text);
    if let Some(h) = out.html {
        text.push_str("\n--- HTML part ---\n");
        text.push_str(&h);
    }
    Ok(text)
}

/// Lines → hits → alerts. Synchronous and clock-injected, so it is tested without threads.
pub struct Engine {
    /// Rules per source, by source index.
    rules: Vec<RuleSet>,
    detector: IpDetector,
    subnets: Option<(KeyDetector<IpNet>, crate::config::SubnetConfig)>,
    accounts: Option<(KeyDetector<String>, crate::config::AccountConfig)>,
    compromised_min_failures: Option<u64>,
    /// (ip, account) → when a compromise alert was last sent (one per window), bounded.
    compromise_sent: lru::LruCache<(IpAddr, String), Timestamp>,
    /// account → when a login to it during an attack from other addresses was last logged (once
    /// per window and account: the owner logs in all day, and a warning per login flooded the
    /// log with tens of thousands of lines on a generated day), bounded.
    attacked_login_logged: lru::LruCache<String, i64>,
    allowlist: crate::config::AllowlistConfig,
    per_ip_window: Duration,
    policy: Policy,
    /// Counters for the Prometheus endpoint and `authwatch status`.
    pub metrics: Arc<crate::metrics::Metrics>,
    max_per_hour: u32,
    group_interval: Duration,
    renderer: Renderer,
    env: AlertEnv,
    clock: Arc<dyn Clock>,
    ctx: ParseCtx,
    /// Lines and hits seen, for the shutdown summary.
    pub lines_seen: u64,
    pub hits_seen: u64,
    /// The configured actions, and per alert kind the names of those that run for it.
    actions: Option<Arc<ActionRunner>>,
    action_names: Vec<(&'static str, Vec<String>)>,
    /// Alerts waiting for their actions (see [`Engine::take_pending`]).
    pending: Vec<PendingAlert>,
}

/// An alert whose actions must run before it is rendered (their results go into the mail).
#[derive(Debug)]
pub struct PendingAlert {
    kind: &'static str,
    key: String,
    urgent: bool,
    total: u64,
    attempts: u64,
    id: String,
    context: serde_json::Value,
    /// What the actions get; the IP was parsed by a rule and checked against the allowlist.
    pub action: ActionContext,
    /// The actions that run for this alert's kind.
    pub names: Vec<String>,
}

impl Engine {
    pub fn new(cfg: &Config, host: &HostInfo, clock: Arc<dyn Clock>) -> Result<Engine> {
        let renderer = Renderer::new(cfg.templates_dir.as_deref())
            .map_err(|e| anyhow::anyhow!("alert templates: {}", e.0))?
            .with_html(cfg.mail.html);
        let now = clock.now();
        Ok(Engine {
            rules: cfg
                .sources
                .iter()
                .map(|s| RuleSet::for_services(&s.services, &cfg.custom_rules))
                .collect(),
            detector: IpDetector::new(DetectorSettings {
                attempts: cfg.detect.per_ip.attempts,
                window: cfg.detect.per_ip.window,
                cooldown: cfg.alerts.cooldown,
                max_tracked_ips: cfg.detect.max_tracked_ips,
                top_accounts: cfg.alerts.top_accounts,
                log_lines: cfg.alerts.log_lines,
                min_distinct_members: 0,
            }),
            subnets: cfg.detect.per_subnet.clone().map(|sc| {
                let d = KeyDetector::new(DetectorSettings {
                    attempts: sc.threshold.attempts,
                    window: sc.threshold.window,
                    cooldown: cfg.alerts.cooldown,
                    max_tracked_ips: cfg.detect.max_tracked_ips,
                    top_accounts: cfg.alerts.top_accounts,
                    log_lines: cfg.alerts.log_lines,
                    min_distinct_members: sc.min_addresses,
                });
                (d, sc)
            }),
            accounts: cfg.detect.per_account.clone().map(|ac| {
                let d = KeyDetector::new(DetectorSettings {
                    attempts: ac.threshold.attempts,
                    window: ac.threshold.window,
                    cooldown: cfg.alerts.cooldown,
                    max_tracked_ips: cfg.detect.max_tracked_ips,
                    top_accounts: cfg.alerts.top_accounts,
                    log_lines: cfg.alerts.log_lines,
                    min_distinct_members: ac.distinct_ips,
                });
                (d, ac)
            }),
            compromised_min_failures: cfg.detect.compromised_min_failures,
            compromise_sent: lru::LruCache::new(
                std::num::NonZeroUsize::new(4096).unwrap_or(std::num::NonZeroUsize::MIN),
            ),
            attacked_login_logged: lru::LruCache::new(
                std::num::NonZeroUsize::new(4096).unwrap_or(std::num::NonZeroUsize::MIN),
            ),
            allowlist: cfg.allowlist.clone(),
            per_ip_window: cfg.detect.per_ip.window,
            policy: Policy::new(policy_settings(cfg)),
            metrics: {
                let m = crate::metrics::Metrics::new();
                let paths: Vec<String> = cfg.sources.iter().map(|s| s.name()).collect();
                let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
                m.register(&paths, crate::rules::BUILTIN);
                Arc::new(m)
            },
            max_per_hour: cfg.alerts.max_per_hour,
            group_interval: cfg.alerts.group_interval,
            renderer,
            env: AlertEnv {
                subject_prefix: cfg.mail.subject_prefix.clone(),
                host_name: host.name.clone(),
                host_ip: host.ip_text(),
                threshold: cfg.detect.per_ip.attempts,
                window: cfg.detect.per_ip.window,
                cooldown: cfg.alerts.cooldown,
                tz: cfg.time_zone.clone(),
            },
            ctx: ParseCtx::new(cfg.time_zone.clone(), now),
            clock,
            lines_seen: 0,
            hits_seen: 0,
            actions: if cfg.actions.is_empty() {
                None
            } else {
                let specs = cfg.actions.iter().map(|a| a.spec.clone()).collect();
                let runner = ActionRunner::new(specs, cfg.actions_max_concurrent)
                    .map_err(|e| anyhow::anyhow!("actions: {e}"))?
                    .with_allowlist(cfg.allowlist.nets.clone());
                Some(Arc::new(runner))
            },
            action_names: crate::config::ACTION_KINDS
                .iter()
                .map(|k| {
                    let names = cfg
                        .actions
                        .iter()
                        .filter(|a| a.on.iter().any(|o| o == k))
                        .map(|a| a.spec.name.clone())
                        .collect();
                    (*k, names)
                })
                .collect(),
            pending: Vec::new(),
        })
    }

    /// The action runner, when actions are configured.
    pub fn action_runner(&self) -> Option<Arc<ActionRunner>> {
        self.actions.clone()
    }

    /// Alerts made since the last call that wait for their actions. Run the actions (for
    /// example with [`ActionRunner::run_named`], several at once), then hand each alert with its
    /// results to [`Engine::finish_pending`].
    pub fn take_pending(&mut self) -> Vec<PendingAlert> {
        std::mem::take(&mut self.pending)
    }

    /// Log the results of an alert's actions, put them into the alert, and pass it on to the
    /// alert policy; returns the mails due now.
    pub fn finish_pending(&mut self, p: PendingAlert, results: Vec<ActionResult>) -> Vec<Rendered> {
        crate::actions::log_results(p.action.ip, &results);
        let mut context = p.context;
        if let serde_json::Value::Object(m) = &mut context {
            m.insert(
                "actions".into(),
                serde_json::to_value(crate::actions::for_alert(&results)).unwrap_or_default(),
            );
        }
        let mut r = self.render(p.kind, &context, &p.key, p.attempts);
        r.id = Some(p.id);
        // Attempts made while the actions ran were seen by the detector but could not reach
        // the incident (it did not exist yet): the incident opens at the detector's total now.
        let total = p.total.max(self.live_total(p.kind, &p.key).unwrap_or(0));
        let n = notice(p.kind, p.key, p.urgent, r, total);
        self.offer(vec![n])
    }

    /// All attempts the detector of `kind` has counted for `key` so far, if it alerted.
    fn live_total(&self, kind: &str, key: &str) -> Option<u64> {
        match kind {
            "ip_burst" => self.detector.alerted_total(&key.parse().ok()?),
            "subnet_burst" => self.subnets.as_ref()?.0.alerted_total(&key.parse().ok()?),
            _ => None,
        }
    }

    /// Run the pending alerts' actions one alert after the other, in this thread (tests, and
    /// callers without a runtime).
    pub fn run_pending_blocking(&mut self) -> Vec<Rendered> {
        let mut out = Vec::new();
        for p in self.take_pending() {
            let results = match &self.actions {
                Some(r) => r.run_named(&p.action, &p.names),
                None => Vec::new(),
            };
            out.extend(self.finish_pending(p, results));
        }
        out
    }

    /// Render an alert now, or, when actions run for its kind, keep it in `pending` until they
    /// have run. `action` is `None` for alerts that name no single address.
    #[allow(clippy::too_many_arguments)]
    fn emit<C: serde::Serialize>(
        &mut self,
        kind: &'static str,
        key: String,
        urgent: bool,
        total: u64,
        attempts: u64,
        id: String,
        ctx: &C,
        action: Option<ActionContext>,
    ) -> Option<Notice> {
        let mut context = serde_json::to_value(ctx).unwrap_or_default();
        let names = self
            .action_names
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, n)| n.clone())
            .unwrap_or_default();
        if let (Some(action), false, true) = (action, names.is_empty(), self.actions.is_some()) {
            self.pending.push(PendingAlert {
                kind,
                key,
                urgent,
                total,
                attempts,
                id,
                context,
                action,
                names,
            });
            return None;
        }
        if let serde_json::Value::Object(m) = &mut context {
            m.entry("actions")
                .or_insert(serde_json::Value::Array(Vec::new()));
        }
        let mut r = self.render(kind, &context, &key, attempts);
        r.id = Some(id);
        Some(notice(kind, key, urgent, r, total))
    }

    /// What actions get for an alert about `ip`, or about the subnet `network` (then `ip` is
    /// its first address): `{prefix}` is the subnet, or the configured subnet grouping of `ip`
    /// (IPv6 /64 by default) when there is one.
    fn action_context(
        &self,
        ip: IpAddr,
        network: Option<IpNet>,
        account: Option<String>,
        count: u64,
        service: &str,
    ) -> Option<ActionContext> {
        self.actions.as_ref()?;
        let prefix = network.or_else(|| {
            let sc = self.subnets.as_ref().map(|(_, sc)| sc)?;
            let bits = match ip {
                IpAddr::V6(_) => Some(sc.ipv6_prefix),
                IpAddr::V4(_) => sc.ipv4_prefix,
            }?;
            IpNet::new(ip, bits).ok().map(|n| n.trunc())
        });
        Some(ActionContext {
            ip,
            network,
            prefix,
            account,
            count,
            service: service.to_string(),
        })
    }

    fn parse(&mut self, source: usize, line: &str) -> Option<Hit> {
        self.rules.get_mut(source)?.parse(line, &self.ctx)
    }

    /// How long ago (seconds, wall clock) the line was written, by its stamp: how far behind
    /// the log authwatch is. `None` for a line without a stamp.
    pub fn lag_of(&self, line: &str) -> Option<f64> {
        let (t, _) = crate::rules::time::parse_leading_time(line, &self.ctx);
        let d = self.clock.now().duration_since(t?);
        Some(d.as_secs_f64().max(0.0))
    }

    /// Refresh "now" for year inference; call once per batch of lines.
    pub fn refresh_clock(&mut self) {
        self.ctx.now = self.clock.now();
    }

    /// Process one line from source number `source`; returns the mails due now (usually none).
    pub fn line(&mut self, source: usize, line: &str) -> Vec<Rendered> {
        let notices = self.detect_line(source, line);
        if notices.is_empty() {
            return Vec::new();
        }
        self.offer(notices)
    }

    /// Hand new incidents to the alert policy; returns the mails due now.
    fn offer(&mut self, notices: Vec<Notice>) -> Vec<Rendered> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for n in notices {
            self.metrics.inc_incidents_opened();
            let sent = self.policy.offer(n, now);
            out.extend(sent.into_iter().map(|o| self.render_outgoing(o, now)));
        }
        out
    }

    /// Render a health alert.
    fn render_health(&self, p: HealthContextParts) -> Rendered {
        let tz = &self.env.tz;
        let now = self.clock.now();
        let ctx = crate::render::HealthContext {
            subject_prefix: self.env.subject_prefix.clone(),
            host_name: self.env.host_name.clone(),
            host_ip: self.env.host_ip.clone(),
            title: p.title,
            what: p.what,
            detail: crate::render::inert(&p.detail),
            since: crate::render::human_time(p.since, tz),
            until: p
                .until
                .map(|t| crate::render::human_time(t, tz))
                .unwrap_or_default(),
            advice: p.advice,
            generated_at: crate::render::human_time(now, tz),
        };
        let title = ctx.title.clone();
        self.render("health", &ctx, &title, 0)
    }

    /// Timers of the alert policy (groups, digests); call about once a second.
    pub fn tick(&mut self) -> Vec<Rendered> {
        let now = self.clock.now();
        self.ctx.now = now;
        let due = self.policy.tick(now);
        due.into_iter()
            .map(|o| self.render_outgoing(o, now))
            .collect()
    }

    fn render_outgoing(&self, o: Outgoing, now: Timestamp) -> Rendered {
        let id = o.id();
        let mut r = match o {
            Outgoing::Single(r) => return r,
            Outgoing::Group(alerts) => self.render_digest(alerts, Vec::new(), 0, Vec::new(), now),
            Outgoing::Digest {
                incidents,
                held,
                records,
                after: _,
            } => {
                let n = held.len() as u64;
                self.render_digest(held, incidents, n, records, now)
            }
        };
        r.id = id;
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
                .map(|i| crate::render::DigestIncident {
                    kind: i.kind,
                    key: i.key,
                    new_attempts: i.new_attempts,
                    total: i.total,
                    opened: crate::render::human_time(i.opened, tz),
                    last_activity: crate::render::human_time(i.last_activity, tz),
                    repeated: i.repeated,
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
            group_interval: crate::config::format_duration(self.group_interval),
            generated_at: crate::render::human_time(now, tz),
        };
        let n = ctx.new_alerts.len() as u64;
        let mut r = self.render("digest", &ctx, "digest", n);
        r.attachments.extend(csv);
        r
    }

    /// Rules and detectors: the alerts this line causes, before the policy.
    fn detect_line(&mut self, source: usize, line: &str) -> Vec<Notice> {
        self.lines_seen += 1;
        let Some(hit) = self.parse(source, line) else {
            return Vec::new();
        };
        self.hits_seen += 1;
        self.metrics.add_hits(hit.service, 1);
        let now = self.clock.now();
        let at = hit.time.unwrap_or(now);
        debug!(ip = %hit.ip, user = ?hit.user, service = hit.service, attempts = hit.attempts, kind = ?hit.kind, "hit");
        if self.allowlist.contains(&hit.ip) {
            debug!(ip = %hit.ip, "allowlisted; not counted");
            return Vec::new();
        }
        let mut out = Vec::new();
        if hit.kind == HitKind::Success {
            out.extend(self.success(&hit, line, at, now));
            return out;
        }
        if self.policy.has_incidents() {
            self.report_activity(&hit, now);
        }
        if let Some(alert) = self.detector.observe(&hit, line, at) {
            info!(
                ip = %alert.key,
                attempts_in_window = alert.attempts_in_window,
                attempts_total = alert.attempts_total,
                alert_number = alert.alert_number,
                "login-guessing threshold crossed; alerting"
            );
            let ctx = IpAlertContext::new(&alert, &self.env, now);
            let key = alert.key.to_string();
            let id = alert_id("ip_burst", &key, alert.alert_number, alert.last_seen);
            let action = self.action_context(
                alert.key,
                None,
                alert.top_members.first().map(|(a, _)| a.clone()),
                alert.attempts_in_window,
                alert.service,
            );
            out.extend(self.emit(
                "ip_burst",
                key,
                false,
                alert.attempts_total,
                alert.attempts_in_window,
                id,
                &ctx,
                action,
            ));
        }
        let attempts = u64::from(hit.attempts);
        let member = ip_text(&hit.ip);
        let mut subnet_alert = None;
        if let Some((d, sc)) = &mut self.subnets {
            let prefix = match hit.ip {
                IpAddr::V6(_) => Some(sc.ipv6_prefix),
                IpAddr::V4(_) => sc.ipv4_prefix,
            };
            if let Some(net) = prefix
                .and_then(|p| IpNet::new(hit.ip, p).ok())
                .map(|n| n.trunc())
            {
                if let Some(a) = d.observe_key(net, Some(&member), attempts, hit.service, line, at)
                {
                    subnet_alert = Some((net, a, sc.threshold));
                }
            }
        }
        if let Some((net, a, th)) = subnet_alert {
            info!(subnet = %net, addresses = a.distinct_members_in_window, attempts_in_window = a.attempts_in_window, "subnet threshold crossed; alerting");
            let ctx = GroupAlertContext::new(&a, &self.env, th.attempts, th.window, now);
            let key = net.to_string();
            let id = alert_id("subnet_burst", &key, a.alert_number, a.last_seen);
            let action = self.action_context(
                net.network(),
                Some(net),
                hit.user.clone(),
                a.attempts_in_window,
                hit.service,
            );
            out.extend(self.emit(
                "subnet_burst",
                key,
                false,
                a.attempts_total,
                a.attempts_in_window,
                id,
                &ctx,
                action,
            ));
        }
        let mut account_alert = None;
        if let (Some((d, ac)), Some(user)) = (&mut self.accounts, &hit.user) {
            if let Some(a) =
                d.observe_key(user.clone(), Some(&member), attempts, hit.service, line, at)
            {
                account_alert = Some((a, ac.threshold));
            }
        }
        if let Some((a, th)) = account_alert {
            info!(account = %crate::render::inert(&a.key), ips = a.distinct_members_in_window, attempts_in_window = a.attempts_in_window, "account attacked from many IPs; alerting");
            let ctx = GroupAlertContext::new(&a, &self.env, th.attempts, th.window, now);
            let key = ctx.target.clone();
            let id = alert_id("account_attack", &key, a.alert_number, a.last_seen);
            // Many addresses, none of them "the" attacker: no actions.
            out.extend(self.emit(
                "account_attack",
                key,
                false,
                a.attempts_total,
                a.attempts_in_window,
                id,
                &ctx,
                None,
            ));
        }
        out
    }

    /// A successful login: urgent when the IP, or the account, had enough failures within the
    /// window before it; otherwise, when configured, it clears the IP's failures.
    fn success(&mut self, hit: &Hit, line: &str, at: Timestamp, now: Timestamp) -> Option<Notice> {
        let from_ip = self.detector.attempts_within(&hit.ip, at);
        let on_account = match (&self.accounts, &hit.user) {
            (Some((d, _)), Some(u)) => d.attempts_within(u, at),
            _ => 0,
        };
        // Urgent only when the address that logged in is the one that failed: an account under
        // a distributed attack sees its rightful owner log in all day, and an urgent alert for
        // each of those would flood the inbox past every cap (measured: 27,000 on a generated
        // day). Those logins are logged as a warning instead.
        let urgent = self
            .compromised_min_failures
            .is_some_and(|min| from_ip >= min);
        if !urgent
            && on_account > 0
            && self
                .compromised_min_failures
                .is_some_and(|min| on_account >= min)
        {
            let user = hit.user.as_deref().unwrap_or_default();
            let sec = at.as_second();
            let window = self.per_ip_window.as_secs() as i64;
            let logged_lately = self
                .attacked_login_logged
                .get(user)
                .is_some_and(|t| sec.saturating_sub(*t) < window);
            if !logged_lately {
                self.attacked_login_logged.put(user.to_string(), sec);
                warn!(ip = %hit.ip, account = %crate::render::inert(user), failures_on_account = on_account, "successful login to an account under attack from other addresses (logged once per window and account)");
            }
        }
        if !urgent {
            if self.allowlist.reset_on_success {
                self.detector.forget(&hit.ip);
            }
            return None;
        }
        let account = hit.user.clone().unwrap_or_default();
        let key = (hit.ip, account.clone());
        if let Some(prev) = self.compromise_sent.get(&key) {
            if at.duration_since(*prev).as_secs() < self.per_ip_window.as_secs() as i64 {
                return None;
            }
        }
        self.compromise_sent.put(key, at);
        warn!(ip = %hit.ip, account = %crate::render::inert(&account), failures_from_ip = from_ip, failures_on_account = on_account, "successful login after failed attempts; urgent alert");
        let ctx = CompromiseContext {
            subject_prefix: self.env.subject_prefix.clone(),
            host_name: self.env.host_name.clone(),
            host_ip: self.env.host_ip.clone(),
            ip: hit.ip.to_string(),
            ip_version: if hit.ip.is_ipv4() { 4 } else { 6 },
            account: crate::render::inert(&account),
            service: hit.service.to_string(),
            service_label: hit.service.to_string(),
            failures_from_ip: from_ip,
            failures_on_account: on_account,
            window: crate::config::format_duration(self.per_ip_window),
            login_time: crate::render::human_time(at, &self.env.tz),
            log_line: crate::render::inert(line),
            generated_at: crate::render::human_time(now, &self.env.tz),
            actions: Vec::new(),
        };
        let id = alert_id("compromised", &format!("{} {account}", hit.ip), 1, at);
        let action = self.action_context(hit.ip, None, Some(account), from_ip, hit.service);
        self.emit(
            "compromised",
            format!("{} {}", ctx.ip, ctx.account),
            true,
            from_ip,
            from_ip,
            id,
            &ctx,
            action,
        )
    }

    /// Tell the policy about further attempts on keys that may have open incidents.
    fn report_activity(&mut self, hit: &Hit, now: Timestamp) {
        // Only keys that alerted can have an open incident: the others are not looked up (a
        // key formatted and searched per hit was a tenth of the engine's time).
        let attempts = u64::from(hit.attempts);
        if let Some(t) = self.detector.alerted_total(&hit.ip) {
            self.policy
                .activity("ip_burst", &hit.ip.to_string(), t + attempts, now);
        }
        if let Some((d, sc)) = &self.subnets {
            let prefix = match hit.ip {
                IpAddr::V6(_) => Some(sc.ipv6_prefix),
                IpAddr::V4(_) => sc.ipv4_prefix,
            };
            if let Some(net) = prefix
                .and_then(|p| IpNet::new(hit.ip, p).ok())
                .map(|n| n.trunc())
            {
                if let Some(t) = d.alerted_total(&net) {
                    self.policy
                        .activity("subnet_burst", &net.to_string(), t + attempts, now);
                }
            }
        }
        if let (Some((d, _)), Some(user)) = (&self.accounts, &hit.user) {
            if let Some(t) = d.alerted_total(user) {
                let key = crate::render::inert(user);
                self.policy
                    .activity("account_attack", &key, t + attempts, now);
            }
        }
    }

    /// Render an alert; a template that fails still gives a plain mail with the essentials.
    fn render<C: serde::Serialize>(
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
                    facts: None,
                    attachments: Vec::new(),
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

    /// The alert policy's state, for `state.json`.
    pub fn policy_state(&self) -> crate::policy::PolicyState {
        self.policy.state().clone()
    }

    /// Continue from a saved alert policy state.
    pub fn restore_policy(&mut self, st: crate::policy::PolicyState) {
        self.policy.restore(st);
    }

    /// The detectors' state, for `state.json`.
    pub fn snapshot(&self) -> crate::state::Detectors {
        crate::state::Detectors {
            ips: self.detector.snapshot(),
            subnets: self
                .subnets
                .as_ref()
                .map(|(d, _)| d.snapshot())
                .unwrap_or_default(),
            accounts: self
                .accounts
                .as_ref()
                .map(|(d, _)| d.snapshot())
                .unwrap_or_default(),
        }
    }

    /// The detectors' state, for `state.json`, serialized straight from the live maps.
    pub fn detectors_view(&self) -> crate::state::DetectorsView<'_> {
        crate::state::DetectorsView {
            ips: self.detector.view(),
            subnets: self.subnets.as_ref().map(|(d, _)| d.view()),
            accounts: self.accounts.as_ref().map(|(d, _)| d.view()),
        }
    }

    /// Continue from saved detector state.
    pub fn restore(&mut self, snap: crate::state::Detectors) {
        self.detector.restore(snap.ips);
        if let Some((d, _)) = &mut self.subnets {
            d.restore(snap.subnets);
        }
        if let Some((d, _)) = &mut self.accounts {
            d.restore(snap.accounts);
        }
    }

    /// Keys forgotten because of the cap, per map ([`crate::metrics::EVICTION_MAPS`] order),
    /// since start (and before, when restored).
    pub fn evictions_by_map(&self) -> [(&'static str, u64); 3] {
        let [ips, subnets, accounts] = crate::metrics::EVICTION_MAPS;
        [
            (ips, self.detector.evictions()),
            (
                subnets,
                self.subnets.as_ref().map_or(0, |(d, _)| d.evictions()),
            ),
            (
                accounts,
                self.accounts.as_ref().map_or(0, |(d, _)| d.evictions()),
            ),
        ]
    }

    /// IPs currently tracked.
    pub fn tracked_ips(&self) -> usize {
        self.detector.tracked()
    }

    /// How full the per-key maps are against `cap`, and their evictions.
    pub fn tracking(&self, cap: usize) -> crate::metrics::Tracking {
        let [(_, evicted_ips), (_, evicted_subnets), (_, evicted_accounts)] =
            self.evictions_by_map();
        crate::metrics::Tracking {
            cap: cap as u64,
            ips: self.detector.tracked() as u64,
            subnets: self.subnets.as_ref().map_or(0, |(d, _)| d.tracked()) as u64,
            accounts: self.accounts.as_ref().map_or(0, |(d, _)| d.tracked()) as u64,
            evicted_ips,
            evicted_subnets,
            evicted_accounts,
        }
    }
}

/// `ip.to_string()`, quicker for IPv4 (the std formatter goes through `fmt` machinery that cost
/// more than the rest of a hit's bookkeeping).
fn ip_text(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let mut s = String::with_capacity(15);
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                if o >= 100 {
                    s.push(char::from(b'0' + o / 100));
                }
                if o >= 10 {
                    s.push(char::from(b'0' + o / 10 % 10));
                }
                s.push(char::from(b'0' + o % 10));
            }
            s
        }
        IpAddr::V6(_) => ip.to_string(),
    }
}

/// A stable identity for an alert: the same lines give the same id, also when they are read
/// again after a crash.
fn alert_id(kind: &str, key: &str, number: u32, at: Timestamp) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    (kind, key, number, at.as_second()).hash(&mut h);
    format!("{kind}-{:016x}", h.finish())
}

fn notice(kind: &str, key: String, urgent: bool, rendered: Rendered, total: u64) -> Notice {
    Notice {
        kind: kind.to_string(),
        key,
        urgent,
        rendered,
        total,
    }
}

/// The alert policy's settings from the config.
pub fn policy_settings(cfg: &Config) -> PolicySettings {
    PolicySettings {
        group_wait: cfg.alerts.group_wait,
        group_interval: cfg.alerts.group_interval,
        repeat_interval: cfg.alerts.repeat_interval,
        max_per_hour: cfg.alerts.max_per_hour,
        cooldown: cfg.alerts.cooldown,
        max_incidents: cfg.alerts.max_open_incidents,
    }
}

/// What the agent knows about the health of one source.
struct SourceHealth {
    path: String,
    /// A journal source (advice differs).
    journal: bool,
    last_line: Timestamp,
    problem: Option<(String, Timestamp)>,
    reported_problem: bool,
    reported_silent: bool,
}

/// Health of sources and of mail, turned into health alerts (and log lines) when problems last.
struct Health {
    cfg: crate::config::HealthConfig,
    sources: Vec<SourceHealth>,
    smtp_target: String,
    smtp_reported: Option<(Timestamp, String)>,
}

impl Health {
    fn new(cfg: &Config, target: &str, now: Timestamp) -> Health {
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

    fn batch(&mut self, b: &Batch, now: Timestamp) {
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
    fn due(&mut self, mail: &crate::mail::MailStatus, now: Timestamp) -> Vec<HealthContextParts> {
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
                            crate::config::format_duration(silent)
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
fn write_status(
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
            .map(|i| IncidentLine {
                key: i.key.clone(),
                kind: i.kind.clone(),
                service: String::new(),
                attempts: i.total,
                since: i.opened,
                last_seen: i.last_activity,
                alerts: 1,
            })
            .collect(),
        tracking: Some(engine.tracking(cfg.detect.max_tracked_ips)),
    };
    if let Err(e) = crate::metrics::write_status(&cfg.state_dir.join("status.json"), &snap) {
        debug!(error = %e, "cannot write status.json");
    }
}

/// The parts of a health alert.
struct HealthContextParts {
    title: String,
    what: String,
    detail: String,
    since: Timestamp,
    until: Option<Timestamp>,
    advice: String,
}

/// Stage an alert for the spool (see [`SpoolWriter`]): it becomes durable, and the mail task
/// is woken, at [`commit`], once per batch of lines or timer tick. An alert whose id was
/// spooled before (lines read again after a crash) is not sent again.
fn queue(composer: &Composer, writer: &mut SpoolWriter, r: Rendered) {
    if let Some(id) = &r.id {
        if writer.seen(id) {
            info!(id = %id, subject = %r.subject, "alert already sent before a restart; not sending it again");
            return;
        }
    }
    match composer.build(&r) {
        Ok(msg) => {
            if let Err(e) = writer.stage(&msg, &r) {
                error!(
                    dir = %writer.spool().dir().display(),
                    error = %e,
                    subject = %r.subject,
                    body = %r.text,
                    "cannot write the alert to the spool"
                );
            }
        }
        Err(e) => {
            error!(error = %format!("{e:#}"), subject = %r.subject, "cannot build the alert mail")
        }
    }
}

/// Make the staged alerts durable, then wake the mail task. Call before a checkpoint may move
/// past the lines that made them.
fn commit(writer: &mut SpoolWriter, notify: &tokio::sync::Notify) {
    if writer.commit() > 0 {
        notify.notify_one();
    }
}

/// A file source hands over what it read after at most this many bytes, so that the engine works
/// on lines while more are read, a batch's alerts are spooled (and sent) without waiting for a
/// whole backlog, and a catch-up never holds the backlog in memory (the channel holds at most
/// 64 batches). The journal and stdin sources cap their batches by lines.
const MAX_BATCH_BYTES: u64 = 1 << 20;

/// Where a source stands: what is saved in `state.json` so a restart continues there.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Position {
    /// Nothing to save (stdin, or nothing read yet).
    #[default]
    None,
    File(Checkpoint),
    /// A journal entry's `__CURSOR`.
    Cursor(String),
}

/// A batch of lines from one source, and where the source stands after them.
struct Batch {
    source: usize,
    lines: LineBatch,
    position: Position,
    /// Why the source cannot be read right now, if it cannot.
    problem: Option<String>,
    /// The source has ended (end of standard input) and sends nothing more.
    done: bool,
}

/// A source being read: a file, the journal or standard input.
enum Reader {
    File(Tailer),
    Journal(Box<JournalSource>),
    Stdin(StdinSource),
}

impl Reader {
    /// Open the source `s`, continuing from `resume` where that was saved.
    fn open(s: &SourceConfig, resume: Position, cfg: &Config) -> Result<Reader> {
        let start = match s.start {
            Start::Beginning => StartAt::Beginning,
            Start::End => StartAt::End,
        };
        let max = cfg.follow.max_line_bytes;
        Ok(match &s.kind {
            SourceKind::File(path) => {
                let mut tailer = match resume {
                    Position::File(cp) => {
                        info!(path = %path.display(), offset = cp.offset, "resuming from the saved checkpoint");
                        Tailer::resume(path.clone(), cp, max)
                    }
                    _ => Tailer::new(path.clone(), start, max),
                };
                tailer.set_max_bytes_per_poll(MAX_BATCH_BYTES);
                Reader::File(tailer)
            }
            SourceKind::Journal(j) => {
                let cursor = match resume {
                    Position::Cursor(c) => {
                        info!(source = %s.name(), "resuming the journal after the saved cursor");
                        Some(c)
                    }
                    _ => None,
                };
                let args = JournalArgs {
                    binary: j.journalctl.clone(),
                    files: j.files.clone(),
                    directory: j.directory.clone(),
                    start,
                    max_line_bytes: max,
                    time_zone: cfg.time_zone.clone(),
                    ..JournalArgs::default()
                };
                Reader::Journal(Box::new(JournalSource::new(j.units.clone(), cursor, args)))
            }
            SourceKind::Stdin => Reader::Stdin(
                StdinSource::stdin(max).context("starting the thread that reads stdin")?,
            ),
        })
    }

    /// Hand the lines ready now to `on_line`; the journal and stdin wait up to `wait` for the
    /// first one. Returns whether more are ready at once (the caller should not sleep).
    fn poll(&mut self, wait: Duration, on_line: &mut dyn FnMut(&str)) -> bool {
        match self {
            Reader::File(t) => {
                t.poll(on_line);
                !t.caught_up()
            }
            Reader::Journal(j) => {
                j.poll_timeout(wait, on_line);
                !j.caught_up()
            }
            Reader::Stdin(i) => {
                i.poll_timeout(wait, on_line);
                !i.caught_up()
            }
        }
    }

    fn position(&self) -> Position {
        match self {
            Reader::File(t) => t.checkpoint().map_or(Position::None, Position::File),
            Reader::Journal(j) => j.cursor().map_or(Position::None, Position::Cursor),
            Reader::Stdin(_) => Position::None,
        }
    }

    /// What keeps the source from being read, in words that stay the same while the problem
    /// lasts (health alerts time it).
    fn problem(&self) -> Option<String> {
        match self {
            Reader::File(t) => t.problem(),
            Reader::Journal(j) => {
                let h = j.health();
                if !h.running {
                    Some(
                        h.last_error
                            .unwrap_or_else(|| "journalctl is not running".to_string()),
                    )
                } else {
                    h.stderr_tail
                        .last()
                        .map(|l| format!("journalctl reports: {l}"))
                }
            }
            Reader::Stdin(i) => i.error().map(|e| format!("reading stdin failed: {e}")),
        }
    }

    /// Whether the source has ended for good (only stdin ends).
    fn done(&self) -> bool {
        matches!(self, Reader::Stdin(i) if i.is_done())
    }

    /// The thread that polls a file sleeps between polls; the others wait inside `poll`.
    fn sleeps(&self) -> bool {
        matches!(self, Reader::File(_))
    }
}

/// Read one source in a thread of its own and send its lines to the engine in batches.
fn spawn_reader(
    idx: usize,
    mut reader: Reader,
    poll: Duration,
    stop: Arc<AtomicBool>,
    tx: mpsc::Sender<Batch>,
) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("source-{idx}"))
        .spawn(move || {
            let mut last_pos = Position::None;
            let mut last_problem = None;
            loop {
                let stopping = stop.load(Ordering::SeqCst);
                let mut lines = LineBatch::default();
                let more = reader.poll(poll, &mut |l| lines.push(l));
                let position = reader.position();
                let problem = reader.problem();
                let done = reader.done();
                if (!lines.is_empty() || position != last_pos || problem != last_problem || done)
                    && tx
                        .blocking_send(Batch {
                            source: idx,
                            lines,
                            position: position.clone(),
                            problem: problem.clone(),
                            done,
                        })
                        .is_err()
                {
                    return;
                }
                last_pos = position;
                last_problem = problem;
                if stopping || done {
                    return;
                }
                // Catching up (the poll stopped at its cap): read on at once.
                if !more && reader.sleeps() {
                    std::thread::sleep(poll);
                }
            }
        })
        .context("starting a source thread")
}

/// An alert whose actions have finished, on its way back to the loop.
struct ActionsDone {
    alert: PendingAlert,
    results: Vec<ActionResult>,
    source: usize,
    hold: u64,
}

/// Start the actions of the alerts a batch made, each alert in a task of its own (its commands
/// under the runner's concurrency limit and timeouts); each sends its alert with the results
/// on `tx` when its own actions have finished, so that no alert (an URGENT one least of all)
/// waits for another's actions. Returns how many were started, and the alerts that need no
/// task (no runner) rendered at once.
fn start_actions(
    engine: &mut Engine,
    tx: &mpsc::UnboundedSender<ActionsDone>,
    source: usize,
    hold: u64,
) -> (usize, Vec<Rendered>) {
    let pending = engine.take_pending();
    let Some(runner) = engine.action_runner() else {
        let mut out = Vec::new();
        for p in pending {
            out.extend(engine.finish_pending(p, Vec::new()));
        }
        return (0, out);
    };
    let n = pending.len();
    for alert in pending {
        let (runner, tx) = (runner.clone(), tx.clone());
        tokio::task::spawn_blocking(move || {
            let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                runner.run_named(&alert.action, &alert.names)
            }))
            .unwrap_or_else(|_| {
                error!(ip = %alert.action.ip, "an action task panicked; the alert goes out without results");
                Vec::new()
            });
            let _ = tx.send(ActionsDone {
                alert,
                results,
                source,
                hold,
            });
        });
    }
    (n, Vec::new())
}

/// Where each source's checkpoint may go while alerts wait for their actions. A batch whose
/// alerts' actions still run holds its source's checkpoint before it (after a crash the lines
/// are read again and the alerts made again; the shipped examples are idempotent, and the ids
/// of alerts already spooled are not sent twice); later batches queue behind it, and the
/// checkpoint moves on, in order, as the holds are released.
#[derive(Default)]
struct Holds {
    per_source: Vec<std::collections::VecDeque<Hold>>,
    next: u64,
    in_flight: usize,
}

struct Hold {
    id: u64,
    /// Where the source stands after this batch (and after later batches without alerts).
    position: Position,
    outstanding: usize,
}

impl Holds {
    fn new(sources: usize) -> Holds {
        Holds {
            per_source: (0..sources).map(|_| Default::default()).collect(),
            ..Default::default()
        }
    }

    /// The id for the next batch's hold.
    fn next_id(&self) -> u64 {
        self.next
    }

    /// A batch of `source` was processed; `started` of its alerts wait for their actions.
    fn batch(
        &mut self,
        source: usize,
        position: Position,
        started: usize,
        positions: &mut [Position],
    ) {
        let Some(q) = self.per_source.get_mut(source) else {
            return;
        };
        if started > 0 {
            q.push_back(Hold {
                id: self.next,
                position,
                outstanding: started,
            });
            self.next += 1;
            self.in_flight += started;
        } else if let Some(last) = q.back_mut() {
            last.position = position;
        } else {
            positions[source] = position;
        }
    }

    /// One alert of hold `id` of `source` is done.
    fn done(&mut self, source: usize, id: u64, positions: &mut [Position]) {
        let Some(q) = self.per_source.get_mut(source) else {
            return;
        };
        if let Some(h) = q.iter_mut().find(|h| h.id == id) {
            h.outstanding = h.outstanding.saturating_sub(1);
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        while q.front().is_some_and(|h| h.outstanding == 0) {
            if let Some(h) = q.pop_front() {
                positions[source] = h.position;
            }
        }
    }
}

/// How long saving the state may be put off while actions run (the saved detectors must not
/// be ahead of the saved checkpoints): longer than any one action may take
/// ([`crate::actions::MAX_TIMEOUT`]), so only an unbroken stream of overlapping actions
/// reaches it.
const MAX_SAVE_DEFERRAL: Duration = Duration::from_secs(900);

/// Make sure the state folder exists (created `0700`) and is writable, and take its lock (a
/// second agent on the same folder refuses to start, naming the first one's pid); a clear
/// error otherwise. The lock is held as long as the returned guard lives.
fn prepare_state_dir(cfg: &Config) -> Result<state::StateLock> {
    let d = &cfg.state_dir;
    state::create_private_dir(d)
        .with_context(|| format!("state_dir {}: cannot create the folder", d.display()))?;
    let probe = d.join(".authwatch-write-test");
    state::create_private(&probe)
        .with_context(|| format!("state_dir {}: not writable", d.display()))?;
    let _ = std::fs::remove_file(probe);
    state::lock_state_dir(d).map_err(|e| anyhow::anyhow!("{e}"))
}

/// How often evictions from the per-key maps are reported (once per interval, and at stop:
/// never silently).
const EVICTION_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Warn about keys evicted from each map since the last report (`reported`: the running
/// totals then, updated).
fn report_evictions(engine: &Engine, reported: &mut [(&'static str, u64); 3], cap: usize) {
    for (now, last) in engine.evictions_by_map().iter().zip(reported.iter_mut()) {
        if now.1 > last.1 {
            let evicted = now.1 - last.1;
            match now.0 {
                "ips" => warn!(evicted, cap, "tracked IPs reached detect.max_tracked_ips; the least recently seen were forgotten"),
                "subnets" => warn!(evicted, cap, "tracked subnets reached detect.max_tracked_ips; the least recently seen were forgotten"),
                _ => warn!(evicted, cap, "tracked accounts reached detect.max_tracked_ips; the least recently seen were forgotten"),
            }
            *last = *now;
        }
    }
}

/// How long shutdown waits for spooled alerts to be sent before leaving them for the next start.
const SHUTDOWN_MAIL_GRACE: Duration = Duration::from_secs(5);

/// Read the config file again and build a new engine that continues from the running one.
fn reload_config(
    cfg: &Config,
    host: &HostInfo,
    clock: &Arc<dyn Clock>,
    engine: &Engine,
) -> Result<(Config, Engine, Sender)> {
    let Some(path) = &cfg.path else {
        anyhow::bail!("the embedded configuration cannot be reloaded; start with --config FILE");
    };
    let mut new = Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    if cfg
        .sources
        .iter()
        .all(|s| matches!(s.kind, SourceKind::Stdin))
    {
        // `run --stdin`: the pipe stays the source, whatever the file lists.
        new.sources = cfg.sources.clone();
    }
    let same_sources = new.sources.len() == cfg.sources.len()
        && new
            .sources
            .iter()
            .zip(&cfg.sources)
            .all(|(a, b)| a.kind == b.kind && a.services == b.services);
    if !same_sources {
        anyhow::bail!("the sources changed: restart authwatch to follow the new list");
    }
    if new.state_dir != cfg.state_dir {
        anyhow::bail!("state_dir changed: restart authwatch to move it");
    }
    let mut fresh = Engine::new(&new, host, clock.clone())?;
    fresh.restore(engine.snapshot());
    fresh.restore_policy(engine.policy_state());
    fresh.lines_seen = engine.lines_seen;
    fresh.hits_seen = engine.hits_seen;
    fresh.metrics = engine.metrics.clone();
    let sender = Sender::new(&new.mail, &host.name)?;
    Ok((new, fresh, sender))
}

/// `authwatch run` on a fresh tokio runtime, until SIGTERM or Ctrl-C.
pub fn run_blocking(cfg: Config) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        // Register the handlers now, before any work: a SIGTERM that arrives while the first
        // lines are being read must still shut down cleanly.
        #[cfg(unix)]
        let shutdown = {
            use tokio::signal::unix::{signal, SignalKind};
            let term = signal(SignalKind::terminate());
            let int = signal(SignalKind::interrupt());
            async move {
                match (term, int) {
                    (Ok(mut term), Ok(mut int)) => {
                        tokio::select! {
                            _ = term.recv() => info!("SIGTERM received; shutting down"),
                            _ = int.recv() => info!("interrupt received; shutting down"),
                        }
                    }
                    (term, int) => {
                        let e = term.err().or(int.err()).map(|e| e.to_string()).unwrap_or_default();
                        warn!(error = %e, "cannot listen for SIGTERM/SIGINT; only Ctrl-C stops authwatch");
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            }
        };
        #[cfg(not(unix))]
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let (hup_tx, hup_rx) = mpsc::channel(1);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::hangup()) {
                Ok(mut hup) => {
                    tokio::spawn(async move {
                        while hup.recv().await.is_some() {
                            info!("SIGHUP received; reloading the configuration");
                            let _ = hup_tx.try_send(());
                        }
                    });
                }
                Err(e) => warn!(error = %e, "cannot listen for SIGHUP; reload by restarting"),
            }
        }
        #[cfg(not(unix))]
        drop(hup_tx);
        run(cfg, Arc::new(SystemClock), shutdown, Some(hup_rx)).await
    })
}

/// The agent: follow the sources, alert, until `shutdown` completes.
/// The running mail task and its controls.
struct MailTask {
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    status: tokio::sync::watch::Receiver<crate::mail::MailStatus>,
}

impl MailTask {
    fn start(
        sender: Sender,
        cfg: &Config,
        notify: Arc<tokio::sync::Notify>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<MailTask> {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (status_tx, status) = tokio::sync::watch::channel(crate::mail::MailStatus::default());
        let task = tokio::spawn(run_mailer(
            sender,
            Spool::open(&cfg.state_dir)?,
            notify,
            stop_rx,
            cfg.mail.retry.clone(),
            status_tx,
            metrics,
        ));
        Ok(MailTask { task, stop, status })
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            error!(error = %e, "mail task failed");
        }
    }
}

/// The agent: follow the sources, alert, until `shutdown` completes. Each message on `reload`
/// (SIGHUP) reads the config file again: thresholds, templates, mail settings and the policy
/// change without losing windows, incidents or history; a broken config is logged and the old
/// one kept. Sources and `state_dir` need a restart to change.
pub async fn run(
    cfg: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()>,
    reload: Option<mpsc::Receiver<()>>,
) -> Result<()> {
    let _lock = prepare_state_dir(&cfg)?;
    crate::config::log_permission_warnings(&cfg);
    let host = HostInfo::discover(&cfg.host);
    let mut engine = Engine::new(&cfg, &host, clock.clone())?;
    let clock_now = || clock.now();
    let composer = Composer::new(&cfg.mail)?;
    let sender = Sender::new(&cfg.mail, &host.name)?;
    let mut reload = reload;
    let mail_target = sender.target().to_string();
    let mut writer = SpoolWriter::open(&cfg.state_dir).with_context(|| {
        format!(
            "state_dir {}: cannot open the spool",
            cfg.state_dir.display()
        )
    })?;
    let spooled = writer.spool().pending().map(|v| v.len()).unwrap_or(0);
    info!(
        config = %cfg.origin,
        host = %host.name,
        host_ip = %host.ip_text(),
        mail = %sender.target(),
        sources = cfg.sources.len(),
        spooled,
        "authwatch started"
    );
    let notify = Arc::new(tokio::sync::Notify::new());
    let mut health = Health::new(&cfg, &mail_target, clock_now());
    let mut mailer = MailTask::start(sender, &cfg, notify.clone(), engine.metrics.clone())?;
    let metrics_server = match cfg.metrics_listen {
        Some(addr) => match crate::metrics::serve(addr, engine.metrics.clone()) {
            Ok(srv) => {
                info!(listen = %srv.local_addr(), "metrics endpoint serving /metrics");
                Some(srv)
            }
            Err(e) => {
                error!(listen = %addr, error = %e, "cannot serve metrics; continuing without");
                None
            }
        },
        None => None,
    };
    let mut composer = composer;

    let loaded = state::load_checked(&cfg.state_dir);
    let saved = loaded.state;
    if let Some(problem) = loaded.problem {
        // Never silently: the windows (and maybe the offsets) of the last run are gone.
        error!(problem = %problem, "the saved state was corrupt");
        let now = clock_now();
        let r = engine.render_health(HealthContextParts {
            title: "saved state was corrupt".into(),
            what: cfg.state_dir.join("state.json").display().to_string(),
            detail: problem,
            since: now,
            until: None,
            advice: "The unusable file was kept as state.json.bad-<time> for a look. Check the disk and whether something else writes into state_dir; attacks in progress are counted afresh.".into(),
        });
        queue(&composer, &mut writer, r);
        commit(&mut writer, &notify);
    }
    if let Some(st) = &saved {
        info!(
            sources = st.sources.len(),
            tracked_ips = st.detector.ips.len(),
            "continuing from the saved state"
        );
    }
    let mut positions: Vec<Position> = cfg
        .sources
        .iter()
        .map(|s| {
            let st = saved.as_ref();
            match &s.kind {
                SourceKind::File(p) => st
                    .and_then(|st| st.checkpoint_for(p))
                    .map_or(Position::None, Position::File),
                SourceKind::Journal(_) => st
                    .and_then(|st| st.cursor_for(&s.name()))
                    .map_or(Position::None, Position::Cursor),
                SourceKind::Stdin => Position::None,
            }
        })
        .collect();
    if let Some(st) = saved {
        engine.restore(st.detector);
        engine.restore_policy(st.policy);
    }
    let save_state = |engine: &Engine, positions: &[Position]| {
        let st = State {
            version: STATE_VERSION,
            sources: cfg
                .sources
                .iter()
                .zip(positions)
                .filter_map(|(s, pos)| match (s.file(), pos) {
                    (Some(path), Position::File(cp)) => Some(SourceState {
                        path: path.to_path_buf(),
                        checkpoint: cp.clone(),
                    }),
                    _ => None,
                })
                .collect(),
            cursors: cfg
                .sources
                .iter()
                .zip(positions)
                .filter_map(|(s, pos)| match pos {
                    Position::Cursor(c) => Some(CursorState {
                        source: s.name(),
                        cursor: c.clone(),
                    }),
                    _ => None,
                })
                .collect(),
            detector: engine.detectors_view(),
            policy: engine.policy.state(),
        };
        if let Err(e) = state::save(&cfg.state_dir, &st) {
            error!(dir = %cfg.state_dir.display(), error = %e, "cannot save the state (checkpoints, windows); a restart would re-read lines");
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    let (line_tx, mut line_rx) = mpsc::channel::<Batch>(64);
    let mut threads = Vec::new();
    for (i, s) in cfg.sources.iter().enumerate() {
        info!(source = %s.name(), services = ?s.services, start = ?s.start, "following");
        let reader = Reader::open(s, positions[i].clone(), &cfg)?;
        threads.push(spawn_reader(
            i,
            reader,
            cfg.follow.poll_interval,
            stop.clone(),
            line_tx.clone(),
        )?);
    }
    // With only finite sources (stdin), authwatch ends when they have.
    let finite = cfg
        .sources
        .iter()
        .all(|s| matches!(s.kind, SourceKind::Stdin));
    let mut ended = vec![false; cfg.sources.len()];
    drop(line_tx);

    tokio::pin!(shutdown);
    let mut save_tick = tokio::time::interval(cfg.follow.checkpoint_interval);
    save_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = false;
    let mut policy_tick = tokio::time::interval(Duration::from_secs(1));
    policy_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut eviction_tick = tokio::time::interval(EVICTION_REPORT_INTERVAL);
    let mut evictions_reported = engine.evictions_by_map();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<ActionsDone>();
    let mut holds = Holds::new(cfg.sources.len());
    let mut save_deferred_since: Option<std::time::Instant> = None;
    // An alert's actions are done: it goes out now, and its batch's hold on the checkpoint is
    // released.
    let finish = |engine: &mut Engine,
                  writer: &mut SpoolWriter,
                  composer: &Composer,
                  holds: &mut Holds,
                  positions: &mut [Position],
                  d: ActionsDone| {
        for r in engine.finish_pending(d.alert, d.results) {
            queue(composer, writer, r);
        }
        commit(writer, &notify);
        holds.done(d.source, d.hold, positions);
    };
    loop {
        tokio::select! {
            Some(()) = async {
                match reload.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                match reload_config(&cfg, &host, &clock, &engine) {
                    Ok((new_cfg, new_engine, sender)) => {
                        engine = new_engine;
                        composer = Composer::new(&new_cfg.mail)?;
                        let old = std::mem::replace(
                            &mut mailer,
                            MailTask::start(sender, &new_cfg, notify.clone(), engine.metrics.clone())?,
                        );
                        old.stop().await;
                        notify.notify_one();
                        health.cfg = new_cfg.health.clone();
                        info!(config = %new_cfg.origin, "configuration reloaded; windows and incidents kept");
                    }
                    Err(e) => error!(error = %format!("{e:#}"), "configuration reload failed; keeping the running configuration"),
                }
            }
            _ = policy_tick.tick() => {
                let status = mailer.status.borrow().clone();
                for parts in health.due(&status, clock_now()) {
                    let r = engine.render_health(parts);
                    queue(&composer, &mut writer, r);
                }
                let due = engine.tick();
                if !due.is_empty() {
                    dirty = true;
                }
                for r in due {
                    queue(&composer, &mut writer, r);
                }
                commit(&mut writer, &notify);
            }
            _ = eviction_tick.tick() => {
                report_evictions(&engine, &mut evictions_reported, cfg.detect.max_tracked_ips);
            }
            batch = line_rx.recv() => {
                let Some(batch) = batch else { break };
                health.batch(&batch, clock_now());
                if let Some(s) = cfg.sources.get(batch.source) {
                    engine.metrics.add_lines_read(&s.name(), batch.lines.len() as u64);
                }
                engine.refresh_clock();
                for l in batch.lines.iter() {
                    for r in engine.line(batch.source, l) {
                        queue(&composer, &mut writer, r);
                    }
                }
                let hold = holds.next_id();
                let (started, now) = start_actions(&mut engine, &done_tx, batch.source, hold);
                for r in now {
                    queue(&composer, &mut writer, r);
                }
                if let (Some(s), Some(last)) = (cfg.sources.get(batch.source), batch.lines.last()) {
                    if let Some(lag) = engine.lag_of(last) {
                        engine.metrics.set_lag_seconds(&s.name(), lag);
                    }
                }
                // The batch's alerts without actions are durable in the spool (one commit per
                // batch, not per alert); only now may the checkpoint move past them, and not
                // past alerts still waiting for their actions (see `Holds`).
                commit(&mut writer, &notify);
                holds.batch(batch.source, batch.position, started, &mut positions);
                dirty = true;
                if batch.done {
                    if let Some(e) = ended.get_mut(batch.source) {
                        *e = true;
                    }
                    if finite && ended.iter().all(|e| *e) {
                        info!("end of input; finishing");
                        break;
                    }
                }
            }
            Some(d) = done_rx.recv() => {
                finish(&mut engine, &mut writer, &composer, &mut holds, &mut positions, d);
                dirty = true;
            }
            _ = save_tick.tick() => {
                if dirty {
                    // While actions run, the detectors are ahead of the held checkpoints: a
                    // state saved now would, after a crash, count the held lines twice.
                    let deferred = save_deferred_since.map_or(Duration::ZERO, |t| t.elapsed());
                    if holds.in_flight == 0 || deferred >= MAX_SAVE_DEFERRAL {
                        if holds.in_flight > 0 {
                            warn!(running = holds.in_flight, "actions have kept running for a long time; saving the state anyway");
                        }
                        save_state(&engine, &positions);
                        dirty = false;
                        save_deferred_since = None;
                    } else {
                        save_deferred_since.get_or_insert_with(std::time::Instant::now);
                    }
                }
                let status = mailer.status.borrow().clone();
                write_status(&cfg, &engine, &health, &status, &mail_target, writer.spool());
            }
            _ = &mut shutdown => break,
        }
    }
    // Stop the tailers; each makes one last poll, and what they read is still processed.
    stop.store(true, Ordering::SeqCst);
    let joiner = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    });
    while let Some(batch) = line_rx.recv().await {
        engine.refresh_clock();
        for l in batch.lines.iter() {
            for r in engine.line(batch.source, l) {
                queue(&composer, &mut writer, r);
            }
        }
        let hold = holds.next_id();
        let (started, now) = start_actions(&mut engine, &done_tx, batch.source, hold);
        for r in now {
            queue(&composer, &mut writer, r);
        }
        commit(&mut writer, &notify);
        holds.batch(batch.source, batch.position, started, &mut positions);
    }
    let _ = joiner.await;
    // Alerts still waiting for their actions go out when those end (each is under its
    // timeout, so this wait is bounded).
    if holds.in_flight > 0 {
        info!(
            running = holds.in_flight,
            "waiting for running actions before stopping"
        );
    }
    while holds.in_flight > 0 {
        let Some(d) = done_rx.recv().await else { break };
        finish(
            &mut engine,
            &mut writer,
            &composer,
            &mut holds,
            &mut positions,
            d,
        );
    }
    save_state(&engine, &positions);
    // Give the mail task a short while to send what was just spooled, then stop it; whatever
    // is left stays in the spool for the next start.
    notify.notify_one();
    let drain = async {
        while writer
            .spool()
            .pending()
            .map(|v| !v.is_empty())
            .unwrap_or(false)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let _ = tokio::time::timeout(SHUTDOWN_MAIL_GRACE, drain).await;
    mailer.stop().await;
    if let Some(srv) = metrics_server {
        srv.shutdown();
    }
    // Evictions since the last minute's report are not left unsaid.
    report_evictions(&engine, &mut evictions_reported, cfg.detect.max_tracked_ips);
    let [(_, ev_ips), (_, ev_subnets), (_, ev_accounts)] = engine.evictions_by_map();
    info!(
        lines = engine.lines_seen,
        hits = engine.hits_seen,
        tracked_ips = engine.tracked_ips(),
        evicted_ips = ev_ips,
        evicted_subnets = ev_subnets,
        evicted_accounts = ev_accounts,
        "authwatch stopped"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::path::Path;

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
            problem: problem.map(str::to_string),
        }
    }

    #[test]
    fn render_sample_previews_every_kind() {
        let cfg = Config::embedded_example().unwrap();
        for kind in crate::render::KINDS {
            let out = render_sample(&cfg, kind, false).unwrap();
            assert!(out.starts_with("Subject: [authwatch] "), "{kind}: {out}");
            assert!(out.contains("Automatic alert from authwatch - DO NOT reply"));
        }
        assert!(render_sample(&cfg, "ip_burst", true)
            .unwrap()
            .contains("<table"));
        let e = render_sample(&cfg, "nope", false).unwrap_err();
        assert!(e.contains("ip_burst") && e.contains("compromised"), "{e}");
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
            subjects[0].contains("10 addresses in 2001:db8:a11:77::/64 made 10 failed logins"),
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
            "[authwatch] URGENT: 203.0.113.7 logged in as alice after 7 failed attempts on mx1.test"
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
            "[authwatch] 203.0.113.8 made 5 failed logins in 10m on mx1.test"
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
}
