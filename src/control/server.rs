//! The agent's side of `state_dir/control.sock`: a tokio Unix listener, `0600`, that accepts
//! only the agent's own uid and root (checked with the peer's credentials, `SO_PEERCRED`;
//! others are refused with a logged warning). Each connection carries one JSON request on one
//! line (at most [`MAX_REQUEST_BYTES`], read within [`READ_TIMEOUT`]) and gets one JSON reply.
//!
//! Changes go through [`super::apply`] on a copy of the shared [`Decisions`], are saved to
//! `decisions.json`, and only then replace the live copy the engine reads: what the agent does
//! and what the next start loads always agree (in fleet mode they are also handed to the
//! fleet, [`OnChange`]). `incidents` is asked of the engine's loop over a
//! channel ([`IncidentsQuery`]).

use super::{apply, Decisions, IncidentView, Reply, Request, MAX_REQUEST_BYTES, SOCKET};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// How long a client may take to send its request: a command sends it at once; a connection
/// that says nothing must not hold a slot.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at once (only root and the agent's user can
/// reach the socket, so this only guards against a runaway script).
pub const MAX_CLIENTS: usize = 8;

/// A request for the open incidents, answered by the agent's loop.
pub struct IncidentsQuery {
    pub reply: oneshot::Sender<Vec<IncidentView>>,
}

/// Called with each change applied (and saved), before it replaces the live decisions: fleet
/// mode shares silences and allows through it (`crate::fleet::shared`).
pub type OnChange = Arc<dyn Fn(&Request, &Decisions) + Send + Sync>;

/// Whether a peer may use the socket: the agent's own user, and root.
pub fn peer_allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == own_uid || peer_uid == 0
}

/// The running server; dropping it leaves the socket file, [`Server::stop`] removes it.
pub struct Server {
    task: tokio::task::JoinHandle<()>,
    path: PathBuf,
}

impl Server {
    /// Stop serving and remove the socket file.
    pub fn stop(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Everything a connection needs.
struct Shared {
    state_dir: PathBuf,
    decisions: Arc<Mutex<Decisions>>,
    /// One change at a time (each saves the file).
    writing: tokio::sync::Mutex<()>,
    queries: mpsc::Sender<IncidentsQuery>,
    own_uid: u32,
    tz: jiff::tz::TimeZone,
    on_change: Option<OnChange>,
}

/// Listen on `state_dir/control.sock` (a stale socket from a previous run is replaced: the
/// caller holds the state_dir lock, so no other agent uses it).
pub fn start(
    state_dir: &Path,
    decisions: Arc<Mutex<Decisions>>,
    queries: mpsc::Sender<IncidentsQuery>,
    tz: jiff::tz::TimeZone,
    on_change: Option<OnChange>,
) -> std::io::Result<Server> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let path = state_dir.join(SOCKET);
    match std::fs::symlink_metadata(&path) {
        Ok(_) => std::fs::remove_file(&path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let own_uid = std::fs::symlink_metadata(&path)?.uid();
    let shared = Arc::new(Shared {
        state_dir: state_dir.to_path_buf(),
        decisions,
        writing: tokio::sync::Mutex::new(()),
        queries,
        own_uid,
        tz,
        on_change,
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                warn!("control socket: too many connections at once; closing one");
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                serve(stream, &shared).await;
                drop(permit);
            });
        }
    });
    info!(socket = %path.display(), "control socket listening (silence, allow, ack, incidents)");
    Ok(Server { task, path })
}

async fn serve(stream: UnixStream, shared: &Shared) {
    let uid = match stream.peer_cred() {
        Ok(c) => c.uid(),
        Err(e) => {
            warn!(error = %e, "control socket: cannot read the peer's credentials; refused");
            return;
        }
    };
    let (read, mut write) = stream.into_split();
    // The request is read (bounded) before any reply, also from a peer that is refused:
    // replying first would close the socket under the client's write.
    let mut line = String::new();
    let mut limited = BufReader::new(read.take(MAX_REQUEST_BYTES as u64 + 1));
    let got = tokio::time::timeout(READ_TIMEOUT, limited.read_line(&mut line)).await;
    let reply = if !peer_allowed(uid, shared.own_uid) {
        warn!(
            peer_uid = uid,
            agent_uid = shared.own_uid,
            "control socket: refused a connection from another user (only root and the agent's user may)"
        );
        Reply::error("refused: only root and the agent's user may control authwatch")
    } else {
        match got {
            Err(_) => Reply::error(format!("no request within {}s", READ_TIMEOUT.as_secs())),
            Ok(Err(e)) => Reply::error(format!("cannot read the request: {e}")),
            Ok(Ok(_)) if line.len() > MAX_REQUEST_BYTES => {
                Reply::error(format!("request longer than {MAX_REQUEST_BYTES} bytes"))
            }
            Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim_end()) {
                Ok(req) => handle(req, uid, shared).await,
                Err(e) => Reply::error(format!("not a request: {e}")),
            },
        }
    };
    let _ = write_reply(&mut write, &reply).await;
    // Read what is left of an over-long request (bounded, briefly) before closing: closing a
    // socket with unread data resets the connection, and the client would lose the reply.
    let mut rest = limited.into_inner().into_inner().take(DRAIN_BYTES);
    let _ = tokio::time::timeout(
        DRAIN_TIMEOUT,
        tokio::io::copy(&mut rest, &mut tokio::io::sink()),
    )
    .await;
}

