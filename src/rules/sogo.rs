//! The SOGo rule: `SOGoRootPage` login results in `sogo.log` or syslog.
//!
//! SOGo (UI/MainUI/SOGoRootPage.m) writes
//! `SOGoRootPage Login from '<remote>' for user '<user>' might not have worked - password
//! policy: <n>  grace: <n>  expire: <n>  bound: <n>` for a refused login and
//! `SOGoRootPage successful login from '<remote>' for user '<user>' - expire = <n>  grace = <n>`
//! for an accepted one. `<remote>` is the `x-webobjects-remote-host` header, which behind a
//! proxy is an `X-Forwarded-For`-style list (`client, proxy`): the client is read from the
//! right, passing over internal proxy addresses (see `rightmost_client`).
//!
//! Only lines tagged by SOGo's daemon (`sogod [pid]:` in its own log, `sogod[pid]:` in
//! syslog) whose message starts with the class name and these words count.
//!
//! Both `<remote>` (through the forwarded header) and `<user>` carry client text, so the
//! boundary `' for user '` may occur more than once. Every occurrence is tried; the line is
//! blamed only when all readings that yield an address yield the same one.

use super::courier::shared::{first_token, hit, rightmost_client, sole, split};
use super::{Hit, HitKind, ParseCtx, Rule};
use memchr::memmem::{self, Finder};

const SERVICE: &str = "sogo";

const FOR_USER: &str = "' for user '";
const FAILED_TAIL: &str = "' might not have worked - password policy: ";
const SUCCESS_TAIL: &str = "' - expire = ";

/// Recognises SOGo failed and successful web logins.
#[derive(Debug, Clone)]
pub struct SogoRule {
    finder: Finder<'static>,
}

impl Default for SogoRule {
    fn default() -> Self {
        Self::new()
    }
}

impl SogoRule {
    pub fn new() -> Self {
        SogoRule {
            finder: Finder::new(b"ogin from '"),
        }
    }
}

impl Rule for SogoRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn literals(&self) -> Option<Vec<Vec<u8>>> {
        super::literal_list(&["ogin from '"])
    }
    fn stateless(&self) -> bool {
        true
    }

    fn parse(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        self.finder.find(line.as_bytes())?;
        let p = split(line, ctx);
        // sogo.log's `sogod [pid]:` or syslog's `sogod[pid]:`.
        if !p.program_is(|n| n.starts_with("sogo")) {
            return None;
        }
        // "<Class> Login from '…" / "<Class> successful login from '…".
        let (class, rest) = first_token(p.msg);
        if class.is_empty() || !class.bytes().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        let (body, tail, kind) = if let Some(b) = rest.strip_prefix("Login from '") {
            (b, FAILED_TAIL, HitKind::Failure)
        } else if let Some(b) = rest.strip_prefix("successful login from '") {
            (b, SUCCESS_TAIL, HitKind::Success)
        } else {
            return None;
        };
        let fields = &body[..body.rfind(tail)?];
        let readings: Vec<_> = memmem::find_iter(fields.as_bytes(), FOR_USER.as_bytes())
            .filter_map(|i| {
                let addr = rightmost_client(&fields[..i])?;
                Some((addr, &fields[i + FOR_USER.len()..]))
            })
            .collect();
        let addr = sole(readings.iter().map(|r| r.0))?;
        Some(hit(SERVICE, p.time, addr, Some(readings[0].1), 1, kind))
    }
}

#[cfg(test)]
#[path = "sogo_tests.rs"]
mod tests;
