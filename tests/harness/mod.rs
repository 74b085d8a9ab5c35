//! Test harness for the integration tests: temp folders, the real servers from
//! `tests/support/` (aiosmtpd sink, Exim) and the `authwatch` binary, each behind a guard whose
//! `Drop` always stops what it started (by PID, never by name) and prints its output when the
//! test is failing. Waiting is done by polling a condition against a deadline; fixed sleeps are
//! used only where a negative has to be shown (and the tests say why).

#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long any condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(20);

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_authwatch")
}

/// A file in `tests/support/`.
pub fn support(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(name)
}

/// A file in the crate's root folder.
pub fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// A fresh temp folder (removed on drop).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("authwatch-it-")
        .tempdir()
        .expect("creating a temp folder")
}

/// Poll `f` until it returns `Some`, or panic after [`DEADLINE`] with `what`.
pub fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_for_within(DEADLINE, what, f)
}

/// Like [`wait_for`] with an explicit limit.
pub fn wait_for_within<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

fn read_lossy(p: &Path) -> String {
    fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Remove ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Send SIGTERM to one process (by PID) with the `kill` command.
pub fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Wait for a child to exit, up to `limit`.
fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if start.elapsed() < limit => std::thread::sleep(POLL),
            _ => return None,
        }
    }
}

