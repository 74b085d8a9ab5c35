//! [`Engine`]: the synchronous state machine from log lines to outgoing alerts. A line goes in
//! ([`Engine::line`]); the source's rules turn it into a hit, the detectors (per IP, per
//! subnet, per account) count it in their sliding windows, a threshold crossing becomes a
//! notice, the alert policy (grouping, cooldown, hourly cap, digests) decides which alerts
//! are due now, and only those are rendered into mails. Timers of the policy run in [`Engine::tick`]. Nothing here does
//! I/O or waits: the clock is injected, so the engine is tested by moving time.
//!
//! This file holds the state and the entry points; `detect.rs` turns hits into notices,
//! `alerts.rs` renders what the policy lets go, `reload.rs` swaps settings while keeping the state.

use super::detect::notice;
use crate::actions::{ActionContext, ActionResult, ActionRunner};
use crate::alert_kind::AlertKind;
use crate::clock::Clock;
use crate::config::Config;
use crate::control::incidents::{IncidentInfo, IncidentView};
use crate::control::{incident_id, Decisions};
use crate::detect::{DetectorSettings, IpDetector, KeyDetector};
use crate::hostinfo::HostInfo;
use crate::message::Rendered;
use crate::policy::{Notice, Outgoing, Policy, PolicySettings};
use crate::render::{AlertEnv, Renderer};
use crate::rules::{Hit, ParseCtx, RuleSet};
use anyhow::Result;
use ipnet::IpNet;
use jiff::Timestamp;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::info;

/// Lines → hits → alerts. Synchronous and clock-injected, so it is tested without threads.
pub struct Engine {
    /// Rules per source, by source index.
    pub(super) rules: Vec<RuleSet>,
    pub(super) detector: IpDetector,
    pub(super) subnets: Option<(KeyDetector<IpNet>, crate::config::SubnetConfig)>,
    pub(super) accounts: Option<(KeyDetector<String>, crate::config::AccountConfig)>,
    pub(super) compromised_min_failures: Option<u64>,
    /// (ip, account) → when a compromise alert was last sent (one per window), bounded.
    pub(super) compromise_sent: lru::LruCache<(IpAddr, String), Timestamp>,
    /// account → when a login to it during an attack from other addresses was last logged (once
    /// per window and account: the owner logs in all day, and a warning per login flooded the
    /// log with tens of thousands of lines on a generated day), bounded.
    pub(super) attacked_login_logged: lru::LruCache<String, i64>,
    pub(super) allowlist: crate::config::AllowlistConfig,
    pub(super) per_ip_window: Duration,
    pub(super) policy: Policy,
    /// Counters for the Prometheus endpoint and `authwatch status`.
    pub metrics: Arc<crate::metrics::Metrics>,
    pub(super) max_per_hour: u32,
    pub(super) group_interval: Duration,
    pub(super) renderer: Renderer,
    pub(super) env: AlertEnv,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) ctx: ParseCtx,
    /// Lines and hits seen, for the shutdown summary.
    pub lines_seen: u64,
    pub hits_seen: u64,
    /// The configured actions, and per alert kind the names of those that run for it.
    pub(super) actions: Option<Arc<ActionRunner>>,
    pub(super) action_names: Vec<(&'static str, Vec<String>)>,
    /// Alerts waiting for their actions (see [`Engine::take_pending`]).
    pub(super) pending: Vec<PendingAlert>,
    /// The administrator's silences, allows and acks, shared with the control socket, which
    /// changes them live ([`crate::control`] owns what they mean).
    pub(super) decisions: Arc<Mutex<Decisions>>,
    /// Per open incident (by [`crate::control::incident_id`]): service, log times, actions'
    /// results, for `authwatch incidents`; bounded like the incidents
    /// (`alerts.max_open_incidents`), least recently touched dropped first.
    pub(super) incident_info: lru::LruCache<String, IncidentInfo>,
    /// Fleet mode (see `fleet.rs`); `None`: local mode.
    pub(super) fleet: Option<Box<super::fleet::FleetState>>,
}

