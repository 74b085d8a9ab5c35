//! authwatch: follows mail-server logs, spots login-guessing bursts and emails the administrator.
//!
//! Data flows one way: `source` (follow files) yields lines → `rules` turns a line into a
//! [`rules::Hit`] (time, ip, user, service, attempts) → `detect` keeps bounded sliding windows
//! per IP and decides when an incident opens or an alert is due (cooldown) → `render` fills the
//! templates from `alert-templates/` → `mail` delivers over SMTP (lettre) or writes `.eml` files
//! into an outbox folder. `agent` wires these together for `authwatch run`; `control` holds the
//! administrator's decisions (`authwatch silence | allow | ack`) that the agent consults, and
//! its control socket.
//!
//! `cli` (the clap definition) and `cmd` (one function per subcommand, and the exit statuses)
//! are the command layer on top; nothing else in the library uses the clap types. See the
//! README's "Code layout" for a map of `src/`.

pub mod actions;
pub mod agent;
pub mod alert_kind;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod control;
pub mod detect;
pub mod hostinfo;
pub mod mail;
pub mod message;
pub mod metrics;
pub mod policy;
pub mod render;
pub mod rules;
pub mod scan;
pub mod source;
pub mod state;
pub mod text;
