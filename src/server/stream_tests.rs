//! Uncompressed answers of a monitors' part above the identity cache limit:
//! not cached, inflated from the gzip prefix as they are sent, byte for
//! byte the text the cached path sends, with an exact `Content-Length`.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::encoding_tests::{
    curl_get, curl_path, gunzip, masked, raw, static_registry, Server, Static,
};
use crate::core::clock::FixedClock;
use crate::core::compress::Encoding;
use crate::core::encoder::Format;
use crate::core::registry::Registry;

/// Small enough that the test monitor's text (about 200 KB) is above it.
const LIMIT: usize = 1000;

fn streaming_registry() -> Registry {
    let r = static_registry();
    r.set_identity_cache_limit(LIMIT);
    r
}

/// The registry's `homelab_monitor_exposition_cache_bytes{encoding=...}`.
fn cache_gauge(body: &str, encoding: &str) -> f64 {
    let key = format!("homelab_monitor_exposition_cache_bytes{{encoding=\"{encoding}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in the body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_part_is_the_cached_paths_text_byte_for_byte_and_is_not_kept() {
    let wait = Duration::from_secs(10);
    let cached = static_registry();
    let streaming = streaming_registry();
    for format in [Format::Classic, Format::OpenMetrics] {
        let want = cached
            .scrape_encoded(format, wait, None, Encoding::Identity)
            .await
            .unwrap();
        assert!(want.streamed.is_none(), "below the limit: the cached text");
        for _ in 0..2 {
            let got = streaming
                .scrape_encoded(format, wait, None, Encoding::Identity)
                .await
                .unwrap();
            let inflated = got.streamed.as_ref().expect("above the limit: streamed");
            assert_eq!(got.parts.len(), 1, "only the per-scrape tail is a buffer");
            let text: Vec<u8> = inflated
                .chunks()
                .flat_map(|c| c.unwrap().to_vec())
                .collect();
            assert_eq!(text, want.parts[0], "{format:?}");
            assert!(text.len() > 100 * LIMIT, "{}", text.len());
            assert_eq!(got.len(), got.read_all().unwrap().len() as u64);
            let whole = String::from_utf8(got.read_all().unwrap()).unwrap();
            assert!(whole.contains("t_series{path=\"envs/2999/terraform.tfstate\"} 3.0\n"));
            assert_eq!(whole.ends_with("# EOF\n"), format == Format::OpenMetrics);
        }
        // The one-shot path (a whole String) reads the same text.
        let one_shot = streaming.scrape(format, wait, None).await.unwrap();
        assert!(one_shot.as_bytes().starts_with(&want.parts[0]));
    }
    // Nothing kept for identity; the gzip prefix it streams from, once per
    // format, for every later scrape of either coding.
    let (text, gzip) = streaming.exposition_cache_bytes();
    assert_eq!(text, 0);
    assert!(gzip > 0);
    assert_eq!(streaming.gzip_compressions(), 2);
    let z = streaming
        .scrape_encoded(Format::Classic, wait, None, Encoding::Gzip)
        .await
        .unwrap();
    assert_eq!(
        streaming.gzip_compressions(),
        2,
        "the same prefix serves gzip"
    );
    let plain = streaming.scrape(Format::Classic, wait, None).await.unwrap();
    assert_eq!(gunzip(&z.read_all().unwrap()), plain);
    // The system's gzip reads the prefix built while encoding.
    if let Ok(mut child) = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        let mut stdin = child.stdin.take().unwrap();
        let body = z.read_all().unwrap();
        let feeder = std::thread::spawn(move || stdin.write_all(&body));
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8(out.stdout).unwrap(), plain);
    } else {
        eprintln!("SKIP gzip -d: gzip not installed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_answers_over_http_have_an_exact_length_and_head_sends_no_body() {
    let server = Server::start_with(Arc::new(streaming_registry())).await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let mut conn = BufReader::new(stream);
    for accept in ["", "Accept: application/openmetrics-text\r\n"] {
        // raw() reads exactly Content-Length bytes; the next request on the
        // same connection checks that no byte more was sent.
        let (h, body) = raw(&mut conn, "GET", accept).await;
        assert!(!h.iter().any(|(k, _)| k == "transfer-encoding"), "{h:?}");
        assert!(!h.iter().any(|(k, _)| k == "content-encoding"), "{h:?}");
        let body = String::from_utf8(body).unwrap();
        assert!(body.contains("t_series{path=\"envs/2999/terraform.tfstate\"} 3.0\n"));
        assert!(
            body.contains("homelab_monitor_build_info{"),
            "the tail follows"
        );
        assert_eq!(body.ends_with("# EOF\n"), !accept.is_empty());
        assert_eq!(cache_gauge(&body, "identity"), 0.0, "never cached");
        let (head_h, _) = raw(&mut conn, "HEAD", accept).await;
        let len = |h: &[(String, String)]| -> i64 {
            h.iter()
                .find(|(k, _)| k == "content-length")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap()
        };
        // The per-scrape part may differ by a few bytes between answers.
        assert!((len(&head_h) - body.len() as i64).abs() < 64, "{head_h:?}");
    }
    let (_, again) = raw(&mut conn, "GET", "").await;
    assert!(String::from_utf8(again)
        .unwrap()
        .contains("# TYPE t_series gauge\n"));
    assert_eq!(server.registry.exposition_cache_bytes().0, 0);
    drop(conn);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streamed_scrapes_each_get_the_whole_body() {
    let server = Server::start_with(Arc::new(streaming_registry())).await;
    let port = server.port;
    let scrape = move || async move {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut conn = BufReader::new(stream);
        let (_, body) = raw(&mut conn, "GET", "").await;
        String::from_utf8(body).unwrap()
    };
    let first = scrape().await;
    let tasks: Vec<_> = (0..8).map(|_| tokio::spawn(scrape())).collect();
    for t in tasks {
        assert_eq!(masked(&t.await.unwrap()), masked(&first));
    }
    // curl, as a real client reading to the Content-Length; gzip from the
    // same server decodes to the same text.
    if let Some(curl) = curl_path() {
        let url = format!("http://127.0.0.1:{port}/metrics");
        let run = |compressed: bool| {
            let all = curl_get(curl, url.clone(), compressed);
            async move {
                let all = all.await;
                all.split_once("\r\n\r\n").unwrap().1.to_string()
            }
        };
        let plain = run(false).await;
        let zipped = run(true).await;
        assert_eq!(masked(&plain), masked(&first));
        assert_eq!(masked(&zipped), masked(&first));
    } else {
        eprintln!("SKIP curl: not installed");
    }
    server.stop().await;
}

/// About 20 MB of text (100,000 series with a long label): more than the
/// kernel buffers on both ends of a loopback connection hold, so a client
/// that stops reading leaves the server mid-body.
const WIDE: Static = Static {
    series: 100_000,
    pad: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx/",
};

/// The value of an unlabelled gauge in a body.
fn gauge(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_stream_neither_wedges_nor_leaks_the_connection() {
    let clock = Arc::new(FixedClock(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ));
    let registry = Registry::new(vec![Arc::new(WIDE)], clock);
    // The default limit: the ~20 MB text is above it.
    let server = Server::start_with(Arc::new(registry)).await;
    let full_len = {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        let mut conn = BufReader::new(stream);
        let (_, body) = raw(&mut conn, "GET", "").await;
        body.len()
    };
    assert!(full_len > 16 * 1024 * 1024, "{full_len}");
    assert_eq!(server.registry.exposition_cache_bytes().0, 0);
    for _ in 0..3 {
        // A small receive window; read the head and 64 KiB, then go away.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket
            .connect(([127, 0, 0, 1], server.port).into())
            .await
            .unwrap();
        let mut conn = BufReader::new(stream);
        conn.get_mut()
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut status = String::new();
        conn.read_line(&mut status).await.unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut some = vec![0; 64 * 1024];
        conn.read_exact(&mut some).await.unwrap();
        drop(conn);
    }
    // The next scrapes get the whole body, and the abandoned connections
    // close (their bodies dropped): only the scraping one stays open.
    let mut open = None;
    for _ in 0..100 {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        let mut conn = BufReader::new(stream);
        let (_, body) = raw(&mut conn, "GET", "").await;
        assert!((body.len() as i64 - full_len as i64).abs() < 64);
        let body = String::from_utf8(body).unwrap();
        let last = format!(
            "t_series{{path=\"{}envs/99999/terraform.tfstate\"}}",
            WIDE.pad
        );
        assert!(body.contains(&last), "monitors' part present");
        open = gauge(&body, "homelab_monitor_http_connections_open");
        if open == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open, Some(1.0), "abandoned streams still hold connections");
    server.stop().await;
}
