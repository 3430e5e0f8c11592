//! `Accept-Encoding` on `/metrics`, over real HTTP on loopback: Prometheus'
//! own headers, curl `--compressed`, no header, and the per-collection cache
//! of the compressed part.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::core::clock::FixedClock;
use crate::core::monitor::{Cadence, CollectContext, Monitor, MonitorError};
use crate::core::registry::Registry;
use crate::core::snapshot::{MetricDef, Snapshot, SnapshotBuilder};
use crate::server::web_config::WebConfigWatcher;
use crate::server::{serve, ServerConfig};

const SERIES: MetricDef = MetricDef::gauge("t_series", "A test series.");

/// `series` series whose `path` label starts with `pad`; values never change.
pub(super) struct Static {
    pub(super) series: usize,
    pub(super) pad: &'static str,
}

/// Many series, so the body is worth compressing.
pub(super) const STATIC: Static = Static {
    series: 3000,
    pad: "",
};

#[async_trait]
impl Monitor for Static {
    fn name(&self) -> &'static str {
        "static"
    }
    fn cadence(&self) -> Cadence {
        Cadence {
            check_interval: Duration::from_secs(3600),
            retry_interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(60),
        }
    }
    fn describe(&self) -> String {
        "test".into()
    }
    async fn collect(&self, _ctx: CollectContext) -> Result<Snapshot, MonitorError> {
        let mut b = SnapshotBuilder::new();
        for i in 0..self.series {
            b.gauge(
                &SERIES,
                &[("path", &format!("{}envs/{i}/terraform.tfstate", self.pad))],
                (i % 7) as f64,
            );
        }
        Ok(b.build())
    }
}

pub(super) struct Server {
    pub(super) port: u16,
    pub(super) registry: Arc<Registry>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start() -> Server {
        Server::start_with(Arc::new(static_registry())).await
    }

    pub(super) async fn start_with(registry: Arc<Registry>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cfg = ServerConfig {
            telemetry_path: "/metrics".into(),
            first_scrape_wait: Duration::from_secs(10),
            max_connections: 16,
            probe: None,
        };
        let web = Arc::new(WebConfigWatcher::new(None).unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, registry.clone(), cfg, web, async {
            let _ = rx.await;
        }));
        Server {
            port,
            registry,
            stop: Some(tx),
            task,
        }
    }

    pub(super) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(40), self.task).await;
    }
}

/// A registry of [`Static`] on a fixed clock.
pub(super) fn static_registry() -> Registry {
    let clock = Arc::new(FixedClock(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ));
    Registry::new(vec![Arc::new(STATIC)], clock)
}

/// Prometheus 3's scrape request headers (scrape/scrape.go).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

