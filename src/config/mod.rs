//! Configuration: the YAML file an administrator writes, read with serde-saphyr into raw
//! structs (unknown keys and wrong types are errors), then validated into [`Config`], the form
//! the rest of authwatch uses (durations, addresses, paths resolved, secrets loaded).
//!
//! Every problem found is reported, not just the first: each top-level section is parsed on its
//! own (with its real line numbers), so an error in `mail:` does not hide one in `detect:`, and
//! semantic checks (durations, ranges, addresses, files) collect all their errors. Each error
//! names the file, the line and column, and the field.
//!
//! Layout: `raw` holds what the YAML may contain; `parse` reads it so that every syntax error
//! is found; one file per section (`general`, `sources`, `rules`, `detect`, `allowlist`,
//! `alerts`, `metrics`, `actions`, `mail`, `fleet`) holds that section's validated types and the one
//! `Validator` method that checks it; `Validator::build` calls them in the file's order.
//! Config depends on no stage module (source, rules, detect, policy, render, mail, actions,
//! metrics, state, scan, agent): the stages depend on it, and the constants and checks the two
//! share (built-in rule names, member caps, action placeholders, the metrics address rule) are
//! owned here. `tests.rs` checks that no file here names a stage module.

mod actions;
mod alerts;
mod allowlist;
mod detect;
mod errors;
mod files;
mod fleet;
mod general;
mod mail;
mod metrics;
mod parse;
mod raw;
mod rules;
mod sources;

pub(crate) use actions::spec_error;
pub use actions::{
    parse_template, uses_ip, validate_arg, validate_max_concurrent, validate_program,
    validate_spec, validate_specs, ActionConfig, ActionSpec, Piece, SpecError, ACTION_KINDS,
    MAX_CONCURRENT, MAX_TIMEOUT, PLACEHOLDERS,
};
pub use alerts::{AlertsConfig, HealthConfig};
pub use allowlist::{canonical_ip, AllowlistConfig};
pub use detect::{AccountConfig, DetectConfig, SubnetConfig, Threshold, MAX_MEMBERS_PER_KEY};
// Durations are written the same way in the config, the alerts and `scan`: `crate::text` owns them.
pub use crate::text::{format_duration, parse_duration};
pub use errors::{ConfigError, ConfigIssue};
pub use files::{log_permission_warnings, permission_warnings};
pub use fleet::{
    validate_fleet_name, validate_store_url, FleetConfig, StoreUrl, DEFAULT_FLEET_BUFFER,
    MAX_FLEET_TIMEOUT,
};
pub use general::HostConfig;
pub use mail::{MailConfig, RetryPolicy, Secret, SmtpConfig, TlsMode};
pub use metrics::{parse_listen, validate_listen};
pub use rules::{intern_service, CustomRule, CustomRuleError, BUILTIN, SERVICES};
pub use sources::{FollowConfig, JournalSourceConfig, SourceConfig, SourceKind, Start};

use jiff::tz::TimeZone;
use raw::{RawConfig, S};
use serde_saphyr::Spanned;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The configuration shipped with authwatch, used when `--config` is not given.
pub const EXAMPLE_CONFIG: &str = include_str!("../../config.example.yaml");
/// The name the embedded configuration is reported under.
pub const EXAMPLE_CONFIG_NAME: &str = "config.example.yaml (embedded)";

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from (for messages).
    pub origin: String,
    /// The file it was read from (`None` for the embedded one); SIGHUP reads it again.
    pub path: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub host: HostConfig,
    pub sources: Vec<SourceConfig>,
    pub follow: FollowConfig,
    /// Zone for log stamps that carry none.
    pub time_zone: TimeZone,
    pub detect: DetectConfig,
    pub allowlist: AllowlistConfig,
    pub alerts: AlertsConfig,
    pub health: HealthConfig,
    /// Where the Prometheus endpoint listens (loopback only), if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Rules written by the administrator.
    pub custom_rules: Vec<CustomRule>,
    /// Folder with the administrator's own templates; `None` uses the built-in ones.
    pub templates_dir: Option<PathBuf>,
    /// Commands run for alerts (block the IP, ...).
    pub actions: Vec<ActionConfig>,
    /// How many action commands run at once.
    pub actions_max_concurrent: usize,
    pub mail: MailConfig,
    /// The shared store of a fleet of agents; `None`: local mode.
    pub fleet: Option<FleetConfig>,
}

