//! Security suite (issue 14): one test per finding of the adversarial pass,
//! each written to fail on the code before the fix. Loopback only; every wait
//! is bounded; the only time limits are generous liveness bounds ("answered
//! within 10 s"), never performance assertions.
//!
//! Latencies of legitimate scrapes during the floods are printed (run with
//! `--nocapture`) and quoted in the README's "Security and reliability".

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::stub::{resp, Req, Resp, Server};
use common::tools::pki;
use common::{raw_request, series, wait_for, Exporter, BIN};

const CANARY: &str = "CANARY-sec-4b1d9e";

// ---------------------------------------------------------------- helpers

/// Run the binary with a deadline; `None` if it had to be killed.
fn run_bounded(
    cwd: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    secs: u64,
) -> Option<(i32, String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let (o, e) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(BIN)
        .current_dir(cwd)
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .expect("cannot start homelab-monitor");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let code = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s.code().unwrap_or(-1));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).to_string();
    code.map(|c| (c, read(&o), read(&e)))
}

/// One request on a fresh connection, answered within `secs` (or an error).
fn request(port: u16, raw: &[u8], secs: u64) -> std::io::Result<(u16, String, String)> {
    raw_request(port, raw, Duration::from_secs(secs)).map(|r| (r.status, r.headers, r.body))
}

fn get_raw(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n")
        .into_bytes()
}

/// A `sh -c 'ulimit -n N; exec ...'` prefix for [`Exporter::start_with`].
fn ulimit_prefix(n: u32) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("ulimit -n {n} && exec \"$0\" \"$@\""),
    ]
}

