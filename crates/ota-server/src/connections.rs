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
use std::future::Future;
use std::sync::Arc;
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
    /// At shutdown, how long in-flight requests may take before their
    /// connections are closed (clients then resume with `Range`).
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(60),
            max_connections: 1024,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting at once and drains (see [`ConnectionLimits::drain_timeout`]).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut tasks = JoinSet::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // the semaphore is never closed
            },
        };
        let tcp = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
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
        // Small answers go out at once, as nginx's tcp_nodelay does.
        let _ = tcp.set_nodelay(true);
        let mut io = TimeoutStream::new(tcp);
        io.set_write_timeout(Some(limits.stall_timeout));
        let conn = builder.serve_connection(
            TokioIo::new(Box::pin(io)),
            TowerToHyperService::new(app.clone()),
        );
        let conn = graceful.watch(conn);
        tasks.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener); // new connections are refused from here on
    while tasks.try_join_next().is_some() {}
    if !tasks.is_empty() {
        tracing::info!(
            "stopping: {} connection(s) in flight, waiting up to {} s",
            tasks.len(),
            limits.drain_timeout.as_secs()
        );
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(
                "drain deadline passed: closing {} connection(s); their clients can resume",
                tasks.len()
            );
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}
