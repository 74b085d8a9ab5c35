//! Detection settings (`detect:`): the per-IP threshold, and the per-subnet, per-account and
//! compromised-account checks, each on by default.

use super::raw::RawDetect;
use super::Validator;
use std::time::Duration;

/// Most members (addresses of a subnet, accounts of an IP, addresses against an account) kept
/// per tracked key. Owned here because `detect.per_subnet.min_addresses` and
/// `detect.per_account.distinct_ips` are bounded by it; the detector uses the same constant.
pub const MAX_MEMBERS_PER_KEY: usize = 256;

#[derive(Debug, Clone, Copy)]
pub struct Threshold {
    pub attempts: u32,
    pub window: Duration,
}

#[derive(Debug, Clone)]
pub struct DetectConfig {
    pub per_ip: Threshold,
    /// Cap on tracked keys per map (IPs, subnets, accounts); the least recently seen is
    /// evicted beyond it.
    pub max_tracked_ips: usize,
    pub per_subnet: Option<SubnetConfig>,
    pub per_account: Option<AccountConfig>,
    /// Failures within `per_ip.window` before a successful login that make it urgent.
    /// `None`: compromised-account alerts are off.
    pub compromised_min_failures: Option<u64>,
}

/// Attempts summed over a prefix.
#[derive(Debug, Clone)]
pub struct SubnetConfig {
    pub threshold: Threshold,
    pub ipv6_prefix: u8,
    /// `None`: IPv4 addresses are not grouped.
    pub ipv4_prefix: Option<u8>,
    /// Distinct addresses within the window needed for a subnet alert.
    pub min_addresses: usize,
}

/// Many IPs against one account.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    pub threshold: Threshold,
    pub distinct_ips: usize,
}

impl Validator {
    /// `detect`: thresholds and switches; the limits on member counts are [`MAX_MEMBERS_PER_KEY`].
    pub(super) fn detect(&mut self, rd: RawDetect) -> DetectConfig {
        let rt = rd.per_ip.unwrap_or_default();
        let mut detect = DetectConfig {
            per_ip: Threshold {
                attempts: self.count(&rt.attempts, "detect.per_ip.attempts", 5, 1, 1_000_000)
                    as u32,
                window: self.duration(
                    &rt.window,
                    "detect.per_ip.window",
                    Duration::from_secs(600),
                    Duration::from_secs(1),
                ),
            },
            max_tracked_ips: self.count(
                &rd.max_tracked_ips,
                "detect.max_tracked_ips",
                100_000,
                10,
                100_000_000,
            ) as usize,
            per_subnet: None,
            per_account: None,
            compromised_min_failures: None,
        };
        let sn = rd.per_subnet.unwrap_or_default();
        if sn.enabled.unwrap_or(true) {
            detect.per_subnet = Some(SubnetConfig {
                threshold: Threshold {
                    attempts: self.count(
                        &sn.attempts,
                        "detect.per_subnet.attempts",
                        10,
                        1,
                        1_000_000,
                    ) as u32,
                    window: self.duration(
                        &sn.window,
                        "detect.per_subnet.window",
                        Duration::from_secs(600),
                        Duration::from_secs(1),
                    ),
                },
                ipv6_prefix: self.count(
                    &sn.ipv6_prefix,
                    "detect.per_subnet.ipv6_prefix",
                    64,
                    16,
                    128,
                ) as u8,
                ipv4_prefix: sn.ipv4_prefix.as_ref().map(|_| {
                    self.count(&sn.ipv4_prefix, "detect.per_subnet.ipv4_prefix", 24, 8, 32) as u8
                }),
                min_addresses: self.count(
                    &sn.min_addresses,
                    "detect.per_subnet.min_addresses",
                    2,
                    1,
                    MAX_MEMBERS_PER_KEY as u64,
                ) as usize,
            });
        }
        let ac = rd.per_account.unwrap_or_default();
        if ac.enabled.unwrap_or(true) {
            detect.per_account = Some(AccountConfig {
                threshold: Threshold {
                    attempts: self.count(
                        &ac.attempts,
                        "detect.per_account.attempts",
                        20,
                        1,
                        1_000_000,
                    ) as u32,
                    window: self.duration(
                        &ac.window,
                        "detect.per_account.window",
                        Duration::from_secs(3600),
                        Duration::from_secs(1),
                    ),
                },
                distinct_ips: self.count(
                    &ac.distinct_ips,
                    "detect.per_account.distinct_ips",
                    5,
                    1,
                    MAX_MEMBERS_PER_KEY as u64,
                ) as usize,
            });
        }
        let co = rd.compromised.unwrap_or_default();
        if co.enabled.unwrap_or(true) {
            detect.compromised_min_failures = Some(self.count(
                &co.min_failures,
                "detect.compromised.min_failures",
                u64::from(detect.per_ip.attempts),
                1,
                1_000_000,
            ));
        }
        detect
    }
}
