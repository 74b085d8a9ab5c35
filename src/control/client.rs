//! The commands' side of the control socket: send one [`Request`] to the running agent and
//! read its [`Reply`] (blocking, with a timeout). When no agent runs (no socket, or nobody
//! listening on it) a change is recorded in `state_dir/decisions.json` for the next start,
//! under the state_dir lock: if the lock is held, an agent runs and the socket must be used,
//! so that is an error rather than a write behind the agent's back.

use super::{apply, Decisions, Reply, Request, MAX_REQUEST_BYTES, SOCKET};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long the client waits for the agent's reply (the agent answers at once; `incidents`
/// waits for a batch of lines in progress).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// How a request ended.
#[derive(Debug)]
pub enum Outcome {
    /// The running agent answered.
    Live(Reply),
    /// No agent runs; the change was written to `decisions.json` (the message says what).
    Recorded(String),
}

/// Who runs the command, for the record (`SUDO_USER`, else `USER`).
pub fn user_name() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_default()
}

/// Send `req` to the agent of `state_dir`, or record it when none runs.
pub fn send(state_dir: &Path, req: &Request, tz: &jiff::tz::TimeZone) -> Result<Outcome, String> {
    let path = state_dir.join(SOCKET);
    match UnixStream::connect(&path) {
        Ok(s) => ask(s, req)
            .map(Outcome::Live)
            .map_err(|e| format!("{}: the agent did not answer: {e}", path.display())),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            offline(state_dir, req, tz)
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(format!(
            "{}: cannot connect: {e} (only root and the user the agent runs as may control it)",
            path.display()
        )),
        Err(e) => Err(format!("{}: cannot connect: {e}", path.display())),
    }
}

fn ask(mut s: UnixStream, req: &Request) -> std::io::Result<Reply> {
    s.set_read_timeout(Some(REPLY_TIMEOUT))?;
    s.set_write_timeout(Some(REPLY_TIMEOUT))?;
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    if line.len() > MAX_REQUEST_BYTES {
        return Err(std::io::Error::other(format!(
            "the request is longer than {MAX_REQUEST_BYTES} bytes (a shorter --reason?)"
        )));
    }
    if let Err(e) = s.write_all(&line) {
        // The agent may have answered (a refusal) and closed already: read what it said.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e);
        }
    }
    let mut reply = String::new();
    // A reply with every incident is bounded by the agent's max_open_incidents; 64 MB is far
    // above that and still stops a runaway peer.
    BufReader::new(s.take(64 << 20)).read_line(&mut reply)?;
    if reply.is_empty() {
        return Err(std::io::Error::other(
            "the connection closed without a reply",
        ));
    }
    serde_json::from_str(&reply).map_err(std::io::Error::other)
}

/// No agent: take the state_dir lock (an agent holding it means its socket must be used),
/// apply the change to `decisions.json` and save it.
fn offline(state_dir: &Path, req: &Request, tz: &jiff::tz::TimeZone) -> Result<Outcome, String> {
    if *req == Request::Incidents {
        return Err(format!(
            "no authwatch agent is running on {} (no {SOCKET}); incidents are known only to a running agent (`authwatch status` shows the last ones it reported)",
            state_dir.display()
        ));
    }
    crate::state::create_private_dir(state_dir)
        .map_err(|e| format!("state_dir {}: {e}", state_dir.display()))?;
    let _lock = crate::state::lock_state_dir(state_dir).map_err(|e| {
        format!(
            "{e}; but its control socket {} does not answer: is it starting or stopping? Try again",
            state_dir.join(SOCKET).display()
        )
    })?;
    give_to_dir_owner(&state_dir.join(crate::state::LOCK_FILE), state_dir);
    let now = jiff::Timestamp::now();
    let mut d = Decisions::load(state_dir, now).map_err(|e| e.to_string())?;
    let message = apply(&mut d, req, None, now, tz)?;
    d.save(state_dir).map_err(|e| e.to_string())?;
    Ok(Outcome::Recorded(format!(
        "{message}: recorded; applied at next start"
    )))
}

/// A file root created in the agent's folder (the lock) is given to the folder's owner, so the
/// agent (running as its own user) can still open it.
fn give_to_dir_owner(path: &Path, dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(d), Ok(f)) = (std::fs::metadata(dir), std::fs::symlink_metadata(path)) {
        if (d.uid(), d.gid()) != (f.uid(), f.gid()) && !f.file_type().is_symlink() {
            let _ = std::os::unix::fs::lchown(path, Some(d.uid()), Some(d.gid()));
        }
    }
}
