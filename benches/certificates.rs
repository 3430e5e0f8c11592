//! Benchmark (not a timed test): run by hand with `cargo bench --bench certificates`
//! (both), or `cargo bench --bench certificates -- bench_5000_files` (names containing
//! the argument). Prints figures; asserts only that everything was read. Loopback only.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use homelab_monitor::core::config::parse;
use homelab_monitor::core::monitor::{CollectContext, Monitor};
use homelab_monitor::monitors::certificates::CertificateMonitor;
use rcgen::{CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncReadExt;

const FILES: usize = 5_000;
const BUNDLE_EVERY: usize = 10;
const ENDPOINTS: usize = 100;
const SLOW: usize = 5;

/// `harness = false`: runs the benchmarks one after the other, each on the runtime
/// it had as a `#[tokio::test]`; arguments other than flags (`--bench`) filter by name.
///
/// Without `--bench` (`cargo test --benches`/`--all-targets` runs bench targets as
/// tests) it only says how to run it: the benchmarks take tens of seconds.
fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("certificates benchmark: run it with `cargo bench --bench certificates`");
        return;
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    if wanted("bench_5000_files") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(bench_5000_files());
    }
    if wanted("bench_100_endpoints") {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(bench_100_endpoints());
    }
}

fn ctx() -> CollectContext {
    CollectContext {
        now: UNIX_EPOCH + Duration::from_secs(1_767_225_600),
    }
}

fn monitor(yaml: &str, base: &Path) -> CertificateMonitor {
    let body: String = yaml.lines().map(|l| format!("  {l}\n")).collect();
    let text = format!("custom_monitors:\n  certificate_expiry:\n{body}");
    let cfg = parse(&text, Path::new("bench.yaml"))
        .unwrap()
        .custom_monitors
        .certificate_expiry
        .unwrap();
    CertificateMonitor::new(cfg, base.to_path_buf())
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

async fn bench_5000_files() {
    let d = tempfile::tempdir().unwrap();
    let root = CertifiedIssuer::self_signed(
        {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, "Bench Root");
            p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p
        },
        KeyPair::generate().unwrap(),
    )
    .unwrap();
    // 64 distinct leaves, written round-robin: parsing cost is the same as 5,000 distinct ones.
    let leaves: Vec<String> = (0..64)
        .map(|i| {
            let k = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(vec![format!("host{i}.bench.lan")]).unwrap();
            p.distinguished_name
                .push(DnType::CommonName, format!("host{i}.bench.lan"));
            p.signed_by(&k, &root).unwrap().pem()
        })
        .collect();
    let mut certs = 0;
    for i in 0..FILES {
        let sub = d.path().join(format!("d{:02}", i % 50));
        std::fs::create_dir_all(&sub).unwrap();
        let body = if i % BUNDLE_EVERY == 0 {
            certs += 2;
            format!("{}{}", leaves[i % 64], root.pem())
        } else {
            certs += 1;
            leaves[i % 64].clone()
        };
        std::fs::write(sub.join(format!("c{i}.pem")), body).unwrap();
    }
    let dir = d.path().to_string_lossy().to_string();

    // Best of 3 each: the machine is shared, the minimum is the least disturbed run.
    let mut cat = Duration::MAX;
    let mut ours = Duration::MAX;
    let mut python = Duration::MAX;
    let mut python_err: Option<String> = None;
    let py = "import sys,glob\nfrom cryptography import x509\nn=0\nfor f in glob.glob(sys.argv[1]+'/*/*.pem'):\n    for c in x509.load_pem_x509_certificates(open(f,'rb').read()):\n        c.not_valid_after_utc; n+=1\nprint(n)\n";
    for _ in 0..3 {
        let t = Instant::now();
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "find {dir} -name '*.pem' -exec cat {{}} + > /dev/null"
            ))
            .status()
            .unwrap();
        assert!(st.success());
        cat = cat.min(t.elapsed());

        // A new monitor each time: nothing cached between runs.
        let m = monitor("  paths: [\".\"]\n  max_depth: 4\n", d.path());
        let t = Instant::now();
        let snap = m.collect_complete(ctx()).await.unwrap();
        ours = ours.min(t.elapsed());
        assert_eq!(
            snap.family("certificate_source_up").unwrap().samples.len(),
            FILES
        );
        assert_eq!(
            snap.family("certificate_not_after_timestamp_seconds")
                .unwrap()
                .samples
                .len(),
            certs
        );

        let t = Instant::now();
        let out = Command::new("python3")
            .args(["-c", py, &dir])
            .output()
            .unwrap();
        python = python.min(t.elapsed());
        if !out.status.success() {
            python_err = Some(String::from_utf8_lossy(&out.stderr).into_owned());
        }
    }
    let python_ok = python_err.is_none();

    let sample = 250;
    let t = Instant::now();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("find {dir} -name '*.pem' | head -n {sample} | while read f; do openssl x509 -noout -enddate -in \"$f\" > /dev/null; done"))
        .status()
        .unwrap();
    assert!(st.success());
    let openssl = t.elapsed().mul_f64((FILES / sample) as f64);

    let build = if cfg!(debug_assertions) {
        "debug build of this crate, dependencies at opt-level 2"
    } else {
        "release build"
    };
    println!("BENCH files={FILES} certs={certs} ({build})");
    println!("BENCH cat (find -exec cat)      {}", secs(cat));
    println!(
        "BENCH homelab-monitor collect   {}  ({:.2}x cat)",
        secs(ours),
        ours.as_secs_f64() / cat.as_secs_f64()
    );
    if python_ok {
        println!(
            "BENCH python cryptography loop  {}  ({:.2}x ours)",
            secs(python),
            python.as_secs_f64() / ours.as_secs_f64()
        );
    } else {
        println!(
            "BENCH python cryptography loop  failed: {}",
            python_err.unwrap_or_default()
        );
    }
    println!(
        "BENCH openssl x509 -enddate loop {} (extrapolated from {sample} files)",
        secs(openssl)
    );
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Arc<rustls::ServerConfig> {
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap(),
    )
}

