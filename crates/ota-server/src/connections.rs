//! Accepting and running HTTP/1.1 connections with the limits a public
//! server needs: a cap on concurrent connections, a deadline for each
//! request head (which also ends idle keep-alive connections), a stall
//! timeout on writes (a client that stops reading a download), and a drain
//! deadline at shutdown.
//!
//! The stall timeout on request bodies is enforced where bodies are read
//! (`upload`), since only the handler knows it is waiting for one; hyper
//! also reads while a response is being written (to notice a closed
//! connection), so a read timeout here would cut long downloads.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_io_timeout::TimeoutStream;

/// Connection limits and timeouts.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Time allowed for a complete request head, counted from when the
    /// connection is ready for one: bounds slow headers (slowloris) and
    /// idle keep-alive connections alike.
    pub header_timeout: Duration,
    /// A response write (or an upload body read) that moves no byte for
    /// this long ends the request.
    pub stall_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Connections one client address may hold at once (0: no limit);
    /// more are closed as they arrive. Loopback peers (a proxy on the same
    /// host) are exempt.
    pub max_per_ip: usize,
    /// At shutdown, how long in-flight requests may take before their
    /// connections are closed (clients then resume with `Range`).
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_per_ip: 256,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Connections held per client address.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in [`PerIp`]; released on drop.
struct IpSlot(Arc<PerIp>, IpAddr);

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot(self.clone(), ip))
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

/// Raises the soft limit on open files to the hard limit, and warns when
/// it is still below what `max_connections` needs.
pub(crate) fn raise_file_limit(max_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
        limit = getrlimit(Resource::Nofile);
    }
    let needed = max_connections as u64 + 256;
    if limit.current.is_some_and(|c| c < needed) {
        tracing::warn!(
            "the open-file limit ({:?}) is below what {max_connections} connections need \
             ({needed}); raise it (ulimit -n, LimitNOFILE=) or lower --max-connections",
            limit.current
        );
    }
}

/// Opens the listening socket with a backlog deep enough for bursts of new
/// connections (a fleet checking in on the minute), capped by the kernel's
/// `somaxconn`.
pub(crate) fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Pending connections the kernel may queue for accept.
const BACKLOG: u32 = 4096;

/// What every accept loop shares.
struct Shared {
    app: Router,
    limits: ConnectionLimits,
    permits: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
    builder: http1::Builder,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting at once and drains (see [`ConnectionLimits::drain_timeout`]).
/// One accept loop runs per worker thread on the same socket, so accepting
/// new connections (a fleet opens one per check-in) is not serialised on
/// one task.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let shared = Arc::new(Shared {
        app,
        limits,
        permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        per_ip: Arc::new(PerIp::default()),
        builder,
    });
    let listener = Arc::new(listener);
    let graceful = Arc::new(GracefulShutdown::new());
    let stop = tokio_util::sync::CancellationToken::new();
    let loops = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4));
    let mut acceptors = JoinSet::new();
    for _ in 0..loops {
        let (l, sh, g, st) = (
            listener.clone(),
            shared.clone(),
            graceful.clone(),
            stop.clone(),
        );
        acceptors.spawn(accept_loop(l, sh, g, st));
    }
    shutdown.await;
    stop.cancel();
    let mut sets = Vec::new();
    while let Some(done) = acceptors.join_next().await {
        if let Ok(set) = done {
            sets.push(set);
        }
    }
    drop(listener); // new connections are refused from here on
    let in_flight = |sets: &mut Vec<JoinSet<()>>| -> usize {
        sets.iter_mut()
            .map(|t| {
                while t.try_join_next().is_some() {}
                t.len()
            })
            .sum()
    };
    let running = in_flight(&mut sets);
    if running > 0 {
        tracing::info!(
            "stopping: {running} connection(s) in flight, waiting up to {} s",
            limits.drain_timeout.as_secs()
        );
    }
    // Every accept loop has ended, so this is the last reference.
    if let Some(graceful) = Arc::into_inner(graceful) {
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(limits.drain_timeout) => {
                tracing::warn!(
                    "drain deadline passed: closing {} connection(s); their clients can resume",
                    in_flight(&mut sets)
                );
            }
        }
    }
    for mut t in sets {
        t.abort_all();
        while t.join_next().await.is_some() {}
    }
}

/// Accepts connections until `stop`; returns the connections still running.
async fn accept_loop(
    listener: Arc<TcpListener>,
    shared: Arc<Shared>,
    graceful: Arc<GracefulShutdown>,
    stop: tokio_util::sync::CancellationToken,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let limits = shared.limits;
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = shared.permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // the semaphore is never closed
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors or a connection reset before
                    // accept: wait a little rather than spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        let ip_slot = if limits.max_per_ip == 0 || peer.ip().is_loopback() {
            None
        } else {
            match shared.per_ip.take(peer.ip(), limits.max_per_ip) {
                Some(slot) => Some(slot),
                None => {
                    tracing::debug!(
                        "{} holds {} connections: closing a new one",
                        peer.ip(),
                        limits.max_per_ip
                    );
                    continue; // dropping the stream closes it
                }
            }
        };
        // Small answers go out at once, as nginx's tcp_nodelay does.
        let _ = tcp.set_nodelay(true);
        let mut io = TimeoutStream::new(tcp);
        io.set_write_timeout(Some(limits.stall_timeout));
        let conn = shared.builder.serve_connection(
            TokioIo::new(Box::pin(io)),
            TowerToHyperService::new(shared.app.clone()),
        );
        let conn = graceful.watch(conn);
        tasks.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
            drop((permit, ip_slot));
        });
    }
    tasks
}
