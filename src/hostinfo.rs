//! This server's name and address as alerts show them: from the config when given, else the
//! system host name and the address of the interface that would route to the outside (found
//! with a UDP `connect()` to a documentation address: no packet is sent, no DNS is asked).

use crate::config::HostConfig;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};

/// Name and address of this host.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub name: String,
    pub ip: Option<IpAddr>,
}

impl HostInfo {
    pub fn discover(cfg: &HostConfig) -> HostInfo {
        let name = cfg.name.clone().unwrap_or_else(|| {
            hostname::get()
                .ok()
                .and_then(|h| h.into_string().ok())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_string())
        });
        let ip = cfg.ip.or_else(outbound_ip);
        HostInfo { name, ip }
    }

    pub fn ip_text(&self) -> String {
        self.ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "unknown".to_string())
    }
}

fn outbound_ip() -> Option<IpAddr> {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    // 192.0.2.1 is TEST-NET-1 (RFC 5737); connect() on UDP only picks a route.
    sock.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_overrides_discovery() {
        let h = HostInfo::discover(&HostConfig {
            name: Some("mx9.example.net".into()),
            ip: Some("192.0.2.9".parse().unwrap()),
        });
        assert_eq!(h.name, "mx9.example.net");
        assert_eq!(h.ip_text(), "192.0.2.9");
    }
}