async fn bench_100_endpoints() {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["bench.lan".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "bench.lan");
    let cert = p.self_signed(&key).unwrap();
    let cfg = server_config(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    );
    let slow_delay = Duration::from_millis(800);
    let mut addrs = Vec::new();
    for i in 0..ENDPOINTS {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(l.local_addr().unwrap().to_string());
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
        let delay = if i < SLOW { slow_delay } else { Duration::ZERO };
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Ok(mut tls) = acceptor.accept(s).await {
                        let mut b = [0u8; 8];
                        let _ =
                            tokio::time::timeout(Duration::from_secs(2), tls.read(&mut b)).await;
                    }
                });
            }
        });
    }
    let list: String = addrs.iter().map(|a| format!("    - \"{a}\"\n")).collect();
    let d = tempfile::tempdir().unwrap();
    for conc in [1usize, 16] {
        let m = monitor(
            &format!("  endpoint_concurrency: {conc}\n  endpoints:\n{list}"),
            d.path(),
        );
        let t = Instant::now();
        let snap = m.collect_complete(ctx()).await.unwrap();
        let took = t.elapsed();
        let up = snap.family("certificate_source_up").unwrap();
        assert_eq!(
            up.samples.iter().filter(|s| s.value == 1.0).count(),
            ENDPOINTS
        );
        println!(
            "BENCH endpoints={ENDPOINTS} ({SLOW} delay the handshake {}ms) concurrency={conc}: {}",
            slow_delay.as_millis(),
            secs(took)
        );
    }
    blackbox_probes(&addrs, d.path()).await;
}

/// The same endpoints probed by Debian's prometheus-blackbox-exporter, all 100
/// probes at once (as Prometheus scraping 100 probe targets would).
async fn blackbox_probes(addrs: &[String], dir: &Path) {
    use tokio::io::AsyncWriteExt;
    let bin = "/usr/bin/prometheus-blackbox-exporter";
    if !Path::new(bin).exists() {
        println!("BENCH blackbox_exporter: not installed, skipped");
        return;
    }
    std::fs::write(
        dir.join("bb.yml"),
        "modules:\n  tls:\n    prober: tcp\n    timeout: 10s\n    tcp:\n      tls: true\n      tls_config:\n        insecure_skip_verify: true\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(bin)
        .arg(format!("--config.file={}", dir.join("bb.yml").display()))
        .arg(format!("--web.listen-address={listen}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&listen).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Instant::now();
    let probes = addrs.iter().map(|a| {
        let listen = listen.clone();
        let a = a.clone();
        async move {
            let mut s = tokio::net::TcpStream::connect(&listen).await.ok()?;
            let req = format!("GET /probe?module=tls&target={a} HTTP/1.0\r\n\r\n");
            s.write_all(req.as_bytes()).await.ok()?;
            let mut body = String::new();
            s.read_to_string(&mut body).await.ok()?;
            Some(body.lines().any(|l| l == "probe_success 1"))
        }
    });
    let results = futures::future::join_all(probes).await;
    let took = t.elapsed();
    let ok = results.iter().filter(|r| **r == Some(true)).count();
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "BENCH blackbox_exporter, {} probes at once: {} ({ok} succeeded)",
        addrs.len(),
        secs(took)
    );
}
