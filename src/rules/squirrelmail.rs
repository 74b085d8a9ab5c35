//! SquirrelMail (squirrel_logger) failed-login lines.
//!
//! (Placeholder: recognises nothing yet.)

use super::{Hit, ParseCtx, Rule};

const SERVICE: &str = "squirrelmail";

/// Recogniser for squirrelmail.
#[derive(Debug, Default)]
pub struct SquirrelmailRule;

impl SquirrelmailRule {
    pub fn new() -> Self {
        SquirrelmailRule
    }
}

impl Rule for SquirrelmailRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn parse(&mut self, _line: &str, _ctx: &ParseCtx) -> Option<Hit> {
        None
    }
}
