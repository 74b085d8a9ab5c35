//! Actions: optional commands run for each alert (block the IP in a firewall, open a ticket).
//!
//! A command is run directly, never through a shell: the configured program gets its argument
//! list, each argument a template in which `{ip}`, `{network}`, `{prefix}`, `{account}`,
//! `{count}` and `{service}` are replaced *inside that one argument*. Whatever an attacker put into an
//! account name (`;`, `$(...)`, spaces, quotes, another `{ip}`) therefore reaches the program
//! as literal text of one argument; it can neither split an argument nor start a program.
//! Control characters in substituted values become visible `<U+XXXX>` marks. An account name
//! may still begin with `-`: give it to programs as `--user={account}` or after `--`.
//!
//! What the address placeholders hold:
//!
//! | placeholder | `ip_burst`, `compromised` | `subnet_burst` |
//! |---|---|---|
//! | `{ip}` | the address (`203.0.113.7`) | refused by `check` (it would be the network's first address only) |
//! | `{network}` | the address as a host range (`203.0.113.7/32`, `2001:db8::7/128`) | the subnet in CIDR (`2001:db8:1:2::/64`) |
//! | `{prefix}` | the subnet the address belongs to by `detect.per_subnet` grouping (`2001:db8::/64`), empty when not grouped (IPv4 by default) | the subnet in CIDR |
//!
//! So `{network}` always names exactly what the alert blames, and is the one to give a blocking
//! program that accepts CIDR (the shipped `nft-block` and `apf-block` do).
//!
//! The caller runs actions only for an IP it has parsed and checked against its allowlist
//! ([`ActionContext`] takes an [`IpAddr`], not text); [`ActionRunner::with_allowlist`] adds the
//! same check here as a second line of defence.
//!
//! Each command runs with stdin from `/dev/null`, working folder `/`, an environment holding only
//! `PATH` and `LANG`, in its own process group, under a timeout (on expiry the whole group is
//! killed with SIGKILL), and under a limit on how many commands run at once. stdout and stderr
//! are read together; the result keeps the first [`MAX_OUTPUT_LINES`] lines, cut and made inert.
//!
//! [`ActionRunner::run`] blocks until every action for the alert has finished; from async code
//! call it in `tokio::task::spawn_blocking`.

use crate::config::{parse_template, spec_error, Piece};
pub use crate::config::{
    uses_ip, validate_arg, validate_max_concurrent, validate_program, validate_spec,
    validate_specs, ActionSpec, SpecError, MAX_CONCURRENT, MAX_TIMEOUT, PLACEHOLDERS,
};
use crate::text::inert;
use ipnet::IpNet;
use serde::Serialize;
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Lines of a command's output kept in its result.
pub const MAX_OUTPUT_LINES: usize = 5;
/// Characters kept per output line.
pub const MAX_OUTPUT_LINE_CHARS: usize = 200;
/// Bytes of output read into memory; the rest is read and dropped.
const OUTPUT_READ_CAP: usize = 16 * 1024;
/// After a command ended, how long its output pipe may stay open (held by a process it left
/// behind outside its group) before the output read so far is used.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);
/// `PATH` given to commands when authwatch itself has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What an action is about. The IP has been parsed and allowlist-checked by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionContext {
    /// `{ip}` is written in canonical form (an IPv4-mapped IPv6 address as plain IPv4). For a
    /// subnet alert: the network's first address (used for logs and the allowlist check).
    pub ip: IpAddr,
    /// What the alert blames, as `{network}`: the subnet of a subnet alert; `None` for an
    /// alert about one address, which `{network}` writes as a /32 or /128.
    pub network: Option<IpNet>,
    /// The network the caller attributes the IP to (e.g. its /64); `{prefix}` is empty without.
    pub prefix: Option<IpNet>,
    /// The most tried account (attacker-chosen text); `{account}` is empty without.
    pub account: Option<String>,
    /// Attempts counted for the alert.
    pub count: u64,
    pub service: String,
}

