//! authwatch: follows mail-server logs, spots login-guessing bursts and emails the administrator.
//!
//! Data flows one way, source → rules → detect → policy → render → mail:
//! [`source`] follows log files (rotation, truncation, checkpoints), the journal or stdin and
//! yields lines → [`rules`] turns a line into a [`rules::Hit`] (time, ip, user, service,
//! attempts) → [`detect`] keeps bounded sliding windows per IP, subnet and account and says
//! when a threshold is crossed → [`policy`] decides which alerts ([`policy::Notice`]: an
//! [`alert_kind::AlertKind`], key, stable id from [`policy::id`], template context) go out now,
//! grouped, held back by the hourly cap or in a digest → [`render`] fills the templates of
//! `alert-templates/` only for what the policy lets go, giving a [`message::Rendered`] →
//! [`mail`] spools it durably and delivers it over SMTP (lettre) or into an outbox folder.
//! [`agent`] wires these together for `authwatch run` (its `engine` is the synchronous,
//! clock-injected part); [`actions`] runs the configured commands for an alert, [`state`]
//! saves checkpoints, windows and the policy's state, [`text`] makes attacker text inert,
//! [`control`] holds the administrator's decisions (`authwatch silence | allow | ack`) that the
//! agent consults, and its control socket; [`fleet`] shares detection with other servers
//! through Redis/Valkey.
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
pub mod fleet;
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