impl Config {
    /// Read and validate a config file. Relative paths in it are taken relative to the file's
    /// folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            issues: vec![ConfigIssue {
                file: name.clone(),
                line: None,
                column: None,
                field: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let mut cfg = Config::from_yaml(&text, &name, &base)?;
        cfg.path = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// The embedded example configuration; relative paths are taken from the current folder.
    pub fn embedded_example() -> Result<Config, ConfigError> {
        Config::from_yaml(EXAMPLE_CONFIG, EXAMPLE_CONFIG_NAME, Path::new("."))
    }

    /// Parse and validate YAML text. `file` names it in errors; `base` resolves relative paths.
    pub fn from_yaml(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw = parse::parse_raw(text, file)?;
        let mut v = Validator {
            file: file.to_string(),
            base: base.to_path_buf(),
            issues: Vec::new(),
        };
        let cfg = v.build(raw);
        v.issues
            .sort_by_key(|i| (i.line.unwrap_or(0), i.column.unwrap_or(0)));
        match cfg {
            Some(cfg) if v.issues.is_empty() => Ok(cfg),
            _ => Err(ConfigError { issues: v.issues }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

/// Collects the issues of one configuration while each section is checked.
struct Validator {
    file: String,
    base: PathBuf,
    issues: Vec<ConfigIssue>,
}

impl Validator {
    fn issue<T>(&mut self, at: Option<&Spanned<T>>, field: &str, message: impl Into<String>) {
        let loc = at.map(|s| s.referenced);
        self.issues.push(ConfigIssue {
            file: self.file.clone(),
            line: loc.map(|l| l.line()).filter(|&l| l > 0),
            column: loc.map(|l| l.column()).filter(|&c| c > 0),
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn path(&self, s: &str) -> PathBuf {
        let p = PathBuf::from(s);
        if p.is_absolute() || self.base == Path::new(".") {
            p
        } else {
            self.base.join(p)
        }
    }

    fn duration(
        &mut self,
        v: &S<String>,
        field: &str,
        default: Duration,
        min: Duration,
    ) -> Duration {
        let Some(sp) = v else { return default };
        match parse_duration(&sp.value) {
            Ok(d) if d < min => {
                self.issue(
                    Some(sp),
                    field,
                    format!("must be at least {}", format_duration(min)),
                );
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.issue(Some(sp), field, e);
                default
            }
        }
    }

    fn count(&mut self, v: &S<u64>, field: &str, default: u64, min: u64, max: u64) -> u64 {
        let Some(sp) = v else { return default };
        if sp.value < min || sp.value > max {
            self.issue(
                Some(sp),
                field,
                format!("must be between {min} and {max}, got {}", sp.value),
            );
            return default;
        }
        sp.value
    }

    /// Check every section, in the order of the file, collecting all issues. `custom_rules`
    /// come before `sources` (a source may name one), `mail` last (its credentials check
    /// speaks only when nothing else is wrong).
    fn build(&mut self, raw: RawConfig) -> Option<Config> {
        let state_dir = self.state_dir(&raw.state_dir);
        let host = self.host(raw.host.unwrap_or_default());
        let custom_rules = self.custom_rules(raw.custom_rules.as_deref().unwrap_or_default());
        let sources = self.sources(&raw.sources, &custom_rules);
        let follow = self.follow(raw.follow.unwrap_or_default());
        let time_zone = self.time_zone(&raw.time_zone);
        let detect = self.detect(raw.detect.unwrap_or_default());
        let allowlist = self.allowlist(raw.allowlist.unwrap_or_default());
        let alerts = self.alerts(raw.alerts.unwrap_or_default());
        let health = self.health(raw.health.unwrap_or_default());
        let metrics_listen = self.metrics(raw.metrics);
        let templates_dir = self.templates_dir(&raw.templates_dir);
        let actions = self.actions(raw.actions.as_deref().unwrap_or_default());
        let actions_max_concurrent = self.actions_max_concurrent(&raw.actions_max_concurrent);
        let fleet = self.fleet(raw.fleet, host.name.as_deref());
        let mail = self.mail(raw.mail, &state_dir);
        Some(Config {
            origin: self.file.clone(),
            path: None,
            state_dir,
            host,
            sources,
            follow,
            time_zone,
            detect,
            allowlist,
            alerts,
            health,
            metrics_listen,
            custom_rules,
            templates_dir,
            actions,
            actions_max_concurrent,
            mail,
            fleet,
        })
    }
}

#[cfg(test)]
mod tests;
