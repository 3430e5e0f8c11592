//! Remote Terraform state over HTTP, against servers on loopback: a small
//! GitLab-shaped server (states pushed by terraform's http backend), GitLab
//! project discovery, Gitea's state registry, mutual TLS, a fleet of entries,
//! drift reports of remote states, and bad input: unreachable port, DNS
//! failure, TLS error, 500, HTML, huge body, wrong credentials.
//!
//! A canary secret is put in states, tokens and connection strings: it must never
//! appear in metrics, reports or debug logs (tests/common/remote.rs).

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::remote::*;
use common::stub::{resp, Req, Resp, Server};
use common::{free_port, promtool_check, repo, series, BIN};

// ---------------------------------------------------------------- HTTP backend (GitLab shape)

/// GitLab's Terraform state API: `/api/v4/projects/<id>/terraform/state/<name>`,
/// GET (204 when empty), POST to write, POST/DELETE `/lock`; basic auth with the token
/// as password. Project 43 forbids (403). Extra paths for bad input.
fn gitlab(token: &'static str, down: Arc<AtomicBool>, gets: Arc<AtomicUsize>) -> Server {
    let states: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
    let flaky = Arc::new(AtomicUsize::new(0));
    Server::start(Arc::new(move |r: &Req| {
        use base64::Engine;
        let path = r.path.split('?').next().unwrap_or("").to_string();
        match path.as_str() {
            "/html" => {
                return Resp {
                    status: 200,
                    headers: vec![("Content-Type".into(), "text/html".into())],
                    body: b"<html><body>Sign in</body></html>".to_vec(),
                }
            }
            "/fail" => return resp(500, "oops"),
            // Every other request fails: one retry gets through.
            "/flaky" => {
                return if flaky.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
                    resp(502, "bad gateway")
                } else {
                    resp(
                        200,
                        r#"{"version":4,"serial":1,"lineage":"f","resources":[]}"#,
                    )
                };
            }
            "/huge" => return resp(200, vec![b' '; 300_000]),
            _ => {}
        }
        let Some(rest) = path.strip_prefix("/api/v4/projects/") else {
            return resp(404, "");
        };
        let (project, name) = match rest.split_once("/terraform/state/") {
            Some(x) => x,
            None => return resp(404, ""),
        };
        let auth = r.headers.get("authorization").cloned().unwrap_or_default();
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("ci:{token}"))
        );
        // Project 44 is project 42 read with a PRIVATE-TOKEN header.
        let (project, private) = match project {
            "44" => (
                "42",
                r.headers.get("private-token").map(String::as_str) == Some(token),
            ),
            p => (p, false),
        };
        if auth != good && !private {
            return resp(401, "{\"message\":\"401 Unauthorized\"}");
        }
        if project == "43" {
            return resp(403, "{\"message\":\"403 Forbidden\"}");
        }
        if down.load(Ordering::Relaxed) {
            return resp(503, "maintenance");
        }
        let key = format!("{project}/{}", name.trim_end_matches("/lock"));
        if name.ends_with("/lock") {
            return resp(200, "");
        }
        let mut st = states.lock().unwrap();
        match r.method.as_str() {
            "GET" => {
                gets.fetch_add(1, Ordering::Relaxed);
                match st.get(&key) {
                    None => resp(204, ""),
                    Some(b) => {
                        let etag = tag(b);
                        if r.headers.get("if-none-match") == Some(&etag) {
                            return Resp {
                                status: 304,
                                headers: vec![("ETag".into(), etag)],
                                body: Vec::new(),
                            };
                        }
                        Resp {
                            status: 200,
                            headers: vec![
                                ("ETag".into(), etag),
                                ("Content-Type".into(), "application/json".into()),
                            ],
                            body: b.clone(),
                        }
                    }
                }
            }
            "POST" => {
                st.insert(key, r.body.clone());
                resp(200, "")
            }
            "DELETE" => {
                st.remove(&key);
                resp(200, "")
            }
            _ => resp(405, ""),
        }
    }))
}