/// An alert whose actions must run before it goes to the policy (their results go into the
/// mail).
#[derive(Debug)]
pub struct PendingAlert {
    pub(super) kind: AlertKind,
    pub(super) key: String,
    pub(super) urgent: bool,
    pub(super) total: u64,
    pub(super) attempts: u64,
    pub(super) id: crate::policy::id::AlertId,
    pub(super) context: serde_json::Value,
    /// What the actions get; the IP was parsed by a rule and checked against the allowlist.
    pub action: ActionContext,
    /// The actions that run for this alert's kind.
    pub names: Vec<String>,
    /// Where the alert comes from, and so what happens once its actions are done.
    pub(super) origin: Origin,
    /// Paragraphs added below the rendered body (see [`Notice::notes`]).
    pub(super) notes: Vec<String>,
}

/// Where a [`PendingAlert`] comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Origin {
    /// This agent's own detection: mailed once the actions are done (in fleet mode with the
    /// "fleet store unavailable" note: only made while the store is down).
    Local,
    /// A fleet total this agent won the claim for: mailed once its actions are done.
    FleetMail,
    /// A fleet total another agent mails (named here): the actions' results go into this
    /// agent's incident (`authwatch incidents`), and no mail.
    FleetActOnly { mailer: String },
}

impl Engine {
    pub fn new(cfg: &Config, host: &HostInfo, clock: Arc<dyn Clock>) -> Result<Engine> {
        let renderer = Renderer::new(cfg.templates_dir.as_deref())
            .map_err(|e| anyhow::anyhow!("alert templates: {}", e.0))?
            .with_html(cfg.mail.html)
            .with_actions(&cfg.actions);
        let now = clock.now();
        Ok(Engine {
            rules: cfg
                .sources
                .iter()
                .map(|s| RuleSet::for_services(&s.services, &cfg.custom_rules))
                .collect(),
            detector: IpDetector::new(ip_settings(cfg)),
            subnets: subnet_settings(cfg).map(|(s, sc)| (KeyDetector::new(s), sc)),
            accounts: account_settings(cfg).map(|(s, ac)| (KeyDetector::new(s), ac)),
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
            decisions: Arc::default(),
            incident_info: lru::LruCache::new(
                std::num::NonZeroUsize::new(cfg.alerts.max_open_incidents)
                    .unwrap_or(std::num::NonZeroUsize::MIN),
            ),
            fleet: None,
        })
    }

    /// Share the decisions loaded from `decisions.json` (and changed by the control socket).
    pub fn set_decisions(&mut self, d: Arc<Mutex<Decisions>>) {
        self.decisions = d;
    }

    /// The decisions the engine consults.
    pub fn decisions(&self) -> Arc<Mutex<Decisions>> {
        self.decisions.clone()
    }

    fn decided(&self) -> std::sync::MutexGuard<'_, Decisions> {
        self.decisions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an `authwatch allow` covers `ip` now (its hits are not counted).
    /// The names of the actions configured for alerts of `kind` (empty: none).
    pub(super) fn action_names_for(&self, kind: AlertKind) -> Vec<String> {
        self.action_names
            .iter()
            .find(|(k, _)| *k == kind.as_str())
            .map(|(_, n)| n.clone())
            .unwrap_or_default()
    }

    pub(super) fn allowed_by_decision(&self, ip: &IpAddr, now: Timestamp) -> bool {
        self.decided().allows(ip, now).is_some()
    }

    /// Why the alert of `kind` about `key` sends no mail (silenced, acked), if it does not.
    pub(super) fn muted(&self, kind: &str, key: &str, now: Timestamp) -> Option<String> {
        let d = self.decided();
        if let Some(s) = d.silenced(kind, key, now) {
            return Some(format!(
                "silenced until {}{}",
                crate::text::human_time(s.until, &self.env.tz),
                s.reason
                    .as_ref()
                    .map(|r| format!(" ({})", crate::text::inert(r)))
                    .unwrap_or_default()
            ));
        }
        d.acked(kind, key).map(|a| format!("acked by {}", a.by))
    }

    /// The info kept for the incident of `kind` about `key` (made when missing).
    pub(super) fn info_mut(&mut self, kind: &str, key: &str) -> &mut IncidentInfo {
        let id = incident_id(kind, key);
        if !self.incident_info.contains(&id) {
            self.incident_info.put(id.clone(), IncidentInfo::default());
        }
        self.incident_info
            .get_mut(&id)
            .expect("inserted just above")
    }