struct Answer {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a kept-alive connection; the answer's headers and body.
async fn request(
    conn: &mut BufReader<tokio::net::TcpStream>,
    extra_headers: &[(&str, &str)],
) -> Answer {
    let mut extra =
        String::from("User-Agent: Prometheus/3.5.0\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n");
    for (k, v) in extra_headers {
        extra.push_str(&format!("{k}: {v}\r\n"));
    }
    let (headers, body) = raw(conn, "GET", &extra).await;
    Answer { headers, body }
}

pub(super) fn gunzip(z: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(z)
        .read_to_string(&mut out)
        .expect("a valid gzip body");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_gzip_scrape_decodes_to_the_identity_body_and_compresses_once_per_collection() {
    let server = Server::start().await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let mut conn = BufReader::new(stream);
    let prometheus = [("Accept", PROMETHEUS_ACCEPT), ("Accept-Encoding", "gzip")];
    let zipped = request(&mut conn, &prometheus).await;
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(zipped.header("vary"), Some("Accept-Encoding"));
    assert!(zipped
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/openmetrics-text")));
    // Same connection (same open-connection count), same fixed clock: the
    // identity answer must be byte for byte what the gzip one decodes to.
    let plain = request(&mut conn, &[("Accept", PROMETHEUS_ACCEPT)]).await;
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
    let plain = String::from_utf8(plain.body).unwrap();
    assert!(plain.contains("t_series{path=\"envs/2999/terraform.tfstate\"} 3.0"));
    assert!(plain.ends_with("# EOF\n"));
    assert_eq!(uncached(&gunzip(&zipped.body)), uncached(&plain));
    assert!(
        zipped.body.len() * 5 < plain.len(),
        "{} vs {}",
        zipped.body.len(),
        plain.len()
    );
    assert_eq!(server.registry.gzip_compressions(), 1);
    // Warm scrapes reuse the compressed part: no new compression.
    for _ in 0..3 {
        let again = request(&mut conn, &prometheus).await;
        assert_eq!(uncached(&gunzip(&again.body)), uncached(&plain));
    }
    assert_eq!(server.registry.gzip_compressions(), 1);
    // Another format is another cached part.
    let classic = request(&mut conn, &[("Accept-Encoding", "gzip")]).await;
    assert!(gunzip(&classic.body).contains("# TYPE t_series gauge\n"));
    assert_eq!(server.registry.gzip_compressions(), 2);
    drop(conn);
    server.stop().await;
}

/// The body without the sizes of the encoded cache (which fills as scrapes
/// ask for each encoding).
pub(super) fn uncached(body: &str) -> String {
    body.lines()
        .filter(|l| !l.starts_with("homelab_monitor_exposition_cache_bytes{"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The body without the open-connection count (curl's connections come and
/// go) and the encoded cache's sizes.
pub(super) fn masked(body: &str) -> String {
    body.lines()
        .filter(|l| !l.starts_with("homelab_monitor_http_connections_open "))
        .filter(|l| !l.starts_with("homelab_monitor_exposition_cache_bytes{"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The system's curl, if installed.
pub(super) fn curl_path() -> Option<&'static str> {
    ["/usr/bin/curl", "/usr/local/bin/curl"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// `curl -D -` of `url` (`--compressed` if asked): the response head, a blank
/// line, and the (decoded) body; a failed request fails the test.
pub(super) async fn curl_get(curl: &'static str, url: String, compressed: bool) -> String {
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(curl);
        cmd.args(["-sS", "--fail", "-D", "-", "--max-time", "30"]);
        if compressed {
            cmd.arg("--compressed");
        }
        let out = cmd.arg(&url).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_compressed_gets_gzip_and_curl_without_it_gets_identity() {
    let Some(curl) = curl_path() else {
        eprintln!("SKIP: curl not installed (apt-get install curl)");
        return;
    };
    let server = Server::start().await;
    let url = format!("http://127.0.0.1:{}/metrics", server.port);
    let run = |compressed: bool| {
        let all = curl_get(curl, url.clone(), compressed);
        async move {
            let all = all.await;
            let (head, body) = all.split_once("\r\n\r\n").unwrap();
            (head.to_ascii_lowercase(), body.to_string())
        }
    };
    let (zhead, zbody) = run(true).await;
    let (head, body) = run(false).await;
    assert!(zhead.contains("\r\ncontent-encoding: gzip"), "{zhead}");
    assert!(!head.contains("content-encoding"), "{head}");
    assert!(head.contains("\r\nvary: accept-encoding"), "{head}");
    assert!(
        body.contains("t_series{path=\"envs/0/terraform.tfstate\"} 0.0\n"),
        "{body}"
    );
    assert_eq!(masked(&zbody), masked(&body));
    assert_eq!(server.registry.gzip_compressions(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_share_the_cached_part_instead_of_copying_it() {
    use crate::core::compress::Encoding;
    use crate::core::encoder::Format;
    let clock = Arc::new(FixedClock(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ));
    let registry = Registry::new(vec![Arc::new(STATIC)], clock);
    let wait = Duration::from_secs(10);
    for format in [Format::Classic, Format::OpenMetrics] {
        for encoding in [Encoding::Identity, Encoding::Gzip] {
            let a = registry
                .scrape_encoded(format, wait, None, encoding)
                .await
                .unwrap();
            let b = registry
                .scrape_encoded(format, wait, None, encoding)
                .await
                .unwrap();
            assert_eq!(a.parts.len(), 2, "{format:?} {encoding:?}");
            // The large part is one buffer shared by both answers.
            assert_eq!(
                a.parts[0].as_ptr(),
                b.parts[0].as_ptr(),
                "{format:?} {encoding:?}"
            );
            assert!(a.parts[0].len() > 1000, "{}", a.parts[0].len());
            let whole = registry.scrape(format, wait, None).await.unwrap();
            let text = match encoding {
                Encoding::Identity => String::from_utf8(a.read_all().unwrap()).unwrap(),
                Encoding::Gzip => gunzip(&a.read_all().unwrap()),
            };
            assert_eq!(uncached(&text), uncached(&whole), "{format:?} {encoding:?}");
            assert_eq!(a.len(), a.read_all().unwrap().len() as u64);
        }
    }
}

/// The status line, headers and body of one raw request (`method` on
/// `/metrics`) on a kept-alive connection; HEAD reads no body.
pub(super) async fn raw(
    conn: &mut BufReader<tokio::net::TcpStream>,
    method: &str,
    extra: &str,
) -> (Vec<(String, String)>, Vec<u8>) {
    let req = format!("{method} /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n");
    conn.get_mut().write_all(req.as_bytes()).await.unwrap();
    let mut status = String::new();
    conn.read_line(&mut status).await.unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).await.unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .expect("content-length");
    let mut body = vec![0; if method == "HEAD" { 0 } else { len }];
    conn.read_exact(&mut body).await.unwrap();
    (headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_part_answers_have_an_exact_length_and_head_sends_none_of_the_body() {
    let server = Server::start().await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let mut conn = BufReader::new(stream);
    for extra in [
        "",
        "Accept-Encoding: gzip\r\n",
        &format!("Accept: {PROMETHEUS_ACCEPT}\r\n"),
    ] {
        let (get_h, body) = raw(&mut conn, "GET", extra).await;
        let get_len = get_h
            .iter()
            .find(|(k, _)| k == "content-length")
            .unwrap()
            .1
            .clone();
        assert_eq!(get_len, body.len().to_string());
        assert!(
            !get_h.iter().any(|(k, _)| k == "transfer-encoding"),
            "{get_h:?}"
        );
        let text = if extra.contains("gzip") {
            gunzip(&body)
        } else {
            String::from_utf8(body).unwrap()
        };
        assert!(text.contains("t_series{path=\"envs/2999/terraform.tfstate\"} 3.0\n"));
        assert!(
            text.contains("homelab_monitor_build_info{"),
            "the per-scrape part follows"
        );
        assert_eq!(text.ends_with("# EOF\n"), extra.contains("openmetrics"));
        // HEAD: the same length announced, no body sent (the next request on
        // this connection would read it as its status line otherwise).
        let (head_h, _) = raw(&mut conn, "HEAD", extra).await;
        let head_len = head_h
            .iter()
            .find(|(k, _)| k == "content-length")
            .unwrap()
            .1
            .clone();
        // The per-scrape part (request counts, cache sizes) may differ by a
        // few bytes between the two answers.
        let (a, b): (i64, i64) = (get_len.parse().unwrap(), head_len.parse().unwrap());
        assert!(b > 1000 && (a - b).abs() < 64, "{extra}: GET {a}, HEAD {b}");
    }
    let (_, body) = raw(&mut conn, "GET", "").await;
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("# TYPE t_series gauge\n"));
    drop(conn);
    server.stop().await;
}
