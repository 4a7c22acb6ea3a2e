//! The one way SyncRoot's HTTP listeners serve: the API, the workers' health probes and the
//! CRM sandboxes all go through [`serve`], so each is bounded the same way under abuse.
//!
//! What it enforces, per listener ([`Limits`]):
//! - **header-read timeout**: a connection must deliver a complete request head within it, from
//!   the moment the server waits for one (also between requests on a kept-alive connection);
//!   a client trickling one byte every few seconds (slowloris) is disconnected;
//! - **request timeout**: a request (reading its body and producing the response head) that
//!   takes longer is answered `503` and its handler dropped;
//! - **idle timeout**: a connection on which nothing was read or written for this long is closed;
//! - **connection cap**: at most this many open connections; beyond it the listener stops
//!   accepting (new clients wait in the kernel's backlog) until one closes;
//! - **in-flight cap**: at most this many requests handled at once across the listener; beyond
//!   it a request is answered `503` with `Retry-After: 1` at once instead of queueing.
//!
//! HTTP/1.1 only: every client of these listeners (applications, CRMs' webhooks, probes) speaks
//! it, and one protocol keeps the timeouts simple to reason about.
//!
//! Not here: routing, authentication, body-size limits (the routers' own layers).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod io;

/// Bounds of one listener. [`Limits::default`] suits a service behind a load balancer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest wait for a complete request head (including between kept-alive requests).
    pub header_read_timeout: Duration,
    /// Longest a request may take until its response head is ready.
    pub request_timeout: Duration,
    /// A connection with no bytes read or written for this long is closed. Longer than
    /// `request_timeout`, so a request still being handled is answered before it applies.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most requests being handled at once.
    pub max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_in_flight: 256,
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` is cancelled; then stops
/// accepting, lets requests in flight finish (each connection closes after its current
/// response) and returns once every connection has closed. The caller bounds that wait (its
/// grace period). `name` goes into log lines.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let app = bounded(app, &limits);
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (app, stop) = (app.clone(), shutdown.clone());
        tracker.spawn(async move {
            connection(stream, peer, app, limits, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// One connection: HTTP/1.1 with the header-read timeout, closed when idle, and asked to
/// finish its current response and close at shutdown.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let epoch = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(io::Watched::new(stream, epoch, last.clone()));
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let idle_since = epoch + Duration::from_millis(last.load(Ordering::Relaxed));
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(idle_since + limits.idle_timeout) => {
                let idle_since = epoch + Duration::from_millis(last.load(Ordering::Relaxed));
                if idle_since + limits.idle_timeout <= Instant::now() {
                    tracing::debug!(%peer, "closing an idle connection");
                    return;
                }
            }
        }
    }
}

/// The router with the request timeout and the in-flight cap around it.
fn bounded(app: Router, limits: &Limits) -> Router {
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    let timeout = limits.request_timeout;
    app.layer(axum::middleware::from_fn(
        move |req: Request<Body>, next: axum::middleware::Next| {
            let in_flight = in_flight.clone();
            async move {
                let Ok(_permit) = in_flight.try_acquire_owned() else {
                    return Ok::<_, Infallible>(unavailable("too many requests in flight"));
                };
                match tokio::time::timeout(timeout, next.run(req)).await {
                    Ok(resp) => Ok(resp),
                    Err(_) => Ok(unavailable("the request took too long")),
                }
            }
        },
    ))
}

fn unavailable(why: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::from(why));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = resp.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Serves a router whose `/slow` answers after `slow`, within `limits`.
    async fn start(limits: Limits, slow: Duration) -> (SocketAddr, CancellationToken) {
        let app = Router::new().route("/fast", get(|| async { "ok" })).route(
            "/slow",
            get(move || async move {
                tokio::time::sleep(slow).await;
                "late"
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve("test", listener, app, limits, stop.clone()));
        (addr, stop)
    }

    /// One request on a new connection; the status line's code.
    async fn status(addr: SocketAddr, path: &str) -> u16 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out);
        text.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn a_request_over_the_in_flight_cap_is_answered_503_at_once() {
        let limits = Limits {
            max_in_flight: 1,
            ..Limits::default()
        };
        let (addr, stop) = start(limits, Duration::from_secs(2)).await;
        let slow = tokio::spawn(status(addr, "/slow"));
        // Let the slow request take the one slot.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(status(addr, "/fast").await, 503);
        assert_eq!(slow.await.unwrap(), 200);
        assert_eq!(status(addr, "/fast").await, 200);
        stop.cancel();
    }

    #[tokio::test]
    async fn a_request_over_the_request_timeout_is_answered_503() {
        let limits = Limits {
            request_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let (addr, stop) = start(limits, Duration::from_secs(30)).await;
        assert_eq!(status(addr, "/slow").await, 503);
        assert_eq!(status(addr, "/fast").await, 200);
        stop.cancel();
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed() {
        let limits = Limits {
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(500),
            ..Limits::default()
        };
        let (addr, stop) = start(limits, Duration::ZERO).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
        stop.cancel();
    }
}
