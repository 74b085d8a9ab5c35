//! Fleet settings (`fleet:`): the Redis/Valkey store that several agents share so that
//! thresholds apply to the sum of their hits and one mail goes out per incident. Absent means
//! local mode. Owns the URL check (schemes `redis://`, `rediss://` for TLS, `unix://`; user and
//! password in the URL for AUTH, masked in Debug), the agent's fleet name and key prefix (both
//! end up in store keys and members, so they are restricted to a safe alphabet), the store
//! timeout (at most [`MAX_FLEET_TIMEOUT`]) and the bound of the replay buffer.

use super::raw::RawFleet;
use super::Validator;
use std::fmt;
use std::time::Duration;

/// Longest wait for one store call: the issue requires ≤ 100 ms so a slow store is treated as
/// down quickly and local detection takes over.
pub const MAX_FLEET_TIMEOUT: Duration = Duration::from_millis(100);

/// Default store timeout: the maximum, since a loopback or LAN store answers in well under 1 ms
/// and a larger margin only helps on a congested link.
pub const DEFAULT_FLEET_TIMEOUT: Duration = Duration::from_millis(100);

/// Default number of hits kept while the store is unreachable (replayed when it returns):
/// about 10 minutes of a heavy attack (150 hits/s) on one host, ~100 bytes each (10 MB).
pub const DEFAULT_FLEET_BUFFER: u64 = 100_000;

/// Upper bound for `fleet.buffer`: ~100 MB of memory at ~100 bytes a hit.
pub const MAX_FLEET_BUFFER: u64 = 1_000_000;

/// Default time the store must stay unreachable before the health mail: long enough that a
/// store restart or failover (seconds) mails nothing, short enough that local-only detection
/// (an attack spread over the fleet goes unseen) is known within minutes.
pub const DEFAULT_FLEET_DOWN_ALERT_AFTER: Duration = Duration::from_secs(60);

/// Upper bound for `fleet.down_alert_after`: a fleet detecting locally for longer than this
/// without the administrator knowing misses spread attacks for too long.
pub const MAX_FLEET_DOWN_ALERT_AFTER: Duration = Duration::from_secs(3600);

/// Longest fleet name or key prefix: they are repeated in every member and key.
pub const MAX_FLEET_NAME: usize = 64;

/// The store URL. Debug masks the password (AUTH) part.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl(pub String);

impl StoreUrl {
    /// The URL with any password replaced by `MASKED`, for logs and errors.
    pub fn masked(&self) -> String {
        let s = &self.0;
        let Some(scheme_end) = s.find("://") else {
            return s.clone();
        };
        let rest = &s[scheme_end + 3..];
        let auth_end = rest.find('/').unwrap_or(rest.len());
        let Some(at) = rest[..auth_end].rfind('@') else {
            return s.clone();
        };
        let userinfo = &rest[..at];
        let user = userinfo.split(':').next().unwrap_or("");
        if userinfo.contains(':') {
            format!("{}{user}:MASKED{}", &s[..scheme_end + 3], &rest[at..])
        } else {
            s.clone()
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.masked())
    }
}

/// Validated `fleet:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// `redis://[user:pass@]host[:port][/db]`, `rediss://…` (TLS) or `unix:///path`.
    pub url: StoreUrl,
    /// This agent's name in the fleet (members, per-host counts, who sent the mail).
    pub name: String,
    /// Prefix of every key authwatch writes, so several fleets can share one store.
    pub key_prefix: String,
    /// Longest wait for one store call.
    pub timeout: Duration,
    /// Most hits kept while the store is down.
    pub buffer: usize,
    /// Store unreachable this long: one health mail for the outage (and one when it returns).
    pub down_alert_after: Duration,
}

/// Check a fleet name or key prefix: 1 to [`MAX_FLEET_NAME`] characters of `A-Za-z0-9._-`
/// (no `:`, the separator of keys and members; no spaces or braces).
pub fn validate_fleet_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_FLEET_NAME {
        return Err(format!(
            "must be 1 to {MAX_FLEET_NAME} characters, got {}",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{s:?}: only letters, digits, '.', '_' and '-' are allowed, not {c:?}"
        ));
    }
    Ok(())
}