    /// An incident's service and first and last attempt in log time (as the alerts show them;
    /// empty when not known, e.g. after a restart from state of an older version).
    pub(super) fn incident_log_view(&self, kind: AlertKind, key: &str) -> (String, String, String) {
        let id = incident_id(kind.as_str(), key);
        match self.incident_info.peek(&id) {
            Some(info) => (
                info.service.clone(),
                info.first_attempt.clone(),
                info.last_attempt
                    .map(|t| crate::text::human_time(t, &self.env.tz))
                    .unwrap_or_else(|| info.last_attempt_text.clone()),
            ),
            None => Default::default(),
        }
    }

    /// The open incidents for `authwatch incidents`: log times, service, attempts, kind, and
    /// what was done (actions' results, silenced, acked).
    pub fn incidents(&self) -> Vec<IncidentView> {
        let now = self.clock.now();
        self.policy
            .incidents()
            .into_iter()
            .map(|i| {
                let id = incident_id(i.kind.as_str(), &i.key);
                let info = self.incident_info.peek(&id).cloned().unwrap_or_default();
                let mut done = info.actions.clone();
                let d = self.decided();
                let silenced = d.silenced(i.kind.as_str(), &i.key, now).is_some();
                let acked = d.acked(i.kind.as_str(), &i.key).is_some();
                drop(d);
                match (self.muted(i.kind.as_str(), &i.key, now), &info.mailed_by) {
                    (Some(why), _) => done.push(why),
                    (None, Some(by)) => {
                        done.push(format!("mailed by {} (fleet)", crate::text::inert(by)))
                    }
                    (None, None) => done.push("mailed".into()),
                }
                let last = info
                    .last_attempt
                    .map(|t| crate::text::human_time(t, &self.env.tz))
                    .unwrap_or(info.last_attempt_text.clone());
                IncidentView {
                    kind_name: crate::control::incidents::kind_name(i.kind.as_str()),
                    id,
                    kind: i.kind.to_string(),
                    target: crate::text::inert(&i.key),
                    service: info.service,
                    first_attempt: info.first_attempt,
                    last_attempt: last,
                    attempts: i.total,
                    done,
                    silenced,
                    acked,
                }
            })
            .collect()
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
        let now = self.clock.now();
        crate::actions::log_results(p.action.ip, &results);
        self.info_mut(p.kind.as_str(), &p.key).actions =
            results.iter().map(|r| r.to_string()).collect();
        let mut context = p.context;
        if let serde_json::Value::Object(m) = &mut context {
            m.insert(
                "actions".into(),
                serde_json::to_value(crate::actions::for_alert(&results)).unwrap_or_default(),
            );
            // Every result (also those not quoted) tells the alert whether the IP is blocked;
            // the id is what `authwatch ack` takes.
            m.insert(
                "action_results".into(),
                serde_json::to_value(&results).unwrap_or_default(),
            );
            m.insert("alert_id".into(), p.id.id.clone().into());
        }
        // Attempts made while the actions ran were seen by the detector but could not reach
        // the incident (it did not exist yet): the incident opens at the detector's total now.
        let total = p.total.max(self.live_total(p.kind, &p.key).unwrap_or(0));
        let mut n = notice(p.kind, p.key, p.urgent, total, p.attempts, p.id, context);
        n.notes = p.notes;
        match p.origin {
            Origin::Local => {
                self.fleet_note(&mut n);
                self.offer(vec![n])
            }
            Origin::FleetMail => self.offer(vec![n]),
            Origin::FleetActOnly { mailer } => {
                // The incident is open here too (what was done, `authwatch incidents`), but
                // the mail is the other agent's: no mail, and no digest line (see `tick`).
                self.record_info(&n);
                self.info_mut(n.kind.as_str(), &n.key).mailed_by = Some(mailer);
                self.policy.note(&mut n, now);
                Vec::new()
            }
        }
    }