fn mkfifo(p: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

/// A Terraform state (format 4) with `n` null resources; the canary in a
/// trigger, a sensitive output and `private`.
fn state(serial: u64, n: usize) -> String {
    let res: Vec<_> = (0..n)
        .map(|i| {
            serde_json::json!({"mode":"managed","type":"null_resource","name":format!("r{i}"),
            "provider":"provider[\"registry.terraform.io/hashicorp/null\"]",
            "instances":[{"schema_version":0,"attributes":{"id":"1","triggers":{"secret":CANARY}},
            "private": base64_of(CANARY), "sensitive_attributes":[]}]})
        })
        .collect();
    serde_json::json!({"version":4,"terraform_version":"1.11.4","serial":serial,"lineage":"l-1",
        "outputs":{"token":{"value":CANARY,"type":"string","sensitive":true}},"resources":res,"check_results":null})
    .to_string()
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

// ---------------------------------------------------------------- High: trace logs

/// One loopback stand-in for every remote backend on the shared client: the
/// HTTP backend (basic auth), GitLab (GraphQL + REST, bearer), S3 (SigV4 with
/// a session token) and HCP Terraform (bearer); plus an HTTP health check.
/// Canaries are in the tokens, the AWS secret and session token, a query
/// parameter, response headers and the state bodies.
fn backends_stub(hits: Arc<Mutex<HashMap<&'static str, usize>>>) -> Server {
    let body = state(5, 2);
    Server::start(Arc::new(move |r: &Req| {
        let auth = r.headers.get("authorization").cloned().unwrap_or_default();
        let path = r.path.split('?').next().unwrap_or("").to_string();
        let hit = |k: &'static str| *hits.lock().unwrap().entry(k).or_default() += 1;
        let with_secret_header = |status: u16, b: Vec<u8>| Resp {
            status,
            headers: vec![
                ("X-Upstream-Secret".into(), CANARY.into()),
                ("Set-Cookie".into(), format!("session={CANARY}")),
            ],
            body: b,
        };
        if path == "/state/homelab" {
            if auth != format!("Basic {}", base64_of(&format!("ci:{CANARY}"))) {
                return resp(401, "unauthorized");
            }
            hit("http");
            return with_secret_header(200, body.clone().into_bytes());
        }
        if path == "/health" {
            hit("health");
            return with_secret_header(200, format!("ok {CANARY}").into_bytes());
        }
        if path == "/api/graphql" || path.starts_with("/api/v4/") {
            if auth != format!("Bearer {CANARY}") {
                return resp(401, r#"{"message":"401 Unauthorized"}"#);
            }
            hit("gitlab");
            if r.method == "POST" {
                return resp(
                    200,
                    serde_json::json!({"data": {"project": {"terraformStates": {
                        "nodes": [{"name": "prod", "lockedAt": null}],
                        "pageInfo": {"hasNextPage": false, "endCursor": "c1"}}}}})
                    .to_string(),
                );
            }
            if path == "/api/v4/projects/homelab%2Finfra/terraform/state/prod" {
                return with_secret_header(200, body.clone().into_bytes());
            }
            return resp(404, r#"{"message":"404 Not Found"}"#);
        }
        if path.starts_with("/tfstate") {
            if !auth.starts_with("AWS4-HMAC-SHA256")
                || r.headers.get("x-amz-security-token").map(String::as_str)
                    != Some(&format!("{CANARY}-session"))
            {
                return resp(403, "<Error><Code>AccessDenied</Code></Error>");
            }
            hit("s3");
            if path == "/tfstate/homelab/terraform.tfstate" {
                return with_secret_header(200, body.clone().into_bytes());
            }
            // Listing forbidden: the backend reads the key only.
            return resp(403, "<Error><Code>AccessDenied</Code></Error>");
        }
        if path.starts_with("/api/v2/") || path.starts_with("/api/state-versions/") {
            if auth != format!("Bearer {CANARY}") {
                return resp(401, r#"{"errors":[{"status":"401"}]}"#);
            }
            hit("hcp");
            let json = |v: serde_json::Value| Resp {
                status: 200,
                headers: vec![("Content-Type".into(), "application/vnd.api+json".into())],
                body: v.to_string().into_bytes(),
            };
            let ws = serde_json::json!({"id": "ws-1", "type": "workspaces",
                "attributes": {"name": "homelab-prod", "tag-names": [], "locked": false}});
            return match path.as_str() {
                "/api/v2/organizations/acme/workspaces/homelab-prod" => {
                    json(serde_json::json!({"data": ws}))
                }
                "/api/v2/workspaces/ws-1/current-state-version" => json(serde_json::json!({
                    "data": {"id": "sv-1", "type": "state-versions", "attributes": {
                    "created-at": "2024-05-01T10:00:00.000Z", "serial": 5,
                    "hosted-state-download-url": format!("/api/state-versions/sv-1/hosted_state?token={CANARY}"),
                    "hosted-json-state-download-url": null}}})),
                "/api/state-versions/sv-1/hosted_state" => {
                    with_secret_header(200, body.clone().into_bytes())
                }
                _ => resp(404, ""),
            };
        }
        resp(404, "")
    }))
}

/// High: with `--log.level trace` and `RUST_LOG=trace` no third-party crate
/// prints request or response headers, URLs with tokens, or state bodies, for
/// every remote backend and the HTTP health check. (Before: ureq's trace
/// logging hex-dumped `authorization: ...` and whole states.)
#[test]
fn trace_logs_leak_no_token_url_or_state_body_of_any_backend() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let hits = Arc::new(Mutex::new(HashMap::new()));
    let srv = backends_stub(hits.clone());
    let url = srv.url("");
    std::fs::write(
        dir.join("monitoring-config.yaml"),
        format!(
            r#"custom_monitors:
  terraform_state:
    remote: {{ retries: 0 }}
    backends:
      - {{ type: http, address: "{url}/state/homelab", username: ci, token: {{ env: SEC_TOKEN }} }}
      - {{ type: gitlab, url: "{url}", project: homelab/infra, token: {{ env: SEC_TOKEN }} }}
      - {{ type: s3, bucket: tfstate, key: homelab/terraform.tfstate, region: us-east-1, endpoint: "{url}", use_path_style: true }}
      - {{ type: hcp, address: "{url}", organization: acme, workspaces: [homelab-prod], token: {{ env: SEC_TOKEN }} }}
health_checks:
  checks:
    - name: web
      http: {{ url: "{url}/health" }}
"#
        ),
    )
    .unwrap();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let session = format!("{CANARY}-session");
    let env = [
        ("RUST_LOG", "trace"),
        ("HOME", home.to_str().unwrap()),
        ("SEC_TOKEN", CANARY),
        ("AWS_ACCESS_KEY_ID", "AKIDSECURITYTEST"),
        ("AWS_SECRET_ACCESS_KEY", CANARY),
        ("AWS_SESSION_TOKEN", session.as_str()),
        ("AWS_PROFILE", "default"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
    ];
    let (_code, out, err) = run_bounded(
        dir,
        &[
            "--config",
            "monitoring-config.yaml",
            "--status",
            "--log.level",
            "trace",
        ],
        &env,
        120,
    )
    .expect("--status did not finish within 120 s");
    let all = format!("{out}\n{err}");
    // The run did talk to every backend, and trace logging is on.
    let hits = hits.lock().unwrap().clone();
    for k in ["http", "gitlab", "s3", "hcp", "health"] {
        assert!(
            hits.get(k).copied().unwrap_or(0) > 0,
            "{k} was never asked: {hits:?}\n{all}"
        );
    }
    assert!(
        err.contains("TRACE") || err.contains("DEBUG"),
        "no trace logs:\n{err}"
    );
    for s3 in ["s3://", "hcp://", "/state/homelab", "terraform/state/prod"] {
        assert!(out.contains(s3), "{s3} missing from the status:\n{all}");
    }
    for needle in [
        CANARY.to_string(),
        base64_of(&format!("ci:{CANARY}")),
        base64_of(CANARY),
    ] {
        assert!(!all.contains(&needle), "{needle} leaked:\n{all}");
    }
    assert!(
        !all.to_lowercase().contains("authorization:"),
        "a header dump:\n{all}"
    );
}

// ---------------------------------------------------------------- Medium: web config

fn tls_client(ca: &str) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Medium: truncating the web config to nothing, to comments only or to a bare
/// `basic_auth_users:` never turns TLS or authentication off on reload: the
/// previous configuration stays and an error is logged. (Before: /metrics
/// answered without credentials and the TLS port spoke plain HTTP.)
#[test]
fn a_reload_to_an_empty_web_config_keeps_tls_and_auth() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let p = pki();
    std::fs::write(d.join("server.pem"), &p.server_cert).unwrap();
    std::fs::write(d.join("server.key"), &p.server_key).unwrap();
    let hash = bcrypt::hash("CANARY-web-pass", 4).unwrap();
    let full = format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nbasic_auth_users:\n  prom: '{hash}'\n"
    );
    std::fs::write(d.join("web.yml"), &full).unwrap();
    let e = Exporter::start_tcp(d, &["--web.config.file", "web.yml"]);
    let client = tls_client(&p.ca_pem);
    let url = format!("https://127.0.0.1:{}/metrics", e.port);
    let ok = |c: &reqwest::blocking::Client| {
        c.get(&url)
            .basic_auth("prom", Some("CANARY-web-pass"))
            .send()
            .map(|r| r.status().as_u16())
    };
    wait_for("the TLS port", 30, || {
        (ok(&client).ok() == Some(200)).then_some(())
    });
    for weaker in ["", "# everything commented out\n", "basic_auth_users:\n"] {
        std::fs::write(d.join("web.yml"), weaker).unwrap();
        // The reloader looks every second: give it three looks.
        std::thread::sleep(Duration::from_millis(3000));
        let anon = client.get(&url).send().map(|r| r.status().as_u16());
        assert_eq!(
            anon.ok(),
            Some(401),
            "{weaker:?}: answered without credentials\n{}",
            e.logs()
        );
        assert_eq!(ok(&client).ok(), Some(200), "{weaker:?}\n{}", e.logs());
        let plain = request(e.port, &get_raw("/metrics", ""), 10);
        assert!(
            !matches!(plain, Ok((200, _, _))),
            "{weaker:?}: plain HTTP served /metrics\n{}",
            e.logs()
        );
    }
    let logs = e.logs();
    assert!(
        logs.contains("web config not reloaded")
            && logs.contains("TLS and basic authentication off"),
        "{logs}"
    );
    assert!(!logs.contains("CANARY"), "{logs}");
    // A real change still applies.
    let hash2 = bcrypt::hash("CANARY-web-pass-2", 4).unwrap();
    std::fs::write(d.join("web.yml"), full.replace(&hash, &hash2)).unwrap();
    wait_for("the new password", 30, || {
        client
            .get(&url)
            .basic_auth("prom", Some("CANARY-web-pass-2"))
            .send()
            .ok()
            .filter(|r| r.status() == 200)
    });
}

/// Medium: a FIFO in place of the web config, or of its cert_file, never
/// blocks the server: every path is still answered, the previous config stays
/// and the error is logged. (Before: every request hung until something wrote
/// into the FIFO.)
#[test]
fn a_fifo_as_web_config_or_certificate_never_blocks_requests() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let hash = bcrypt::hash("pw", 4).unwrap();
    let auth = format!("Authorization: Basic {}\r\n", base64_of("prom:pw"));
    std::fs::write(
        d.join("web.yml"),
        format!("basic_auth_users:\n  prom: '{hash}'\n"),
    )
    .unwrap();
    let e = Exporter::start_tcp(d, &["--web.config.file", "web.yml"]);
    let answered = |what: &str| {
        for path in ["/healthz", "/metrics", "/"] {
            let r = request(e.port, &get_raw(path, &auth), 10);
            assert!(
                matches!(r, Ok((200, _, _))),
                "{what}: {path} not answered within 10 s: {r:?}\n{}",
                e.logs()
            );
            let r = request(e.port, &get_raw(path, ""), 10);
            assert!(matches!(r, Ok((401, _, _))), "{what}: {path}: {r:?}");
        }
    };
    answered("before");
    std::fs::remove_file(d.join("web.yml")).unwrap();
    mkfifo(&d.join("web.yml"));
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1000));
        answered("web.yml is a FIFO");
    }
    // A cert_file that is a FIFO: the reload fails, nothing blocks.
    std::fs::remove_file(d.join("web.yml")).unwrap();
    let p = pki();
    mkfifo(&d.join("server.pem"));
    std::fs::write(d.join("server.key"), &p.server_key).unwrap();
    std::fs::write(
        d.join("web.yml"),
        format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nbasic_auth_users:\n  prom: '{hash}'\n"),
    )
    .unwrap();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1000));
        answered("cert_file is a FIFO");
    }
    let logs = e.logs();
    assert!(
        logs.contains("FIFO") && logs.contains("not a regular file"),
        "{logs}"
    );
}

