//! Health checks against real loopback servers (HTTP, HTTPS, TCP), a real temp
//! filesystem (disk, file_age), `localhost` for DNS and real programs (command).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use homelab_monitor::core::config::{parse, Config};
use homelab_monitor::core::monitor::{CollectContext, Monitor};
use homelab_monitor::monitors::health::config::HealthChecksConfig;
use homelab_monitor::monitors::health::{
    self, Check, CheckContext, CheckError, CheckResult, HealthChecker, HealthMonitor,
};
use rcgen::{CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use common::*;

fn cfg(yaml: &str) -> HealthChecksConfig {
    let text = format!("health_checks:\n{yaml}");
    parse(&text, Path::new("test.yaml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .health_checks
        .unwrap()
}

async fn run(yaml: &str, base: &Path) -> Vec<CheckResult> {
    let c = cfg(yaml);
    let mut checker = HealthChecker::new();
    for check in &c.checks {
        let built = health::build_check(check, base).unwrap_or_else(|e| panic!("{e}"));
        checker.register_with_timeout(check.name.clone(), ArcCheck(built), check.timeout.0);
    }
    checker.run_all().await
}

struct ArcCheck(Arc<dyn Check>);

#[async_trait]
impl Check for ArcCheck {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    async fn run(&self, ctx: &CheckContext) -> Result<String, CheckError> {
        self.0.run(ctx).await
    }
}

/// An HTTP/1.1 server on 127.0.0.1 answering every request with `status` and `body`.
async fn http_server(status: u16, body: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

/// Accepts connections and never answers.
async fn silent_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    port
}

fn ok(r: &[CheckResult], name: &str) -> bool {
    let r = r.iter().find(|r| r.name == name).unwrap();
    r.success
}

fn msg<'a>(r: &'a [CheckResult], name: &str) -> &'a str {
    &r.iter().find(|r| r.name == name).unwrap().message
}

#[tokio::test]
async fn http_status_body_and_failures() {
    let up = http_server(200, "{\"database\": \"ok\"}").await;
    let broken = http_server(503, "down").await;
    let silent = silent_server().await;
    let closed = free_port();
    let yaml = format!(
        "  checks:
    - {{ name: up, http: {{ url: \"http://127.0.0.1:{up}/api/health\" }} }}
    - {{ name: body, http: {{ url: \"http://127.0.0.1:{up}/\", body_regex: '\"database\": ?\"ok\"' }} }}
    - {{ name: body-mismatch, http: {{ url: \"http://127.0.0.1:{up}/\", body_regex: 'failing' }} }}
    - {{ name: wrong-status, http: {{ url: \"http://127.0.0.1:{broken}/\" }} }}
    - {{ name: expected-503, http: {{ url: \"http://127.0.0.1:{broken}/\", expected_status: [503] }} }}
    - {{ name: unreachable, http: {{ url: \"http://127.0.0.1:{closed}/\" }} }}
    - {{ name: timeout, timeout: 300ms, http: {{ url: \"http://127.0.0.1:{silent}/\" }} }}
"
    );
    let r = run(&yaml, Path::new(".")).await;
    assert!(ok(&r, "up"), "{r:?}");
    assert!(ok(&r, "body"), "{r:?}");
    assert!(!ok(&r, "body-mismatch"));
    assert!(msg(&r, "body-mismatch").contains("does not match"));
    assert!(!ok(&r, "wrong-status"));
    assert!(msg(&r, "wrong-status").contains("503"), "{r:?}");
    assert!(ok(&r, "expected-503"), "{r:?}");
    assert!(!ok(&r, "unreachable"));
    assert!(msg(&r, "unreachable").contains("cannot connect"), "{r:?}");
    assert!(!ok(&r, "timeout"));
    assert!(msg(&r, "timeout").contains("timed out"), "{r:?}");
    let t = r.iter().find(|r| r.name == "timeout").unwrap();
    assert!(t.duration < Duration::from_secs(3), "{t:?}");
    // Bodies never leak into messages.
    assert!(r.iter().all(|r| !r.message.contains("database")));
}

/// An HTTP/1.1 server on 127.0.0.1 that records every request head and answers
/// by path: `/redirect` (302 to `/target`), `/target`, `/big` (4 KiB with a
/// length), `/big-stream` (4 KiB, no length: read until close), else 200 "ok".
async fn routing_server(heads: Arc<std::sync::Mutex<Vec<String>>>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                heads.lock().unwrap().push(head);
                let big = "x".repeat(4096);
                let resp = match path.as_str() {
                    "/redirect" => "HTTP/1.1 302 Found\r\nLocation: /target\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                    "/target" => "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\ntarget".to_string(),
                    "/big" => format!("HTTP/1.1 200 OK\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n{big}"),
                    "/big-stream" => format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{big}"),
                    _ => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_string(),
                };
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

/// The http check sends no credentials from the URL, follows no redirect and
/// fails a body over `max_body_size` (with and without a Content-Length).
#[tokio::test]
async fn http_no_credentials_no_redirects_body_capped() {
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let port = routing_server(heads.clone()).await;
    let yaml = format!(
        "  checks:
    - {{ name: userinfo, http: {{ url: \"http://ci:hunter2@127.0.0.1:{port}/userinfo\" }} }}
    - {{ name: redirect, http: {{ url: \"http://127.0.0.1:{port}/redirect\" }} }}
    - {{ name: redirect-expected, http: {{ url: \"http://127.0.0.1:{port}/redirect\", expected_status: [302] }} }}
    - {{ name: big, http: {{ url: \"http://127.0.0.1:{port}/big\", body_regex: 'x', max_body_size: 1KiB }} }}
    - {{ name: big-stream, http: {{ url: \"http://127.0.0.1:{port}/big-stream\", body_regex: 'x', max_body_size: 1KiB }} }}
    - {{ name: big-allowed, http: {{ url: \"http://127.0.0.1:{port}/big-stream\", body_regex: '^x+$', max_body_size: 8KiB }} }}
"
    );
    let r = run(&yaml, Path::new(".")).await;
    assert!(ok(&r, "userinfo"), "{r:?}");
    let heads = heads.lock().unwrap().clone();
    let userinfo = heads
        .iter()
        .find(|h| h.starts_with("GET /userinfo "))
        .expect("the userinfo request reached the server");
    assert!(
        !userinfo.to_ascii_lowercase().contains("authorization"),
        "{userinfo}"
    );
    assert!(!userinfo.contains("hunter2"), "{userinfo}");
    // 302 is not followed: it fails the default 2xx, passes when expected.
    assert!(!ok(&r, "redirect"), "{r:?}");
    assert!(msg(&r, "redirect").contains("302"), "{r:?}");
    assert!(ok(&r, "redirect-expected"), "{r:?}");
    assert!(
        !heads.iter().any(|h| h.starts_with("GET /target ")),
        "{heads:?}"
    );
    for name in ["big", "big-stream"] {
        assert!(!ok(&r, name), "{r:?}");
        assert!(msg(&r, name).contains("max_body_size"), "{r:?}");
    }
    assert!(ok(&r, "big-allowed"), "{r:?}");
    assert!(r.iter().all(|r| !r.message.contains("hunter2")), "{r:?}");
}

async fn https_server(dir: &Path) -> u16 {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        chain,
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn https_with_ca_file_skip_verify_and_untrusted() {
    let dir = tempfile::tempdir().unwrap();
    let port = https_server(dir.path()).await;
    let yaml = format!(
        "  checks:
    - {{ name: ca-file, http: {{ url: \"https://localhost:{port}/\", ca_file: ca.pem, body_regex: '^ok$' }} }}
    - {{ name: skip-verify, http: {{ url: \"https://localhost:{port}/\", insecure_skip_verify: true }} }}
    - {{ name: untrusted, http: {{ url: \"https://localhost:{port}/\" }} }}
"
    );
    let r = run(&yaml, dir.path()).await;
    assert!(ok(&r, "ca-file"), "{r:?}");
    assert!(ok(&r, "skip-verify"), "{r:?}");
    assert!(!ok(&r, "untrusted"));
    assert!(msg(&r, "untrusted").contains("TLS"), "{r:?}");
}

#[tokio::test]
async fn tcp_dns_disk_file_age() {
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = open.local_addr().unwrap().port();
    let closed = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("fresh/sub")).unwrap();
    std::fs::write(dir.path().join("fresh/sub/new.log"), "x").unwrap();
    std::fs::create_dir_all(dir.path().join("old")).unwrap();
    let old = dir.path().join("old/backup.tar");
    std::fs::write(&old, "x").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3 * 86_400))
        .unwrap();
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let yaml = format!(
        "  checks:
    - {{ name: tcp-open, tcp: {{ address: \"127.0.0.1:{open_port}\" }} }}
    - {{ name: tcp-closed, tcp: {{ address: \"127.0.0.1:{closed}\" }} }}
    - {{ name: dns, dns: {{ name: localhost }} }}
    - {{ name: dns-expected, dns: {{ name: localhost, expected_addresses: [127.0.0.1] }} }}
    - {{ name: dns-wrong, dns: {{ name: localhost, expected_addresses: [10.1.2.3] }} }}
    - {{ name: disk-ok, disk: {{ path: \".\", min_free_ratio: 0.0, min_free_bytes: 1 }} }}
    - {{ name: disk-full, disk: {{ path: \".\", min_free_bytes: \"1000000GiB\" }} }}
    - {{ name: disk-missing, disk: {{ path: nope, min_free_ratio: 0.1 }} }}
    - {{ name: fresh, file_age: {{ path: fresh, max_age: 1h }} }}
    - {{ name: old, file_age: {{ path: old, max_age: 26h }} }}
    - {{ name: empty, file_age: {{ path: empty, max_age: 26h }} }}
    - {{ name: missing, file_age: {{ path: missing, max_age: 26h }} }}
"
    );
    let r = run(&yaml, dir.path()).await;
    for n in ["tcp-open", "dns", "dns-expected", "disk-ok", "fresh"] {
        assert!(ok(&r, n), "{n}: {r:?}");
    }
    for n in [
        "tcp-closed",
        "dns-wrong",
        "disk-full",
        "disk-missing",
        "old",
        "empty",
        "missing",
    ] {
        assert!(!ok(&r, n), "{n}: {r:?}");
    }
    assert!(msg(&r, "dns-wrong").contains("10.1.2.3"));
    assert!(msg(&r, "disk-full").contains("min_free_bytes"), "{r:?}");
    assert!(msg(&r, "old").contains("older than max_age"), "{r:?}");
    drop(open);
}

#[tokio::test]
async fn commands_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "  allow_commands: true
  checks:
    - { name: ok-cmd, command: { argv: [\"true\"] } }
    - { name: fail-cmd, command: { argv: [\"false\"] } }
    - { name: exit-3, command: { argv: [\"sh\", \"-c\", \"exit 3\"], expected_exit_code: 3 } }
    - { name: slow, timeout: 500ms, command: { argv: [\"sleep\", \"30\"] } }
    - { name: chatty, timeout: 10s, command: { argv: [\"sh\", \"-c\", \"yes secret-output | head -c 10000000; exit 0\"] } }
    - { name: missing, command: { argv: [\"/nonexistent/program\"] } }
";
    let started = std::time::Instant::now();
    let r = run(yaml, dir.path()).await;
    assert!(ok(&r, "ok-cmd"), "{r:?}");
    assert!(!ok(&r, "fail-cmd"));
    assert!(ok(&r, "exit-3"), "{r:?}");
    assert!(!ok(&r, "slow"));
    assert!(msg(&r, "slow").contains("timed out"));
    assert!(!ok(&r, "missing"));
    // Output is never shown and is read only up to a limit.
    assert!(r.iter().all(|r| !r.message.contains("secret-output")));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn config_errors_name_file_and_line() {
    let bad_regex = "custom_monitors: {}\nhealth_checks:\n  checks:\n    - name: web\n      http:\n        url: \"http://127.0.0.1:1/\"\n        body_regex: \"(unclosed\"\n";
    let e = parse(bad_regex, Path::new("mc.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mc.yaml")
            && e.contains("line 7")
            && e.contains("body_regex")
            && e.contains("invalid regular expression (unclosed group)")
            && !e.contains('\n'),
        "{e}"
    );

    let cmd_off =
        "health_checks:\n  checks:\n    - name: zpool\n      command: { argv: [zpool, status] }\n";
    let e = parse(cmd_off, Path::new("mc.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("allow_commands"), "{e}");

    let typo = "health_checks:\n  checks:\n    - name: x\n      tcp: { adress: \"127.0.0.1:1\" }\n";
    let e = parse(typo, Path::new("mc.yaml")).unwrap_err().to_string();
    assert!(e.contains("line 4") && e.contains("address"), "{e}");

    let two = "health_checks:\n  checks:\n    - name: x\n      tcp: { address: \"127.0.0.1:1\" }\n      dns: { name: localhost }\n";
    let e = parse(two, Path::new("mc.yaml")).unwrap_err().to_string();
    assert!(e.contains("exactly one"), "{e}");

    let dup = "health_checks:\n  checks:\n    - { name: x, dns: { name: localhost } }\n    - { name: x, dns: { name: localhost } }\n";
    let e = parse(dup, Path::new("mc.yaml")).unwrap_err().to_string();
    assert!(e.contains("used twice"), "{e}");

    let ratio =
        "health_checks:\n  checks:\n    - { name: d, disk: { path: /, min_free_ratio: 5 } }\n";
    assert!(parse(ratio, Path::new("mc.yaml")).is_err());
    let url = "health_checks:\n  checks:\n    - { name: u, http: { url: \"ftp://x/\" } }\n";
    assert!(parse(url, Path::new("mc.yaml")).is_err());
}

#[tokio::test]
async fn monitor_exports_metrics_and_caches_per_interval() {
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = open.local_addr().unwrap().port();
    let c = cfg(&format!(
        "  checks:\n    - {{ name: db, interval: 1h, tcp: {{ address: \"127.0.0.1:{port}\" }} }}\n    - {{ name: gone, interval: 1h, tcp: {{ address: \"127.0.0.1:{}\" }} }}\n",
        free_port()
    ));
    let m = HealthMonitor::new(&c, Path::new("."), None);
    assert_eq!(m.name(), "health_checks");
    assert_eq!(m.check_interval(), Duration::from_secs(3600));
    let now = SystemTime::now();
    let s = m.collect_complete(CollectContext { now }).await.unwrap();
    assert_eq!(
        s.value("health_check_success", &[("check", "db"), ("type", "tcp")]),
        Some(1.0)
    );
    assert_eq!(
        s.value(
            "health_check_success",
            &[("check", "gone"), ("type", "tcp")]
        ),
        Some(0.0)
    );
    assert!(s
        .value("health_check_duration_seconds", &[("check", "db")])
        .is_some());
    assert_eq!(s.targets.len(), 2);
    // Within the interval a second collection reuses the results (the port is gone now).
    drop(open);
    let s2 = m.collect_complete(CollectContext { now }).await.unwrap();
    assert_eq!(
        s2.value("health_check_success", &[("check", "db")]),
        Some(1.0)
    );
}

#[test]
fn status_and_metrics_include_health_checks() {
    let dir = tempfile::tempdir().unwrap();
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = open.local_addr().unwrap().port();
    std::fs::write(
        dir.path().join("mc.yaml"),
        format!("health_checks:\n  checks:\n    - {{ name: db, tcp: {{ address: \"127.0.0.1:{port}\" }} }}\n    - {{ name: gone, tcp: {{ address: \"127.0.0.1:{}\" }} }}\n", free_port()),
    )
    .unwrap();
    let (code, out, err) = common::run(dir.path(), &["--status", "--config", "mc.yaml"]);
    assert!(
        out.contains("health_checks") && out.contains("db (tcp)") && out.contains("gone (tcp)"),
        "{out}\n{err}"
    );
    assert_eq!(code, 2, "a failing check is a finding: {out}");
    // The checks table of --status, from the monitor's check facts: failing first.
    let checks = out
        .split("Checks (failing first)\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no checks table: {out}"));
    let gone = checks.find("gone").unwrap_or_else(|| panic!("{out}"));
    let db = checks.find(" db ").unwrap_or_else(|| panic!("{out}"));
    assert!(gone < db, "{out}");
    assert!(
        checks
            .lines()
            .any(|l| l.contains("gone") && l.contains("tcp") && l.contains("failing")),
        "{out}"
    );

    let e = Exporter::start(dir.path(), &["--config", "mc.yaml"]);
    e.wait_ready();
    let m = e.metrics();
    assert_eq!(
        series(&m, "health_check_success{check=\"db\",type=\"tcp\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        series(&m, "health_check_success{check=\"gone\",type=\"tcp\"}"),
        Some(0.0),
        "{m}"
    );
    assert!(m.contains("# TYPE health_check_duration_seconds gauge"));
    let _ = Config::load(&dir.path().join("mc.yaml")).unwrap();
}

/// The seed's shape: register(name, check), run_all().
#[tokio::test]
async fn library_api_custom_check() {
    struct Storage(bool);
    #[async_trait]
    impl Check for Storage {
        fn kind(&self) -> &'static str {
            "storage"
        }
        async fn run(&self, _ctx: &CheckContext) -> Result<String, CheckError> {
            if self.0 {
                Ok("42% free".into())
            } else {
                Err(CheckError::Failed("disk full".into()))
            }
        }
    }
    struct Panics;
    #[async_trait]
    impl Check for Panics {
        fn kind(&self) -> &'static str {
            "panics"
        }
        async fn run(&self, _ctx: &CheckContext) -> Result<String, CheckError> {
            panic!("boom")
        }
    }
    let mut checker = HealthChecker::new();
    checker
        .register("storage", Storage(true))
        .register("network", Storage(false))
        .register("panics", Panics);
    assert_eq!(checker.names(), ["storage", "network", "panics"]);
    let r = checker.run_all().await;
    assert_eq!(r.len(), 3);
    assert!(r[0].success && r[0].kind == "storage" && r[0].message == "42% free");
    assert!(!r[1].success && r[1].message == "disk full");
    assert!(!r[2].success && r[2].message.contains("panicked"));
}