/// An HTTPS server with a self-signed certificate for `localhost` (trusted only
/// through `ca_file`); it answers every request with a small state. Returns the
/// port and the certificate (PEM).
fn self_signed_tls_server() -> (u16, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let pem = cert.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        cert.signing_key.serialize_der(),
    ));
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let body = r#"{"version":4,"serial":3,"lineage":"tls","resources":[]}"#;
    // Bounded: a handful of connections (retries included), then the thread ends.
    let port = serve_tls(Arc::new(cfg), 30, body.into());
    (port, pem)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_backend_gitlab_shape_with_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let down = Arc::new(AtomicBool::new(false));
    let gets = Arc::new(AtomicUsize::new(0));
    let srv = gitlab(CANARY, down.clone(), gets.clone());
    let addr = srv.url("/api/v4/projects/42/terraform/state/prod");
    let proj = dir.join("infra");
    project(
        &proj,
        &format!(
            r#"backend "http" {{
    address        = "{addr}"
    lock_address   = "{addr}/lock"
    unlock_address = "{addr}/lock"
    lock_method    = "POST"
    unlock_method  = "DELETE"
    username       = "ci"
  }}"#
        ),
    );
    let env = [("TF_HTTP_PASSWORD", CANARY)];
    tf(&proj, &["init", "-input=false"], &env);
    apply(&proj, 3, &env);

    let closed = free_port();
    let (tls, ca_pem) = self_signed_tls_server();
    std::fs::write(dir.join("ca.pem"), ca_pem).unwrap();
    // The monitor reads these from an injected environment; the binary's
    // children get them explicitly.
    let vars = [
        ("TEST_GITLAB_TOKEN", CANARY),
        ("TEST_GITLAB_WRONG", "not-the-token"),
    ];
    let yaml = format!(
        r#"custom_monitors:
  terraform_state:
    check_interval: 1ms
    max_file_size: 200000
    remote: {{ request_timeout: 5s, retries: 1 }}
    backends:
      - {{ type: http, address: "{addr}", username: ci, token: {{ env: TEST_GITLAB_TOKEN }} }}
      - {{ type: http, address: "{private}", auth: private_token, token: {{ env: TEST_GITLAB_TOKEN }} }}
      - {{ type: http, address: "{empty}", username: ci, token: {{ env: TEST_GITLAB_TOKEN }} }}
      - {{ type: http, address: "{wrong}", username: ci, token: {{ env: TEST_GITLAB_WRONG }} }}
      - {{ type: http, address: "{forbidden}", username: ci, token: {{ env: TEST_GITLAB_TOKEN }} }}
      - {{ type: http, address: "{html}" }}
      - {{ type: http, address: "{fail}" }}
      - {{ type: http, address: "{flaky}" }}
      - {{ type: http, address: "{huge}" }}
      - {{ type: http, address: "http://127.0.0.1:{closed}/state" }}
      - {{ type: http, address: "http://nonexistent.invalid/state" }}
      - {{ type: http, address: "https://127.0.0.1:{tls}/state" }}
      - {{ type: http, address: "https://localhost:{tls}/state", ca_file: ca.pem }}
"#,
        empty = srv.url("/api/v4/projects/42/terraform/state/empty"),
        private = srv.url("/api/v4/projects/44/terraform/state/prod"),
        wrong = srv.url("/api/v4/projects/42/terraform/state/staging"),
        forbidden = srv.url("/api/v4/projects/43/terraform/state/prod"),
        html = srv.url("/html"),
        fail = srv.url("/fail"),
        flaky = srv.url("/flaky"),
        huge = srv.url("/huge"),
    );
    let (m, text) = monitor_and_scrape_env(dir, &yaml, &vars).await;
    let label = |p: &str| format!("http://127.0.0.1:{}{p}", srv.port);
    let prod = label("/api/v4/projects/42/terraform/state/prod");
    assert_eq!(up(&text, &prod), Some(1.0), "{text}");
    assert_eq!(instances(&text, &prod), Some(3.0), "{text}");
    assert!(bytes(&text, &prod) > 0.0);
    // A transient 502 is retried (backoff with jitter) within the timeout.
    assert_eq!(up(&text, &label("/flaky")), Some(1.0), "retry: {text}");
    // The same TLS server is fine when its CA is given.
    let trusted = format!("https://localhost:{tls}/state");
    assert_eq!(up(&text, &trusted), Some(1.0), "ca_file: {text}");
    let private = label("/api/v4/projects/44/terraform/state/prod");
    assert_eq!(
        instances(&text, &private),
        Some(3.0),
        "PRIVATE-TOKEN auth: {text}"
    );
    // 204: no state yet is not an error, and not a series.
    let empty = label("/api/v4/projects/42/terraform/state/empty");
    assert_eq!(up(&text, &empty), None, "{text}");
    for (l, reason) in [
        (
            label("/api/v4/projects/42/terraform/state/staging"),
            "http_401",
        ),
        (
            label("/api/v4/projects/43/terraform/state/prod"),
            "http_403",
        ),
        (label("/html"), "not_json"),
        (label("/fail"), "http_5xx"),
        (label("/huge"), "too_large"),
        (format!("http://127.0.0.1:{closed}/state"), "unreachable"),
        ("http://nonexistent.invalid/state".into(), "dns"),
        (format!("https://127.0.0.1:{tls}/state"), "tls"),
    ] {
        assert_eq!(up(&text, &l), Some(0.0), "{l}: {text}");
        assert_eq!(
            error_reason(&text, &l).as_deref(),
            Some(reason),
            "{l}: {text}"
        );
    }

    // Unchanged: conditional GET, 0 bytes more.
    let before = bytes(&text, &prod);
    let text = scrape(&m).await;
    assert_eq!(
        bytes(&text, &prod),
        before,
        "an unchanged state was downloaded again"
    );
    assert_eq!(up(&text, &prod), Some(1.0));

    // A change is read.
    apply(&proj, 5, &env);
    let text = scrape(&m).await;
    assert_eq!(instances(&text, &prod), Some(5.0), "{text}");
    assert!(bytes(&text, &prod) > before);

    // Backend down: last good values kept, marked stale, with the reason.
    down.store(true, Ordering::Relaxed);
    let text = scrape(&m).await;
    assert_eq!(up(&text, &prod), Some(0.0), "{text}");
    assert_eq!(
        series(
            &text,
            &format!("terraform_state_stale{{state_file=\"{prod}\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(instances(&text, &prod), Some(5.0), "{text}");
    assert_eq!(error_reason(&text, &prod).as_deref(), Some("http_5xx"));
    down.store(false, Ordering::Relaxed);

    // The binary: report and debug logs never show the token or state values.
    let out = status_without_canary(dir, &vars);
    assert!(
        out.contains("http_401") || out.contains("HTTP 401"),
        "{out}"
    );

    // The served exporter: /metrics is 200 with every source, and promtool-clean.
    let env_prefix: Vec<String> = std::iter::once("env".to_string())
        .chain(vars.iter().map(|(k, v)| format!("{k}={v}")))
        .collect();
    let env_prefix: Vec<&str> = env_prefix.iter().map(String::as_str).collect();
    let exporter = common::Exporter::start_with(
        dir,
        &["--config", "monitoring-config.yaml"],
        Some(&env_prefix),
    );
    exporter.wait_ready();
    let served = exporter.metrics();
    assert_eq!(up(&served, &prod), Some(1.0), "{served}");
    assert_eq!(
        error_reason(&served, &format!("http://127.0.0.1:{closed}/state")).as_deref(),
        Some("unreachable")
    );
    assert!(!served.contains(CANARY));
    promtool_check(&served);
    assert!(!exporter.logs().contains(CANARY), "{}", exporter.logs());
    drop(exporter);

    // Zero-config: the working directory's backend record (credentials from
    // TF_HTTP_PASSWORD). On the process environment on purpose: the variable
    // is set after the monitor is built, so this checks that production
    // takes its snapshot of the environment at each collection.
    let zm = monitor(
        dir,
        "custom_monitors:\n  terraform_state:\n    working_dirs: [infra]\n",
    );
    std::env::set_var("TF_HTTP_PASSWORD", CANARY);
    let text = scrape(&zm).await;
    assert_eq!(up(&text, &prod), Some(1.0), "{text}");
    assert_eq!(instances(&text, &prod), Some(5.0), "{text}");
    drop(srv);
}

#[test]
fn config_rejects_bad_backend_entries() {
    let p = Path::new("x.yaml");
    for (yaml, want) in [
        ("custom_monitors:\n  terraform_state:\n    backends:\n      - { type: s3, bucket: b }\n", "set key"),
        ("custom_monitors:\n  terraform_state:\n    backends:\n      - { type: http, address: \"https://u:p@h/x\" }\n", "credentials"),
        ("custom_monitors:\n  terraform_state:\n    backends:\n      - { type: pg, conn_str: { file: a, env: B } }\n", "not both"),
        ("custom_monitors:\n  terraform_state:\n    backends:\n      - { type: ftp }\n", "ftp"),
        ("custom_monitors:\n  terraform_state:\n    backends:\n      - { type: gitlab, project: infra, token: { env: T } }\n", "full path"),
        ("custom_monitors:\n  terraform_state:\n    backends:\n      - { type: gitlab, project: a/b }\n", "token"),
        ("custom_monitors:\n  terraform_state:\n    backends:\n      - { type: hcp, organization: o, tokn: x }\n", "tokn"),
    ] {
        let e = homelab_monitor::core::config::parse(yaml, p).unwrap_err().to_string();
        assert!(e.contains(want), "{yaml}: {e}");
        assert!(!e.contains(":p@"), "{e}");
    }
}

// ---------------------------------------------------------------- drift reports, baselines and policies of remote states

/// Remote states get the same drift-report, baseline and policy logic as local
/// files: the reports live in `remote.reports_dir`, in a folder named after the
/// state's label. A broken drift report beside one remote state is that state's
/// `drift_report` error; its `terraform_state_up` stays 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_states_get_drift_reports_baselines_and_policies() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let prod = std::fs::read(repo().join("examples/terraform/environments/prod/terraform.tfstate"))
        .unwrap();
    let staging =
        std::fs::read(repo().join("examples/terraform/environments/staging/terraform.tfstate"))
            .unwrap();
    let states: Arc<HashMap<String, Vec<u8>>> = Arc::new(HashMap::from([
        (
            "/api/v4/projects/1/terraform/state/prod".to_string(),
            prod.clone(),
        ),
        (
            "/api/v4/projects/1/terraform/state/staging".to_string(),
            staging,
        ),
    ]));
    let server = Server::start(Arc::new(move |r: &Req| {
        match states.get(r.path.split('?').next().unwrap_or("")) {
            Some(b) => resp(200, b.clone()),
            None => resp(404, "no"),
        }
    }));
    let prod_label = server.url("/api/v4/projects/1/terraform/state/prod");
    let staging_label = server.url("/api/v4/projects/1/terraform/state/staging");
    let folder = |label: &str| dir.join("reports").join(label.replacen("://", "/", 1));

    // prod: the drift report terraform wrote for it, and a baseline approved
    // before one aws_instance was added (so one unapproved change).
    let p = folder(&prod_label);
    std::fs::create_dir_all(&p).unwrap();
    std::fs::copy(
        repo().join("examples/terraform/environments/prod/drift.json"),
        p.join("prod.drift.json"),
    )
    .unwrap();
    let mut base: serde_json::Value = serde_json::from_slice(&prod).unwrap();
    for r in base["resources"].as_array_mut().unwrap() {
        if r["type"] == "aws_instance" {
            r["instances"].as_array_mut().unwrap().truncate(1);
        }
    }
    std::fs::write(
        p.join("baseline.tfstate"),
        serde_json::to_vec(&base).unwrap(),
    )
    .unwrap();
    // staging: a drift report that is not a plan.
    let s = folder(&staging_label);
    std::fs::create_dir_all(&s).unwrap();
    std::fs::write(
        s.join("staging.drift.json"),
        format!("<html>{CANARY}</html>"),
    )
    .unwrap();
    // A policy evaluated on remote states too.
    std::fs::write(
        dir.join("instances.rego"),
        "package main\n\ndeny contains msg if {\n  some r in input.resources\n  r.type == \"aws_instance\"\n  msg := sprintf(\"%s.%s is an instance\", [r.type, r.name])\n}\n",
    )
    .unwrap();

    let yaml = format!(
        "custom_monitors:\n  terraform_state:\n    check_interval: 1ms\n    drift_report: \"{{stem}}.drift.json\"\n    baseline: baseline.tfstate\n    policies: [instances.rego]\n    remote:\n      reports_dir: reports\n    backends:\n      - {{ type: http, address: \"{}\", auth: none }}\n      - {{ type: http, address: \"{}\", auth: none }}\n",
        prod_label, staging_label
    );
    let (m, text) = monitor_and_scrape(dir, &yaml).await;
    let v = |s: &str| series(&text, s).unwrap_or_else(|| panic!("no {s}:\n{text}"));
    assert_eq!(
        v(&format!(
            "terraform_state_up{{state_file=\"{prod_label}\"}}"
        )),
        1.0
    );
    assert_eq!(
        v(&format!(
            "terraform_state_drift_report_up{{state_file=\"{prod_label}\"}}"
        )),
        1.0
    );
    assert_eq!(
        v(&format!(
            "terraform_state_drift{{state_file=\"{prod_label}\"}}"
        )),
        2.0,
        "the example prod report has two drifted instances"
    );
    assert_eq!(
        v(&format!(
            "terraform_state_baseline_up{{state_file=\"{prod_label}\"}}"
        )),
        1.0
    );
    assert_eq!(
        v(&format!(
            "terraform_state_unapproved_changes{{state_file=\"{prod_label}\"}}"
        )),
        1.0
    );
    assert_eq!(
        v(&format!("terraform_state_policy_violations{{state_file=\"{prod_label}\",policy=\"instances\",severity=\"high\"}}")),
        1.0
    );
    // staging: state fine, its drift report unusable and named as such.
    assert_eq!(
        v(&format!(
            "terraform_state_up{{state_file=\"{staging_label}\"}}"
        )),
        1.0
    );
    assert_eq!(
        v(&format!(
            "terraform_state_drift_report_up{{state_file=\"{staging_label}\"}}"
        )),
        0.0
    );
    assert!(
        text.contains(&format!(
            "terraform_state_error_info{{state_file=\"{staging_label}\",component=\"drift_report\""
        )),
        "{text}"
    );
    assert!(
        series(
            &text,
            &format!("terraform_state_baseline_up{{state_file=\"{staging_label}\"}}")
        )
        .is_none(),
        "no baseline file: no series"
    );

    // A reports_dir that does not exist is reported, not ignored.
    let (_m2, t2) = monitor_and_scrape(
        dir,
        &yaml.replace("reports_dir: reports", "reports_dir: reprots"),
    )
    .await;
    assert_eq!(
        series(&t2, "terraform_state_error_info{state_file=\"reprots\",component=\"discovery\",reason=\"not_found\"}"),
        Some(1.0),
        "{t2}"
    );
    assert_eq!(
        series(
            &t2,
            &format!("terraform_state_up{{state_file=\"{prod_label}\"}}")
        ),
        Some(1.0)
    );

    // Approving the change (the baseline catches up) clears the unapproved count
    // at the next collection; the state itself did not change.
    tokio::time::sleep(Duration::from_millis(5)).await;
    std::fs::write(p.join("baseline.tfstate"), &prod).unwrap();
    let text = scrape(&m).await;
    assert_eq!(
        series(
            &text,
            &format!("terraform_state_unapproved_changes{{state_file=\"{prod_label}\"}}")
        ),
        Some(0.0),
        "{text}"
    );
}

#[test]
fn reports_dir_must_not_be_empty() {
    let p = Path::new("x.yaml");
    let e = homelab_monitor::core::config::parse(
        "custom_monitors:\n  terraform_state:\n    remote:\n      reports_dir: \"\"\n",
        p,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("reports_dir"), "{e}");
}

/// `--state-dir` pointed at a Terraform working directory reads the backend its
/// `.terraform/terraform.tfstate` records (here http with basic auth, the
/// password a canary), without a config file, and never prints the password.
#[test]
fn state_dir_pointing_at_a_working_directory_reads_its_backend() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let server = basic_auth_server(
        "ci",
        CANARY,
        "/state/homelab",
        "examples/terraform/environments/prod/terraform.tfstate",
    );
    let wd = dir.join("infra");
    std::fs::create_dir_all(wd.join(".terraform")).unwrap();
    std::fs::write(
        wd.join(".terraform/terraform.tfstate"),
        serde_json::json!({
            "version": 3,
            "serial": 1,
            "backend": {
                "type": "http",
                "config": {"address": server.url("/state/homelab"), "username": "ci", "password": CANARY},
                "hash": 1
            }
        })
        .to_string(),
    )
    .unwrap();
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(["--state-dir", "infra", "--status", "--log.level", "debug"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run homelab-monitor");
    let all = output_text(&out);
    assert!(!all.contains(CANARY), "canary leaked:\n{all}");
    let label = server.url("/state/homelab");
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains(&label))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("the remote state is not in the status:\n{all}"));
    assert!(!line.to_lowercase().contains("error"), "{line}\n{all}");

    // The same working directory with a wrong password: a clear per-source error.
    let rec = std::fs::read_to_string(wd.join(".terraform/terraform.tfstate")).unwrap();
    std::fs::write(
        wd.join(".terraform/terraform.tfstate"),
        rec.replace(CANARY, "wrong"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(["--state-dir", "infra", "--status"])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run homelab-monitor");
    let all = output_text(&out);
    assert!(all.contains("401"), "{all}");
}

/// An HTTPS server on localhost that requires a client certificate from
/// `certs/ca.crt` and answers every request with `body`; bounded connections.
fn mtls_server(certs: &Path, body: Vec<u8>) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(certs.join("ca.crt")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let (chain, key) = server_cert_and_key(certs);
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    serve_tls(Arc::new(cfg), 60, body)
}

/// Serves `body` over TLS (`cfg`) on a loopback port to every request, for at
/// most `conns` connections; returns the port.
fn serve_tls(cfg: Arc<rustls::ServerConfig>, conns: usize, body: Vec<u8>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for _ in 0..conns {
            let Ok((s, _)) = l.accept() else { return };
            let (cfg, body) = (cfg.clone(), body.clone());
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut buf = Vec::new();
                let mut b = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                }
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(&body);
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    port
}

/// Client certificates (config files, or inline PEM in a working directory's
/// record as Terraform's http backend takes them), a private CA, and
/// `skip_cert_verification`; without the certificate the server refuses.
#[tokio::test(flavor = "multi_thread")]
async fn http_backend_with_client_certificates_and_private_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let certs = mtls_certificates(dir);
    let state =
        std::fs::read(repo().join("examples/terraform/environments/prod/terraform.tfstate"))
            .unwrap();
    let port = mtls_server(&certs, state);
    let address = format!("https://localhost:{port}/state/prod");
    let entry = |extra: &str| {
        format!(
            "custom_monitors:\n  terraform_state:\n    remote: {{ retries: 0 }}\n    backends:\n      - {{ type: http, address: \"{address}\", auth: none{extra} }}\n"
        )
    };
    let reason = |text: &str| error_reason(text, &address);
    let with_cert = ", client_cert: certs/client.crt, client_key: certs/client.key";

    // Private CA + client certificate: read.
    let (_m, text) =
        monitor_and_scrape(dir, &entry(&format!(", ca_file: certs/ca.crt{with_cert}"))).await;
    assert_eq!(up(&text, &address), Some(1.0), "{text}");
    // No client certificate: the server refuses the handshake.
    let (_m, text) = monitor_and_scrape(dir, &entry(", ca_file: certs/ca.crt")).await;
    assert_eq!(up(&text, &address), Some(0.0), "{text}");
    assert_eq!(reason(&text).as_deref(), Some("tls"), "{text}");
    // A client certificate of another CA: refused too.
    let (_m, text) = monitor_and_scrape(
        dir,
        &entry(", ca_file: certs/ca.crt, client_cert: certs/other-client.crt, client_key: certs/other-client.key"),
    ).await;
    assert_eq!(reason(&text).as_deref(), Some("tls"), "{text}");
    // The web roots do not know the private CA ...
    let (_m, text) = monitor_and_scrape(dir, &entry(with_cert)).await;
    assert_eq!(reason(&text).as_deref(), Some("tls"), "{text}");
    // ... unless verification is skipped, as Terraform's option allows.
    let (_m, text) = monitor_and_scrape(
        dir,
        &entry(&format!(", skip_cert_verification: true{with_cert}")),
    )
    .await;
    assert_eq!(up(&text, &address), Some(1.0), "{text}");
    // Half a client certificate is a configuration error, named.
    let (_m, text) = monitor_and_scrape(
        dir,
        &entry(", ca_file: certs/ca.crt, client_cert: certs/client.crt"),
    )
    .await;
    assert!(text.contains("reason=\"config\""), "{text}");

    // Zero-config: the record holds the PEMs inline (the key is a secret).
    let key_pem = std::fs::read_to_string(certs.join("client.key")).unwrap();
    let key_line = key_pem.lines().nth(1).unwrap().to_string();
    let wd = dir.join("infra");
    std::fs::create_dir_all(wd.join(".terraform")).unwrap();
    let record = |ca: bool| {
        let mut config = serde_json::json!({
            "address": address,
            "client_certificate_pem": std::fs::read_to_string(certs.join("client.crt")).unwrap(),
            "client_private_key_pem": key_pem,
        });
        if ca {
            config["client_ca_certificate_pem"] = std::fs::read_to_string(certs.join("ca.crt"))
                .unwrap()
                .into();
        }
        serde_json::json!({"version": 3, "backend": {"type": "http", "config": config}}).to_string()
    };
    std::fs::write(wd.join(".terraform/terraform.tfstate"), record(true)).unwrap();
    let (_zm, text) = monitor_and_scrape(
        dir,
        "custom_monitors:\n  terraform_state:\n    working_dirs: [infra]\n",
    )
    .await;
    assert_eq!(up(&text, &address), Some(1.0), "{text}");
    assert!(!text.contains(&key_line), "{text}");
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(["--state-dir", "infra", "--status", "--log.level", "trace"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run homelab-monitor");
    let all = output_text(&out);
    assert!(
        !all.contains(&key_line) && !all.contains("PRIVATE KEY"),
        "the client key leaked:\n{all}"
    );
    assert!(all.contains(&address), "{all}");
    // Without the record's CA the server is not trusted.
    std::fs::write(wd.join(".terraform/terraform.tfstate"), record(false)).unwrap();
    let (_zm, text) = monitor_and_scrape(
        dir,
        "custom_monitors:\n  terraform_state:\n    working_dirs: [infra]\n",
    )
    .await;
    assert_eq!(reason(&text).as_deref(), Some("tls"), "{text}");
}

/// Gitea's Terraform state registry (Gitea 1.26+): the http backend at
/// `/api/packages/<owner>/terraform/state/<name>`, basic auth with a user and
/// an access token (here from a file); a wrong token is a per-source http_401.
#[tokio::test(flavor = "multi_thread")]
async fn http_backend_gitea_state_registry_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let srv = basic_auth_server(
        "monitor",
        CANARY,
        "/api/packages/homelab/terraform/state/staging",
        "examples/terraform/environments/staging/terraform.tfstate",
    );
    std::fs::write(dir.join("gitea-token"), format!("{CANARY}\n")).unwrap();
    std::fs::write(dir.join("wrong-token"), "nope\n").unwrap();
    let staging = srv.url("/api/packages/homelab/terraform/state/staging");
    let missing = srv.url("/api/packages/homelab/terraform/state/nope");
    let yaml = format!(
        "custom_monitors:\n  terraform_state:\n    remote: {{ retries: 0 }}\n    backends:\n\
         \x20     - {{ type: http, address: \"{staging}\", username: monitor, token: {{ file: gitea-token }} }}\n\
         \x20     - {{ type: http, address: \"{missing}\", username: monitor, token: {{ file: gitea-token }} }}\n"
    );
    let (_m, text) = monitor_and_scrape(dir, &yaml).await;
    assert_eq!(up(&text, &staging), Some(1.0), "{text}");
    assert_eq!(
        error_reason(&text, &missing).as_deref(),
        Some("not_found"),
        "{text}"
    );
    let (_m, text) = monitor_and_scrape(
        dir,
        &format!(
            "custom_monitors:\n  terraform_state:\n    remote: {{ retries: 0 }}\n    backends:\n\
             \x20     - {{ type: http, address: \"{staging}\", username: monitor, token: {{ file: wrong-token }} }}\n"
        ),
    ).await;
    assert_eq!(up(&text, &staging), Some(0.0), "{text}");
    assert_eq!(
        error_reason(&text, &staging).as_deref(),
        Some("http_401"),
        "{text}"
    );
}

/// Many http entries: all read, at most 16 requests in flight at once (entries
/// are collected by a bounded pool, not one thread each), and a second
/// collection downloads nothing (ETag / If-None-Match).
#[tokio::test(flavor = "multi_thread")]
async fn many_http_entries_are_collected_by_a_bounded_pool() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (srv, stats) = etag_fleet_server(
        std::fs::read(repo().join("examples/terraform/environments/prod/terraform.tfstate"))
            .unwrap(),
        Duration::from_millis(30),
    );
    let n = 48;
    let mut yaml = String::from(
        "custom_monitors:\n  terraform_state:\n    check_interval: 1ms\n    timeout: 60s\n    remote: { retries: 0 }\n    backends:\n",
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "      - {{ type: http, address: \"{}\", auth: none }}\n",
            srv.url(&format!("/state/s{i:03}"))
        ));
    }
    let (m, text) = monitor_and_scrape(dir, &yaml).await;
    for i in 0..n {
        let l = srv.url(&format!("/state/s{i:03}"));
        assert_eq!(up(&text, &l), Some(1.0), "{l}\n{text}");
    }
    let peak = stats.peak.load(Ordering::Relaxed);
    assert!(peak >= 2, "entries should run side by side (peak {peak})");
    assert!(
        peak <= 16,
        "at most 16 entries at once, saw {peak} requests in flight"
    );
    let full = stats.bytes.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(5));
    let text = scrape(&m).await;
    assert_eq!(up(&text, &srv.url("/state/s000")), Some(1.0), "{text}");
    assert_eq!(
        stats.bytes.load(Ordering::Relaxed),
        full,
        "unchanged states downloaded again"
    );
}

