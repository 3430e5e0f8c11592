//! Active revocation checks of endpoint certificates (`revocation:`), against
//! real tools on loopback: a CA made by `openssl ca`, leaves whose AIA and CRL
//! distribution points name a small HTTP server of this test, which forwards
//! OCSP requests to `openssl ocsp` responders (a delegated responder of the CA,
//! and a forger signing with another key) and serves the CA's CRL; endpoints
//! served by `openssl s_server` with the chain.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use homelab_monitor::core::monitor::{CollectContext, Monitor};
use homelab_monitor::core::snapshot::{Health, Snapshot};
use homelab_monitor::monitors::certificates::modules::ProbeService;
use homelab_monitor::monitors::certificates::CertificateMonitor;

mod common;

use common::certs::{self, config};
use common::free_port;
use common::tools::{openssl, s_server, spawn_quiet, Kill};

/// The test's HTTP server: counts every request; routes by path.
struct Front {
    port: u16,
    requests: Arc<AtomicUsize>,
    /// path -> (ocsp responder port to forward a POST to) or a fixed body.
    routes: Arc<Mutex<HashMap<String, Route>>>,
}

#[derive(Clone)]
enum Route {
    /// Forward the POSTed OCSP request to `openssl ocsp` on this port.
    Forward(u16),
    /// Answer 200 with these bytes.
    Body(Vec<u8>),
    /// Close the connection without answering.
    Close,
}

