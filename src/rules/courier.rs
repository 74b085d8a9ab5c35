//! Courier IMAP/POP3 `LOGIN FAILED` lines.
//!
//! (Placeholder: recognises nothing yet.)

use super::{Hit, ParseCtx, Rule};

const SERVICE: &str = "courier";

/// Recogniser for courier.
#[derive(Debug, Default)]
pub struct CourierRule;

impl CourierRule {
    pub fn new() -> Self {
        CourierRule
    }
}

impl Rule for CourierRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn parse(&mut self, _line: &str, _ctx: &ParseCtx) -> Option<Hit> {
        None
    }
}
