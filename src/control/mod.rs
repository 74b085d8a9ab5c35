//! Acting on the running agent: the administrator's decisions and the local control socket.
//!
//! - `decisions.rs`: silences, allows and acks, what they match, and `state_dir/decisions.json`;
//! - `server.rs`: the agent's side of `state_dir/control.sock` (peer check, one JSON request
//!   per line, one JSON reply);
//! - `client.rs`: the commands' side: ask the agent, or, when none runs, record the change in
//!   `decisions.json` for its next start.

pub mod decisions;

pub use decisions::{incident_id, Decisions, Target};
