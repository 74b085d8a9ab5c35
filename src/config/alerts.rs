//! Alert policy settings (`alerts:`: cooldown, grouping, hourly cap, what an alert quotes) and
//! the reports on authwatch's own health (`health:`).

use super::raw::{RawAlerts, RawHealth};
use super::Validator;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct AlertsConfig {
    pub cooldown: Duration,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    /// 0: no cap.
    pub max_per_hour: u32,
    /// Open incidents remembered at most (the quietest are closed early beyond it).
    pub max_open_incidents: usize,
    /// How many accounts are listed by name in an alert.
    pub top_accounts: usize,
    /// How many recent log lines an alert quotes.
    pub log_lines: usize,
}

/// When problems of authwatch itself are reported by mail (and in the log).
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// A source that cannot be read for this long is reported.
    pub source_unreadable_after: Duration,
    /// A source without any new line for this long is reported (`None`: never).
    pub source_silent_after: Option<Duration>,
    /// SMTP failing for this long is reported (by mail once it works again).
    pub smtp_failing_after: Duration,
}

impl Validator {
    /// `alerts`: durations and caps; `group_interval` defaults to the cooldown (at least 1m).
    pub(super) fn alerts(&mut self, ra: RawAlerts) -> AlertsConfig {
        let cooldown = self.duration(
            &ra.cooldown,
            "alerts.cooldown",
            Duration::from_secs(3600),
            Duration::ZERO,
        );
        AlertsConfig {
            cooldown,
            group_wait: self.duration(
                &ra.group_wait,
                "alerts.group_wait",
                Duration::ZERO,
                Duration::ZERO,
            ),
            group_interval: self.duration(
                &ra.group_interval,
                "alerts.group_interval",
                cooldown.max(Duration::from_secs(60)),
                Duration::from_secs(1),
            ),
            repeat_interval: self.duration(
                &ra.repeat_interval,
                "alerts.repeat_interval",
                Duration::from_secs(4 * 3600),
                Duration::from_secs(1),
            ),
            max_per_hour: self.count(&ra.max_per_hour, "alerts.max_per_hour", 30, 0, 100_000)
                as u32,
            max_open_incidents: self.count(
                &ra.max_open_incidents,
                "alerts.max_open_incidents",
                10_000,
                10,
                10_000_000,
            ) as usize,
            top_accounts: self.count(&ra.top_accounts, "alerts.top_accounts", 5, 1, 100) as usize,
            log_lines: self.count(&ra.log_lines, "alerts.log_lines", 5, 0, 100) as usize,
        }
    }

    /// `health`: when a silent or unreadable source, or failing SMTP, is reported.
    pub(super) fn health(&mut self, rh: RawHealth) -> HealthConfig {
        HealthConfig {
            source_unreadable_after: self.duration(
                &rh.source_unreadable_after,
                "health.source_unreadable_after",
                Duration::from_secs(600),
                Duration::from_secs(1),
            ),
            source_silent_after: match &rh.source_silent_after {
                Some(v) if v.value.trim() == "off" => None,
                v => Some(self.duration(
                    v,
                    "health.source_silent_after",
                    Duration::from_secs(86_400),
                    Duration::from_secs(1),
                )),
            },
            smtp_failing_after: self.duration(
                &rh.smtp_failing_after,
                "health.smtp_failing_after",
                Duration::from_secs(900),
                Duration::from_secs(1),
            ),
        }
    }
}
