//! Rendering: turns an alert into subject and body text with minijinja templates.
//!
//! The templates in `alert-templates/` are built into the binary; an administrator's
//! `templates_dir` overrides them file by file. Undefined variables are errors (strict mode),
//! and [`Renderer::check`] renders every template with sample values and also looks for
//! variables in branches a sample does not reach. Attacker-chosen text (account names, log
//! lines) is made inert by [`inert`] before it reaches any template, and the rendered subject is
//! cleaned and capped by [`clean_subject`]. It also makes the digest's CSV of held-back alerts.

use crate::config::format_duration;
use crate::detect::IpAlert;
use jiff::{tz::TimeZone, Timestamp};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// Built-in templates: (file name, text). A file `KIND.subject.txt` / `KIND.body.txt` belongs
/// to the alert kind `KIND`.
pub const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    (
        "ip_burst.subject.txt",
        include_str!("../alert-templates/ip_burst.subject.txt"),
    ),
    (
        "ip_burst.body.txt",
        include_str!("../alert-templates/ip_burst.body.txt"),
    ),
    (
        "ip_burst.body.html",
        include_str!("../alert-templates/ip_burst.body.html"),
    ),
    (
        "subnet_burst.subject.txt",
        include_str!("../alert-templates/subnet_burst.subject.txt"),
    ),
    (
        "subnet_burst.body.txt",
        include_str!("../alert-templates/subnet_burst.body.txt"),
    ),
    (
        "account_attack.subject.txt",
        include_str!("../alert-templates/account_attack.subject.txt"),
    ),
    (
        "account_attack.body.txt",
        include_str!("../alert-templates/account_attack.body.txt"),
    ),
    (
        "digest.subject.txt",
        include_str!("../alert-templates/digest.subject.txt"),
    ),
    (
        "digest.body.txt",
        include_str!("../alert-templates/digest.body.txt"),
    ),
    (
        "health.subject.txt",
        include_str!("../alert-templates/health.subject.txt"),
    ),
    (
        "health.body.txt",
        include_str!("../alert-templates/health.body.txt"),
    ),
    (
        "compromised.subject.txt",
        include_str!("../alert-templates/compromised.subject.txt"),
    ),
    (
        "compromised.body.txt",
        include_str!("../alert-templates/compromised.body.txt"),
    ),
];

