//! Fault tests: files rewritten in place while scraped, atomic swaps, deletes
//! and re-creates, emptied folders, a FIFO where a file should be, slow
//! clients, and shutdown with scrapes in flight. Nothing is lost: the last
//! good values stay, staleness is visible, recovery is automatic.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn state_with_serial(serial: u64) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo().join("tests/fixtures/terraform/real/terraform.tfstate")).unwrap(),
    )
    .unwrap();
    v["serial"] = serial.into();
    serde_json::to_vec_pretty(&v).unwrap()
}

/// A ready exporter watching `s/terraform.tfstate` (serial `serial`) in a
/// temporary folder; returns the folder, the state's path and the exporter.
fn watched_state(serial: u64) -> (tempfile::TempDir, PathBuf, Exporter) {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("s")).unwrap();
    let p = t.path().join("s/terraform.tfstate");
    std::fs::write(&p, state_with_serial(serial)).unwrap();
    let e = Exporter::with_config(t.path(), "custom_monitors:\n  terraform_state:\n    check_interval: 1ms\n    retry_interval: 0s\n    state_files: [s/terraform.tfstate]\n");
    e.wait_ready();
    (t, p, e)
}

const STATE: &str = "s/terraform.tfstate";
const KEY: &str = "{state_file=\"s/terraform.tfstate\"}";

#[test]
fn in_place_rewrites_while_scraping_never_break_the_scrape() {
    let (_t, p, e) = watched_state(1);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let p = p.clone();
        std::thread::spawn(move || {
            // Like Terraform's local backend: truncate and write in place, in pieces.
            for serial in 2..=200u64 {
                let bytes = state_with_serial(serial);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&p)
                    .unwrap();
                for chunk in bytes.chunks(bytes.len() / 3 + 1) {
                    f.write_all(chunk).unwrap();
                    f.flush().unwrap();
                    std::thread::sleep(Duration::from_micros(300));
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        })
    };
    let mut scrapes = 0;
    let mut seen_up0 = 0;
    let mut last_serial = 0.0;
    while !writer.is_finished() {
        let m = e.metrics(); // asserts 200
        scrapes += 1;
        let up = series(&m, &format!("terraform_state_up{KEY}")).expect("up series always present");
        let serial = series(&m, &format!("terraform_state_serial{KEY}"))
            .expect("last good serial always present");
        assert!((1.0..=200.0).contains(&serial), "garbage serial {serial}");
        assert!(
            serial >= last_serial,
            "serial went back from {last_serial} to {serial}"
        );
        last_serial = serial;
        if up == 0.0 {
            seen_up0 += 1;
            assert_eq!(
                series(&m, &format!("terraform_state_stale{KEY}")),
                Some(1.0)
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    // Let the 1 ms cache lifetime pass: the next scrape re-reads the file.
    std::thread::sleep(Duration::from_millis(20));
    let m = e.refreshed_metrics();
    assert_eq!(
        series(&m, &format!("terraform_state_up{KEY}")),
        Some(1.0),
        "recovered after the writes stopped"
    );
    assert_eq!(
        series(&m, &format!("terraform_state_serial{KEY}")),
        Some(200.0)
    );
    assert!(scrapes > 20, "only {scrapes} scrapes");
    eprintln!("{scrapes} scrapes during 199 in-place rewrites, {seen_up0} saw a half-written file");
    assert!(!e.logs().contains("panicked"));
}

#[test]
fn atomic_rename_swaps_are_always_complete() {
    let (_t, p, e) = watched_state(1);
    let writer = {
        let p = p.clone();
        std::thread::spawn(move || {
            for serial in 2..=150u64 {
                let tmp = p.with_extension("tmp");
                std::fs::write(&tmp, state_with_serial(serial)).unwrap();
                std::fs::rename(&tmp, &p).unwrap();
            }
        })
    };
    while !writer.is_finished() {
        let m = e.metrics();
        assert_eq!(
            series(&m, &format!("terraform_state_up{KEY}")),
            Some(1.0),
            "a rename swap must never be seen half-done:\n{m}"
        );
    }
    writer.join().unwrap();
    // Let the 1 ms cache lifetime pass: the next scrape re-checks the file.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        series(
            &e.refreshed_metrics(),
            &format!("terraform_state_serial{KEY}")
        ),
        Some(150.0),
        "the last swap must be seen (same size, same mtime tick, reused inode)"
    );
}

#[test]
fn deleted_emptied_and_recreated_files_keep_last_values_then_recover() {
    let (_t, p, e) = watched_state(5);
    let dir = p.parent().unwrap().to_path_buf();
    // Values are cached for check_interval (1 ms): let it pass after each change.
    let scrape = || {
        std::thread::sleep(Duration::from_millis(20));
        e.refreshed_metrics()
    };
    assert_eq!(
        series(&scrape(), &format!("terraform_state_up{KEY}")),
        Some(1.0)
    );
    // The file is deleted.
    std::fs::remove_file(&p).unwrap();
    let m = scrape();
    assert_state(&m, STATE, [Some(0.0), Some(1.0), Some(5.0)]);
    assert_eq!(series(&m, "terraform_state_error_info{state_file=\"s/terraform.tfstate\",component=\"state\",reason=\"not_found\"}"), Some(1.0));
    // The whole folder goes away (an unmounted volume).
    std::fs::remove_dir_all(&dir).unwrap();
    let m = scrape();
    assert_eq!(
        series(&m, &format!("terraform_state_serial{KEY}")),
        Some(5.0),
        "last good values stay"
    );
    // A FIFO where the file was: reported, never opened (it would block).
    std::fs::create_dir_all(&dir).unwrap();
    let ok = std::process::Command::new("mkfifo")
        .arg(&p)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        let m = scrape();
        assert_eq!(series(&m, "terraform_state_error_info{state_file=\"s/terraform.tfstate\",component=\"state\",reason=\"not_a_file\"}"), Some(1.0), "{m}");
        std::fs::remove_file(&p).unwrap();
    }
    // It comes back.
    std::fs::write(&p, state_with_serial(6)).unwrap();
    let m = scrape();
    assert_state(&m, STATE, [Some(1.0), Some(0.0), Some(6.0)]);
}

