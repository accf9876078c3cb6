//! The HTTP server's accept loop (instead of `axum::serve`): every connection gets a
//! bounded time to send its request headers ([`HEADER_TIMEOUT`]), idle keep-alive
//! connections are closed, and at most [`MAX_CONNECTIONS`] are open at once, so clients
//! that open connections and never finish a request cannot use up the process's file
//! descriptors or keep `/healthz` from answering.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};

/// How long a client may take to send a request's headers (also the longest a kept-alive
/// connection waits idle for its next request).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections at most; more are closed at once (the unit sets LimitNOFILE above it).
pub const MAX_CONNECTIONS: usize = 4096;
/// How long a stop waits for requests in progress.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `stop` is notified; requests in progress then finish.
pub async fn serve(listener: TcpListener, app: Router, stop: Arc<Notify>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (closing, closed) = watch::channel(false);
    let mut refused_logged = false;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or the like: wait a little, as axum does.
                    tracing::warn!("accepting an HTTP connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            _ = stop.notified() => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            if !refused_logged {
                tracing::warn!(
                    "{MAX_CONNECTIONS} HTTP connections are open; new ones are closed until some end"
                );
                refused_logged = true;
            }
            drop(stream);
            continue;
        };
        refused_logged = false;
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut closed = closed.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!("HTTP connection ended: {e}");
                    }
                }
                _ = closed.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, conn).await;
                }
            }
            drop(slot);
        });
    }
    let _ = closing.send(true);
    // Requests in progress finish (each connection task holds a slot until it ends).
    let _ = tokio::time::timeout(DRAIN, slots.acquire_many(MAX_CONNECTIONS as u32)).await;
}
