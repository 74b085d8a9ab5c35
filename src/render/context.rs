//! The contexts templates are filled from, one struct per alert kind (an IP, a subnet or an
//! account, a compromised account, the digest, a health problem), built from detection's
//! alerts with attacker-chosen text made inert, and a plausible sample of each for `check` and
//! `authwatch render --sample KIND`. `alert-templates/README.md` documents every field.

use super::held::HELD_CSV_NAME;
use crate::alert_kind::AlertKind;
use crate::detect::IpAlert;
use crate::message::Rendered;
use crate::text::{format_duration, human_time, inert, sparkline};
use jiff::{tz::TimeZone, Timestamp};
use serde::Serialize;
use std::net::IpAddr;
use std::time::Duration;

/// A problem of authwatch itself: a source that cannot be read or has gone silent, or mail
/// delivery that failed for a long time.
#[derive(Debug, Clone, Serialize)]
pub struct HealthContext {
    pub subject_prefix: String,
    pub host_name: String,
    pub host_ip: String,
    /// One line: "source /var/log/exim4/mainlog cannot be read".
    pub title: String,
    /// The source path, or the SMTP server.
    pub what: String,
    pub detail: String,
    pub since: String,
    /// When the problem ended (empty while it lasts).
    pub until: String,
    pub advice: String,
    pub generated_at: String,
}

/// A mail that carries several alerts: a group of incidents that opened together, or the
/// periodic digest of open incidents and of alerts the hourly cap held back.
#[derive(Debug, Clone, Serialize)]
pub struct DigestContext {
    pub subject_prefix: String,
    pub host_name: String,
    pub host_ip: String,
    /// Alerts carried whole: `{subject, text}`.
    pub new_alerts: Vec<Rendered>,
    /// Open incidents with new attempts.
    pub incidents: Vec<DigestIncident>,
    /// New attempts over all listed incidents.
    pub new_attempts: u64,
    /// How many of `new_alerts` the hourly cap had held back.
    pub held_count: u64,
    /// Always 0: no held-back alert is only counted any more (they are in `held_records` and
    /// the CSV). Kept so that templates written for older versions still render.
    pub held_dropped: u64,
    /// Held-back alerts beyond `new_alerts`, one line each: the first [`DIGEST_TABLE_ROWS`](super::DIGEST_TABLE_ROWS).
    pub held_records: Vec<crate::policy::HeldRecord>,
    /// How many held-back alerts are in the attached CSV (all of them, also those not in
    /// `held_records`).
    pub held_records_total: u64,
    /// The attachment's file name (empty when there is none).
    pub held_csv: String,
    pub max_per_hour: u32,
    pub group_interval: String,
    pub generated_at: String,
}

/// One open incident in a digest.
#[derive(Debug, Clone, Serialize)]
pub struct DigestIncident {
    pub kind: String,
    pub key: String,
    /// The rule that matched, and the first and last attempt in log time (as the alerts
    /// show them); empty when not known.
    pub service: String,
    pub first_attempt: String,
    pub last_attempt: String,
    pub new_attempts: u64,
    pub total: u64,
    pub opened: String,
    pub last_activity: String,
    pub repeated: bool,
}

/// An alert about a subnet or an account: many sources, or many addresses, one target.
#[derive(Debug, Clone, Serialize)]
pub struct GroupAlertContext {
    pub subject_prefix: String,
    pub host_name: String,
    pub host_ip: String,
    /// The subnet (`2001:db8:a11:77::/64`) or the account name (inert).
    pub target: String,
    pub service: String,
    pub service_label: String,
    pub attempts_window: u64,
    pub attempts_total: u64,
    pub threshold: u32,
    pub window: String,
    pub cooldown: String,
    pub first_seen: String,
    pub last_seen: String,
    /// Top members: the addresses (subnet) or the IPs (account), with counts.
    pub members: Vec<AccountCount>,
    pub members_distinct: u64,
    pub members_in_window: u64,
    pub members_other_attempts: u64,
    pub log_lines: Vec<String>,
    pub alert_number: u32,
    pub previous_alert: String,
    /// Attempts per minute over the window as a Unicode bar chart.
    pub sparkline: String,
    pub generated_at: String,
    /// Results of the actions run for this alert (those with `include_in_alert`).
    pub actions: Vec<crate::actions::ActionResult>,
}

