//! Roundcube webmail `FAILED login for USER from IP` lines.
//!
//! (Placeholder: recognises nothing yet.)

use super::{Hit, ParseCtx, Rule};

const SERVICE: &str = "roundcube";

/// Recogniser for roundcube.
#[derive(Debug, Default)]
pub struct RoundcubeRule;

impl RoundcubeRule {
    pub fn new() -> Self {
        RoundcubeRule
    }
}

impl Rule for RoundcubeRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn parse(&mut self, _line: &str, _ctx: &ParseCtx) -> Option<Hit> {
        None
    }
}
