//! Scrapes never wait and nothing hangs (stale-while-revalidate, per-target
//! freshness, deadlines), against the real binary on loopback.
//!
//! The bounds asserted here are functional, not benchmarks: a scrape must
//! finish within the client timeout Prometheus would use (10 s), far below
//! what the slow backend takes (25 s).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::stub::{resp, Handler, Server};
use common::{repo, series, Exporter};

/// A scrape as Prometheus does it: 10 s client timeout, its timeout header.
fn scrape(port: u16, header_secs: &str) -> (u16, String, Duration) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let t = Instant::now();
    let r = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .header("X-Prometheus-Scrape-Timeout-Seconds", header_secs)
        .send();
    match r {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().unwrap_or_default(), t.elapsed())
        }
        Err(e) => panic!("scrape failed after {:?}: {e}", t.elapsed()),
    }
}

fn state_fixture() -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/terraform/real/terraform.tfstate")).unwrap()
}

fn write_cert(dir: &Path) {
    let c = rcgen::generate_simple_self_signed(vec!["fresh.test".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), c.cert.pem()).unwrap();
}

/// A state server that answers after `delay` (or holds the request for ever).
fn slow_state_server(delay: Duration) -> (Server, Arc<AtomicUsize>) {
    let body = state_fixture();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let handler: Handler = Arc::new(move |_req| {
        h.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(delay);
        resp(200, body.clone())
    });
    (Server::start(handler), hits)
}

fn remote_line<'a>(m: &'a str, metric: &str) -> Option<&'a str> {
    m.lines()
        .find(|l| l.starts_with(&format!("{metric}{{")) && l.contains("127.0.0.1"))
}

#[test]
fn a_slow_backend_never_delays_the_scrape_or_the_other_targets() {
    let (srv, _hits) = slow_state_server(Duration::from_secs(25));
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("local.tfstate"), state_fixture()).unwrap();
    write_cert(t.path());
    let e = Exporter::with_config(t.path(), &format!(
            "custom_monitors:\n  terraform_state:\n    check_interval: 5s\n    timeout: 50s\n    state_files: [local.tfstate]\n    remote: {{ request_timeout: 60s }}\n    backends:\n      - {{ type: http, address: \"{}\" }}\n  certificate_expiry:\n    check_interval: 5s\n    paths: [cert.pem]\n",
            srv.url("/state/prod")
        ));
    let began = Instant::now();
    let mut worst = Duration::ZERO;
    let mut remote_seen = false;
    for i in 0..20 {
        let (status, body, took) = scrape(e.port, "10");
        worst = worst.max(took);
        assert_eq!(status, 200, "scrape {i}: {body}");
        assert_eq!(
            series(&body, "terraform_state_up{state_file=\"local.tfstate\"}"),
            Some(1.0),
            "scrape {i} after {:?}: the local state is there from the first scrape\n{body}",
            began.elapsed()
        );
        assert!(
            body.contains("certificate_not_after_timestamp_seconds{"),
            "scrape {i}: the certificate is there from the first scrape\n{body}"
        );
        if let Some(l) = remote_line(&body, "terraform_state_up") {
            assert!(l.ends_with(" 1.0"), "{l}");
            remote_seen = true;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!(
        "20 scrapes over {:?}; slowest {worst:?} (the backend takes 25 s)",
        began.elapsed()
    );
    assert!(
        remote_seen,
        "the slow state's series appear once it has answered: {}",
        e.logs()
    );
}

fn threads_and_rss_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Threads:"), field("VmRSS:"))
}

#[test]
fn a_backend_that_never_answers_times_out_without_growing_threads_or_memory() {
    // Holds every request for ten minutes (the test ends long before).
    let (srv, hits) = slow_state_server(Duration::from_secs(600));
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("local.tfstate"), state_fixture()).unwrap();
    let e = Exporter::with_config(t.path(), &format!(
            "custom_monitors:\n  terraform_state:\n    check_interval: 1s\n    retry_interval: 0s\n    timeout: 1s\n    state_files: [local.tfstate]\n    remote: {{ request_timeout: 60s, retries: 0 }}\n    backends:\n      - {{ type: http, address: \"{}\" }}\n",
            srv.url("/state/hung")
        ));
    let pid = e.pid();
    let collections = |m: &str| {
        series(
            m,
            "homelab_monitor_collections_total{monitor=\"terraform_state\"}",
        )
        .unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut after_warmup = None;
    let mut last;
    loop {
        let (status, body, _) = scrape(e.port, "10");
        assert_eq!(status, 200);
        let n = collections(&body);
        if n >= 10.0 && after_warmup.is_none() {
            after_warmup = Some(threads_and_rss_kib(pid));
        }
        last = body;
        if n >= 100.0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(collections(&last) >= 100.0, "100 refresh cycles: {last}");
    let (threads, rss) = threads_and_rss_kib(pid);
    let (threads0, rss0) = after_warmup.unwrap_or((threads, rss));
    eprintln!(
        "after {} collections and {} requests to the hung backend: {threads} threads (after 10: {threads0}), RSS {rss} KiB (after 10: {rss0} KiB)",
        collections(&last),
        hits.load(Ordering::SeqCst)
    );
    // The documented bound: the runtime's workers, the read pool
    // (MAX_CONCURRENT_READS) and the remote workers, never one per cycle.
    assert!(threads <= 64, "{threads} threads after 100 cycles");
    assert!(rss <= 200 * 1024, "RSS {rss} KiB after 100 cycles");
    assert!(
        rss <= rss0 + 50 * 1024,
        "RSS grew from {rss0} to {rss} KiB over 90 cycles"
    );
    assert!(
        last.contains("component=\"state\",reason=\"timeout\"")
            || last.contains("reason=\"timeout\""),
        "the hung target reports timeout:\n{last}"
    );
    assert_eq!(
        series(&last, "terraform_state_up{state_file=\"local.tfstate\"}"),
        Some(1.0)
    );
}

#[test]
fn a_cold_scrape_waits_only_for_its_own_budget() {
    let (srv, _hits) = slow_state_server(Duration::from_secs(10));
    let t = tempfile::tempdir().unwrap();
    write_cert(t.path());
    let e = Exporter::with_config(t.path(), &format!(
            "custom_monitors:\n  terraform_state:\n    timeout: 30s\n    state_files: []\n    remote: {{ request_timeout: 30s }}\n    backends:\n      - {{ type: http, address: \"{}\" }}\n  certificate_expiry:\n    paths: [cert.pem]\n",
            srv.url("/state/cold")
        ));
    let (status, body, took) = scrape(e.port, "2");
    eprintln!("cold scrape with a 2 s budget answered in {took:?}");
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_secs(8),
        "answered within its own budget, not after the 10 s backend: {took:?}"
    );
    assert!(
        body.contains("certificate_not_after_timestamp_seconds{"),
        "{body}"
    );
    assert!(remote_line(&body, "terraform_state_up").is_none(), "{body}");
    assert_eq!(
        common::get(e.port, "/readyz").status,
        503,
        "not ready while a first read is still running"
    );
}

