//! Command line: `authwatch run | check`, parsed with clap (derive). Raw values only; the
//! binary turns them into a validated config and calls the library.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// authwatch: watches mail-server logs for login-guessing bursts and emails the administrator.
#[derive(Debug, Parser)]
#[command(name = "authwatch", version, about, long_about = None)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace, or a tracing filter). Default: $RUST_LOG, else info.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Follow the configured logs and send alerts (until SIGTERM or Ctrl-C).
    Run {
        /// Config file (YAML). Without it, the embedded config.example.yaml is used.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate the config and the alert templates; exit 0 when fine, 78 on a config error.
    Check {
        /// Config file (YAML). Without it, the embedded config.example.yaml is checked.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}
