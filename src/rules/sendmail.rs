//! Sendmail AUTH failures (`possible SMTP attack: command=AUTH`, `AUTH failure`).
//!
//! (Placeholder: recognises nothing yet.)

use super::{Hit, ParseCtx, Rule};

const SERVICE: &str = "sendmail";

/// Recogniser for sendmail.
#[derive(Debug, Default)]
pub struct SendmailRule;

impl SendmailRule {
    pub fn new() -> Self {
        SendmailRule
    }
}

impl Rule for SendmailRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn parse(&mut self, _line: &str, _ctx: &ParseCtx) -> Option<Hit> {
        None
    }
}