    /// All attempts the detector of `kind` has counted for `key` so far, if it alerted.
    pub(super) fn live_total(&self, kind: AlertKind, key: &str) -> Option<u64> {
        match kind {
            AlertKind::IpBurst => self.detector.alerted_total(&key.parse().ok()?),
            AlertKind::SubnetBurst => self.subnets.as_ref()?.0.alerted_total(&key.parse().ok()?),
            _ => None,
        }
    }

    /// Run the pending alerts' actions one alert after the other, in this thread (tests, and
    /// callers without a runtime).
    pub fn run_pending_blocking(&mut self) -> Vec<Rendered> {
        let mut out = Vec::new();
        let mut pending = self.take_pending();
        pending.extend(self.take_fleet_pending());
        for p in pending {
            let results = match &self.actions {
                Some(r) => r.run_named(&p.action, &p.names),
                None => Vec::new(),
            };
            out.extend(self.finish_pending(p, results));
        }
        out
    }

    pub(super) fn parse(&mut self, source: usize, line: &str) -> Option<Hit> {
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
    pub(super) fn offer(&mut self, notices: Vec<Notice>) -> Vec<Rendered> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for mut n in notices {
            self.metrics.inc_incidents_opened();
            self.record_info(&n);
            // This agent mails about the incident now (even if another agent did before).
            self.info_mut(n.kind.as_str(), &n.key).mailed_by = None;
            if let Some(why) = self.muted(n.kind.as_str(), &n.key, now) {
                info!(kind = %n.kind, target = %crate::text::inert(&n.key), why = %why, "alert not mailed (authwatch silence / ack)");
                self.policy.note(&mut n, now);
                continue;
            }
            let sent = self.policy.offer(n, now);
            out.extend(sent.into_iter().map(|o| self.render_outgoing(o, now)));
        }
        out
    }

    /// Keep a notice's service and log times in its incident's info.
    fn record_info(&mut self, n: &Notice) {
        let f = &n.facts;
        let info = self.info_mut(n.kind.as_str(), &n.key);
        info.service.clone_from(&f.service);
        if info.first_attempt.is_empty() {
            info.first_attempt.clone_from(&f.first_seen);
        }
        info.last_attempt_text.clone_from(&f.last_seen);
    }

    /// The fleet agent that mails about the incident of `kind` about `key`, when this agent
    /// only ran its actions for it.
    fn mailed_by(&self, kind: &str, key: &str) -> Option<&str> {
        self.incident_info
            .peek(&incident_id(kind, key))
            .and_then(|i| i.mailed_by.as_deref())
    }

    /// Timers of the alert policy (groups, digests); call about once a second.
    pub fn tick(&mut self) -> Vec<Rendered> {
        let now = self.clock.now();
        self.ctx.now = now;
        // Expired silences, allows and acks go (they already match nothing).
        self.decided().prune(now);
        let due = self.policy.tick(now);
        due.into_iter()
            .filter_map(|o| self.without_muted(o, now))
            .map(|o| self.render_outgoing(o, now))
            .collect()
    }

    /// A digest without the lines of silenced or acked incidents (none left: no digest).
    fn without_muted(&self, o: Outgoing, now: Timestamp) -> Option<Outgoing> {
        let Outgoing::Digest {
            mut incidents,
            held,
            records,
            after,
        } = o
        else {
            return Some(o);
        };
        incidents.retain(|l| {
            self.muted(l.kind.as_str(), &l.key, now).is_none()
                && self.mailed_by(l.kind.as_str(), &l.key).is_none()
        });
        if incidents.is_empty() && held.is_empty() && records.is_empty() {
            return None;
        }
        Some(Outgoing::Digest {
            incidents,
            held,
            records,
            after,
        })
    }

    /// The alert policy's state, for `state.json`.
    pub fn policy_state(&self) -> crate::policy::PolicyState {
        self.policy.state().clone()
    }

    /// Continue from a saved alert policy state.
    pub fn restore_policy(&mut self, st: crate::policy::PolicyState) {
        self.policy.restore(st);
    }

    /// The detectors' state as an owned copy (what a generation holds; see `state::journal`).
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

    /// Continue from saved detector state: a snapshot, then the journal's deltas in order.
    pub fn restore(&mut self, snap: crate::state::Detectors) {
        self.detector.restore(snap.ips);
        if let Some((d, _)) = &mut self.subnets {
            d.restore(snap.subnets);
        }
        if let Some((d, _)) = &mut self.accounts {
            d.restore(snap.accounts);
        }
    }