// ---------------------------------------------------------------- Medium: stat/open race

/// Medium: a FIFO swapped in between the monitor's `stat` and `open` never
/// hangs the monitor: it reports the error, recovers when the file is back,
/// and SIGTERM ends the process. (Before: `open` blocked for ever on the FIFO;
/// the monitor kept serving old values and SIGTERM did not end the process.)
///
/// To hit the window reliably the states sit 300 folders deep (each path
/// lookup of the exporter walks them all, which widens the window between its
/// `stat` and its `open`), while a thread exchanges each of 8 states with a
/// FIFO through directory descriptors (a few µs per swap).
#[test]
fn a_fifo_swapped_in_for_a_state_never_hangs_the_monitor_or_shutdown() {
    use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps, UTIME_NOW};
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let deep_rel = vec!["d"; 300].join("/");
    let states = d.join(&deep_rel);
    let pipes = d.join("pipes");
    std::fs::create_dir_all(&states).unwrap();
    std::fs::create_dir_all(&pipes).unwrap();
    let n = 8;
    for i in 0..n {
        std::fs::write(states.join(format!("s{i}.tfstate")), state(1, 1)).unwrap();
        mkfifo(&pipes.join(format!("s{i}.tfstate")));
    }
    let mut e = Exporter::start(
        d,
        &["--state-dir", &deep_rel, "--watch", "--interval", "100ms"],
    );
    let dir_fd = |p: &Path| {
        rustix::fs::open(
            p,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    };
    let (sfd, pfd) = (dir_fd(&states), dir_fd(&pipes));
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    let swapper = {
        let (stop, swaps) = (stop.clone(), swaps.clone());
        std::thread::spawn(move || {
            let now = Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_NOW,
            };
            let ts = Timestamps {
                last_access: now,
                last_modification: now,
            };
            while !stop.load(Ordering::Relaxed) {
                for i in 0..n {
                    let name = format!("s{i}.tfstate");
                    if rustix::fs::renameat_with(&sfd, &name, &pfd, &name, RenameFlags::EXCHANGE)
                        .is_ok()
                    {
                        swaps.fetch_add(1, Ordering::Relaxed);
                    }
                    // A new mtime: the monitor cannot skip the read as unchanged.
                    let _ = rustix::fs::utimensat(&sfd, &name, &ts, AtFlags::empty());
                }
            }
            (sfd, pfd)
        })
    };
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let r = request(e.port, &get_raw("/metrics", ""), 30);
        assert!(matches!(r, Ok((200, _, _))), "{r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let (sfd, pfd) = swapper.join().unwrap();
    assert!(
        swaps.load(Ordering::Relaxed) > 1000,
        "the race was not exercised"
    );
    // Put every regular file back with a new serial: the monitor must see it.
    for i in 0..n {
        let name = format!("s{i}.tfstate");
        let a = states.join(&name);
        if !std::fs::metadata(&a).map(|m| m.is_file()).unwrap_or(false) {
            rustix::fs::renameat_with(&sfd, &name, &pfd, &name, RenameFlags::EXCHANGE).unwrap();
        }
        let tmp = states.join(format!(".s{i}.tmp"));
        std::fs::write(&tmp, state(777, 1)).unwrap();
        std::fs::rename(&tmp, &a).unwrap();
    }
    wait_for("every state read again after the race", 60, || {
        let m = request(e.port, &get_raw("/metrics", ""), 30).ok()?.2;
        (0..n)
            .all(|i| {
                series(
                    &m,
                    &format!("terraform_state_serial{{state_file=\"{deep_rel}/s{i}.tfstate\"}}"),
                ) == Some(777.0)
            })
            .then_some(())
    });
    assert_eq!(
        e.terminate(),
        Some(0),
        "SIGTERM did not end the process:\n{}",
        e.logs()
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------- Medium: slow clients

/// Keeps `n` slowloris connections (a header byte now and then, never the end)
/// and `n` slow readers (pipelined requests, never read) open, reconnecting
/// whatever the server closes, until `stop`.
fn flood(
    port: u16,
    n_loris: usize,
    n_readers: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let connect = || {
            TcpStream::connect_timeout(
                &format!("127.0.0.1:{port}").parse().unwrap(),
                Duration::from_millis(500),
            )
            .ok()
            .inspect(|s| {
                let _ = s.set_write_timeout(Some(Duration::from_millis(50)));
            })
        };
        let pipelined: Vec<u8> = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(300);
        let mut loris: Vec<Option<TcpStream>> = (0..n_loris).map(|_| None).collect();
        let mut readers: Vec<Option<TcpStream>> = (0..n_readers).map(|_| None).collect();
        let mut opened = 0usize;
        while !stop.load(Ordering::Relaxed) {
            for s in loris.iter_mut() {
                let alive = s
                    .as_mut()
                    .map(|c| c.write_all(b"X").is_ok())
                    .unwrap_or(false);
                if !alive {
                    *s = connect().and_then(|mut c| {
                        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                            .ok()?;
                        Some(c)
                    });
                    opened += 1;
                }
            }
            for s in readers.iter_mut() {
                let alive = s.as_mut().map(|c| {
                    // Still open? (a peek that would block means yes)
                    let _ = c.set_nonblocking(true);
                    let mut b = [0u8; 1];
                    let r = c.peek(&mut b);
                    let _ = c.set_nonblocking(false);
                    !matches!(r, Ok(0))
                });
                if alive != Some(true) {
                    *s = connect().map(|mut c| {
                        let _ = c.write_all(&pipelined);
                        c
                    });
                    opened += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for s in loris.iter().chain(readers.iter()).flatten() {
            let _ = s.shutdown(Shutdown::Both);
        }
        opened
    })
}

/// Medium: a slowloris flood plus a slow-reader flood, together larger than
/// the exporter's descriptor table (ulimit -n 128), never lock legitimate
/// scrapers out: each scrape is answered within 10 s, the connection limit is
/// reported by a metric and a log line. (Before: the flood exhausted the
/// descriptors and every scrape failed.)
#[test]
fn slow_readers_and_slowloris_cannot_lock_out_scrapers() {
    let t = tempfile::tempdir().unwrap();
    let prefix = ulimit_prefix(128);
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    let e = Exporter::start_with(t.path(), &[], Some(&prefix));
    for (what, n_loris, n_readers) in [
        ("slowloris", 200, 0),
        ("slow-reader", 0, 200),
        ("slowloris + slow-reader", 100, 100),
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let attacker = flood(e.port, n_loris, n_readers, stop.clone());
        std::thread::sleep(Duration::from_secs(3));
        let mut latencies = Vec::new();
        for i in 0..12 {
            let started = Instant::now();
            let r = request(e.port, &get_raw("/metrics", ""), 10);
            let took = started.elapsed();
            assert!(
                matches!(r, Ok((200, _, _))),
                "{what}: scrape {i} failed after {took:?}: {r:?}\n{}",
                e.logs()
            );
            latencies.push(took);
            std::thread::sleep(Duration::from_millis(250));
        }
        stop.store(true, Ordering::Relaxed);
        let opened = attacker.join().unwrap();
        latencies.sort();
        eprintln!(
            "MEASURED legitimate scrape latency during a {what} flood ({} attackers, {opened} attacker connections in total, ulimit -n 128 so 64 client connections, debug build): median {:?}, max {:?}",
            n_loris + n_readers,
            latencies[latencies.len() / 2],
            latencies[latencies.len() - 1]
        );
    }
    let m = request(e.port, &get_raw("/metrics", ""), 10).unwrap().2;
    assert_eq!(
        series(&m, "homelab_monitor_http_connections_max"),
        Some(64.0),
        "{m}"
    );
    let evicted = series(&m, "homelab_monitor_http_connections_evicted_total");
    assert!(evicted.unwrap_or(0.0) > 0.0, "{m}");
    let logs = e.logs();
    assert!(logs.contains("connection limit reached"), "{logs}");
    assert!(
        logs.contains("--web.max-connections lowered to 64"),
        "{logs}"
    );
}

/// Medium: a client that pipelines many requests and never reads is cut off
/// (request cap per connection, write timeouts) instead of being served for
/// ever; also when it is answered 401. (Before: all 1,000 responses, the
/// connection held as long as the client wished.)
#[test]
fn a_client_that_never_reads_is_cut_off() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let hash = bcrypt::hash("pw", 4).unwrap();
    std::fs::write(
        d.join("web.yml"),
        format!("basic_auth_users:\n  prom: '{hash}'\n"),
    )
    .unwrap();
    for (args, extra) in [(vec![], ""), (vec!["--web.config.file", "web.yml"], "")] {
        let e = if args.is_empty() {
            Exporter::start(d, &args)
        } else {
            Exporter::start_tcp(d, &args)
        };
        let mut s = TcpStream::connect(("127.0.0.1", e.port)).unwrap();
        let one = format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = s.write_all(one.repeat(1000).as_bytes());
        // Never read for longer than the write timeouts, then drain.
        std::thread::sleep(Duration::from_secs(12));
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut buf = Vec::new();
        let r = s.read_to_end(&mut buf);
        let answers = String::from_utf8_lossy(&buf).matches("HTTP/1.1 ").count();
        // Closed: an end of stream, or a reset (closed with requests unread).
        let closed = match &r {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        assert!(
            closed,
            "the connection was not closed: {r:?} after {answers} answers"
        );
        assert!(
            (1..=100).contains(&answers),
            "{answers} answers on one connection ({args:?})"
        );
    }
}

// ---------------------------------------------------------------- Low

/// Low: a malformed bcrypt hash stops start-up with a message naming the user
/// (before: accepted, the user locked out for ever); an unknown user costs
/// the configured users' (highest) cost, not a fixed cost 10.
#[test]
fn malformed_bcrypt_hashes_are_refused_and_unknown_users_cost_as_configured() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(
        d.join("web.yml"),
        "basic_auth_users:\n  prom: '$2y$10$thisisnotarealbcrypthash'\n",
    )
    .unwrap();
    let (code, _out, err) = run_bounded(d, &["--web.config.file", "web.yml"], &[], 20)
        .expect("the exporter started with a malformed hash");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("basic_auth_users.prom is not a bcrypt hash"),
        "{err}"
    );
    let h5 = bcrypt::hash("x", 5).unwrap();
    std::fs::write(
        d.join("web.yml"),
        format!("basic_auth_users:\n  prom: '{h5}'\n"),
    )
    .unwrap();
    let cfg = homelab_monitor::server::web_config::WebConfig::load(&d.join("web.yml")).unwrap();
    assert_eq!(cfg.unknown_user_cost(), Some(5));
}

/// Low: file names with a newline or ANSI escapes are escaped in text logs and
/// in the `--status` table (before: a forged log line, escapes on the terminal).
#[test]
fn control_characters_in_file_names_are_escaped_in_logs_and_status() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::create_dir_all(d.join("states")).unwrap();
    let evil = "evil\nERROR forged line\u{1b}[31m.tfstate";
    std::fs::write(d.join("states").join(evil), "{ broken").unwrap();
    let (_code, out, err) =
        run_bounded(d, &["--state-dir", "states", "--status"], &[], 60).expect("--status hung");
    let all = format!("{out}\n{err}");
    assert!(!all.contains('\u{1b}'), "a raw escape:\n{all:?}");
    assert!(
        !all.lines().any(|l| l.starts_with("ERROR forged line")),
        "a forged line:\n{all}"
    );
    assert!(
        out.contains("evil\\nERROR forged line\\u{1b}[31m.tfstate"),
        "{out}"
    );
    assert!(
        err.contains("evil\\nERROR forged line"),
        "the log names the file:\n{err}"
    );
}

