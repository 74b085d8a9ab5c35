//! UW-IMAP `Login failed` / `AUTHENTICATE ... failure` lines.
//!
//! (Placeholder: recognises nothing yet.)

use super::{Hit, ParseCtx, Rule};

const SERVICE: &str = "uwimap";

/// Recogniser for uwimap.
#[derive(Debug, Default)]
pub struct UwImapRule;

impl UwImapRule {
    pub fn new() -> Self {
        UwImapRule
    }
}

impl Rule for UwImapRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn parse(&mut self, _line: &str, _ctx: &ParseCtx) -> Option<Hit> {
        None
    }
}
