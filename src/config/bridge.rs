//! TRANSITIONAL, to be deleted when the stage modules are redirected (see the report of issue
//! 17's config split): the plain types (and one constant) config hands to stages but that are still defined
//! in stage files config may not edit. Moving their definitions here changes no behaviour but
//! must happen together with the stage files (a type has one definition), so until then config
//! names them through this one file and nowhere else. The import check in `tests.rs` lists this
//! file as its only exception.
//!
//! - `ActionSpec` (plain data: name, program, args, timeout, include_in_alert): its definition
//!   moves to `config/actions.rs`; `src/actions.rs` re-exports it.
//! - `RetryPolicy` (plain data: three durations, and their defaults): its definition moves to
//!   `config/mail.rs`; `src/mail.rs` re-exports it and keeps `impl RetryPolicy { fn delay }`.
//! - `CustomRule`, `CustomRuleError` (a checked, compiled custom rule: the compile step *is* the
//!   validation): the struct and `new` move to `config/rules.rs`; `src/rules/custom.rs`
//!   re-exports them and keeps `impl Rule for CustomRule`.
//! - `O_NONBLOCK` (a constant only config uses): moves to `config/files.rs`, and leaves
//!   `src/state.rs` (where it would otherwise be dead code until then).

pub use crate::actions::ActionSpec;
pub use crate::mail::RetryPolicy;
pub use crate::rules::custom::{CustomRule, CustomRuleError};
pub(crate) use crate::state::O_NONBLOCK;