/// Low: an unreadable folder below `state_dirs`, or on the way of a backup
/// glob, is an error, not a silent gap (run as `nobody`: root reads
/// everything). (Before: a DEBUG log line only, and the states or backup runs
/// below it simply vanished.)
#[test]
fn an_unreadable_subfolder_is_a_discovery_error() {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    mode(d, 0o755);
    let locked = d.join("states/locked");
    std::fs::create_dir_all(&locked).unwrap();
    std::fs::write(d.join("states/ok.tfstate"), state(1, 1)).unwrap();
    std::fs::write(locked.join("hidden.tfstate"), state(1, 1)).unwrap();
    mode(&d.join("states"), 0o755);
    mode(&d.join("states/ok.tfstate"), 0o644);
    mode(&locked, 0o000);
    // Backup runs, one per folder; one folder unreadable.
    for run in ["a", "locked"] {
        std::fs::create_dir_all(d.join("runs").join(run)).unwrap();
        std::fs::write(
            d.join("runs").join(run).join("run.json"),
            r#"{"version": 1, "id": "r", "start": "2026-11-25T01:00:00Z", "end": "2026-11-25T01:10:00Z", "status": "success", "size": 10}"#,
        )
        .unwrap();
        mode(&d.join("runs").join(run), 0o755);
        mode(&d.join("runs").join(run).join("run.json"), 0o644);
    }
    mode(&d.join("runs"), 0o755);
    mode(&d.join("runs/locked"), 0o000);
    std::fs::write(
        d.join("monitoring-config.yaml"),
        "custom_monitors:\n  terraform_state:\n    state_dirs: [states]\n  backup_validation:\n    sources:\n      - { name: runs, format: manifest, path: \"runs/*/run.json\" }\n",
    )
    .unwrap();
    mode(&d.join("monitoring-config.yaml"), 0o644);
    let root = rustix::process::geteuid().is_root();
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    let out = cmd
        .current_dir(d)
        .args(["--config", "monitoring-config.yaml", "--status"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux) is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    if !stdout.contains("states/ok.tfstate") {
        eprintln!("SKIPPED: user nobody cannot read {}:\n{all}", d.display());
        return;
    }
    assert!(
        all.contains("states/locked") && all.contains("cannot search"),
        "{all}"
    );
    let runs_line = stdout
        .lines()
        .find(|l| l.contains("backup_validation") && l.contains("runs"))
        .unwrap_or_default();
    assert!(
        runs_line.contains("error"),
        "the backup source hides the unreadable run:\n{all}"
    );
    assert!(all.contains("runs/locked"), "{all}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unreadable folder is an error:\n{all}"
    );
}

/// Low: one JSON string that never ends (a 600 MiB sparse file under a 1 GiB
/// `max_file_size`) costs at most the per-value cap (64 MiB), not the file
/// (before: buffered whole, ~1 GB per file). Measured as the exporter's peak RSS.
#[test]
fn one_endless_json_string_does_not_pin_memory() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::create_dir_all(d.join("states")).unwrap();
    let p = d.join("states/sparse.tfstate");
    {
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(br#"{"version": 4, "lineage": ""#).unwrap();
        f.set_len(600 << 20).unwrap();
    }
    std::fs::write(
        d.join("monitoring-config.yaml"),
        "custom_monitors:\n  terraform_state:\n    state_dirs: [states]\n    max_file_size: 1GiB\n",
    )
    .unwrap();
    let e = Exporter::start(d, &["--config", "monitoring-config.yaml"]);
    let m = wait_for("the sparse state read", 120, || {
        let m = request(e.port, &get_raw("/metrics", ""), 120).ok()?.2;
        m.contains("terraform_state_error_info{state_file=\"states/sparse.tfstate\"")
            .then_some(m)
    });
    assert!(m.contains("reason=\"too_large\""), "{m}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", e.child.id())).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!(
        "MEASURED peak RSS reading a 600 MiB endless string: {} MiB",
        hwm_kib >> 10
    );
    assert!(hwm_kib < 256 << 10, "peak RSS {} MiB", hwm_kib >> 10);
}