/// Benchmark (release): `cargo test --release --test remote_http -- --ignored
/// --nocapture remote_fleet_bench`. 200 http entries of ~8 KB on loopback,
/// 5 ms per answer: cold collection, then a warm one (all 304).
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn remote_fleet_bench() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state =
        std::fs::read(repo().join("examples/terraform/environments/prod/terraform.tfstate"))
            .unwrap();
    let size = state.len();
    let (srv, stats) = etag_fleet_server(state, Duration::from_millis(5));
    let n = 200;
    let mut yaml = String::from(
        "custom_monitors:\n  terraform_state:\n    check_interval: 1ms\n    timeout: 120s\n    remote: { retries: 0 }\n    backends:\n",
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "      - {{ type: http, address: \"{}\", auth: none }}\n",
            srv.url(&format!("/state/s{i:03}"))
        ));
    }
    let m = monitor(dir, &yaml);
    let t = Instant::now();
    let text = scrape(&m).await;
    let cold = t.elapsed();
    let up_count = text
        .lines()
        .filter(|l| {
            l.starts_with("terraform_state_up{") && (l.ends_with(" 1") || l.ends_with(" 1.0"))
        })
        .count();
    let cold_bytes = stats.bytes.load(Ordering::Relaxed);
    let mut warm = Vec::new();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(5));
        let t = Instant::now();
        scrape(&m).await;
        warm.push(t.elapsed());
    }
    warm.sort();
    println!(
        "remote fleet: {n} http entries x {size} B, 5 ms per answer: cold {:.3} s ({up_count} up, {cold_bytes} B), warm median {:.3} s ({} B more), peak {} requests in flight",
        cold.as_secs_f64(),
        warm[2].as_secs_f64(),
        stats.bytes.load(Ordering::Relaxed) - cold_bytes,
        stats.peak.load(Ordering::Relaxed)
    );
}

