//! Load test (not a test; see README "Benchmarks" and `scripts/load-test.sh`):
//! N concurrent scrapers, each on its own keep-alive connection like
//! Prometheus, hammer one exporter on loopback for a bounded time.
//!
//!   load PORT PID [SCRAPERS=200] [SECONDS=60]
//!
//! Prints requests/s, p50/p99/max latency, errors, the exporter's RSS before
//! and after, and how many collections (target reads) the exporter ran.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// One request on a kept-alive connection; returns the status, the body and
/// whether the server asked to close the connection (`Connection: close`,
/// which the exporter sends after 100 requests on one connection; a real
/// scraper then reconnects, as this client does).
fn scrape(reader: &mut BufReader<TcpStream>) -> std::io::Result<(u16, String, bool)> {
    reader
        .get_mut()
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut status = 0u16;
    let mut len = 0usize;
    let mut close = false;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(rest) = l.strip_prefix("HTTP/1.1 ") {
            status = rest.get(..3).and_then(|s| s.parse().ok()).unwrap_or(0);
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
            if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close") {
                close = true;
            }
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).to_string(), close))
}

fn collections(body: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with("homelab_monitor_collections_total{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.is_empty() {
        // `cargo test --all-targets` runs benches without arguments: say how
        // to run it instead of failing the test run.
        println!("load benchmark: run it with scripts/load-test.sh (usage: load PORT PID [SCRAPERS] [SECONDS])");
        return;
    }
    if args.len() < 2 {
        eprintln!("usage: load PORT PID [SCRAPERS] [SECONDS]");
        std::process::exit(2);
    }
    let port: u16 = args[0].parse().expect("port");
    let pid: u32 = args[1].parse().expect("pid");
    let scrapers: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(60);

    let connect = move || {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        BufReader::new(s)
    };
    let mut probe = connect();
    let (_, body, _) = scrape(&mut probe).expect("first scrape");
    let reads_before = collections(&body);
    let rss_before = rss_kib(pid);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let handles: Vec<_> = (0..scrapers)
        .map(|_| {
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut conn = connect();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match scrape(&mut conn) {
                        Ok((200, body, close)) if body.contains("homelab_monitor_build_info") => {
                            lat.push(t.elapsed());
                            if close {
                                conn = connect();
                            }
                        }
                        _ => {
                            errors += 1;
                            conn = connect();
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let sampler = std::thread::spawn(move || {
        let mut samples = Vec::new();
        while Instant::now() < deadline {
            std::thread::sleep(
                Duration::from_secs(5).min(deadline.saturating_duration_since(Instant::now())),
            );
            samples.push(rss_kib(pid));
        }
        samples
    });
    let mut lat = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.join().expect("scraper thread");
        lat.extend(l);
        errors += e;
    }
    let wall = started.elapsed().as_secs_f64();
    let (_, body, _) = scrape(&mut connect()).expect("last scrape");
    let reads_after = collections(&body);
    let rss_after = rss_kib(pid);
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!("scrapers: {scrapers}, duration: {wall:.1} s");
    println!(
        "requests: {} ({:.0}/s), errors: {errors}",
        lat.len(),
        lat.len() as f64 / wall
    );
    println!(
        "latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    let samples: Vec<String> = sampler
        .join()
        .unwrap_or_default()
        .iter()
        .map(|k| format!("{:.1}", *k as f64 / 1024.0))
        .collect();
    println!(
        "exporter RSS: before {:.1} MiB, after {:.1} MiB",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    println!(
        "exporter RSS every 5 s under load (MiB): {}",
        samples.join(" ")
    );
    println!(
        "collections (target reads) during the run: {}",
        reads_after - reads_before
    );
}
