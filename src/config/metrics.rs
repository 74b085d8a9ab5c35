//! The metrics endpoint's address (`metrics.listen`): an IP and port on loopback only, since
//! the endpoint has no authentication. The checks live here, where the address is read; the
//! metrics server uses them too.

use super::raw::RawMetrics;
use super::Validator;
use std::net::SocketAddr;

/// Check a listen address from the config: a loopback IP (127.0.0.0/8 or ::1) and a port.
pub fn validate_listen(addr: SocketAddr) -> Result<(), String> {
    if !addr.ip().to_canonical().is_loopback() {
        return Err(format!(
            "{addr}: the metrics endpoint has no authentication and listens on loopback only (127.0.0.1 or [::1])"
        ));
    }
    if addr.port() == 0 {
        return Err(format!("{addr}: choose a port, e.g. {}:9464", addr.ip()));
    }
    Ok(())
}

/// Parse and check a listen address written as `127.0.0.1:9464` or `[::1]:9464` (no names).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s.trim().parse().map_err(|_| {
        format!("{s:?}: expected IP:port such as 127.0.0.1:9464 or [::1]:9464 (no host names)")
    })?;
    validate_listen(addr)?;
    Ok(addr)
}

impl Validator {
    /// `metrics.listen`: `None` when not given (no endpoint).
    pub(super) fn metrics(&mut self, raw: Option<RawMetrics>) -> Option<SocketAddr> {
        match raw.and_then(|m| m.listen) {
            None => None,
            Some(l) => match parse_listen(&l.value) {
                Ok(a) => Some(a),
                Err(e) => {
                    self.issue(Some(&l), "metrics.listen", e);
                    None
                }
            },
        }
    }
}
