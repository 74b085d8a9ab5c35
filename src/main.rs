//! The `authwatch` binary: parse the command line, run it through the command layer
//! ([`authwatch::cmd`]), exit with its status (0 fine, 1 runtime error, 64 usage error, 78
//! configuration error; see [`authwatch::cmd::Exit`]).

use authwatch::cli::Cli;
use authwatch::cmd;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let exit = match Cli::try_parse() {
        Ok(cli) => cmd::dispatch(cli),
        Err(e) => cmd::parse_error(&e),
    };
    exit.into()
}
