//! `authwatch scan` and `authwatch explain`: the command-line values turned into the plain
//! options of [`crate::scan`], whose status becomes the exit status.

use super::Exit;
use crate::cli::{ExplainArgs, ScanArgs, ScanFormat};
use crate::scan::{self, ExplainOptions, ScanOptions};

/// `authwatch scan ...`.
pub fn scan_command(args: &ScanArgs) -> Exit {
    let opts = ScanOptions {
        services: args.services.clone(),
        config: args.config.clone(),
        format: match args.format {
            ScanFormat::Table => scan::ScanFormat::Table,
            ScanFormat::Json => scan::ScanFormat::Json,
        },
        top: args.top,
        events: args.events,
        files: args.files.clone(),
    };
    Exit::from_code(scan::scan_command(&opts))
}

/// `authwatch explain ...`.
pub fn explain_command(args: &ExplainArgs) -> Exit {
    let opts = ExplainOptions {
        services: args.services.clone(),
        config: args.config.clone(),
        line: args.line.clone(),
        samples: args.samples,
        files: args.files.clone(),
    };
    Exit::from_code(scan::explain_command(&opts))
}