/// How one action went. Serializable, so an alert template can list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionResult {
    pub name: String,
    /// Exit code; `None` when the command was killed by a signal or did not start.
    pub exit: Option<i32>,
    /// The signal that ended the command, if any.
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// Why the command did not run (could not start, too many queued), if so.
    pub error: Option<String>,
    /// The first lines of stdout and stderr together, cut and made inert.
    pub output: String,
    /// One line for people: `exit 0`, `exit 3`, `timed out after 10s (killed)`, ...
    pub status: String,
    pub duration_ms: u64,
    /// Copied from the spec: whether this result belongs in the alert.
    pub include_in_alert: bool,
}

impl ActionResult {
    /// True when the command ran and exited 0.
    pub fn success(&self) -> bool {
        self.exit == Some(0) && !self.timed_out && self.error.is_none()
    }
}

impl fmt::Display for ActionResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.status)
    }
}

/// Log every result: info for success, warn otherwise, with the output.
pub fn log_results(ip: IpAddr, results: &[ActionResult]) {
    for r in results {
        if r.success() {
            tracing::info!(%ip, action = %r.name, status = %r.status, output = %r.output, "action done");
        } else {
            tracing::warn!(%ip, action = %r.name, status = %r.status, output = %r.output, "action failed");
        }
    }
}

/// The results that belong in the alert mail (`include_in_alert`).
pub fn for_alert(results: &[ActionResult]) -> Vec<ActionResult> {
    results
        .iter()
        .filter(|r| r.include_in_alert)
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Running

/// Substituted values: control characters become visible marks, everything else is literal.
fn arg_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("<U+{:04X}>", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Fill one parsed template. Substituted text is never parsed again.
fn expand(pieces: &[Piece], ctx: &ActionContext) -> String {
    let mut s = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => s.push_str(t),
            Piece::Ip => s.push_str(&ctx.ip.to_canonical().to_string()),
            Piece::Network => {
                let n = ctx
                    .network
                    .unwrap_or_else(|| IpNet::from(ctx.ip.to_canonical()));
                s.push_str(&n.to_string());
            }
            Piece::Prefix => {
                if let Some(n) = ctx.prefix {
                    s.push_str(&n.to_string());
                }
            }
            Piece::Account => {
                if let Some(a) = &ctx.account {
                    s.push_str(&arg_safe(a));
                }
            }
            Piece::Count => s.push_str(&ctx.count.to_string()),
            Piece::Service => s.push_str(&arg_safe(&ctx.service)),
        }
    }
    s
}

#[derive(Debug)]
struct Compiled {
    spec: ActionSpec,
    args: Vec<Vec<Piece>>,
}

/// A counting semaphore on std primitives.
#[derive(Debug)]
struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

struct SlotGuard<'a>(&'a Slots);

impl Slots {
    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.cv.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|e| e.into_inner());
        *free += 1;
        self.0.cv.notify_one();
    }
}

/// Runs the configured actions. Share it with `Arc`; [`run`](Self::run) may be called from many
/// threads at once, and at most `max_concurrent` commands run at any moment.
#[derive(Debug)]
pub struct ActionRunner {
    actions: Vec<Compiled>,
    slots: Arc<Slots>,
    /// Commands started or waiting for a slot.
    pending: AtomicUsize,
    max_pending: usize,
    allowlist: Vec<IpNet>,
}

impl ActionRunner {
    /// Parse the specs' templates. Config validation ([`validate_specs`]) should have run first;
    /// this checks the templates and `max_concurrent` again (not the file system) and returns
    /// the first problem.
    pub fn new(specs: Vec<ActionSpec>, max_concurrent: usize) -> Result<ActionRunner, SpecError> {
        validate_max_concurrent(max_concurrent).map_err(|m| spec_error("max_concurrent", m))?;
        let mut actions = Vec::with_capacity(specs.len());
        for spec in specs {
            let mut args = Vec::with_capacity(spec.args.len());
            for (i, a) in spec.args.iter().enumerate() {
                args.push(parse_template(a).map_err(|m| SpecError {
                    field: format!("args[{i}]"),
                    arg: Some(i),
                    message: m,
                })?);
            }
            actions.push(Compiled { spec, args });
        }
        Ok(ActionRunner {
            actions,
            slots: Arc::new(Slots {
                free: Mutex::new(max_concurrent),
                cv: Condvar::new(),
            }),
            pending: AtomicUsize::new(0),
            max_pending: max_concurrent * 64,
            allowlist: Vec::new(),
        })
    }

