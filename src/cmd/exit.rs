//! The process exit statuses, defined once: every command returns an [`Exit`], `main` turns it
//! into the process's exit code, and the man page's EXIT STATUS section is written from
//! [`Exit::ALL`]. The numbers follow BSD `sysexits.h` where one fits (64 `EX_USAGE`, 78
//! `EX_CONFIG`); the packaged systemd unit does not restart on 78.

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: fine.
    Ok,
    /// 1: a runtime error (an unreadable input, a failed write, the agent stopped on an
    /// error, the agent refused a control command or could not be reached, a `test-mail`
    /// step failed), or for `status`, something unhealthy.
    Runtime,
    /// 64: the command line is wrong (unknown option, unknown service, a missing argument).
    Usage,
    /// 78: the configuration (file or templates) is wrong.
    Config,
}

/// The codes as plain numbers, for code that returns `u8` (the scan and explain commands).
pub const EXIT_OK: u8 = Exit::Ok.code();
pub const EXIT_RUNTIME: u8 = Exit::Runtime.code();
pub const EXIT_USAGE: u8 = Exit::Usage.code();
pub const EXIT_CONFIG: u8 = Exit::Config.code();

impl Exit {
    /// Every status, in the order the man page lists them.
    pub const ALL: [Exit; 4] = [Exit::Ok, Exit::Runtime, Exit::Usage, Exit::Config];

    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Runtime => 1,
            Exit::Usage => 64,
            Exit::Config => 78,
        }
    }

    /// What the status means, for the man page.
    pub const fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "fine",
            Exit::Runtime => "runtime error (or, for status, something unhealthy)",
            Exit::Usage => "usage error",
            Exit::Config => "configuration error (the systemd unit does not restart on it)",
        }
    }

    /// The status for a code that a `u8`-returning command gave (unknown codes are runtime
    /// errors).
    pub const fn from_code(code: u8) -> Exit {
        match code {
            0 => Exit::Ok,
            64 => Exit::Usage,
            78 => Exit::Config,
            _ => Exit::Runtime,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn codes_round_trip_and_are_the_documented_ones() {
        let codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, [0, 1, 64, 78]);
        for e in Exit::ALL {
            assert_eq!(Exit::from_code(e.code()), e);
        }
        assert_eq!(Exit::from_code(2), Exit::Runtime);
    }
}