#[test]
fn a_failing_target_is_retried_alone_and_the_healthy_ones_keep_their_interval() {
    let t = tempfile::tempdir().unwrap();
    let good = state_fixture();
    for i in 0..10 {
        std::fs::write(t.path().join(format!("ok{i}.tfstate")), &good).unwrap();
    }
    std::fs::write(t.path().join("bad.tfstate"), b"{ not json").unwrap();
    let e = Exporter::with_config(t.path(), "custom_monitors:\n  terraform_state:\n    check_interval: 20s\n    retry_interval: 1s\n    state_dirs: [\".\"]\n");
    e.wait_ready();
    // A target's last-read timestamp changes only when it is read: count
    // the distinct values seen over 30 s of scrapes every 250 ms.
    let mut reads: HashMap<String, BTreeSet<String>> = HashMap::new();
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        let (_, body, _) = scrape(e.port, "10");
        for l in body.lines().filter(|l| {
            l.starts_with(
                "homelab_monitor_target_last_read_timestamp_seconds{monitor=\"terraform_state\"",
            )
        }) {
            if let Some((k, v)) = l.rsplit_once(' ') {
                reads
                    .entry(k.to_string())
                    .or_default()
                    .insert(v.to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let count = |name: &str| {
        reads
            .iter()
            .find(|(k, _)| k.contains(&format!("target=\"{name}\"")))
            .map(|(_, v)| v.len())
            .unwrap_or(0)
    };
    eprintln!(
        "reads over 30 s: bad {}, ok0 {}, ok9 {}",
        count("bad.tfstate"),
        count("ok0.tfstate"),
        count("ok9.tfstate")
    );
    for i in 0..10 {
        let n = count(&format!("ok{i}.tfstate"));
        assert!(
            (1..=3).contains(&n),
            "healthy ok{i} read {n} times in 30 s with a 20 s check_interval"
        );
    }
    assert!(
        count("bad.tfstate") >= 10,
        "the failing target is retried every retry_interval (1 s): {}",
        count("bad.tfstate")
    );
}

#[test]
fn a_failing_backend_is_retried_alone_and_the_healthy_one_keeps_its_interval() {
    let body = state_fixture();
    let hits: Arc<std::sync::Mutex<HashMap<String, usize>>> = Arc::default();
    let h = hits.clone();
    let handler: Handler = Arc::new(move |req| {
        *h.lock().unwrap().entry(req.path.clone()).or_default() += 1;
        if req.path.contains("broken") {
            resp(500, "boom")
        } else {
            resp(200, body.clone())
        }
    });
    let srv = Server::start(handler);
    let t = tempfile::tempdir().unwrap();
    let e = Exporter::with_config(t.path(), &format!(
            "custom_monitors:\n  terraform_state:\n    check_interval: 60s\n    retry_interval: 1s\n    state_files: []\n    remote: {{ retries: 0 }}\n    backends:\n      - {{ type: http, address: \"{}\" }}\n      - {{ type: http, address: \"{}\" }}\n",
            srv.url("/state/good"),
            srv.url("/state/broken")
        ));
    e.wait_ready();
    let end = Instant::now() + Duration::from_secs(12);
    while Instant::now() < end {
        let (status, _, _) = scrape(e.port, "10");
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_millis(250));
    }
    let hits = hits.lock().unwrap().clone();
    let count = |p: &str| {
        hits.iter()
            .filter(|(k, _)| k.contains(p))
            .map(|(_, n)| *n)
            .sum::<usize>()
    };
    eprintln!(
        "requests over 12 s: good {}, broken {}",
        count("good"),
        count("broken")
    );
    assert_eq!(
        count("good"),
        1,
        "the healthy backend is read once per check_interval (60 s): {hits:?}"
    );
    assert!(
        count("broken") >= 5,
        "the failing backend is retried every retry_interval (1 s): {hits:?}"
    );
}