/// Low: 1,000 TCP health checks under `ulimit -n 256` all succeed (bounded
/// concurrency) and the server keeps answering (before: "Too many open
/// files" false failures).
#[test]
fn a_thousand_health_checks_do_not_exhaust_descriptors() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        l.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => drop(c),
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut yaml = String::from("health_checks:\n  checks:\n");
    for i in 0..1000 {
        yaml.push_str(&format!(
            "    - {{ name: c{i}, timeout: 20s, tcp: {{ address: \"127.0.0.1:{port}\" }} }}\n"
        ));
    }
    std::fs::write(d.join("monitoring-config.yaml"), yaml).unwrap();
    let prefix = ulimit_prefix(256);
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    let e = Exporter::start_with(d, &["--config", "monitoring-config.yaml"], Some(&prefix));
    e.wait_ready();
    let m = request(e.port, &get_raw("/metrics", ""), 60).unwrap().2;
    stop.store(true, Ordering::Relaxed);
    let ok = m
        .lines()
        .filter(|l| l.starts_with("health_check_success{") && l.ends_with(" 1.0"))
        .count();
    let failed: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("health_check_success{") && l.ends_with(" 0.0"))
        .take(3)
        .collect();
    let sample: Vec<&str> = m
        .lines()
        .filter(|l| l.contains("health_check"))
        .take(5)
        .collect();
    assert_eq!(
        ok,
        1000,
        "failures: {failed:?}\n{sample:?}\n{}",
        e.logs().lines().take(5).collect::<Vec<_>>().join("\n")
    );
}