/// A server answering GET `path` with the example state `example` to `Basic
/// user:password` only: 401 with another password, 404 on other paths.
fn basic_auth_server(user: &str, password: &str, path: &'static str, example: &str) -> Server {
    let state = std::fs::read(repo().join(example)).unwrap();
    let want = {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    };
    Server::start(Arc::new(move |r: &Req| {
        if r.headers.get("authorization") != Some(&want) {
            return resp(401, r#"{"message":"unauthorized"}"#);
        }
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", p) if p == path => resp(200, state.clone()),
            _ => resp(404, r#"{"message":"not found"}"#),
        }
    }))
}

/// GitLab project-wide discovery (`type: gitlab`): the GraphQL API lists the
/// project's states (paginated, with `lockedAt`), each is read through the
/// REST state API with ETag; a wrong token or an unknown project is a clear
/// discovery error. Shapes follow GitLab's API documentation.
#[tokio::test(flavor = "multi_thread")]
async fn gitlab_project_discovery_graphql_and_state_api() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let prod = std::fs::read(repo().join("examples/terraform/environments/prod/terraform.tfstate"))
        .unwrap();
    let staging =
        std::fs::read(repo().join("examples/terraform/environments/staging/terraform.tfstate"))
            .unwrap();
    let states: Arc<HashMap<&'static str, Vec<u8>>> =
        Arc::new(HashMap::from([("prod", prod), ("staging", staging)]));
    let gets = Arc::new(AtomicUsize::new(0));
    let g = gets.clone();
    let srv = Server::start(Arc::new(move |r: &Req| {
        if r.headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {CANARY}")) {
            return resp(401, r#"{"message":"401 Unauthorized"}"#);
        }
        let path = r.path.split('?').next().unwrap_or("");
        if r.method == "POST" && path == "/api/graphql" {
            let q: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert!(q["query"].as_str().unwrap().contains("terraformStates"));
            let project = q["variables"]["path"].as_str().unwrap_or("");
            if project != "homelab/infra" {
                return resp(200, r#"{"data":{"project":null}}"#);
            }
            // Two pages: prod (locked), then staging.
            let body = if q["variables"]["after"].is_null() {
                serde_json::json!({"data": {"project": {"terraformStates": {
                    "nodes": [{"name": "prod", "lockedAt": "2026-11-25T01:00:00Z"}],
                    "pageInfo": {"hasNextPage": true, "endCursor": "c1"}}}}})
            } else {
                assert_eq!(q["variables"]["after"], "c1");
                serde_json::json!({"data": {"project": {"terraformStates": {
                    "nodes": [{"name": "staging", "lockedAt": null}],
                    "pageInfo": {"hasNextPage": false, "endCursor": "c2"}}}}})
            };
            return resp(200, body.to_string());
        }
        let Some(name) = path.strip_prefix("/api/v4/projects/homelab%2Finfra/terraform/state/")
        else {
            return resp(404, r#"{"message":"404 Not Found"}"#);
        };
        match states.get(name) {
            Some(b) => {
                let etag = tag(b);
                if r.headers.get("if-none-match") == Some(&etag) {
                    return resp(304, "");
                }
                g.fetch_add(1, Ordering::SeqCst);
                Resp {
                    status: 200,
                    headers: vec![("ETag".into(), etag)],
                    body: b.clone(),
                }
            }
            None => resp(404, r#"{"message":"404 Not Found"}"#),
        }
    }));
    let vars = [
        ("TEST_GITLAB_PROJECT_TOKEN", CANARY),
        ("TEST_GITLAB_PROJECT_WRONG", "nope"),
    ];
    let url = srv.url("");
    let entry = |extra: &str| {
        format!(
            "custom_monitors:\n  terraform_state:\n    check_interval: 1ms\n    remote: {{ retries: 0 }}\n    backends:\n      - {{ type: gitlab, url: \"{url}\", project: homelab/infra, token: {{ env: TEST_GITLAB_PROJECT_TOKEN }}{extra} }}\n"
        )
    };
    let state = |n: &str| {
        srv.url(&format!(
            "/api/v4/projects/homelab%2Finfra/terraform/state/{n}"
        ))
    };
    let (m, text) = monitor_and_scrape_env(dir, &entry(""), &vars).await;
    assert_eq!(up(&text, &state("prod")), Some(1.0), "{text}");
    assert_eq!(up(&text, &state("staging")), Some(1.0), "{text}");
    let v = |s: String| series(&text, &s);
    assert_eq!(
        v(format!(
            "terraform_state_locked{{state_file=\"{}\"}}",
            state("prod")
        )),
        Some(1.0)
    );
    assert_eq!(
        v(format!(
            "terraform_state_locked_since_timestamp_seconds{{state_file=\"{}\"}}",
            state("prod")
        )),
        Some(1_795_568_400.0)
    );
    assert_eq!(
        v(format!(
            "terraform_state_locked{{state_file=\"{}\"}}",
            state("staging")
        )),
        Some(0.0)
    );
    // Unchanged states are not downloaded again (If-None-Match).
    let before = gets.load(Ordering::SeqCst);
    assert_eq!(before, 2);
    std::thread::sleep(Duration::from_millis(5));
    let text = scrape(&m).await;
    assert_eq!(up(&text, &state("prod")), Some(1.0), "{text}");
    assert_eq!(
        gets.load(Ordering::SeqCst),
        before,
        "unchanged states downloaded again"
    );

    // Named states only; one GitLab does not have is not_found.
    let (_m, text) = monitor_and_scrape_env(dir, &entry(", states: [staging, nope]"), &vars).await;
    assert_eq!(up(&text, &state("staging")), Some(1.0), "{text}");
    assert_eq!(up(&text, &state("prod")), None, "{text}");
    assert_eq!(
        error_reason(&text, &state("nope")).as_deref(),
        Some("not_found"),
        "{text}"
    );

    // A wrong token, an unknown project: discovery errors on the entry.
    let entry_label = format!("gitlab://127.0.0.1:{}/homelab/infra", srv.port);
    let discovery = |text: &str, label: &str| component_error(text, label, "discovery");
    let (_m, text) = monitor_and_scrape_env(
        dir,
        &entry("").replace("TEST_GITLAB_PROJECT_TOKEN", "TEST_GITLAB_PROJECT_WRONG"),
        &vars,
    )
    .await;
    assert_eq!(
        discovery(&text, &entry_label).as_deref(),
        Some("http_401"),
        "{text}"
    );
    let (_m, text) = monitor_and_scrape_env(
        dir,
        &entry("").replace("homelab/infra", "homelab/gone"),
        &vars,
    )
    .await;
    assert_eq!(
        discovery(
            &text,
            &format!("gitlab://127.0.0.1:{}/homelab/gone", srv.port)
        )
        .as_deref(),
        Some("not_found"),
        "{text}"
    );
}