    /// Never run actions for IPs inside these networks (the same allowlist the caller checks).
    pub fn with_allowlist(mut self, nets: Vec<IpNet>) -> Self {
        self.allowlist = nets;
        self
    }

    /// True when no action is configured.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The argument lists the actions would get for `ctx` (for `check` previews and tests).
    pub fn preview(&self, ctx: &ActionContext) -> Vec<(String, PathBuf, Vec<String>)> {
        self.actions
            .iter()
            .map(|a| {
                (
                    a.spec.name.clone(),
                    a.spec.program.clone(),
                    a.args.iter().map(|p| expand(p, ctx)).collect(),
                )
            })
            .collect()
    }

    /// Run every action for one alert, in parallel (each under the concurrency limit), and
    /// return their results in configuration order. Blocks; returns nothing for an IP inside
    /// the allowlist. A command that cannot get a slot because too many are already queued
    /// (64 per slot) is not run and says so in `error`.
    pub fn run(&self, ctx: &ActionContext) -> Vec<ActionResult> {
        self.run_where(ctx, |_| true)
    }

    /// Like [`ActionRunner::run`], for the actions named in `names` only (the ones configured
    /// for an alert's kind).
    pub fn run_named(&self, ctx: &ActionContext, names: &[String]) -> Vec<ActionResult> {
        self.run_where(ctx, |spec| names.iter().any(|n| n == &spec.name))
    }

    fn run_where(
        &self,
        ctx: &ActionContext,
        keep: impl Fn(&ActionSpec) -> bool,
    ) -> Vec<ActionResult> {
        let ip = ctx.ip.to_canonical();
        if self.allowlist.iter().any(|n| n.contains(&ip)) {
            tracing::debug!(%ip, "allowlisted: no actions run");
            return Vec::new();
        }
        // A subnet that holds an allowlisted address is not acted on as a whole either.
        if let Some(net) = ctx.network {
            if let Some(a) = self
                .allowlist
                .iter()
                .find(|a| net.contains(*a) || a.contains(&net))
            {
                tracing::info!(network = %net, allowlisted = %a, "the subnet holds allowlisted addresses: no actions run");
                return Vec::new();
            }
        }
        let chosen: Vec<&Compiled> = self.actions.iter().filter(|a| keep(&a.spec)).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = chosen
                .iter()
                .map(|a| s.spawn(move || self.run_one(a, ctx)))
                .collect();
            handles
                .into_iter()
                .zip(&chosen)
                .map(|(h, a)| {
                    h.join().unwrap_or_else(|_| {
                        not_run(&a.spec, "internal error: the action thread panicked")
                    })
                })
                .collect()
        })
    }

    fn run_one(&self, a: &Compiled, ctx: &ActionContext) -> ActionResult {
        let before = self.pending.fetch_add(1, Ordering::SeqCst);
        let _pending = PendingGuard(&self.pending);
        if before >= self.max_pending {
            return not_run(&a.spec, "not run: too many actions already queued");
        }
        let args: Vec<String> = a.args.iter().map(|p| expand(p, ctx)).collect();
        let _slot = self.slots.acquire();
        execute(&a.spec, &args)
    }
}

struct PendingGuard<'a>(&'a AtomicUsize);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn not_run(spec: &ActionSpec, why: &str) -> ActionResult {
    ActionResult {
        name: spec.name.clone(),
        exit: None,
        signal: None,
        timed_out: false,
        error: Some(why.to_string()),
        output: String::new(),
        status: why.to_string(),
        duration_ms: 0,
        include_in_alert: spec.include_in_alert,
    }
}