    /// Apply the journal's deltas after [`Engine::restore`], oldest first.
    pub fn apply_journal(&mut self, journal: Vec<crate::state::DetectorsDelta>) {
        for delta in journal {
            if let Some(d) = delta.ips {
                self.detector.apply(d);
            }
            if let (Some((det, _)), Some(d)) = (&mut self.subnets, delta.subnets) {
                det.apply(d);
            }
            if let (Some((det, _)), Some(d)) = (&mut self.accounts, delta.accounts) {
                det.apply(d);
            }
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

/// The per-IP detector's settings from the config.
pub(super) fn ip_settings(cfg: &Config) -> DetectorSettings {
    DetectorSettings {
        attempts: cfg.detect.per_ip.attempts,
        window: cfg.detect.per_ip.window,
        cooldown: cfg.alerts.cooldown,
        max_tracked_ips: cfg.detect.max_tracked_ips,
        top_accounts: cfg.alerts.top_accounts,
        log_lines: cfg.alerts.log_lines,
        min_distinct_members: 0,
    }
}

/// The per-subnet detector's settings, when subnets are watched.
pub(super) fn subnet_settings(
    cfg: &Config,
) -> Option<(DetectorSettings, crate::config::SubnetConfig)> {
    let sc = cfg.detect.per_subnet.clone()?;
    let s = DetectorSettings {
        attempts: sc.threshold.attempts,
        window: sc.threshold.window,
        cooldown: cfg.alerts.cooldown,
        max_tracked_ips: cfg.detect.max_tracked_ips,
        top_accounts: cfg.alerts.top_accounts,
        log_lines: cfg.alerts.log_lines,
        min_distinct_members: sc.min_addresses,
    };
    Some((s, sc))
}

/// The per-account detector's settings, when accounts are watched.
pub(super) fn account_settings(
    cfg: &Config,
) -> Option<(DetectorSettings, crate::config::AccountConfig)> {
    let ac = cfg.detect.per_account.clone()?;
    let s = DetectorSettings {
        attempts: ac.threshold.attempts,
        window: ac.threshold.window,
        cooldown: cfg.alerts.cooldown,
        max_tracked_ips: cfg.detect.max_tracked_ips,
        top_accounts: cfg.alerts.top_accounts,
        log_lines: cfg.alerts.log_lines,
        min_distinct_members: ac.distinct_ips,
    };
    Some((s, ac))
}

/// The detectors and policy as the checkpointer saves them (see `state::journal`).
impl crate::state::Checkpointed for Engine {
    fn full(&self) -> crate::state::DetectorsView<'_> {
        crate::state::DetectorsView {
            ips: self.detector.view(),
            subnets: self.subnets.as_ref().map(|(d, _)| d.view()),
            accounts: self.accounts.as_ref().map(|(d, _)| d.view()),
        }
    }

    fn delta(&self) -> crate::state::DetectorsDeltaView<'_> {
        crate::state::DetectorsDeltaView {
            ips: self.detector.delta(),
            subnets: self.subnets.as_ref().map(|(d, _)| d.delta()),
            accounts: self.accounts.as_ref().map(|(d, _)| d.delta()),
        }
    }

    fn pending_keys(&self) -> usize {
        self.detector.pending_keys()
            + self.subnets.as_ref().map_or(0, |(d, _)| d.pending_keys())
            + self.accounts.as_ref().map_or(0, |(d, _)| d.pending_keys())
    }

    fn snapshot_keys(&self) -> usize {
        self.detector.snapshot_keys()
            + self.subnets.as_ref().map_or(0, |(d, _)| d.snapshot_keys())
            + self.accounts.as_ref().map_or(0, |(d, _)| d.snapshot_keys())
    }

    fn mark_written(&mut self) {
        self.detector.mark_written();
        if let Some((d, _)) = &mut self.subnets {
            d.mark_written();
        }
        if let Some((d, _)) = &mut self.accounts {
            d.mark_written();
        }
    }

    fn policy(&self) -> &crate::policy::PolicyState {
        self.policy.state()
    }
}
