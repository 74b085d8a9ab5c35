//! The `/metrics` endpoint: a small HTTP/1.1 responder on a std `TcpListener`, loopback only
//! ([`validate_listen`]), one thread per connection (at most `MAX_CLIENTS` at once, so a client
//! that sends nothing blocks no other scrape), a capped request head, short timeouts, and one
//! answer per connection.

use super::Metrics;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest request head read.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Per-read and per-write timeout of a connection.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a client may take to send its request head.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once, each by a thread of its own, so that a client that connects
/// and sends nothing holds back no other scrape (it is dropped after [`IO_TIMEOUT`]). Beyond
/// this, new connections are closed at once: a scraper needs one, and threads stay bounded.
const MAX_CLIENTS: usize = 16;

/// The listen address is read and checked by the config.
pub use crate::config::{parse_listen, validate_listen};

/// A running metrics endpoint. Dropping it leaves the endpoint running; call
/// [`shutdown`](Self::shutdown) to stop it.
#[derive(Debug)]
#[must_use = "the endpoint runs until shutdown() is called"]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting and wait for the thread (at most one request's timeouts).
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Listen on `addr` (loopback only; port 0 picks a free port) and answer `GET /metrics` with
/// `metrics.render()` from a thread. Binding happens before this returns, so a port in use is
/// reported here.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> io::Result<MetricsServer> {
    if !addr.ip().to_canonical().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr}: the metrics endpoint listens on loopback addresses only"),
        ));
    }
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || accept_loop(listener, metrics, stop))?
    };
    tracing::info!(addr = %local, "metrics endpoint listening");
    Ok(MetricsServer {
        addr: local,
        stop,
        thread: Some(thread),
    })
}

fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>, stop: Arc<AtomicBool>) {
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    tracing::debug!(%peer, "metrics endpoint: too many clients; connection closed");
                    continue;
                }
                let (metrics, mine) = (Arc::clone(&metrics), Arc::clone(&active));
                let spawned = std::thread::Builder::new()
                    .name("metrics-client".into())
                    .spawn(move || {
                        if let Err(e) = handle(stream, &metrics) {
                            tracing::debug!(%peer, "metrics request: {e}");
                        }
                        mine.fetch_sub(1, Ordering::SeqCst);
                    });
                if let Err(e) = spawned {
                    tracing::warn!("metrics endpoint: cannot start a thread: {e}");
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                tracing::warn!("metrics endpoint: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Read one request head (up to the blank line), answer, close.
fn handle(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let started = Instant::now();
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() >= MAX_REQUEST_HEAD || started.elapsed() > REQUEST_DEADLINE {
            break false;
        }
        match stream.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    let (status, body, head_only) = if !complete {
        if head.len() >= MAX_REQUEST_HEAD {
            ("431 Request Header Fields Too Large", String::new(), false)
        } else if head.is_empty() {
            return Ok(());
        } else {
            ("400 Bad Request", String::new(), false)
        }
    } else {
        let text = String::from_utf8_lossy(&head);
        let line = text.lines().next().unwrap_or("");
        let mut parts = line.split(' ');
        let (method, target, version) = (parts.next(), parts.next(), parts.next());
        let path = target.map(|t| t.split('?').next().unwrap_or(""));
        match (method, path, version) {
            (Some(m), Some(p), Some(v)) if v.starts_with("HTTP/1.") && parts.next().is_none() => {
                match (m, p) {
                    ("GET" | "HEAD", "/metrics") => ("200 OK", metrics.render(), m == "HEAD"),
                    (_, "/metrics") => ("405 Method Not Allowed", String::new(), false),
                    _ => ("404 Not Found", "Not found; try /metrics\n".into(), false),
                }
            }
            _ => ("400 Bad Request", String::new(), false),
        }
    };
    let content_type = if status.starts_with("200") {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("\r\n");
    if !head_only {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes())?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}