#[test]
fn slow_clients_do_not_hold_the_server_and_are_cut_off() {
    let ex = example_copy();
    let e = Exporter::start(ex.path(), &["--config", "monitoring-config.yaml"]);
    // 100 clients that send half a request line and then nothing.
    let mut slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", e.port)).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    // Everyone else is still served.
    for _ in 0..10 {
        assert_eq!(get(e.port, "/metrics").status, 200);
    }
    // The slow ones are disconnected once the header read timeout (10 s) passes.
    let s = &mut slow[0];
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(39),
        "a slow client was never cut off"
    );
    assert!(
        String::from_utf8_lossy(&buf).is_empty()
            || String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
}

#[test]
fn shutdown_lets_in_flight_scrapes_finish() {
    let t = tempfile::tempdir().unwrap();
    {
        let f = std::fs::File::create(t.path().join("big.tfstate")).unwrap();
        let mut w = std::io::BufWriter::new(f);
        gen::write_state(&mut w, 30_000, 3_000, "big", 1).unwrap();
    }
    std::fs::write(
        t.path().join("c.yaml"),
        "custom_monitors:\n  terraform_state:\n    state_files: [big.tfstate]\n    timeout: 5m\n",
    )
    .unwrap();
    // Not waiting for readiness: the first (cold) collection is what we interrupt.
    // The scrapes wait for it whatever the machine's load (the default 5 s
    // first-scrape budget would serve a body without the state on a slow run).
    let mut e = Exporter::start(
        t.path(),
        &["--config", "c.yaml", "--web.first-scrape-wait", "5m"],
    );
    let port = e.port;
    let scrapers: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                http(port, "GET", "/metrics", "").map(|r| (r.status, r.body))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(e.terminate(), Some(0), "{}", e.logs());
    for s in scrapers {
        let (status, body) = s.join().unwrap().expect("an in-flight scrape was dropped");
        assert_eq!(status, 200);
        // A whole exposition: the self-metrics part comes after the monitors'.
        assert!(
            body.ends_with('\n') && body.contains("homelab_monitor_build_info"),
            "truncated body: {body}"
        );
        // The state itself, or (on a machine so loaded that the 90 MB read
        // outlasts a collection's 2 s patience) the read still pending: never
        // a body that claims the state is down.
        assert!(
            body.contains("terraform_state_up{state_file=\"big.tfstate\"} 1")
                || (body.contains("terraform_state_targets 0")
                    && !body.contains("terraform_state_up{state_file=\"big.tfstate\"} 0")),
            "body neither has the state nor says its read is pending: {body}"
        );
    }
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still accepting after shutdown"
    );
}