/// The alert kinds, each with a subject and a body template.
pub const KINDS: &[&str] = &[
    "ip_burst",
    "subnet_burst",
    "account_attack",
    "compromised",
    "digest",
    "health",
];

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
    /// Held-back alerts beyond `new_alerts`, one line each: the first [`DIGEST_TABLE_ROWS`].
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
    let v = match kind {
        "ip_burst" => serde_json::to_value(IpAlertContext::sample()),
        "subnet_burst" => serde_json::to_value(GroupAlertContext::sample(
            "2001:db8:a11:77::/64",
            &[("2001:db8:a11:77::5", 3), ("2001:db8:a11:77::9", 2)],
        )),
        "account_attack" => serde_json::to_value(GroupAlertContext::sample(
            "info@example.com",
            &[("203.0.113.7", 3), ("198.51.100.4", 2)],
        )),
        "compromised" => serde_json::to_value(CompromiseContext::sample()),
        "health" => serde_json::to_value(HealthContext {
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
        "digest" => serde_json::to_value(DigestContext {
            subject_prefix: "[authwatch]".into(),
            host_name: "mx1.example.com".into(),
            host_ip: "192.0.2.25".into(),
            new_alerts: vec![Rendered {
                subject: "[authwatch] 203.0.113.9 made 5 failed logins in 10m on mx1.example.com"
                    .into(),
                text: "Automatic alert from authwatch - DO NOT reply\n...".into(),
                html: None,
                id: None,
                ..Default::default()
            }],
            incidents: vec![DigestIncident {
                kind: "ip_burst".into(),
                key: "203.0.113.47".into(),
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
                kind: "ip_burst".into(),
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
        _ => return None,
    };
    let mut v = v.ok()?;
    if matches!(kind, "ip_burst" | "subnet_burst" | "compromised") {
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

/// A rendered alert, ready for the mailer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    /// The same alert as HTML, when `mail.html` is on (sent as multipart/alternative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// A stable identity of the alert (kind, key, alert number, log time), so that an alert
    /// made again after a crash (lines re-read since the last saved state) is not sent twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What the alert is about, for the one-line record a digest keeps of an alert the hourly
    /// cap held back (none for digests and health alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<AlertFacts>,
    /// Files sent with the mail (the digest's CSV of held-back alerts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// The facts of an alert a digest's table shows, taken from its context when it is rendered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AlertFacts {
    pub service: String,
    pub first_seen: String,
    pub last_seen: String,
}

impl AlertFacts {
    /// From a context with `service` and `first_seen`/`last_seen` (or `login_time`).
    fn of(ctx: &minijinja::Value) -> Option<AlertFacts> {
        let text = |k: &str| {
            ctx.get_attr(k)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
        };
        let service = text("service")?;
        let login = text("login_time");
        Some(AlertFacts {
            service,
            first_seen: text("first_seen").or_else(|| login.clone())?,
            last_seen: text("last_seen").or(login)?,
        })
    }
}

/// A text file sent with a mail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Attachment {
    pub file_name: String,
    /// `text/csv; charset=utf-8`.
    pub content_type: String,
    pub text: String,
}

/// Rows of held-back alerts shown in a digest's body, at most; all of them are in the attached
/// CSV. 500 lines of about 110 characters keep the body near 55 KB, readable in any client.
pub const DIGEST_TABLE_ROWS: usize = 500;

/// The name of the digest's attachment listing every held-back alert.
pub const HELD_CSV_NAME: &str = "held-alerts.csv";

/// One CSV field: quoted when it holds a comma, quote or line break (RFC 4180), and with a `'`
/// in front when it starts like a spreadsheet formula (`=`, `+`, `-`, `@`), so that opening the
/// file runs nothing an attacker wrote.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The CSV attachment listing held-back alerts, one line each (none when there are none).
pub fn held_csv(records: &[crate::policy::HeldRecord]) -> Option<Attachment> {
    if records.is_empty() {
        return None;
    }
    let mut text = String::with_capacity(records.len() * 96 + 64);
    text.push_str("kind,key,service,attempts,first_seen,last_seen\n");
    for r in records {
        let fields = [
            csv_field(&r.kind),
            csv_field(&r.key),
            csv_field(&r.service),
            r.attempts.to_string(),
            csv_field(&r.first_seen),
            csv_field(&r.last_seen),
        ];
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    Some(Attachment {
        file_name: HELD_CSV_NAME.into(),
        content_type: "text/csv; charset=utf-8".into(),
        text,
    })
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

/// Format a time for people: `2026-11-23 03:14:00 UTC`.
pub fn human_time(t: Timestamp, tz: &TimeZone) -> String {
    let zoned = t.to_zoned_datetime(tz.clone());
    zoned.strftime("%Y-%m-%d %H:%M:%S %Z").to_string()
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

/// A small Unicode bar chart (`▁▂▃▄▅▆▇█`) of counts, one character per count; a zero is a
/// blank, so quiet minutes stand out from active ones.
pub fn sparkline(counts: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = counts.iter().copied().max().unwrap_or(0);
    counts
        .iter()
        .map(|&c| {
            if c == 0 || max == 0 {
                ' '
            } else {
                let i = ((c * 8).div_ceil(max) - 1).min(7) as usize;
                BARS[i]
            }
        })
        .collect()
}

/// Whether `c` is a character a reader cannot see, or one that changes how the text around it
/// is shown: controls (C0, C1), line and paragraph separators, bidi marks, embeddings,
/// overrides and isolates, zero-width and joiner characters, the soft hyphen, fillers and
/// vowels that render as nothing (Hangul, Khmer, Mongolian), interlinear annotation marks,
/// musical formatting marks, and the tag characters (which can hide a whole message in what
/// looks like one flag). Attackers use them to make `gpj.exe`
/// read as `exe.jpg`, or to hide text in an account name.
pub fn is_hidden(c: char) -> bool {
    let cp = c as u32;
    c.is_control()
        || matches!(
            cp,
            0x00AD              // soft hyphen
            | 0x034F            // combining grapheme joiner
            | 0x061C            // Arabic letter mark
            | 0x115F | 0x1160   // Hangul choseong / jungseong fillers
            | 0x17B4 | 0x17B5   // Khmer inherent vowels (invisible)
            | 0x180B..=0x180F   // Mongolian variation selectors, vowel separator
            | 0x200B..=0x200F   // zero width space/joiners, LRM, RLM
            | 0x2028..=0x202E   // line/paragraph separator, bidi embeddings and overrides
            | 0x2060..=0x206F   // word joiner, invisible operators, bidi isolates, deprecated formats
            | 0x3164            // Hangul filler
            | 0xFEFF            // zero width no-break space (BOM)
            | 0xFFA0            // halfwidth Hangul filler
            | 0xFFF9..=0xFFFB   // interlinear annotation marks
            | 0x1D173..=0x1D17A // musical symbol formatting marks
            | 0xE0000..=0xE007F // tag characters
        )
}

/// Make attacker-chosen text harmless to show: characters a reader cannot see or that reorder
/// the text ([`is_hidden`]) become visible `<U+XXXX>` marks, and URL schemes are defanged
/// (`hxxp://`), so a mail client neither reorders the text nor turns it into links.
pub fn inert(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_hidden(c) {
            out.push_str(&format!("<U+{:04X}>", c as u32));
        } else {
            out.push(c);
        }
    }
    // Defang links, case-insensitively.
    let lower = out.to_ascii_lowercase();
    if !lower.contains("http") && !lower.contains("ftp") {
        return out;
    }
    let mut fixed = String::with_capacity(out.len() + 8);
    let mut i = 0;
    while i < out.len() {
        let rest = &lower[i..];
        let scheme_len = ["https://", "http://", "ftp://"]
            .iter()
            .find(|p| rest.starts_with(**p))
            .map(|p| p.len());
        if let Some(len) = scheme_len {
            // Replace the "tt" / "t" so "http" reads "hxxp", keep the original case elsewhere.
            let orig = &out[i..i + len];
            let defanged = orig
                .replacen("tt", "xx", 1)
                .replacen("TT", "XX", 1)
                .replacen("ftp", "fxp", 1)
                .replacen("FTP", "FXP", 1);
            fixed.push_str(&defanged);
            i += len;
        } else {
            let ch_len = out[i..].chars().next().map_or(1, char::len_utf8);
            fixed.push_str(&out[i..i + ch_len]);
            i += ch_len;
        }
    }
    fixed
}

/// Errors from loading or rendering templates, with file and line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

fn describe(e: &minijinja::Error, origin: &str) -> String {
    let mut s = String::new();
    s.push_str(origin);
    if let Some(name) = e.name() {
        s.push_str(name);
    }
    if let Some(line) = e.line() {
        s.push_str(&format!(":{line}"));
    }
    s.push_str(&format!(": {}", e.kind()));
    if let Some(d) = e.detail() {
        s.push_str(&format!(": {d}"));
    }
    s
}

/// The text alert wrapped as HTML, for kinds without an HTML template.
fn pre_html(subject: &str, text: &str) -> String {
    let esc = |s: &str| minijinja::HtmlEscape(s).to_string();
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head><body><pre>{}</pre></body></html>\n",
        esc(subject),
        esc(text)
    )
}

/// The template environment.
pub struct Renderer {
    env: Environment<'static>,
    /// Also render an HTML part.
    html: bool,
    /// Folder prefix for messages (`/etc/authwatch/templates/` or `built-in `).
    origins: Vec<(String, String)>,
}

impl Renderer {
    /// Load the templates: each file from `dir` when it has one, else the built-in one.
    pub fn new(dir: Option<&Path>) -> Result<Renderer, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let mut origins = Vec::new();
        let mut errors = Vec::new();
        for (name, builtin) in BUILTIN_TEMPLATES {
            let (text, origin) = match dir.map(|d| d.join(name)) {
                Some(p) if p.exists() => match std::fs::read_to_string(&p) {
                    Ok(t) => (
                        t,
                        format!("{}/", p.parent().unwrap_or(Path::new("")).display()),
                    ),
                    Err(e) => {
                        errors.push(format!("{}: cannot read: {e}", p.display()));
                        continue;
                    }
                },
                _ => ((*builtin).to_string(), "built-in ".to_string()),
            };
            if let Err(e) = env.add_template_owned(name.to_string(), text) {
                errors.push(describe(&e, &origin));
            }
            origins.push((name.to_string(), origin));
        }
        if !errors.is_empty() {
            return Err(TemplateError(errors.join("\n")));
        }
        Ok(Renderer {
            env,
            origins,
            html: false,
        })
    }

    /// Also render the HTML part (`KIND.body.html`, or the text in a `<pre>`).
    pub fn with_html(mut self, on: bool) -> Self {
        self.html = on;
        self
    }

    fn origin(&self, name: &str) -> &str {
        self.origins
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, o)| o.as_str())
    }

    fn render_one(&self, name: &str, ctx: &minijinja::Value) -> Result<String, TemplateError> {
        let t = self
            .env
            .get_template(name)
            .map_err(|e| TemplateError(describe(&e, self.origin(name))))?;
        t.render(ctx.clone())
            .map_err(|e| TemplateError(describe(&e, self.origin(name))))
    }

    /// Render the alert about one IP.
    pub fn render_ip_alert(&self, ctx: &IpAlertContext) -> Result<Rendered, TemplateError> {
        self.render("ip_burst", ctx)
    }

    /// Render an alert of `kind` (one of [`KINDS`]) from its context.
    pub fn render<C: Serialize>(&self, kind: &str, ctx: &C) -> Result<Rendered, TemplateError> {
        let value = minijinja::Value::from(minijinja::value::Serde(ctx));
        let subject = self.render_one(&format!("{kind}.subject.txt"), &value)?;
        let text = self.render_one(&format!("{kind}.body.txt"), &value)?;
        let html = if self.html {
            let name = format!("{kind}.body.html");
            Some(if self.env.get_template(&name).is_ok() {
                self.render_one(&name, &value)?
            } else {
                pre_html(&clean_subject(&subject), &text)
            })
        } else {
            None
        };
        Ok(Rendered {
            subject: clean_subject(&subject),
            text,
            html,
            id: None,
            facts: AlertFacts::of(&value),
            attachments: Vec::new(),
        })
    }

    /// Check every template: render it with sample values, and look for variables that no
    /// alert provides (also in branches the sample does not reach). Returns every problem.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let globals: BTreeSet<String> = self.env.globals().map(|(k, _)| k.to_string()).collect();
        for (name, _) in BUILTIN_TEMPLATES {
            let kind = name.split('.').next().unwrap_or_default();
            let sample = sample_context(kind).unwrap_or(serde_json::Value::Null);
            let known: BTreeSet<String> = match &sample {
                serde_json::Value::Object(m) => m.keys().cloned().collect(),
                _ => BTreeSet::new(),
            };
            let value = minijinja::Value::from(minijinja::value::Serde(&sample));
            match self.env.get_template(name) {
                Ok(t) => {
                    let mut unknown: Vec<String> = t
                        .undeclared_variables(false)
                        .into_iter()
                        .filter(|v| !known.contains(v) && !globals.contains(v))
                        .collect();
                    unknown.sort();
                    for v in unknown {
                        problems.push(format!(
                            "{}{name}: undefined variable `{v}` (see alert-templates/README.md for the list)",
                            self.origin(name)
                        ));
                    }
                    if let Err(e) = self.render_one(name, &value) {
                        problems.push(e.0);
                    }
                }
                Err(e) => problems.push(describe(&e, self.origin(name))),
            }
        }
        problems.dedup();
        problems
    }
}

/// Fold a rendered subject into one line with single spaces.
pub fn fold_subject(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Characters of a Subject, at most (the ellipsis included). RFC 5322 limits a header line to
/// 998 bytes and a 5,000-character account name once made a 5,002-byte Subject that a relay
/// refused for good; a subject is read in a mail list, where 200 characters is already more
/// than is shown. The body carries the whole text.
pub const MAX_SUBJECT_CHARS: usize = 200;

/// Characters of one word of a Subject, at most (the ellipsis included). An ASCII word is
/// written into the header as it is and can only be folded at the spaces around it: a word of
/// at most 60 characters keeps every folded line within the 78 that RFC 5322 recommends. A cut
/// word ends in `…`, which is not ASCII, so the mailer writes it as RFC 2047 encoded words,
/// and those are folded to fit.
pub const MAX_SUBJECT_WORD_CHARS: usize = 60;

/// Cut `s` to `max` characters, the last of them an ellipsis when anything was cut.
fn cut_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The Subject as it goes into the mail: one line (any white space, CR, LF, U+2028 made one
/// space), no character a reader cannot see or that reorders text (marked `<U+XXXX>`, see
/// [`inert`]), each word cut to [`MAX_SUBJECT_WORD_CHARS`] and the whole to
/// [`MAX_SUBJECT_CHARS`], with an ellipsis where cut. Applying it again changes nothing.
pub fn clean_subject(s: &str) -> String {
    let words: Vec<String> = s
        .split_whitespace()
        .map(|w| cut_chars(&inert(w), MAX_SUBJECT_WORD_CHARS))
        .collect();
    cut_chars(&words.join(" "), MAX_SUBJECT_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_templates_pass_check() {
        let r = Renderer::new(None).unwrap();
        assert_eq!(r.check(), Vec::<String>::new());
    }

    #[test]
    fn default_alert_has_what_the_admin_needs() {
        let r = Renderer::new(None).unwrap();
        let out = r.render_ip_alert(&IpAlertContext::sample()).unwrap();
        assert!(out
            .text
            .starts_with("Automatic alert from authwatch - DO NOT reply\n"));
        for needle in [
            "Host Name:  mx1.example.com",
            "IP Address: 192.0.2.25",
            "Attacking IP:          203.0.113.47",
            "Total attempts so far: 48",
            "threshold: 5 in 10m",
            "info@example.com",
            "nft add rule inet filter input ip saddr 203.0.113.47 drop",
            "iptables -I INPUT -s 203.0.113.47 -j DROP",
            "apf -d 203.0.113.47",
            "SMTP AUTH on port 25",
        ] {
            assert!(
                out.text.contains(needle),
                "missing {needle:?} in\n{}",
                out.text
            );
        }
        assert_eq!(
            out.subject,
            "[authwatch] 203.0.113.47 made 5 failed logins in 10m on mx1.example.com"
        );
    }

    #[test]
    fn every_kind_renders_its_sample() {
        let r = Renderer::new(None).unwrap();
        for kind in KINDS {
            let ctx = sample_context(kind).unwrap();
            let out = r.render(kind, &ctx).unwrap();
            assert!(
                out.text
                    .starts_with("Automatic alert from authwatch - DO NOT reply\n"),
                "{kind}"
            );
            assert!(!out.subject.contains('\n'), "{kind}");
        }
        let sub = r
            .render("subnet_burst", &sample_context("subnet_burst").unwrap())
            .unwrap();
        assert!(
            sub.text.contains("ip6 saddr 2001:db8:a11:77::/64 drop"),
            "{}",
            sub.text
        );
        let acc = r
            .render("account_attack", &sample_context("account_attack").unwrap())
            .unwrap();
        assert!(acc
            .subject
            .contains("account info@example.com attacked from 5 addresses"));
        let c = r
            .render("compromised", &sample_context("compromised").unwrap())
            .unwrap();
        assert_eq!(
            c.subject,
            "[authwatch] URGENT: 203.0.113.7 logged in as alice after 37 failed attempts on mx1.example.com"
        );
    }

    #[test]
    fn ipv6_gets_ip6_commands() {
        let r = Renderer::new(None).unwrap();
        let mut ctx = IpAlertContext::sample();
        ctx.ip = "2001:db8::7".into();
        ctx.ip_version = 6;
        let out = r.render_ip_alert(&ctx).unwrap();
        assert!(out.text.contains("ip6 saddr 2001:db8::7 drop"));
        assert!(out
            .text
            .contains("ip6tables -I INPUT -s 2001:db8::7 -j DROP"));
    }

    #[test]
    fn undefined_variable_is_reported_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ip_burst.body.txt"),
            "line one\n{% if alert_number > 99 %}{{ attacker_country }}{% endif %}\n",
        )
        .unwrap();
        let r = Renderer::new(Some(dir.path())).unwrap();
        let problems = r.check();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("ip_burst.body.txt"), "{problems:?}");
        assert!(problems[0].contains("attacker_country"), "{problems:?}");
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ip_burst.subject.txt"), "ok\n{{ ip }\n").unwrap();
        let e = Renderer::new(Some(dir.path())).err().expect("syntax error");
        assert!(e.0.contains("ip_burst.subject.txt:2"), "{}", e.0);
    }

    #[test]
    fn attacker_text_is_inert() {
        assert_eq!(inert("alice"), "alice");
        assert_eq!(inert("a\r\nSubject: x"), "a<U+000D><U+000A>Subject: x");
        assert_eq!(inert("\u{202E}gpj.exe"), "<U+202E>gpj.exe");
        assert_eq!(inert("\x1b[31mred"), "<U+001B>[31mred");
        assert_eq!(
            inert("see https://evil.example/x and HTTP://X"),
            "see hxxps://evil.example/x and HXXP://X"
        );
        assert_eq!(inert("ünïcode ok"), "ünïcode ok");
    }

    #[test]
    fn html_part_is_a_table_with_escaped_attacker_text() {
        let r = Renderer::new(None).unwrap().with_html(true);
        let mut ctx = IpAlertContext::sample();
        ctx.accounts[0].name = "<script>alert(1)</script>".into();
        let out = r.render_ip_alert(&ctx).unwrap();
        let html = out.html.unwrap();
        assert!(html.contains("<table"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        let c = r
            .render("compromised", &sample_context("compromised").unwrap())
            .unwrap();
        assert!(c
            .html
            .unwrap()
            .contains("<pre>Automatic alert from authwatch"));
        assert_eq!(
            Renderer::new(None)
                .unwrap()
                .render_ip_alert(&ctx)
                .unwrap()
                .html,
            None
        );
    }

    #[test]
    fn sparkline_scales_to_the_busiest_minute() {
        assert_eq!(sparkline(&[0, 1, 2, 4, 8]), " ▁▂▄█");
        assert_eq!(sparkline(&[3, 3]), "██");
        assert_eq!(sparkline(&[]), "");
    }

    #[test]
    fn invisible_and_reordering_characters_are_marked_regression_issue_14() {
        // (input, inert output): each character a reader cannot see, or that reorders the
        // text, becomes a visible mark.
        let table: &[(&str, &str)] = &[
            ("a\u{2028}b", "a<U+2028>b"),
            ("a\u{2029}b", "a<U+2029>b"),
            ("a\u{061C}b", "a<U+061C>b"),
            ("a\u{3164}b", "a<U+3164>b"),
            ("a\u{115F}\u{1160}b", "a<U+115F><U+1160>b"),
            ("a\u{FFA0}b", "a<U+FFA0>b"),
            ("a\u{180E}b", "a<U+180E>b"),
            ("a\u{00AD}b", "a<U+00AD>b"),
            ("a\u{034F}b", "a<U+034F>b"),
            ("a\u{17B4}b", "a<U+17B4>b"),
            (
                "flag\u{E0067}\u{E0062}\u{E007F}",
                "flag<U+E0067><U+E0062><U+E007F>",
            ),
            ("\u{E0001}x", "<U+E0001>x"),
            ("a\u{2066}b\u{2069}", "a<U+2066>b<U+2069>"),
            ("a\u{200E}\u{200F}b", "a<U+200E><U+200F>b"),
            ("a\u{0085}b", "a<U+0085>b"),
            ("a\u{FFF9}b", "a<U+FFF9>b"),
            ("a\u{1D173}b", "a<U+1D173>b"),
            // Visible text of any script is kept.
            ("Пётр 李雷 Ωμέγα जुर्गन", "Пётр 李雷 Ωμέγα जुर्गन"),
            ("한국어", "한국어"),
        ];
        for (input, want) in table {
            assert_eq!(inert(input), *want, "{input:?}");
        }
    }

    #[test]
    fn subject_is_one_clean_capped_line_regression_issue_14() {
        // (subject, cleaned): one line, no invisible or reordering characters, each word at
        // most MAX_SUBJECT_WORD_CHARS, the whole at most MAX_SUBJECT_CHARS.
        let w59 = "w".repeat(59);
        let table: Vec<(String, String)> = vec![
            (
                "a\r\nBcc: x@example.com".into(),
                "a Bcc: x@example.com".into(),
            ),
            ("a\u{2028}b\u{2029}c\u{85}d".into(), "a b c d".into()),
            ("\u{202E}gpj.exe".into(), "<U+202E>gpj.exe".into()),
            ("x\u{2066}y\u{200F}z".into(), "x<U+2066>y<U+200F>z".into()),
            ("a\u{1b}[31m".into(), "a<U+001B>[31m".into()),
            ("see http://evil".into(), "see hxxp://evil".into()),
            (format!("{w59}w"), format!("{w59}w")),
            (format!("{w59}ww"), format!("{w59}…")),
        ];
        for (input, want) in &table {
            assert_eq!(clean_subject(input), *want, "{input:?}");
            assert_eq!(clean_subject(want), *want, "applied twice: {want:?}");
        }
        for account in [
            "a".repeat(5_000),
            "ü".repeat(5_000),
            "ab ".repeat(2_000),
            "\u{202E}\n".repeat(2_000),
        ] {
            let s = clean_subject(&format!(
                "[authwatch] URGENT: 1.2.3.4 logged in as {account}"
            ));
            assert!(s.chars().count() <= MAX_SUBJECT_CHARS, "{s}");
            assert!(s.ends_with('…'), "{s}");
            assert!(s
                .split(' ')
                .all(|w| w.chars().count() <= MAX_SUBJECT_WORD_CHARS));
            assert!(!s.chars().any(is_hidden), "{s:?}");
            assert_eq!(clean_subject(&s), s);
        }
    }

    #[test]
    fn held_alerts_csv_quotes_and_defuses_fields() {
        let rec = |key: &str| crate::policy::HeldRecord {
            kind: "account_attack".into(),
            key: key.into(),
            service: "exim".into(),
            attempts: 7,
            first_seen: "2026-11-23 03:14:00 UTC".into(),
            last_seen: "2026-11-23 03:15:00 UTC".into(),
        };
        assert_eq!(held_csv(&[]), None);
        // (key, CSV field)
        let table = [
            ("203.0.113.5", "203.0.113.5"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
        ];
        for (key, field) in table {
            let csv = held_csv(&[rec(key)]).unwrap();
            assert_eq!(csv.file_name, HELD_CSV_NAME);
            assert_eq!(
                csv.text,
                format!("kind,key,service,attempts,first_seen,last_seen\naccount_attack,{field},exim,7,2026-11-23 03:14:00 UTC,2026-11-23 03:15:00 UTC\n"),
                "{key:?}"
            );
        }
    }

    #[test]
    fn digest_lists_held_records_in_a_table() {
        let r = Renderer::new(None).unwrap();
        let out = r
            .render("digest", &sample_context("digest").unwrap())
            .unwrap();
        assert!(
            out.text.contains("1 more alerts were held back by the hourly cap, one line each (also in the attached held-alerts.csv)"),
            "{}",
            out.text
        );
        assert!(out.text.contains("  198.51.100.23 "), "{}", out.text);
        assert!(out.subject.contains("2 new alerts"), "{}", out.subject);
        // An alert's facts come from its context; a digest has none.
        let ip = r.render_ip_alert(&IpAlertContext::sample()).unwrap();
        let f = ip.facts.unwrap();
        assert_eq!(f.service, "exim");
        assert!(!f.first_seen.is_empty() && !f.last_seen.is_empty());
        assert_eq!(out.facts, None);
        let c = r
            .render("compromised", &sample_context("compromised").unwrap())
            .unwrap();
        assert_eq!(c.facts.unwrap().first_seen, "2026-11-23 03:20:00 UTC");
    }

    #[test]
    fn subject_is_folded_to_one_line() {
        assert_eq!(fold_subject(" a\n b\r\n\tc "), "a b c");
    }
}
