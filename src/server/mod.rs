//! HTTP endpoints: `/metrics` (or `--web.telemetry-path`), `/healthz`,
//! `/readyz`, the status page at `/`, `/api/v1/status` and `/probe` (when
//! certificate probe modules are configured; see [`probe`]). GET and HEAD only.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_ENCODING,
    CONTENT_TYPE, VARY, WWW_AUTHENTICATE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::core::compress::Encoding;
use crate::core::encoder::Format;
use crate::core::registry::{Registry, ScrapeBody};
use crate::core::snapshot::{MetricDef, SnapshotBuilder};
use crate::server::body::Chunks;
use crate::server::web_config::{WebConfig, WebConfigWatcher};

pub mod body;
#[cfg(test)]
mod encoding_tests;
mod guard;
pub mod probe;
pub mod status_page;
#[cfg(test)]
mod stream_tests;
pub mod web_config;
use guard::{ConnState, Conns, Guarded};

/// How long a client may take to send its request headers (also the idle
/// time allowed between requests on a kept-alive connection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A response write that makes no progress for this long closes the connection.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A response must be handed to the kernel within this long.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// After this many requests on one connection the response says
/// `Connection: close` (bounds pipelining).
pub const MAX_REQUESTS_PER_CONNECTION: usize = 100;
/// The largest request head (request line and headers) accepted, as documented.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Default of `--web.max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 256;
/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub telemetry_path: String,
    /// How long a scrape waits for a monitor's first collection when the
    /// scraper sends no `X-Prometheus-Scrape-Timeout-Seconds`.
    pub first_scrape_wait: Duration,
    /// Most connections open at once (`--web.max-connections`).
    pub max_connections: usize,
    /// `/probe` (certificate_expiry `modules:`/`probe:`); `None`: 404.
    pub probe: Option<Arc<crate::monitors::certificates::modules::ProbeService>>,
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
    conns: Arc<Conns>,
    web: Arc<WebConfigWatcher>,
    probe: Option<probe::ProbeHandler>,
}

const CONNECTIONS_OPEN: MetricDef = MetricDef::gauge(
    "homelab_monitor_http_connections_open",
    "Client connections open on the exporter's HTTP port.",
);
const CONNECTIONS_MAX: MetricDef = MetricDef::gauge(
    "homelab_monitor_http_connections_max",
    "The limit on open client connections (--web.max-connections).",
);
const CONNECTIONS_EVICTED: MetricDef = MetricDef::counter(
    "homelab_monitor_http_connections_evicted",
    "Connections closed by the connection limit to make room (the least active one: slowloris, slow reader or idle).",
);
const CONNECTIONS_WAITS: MetricDef = MetricDef::counter(
    "homelab_monitor_http_connections_limit_waits",
    "Times a new connection waited in the backlog because every open connection was in a request.",
);
const WEB_CONFIG_RELOAD_OK: MetricDef = MetricDef::gauge(
    "homelab_monitor_web_config_last_reload_successful",
    "0 if the last change of --web.config.file was not applied (broken, unreadable, or it would turn TLS or authentication off).",
);

/// How long a client may take to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Resp = Response<Chunks>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Chunks::from(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A metrics exposition (`/metrics`, `/probe`) as the answer: its content
/// type and content coding (`Vary: Accept-Encoding`), never cached; a failed
/// encoding is a 500 and a log line.
fn exposition(body: Result<ScrapeBody, std::fmt::Error>, format: Format) -> Resp {
    match body {
        Ok(body) => {
            let mut r = text(StatusCode::OK, Bytes::new());
            *r.body_mut() = Chunks::streamed(body.streamed, body.parts);
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r.headers_mut()
                .insert(VARY, HeaderValue::from_static("Accept-Encoding"));
            if let Some(coding) = body.encoding.header() {
                r.headers_mut()
                    .insert(CONTENT_ENCODING, HeaderValue::from_static(coding));
            }
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
}

/// The content coding a request's `Accept-Encoding` asks for.
fn accept_encoding<B>(req: &Request<B>) -> Encoding {
    Encoding::negotiate(
        req.headers()
            .get(ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Size of a request head as sent (request line, headers, blank line).
fn head_size<B>(req: &Request<B>) -> usize {
    let line = req.method().as_str().len()
        + 1
        + req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().len())
            .unwrap_or(1)
        + " HTTP/1.1\r\n".len();
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + 2 + v.len() + 2)
        .sum();
    line + headers + 2
}

async fn handle(req: Request<Incoming>, app: Arc<AppState>) -> Result<Resp, Infallible> {
    if head_size(&req) > MAX_HEADER_BYTES {
        return Ok(text(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request headers larger than 64 KiB\n",
        ));
    }
    // Per request, so that a changed password also applies to kept-alive connections.
    let web = app.web.current();
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
        let format = negotiate(accept);
        let budget = scrape_budget(
            req.headers()
                .get("x-prometheus-scrape-timeout-seconds")
                .and_then(|v| v.to_str().ok()),
            app.cfg.first_scrape_wait,
        );
        let own = server_metrics(&app.conns, &app.web);
        let encoding = accept_encoding(&req);
        exposition(
            app.registry
                .scrape_encoded(format, budget, Some(own), encoding)
                .await,
            format,
        )
    } else {
        match path {
            "/probe" => match &app.probe {
                Some(p) => {
                    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
                    let format = negotiate(header("accept"));
                    p.handle(
                        req.uri().query(),
                        header("x-prometheus-scrape-timeout-seconds"),
                        format,
                        accept_encoding(&req),
                    )
                    .await
                }
                None => text(
                    StatusCode::NOT_FOUND,
                    "not found: /probe is off; declare custom_monitors.certificate_expiry.modules (or probe:) to turn it on\n",
                ),
            },
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
                    crate::server::status_page::html(&app.registry, &app.cfg.telemetry_path).await,
                ),
                "text/html; charset=utf-8",
            ),
            "/api/v1/status" => typed(
                text(
                    StatusCode::OK,
                    crate::server::status_page::json(&app.registry).await,
                ),
                "application/json",
            ),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    };
    resp
}

/// The exposition format for an `Accept` header: OpenMetrics when it is asked
/// for with a non-zero quality (`;q=0` means "not acceptable", RFC 9110).
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Classic;
    };
    let wanted = accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        if !media.eq_ignore_ascii_case("application/openmetrics-text") {
            return false;
        }
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map(|(_, v)| v.trim().parse::<f64>().unwrap_or(0.0))
            .unwrap_or(1.0);
        q > 0.0
    });
    if wanted {
        Format::OpenMetrics
    } else {
        Format::Classic
    }
}