/// SIGTERM, wait up to `limit`, then SIGKILL. Returns the exit status if it exited on SIGTERM.
fn terminate(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    sigterm(child.id());
    match wait_child(child, limit) {
        Some(st) => Some(st),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// Time stamps and log lines

/// Seconds since the epoch, now.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's civil_from_days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Exim's stamp for a UTC time: `2026-11-23 15:59:08`.
pub fn stamp(unix: i64) -> String {
    let (y, mo, d) = civil_from_days(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// A default-format Exim failed-AUTH line.
pub fn exim_fail(unix: i64, ip: &str, user: &str) -> String {
    format!(
        "{} PLAIN authenticator failed for (attacker.example) [{ip}]: 535 Incorrect authentication data (set_id={user})",
        stamp(unix)
    )
}

/// A `log_selector = +all` Exim failed-AUTH line (milliseconds, pid, ports, I=).
pub fn exim_fail_all(unix: i64, ip: &str, port: u16, user: &str) -> String {
    format!(
        "{}.417 [24816] dovecot_login authenticator failed for (User) [{ip}]:{port} I=[192.0.2.25]:587: 535 Incorrect authentication data (set_id={user})",
        stamp(unix)
    )
}

/// Lines Exim writes that are not failed logins.
pub fn exim_noise(unix: i64) -> Vec<String> {
    let t = stamp(unix);
    vec![
        format!("{t} exim 4.96 daemon started: pid=1201, -q30m, listening for SMTP on [0.0.0.0]:25"),
        format!("{t} 1vAbCd-0001Xy-Q1 <= alice@example.com H=(laptop) [198.51.100.23]:51544 P=esmtpsa A=dovecot_plain:alice@example.com S=2121"),
        format!("{t} 1vAbCd-0001Xy-Q1 => bob@example.org R=dnslookup T=remote_smtp H=mx.example.org [203.0.113.80]"),
        format!("{t} 1vAbCd-0001Xy-Q1 Completed"),
        format!("{t} 1vAbCe-0001Xz-R2 smarthost.example.net [203.0.113.9]:587 SMTP error from remote mail server after AUTH PLAIN ****: 535 5.7.8 Error: authentication failed"),
    ]
}

/// A log file written the way a mail server writes it: opened in append mode, whole lines.
pub struct LogWriter {
    pub path: PathBuf,
}

impl LogWriter {
    pub fn new(path: impl Into<PathBuf>) -> LogWriter {
        LogWriter { path: path.into() }
    }

    fn open(&self) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .unwrap_or_else(|e| panic!("opening {} for append: {e}", self.path.display()))
    }

    /// Append lines, each in one write() call.
    pub fn append<S: AsRef<str>>(&self, lines: &[S]) {
        let mut f = self.open();
        for l in lines {
            f.write_all(format!("{}\n", l.as_ref()).as_bytes())
                .expect("appending a line");
            f.flush().expect("flush");
        }
    }

    /// Append one line in two write() calls, the first ending just after byte `cut`, with a
    /// flush and a pause of `pause` between them, so that a tailer polling meanwhile sees half
    /// a line (as when a busy server's write is split).
    pub fn append_split(&self, line: &str, cut: usize, pause: Duration) {
        let mut f = self.open();
        let bytes = format!("{line}\n").into_bytes();
        f.write_all(&bytes[..cut]).expect("first half");
        f.flush().expect("flush");
        f.sync_data().ok();
        std::thread::sleep(pause);
        f.write_all(&bytes[cut..]).expect("second half");
        f.flush().expect("flush");
    }
}

// ---------------------------------------------------------------------------------------------
// Mail messages

/// A parsed mail message (headers unfolded, body decoded).
#[derive(Debug, Clone)]
pub struct Mail {
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub raw: String,
    pub source: PathBuf,
}

impl Mail {
    pub fn read(path: &Path) -> Mail {
        let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        Mail::parse(&bytes, path)
    }

    pub fn parse(bytes: &[u8], source: &Path) -> Mail {
        let raw = String::from_utf8_lossy(bytes).replace("\r\n", "\n");
        let (head, body) = raw
            .split_once("\n\n")
            .unwrap_or_else(|| panic!("{}: no blank line after the headers", source.display()));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            } else if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let cte = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Content-Transfer-Encoding"))
            .map(|(_, v)| v.to_ascii_lowercase())
            .unwrap_or_default();
        let body = match cte.as_str() {
            "quoted-printable" => String::from_utf8_lossy(&decode_qp(body.as_bytes())).into_owned(),
            "base64" => String::from_utf8_lossy(&decode_base64(body)).into_owned(),
            _ => body.to_string(),
        };
        let body = body.replace("\r\n", "\n");
        Mail {
            headers,
            body,
            raw: raw.clone(),
            source: source.to_path_buf(),
        }
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn subject(&self) -> &str {
        self.header("Subject")
            .unwrap_or_else(|| panic!("no Subject in {}:\n{}", self.source.display(), self.raw))
    }

    /// The value after `label` on the body line that starts with it (trimmed).
    pub fn body_field(&self, label: &str) -> Option<&str> {
        self.body
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .map(str::trim)
    }

    /// The `Attacking IP:` the body names.
    pub fn attacking_ip(&self) -> &str {
        self.body_field("Attacking IP:").unwrap_or_else(|| {
            panic!(
                "no `Attacking IP:` line in {}:\n{}",
                self.source.display(),
                self.body
            )
        })
    }

    /// `(count, account)` rows of the "Accounts tried" list.
    pub fn accounts(&self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut inside = false;
        for l in self.body.lines() {
            if l.starts_with("Accounts tried") {
                inside = true;
                continue;
            }
            if inside {
                let t = l.trim_start();
                let Some((n, name)) = t.split_once("  ") else {
                    break;
                };
                match n.parse::<u64>() {
                    Ok(n) if l.starts_with("  ") => out.push((n, name.to_string())),
                    _ => break,
                }
            }
        }
        out
    }
}

fn hex(b: Option<&u8>) -> Option<u8> {
    let c = *b?;
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Decode quoted-printable (soft line breaks and `=XX`).
pub fn decode_qp(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                i += 3;
                continue;
            }
            if b.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if let (Some(h), Some(l)) = (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Decode base64, skipping white space.
pub fn decode_base64(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let Some(v) = B64.iter().position(|&x| x == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Encode base64 (with padding).
pub fn encode_base64(b: &[u8]) -> String {
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= n {
                out.push(B64[(v >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `.eml` files in a folder (hidden temp files excluded), sorted by name.
pub fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    name.ends_with(".eml") && !name.starts_with('.')
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Plain files in a folder (a Maildir `new/`), sorted by name.
pub fn plain_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Wait until `dir` holds at least `n` `.eml` files; return them all, parsed, in name order.
pub fn wait_outbox(dir: &Path, n: usize) -> Vec<Mail> {
    let files = wait_for(&format!("{n} .eml file(s) in {}", dir.display()), || {
        let f = eml_files(dir);
        (f.len() >= n).then_some(f)
    });
    files.iter().map(|p| Mail::read(p)).collect()
}

// ---------------------------------------------------------------------------------------------
// SMTP sink (tests/support/smtp_sink.py)

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct SinkMail {
    pub n: u32,
    pub envelope: serde_json::Value,
    pub mail: Mail,
}

impl SinkMail {
    pub fn rcpt_tos(&self) -> Vec<String> {
        self.envelope["rcpt_tos"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A running `smtp_sink.py`; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Sink {
    child: Child,
    pub port: u16,
    pub maildir: PathBuf,
    stderr: PathBuf,
}

impl Sink {
    /// Start a sink storing into `dir/mail`, with extra arguments (`--tls`, `--auth-user` ...).
    pub fn start(dir: &Path, extra: &[&str]) -> Sink {
        let maildir = dir.join("mail");
        let port_file = dir.join("sink.port");
        let stderr = dir.join("sink.stderr");
        let child = Command::new("python3")
            .arg(support("smtp_sink.py"))
            .arg("--port-file")
            .arg(&port_file)
            .arg("--maildir")
            .arg(&maildir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("sink stderr file"))
            .spawn()
            .expect("starting python3 tests/support/smtp_sink.py");
        let mut sink = Sink {
            child,
            port: 0,
            maildir,
            stderr,
        };
        let port = wait_for("the SMTP sink's port file", || {
            if let Ok(Some(st)) = sink.child.try_wait() {
                panic!(
                    "smtp_sink.py exited early ({st}):\n{}",
                    read_lossy(&sink.stderr)
                );
            }
            fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.trim().parse::<u16>().ok())
        });
        sink.port = port;
        sink
    }

    /// Messages stored so far, in arrival order.
    pub fn mails(&self) -> Vec<SinkMail> {
        let mut out = Vec::new();
        for p in eml_files(&self.maildir) {
            let Some(n) = p
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let json = fs::read_to_string(self.maildir.join(format!("{n}.json")))
                .expect("the sink writes n.json before n.eml");
            out.push(SinkMail {
                n,
                envelope: serde_json::from_str(&json).expect("sink json"),
                mail: Mail::read(&p),
            });
        }
        out.sort_by_key(|m| m.n);
        out
    }

    /// Wait until at least `n` messages arrived; returns all of them.
    pub fn wait_mails(&self, n: usize) -> Vec<SinkMail> {
        wait_for(&format!("{n} message(s) at the SMTP sink"), || {
            let m = self.mails();
            (m.len() >= n).then_some(m)
        })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
        if std::thread::panicking() {
            eprintln!(
                "----- smtp_sink stderr ({}):\n{}",
                self.stderr.display(),
                read_lossy(&self.stderr)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Exim (tests/support/exim_ctl.py)

/// A private Exim daemon; `exim_ctl.py stop` on drop.
pub struct Exim {
    pub dir: PathBuf,
    pub port: u16,
}

impl Exim {
    /// Whether a real Exim can be started here; `Err(reason)` otherwise.
    pub fn available() -> Result<(), String> {
        if !Path::new("/usr/sbin/exim4").exists() {
            return Err("/usr/sbin/exim4 is not installed (run .ci/install-test-deps)".into());
        }
        if !is_root() {
            return Err("exim_ctl.py needs root (exim4 -oP)".into());
        }
        Ok(())
    }

    pub fn start(dir: &Path) -> Exim {
        let out = Command::new("python3")
            .arg(support("exim_ctl.py"))
            .arg("start")
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .expect("running exim_ctl.py start");
        // From here on the guard exists, so a failure below still stops whatever started.
        let mut exim = Exim {
            dir: dir.to_path_buf(),
            port: 0,
        };
        assert!(
            out.status.success(),
            "exim_ctl.py start failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        exim.port = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("exim_ctl.py start prints the port");
        exim
    }

    pub fn mainlog(&self) -> PathBuf {
        self.dir.join("log/mainlog")
    }

    /// `Maildir/<mailbox>/new/`.
    pub fn maildir_new(&self, mailbox: &str) -> PathBuf {
        self.dir.join("Maildir").join(mailbox).join("new")
    }
}

impl Drop for Exim {
    fn drop(&mut self) {
        let out = Command::new("python3")
            .arg(support("exim_ctl.py"))
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
        if let Ok(o) = &out {
            if !o.status.success() {
                eprintln!(
                    "exim_ctl.py stop failed ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
        if std::thread::panicking() {
            for f in ["log/mainlog", "log/paniclog", "log/daemon.stderr"] {
                eprintln!("----- exim {f}:\n{}", read_lossy(&self.dir.join(f)));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The agent

/// A running `authwatch`, stdout and stderr captured to files. On drop: SIGTERM and wait (then
/// SIGKILL); the captured output is printed when the test is failing.
pub struct Agent {
    child: Option<Child>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Agent {
    /// `authwatch ARGS` in folder `cwd`, output into `logdir/agent.{stdout,stderr}`.
    pub fn spawn(args: &[&str], cwd: &Path, logdir: &Path) -> Agent {
        let stdout = logdir.join("agent.stdout");
        let stderr = logdir.join("agent.stderr");
        let child = Command::new(bin())
            .args(args)
            .current_dir(cwd)
            .env_remove("RUST_LOG")
            // Without TZ the agent's system zone is /etc/localtime, the zone the Exim that
            // exim_ctl.py starts (with a bare environment) writes its stamps in.
            .env_remove("TZ")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("agent stdout file"))
            .stderr(File::create(&stderr).expect("agent stderr file"))
            .spawn()
            .expect("starting authwatch");
        Agent {
            child: Some(child),
            stdout,
            stderr,
        }
    }

    /// `authwatch run --config CFG --log-level debug`, in the config's folder.
    pub fn run(config: &Path) -> Agent {
        let dir = config.parent().expect("config in a folder");
        Agent::spawn(
            &[
                "run",
                "--config",
                config.to_str().expect("utf-8 path"),
                "--log-level",
                "debug",
            ],
            dir,
            dir,
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent running").id()
    }

    /// The agent's stderr so far, with ANSI colour codes removed.
    pub fn stderr_text(&self) -> String {
        strip_ansi(&read_lossy(&self.stderr))
    }

    /// Panic (with the output) if the agent has exited.
    pub fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                panic!("authwatch exited early with {st}");
            }
        }
    }

    /// Wait until the agent follows `log` from its end: append single failure lines from fresh
    /// documentation addresses (one line per address, far below any threshold) until the agent
    /// reports one of them as a hit in its debug log. Lines appended before the tailer opened
    /// the file are skipped under `start: end`, so a reported probe proves that later lines
    /// will be read.
    pub fn wait_following(&mut self, log: &LogWriter) {
        let start = Instant::now();
        let mut k = 0u32;
        loop {
            self.assert_running();
            k += 1;
            assert!(k < 250, "too many probes");
            let ip = format!("192.0.2.{k}");
            log.append(&[exim_fail(now_unix(), &ip, "probe")]);
            let needle = format!("ip={ip} ");
            let seen = Instant::now();
            while seen.elapsed() < Duration::from_millis(400) {
                if self.stderr_text().contains(&needle) {
                    return;
                }
                std::thread::sleep(POLL);
            }
            if start.elapsed() > DEADLINE {
                panic!("authwatch never reported a probe line appended to {} as a hit (expects a debug line with `{needle}`)", log.path.display());
            }
        }
    }

    /// SIGTERM and wait for the exit (panics if it does not exit within [`DEADLINE`]).
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("agent running");
        match terminate(&mut child, DEADLINE) {
            Some(st) => st,
            None => panic!("authwatch did not exit within {DEADLINE:?} of SIGTERM"),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(10));
        }
        if std::thread::panicking() {
            eprintln!(
                "----- authwatch stdout ({}):\n{}",
                self.stdout.display(),
                read_lossy(&self.stdout)
            );
            eprintln!(
                "----- authwatch stderr ({}):\n{}",
                self.stderr.display(),
                self.stderr_text()
            );
        }
    }
}

/// Run `authwatch ARGS` to completion in `cwd`; returns (exit code, stdout, stderr).
pub fn run_to_end(args: &[&str], cwd: &Path) -> (Option<i32>, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting authwatch");
    let status = wait_child(&mut child, DEADLINE);
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("authwatch output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Write `text` to `dir/name` and return the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).expect("creating a folder");
    }
    fs::write(&p, text).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    p
}

// ---------------------------------------------------------------------------------------------
// Helpers for the durability tests (tests/durability)

impl Agent {
    /// `kill -9`: SIGKILL and reap. The agent gets no chance to save state or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The exit status, if the agent has exited (without waiting).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

/// A loopback TCP port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}
