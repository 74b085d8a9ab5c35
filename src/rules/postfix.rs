//! Postfix SASL authentication failures (smtpd) and sasl_username= on accepted mail.
//!
//! (Placeholder: recognises nothing yet.)

use super::{Hit, ParseCtx, Rule};

const SERVICE: &str = "postfix";

/// Recogniser for postfix.
#[derive(Debug, Default)]
pub struct PostfixRule;

impl PostfixRule {
    pub fn new() -> Self {
        PostfixRule
    }
}

impl Rule for PostfixRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn parse(&mut self, _line: &str, _ctx: &ParseCtx) -> Option<Hit> {
        None
    }
}
