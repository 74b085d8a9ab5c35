//! The command layer: one function per subcommand of [`crate::cli`], and the one place where
//! outcomes become exit statuses ([`Exit`]: 0 fine, 1 runtime error, 64 usage error, 78
//! configuration error). `main` parses the command line and calls [`dispatch`]; the rest of
//! the library never sees the clap types: this layer hands it plain values (a [`Config`],
//! [`crate::scan::ScanOptions`], paths, flags).
//!
//! - `check.rs`: `check` and `render --sample`;
//! - `run.rs`: `run` (and `--stdin`);
//! - `scan.rs`: `scan` and `explain`;
//! - `status.rs`: `status`;
//! - `control.rs`: `silence`, `unsilence`, `allow`, `incidents`, `ack` (through the agent's
//!   control socket, or recorded for its next start);
//! - `unblock.rs`: `unblock` (the actions' `undo`);
//! - `testmail.rs`: `test-mail`;
//! - `generate.rs`: completions and man pages from the clap definition;
//! - `exit.rs`: the exit statuses.

pub mod check;
pub mod control;
pub mod exit;
pub mod generate;
pub mod run;
pub mod scan;
pub mod status;
pub mod testmail;
pub mod unblock;

pub use exit::Exit;

use crate::cli::{Cli, Command};
use crate::config::Config;
use std::path::PathBuf;

/// Run the parsed command line; returns how it ended.
pub fn dispatch(cli: Cli) -> Exit {
    init_logging(cli.log_level.as_deref());
    match cli.command {
        Command::Generate { what } => generate::run(&what),
        Command::Scan(args) => scan::scan_command(&args),
        Command::Explain(args) => scan::explain_command(&args),
        Command::Render {
            config,
            sample,
            html,
        } => check::render_command(config, &sample, html),
        Command::Status { config } => status::command(config),
        Command::Silence {
            config,
            target,
            duration,
            reason,
        } => control::silence(config, &target, &duration, reason),
        Command::Unsilence { config, target } => control::unsilence(config, &target),
        Command::Allow {
            config,
            target,
            duration,
            remove,
        } => control::allow(config, &target, duration.as_deref(), remove),
        Command::Incidents { config, json } => control::incidents(config, json),
        Command::Ack { config, incident } => control::ack(config, &incident),
        Command::Unblock { config, target } => unblock::command(config, &target),
        Command::TestMail { config } => testmail::command(config),
        Command::Check { config, probe } => check::command(config, probe),
        Command::Run {
            config,
            stdin,
            services,
        } => run::command(config, stdin, &services),
    }
}

/// A command line clap could not parse (printed here): a usage error, or `--help` /
/// `--version`, which end fine.
pub fn parse_error(e: &clap::Error) -> Exit {
    let _ = e.print();
    if e.use_stderr() {
        Exit::Usage
    } else {
        Exit::Ok
    }
}

/// Set up tracing: `--log-level` wins, else `RUST_LOG`, else `info`. Logs go to stderr, in
/// colour only when stderr is a terminal (journald, files and pipes get plain text).
pub fn init_logging(level: Option<&str>) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|e| {
            eprintln!("authwatch: bad --log-level {l:?} ({e}); using info");
            EnvFilter::new("info")
        }),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// The config from `--config`, or the embedded example; a config error is printed and ends
/// the command with [`Exit::Config`].
fn load(config: Option<PathBuf>) -> Result<Config, Exit> {
    let cfg = match config {
        Some(p) => Config::load(&p),
        None => Config::embedded_example(),
    };
    cfg.map_err(|e| {
        eprintln!("authwatch: {e}");
        Exit::Config
    })
}
