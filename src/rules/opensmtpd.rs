//! OpenSMTPD `event=failed-command ... command="AUTH ...` and `authentication ... result=permfail` lines.
//!
//! (Placeholder: recognises nothing yet.)

use super::{Hit, ParseCtx, Rule};

const SERVICE: &str = "opensmtpd";

/// Recogniser for opensmtpd.
#[derive(Debug, Default)]
pub struct OpenSmtpdRule;

impl OpenSmtpdRule {
    pub fn new() -> Self {
        OpenSmtpdRule
    }
}

impl Rule for OpenSmtpdRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn parse(&mut self, _line: &str, _ctx: &ParseCtx) -> Option<Hit> {
        None
    }
}