/// Low: request heads are limited to exactly the documented 64 KiB (before:
/// ~112 KiB were accepted).
#[test]
fn request_heads_are_limited_to_exactly_64_kib() {
    let t = tempfile::tempdir().unwrap();
    let e = Exporter::start(t.path(), &[]);
    let head = |total: usize| {
        let start = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Pad: ";
        let pad = total - start.len() - "\r\n\r\n".len();
        format!("{start}{}\r\n\r\n", "a".repeat(pad)).into_bytes()
    };
    for (size, want) in [
        (60 << 10, 200),
        (65536, 200),
        (65537, 431),
        (70 << 10, 431),
        (112 << 10, 431),
    ] {
        let r = request(e.port, &head(size), 10).unwrap();
        assert_eq!(r.0, want, "{size} bytes: {}", r.1);
    }
}

// ---------------------------------------------------------------- Info (decided)

/// Info: `application/openmetrics-text;q=0` means "not acceptable" (RFC 9110):
/// the classic format is served (before: OpenMetrics).
#[test]
fn openmetrics_with_q0_is_not_chosen() {
    let t = tempfile::tempdir().unwrap();
    let e = Exporter::start(t.path(), &[]);
    let ct = |accept: &str| {
        let r = request(
            e.port,
            &get_raw("/metrics", &format!("Accept: {accept}\r\n")),
            10,
        )
        .unwrap();
        assert_eq!(r.0, 200);
        r.1.to_lowercase()
    };
    assert!(ct("application/openmetrics-text;q=0, text/plain;q=0.5")
        .contains("content-type: text/plain"));
    assert!(ct("application/openmetrics-text; version=1.0.0; q=0.0")
        .contains("content-type: text/plain"));
    assert!(
        ct("application/openmetrics-text;version=1.0.0;q=0.5,text/plain;q=0.4")
            .contains("application/openmetrics-text")
    );
}