impl GroupAlertContext {
    pub fn new<K: std::fmt::Display>(
        a: &crate::detect::KeyAlert<K>,
        env: &AlertEnv,
        threshold: u32,
        window: Duration,
        now: Timestamp,
    ) -> Self {
        GroupAlertContext {
            subject_prefix: env.subject_prefix.clone(),
            host_name: env.host_name.clone(),
            host_ip: env.host_ip.clone(),
            target: inert(&a.key.to_string()),
            service: a.service.to_string(),
            service_label: service_label(a.service),
            attempts_window: a.attempts_in_window,
            attempts_total: a.attempts_total,
            threshold,
            window: format_duration(window),
            cooldown: format_duration(env.cooldown),
            first_seen: human_time(a.first_seen, &env.tz),
            last_seen: human_time(a.last_seen, &env.tz),
            members: a
                .top_members
                .iter()
                .map(|(n, c)| AccountCount {
                    name: inert(n),
                    count: *c,
                })
                .collect(),
            members_distinct: a.distinct_members,
            members_in_window: a.distinct_members_in_window,
            members_other_attempts: a.other_member_attempts,
            log_lines: a.recent_lines.iter().map(|l| inert(l)).collect(),
            alert_number: a.alert_number,
            previous_alert: a
                .previous_alert
                .map(|t| human_time(t, &env.tz))
                .unwrap_or_default(),
            sparkline: sparkline(&a.per_minute),
            generated_at: human_time(now, &env.tz),
            actions: Vec::new(),
        }
    }

    fn sample(target: &str, members: &[(&str, u64)]) -> Self {
        GroupAlertContext {
            subject_prefix: "[authwatch]".into(),
            host_name: "mx1.example.com".into(),
            host_ip: "192.0.2.25".into(),
            target: target.into(),
            service: "exim".into(),
            service_label: service_label("exim"),
            attempts_window: 12,
            attempts_total: 40,
            threshold: 10,
            window: "10m".into(),
            cooldown: "1h".into(),
            first_seen: "2026-11-23 03:14:00 UTC".into(),
            last_seen: "2026-11-23 03:20:00 UTC".into(),
            members: members
                .iter()
                .map(|(n, c)| AccountCount {
                    name: n.to_string(),
                    count: *c,
                })
                .collect(),
            members_distinct: 7,
            members_in_window: 5,
            members_other_attempts: 9,
            log_lines: vec!["2026-11-23 03:20:00 dovecot_login authenticator failed for (User) [2001:db8:a11:77::5]:50111: 535 Incorrect authentication data (set_id=info@example.com)".into()],
            alert_number: 1,
            previous_alert: String::new(),
            sparkline: sparkline(&[0, 1, 3, 2, 0, 4, 2, 0, 0, 0]),
            generated_at: "2026-11-23 03:20:01 UTC".into(),
            actions: Vec::new(),
        }
    }
}

/// A successful login after failures: the account may be compromised.
#[derive(Debug, Clone, Serialize)]
pub struct CompromiseContext {
    pub subject_prefix: String,
    pub host_name: String,
    pub host_ip: String,
    pub ip: String,
    pub ip_version: u8,
    pub account: String,
    pub service: String,
    pub service_label: String,
    /// Failed attempts from this IP inside the window before the login.
    pub failures_from_ip: u64,
    /// Failed attempts against this account inside the window before the login (all IPs).
    pub failures_on_account: u64,
    pub window: String,
    pub login_time: String,
    pub log_line: String,
    pub generated_at: String,
    /// Results of the actions run for this alert (those with `include_in_alert`).
    pub actions: Vec<crate::actions::ActionResult>,
}

impl CompromiseContext {
    fn sample() -> Self {
        CompromiseContext {
            subject_prefix: "[authwatch]".into(),
            host_name: "mx1.example.com".into(),
            host_ip: "192.0.2.25".into(),
            ip: "203.0.113.7".into(),
            ip_version: 4,
            account: "alice".into(),
            service: "dovecot".into(),
            service_label: service_label("dovecot"),
            failures_from_ip: 37,
            failures_on_account: 41,
            window: "10m".into(),
            login_time: "2026-11-23 03:20:00 UTC".into(),
            log_line: "Nov 23 03:20:00 mx1 dovecot: imap-login: Login: user=<alice>, method=PLAIN, rip=203.0.113.7, lip=192.0.2.25".into(),
            generated_at: "2026-11-23 03:20:01 UTC".into(),
            actions: Vec::new(),
        }
    }
}