/// The server's own metrics, added to the registry's exposition.
fn server_metrics(conns: &Conns, web: &WebConfigWatcher) -> crate::core::snapshot::Snapshot {
    let mut b = SnapshotBuilder::new();
    b.gauge(&CONNECTIONS_OPEN, &[], conns.open() as f64);
    b.gauge(&CONNECTIONS_MAX, &[], conns.max() as f64);
    b.gauge(&CONNECTIONS_EVICTED, &[], conns.evicted() as f64);
    b.gauge(&CONNECTIONS_WAITS, &[], conns.waits() as f64);
    b.gauge(
        &WEB_CONFIG_RELOAD_OK,
        &[],
        if web.last_reload_ok() { 1.0 } else { 0.0 },
    );
    b.build()
}

fn typed(mut r: Resp, content_type: &'static str) -> Resp {
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Serve one connection (plain or TLS) until it closes, times out, is
/// evicted by the connection limit, or the shutdown ends it.
async fn drive<I>(
    io: I,
    peer: std::net::SocketAddr,
    app: Arc<AppState>,
    conn_state: Arc<ConnState>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let st = conn_state.clone();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let svc = service_fn(move |req| {
        let app = app.clone();
        let st = st.clone();
        let n = served.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        async move {
            let _busy = st.busy();
            let mut resp = handle(req, app).await?;
            if n >= MAX_REQUESTS_PER_CONNECTION {
                resp.headers_mut()
                    .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // The exact 64 KiB limit is checked per request (431); this only bounds the buffer.
        .max_buf_size(2 * MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(io), svc);
    tokio::select! {
        r = watcher.watch(conn) => {
            if let Err(e) = r {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        }
        () = conn_state.evicted() => {
            tracing::debug!(peer = %peer, "connection closed to make room (connection limit)");
        }
    }
}

/// The connection limit that fits the descriptor limit: the soft limit is
/// first raised to the hard one, then at most half the descriptors go to
/// client connections (the rest stay for monitors, health checks and files).
pub fn effective_max_connections(configured: usize) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let lim = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (lim.current, lim.maximum) {
        if cur < max {
            let raised = rustix::process::Rlimit {
                current: Some(max),
                maximum: Some(max),
            };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                tracing::debug!(error = %e, "cannot raise the open-file limit");
            }
        }
    }
    let configured = configured.max(1);
    let Some(soft) = getrlimit(Resource::Nofile).current else {
        return configured;
    };
    let room = usize::try_from(soft / 2).unwrap_or(usize::MAX).max(1);
    if room < configured {
        tracing::warn!(
            configured,
            open_file_limit = soft,
            "--web.max-connections lowered to {room} (half the open-file limit); raise `ulimit -n` to allow more"
        );
        room
    } else {
        configured
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
    let conns = Arc::new(Conns::new(effective_max_connections(cfg.max_connections)));
    let reloader = tokio::spawn(web_config.clone().run());
    let probe = cfg
        .probe
        .clone()
        .map(|svc| probe::ProbeHandler::new(svc, registry.clock().clone()));
    let app = Arc::new(AppState {
        probe,
        registry,
        cfg,
        conns: conns.clone(),
        web: web_config.clone(),
    });
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    'serve: loop {
        // Room first: at the limit, the least active connection is closed and
        // new ones wait in the kernel's backlog (no descriptor) meanwhile.
        loop {
            let freed = conns.freed();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if conns.make_room() {
                break;
            }
            tokio::select! {
                () = freed => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = &mut shutdown => break 'serve,
            }
        }
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
                let conn_state = conns.admit();
                let stream = Guarded::new(stream, conn_state.clone());
                let tls = web_config.current().tls.clone();
                let app = app.clone();
                let watcher = graceful.watcher();
                match tls {
                    None => {
                        tokio::spawn(drive(stream, peer, app, conn_state, watcher));
                    }
                    Some(tls) => {
                        tokio::spawn(async move {
                            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                            tokio::select! {
                                r = handshake => match r {
                                    Ok(Ok(tls_stream)) => drive(tls_stream, peer, app, conn_state, watcher).await,
                                    Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                                },
                                () = conn_state.evicted() => {}
                            }
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    reloader.abort();
    // Commands of backup sources and health checks: stopped, not waited for.
    crate::core::command::stop_all();
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
