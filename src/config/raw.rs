//! Raw structs: what the YAML may contain, as serde-saphyr reads it. Unknown keys and wrong
//! types are errors here (`deny_unknown_fields`); every value that a later check may reject is
//! kept [`Spanned`] so that its error names the line and column. Nothing is checked beyond types.

use super::{Start, TlsMode};
use serde::Deserialize;
use serde_saphyr::Spanned;

pub(super) type S<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) state_dir: S<String>,
    pub(super) host: Option<RawHost>,
    pub(super) sources: Option<Spanned<Vec<RawSource>>>,
    pub(super) follow: Option<RawFollow>,
    pub(super) time_zone: S<String>,
    pub(super) detect: Option<RawDetect>,
    pub(super) allowlist: Option<RawAllowlist>,
    pub(super) alerts: Option<RawAlerts>,
    pub(super) health: Option<RawHealth>,
    pub(super) metrics: Option<RawMetrics>,
    pub(super) custom_rules: Option<Vec<RawCustomRule>>,
    pub(super) templates_dir: S<String>,
    pub(super) actions: Option<Vec<RawAction>>,
    pub(super) actions_max_concurrent: S<u64>,
    pub(super) mail: Option<Spanned<RawMail>>,
    pub(super) fleet: Option<RawFleet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAction {
    pub(super) name: Spanned<String>,
    pub(super) program: Spanned<String>,
    pub(super) args: Option<Vec<Spanned<String>>>,
    pub(super) timeout: S<String>,
    pub(super) include_in_alert: Option<bool>,
    pub(super) on: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) undo: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJournal {
    pub(super) units: Option<Vec<Spanned<String>>>,
    pub(super) journalctl: S<String>,
    pub(super) directory: S<String>,
    pub(super) files: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub(super) name: S<String>,
    pub(super) ip: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) path: S<String>,
    pub(super) journal: Option<Spanned<RawJournal>>,
    pub(super) start: Option<Start>,
    pub(super) service: S<String>,
    pub(super) services: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCustomRule {
    pub(super) name: Spanned<String>,
    pub(super) literal: Spanned<String>,
    pub(super) regex: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFollow {
    pub(super) poll_interval: S<String>,
    pub(super) max_line_bytes: S<u64>,
    pub(super) checkpoint_interval: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDetect {
    pub(super) per_ip: Option<RawThreshold>,
    pub(super) per_subnet: Option<RawSubnet>,
    pub(super) per_account: Option<RawAccount>,
    pub(super) compromised: Option<RawCompromised>,
    pub(super) max_tracked_ips: S<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubnet {
    pub(super) enabled: Option<bool>,
    pub(super) attempts: S<u64>,
    pub(super) window: S<String>,
    pub(super) ipv6_prefix: S<u64>,
    pub(super) ipv4_prefix: S<u64>,
    pub(super) min_addresses: S<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    pub(super) enabled: Option<bool>,
    pub(super) attempts: S<u64>,
    pub(super) window: S<String>,
    pub(super) distinct_ips: S<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCompromised {
    pub(super) enabled: Option<bool>,
    pub(super) min_failures: S<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub(super) source_unreadable_after: S<String>,
    pub(super) source_silent_after: S<String>,
    pub(super) smtp_failing_after: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAllowlist {
    pub(super) addresses: Option<Vec<Spanned<String>>>,
    pub(super) files: Option<Vec<Spanned<String>>>,
    pub(super) reset_on_success: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThreshold {
    pub(super) attempts: S<u64>,
    pub(super) window: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    pub(super) cooldown: S<String>,
    pub(super) group_wait: S<String>,
    pub(super) group_interval: S<String>,
    pub(super) repeat_interval: S<String>,
    pub(super) max_per_hour: S<u64>,
    pub(super) max_open_incidents: S<u64>,
    pub(super) top_accounts: S<u64>,
    pub(super) log_lines: S<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMail {
    pub(super) from: S<String>,
    pub(super) to: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) subject_prefix: Option<String>,
    pub(super) smtp: Option<Spanned<RawSmtp>>,
    pub(super) outbox_dir: S<String>,
    pub(super) retry_for: S<String>,
    pub(super) retry_first_delay: S<String>,
    pub(super) retry_max_delay: S<String>,
    pub(super) html: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtp {
    pub(super) host: S<String>,
    pub(super) port: S<u64>,
    pub(super) tls: Option<TlsMode>,
    pub(super) username: S<String>,
    pub(super) password_file: S<String>,
    pub(super) password_env: S<String>,
    pub(super) ca_file: S<String>,
    pub(super) timeout: S<String>,
    pub(super) helo_name: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    pub(super) redis: S<String>,
    pub(super) name: S<String>,
    pub(super) key_prefix: S<String>,
    pub(super) timeout: S<String>,
    pub(super) buffer: S<u64>,
    pub(super) down_alert_after: S<String>,
}
