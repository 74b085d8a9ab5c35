//! From a hit to notices: the part of the [`Engine`] that runs a parsed line through the
//! allowlist and the detectors (per IP, per subnet, per account), turns threshold crossings and
//! logins after failures into notices for the alert policy, tells the policy about further
//! attempts on open incidents, and parks alerts whose actions must run first
//! ([`Engine::take_pending`]). Alert ids are made by [`crate::policy::id`].

use super::engine::{Engine, PendingAlert};
use crate::actions::ActionContext;
use crate::alert_kind::AlertKind;
use crate::policy::id::{alert_id, AlertId};
use crate::policy::Notice;
use crate::render::{CompromiseContext, GroupAlertContext, IpAlertContext};
use crate::rules::{Hit, HitKind};
use ipnet::IpNet;
use jiff::Timestamp;
use std::net::IpAddr;
use tracing::{debug, info, warn};

impl Engine {
    /// A notice for the policy now, or, when actions run for its kind, keep the alert in
    /// `pending` until they have run (their results go into its context). `action` is `None`
    /// for alerts that name no single address. Nothing is rendered here: that happens once
    /// the policy lets the alert go (`alerts.rs`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn emit<C: serde::Serialize>(
        &mut self,
        kind: AlertKind,
        key: String,
        urgent: bool,
        total: u64,
        attempts: u64,
        id: AlertId,
        ctx: &C,
        action: Option<ActionContext>,
    ) -> Option<Notice> {
        let mut context = serde_json::to_value(ctx).unwrap_or_default();
        if let serde_json::Value::Object(m) = &mut context {
            // For `authwatch ack {{ incident_id }}` in the templates.
            m.insert(
                "incident_id".into(),
                crate::control::incident_id(kind.as_str(), &key).into(),
            );
        }
        let names = self.action_names_for(kind);
        if self.fleet_decides(kind) {
            debug!(%kind, key = %crate::text::inert(&key), "local threshold crossed; the fleet total decides");
            if let serde_json::Value::Object(m) = &mut context {
                m.entry("actions")
                    .or_insert(serde_json::Value::Array(Vec::new()));
            }
            // Its actions run if it is released (the store failed meanwhile).
            let act = action
                .filter(|_| !names.is_empty() && self.actions.is_some())
                .map(|a| (a, names));
            self.fleet_hold(notice(kind, key, urgent, total, attempts, id, context), act);
            return None;
        }
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
                origin: super::engine::Origin::Local,
                notes: Vec::new(),
            });
            return None;
        }
        if let serde_json::Value::Object(m) = &mut context {
            m.entry("actions")
                .or_insert(serde_json::Value::Array(Vec::new()));
        }
        let mut n = notice(kind, key, urgent, total, attempts, id, context);
        self.fleet_note(&mut n);
        Some(n)
    }

    /// What actions get for an alert about `ip`, or about the subnet `network` (then `ip` is
    /// its first address): `{prefix}` is the subnet, or the configured subnet grouping of `ip`
    /// (IPv6 /64 by default) when there is one.
    pub(super) fn action_context(
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
    /// Rules and detectors: the alerts this line causes, before the policy.
    pub(super) fn detect_line(&mut self, source: usize, line: &str) -> Vec<Notice> {
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
        if self.allowed_by_decision(&hit.ip, now) {
            debug!(ip = %hit.ip, "allowed by `authwatch allow`; not counted");
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
        self.fleet_hit(&hit, at);
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
            let id = alert_id(
                AlertKind::IpBurst,
                &key,
                alert.alert_number,
                alert.last_seen,
            );
            let action = self.action_context(
                alert.key,
                None,
                alert.top_members.first().map(|(a, _)| a.clone()),
                alert.attempts_in_window,
                alert.service,
            );
            out.extend(self.emit(
                AlertKind::IpBurst,
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
            let id = alert_id(AlertKind::SubnetBurst, &key, a.alert_number, a.last_seen);
            let action = self.action_context(
                net.network(),
                Some(net),
                hit.user.clone(),
                a.attempts_in_window,
                hit.service,
            );
            out.extend(self.emit(
                AlertKind::SubnetBurst,
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
            info!(account = %crate::text::inert(&a.key), ips = a.distinct_members_in_window, attempts_in_window = a.attempts_in_window, "account attacked from many IPs; alerting");
            let ctx = GroupAlertContext::new(&a, &self.env, th.attempts, th.window, now);
            let key = ctx.target.clone();
            let id = alert_id(AlertKind::AccountAttack, &key, a.alert_number, a.last_seen);
            // Many addresses, none of them "the" attacker: no actions.
            out.extend(self.emit(
                AlertKind::AccountAttack,
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
                warn!(ip = %hit.ip, account = %crate::text::inert(user), failures_on_account = on_account, "successful login to an account under attack from other addresses (logged once per window and account)");
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
        warn!(ip = %hit.ip, account = %crate::text::inert(&account), failures_from_ip = from_ip, failures_on_account = on_account, "successful login after failed attempts; urgent alert");
        let ctx = CompromiseContext {
            subject_prefix: self.env.subject_prefix.clone(),
            host_name: self.env.host_name.clone(),
            host_ip: self.env.host_ip.clone(),
            ip: hit.ip.to_string(),
            ip_version: if hit.ip.is_ipv4() { 4 } else { 6 },
            account: crate::text::inert(&account),
            service: hit.service.to_string(),
            service_label: hit.service.to_string(),
            failures_from_ip: from_ip,
            failures_on_account: on_account,
            window: crate::text::format_duration(self.per_ip_window),
            login_time: crate::text::human_time(at, &self.env.tz),
            log_line: crate::text::inert(line),
            generated_at: crate::text::human_time(now, &self.env.tz),
            actions: Vec::new(),
        };
        let id = alert_id(
            AlertKind::Compromised,
            &format!("{} {account}", hit.ip),
            1,
            at,
        );
        let action = self.action_context(hit.ip, None, Some(account), from_ip, hit.service);
        self.emit(
            AlertKind::Compromised,
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
    pub(super) fn report_activity(&mut self, hit: &Hit, now: Timestamp) {
        // Only keys that alerted can have an open incident: the others are not looked up (a
        // key formatted and searched per hit was a tenth of the engine's time).
        let attempts = u64::from(hit.attempts);
        let at = hit.time.unwrap_or(now);
        if let Some(t) = self.detector.alerted_total(&hit.ip) {
            let key = hit.ip.to_string();
            self.info_mut(AlertKind::IpBurst.as_str(), &key)
                .last_attempt = Some(at);
            self.policy
                .activity(AlertKind::IpBurst, &key, t + attempts, now);
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
                    let key = net.to_string();
                    self.info_mut(AlertKind::SubnetBurst.as_str(), &key)
                        .last_attempt = Some(at);
                    self.policy
                        .activity(AlertKind::SubnetBurst, &key, t + attempts, now);
                }
            }
        }
        if let (Some((d, _)), Some(user)) = (&self.accounts, &hit.user) {
            if let Some(t) = d.alerted_total(user) {
                let key = crate::text::inert(user);
                self.info_mut(AlertKind::AccountAttack.as_str(), &key)
                    .last_attempt = Some(at);
                self.policy
                    .activity(AlertKind::AccountAttack, &key, t + attempts, now);
            }
        }
    }
}

/// `ip.to_string()`, quicker for IPv4 (the std formatter goes through `fmt` machinery that cost
/// more than the rest of a hit's bookkeeping).
pub(super) fn ip_text(ip: &IpAddr) -> String {
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

/// The notice for the policy about an alert, with its template context (`actions` filled in)
/// and the facts a digest's record of it shows.
pub(super) fn notice(
    kind: AlertKind,
    key: String,
    urgent: bool,
    total: u64,
    attempts: u64,
    id: AlertId,
    context: serde_json::Value,
) -> Notice {
    Notice {
        kind,
        key,
        urgent,
        total,
        attempts,
        id: Some(id.id),
        legacy_id: Some(id.legacy),
        facts: crate::render::alert_facts(&context),
        context,
        prerendered: None,
        thread: Vec::new(),
        notes: Vec::new(),
    }
}