/// Bytes of an over-long request read and dropped after the reply, at most.
const DRAIN_BYTES: u64 = 64 * 1024;
/// How long that may take.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

async fn write_reply(
    w: &mut tokio::net::unix::OwnedWriteHalf,
    reply: &Reply,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    w.write_all(&bytes).await?;
    w.shutdown().await
}

async fn handle(req: Request, uid: u32, shared: &Shared) -> Reply {
    if req == Request::Incidents {
        let (tx, rx) = oneshot::channel();
        if shared
            .queries
            .send(IncidentsQuery { reply: tx })
            .await
            .is_err()
        {
            return Reply::error("the agent is stopping");
        }
        return match rx.await {
            Ok(list) => Reply {
                ok: true,
                message: format!("{} open incidents", list.len()),
                incidents: list,
            },
            Err(_) => Reply::error("the agent is stopping"),
        };
    }
    let _one = shared.writing.lock().await;
    let now = jiff::Timestamp::now();
    let mut copy = shared
        .decisions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    copy.prune(now);
    let message = match apply(&mut copy, &req, Some(uid), now, &shared.tz) {
        Ok(m) => m,
        Err(e) => return Reply::error(e),
    };
    let dir = shared.state_dir.clone();
    let saved = copy.clone();
    let result = tokio::task::spawn_blocking(move || saved.save(&dir)).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Reply::error(format!("not applied: {e}")),
        Err(e) => return Reply::error(format!("not applied: {e}")),
    }
    if let Some(f) = &shared.on_change {
        f(&req, &copy);
    }
    *shared.decisions.lock().unwrap_or_else(|e| e.into_inner()) = copy;
    info!(uid, change = %message, "control: decision applied");
    Reply::ok(format!("{message} (applied now)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_agents_user_and_root_may_connect() {
        assert!(peer_allowed(0, 0));
        assert!(peer_allowed(0, 105));
        assert!(peer_allowed(105, 105));
        assert!(!peer_allowed(65534, 105));
        assert!(!peer_allowed(105, 0));
    }

    async fn ask(path: &Path, bytes: &[u8]) -> Reply {
        let mut s = UnixStream::connect(path).await.unwrap();
        s.write_all(bytes).await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        serde_json::from_str(&out).unwrap()
    }

    #[tokio::test]
    async fn requests_are_bounded_checked_and_applied_live_and_on_disk() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let live = Arc::new(Mutex::new(Decisions::default()));
        let srv = start(dir.path(), live.clone(), tx, jiff::tz::TimeZone::UTC, None).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(srv.path()), 0o600);

        let mut long = vec![b'x'; MAX_REQUEST_BYTES + 10];
        long.push(b'\n');
        let r = ask(srv.path(), &long).await;
        assert!(
            !r.ok && r.message.contains("longer than 4096 bytes"),
            "{r:?}"
        );
        let r = ask(srv.path(), b"{\"cmd\": \"rm -rf\"}\n").await;
        assert!(!r.ok && r.message.contains("not a request"), "{r:?}");
        let r = ask(
            srv.path(),
            b"{\"cmd\": \"allow\", \"target\": \"10.0.0.1/8\"}\n",
        )
        .await;
        assert!(!r.ok && r.message.contains("host bits are set"), "{r:?}");

        let r = ask(
            srv.path(),
            b"{\"cmd\": \"allow\", \"target\": \"192.0.2.0/24\", \"by\": \"ops;rm\"}\n",
        )
        .await;
        assert!(r.ok && r.message.contains("(applied now)"), "{r:?}");
        let ip: std::net::IpAddr = "192.0.2.9".parse().unwrap();
        let now = jiff::Timestamp::now();
        let by = live.lock().unwrap().allows(&ip, now).unwrap().by.clone();
        assert!(by.starts_with("opsrm (uid "), "{by}");
        let file = dir.path().join(super::super::decisions::FILE);
        assert_eq!(mode(&file), 0o600);
        assert!(Decisions::load(dir.path(), now)
            .unwrap()
            .allows(&ip, now)
            .is_some());
        let sock = srv.path().to_path_buf();
        srv.stop();
        assert!(!sock.exists());
    }
}
