//! The agent behind `authwatch run`: wires sources, rules, detection, the alert policy,
//! rendering and mail together.
//!
//! - `engine.rs` (with `detect.rs` and `alerts.rs`): [`Engine`], the synchronous,
//!   clock-injected state machine from log lines to outgoing alerts; tested without threads.
//! - `run.rs`: the I/O loop ([`run`], [`run_blocking`]). Each source is read by its own thread
//!   ([`crate::source::spawn_reader`]; a slow disk never stalls the others); batches of lines
//!   reach the one engine over a bounded channel, in order per source. An alert with actions
//!   waits until its actions have run in a task of its own (`holds.rs`), so no alert waits for
//!   another alert's actions. Mail is delivered by a separate task.
//! - `reload.rs`: SIGHUP swaps the settings and keeps all the state.
//! - `fleet.rs`: fleet mode's hooks (issue 16): hits to the shared store, fleet totals to
//!   claims and alerts; the store and its task are [`crate::fleet`]. `fleet_actions.rs`: each
//!   agent that saw a crossed IP or subnet key runs its own actions for it.
//! - `health.rs`: unreadable or silent sources and failing mail become health alerts;
//!   `status.json` for `authwatch status`.

mod alerts;
mod detect;
mod engine;
mod fleet;
mod fleet_actions;
mod health;
mod holds;
mod reload;
mod run;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod decisions_tests;

pub use engine::{policy_settings, Engine, PendingAlert};
pub use run::{run, run_blocking};
