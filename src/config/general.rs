//! The general settings: `state_dir`, `host`, `time_zone` and `templates_dir`.

use super::raw::{RawHost, S};
use super::Validator;
use jiff::tz::TimeZone;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    pub name: Option<String>,
    pub ip: Option<IpAddr>,
}

impl Validator {
    /// `state_dir`: required and not empty; relative to the config's folder.
    pub(super) fn state_dir(&mut self, raw: &S<String>) -> PathBuf {
        match raw {
            Some(s) if s.value.trim().is_empty() => {
                self.issue(Some(s), "state_dir", "must not be empty");
                PathBuf::new()
            }
            Some(s) => self.path(&s.value),
            None => {
                self.issue::<()>(
                    None,
                    "state_dir",
                    "is required (a folder authwatch may write)",
                );
                PathBuf::new()
            }
        }
    }

    /// `host`: the name and address alerts give for this server (found when not set).
    pub(super) fn host(&mut self, rh: RawHost) -> HostConfig {
        HostConfig {
            name: rh.name.map(|n| n.value),
            ip: match &rh.ip {
                None => None,
                Some(sp) => match sp.value.parse::<IpAddr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        self.issue(
                            Some(sp),
                            "host.ip",
                            format!("not an IP address: {:?}", sp.value),
                        );
                        None
                    }
                },
            },
        }
    }

    /// `time_zone`: for log stamps that carry none; the system's when not set.
    pub(super) fn time_zone(&mut self, raw: &S<String>) -> TimeZone {
        match raw {
            None => TimeZone::system(),
            Some(sp) => match TimeZone::get(&sp.value) {
                Ok(tz) => tz,
                Err(e) => {
                    self.issue(Some(sp), "time_zone", format!("unknown time zone: {e}"));
                    TimeZone::UTC
                }
            },
        }
    }

    /// `templates_dir`: must be a folder when given.
    pub(super) fn templates_dir(&mut self, raw: &S<String>) -> Option<PathBuf> {
        let templates_dir = raw.as_ref().map(|t| self.path(&t.value));
        if let (Some(sp), Some(dir)) = (raw, &templates_dir) {
            if !dir.is_dir() {
                self.issue(
                    Some(sp),
                    "templates_dir",
                    format!("not a folder: {}", dir.display()),
                );
            }
        }
        templates_dir
    }
}
