//! Dovecot IMAP/POP3 login failures (2.2, 2.3, 2.4 wordings) and auth_verbose per-attempt lines.
//!
//! (Placeholder: recognises nothing yet.)

use super::{Hit, ParseCtx, Rule};

const SERVICE: &str = "dovecot";

/// Recogniser for dovecot.
#[derive(Debug, Default)]
pub struct DovecotRule;

impl DovecotRule {
    pub fn new() -> Self {
        DovecotRule
    }
}

impl Rule for DovecotRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn parse(&mut self, _line: &str, _ctx: &ParseCtx) -> Option<Hit> {
        None
    }
}
