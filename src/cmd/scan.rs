//! `authwatch scan` and `authwatch explain`: run by [`crate::scan`], whose status becomes the
//! exit status.

use super::Exit;
use crate::cli::{ExplainArgs, ScanArgs};

/// `authwatch scan ...`.
pub fn scan_command(args: &ScanArgs) -> Exit {
    Exit::from_code(crate::scan::scan_command(args))
}

/// `authwatch explain ...`.
pub fn explain_command(args: &ExplainArgs) -> Exit {
    Exit::from_code(crate::scan::explain_command(args))
}
