//! HTTP endpoints: `/metrics` (or `--web.telemetry-path`), `/healthz`,
//! `/readyz`, the status page at `/` and `/api/v1/status`. GET and HEAD only.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::encoder::Format;
use crate::registry::Registry;
use crate::web_config::{WebConfig, WebConfigWatcher};

/// How long a client may take to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub telemetry_path: String,
    /// How long a scrape waits for a monitor's first collection when the
    /// scraper sends no `X-Prometheus-Scrape-Timeout-Seconds`.
    pub first_scrape_wait: Duration,
}

/// What a scrape may spend waiting for a monitor's first collection: the
/// scraper's own timeout minus a margin for encoding and the network, else
/// the configured default.
pub fn scrape_budget(header: Option<&str>, default: Duration) -> Duration {
    const MARGIN: Duration = Duration::from_millis(500);
    match header.and_then(|v| v.trim().parse::<f64>().ok()) {
        Some(secs) if secs.is_finite() && secs > 0.0 => {
            Duration::from_secs_f64(secs.min(3600.0)).saturating_sub(MARGIN)
        }
        _ => default,
    }
}

struct AppState {
    registry: Arc<Registry>,
    cfg: ServerConfig,
}

/// How long a client may take to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn handle(
    req: Request<Incoming>,
    app: Arc<AppState>,
    watcher: Arc<WebConfigWatcher>,
) -> Result<Resp, Infallible> {
    // Per request, so that a changed password also applies to kept-alive connections.
    let web = watcher.current();
    let auth_header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut resp = if web.requires_auth() && !authorized(auth_header, &web).await {
        let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"homelab-monitor\""),
        );
        r
    } else {
        route(req, &app).await
    };
    for (k, v) in &web.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    Ok(resp)
}

/// bcrypt is slow on purpose: check off the async threads.
async fn authorized(header: Option<String>, web: &Arc<WebConfig>) -> bool {
    let web = web.clone();
    tokio::task::spawn_blocking(move || web.authorize(header.as_deref()))
        .await
        .unwrap_or(false)
}

async fn route(req: Request<Incoming>, app: &AppState) -> Resp {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are allowed\n",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = req.uri().path();
    let resp = if path == app.cfg.telemetry_path {
        let accept = req
            .headers()
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        let format = Format::negotiate(accept);
        let budget = scrape_budget(
            req.headers()
                .get("x-prometheus-scrape-timeout-seconds")
                .and_then(|v| v.to_str().ok()),
            app.cfg.first_scrape_wait,
        );
        match app.registry.scrape(format, budget).await {
            Ok(body) => {
                let mut r = text(StatusCode::OK, body);
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(format.content_type()),
                );
                r.headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
            Err(e) => {
                tracing::error!(error = %e, "encoding metrics failed");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "encoding metrics failed\n",
                )
            }
        }
    } else {
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                if app.registry.is_ready() {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: the first collection is still running\n",
                    )
                }
            }
            "/" => typed(
                text(
                    StatusCode::OK,
                    crate::status_page::html(&app.registry, &app.cfg.telemetry_path).await,
                ),
                "text/html; charset=utf-8",
            ),
            "/api/v1/status" => typed(
                text(
                    StatusCode::OK,
                    crate::status_page::json(&app.registry).await,
                ),
                "application/json",
            ),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    };
    resp
}

fn typed(mut r: Resp, content_type: &'static str) -> Resp {
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Serve one connection (plain or TLS) until it closes or the shutdown ends it.
async fn drive<I>(
    io: I,
    peer: std::net::SocketAddr,
    app: Arc<AppState>,
    web: Arc<WebConfigWatcher>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| handle(req, app.clone(), web.clone()));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}

/// Serve until `shutdown` resolves, then let in-flight requests finish
/// (up to [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    cfg: ServerConfig,
    web_config: Arc<WebConfigWatcher>,
    shutdown: impl Future<Output = ()>,
) {
    let app = Arc::new(AppState { registry, cfg });
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let tls = web_config.current().tls.clone();
                let web = web_config.clone();
                let app = app.clone();
                let watcher = graceful.watcher();
                match tls {
                    None => {
                        tokio::spawn(drive(stream, peer, app, web, watcher));
                    }
                    Some(tls) => {
                        tokio::spawn(async move {
                            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls_stream)) => drive(tls_stream, peer, app, web, watcher).await,
                                Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("grace period over; closing remaining connections"),
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("received SIGINT"),
        _ = term => tracing::info!("received SIGTERM"),
    }
}
