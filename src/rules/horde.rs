//! Horde `FAILED LOGIN for USER [IP]` lines.
//!
//! (Placeholder: recognises nothing yet.)

use super::{Hit, ParseCtx, Rule};

const SERVICE: &str = "horde";

/// Recogniser for horde.
#[derive(Debug, Default)]
pub struct HordeRule;

impl HordeRule {
    pub fn new() -> Self {
        HordeRule
    }
}

impl Rule for HordeRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn parse(&mut self, _line: &str, _ctx: &ParseCtx) -> Option<Hit> {
        None
    }
}
