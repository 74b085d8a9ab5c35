//! Command line: `authwatch run | check | scan | explain | status | silence | unsilence |
//! allow | incidents | ack | unblock | test-mail`, parsed with clap (derive). Raw values
//! only; the binary and the library turn them into a validated config or scan settings.

use clap::{Args, Parser, Subcommand, ValueEnum};
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
        /// Read log lines from standard input instead of the configured sources (e.g.
        /// `journalctl -f -o short-iso | authwatch run --stdin`); authwatch ends after the
        /// last line, once its alerts are spooled.
        #[arg(long)]
        stdin: bool,
        /// With --stdin: only these rules (repeat, or separate with commas). Default: all.
        #[arg(
            long = "service",
            short = 's',
            value_name = "NAME",
            requires = "stdin",
            value_delimiter = ','
        )]
        services: Vec<String>,
    },
    /// Validate the config and the alert templates; exit 0 when fine, 78 on a config error.
    Check {
        /// Config file (YAML). Without it, the embedded config.example.yaml is checked.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Also try it for real: open every log, connect to the SMTP server with TLS and AUTH
        /// as configured, and give a hint for each failure.
        #[arg(long)]
        probe: bool,
    },
    /// Read whole logs and report offenders, targeted accounts, subnets, threshold crossings
    /// and attempts per hour (or, with --events, every matching line as JSON).
    Scan(ScanArgs),
    /// Show how the rules match a log: lines matched per rule, unmatched lines that mention
    /// logins, and (--line) why one line matches or not.
    Explain(ExplainArgs),
    /// Print a sample alert of one kind, rendered from the configured templates, to preview
    /// template edits (ip_burst, subnet_burst, account_attack, compromised, digest, health).
    Render {
        /// Config file (its templates_dir is used). Without it, the built-in templates.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The alert kind.
        #[arg(long, value_name = "KIND")]
        sample: String,
        /// Also print the HTML part.
        #[arg(long)]
        html: bool,
    },
    /// Print what the running agent last reported: its sources, mail delivery, the fleet store
    /// (in fleet mode) and open incidents (from state_dir/status.json). Exit 1 when something
    /// is unhealthy (the fleet store down too) or the agent is not running.
    Status {
        /// Config file (its state_dir is read).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Send no mail about an IP, a network or an account for a while; its alerts are still
    /// counted, and `incidents` lists them as silenced. Applied at once by the running agent,
    /// else recorded for its next start. A login after failures is never silenced.
    Silence {
        /// Config file (its state_dir is used).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// An IP (203.0.113.7), a CIDR network (203.0.113.0/24) or an account name.
        #[arg(value_name = "TARGET")]
        target: String,
        /// How long: 30m, 24h, 7d, 1h30m.
        #[arg(long = "for", value_name = "DURATION", default_value = "24h")]
        duration: String,
        /// Why (kept with the silence; shown by `incidents`).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Lift a silence set with `authwatch silence`.
    Unsilence {
        /// Config file (its state_dir is used).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The IP, network or account silenced.
        #[arg(value_name = "TARGET")]
        target: String,
    },
    /// Stop counting the failed logins of an IP or network at once (like the config's
    /// allowlist, without editing it; `check` lists these too). With --remove, count again.
    Allow {
        /// Config file (its state_dir is used).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// An IP or a CIDR network.
        #[arg(value_name = "IP|CIDR")]
        target: String,
        /// For how long (default: until removed).
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// Remove the allow instead.
        #[arg(long, conflicts_with = "duration")]
        remove: bool,
    },
    /// List the running agent's open incidents: id, kind, target, service, log times of the
    /// first and last attempt, attempts, and what was done (actions, silenced, acked).
    Incidents {
        /// Config file (its state_dir is used).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an incident: no repeat mail or digest line for it, until it changes class
    /// (a login after the failures is a new incident and mails).
    Ack {
        /// Config file (its state_dir is used).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The incident id, as `incidents` and the alert mail show it (ip_burst-0123456789ab).
        #[arg(value_name = "INCIDENT")]
        incident: String,
    },
    /// Take back a block: run the `undo` of every configured action that has one, for IP.
    Unblock {
        /// Config file (its actions are used).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The blocked IP (or CIDR network, for actions whose undo takes `{network}`).
        #[arg(value_name = "IP")]
        target: String,
    },
    /// Send a sample alert through the configured SMTP relay, printing each step (connect,
    /// TLS, AUTH, sent with its Message-ID); exit 1 naming the step that failed.
    TestMail {
        /// Config file (its mail settings are used).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print shell completions or the man page, generated from this command line definition
    /// (for packagers; `packaging/build-deb` uses `generate all`).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
}

/// Output format of `scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScanFormat {
    /// Aligned tables for people.
    Table,
    /// One JSON object.
    Json,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Only these rules (repeat, or separate with commas). Default: all.
    #[arg(long = "service", short = 's', value_name = "NAME")]
    pub services: Vec<String>,
    /// Config file: its detect.per_ip threshold, time_zone and custom_rules are used.
    /// Default: 5 failures within 10m, the system's time zone.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ScanFormat::Table)]
    pub format: ScanFormat,
    /// Rows per table (0: all). JSON always has all.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,
    /// Print one JSON object per matching line (JSON Lines) instead of a report.
    #[arg(long, conflicts_with_all = ["format", "top"])]
    pub events: bool,
    /// Log files, oldest first; `-` reads stdin; gzip is read transparently.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Only these rules (repeat, or separate with commas). Default: all.
    #[arg(long = "service", short = 's', value_name = "NAME")]
    pub services: Vec<String>,
    /// Config file: its time_zone and custom_rules are used.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Explain this one line: the stamp read, each rule's verdict, and why.
    #[arg(long, value_name = "TEXT")]
    pub line: Option<String>,
    /// Kinds of unmatched lines shown (0: all).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub samples: usize,
    /// Log files; `-` reads stdin; gzip is read transparently.
    #[arg(value_name = "FILE", required_unless_present = "line")]
    pub files: Vec<PathBuf>,
}

/// What `authwatch generate` produces.
#[derive(Debug, Subcommand)]
pub enum Generate {
    /// Print the completion script for SHELL to stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page authwatch(1) (roff) to stdout.
    Man,
    /// Write the bash, zsh and fish completions (DIR/completions/) and every man page
    /// (DIR/man/authwatch.1, authwatch-SUBCOMMAND.1) into DIR.
    All {
        /// Output folder (created when missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}