/// Send SIGKILL to a process group.
fn kill_group(pgid: u32) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    const SIGKILL: i32 = 9;
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours. The group is the
    // child's own (process_group(0)), and the child has not been reaped yet, so its id cannot
    // have been reused.
    unsafe {
        kill(-pgid, SIGKILL);
    }
}

/// Run one command to completion or timeout.
fn execute(spec: &ActionSpec, args: &[String]) -> ActionResult {
    let start = Instant::now();
    let mut result = not_run(spec, "");
    result.error = None;

    let (mut reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return failed_to_start(spec, &e),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return failed_to_start(spec, &e),
    };
    let mut cmd = Command::new(&spec.program);
    cmd.args(args)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
        )
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .process_group(0);
    if let Some(lang) = std::env::var_os("LANG") {
        cmd.env("LANG", lang);
    }
    let spawned = cmd.spawn();
    // The command holds our copies of the pipe's write end: drop it, so the pipe reaches EOF
    // when the child (and whatever it started) is gone.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return failed_to_start(spec, &e),
    };

    let collected = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    {
        let collected = Arc::clone(&collected);
        // Reads to EOF, keeping the first bytes. If a process outside the group keeps the pipe
        // open, this thread outlives the action; it ends when that process closes the pipe.
        let spawned = std::thread::Builder::new()
            .name(format!("action-{}", spec.name))
            .spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            let mut c = collected.lock().unwrap_or_else(|e| e.into_inner());
                            let room = OUTPUT_READ_CAP.saturating_sub(c.len());
                            c.extend_from_slice(&buf[..n.min(room)]);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            tracing::warn!(action = %spec.name, "cannot start the output reader: {e}");
        }
    }

    let deadline = start + spec.timeout;
    let mut pause = Duration::from_millis(2);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(action = %spec.name, "waiting for the command failed: {e}");
                kill_group(child.id());
                let _ = child.kill();
                break child.wait().ok();
            }
        }
        let now = Instant::now();
        if now >= deadline {
            result.timed_out = true;
            kill_group(child.id());
            let _ = child.kill();
            break child.wait().ok();
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    let _ = done_rx.recv_timeout(OUTPUT_GRACE);
    let bytes = collected.lock().unwrap_or_else(|e| e.into_inner()).clone();

    result.duration_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    result.output = summarize_output(&bytes);
    if let Some(st) = status {
        result.exit = st.code();
        result.signal = st.signal();
    }
    result.status = if result.timed_out {
        format!(
            "timed out after {} (killed)",
            crate::text::format_duration(spec.timeout)
        )
    } else if let Some(code) = result.exit {
        format!("exit {code}")
    } else if let Some(sig) = result.signal {
        format!("killed by signal {sig}")
    } else {
        "ended in an unknown way".to_string()
    };
    result
}

fn failed_to_start(spec: &ActionSpec, e: &std::io::Error) -> ActionResult {
    not_run(
        spec,
        &format!("could not start {}: {e}", spec.program.display()),
    )
}

/// The first [`MAX_OUTPUT_LINES`] non-empty lines, each cut to [`MAX_OUTPUT_LINE_CHARS`] and
/// made inert, with a note when more was cut.
fn summarize_output(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let mut out: Vec<String> = lines
        .iter()
        .take(MAX_OUTPUT_LINES)
        .map(|l| {
            let mut s: String = l.chars().take(MAX_OUTPUT_LINE_CHARS).collect();
            if l.chars().count() > MAX_OUTPUT_LINE_CHARS {
                s.push_str(" [...]");
            }
            inert(&s)
        })
        .collect();
    if lines.len() > MAX_OUTPUT_LINES || bytes.len() >= OUTPUT_READ_CAP {
        out.push("[... more output cut]".to_string());
    }
    out.join("\n")
}

#[cfg(test)]
#[path = "actions_tests.rs"]
mod tests;