/// A sample context for each kind, for `check` and `authwatch render --sample KIND`.
pub fn sample_context(kind: &str) -> Option<serde_json::Value> {
    let kind: AlertKind = kind.parse().ok()?;
    let v = match kind {
        AlertKind::IpBurst => serde_json::to_value(IpAlertContext::sample()),
        AlertKind::SubnetBurst => serde_json::to_value(GroupAlertContext::sample(
            "2001:db8:a11:77::/64",
            &[("2001:db8:a11:77::5", 3), ("2001:db8:a11:77::9", 2)],
        )),
        AlertKind::AccountAttack => serde_json::to_value(GroupAlertContext::sample(
            "info@example.com",
            &[("203.0.113.7", 3), ("198.51.100.4", 2)],
        )),
        AlertKind::Compromised => serde_json::to_value(CompromiseContext::sample()),
        AlertKind::Health => serde_json::to_value(HealthContext {
            subject_prefix: "[authwatch]".into(),
            host_name: "mx1.example.com".into(),
            host_ip: "192.0.2.25".into(),
            title: "source /var/log/exim4/mainlog cannot be read".into(),
            what: "/var/log/exim4/mainlog".into(),
            detail: "cannot open the file: permission denied".into(),
            since: "2026-11-23 03:14:00 UTC".into(),
            until: String::new(),
            advice: "Give the authwatch user read access (group adm on Debian).".into(),
            generated_at: "2026-11-23 03:24:00 UTC".into(),
        }),
        AlertKind::Digest => serde_json::to_value(DigestContext {
            subject_prefix: "[authwatch]".into(),
            host_name: "mx1.example.com".into(),
            host_ip: "192.0.2.25".into(),
            new_alerts: vec![Rendered {
                subject: "[authwatch] 203.0.113.9 made 5 failed logins in 10m on mx1.example.com"
                    .into(),
                text: "Automatic alert from authwatch - DO NOT reply\n...".into(),
                html: None,
                id: None,
                legacy_id: None,
                attachments: Vec::new(),
                thread: Vec::new(),
            }],
            incidents: vec![DigestIncident {
                kind: AlertKind::IpBurst.to_string(),
                key: "203.0.113.47".into(),
                service: "exim".into(),
                first_attempt: "2026-11-23 03:13:58 UTC".into(),
                last_attempt: "2026-11-23 04:09:57 UTC".into(),
                new_attempts: 43,
                total: 48,
                opened: "2026-11-23 03:14:00 UTC".into(),
                last_activity: "2026-11-23 04:10:00 UTC".into(),
                repeated: true,
            }],
            new_attempts: 43,
            held_count: 1,
            held_dropped: 0,
            held_records: vec![crate::policy::HeldRecord {
                kind: AlertKind::IpBurst,
                key: "198.51.100.23".into(),
                service: "exim".into(),
                attempts: 5,
                first_seen: "2026-11-23 03:15:02 UTC".into(),
                last_seen: "2026-11-23 03:15:40 UTC".into(),
            }],
            held_records_total: 1,
            held_csv: HELD_CSV_NAME.into(),
            max_per_hour: 30,
            group_interval: "1h".into(),
            generated_at: "2026-11-23 04:14:00 UTC".into(),
        }),
    };
    let mut v = v.ok()?;
    if let (serde_json::Value::Object(m), true) = (&mut v, kind.is_alert()) {
        m.insert(
            "alert_id".into(),
            format!("{}-3f2a9c0d1e4b5a67", kind.as_str()).into(),
        );
    }
    if kind.takes_actions() {
        if let serde_json::Value::Object(m) = &mut v {
            m.insert(
                "actions".into(),
                serde_json::json!([{
                    "name": "nft-block",
                    "exit": 0,
                    "signal": null,
                    "timed_out": false,
                    "error": null,
                    "output": "blocked 203.0.113.47 until 2026-11-23 04:14",
                    "status": "exit 0",
                    "duration_ms": 12,
                    "include_in_alert": true
                }]),
            );
        }
    }
    Some(v)
}

/// One account in an alert.
#[derive(Debug, Clone, Serialize)]
pub struct AccountCount {
    pub name: String,
    pub count: u64,
}

/// Everything a template about one attacking IP may use. The README in `alert-templates/`
/// documents each field; keep the two in step.
#[derive(Debug, Clone, Serialize)]
pub struct IpAlertContext {
    pub subject_prefix: String,
    pub host_name: String,
    pub host_ip: String,
    pub ip: String,
    pub ip_version: u8,
    pub service: String,
    pub service_label: String,
    pub attempts_window: u64,
    pub attempts_total: u64,
    pub attempts_since_last_alert: u64,
    pub threshold: u32,
    pub window: String,
    pub cooldown: String,
    pub first_seen: String,
    pub last_seen: String,
    pub accounts: Vec<AccountCount>,
    pub accounts_distinct: u64,
    pub accounts_other_attempts: u64,
    pub attempts_without_account: u64,
    pub log_lines: Vec<String>,
    pub alert_number: u32,
    pub previous_alert: String,
    /// Earlier alerts about this IP (repeat offender), oldest first.
    pub earlier_alerts: Vec<String>,
    /// Attempts per minute over the window as a Unicode bar chart, oldest minute first.
    pub sparkline: String,
    pub generated_at: String,
    /// Results of the actions run for this alert (those with `include_in_alert`).
    pub actions: Vec<crate::actions::ActionResult>,
}

