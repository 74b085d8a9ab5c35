//! SOGo `Login from 'IP' for user 'USER' might not have worked` lines.
//!
//! (Placeholder: recognises nothing yet.)

use super::{Hit, ParseCtx, Rule};

const SERVICE: &str = "sogo";

/// Recogniser for sogo.
#[derive(Debug, Default)]
pub struct SogoRule;

impl SogoRule {
    pub fn new() -> Self {
        SogoRule
    }
}

impl Rule for SogoRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn parse(&mut self, _line: &str, _ctx: &ParseCtx) -> Option<Hit> {
        None
    }
}
