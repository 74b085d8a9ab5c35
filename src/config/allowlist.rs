//! The allowlist (`allowlist:`): addresses and CIDR ranges never counted, given inline or in
//! files of one entry a line. Addresses are canonical (`::ffff:a.b.c.d` is IPv4).

use super::files::read_small_file;
use super::raw::RawAllowlist;
use super::{ConfigIssue, Validator};
use std::net::IpAddr;

/// Addresses that are never counted.
#[derive(Debug, Clone, Default)]
pub struct AllowlistConfig {
    pub nets: Vec<ipnet::IpNet>,
    /// A successful login from an IP clears its failure count (for users who mistype).
    pub reset_on_success: bool,
}

impl AllowlistConfig {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }
}

/// Canonicalise an address: IPv4-mapped IPv6 becomes plain IPv4. Owned here (the allowlist
/// matches canonical addresses); the rules canonicalise every address they read with it.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// An address (as a /32 or /128) or a CIDR range; `::ffff:a.b.c.d` counts as IPv4.
fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ipnet::IpNet::from(canonical_ip(ip)));
    }
    s.parse::<ipnet::IpNet>().ok().map(|n| n.trunc())
}

impl Validator {
    /// `allowlist`: inline entries and files; a bad line of a file is reported at that file's
    /// line.
    pub(super) fn allowlist(&mut self, ral: RawAllowlist) -> AllowlistConfig {
        let mut allowlist = AllowlistConfig {
            nets: Vec::new(),
            reset_on_success: ral.reset_on_success.unwrap_or(false),
        };
        for (i, a) in ral.addresses.iter().flatten().enumerate() {
            match parse_net(&a.value) {
                Some(n) => allowlist.nets.push(n),
                None => self.issue(
                    Some(a),
                    &format!("allowlist.addresses[{i}]"),
                    format!("not an address or CIDR range: {:?}", a.value),
                ),
            }
        }
        for (i, f) in ral.files.iter().flatten().enumerate() {
            let p = self.path(&f.value);
            match read_small_file(&p, 16 << 20) {
                Ok(text) => {
                    for (n, line) in text.lines().enumerate() {
                        let entry = line.split('#').next().unwrap_or("").trim();
                        if entry.is_empty() {
                            continue;
                        }
                        match parse_net(entry) {
                            Some(net) => allowlist.nets.push(net),
                            None => self.issues.push(ConfigIssue {
                                file: p.display().to_string(),
                                line: Some(n as u64 + 1),
                                column: None,
                                field: format!("allowlist.files[{i}]"),
                                message: format!("not an address or CIDR range: {entry:?}"),
                            }),
                        }
                    }
                }
                Err(e) => self.issue(
                    Some(f),
                    &format!("allowlist.files[{i}]"),
                    format!("cannot read {}: {e}", p.display()),
                ),
            }
        }
        allowlist
    }
}