/// Facts about this server and the settings an alert quotes.
#[derive(Debug, Clone)]
pub struct AlertEnv {
    pub subject_prefix: String,
    pub host_name: String,
    pub host_ip: String,
    pub threshold: u32,
    pub window: Duration,
    pub cooldown: Duration,
    pub tz: TimeZone,
}

fn service_label(service: &str) -> String {
    match service {
        "exim" => "SMTP server (Exim)".to_string(),
        "postfix" => "SMTP server (Postfix)".to_string(),
        "dovecot" => "IMAP/POP3 server (Dovecot)".to_string(),
        "courier" => "IMAP/POP3 server (Courier)".to_string(),
        "cyrus" => "IMAP server (Cyrus)".to_string(),
        "sendmail" => "SMTP server (Sendmail)".to_string(),
        "uwimap" => "IMAP server (UW-IMAP)".to_string(),
        "opensmtpd" => "SMTP server (OpenSMTPD)".to_string(),
        "roundcube" | "sogo" | "horde" | "squirrelmail" => format!("webmail ({service})"),
        other => other.to_string(),
    }
}

impl IpAlertContext {
    pub fn new(a: &IpAlert, env: &AlertEnv, now: Timestamp) -> Self {
        IpAlertContext {
            subject_prefix: env.subject_prefix.clone(),
            host_name: env.host_name.clone(),
            host_ip: env.host_ip.clone(),
            ip: a.key.to_string(),
            ip_version: match a.key {
                IpAddr::V4(_) => 4,
                IpAddr::V6(_) => 6,
            },
            service: a.service.to_string(),
            service_label: service_label(a.service),
            attempts_window: a.attempts_in_window,
            attempts_total: a.attempts_total,
            attempts_since_last_alert: a.attempts_since_last_alert,
            threshold: env.threshold,
            window: format_duration(env.window),
            cooldown: format_duration(env.cooldown),
            first_seen: human_time(a.first_seen, &env.tz),
            last_seen: human_time(a.last_seen, &env.tz),
            accounts: a
                .top_members
                .iter()
                .map(|(n, c)| AccountCount {
                    name: inert(n),
                    count: *c,
                })
                .collect(),
            accounts_distinct: a.distinct_members,
            accounts_other_attempts: a.other_member_attempts,
            attempts_without_account: a.attempts_without_member,
            log_lines: a.recent_lines.iter().map(|l| inert(l)).collect(),
            alert_number: a.alert_number,
            previous_alert: a
                .previous_alert
                .map(|t| human_time(t, &env.tz))
                .unwrap_or_default(),
            earlier_alerts: a
                .earlier_alerts
                .iter()
                .map(|t| human_time(*t, &env.tz))
                .collect(),
            sparkline: sparkline(&a.per_minute),
            generated_at: human_time(now, &env.tz),
            actions: Vec::new(),
        }
    }

    /// Plausible values for previews and `check`.
    pub fn sample() -> Self {
        let t: Timestamp = "2026-11-23T03:14:00Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let alert = IpAlert {
            key: IpAddr::from([203, 0, 113, 47]),
            service: "exim",
            attempts_in_window: 5,
            attempts_total: 48,
            attempts_since_last_alert: 43,
            first_seen: t,
            last_seen: t,
            top_members: vec![("info@example.com".into(), 30), ("admin".into(), 12)],
            distinct_members: 4,
            distinct_members_in_window: 2,
            other_member_attempts: 6,
            attempts_without_member: 0,
            recent_lines: vec![
                "2026-11-23 03:14:00 dovecot_login authenticator failed for (User) [203.0.113.47]:50111: 535 Incorrect authentication data (set_id=info@example.com)".into(),
            ],
            alert_number: 2,
            previous_alert: Some(t),
            earlier_alerts: vec![t],
            per_minute: vec![0, 0, 1, 0, 2, 0, 0, 1, 0, 1],
        };
        let env = AlertEnv {
            subject_prefix: "[authwatch]".into(),
            host_name: "mx1.example.com".into(),
            host_ip: "192.0.2.25".into(),
            threshold: 5,
            window: Duration::from_secs(600),
            cooldown: Duration::from_secs(3600),
            tz: TimeZone::UTC,
        };
        IpAlertContext::new(&alert, &env, t)
    }
}
