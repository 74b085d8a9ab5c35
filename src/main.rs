//! The `authwatch` binary: CLI → logging → library → exit code
//! (0 fine, 1 runtime error, 64 usage error, 78 configuration error).

use authwatch::cli::{Cli, Command};
use authwatch::config::Config;
use clap::Parser;
use std::path::PathBuf;
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
    match cli.command {
        Command::Generate { what } => ExitCode::from(authwatch::generate::run(&what)),
        Command::Scan(args) => ExitCode::from(authwatch::scan::scan_command(&args)),
        Command::Explain(args) => ExitCode::from(authwatch::scan::explain_command(&args)),
        Command::Render {
            config,
            sample,
            html,
        } => {
            let cfg = match load(config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match authwatch::agent::render_sample(&cfg, &sample, html) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("authwatch: {e}");
                    ExitCode::from(EX_USAGE)
                }
            }
        }
        Command::Status { config } => {
            let cfg = match load(config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let path = cfg.state_dir.join("status.json");
            match authwatch::metrics::read_status(&path) {
                Ok(s) => {
                    let now = jiff::Timestamp::now();
                    print!(
                        "{}",
                        authwatch::metrics::format_status_with(
                            &s,
                            &jiff::tz::TimeZone::system(),
                            Some(now)
                        )
                    );
                    if s.is_healthy(now) {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!(
                        "authwatch: cannot read {}: {e} (is the agent running with this config?)",
                        path.display()
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config } => {
            let cfg = match load(config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match authwatch::agent::check(&cfg) {
                Ok(summary) => {
                    println!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(problems) => {
                    eprintln!("authwatch: {problems}");
                    ExitCode::from(EX_CONFIG)
                }
            }
        }
        Command::Run {
            config,
            stdin,
            services,
        } => {
            let mut cfg = match load(config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if stdin {
                // Lines come from the pipe only; the configured sources are not followed.
                let mut src = authwatch::config::SourceConfig::stdin();
                let known: Vec<String> = authwatch::rules::BUILTIN
                    .iter()
                    .map(|s| s.to_string())
                    .chain(cfg.custom_rules.iter().map(|c| c.name().to_string()))
                    .collect();
                for name in services.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
                    if !known.iter().any(|k| k == name) {
                        eprintln!(
                            "authwatch: --service: unknown service {name:?}; known services: {}",
                            known.join(", ")
                        );
                        return ExitCode::from(EX_USAGE);
                    }
                    src.services.push(name.to_string());
                }
                cfg.sources = vec![src];
            }
            match authwatch::agent::run_blocking(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("authwatch: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The config from `--config`, or the embedded example; a config error exits 78.
fn load(config: Option<PathBuf>) -> Result<Config, ExitCode> {
    let cfg = match config {
        Some(p) => Config::load(&p),
        None => Config::embedded_example(),
    };
    cfg.map_err(|e| {
        eprintln!("authwatch: {e}");
        ExitCode::from(EX_CONFIG)
    })
}
