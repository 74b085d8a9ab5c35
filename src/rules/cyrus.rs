//! Cyrus IMAP and Sieve `badlogin` lines.
//!
//! (Placeholder: recognises nothing yet.)

use super::{Hit, ParseCtx, Rule};

const SERVICE: &str = "cyrus";

/// Recogniser for cyrus.
#[derive(Debug, Default)]
pub struct CyrusRule;

impl CyrusRule {
    pub fn new() -> Self {
        CyrusRule
    }
}

impl Rule for CyrusRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn parse(&mut self, _line: &str, _ctx: &ParseCtx) -> Option<Hit> {
        None
    }
}
