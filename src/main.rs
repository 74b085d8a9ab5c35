//! The `authwatch` binary: CLI → logging → library → exit code
//! (0 fine, 1 runtime error, 64 usage error, 78 configuration error).

use authwatch::cli::{Cli, Command};
use authwatch::config::Config;
use clap::Parser;
use std::process::ExitCode;

const EX_USAGE: u8 = 64;
const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    authwatch::agent::init_logging(cli.log_level.as_deref());
    let (Command::Run { config } | Command::Check { config }) = &cli.command;
    let cfg = match config {
        Some(p) => Config::load(p),
        None => Config::embedded_example(),
    };
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprintln!("authwatch: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    match cli.command {
        Command::Check { .. } => match authwatch::agent::check(&cfg) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(problems) => {
                eprintln!("authwatch: {problems}");
                ExitCode::from(EX_CONFIG)
            }
        },
        Command::Run { .. } => match authwatch::agent::run_blocking(cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("authwatch: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