/// Info: `a\b.tfstate` and `a/b.tfstate` both get the label `a/b.tfstate`:
/// the second is reported as a discovery error (before: dropped silently).
#[test]
fn a_backslash_label_collision_is_reported() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::create_dir_all(d.join("states/a")).unwrap();
    std::fs::write(d.join("states/a/b.tfstate"), state(1, 1)).unwrap();
    std::fs::write(d.join("states/a\\b.tfstate"), state(2, 1)).unwrap();
    let (_code, out, err) =
        run_bounded(d, &["--state-dir", "states", "--status"], &[], 60).expect("--status hung");
    assert!(
        out.contains("same label") && out.contains("states/a/b.tfstate"),
        "{out}\n{err}"
    );
}

/// Info: duplicate top-level keys: scalars (`serial`, `version`...) take the
/// last value, as Terraform does; `resources` and `check_results` are merged
/// (counted from both), so a hostile duplicate can never hide a resource.
#[tokio::test(flavor = "multi_thread")]
async fn duplicate_top_level_keys_behave_as_documented() {
    use homelab_monitor::core::monitor::{CollectContext, Monitor};
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let one = |name: &str| {
        format!(
            r#"{{"mode":"managed","type":"null_resource","name":"{name}","provider":"provider[\"registry.terraform.io/hashicorp/null\"]","instances":[{{"attributes":{{"id":"1"}}}}]}}"#
        )
    };
    std::fs::write(
        d.join("dup.tfstate"),
        format!(
            r#"{{"version":4,"serial":1,"lineage":"l","resources":[{}],"serial":2,"resources":[{}],"outputs":{{}}}}"#,
            one("a"),
            one("b")
        ),
    )
    .unwrap();
    let yaml = "custom_monitors:\n  terraform_state:\n    state_files: [dup.tfstate]\n";
    let path = d.join("monitoring-config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let file = homelab_monitor::core::config::parse(yaml, &path).unwrap();
    let m = homelab_monitor::monitors::terraform::TerraformMonitor::new(
        file.custom_monitors.terraform_state.unwrap(),
        d.to_path_buf(),
    );
    let snap = m
        .collect(CollectContext {
            now: SystemTime::now(),
        })
        .await
        .unwrap();
    let text = homelab_monitor::core::encoder::encode(
        vec![Arc::new(snap)],
        homelab_monitor::core::encoder::Format::Classic,
    )
    .unwrap();
    assert_eq!(
        series(&text, "terraform_state_serial{state_file=\"dup.tfstate\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        series(&text, "terraform_state_resource_instances{state_file=\"dup.tfstate\",mode=\"managed\",type=\"null_resource\"}"),
        Some(2.0),
        "{text}"
    );
}