/// Check a store URL's form: a known scheme and a host (or a socket path).
pub fn validate_store_url(s: &str) -> Result<(), String> {
    let hint = "expected redis://[user:password@]host[:port][/db], rediss://... (TLS) or unix:///path/to/socket";
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(hint.to_string());
    };
    match scheme {
        "redis" | "rediss" | "valkey" | "valkeys" => {
            let authority = rest.split(['/', '?']).next().unwrap_or("");
            let hostport = authority.rsplit('@').next().unwrap_or("");
            if hostport.is_empty() || hostport.starts_with(':') {
                return Err(format!("no host in the URL; {hint}"));
            }
            if let Some((_, port)) = hostport
                .rsplit_once(':')
                .filter(|_| !hostport.ends_with(']'))
            {
                if port.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
                    return Err(format!("bad port {port:?}; {hint}"));
                }
            }
            Ok(())
        }
        "unix" | "redis+unix" | "valkey+unix" => {
            if rest.starts_with('/') {
                Ok(())
            } else {
                Err(format!("a socket path must be absolute; {hint}"))
            }
        }
        _ => Err(format!("unknown scheme {scheme:?}; {hint}")),
    }
}

impl Validator {
    /// `fleet`: `None` when absent (local mode). `name` defaults to the host's name.
    pub(super) fn fleet(
        &mut self,
        raw: Option<RawFleet>,
        host_name: Option<&str>,
    ) -> Option<FleetConfig> {
        let rf = raw?;
        let url = match &rf.redis {
            None => {
                self.issue::<()>(
                    None,
                    "fleet.redis",
                    "is required when fleet: is present (e.g. redis://127.0.0.1:6379)",
                );
                String::new()
            }
            Some(sp) => {
                if let Err(e) = validate_store_url(sp.value.trim()) {
                    self.issue(Some(sp), "fleet.redis", e);
                }
                sp.value.trim().to_string()
            }
        };
        let name = match &rf.name {
            Some(sp) => {
                if let Err(e) = validate_fleet_name(&sp.value) {
                    self.issue(Some(sp), "fleet.name", e);
                }
                sp.value.clone()
            }
            None => {
                let h = host_name
                    .map(str::to_string)
                    .or_else(|| hostname::get().ok().and_then(|h| h.into_string().ok()))
                    .unwrap_or_default();
                // Host names are mostly within the alphabet; map the rest to '_'.
                let h: String = h
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                            c
                        } else {
                            '_'
                        }
                    })
                    .take(MAX_FLEET_NAME)
                    .collect();
                if h.is_empty() {
                    self.issue::<()>(None, "fleet.name", "is required (no host name found)");
                }
                h
            }
        };
        let key_prefix = match &rf.key_prefix {
            Some(sp) => {
                if let Err(e) = validate_fleet_name(&sp.value) {
                    self.issue(Some(sp), "fleet.key_prefix", e);
                }
                sp.value.clone()
            }
            None => "aw".to_string(),
        };
        let timeout = self.duration(
            &rf.timeout,
            "fleet.timeout",
            DEFAULT_FLEET_TIMEOUT,
            Duration::from_millis(1),
        );
        let timeout = if timeout > MAX_FLEET_TIMEOUT {
            self.issue(
                rf.timeout.as_ref(),
                "fleet.timeout",
                "must be at most 100ms: a slower store is treated as down (detection goes on locally)",
            );
            DEFAULT_FLEET_TIMEOUT
        } else {
            timeout
        };
        let buffer = self.count(
            &rf.buffer,
            "fleet.buffer",
            DEFAULT_FLEET_BUFFER,
            100,
            MAX_FLEET_BUFFER,
        ) as usize;
        let down_alert_after = self.duration(
            &rf.down_alert_after,
            "fleet.down_alert_after",
            DEFAULT_FLEET_DOWN_ALERT_AFTER,
            Duration::from_secs(1),
        );
        let down_alert_after = if down_alert_after > MAX_FLEET_DOWN_ALERT_AFTER {
            self.issue(
                rf.down_alert_after.as_ref(),
                "fleet.down_alert_after",
                "must be at most 1h: while the store is down, attacks spread over the fleet go unseen",
            );
            DEFAULT_FLEET_DOWN_ALERT_AFTER
        } else {
            down_alert_after
        };
        Some(FleetConfig {
            url: StoreUrl(url),
            name,
            key_prefix,
            timeout,
            buffer,
            down_alert_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;
    use std::path::Path;

    const MIN: &str = "state_dir: /var/lib/authwatch\nsources:\n  - path: /var/log/exim4/mainlog\nmail:\n  to: [admin@example.com]\n";

    fn load(extra: &str) -> Result<Config, super::super::ConfigError> {
        Config::from_yaml(&format!("{MIN}{extra}"), "t.yaml", Path::new("/etc"))
    }

    #[test]
    fn absent_is_local_mode() {
        assert!(load("").unwrap().fleet.is_none());
    }

    #[test]
    fn defaults_and_values() {
        let c = load("host: {name: mx1.example.org}\nfleet:\n  redis: redis://127.0.0.1:6379\n")
            .unwrap();
        let f = c.fleet.unwrap();
        assert_eq!(f.name, "mx1.example.org");
        assert_eq!(f.key_prefix, "aw");
        assert_eq!(f.timeout, Duration::from_millis(100));
        assert_eq!(f.buffer, DEFAULT_FLEET_BUFFER as usize);
        assert_eq!(f.down_alert_after, Duration::from_secs(60));
        let c = load("fleet: {redis: 'rediss://aw:s3cret@store.example:6380/2', name: mx2, key_prefix: prod, timeout: 50ms, buffer: 1000, down_alert_after: 5m}\n").unwrap();
        let f = c.fleet.unwrap();
        assert_eq!((f.name.as_str(), f.key_prefix.as_str()), ("mx2", "prod"));
        assert_eq!(f.timeout, Duration::from_millis(50));
        assert_eq!(f.buffer, 1000);
        assert_eq!(f.down_alert_after, Duration::from_secs(300));
        let dbg = format!("{f:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(
            dbg.contains("rediss://aw:MASKED@store.example:6380/2"),
            "{dbg}"
        );
    }

    #[test]
    fn bad_values_name_file_line_and_field() {
        let err = load(
            "fleet:\n  redis: http://x\n  name: 'mx 1:evil'\n  key_prefix: ''\n  timeout: 2s\n  buffer: 5\n  down_alert_after: 2h\n",
        )
        .unwrap_err();
        let got: Vec<_> = err
            .issues
            .iter()
            .map(|i| (i.file.as_str(), i.line, i.field.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("t.yaml", Some(7), "fleet.redis"),
                ("t.yaml", Some(8), "fleet.name"),
                ("t.yaml", Some(9), "fleet.key_prefix"),
                ("t.yaml", Some(10), "fleet.timeout"),
                ("t.yaml", Some(11), "fleet.buffer"),
                ("t.yaml", Some(12), "fleet.down_alert_after"),
            ],
            "{err}"
        );
        assert!(err.to_string().contains("t.yaml:10:"), "{err}");
        let err = load("fleet: {redis: 'redis://h', down_alert_after: 500ms}\n").unwrap_err();
        assert_eq!(err.issues[0].field, "fleet.down_alert_after", "{err}");
        assert!(err.to_string().contains("at least 1s"), "{err}");
    }

    #[test]
    fn missing_url_and_unknown_key() {
        let err = load("fleet: {name: mx1}\n").unwrap_err();
        assert_eq!(err.issues[0].field, "fleet.redis", "{err}");
        let err = load("fleet: {redis: 'redis://h', passwd: x}\n").unwrap_err();
        assert!(err.to_string().contains("passwd"), "{err}");
        assert_eq!(err.issues[0].line, Some(6), "{err}");
    }

    #[test]
    fn store_urls() {
        for ok in [
            "redis://127.0.0.1:6379",
            "redis://h",
            "redis://user:pw@h:1/3",
            "rediss://[::1]:6380",
            "unix:///run/redis/redis.sock",
        ] {
            assert_eq!(validate_store_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "127.0.0.1:6379",
            "http://h",
            "redis://",
            "redis://h:0",
            "redis://h:99999",
            "unix://rel",
        ] {
            assert!(validate_store_url(bad).is_err(), "{bad}");
        }
    }
}