impl Front {
    fn start() -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let (count, table) = (requests.clone(), routes.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (count, table) = (count.clone(), table.clone());
                std::thread::spawn(move || serve(conn, &count, &table));
            }
        });
        Front {
            port,
            requests,
            routes,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn route(&self, path: &str, r: Route) {
        self.routes.lock().unwrap().insert(path.to_string(), r);
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn serve(mut conn: TcpStream, count: &AtomicUsize, table: &Mutex<HashMap<String, Route>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    count.fetch_add(1, Ordering::SeqCst);
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[head_end..head_end + len].to_vec();
    let route = table.lock().unwrap().get(&path).cloned();
    let answer = match route {
        None => {
            let _ = conn.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        Some(Route::Close) => return,
        Some(Route::Body(b)) => b,
        Some(Route::Forward(port)) => match forward(port, &body) {
            Some(b) => b,
            None => return,
        },
    };
    let _ = conn.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            answer.len()
        )
        .as_bytes(),
    );
    let _ = conn.write_all(&answer);
}

/// POST `body` to `openssl ocsp` on `port`; its answer's body.
fn forward(port: u16, body: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(
        format!(
            "POST / HTTP/1.0\r\nContent-Type: application/ocsp-request\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).ok()?;
    let i = all.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some(all[i + 4..].to_vec())
}

/// Leaves of the test CA, each with its AIA and CRL distribution point paths on the front.
const LEAVES: &[(&str, &str, &str)] = &[
    ("good", "/ocsp", "/crl"),
    ("revoked", "/ocsp", "/crl"),
    ("garbage", "/garbage", "/crl-garbage"),
    ("forged", "/forged", "/crl-forged"),
    ("down", "/down", "/down"),
    ("direct", "/ocsp-direct", "/crl"),
    ("noeku", "/ocsp-noeku", "/crl"),
];

/// A CA (P-256) in `dir` with the leaves of [`LEAVES`] (`revoked` revoked),
/// a delegated OCSP signer, the CRL (crl.der), and another CA under the same
/// name (other.pem, other.key, other-crl.der) that signs forgeries.
fn make_pki(dir: &Path, front: &Front) {
    let mut sections = String::from(
        "[ ocsp_signer ]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = OCSPSigning\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n[ plain_signer ]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
    );
    for (name, ocsp, crl) in LEAVES {
        sections.push_str(&format!(
            "[ leaf_{name} ]\nbasicConstraints = CA:FALSE\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\nsubjectAltName = DNS:{name}.lan\nauthorityInfoAccess = OCSP;URI:{}\ncrlDistributionPoints = URI:{}\n",
            front.url(ocsp),
            front.url(crl)
        ));
    }
    certs::ca_folder(dir, "", &sections);
    // Another CA under the same name, with its own database.
    let text = std::fs::read_to_string(dir.join("ca.cnf"))
        .unwrap()
        .replace("database = index.txt", "database = other-index.txt")
        .replace("certificate = ca.pem", "certificate = other.pem")
        .replace("private_key = ca.key", "private_key = other.key")
        .replace("crlnumber = crlnumber", "crlnumber = other-crlnumber");
    std::fs::write(dir.join("other.cnf"), text).unwrap();
    std::fs::write(dir.join("other-crlnumber"), "01\n").unwrap();
    for (key, pem, cnf) in [
        ("ca.key", "ca.pem", "ca.cnf"),
        ("other.key", "other.pem", "other.cnf"),
    ] {
        certs::ca_cert(dir, cnf, key, pem, "Homelab Revocation CA");
    }
    // A delegated OCSP signer; one signed by the CA, but not for OCSP (no
    // OCSPSigning usage); the leaves.
    certs::ca_signed(dir, "ocsp", Some("ocsp_signer"));
    certs::ca_signed(dir, "plain", Some("plain_signer"));
    for (name, _, _) in LEAVES {
        certs::ca_signed(dir, name, Some(&format!("leaf_{name}")));
    }
    openssl(dir, &["ca", "-config", "ca.cnf", "-revoke", "revoked.pem"]);
    // The other CA revokes nothing: its CRL would call the revoked leaf good.
    std::fs::write(dir.join("other-index.txt"), "").unwrap();
    openssl(
        dir,
        &[
            "ca",
            "-config",
            "ca.cnf",
            "-gencrl",
            "-crlhours",
            "48",
            "-crlexts",
            "crl_ext",
            "-out",
            "crl.pem",
        ],
    );
    // Without a key id: only its signature tells it from the real CA's CRL.
    openssl(
        dir,
        &[
            "ca",
            "-config",
            "other.cnf",
            "-gencrl",
            "-crlhours",
            "48",
            "-out",
            "other-crl.pem",
        ],
    );
    openssl(
        dir,
        &[
            "ocsp",
            "-issuer",
            "ca.pem",
            "-cert",
            "good.pem",
            "-no_nonce",
            "-reqout",
            "ready.req",
        ],
    );
    certs::crl_der(dir, "crl.pem", "crl.der");
    certs::crl_der(dir, "other-crl.pem", "other-crl.der");
}

/// `openssl ocsp` answering from the CA's index, signing with `signer`/`key`.
fn responder(dir: &Path, signer: &str, key: &str) -> (Kill, u16) {
    let port = free_port();
    let guard = spawn_quiet(
        "openssl ocsp",
        Command::new(common::tool("openssl", "openssl"))
            .args([
                "ocsp",
                "-index",
                "index.txt",
                "-port",
                &port.to_string(),
                "-CA",
                "ca.pem",
                "-rsigner",
                signer,
                "-rkey",
                key,
                "-ndays",
                "1",
                "-ignore_err",
            ])
            .current_dir(dir),
    );
    // Ready once it answers a real request (a connection closed without one
    // would hang the single-threaded responder).
    let ready = std::fs::read(dir.join("ready.req")).unwrap();
    common::wait_for("openssl ocsp", 30, || forward(port, &ready));
    (guard, port)
}

/// `openssl s_server` serving `name`'s leaf with the CA in the chain.
fn endpoint(dir: &Path, name: &str) -> (Kill, String) {
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    s_server(
        dir,
        &[
            "-cert",
            &cert,
            "-key",
            &key,
            "-cert_chain",
            "ca.pem",
            "-www",
        ],
    )
}

fn status(s: &Snapshot, addr: &str, method: &str, st: &str) -> Option<f64> {
    s.value(
        "certificate_revocation_status",
        &[("endpoint", addr), ("method", method), ("status", st)],
    )
}

fn up(s: &Snapshot, addr: &str, method: &str) -> Option<f64> {
    s.value(
        "certificate_revocation_check_up",
        &[("endpoint", addr), ("method", method)],
    )
}

fn reason(s: &Snapshot, addr: &str, method: &str) -> Option<String> {
    s.family("certificate_revocation_check_error_info")?
        .samples
        .iter()
        .find(|x| x.label("endpoint") == Some(addr) && x.label("method") == Some(method))
        .and_then(|x| x.label("reason").map(str::to_owned))
}

/// Everything the PKI and servers of one test need, killed on drop.
struct Lab {
    dir: tempfile::TempDir,
    front: Front,
    /// The delegated responder's port (behind /ocsp).
    good_port: u16,
    servers: HashMap<&'static str, String>,
    _guards: Vec<Kill>,
}

fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let front = Front::start();
    make_pki(p, &front);
    let (r1, good_port) = responder(p, "ocsp.pem", "ocsp.key");
    let (r2, forged_port) = responder(p, "other.pem", "other.key");
    // The CA signing its answers itself (no delegated responder certificate).
    let (r3, direct_port) = responder(p, "ca.pem", "ca.key");
    front.route("/ocsp-direct", Route::Forward(direct_port));
    let (r4, plain_port) = responder(p, "plain.pem", "plain.key");
    front.route("/ocsp-noeku", Route::Forward(plain_port));
    front.route("/ocsp", Route::Forward(good_port));
    front.route("/forged", Route::Forward(forged_port));
    front.route(
        "/garbage",
        Route::Body(b"\x30\x03garbage, not an OCSP response".to_vec()),
    );
    front.route("/down", Route::Close);
    front.route(
        "/crl",
        Route::Body(std::fs::read(p.join("crl.der")).unwrap()),
    );
    front.route(
        "/crl-garbage",
        Route::Body(b"<html>not a CRL</html>".to_vec()),
    );
    front.route(
        "/crl-forged",
        Route::Body(std::fs::read(p.join("other-crl.der")).unwrap()),
    );
    let mut guards = vec![r1, r2, r3, r4];
    let mut servers = HashMap::new();
    for (name, _, _) in LEAVES {
        let (g, addr) = endpoint(p, name);
        guards.push(g);
        servers.insert(*name, addr);
    }
    Lab {
        dir,
        front,
        good_port,
        servers,
        _guards: guards,
    }
}

fn endpoints_yaml(lab: &Lab, names: &[&str], revocation: &str) -> String {
    let mut y = String::from("endpoints:\n");
    for n in names {
        y.push_str(&format!(
            "  - {{ address: \"{}\", server_name: {n}.lan{revocation} }}\n",
            lab.servers[n]
        ));
    }
    y
}

#[tokio::test]
async fn revoked_leaf_is_revoked_good_is_good_and_failures_are_unknown() {
    let lab = lab();
    let now = SystemTime::now();
    let all = [
        "good", "revoked", "garbage", "forged", "down", "direct", "noeku",
    ];
    let yaml = endpoints_yaml(
        &lab,
        &all,
        ", revocation: { ocsp: true, crl: true, timeout: 5s, cache_for: 1h }",
    );
    let m = CertificateMonitor::new(config(&yaml), lab.dir.path().to_path_buf());
    let s = m.collect_complete(CollectContext { now }).await.unwrap();
    let a = |n: &str| lab.servers[n].clone();
    for method in ["ocsp", "crl"] {
        assert_eq!(
            status(&s, &a("revoked"), method, "revoked"),
            Some(1.0),
            "{method}"
        );
        assert_eq!(
            status(&s, &a("revoked"), method, "good"),
            Some(0.0),
            "{method}"
        );
        assert_eq!(
            status(&s, &a("good"), method, "good"),
            Some(1.0),
            "{method}"
        );
        assert_eq!(
            status(&s, &a("good"), method, "revoked"),
            Some(0.0),
            "{method}"
        );
        assert_eq!(up(&s, &a("good"), method), Some(1.0));
        assert_eq!(up(&s, &a("revoked"), method), Some(1.0));
        assert_eq!(
            status(&s, &a("direct"), method, "good"),
            Some(1.0),
            "{method}"
        );
        // A responder that is down, answers garbage, or signs with a key the
        // issuer never delegated to: unknown with a reason, never good.
        for (n, want) in [
            ("garbage", "malformed"),
            ("forged", "bad_signature"),
            ("down", "connect"),
        ] {
            assert_eq!(
                status(&s, &a(n), method, "unknown"),
                Some(1.0),
                "{n} {method}"
            );
            assert_eq!(status(&s, &a(n), method, "good"), Some(0.0), "{n} {method}");
            assert_eq!(up(&s, &a(n), method), Some(0.0), "{n} {method}");
            assert_eq!(
                reason(&s, &a(n), method).as_deref(),
                Some(want),
                "{n} {method}"
            );
        }
    }
    // A certificate the CA issued for something else cannot sign OCSP answers.
    assert_eq!(status(&s, &a("noeku"), "ocsp", "unknown"), Some(1.0));
    assert_eq!(
        reason(&s, &a("noeku"), "ocsp").as_deref(),
        Some("bad_signature")
    );
    assert_eq!(status(&s, &a("noeku"), "crl", "good"), Some(1.0));
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    let next = |n: &str, method: &str| {
        s.value(
            "certificate_revocation_next_update_timestamp_seconds",
            &[("endpoint", &a(n)), ("method", method)],
        )
    };
    // openssl ocsp -ndays 1; openssl ca -gencrl -crlhours 48.
    let ocsp_next = next("good", "ocsp").unwrap();
    assert!((ocsp_next - now_s - 86_400.0).abs() < 600.0, "{ocsp_next}");
    let crl_next = next("good", "crl").unwrap();
    assert!((crl_next - now_s - 172_800.0).abs() < 600.0, "{crl_next}");
    let target = |n: &str| {
        s.targets
            .iter()
            .find(|t| t.target.contains(&a(n)))
            .unwrap()
            .clone()
    };
    let t = target("revoked");
    assert_eq!(t.health, Health::Findings, "{}", t.summary);
    assert!(
        t.summary.contains("OCSP responder revoked"),
        "{}",
        t.summary
    );
    assert!(t.summary.contains("CRL download revoked"), "{}", t.summary);
    assert_eq!(
        target("good").health,
        Health::Ok,
        "{}",
        target("good").summary
    );
    let facts = format!("{:?}", target("forged").facts);
    assert!(facts.contains("revocation unknown"), "{facts}");

    // Answers are cached per issuer and serial until nextUpdate or
    // cache_for: with the responder and CRL now answering garbage, a check 10
    // minutes later still knows without asking; two hours later (past
    // cache_for: 1h) it asks again and gets unknown.
    let p = lab.dir.path();
    let der = |name: &str| {
        let out = format!("{name}.der");
        openssl(
            p,
            &[
                "x509",
                "-in",
                &format!("{name}.pem"),
                "-outform",
                "DER",
                "-out",
                &out,
            ],
        );
        let bytes = std::fs::read(p.join(&out)).unwrap();
        homelab_monitor::monitors::certificates::parse::cert_from_der(&bytes, 0).unwrap()
    };
    let chain = [der("revoked"), der("ca")];
    let cfg: homelab_monitor::monitors::certificates::revocation::RevocationConfig =
        serde_yaml_ng::from_str("{ ocsp: true, crl: true, cache_for: 1h }").unwrap();
    let checker = homelab_monitor::monitors::certificates::revocation::Checker::new();
    let statuses = |checks: &[homelab_monitor::monitors::certificates::revocation::Check]| {
        checks
            .iter()
            .map(|c| match &c.outcome {
                Ok(a) => a.status.as_str().to_string(),
                Err((reason, _)) => format!("error {reason}"),
            })
            .collect::<Vec<_>>()
    };
    let before = lab.front.requests();
    assert_eq!(
        statuses(&checker.check(&cfg, &chain, &[], now).await),
        ["revoked", "revoked"]
    );
    assert_eq!(lab.front.requests() - before, 2);
    for path in ["/ocsp", "/crl"] {
        lab.front.route(path, Route::Body(b"garbage".to_vec()));
    }
    let later = now + Duration::from_secs(600);
    assert_eq!(
        statuses(&checker.check(&cfg, &chain, &[], later).await),
        ["revoked", "revoked"]
    );
    assert_eq!(
        lab.front.requests() - before,
        2,
        "a cached answer was asked again"
    );
    let much_later = now + Duration::from_secs(2 * 3600);
    assert_eq!(
        statuses(&checker.check(&cfg, &chain, &[], much_later).await),
        ["error malformed", "error malformed"]
    );
    assert_eq!(lab.front.requests() - before, 4);
    // Without the issuer in the chain the signature cannot be checked: unknown.
    assert_eq!(
        statuses(&checker.check(&cfg, &chain[..1], &[], now).await),
        ["error no_issuer", "error no_issuer"]
    );
    // ... unless the endpoint's ca_file holds it (a leaf served alone, signed
    // by the homelab root). A new checker: nothing cached.
    lab.front.route("/ocsp", Route::Forward(lab.good_port));
    lab.front.route(
        "/crl",
        Route::Body(std::fs::read(p.join("crl.der")).unwrap()),
    );
    let fresh = homelab_monitor::monitors::certificates::revocation::Checker::new();
    let anchors =
        homelab_monitor::monitors::certificates::revocation::anchors(Some(&p.join("ca.pem")));
    assert_eq!(anchors.len(), 1);
    assert_eq!(
        statuses(&fresh.check(&cfg, &chain[..1], &anchors, now).await),
        ["revoked", "revoked"]
    );
}

#[tokio::test]
async fn default_config_makes_no_revocation_request() {
    let lab = lab();
    let names = ["good", "revoked"];
    for extra in [
        "",
        ", revocation: {}",
        ", revocation: { ocsp: false, crl: false }",
    ] {
        let yaml = endpoints_yaml(&lab, &names, extra);
        let m = CertificateMonitor::new(config(&yaml), lab.dir.path().to_path_buf());
        let s = m
            .collect_complete(CollectContext {
                now: SystemTime::now(),
            })
            .await
            .unwrap();
        assert_eq!(
            s.value(
                "certificate_source_up",
                &[("endpoint", &lab.servers["good"])]
            ),
            Some(1.0)
        );
        assert!(
            s.family("certificate_revocation_status")
                .is_none_or(|f| f.samples.is_empty()),
            "{extra}"
        );
    }
    assert_eq!(
        lab.front.requests(),
        0,
        "the responder and CRL server saw a request"
    );
    // /probe: the same switch per module; off unless the module asks.
    let cfg = config("modules:\n  plain: {}\n  checked: { revocation: { ocsp: true } }\n");
    let svc = ProbeService::from_config(&cfg, lab.dir.path()).unwrap();
    let now = SystemTime::now();
    let ep = svc
        .endpoint(Some(&lab.servers["revoked"]), Some("plain"), None)
        .unwrap();
    let (s, ok) = svc.probe(&ep, now).await;
    assert!(ok);
    assert!(s
        .family("certificate_revocation_status")
        .is_none_or(|f| f.samples.is_empty()));
    assert_eq!(lab.front.requests(), 0);
    let ep = svc
        .endpoint(Some(&lab.servers["revoked"]), Some("checked"), None)
        .unwrap();
    let (s, _) = svc.probe(&ep, now).await;
    assert_eq!(
        status(&s, &lab.servers["revoked"], "ocsp", "revoked"),
        Some(1.0)
    );
    assert!(s.family("certificate_revocation_check_up").is_some());
    assert_eq!(lab.front.requests(), 1);
}

#[test]
fn revocation_keys_are_validated_at_load() {
    let err = certs::config_error;
    let e = err("endpoints: [{ address: \"a.lan:443\", revocation: { ocsp: true, oscp: true } }]");
    assert!(e.contains("oscp") && e.contains("ocsp"), "{e}");
    let e = err("endpoints: [{ address: \"a.lan:443\", revocation: { ocsp: true, timeout: 0s } }]");
    assert!(e.contains("revocation.timeout"), "{e}");
    let e = err("modules: { m: { revocation: { crl: yes please } } }");
    assert!(e.contains("crl"), "{e}");
    let e = err("modules: { m: { revocation: { crl: true, max_size: 0 } } }");
    assert!(e.contains("revocation.max_size"), "{e}");
    // Accepted: both switches, durations and sizes.
    config("endpoints: [{ address: \"a.lan:443\", revocation: { ocsp: true, crl: true, timeout: 3s, cache_for: 30m, max_size: 1MiB } }]");
}
