//! `--web.config.file`: TLS, client certificates and bcrypt basic auth, with
//! real TLS clients (curl and reqwest), and reload without a restart.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::tools::{pki, Pki};
use common::*;

fn write_pki(dir: &Path, p: &Pki) {
    for (name, body) in [
        ("ca.pem", &p.ca_pem),
        ("server.pem", &p.server_cert),
        ("server.key", &p.server_key),
        ("client.pem", &p.client_cert),
        ("client.key", &p.client_key),
    ] {
        std::fs::write(dir.join(name), body).unwrap();
    }
}

fn curl(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(tool("curl", "curl"))
        .current_dir(dir)
        .args([
            "-s",
            "-S",
            "-o",
            "-",
            "-w",
            "\nHTTP %{http_code}",
            "--max-time",
            "20",
        ])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The example served over TLS with the web config `web_yml` (and `args`),
/// the PKI written beside it; returns the folder, the PKI, the exporter and
/// its https `/metrics` URL.
fn tls_exporter(web_yml: &str, args: &[&str]) -> (tempfile::TempDir, Pki, Exporter, String) {
    let ex = example_copy();
    let d = ex.path();
    let p = pki();
    write_pki(d, &p);
    std::fs::write(d.join("web.yml"), web_yml).unwrap();
    let mut all = vec![
        "--config",
        "monitoring-config.yaml",
        "--web.config.file",
        "web.yml",
    ];
    all.extend_from_slice(args);
    let e = Exporter::start_tcp(d, &all);
    let url = format!("https://127.0.0.1:{}/metrics", e.port);
    (ex, p, e, url)
}

/// curl's options for the CA and the client certificate.
const WITH_CLIENT_CERT: [&str; 6] = [
    "--cacert",
    "ca.pem",
    "--cert",
    "client.pem",
    "--key",
    "client.key",
];

#[test]
fn tls_and_basic_auth_with_curl_and_reqwest_and_reload() {
    let hash = bcrypt::hash("CANARY-pass-1", 4).unwrap();
    let (ex, p, e, url) = tls_exporter(
        &format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nhttp_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\nbasic_auth_users:\n  prom: '{hash}'\n"),
        &["--log.level", "debug"],
    );
    let d = ex.path();

    // curl: right credentials, none, wrong ones, and plain HTTP.
    let (code, out) = curl(d, &["--cacert", "ca.pem", "-u", "prom:CANARY-pass-1", &url]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("terraform_state_up{") && out.ends_with("HTTP 200"),
        "{out}"
    );
    let (_, out) = curl(d, &["--cacert", "ca.pem", "-i", &url]);
    assert!(out.ends_with("HTTP 401"), "{out}");
    assert!(
        out.to_lowercase()
            .contains("www-authenticate: basic realm=\"homelab-monitor\""),
        "{out}"
    );
    assert!(
        out.to_lowercase()
            .contains("x-content-type-options: nosniff"),
        "{out}"
    );
    let (_, out) = curl(d, &["--cacert", "ca.pem", "-u", "prom:wrong", &url]);
    assert!(out.ends_with("HTTP 401"), "{out}");
    let (_, out) = curl(
        d,
        &["--cacert", "ca.pem", "-u", "nobody:CANARY-pass-1", &url],
    );
    assert!(out.ends_with("HTTP 401"), "{out}");
    let (code, out) = curl(
        d,
        &[
            "-u",
            "prom:CANARY-pass-1",
            &format!("http://127.0.0.1:{}/metrics", e.port),
        ],
    );
    assert!(
        code != 0 || !out.ends_with("HTTP 200"),
        "plain HTTP must not be served: {out}"
    );
    // An untrusted server certificate is refused by the client.
    let (code, _) = curl(d, &["-u", "prom:CANARY-pass-1", &url]);
    assert_ne!(code, 0);

    // reqwest (rustls) with the CA.
    let ca = reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).unwrap();
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let as_prom = |password: &str| {
        client
            .get(&url)
            .basic_auth("prom", Some(password))
            .send()
            .unwrap()
    };
    let r = as_prom("CANARY-pass-1");
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains("homelab_monitor_build_info"));
    let r = client.get(&url).send().unwrap();
    assert_eq!(r.status(), 401);

    // Change the password in the file: it applies without a restart.
    let hash2 = bcrypt::hash("CANARY-pass-2", 4).unwrap();
    std::fs::write(d.join("web.yml"), format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nbasic_auth_users:\n  prom: '{hash2}'\n")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if as_prom("CANARY-pass-2").status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new password never accepted: {}",
            e.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        as_prom("CANARY-pass-1").status(),
        401,
        "the old password must stop working"
    );
    // A broken edit keeps the last good configuration.
    std::fs::write(d.join("web.yml"), "basic_auth_users: [this is not a map\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(as_prom("CANARY-pass-2").status(), 200);
    assert!(e.logs().contains("web config not reloaded"), "{}", e.logs());
    assert!(!e.logs().contains("CANARY"), "a password reached the log");
}

#[test]
fn client_certificates_are_required_when_configured() {
    let (ex, _, _e, url) = tls_exporter(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS13\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
        &[],
    );
    let d = ex.path();
    let (code, out) = curl(d, &["--cacert", "ca.pem", &url]);
    assert!(
        code != 0 || !out.ends_with("HTTP 200"),
        "no client cert must fail: {out}"
    );
    let (code, out) = curl(d, &[&WITH_CLIENT_CERT[..], &[&url]].concat());
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("HTTP 200"), "{out}");
    let (code, _) = curl(
        d,
        &[&WITH_CLIENT_CERT[..], &["--tls-max", "1.2", &url]].concat(),
    );
    assert_ne!(code, 0, "TLS 1.2 must be refused with min_version TLS13");
}

#[test]
fn a_bad_web_config_stops_start_up_with_a_clear_message() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(
        t.path().join("web.yml"),
        "basic_auth_users:\n  prom: CANARY-plaintext\n",
    )
    .unwrap();
    let (code, _, err) = run(
        t.path(),
        &[
            "--web.config.file",
            "web.yml",
            "--web.listen-address",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("web.yml") && err.contains("not a bcrypt hash"),
        "{err}"
    );
    assert!(!err.contains("CANARY"), "{err}");
}
