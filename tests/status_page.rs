//! The status page (`/`) and `/api/v1/status`: content, escaping, auth, and a
//! real headless Chromium (Debian's `chromium`) loading it at desktop and phone
//! widths without console errors. Screenshots land in
//! `target/tmp/status-page/` for a person to look at (not committed).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The example's Terraform states (prod is drifted) plus a certificate that
/// expires in 5 days, a failing health check and a check whose name is markup.
fn fixture() -> tempfile::TempDir {
    let d = example_copy();
    let certs = d.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    common::tools::openssl_cert(&certs, "soon.key", "soon.pem", "soon.homelab.lan", 5);
    std::fs::remove_file(certs.join("soon.key")).unwrap();
    std::fs::write(
        d.path().join("status.yaml"),
        format!(
            "custom_monitors:\n  terraform_state:\n    check_interval: 1m\n    state_files:\n      - terraform/terraform.tfstate\n      - terraform/environments/*/terraform.tfstate\n  certificate_expiry:\n    check_interval: 1m\n    paths: [certs/]\nhealth_checks:\n  checks:\n    - {{ name: nas-port, tcp: {{ address: \"127.0.0.1:{}\" }} }}\n    - {{ name: \"<img src=x onerror=alert(1)>\", dns: {{ name: localhost }} }}\n",
            free_port()
        ),
    )
    .unwrap();
    d
}

#[test]
fn page_and_json_show_drift_certificates_and_checks() {
    let d = fixture();
    let e = Exporter::start(d.path(), &["--config", "status.yaml"]);
    e.wait_ready();
    let page = get(e.port, "/");
    assert_eq!(page.status, 200);
    assert!(page
        .headers
        .to_ascii_lowercase()
        .contains("content-type: text/html"));
    let b = &page.body;
    assert!(
        b.contains("terraform/environments/prod/terraform.tfstate"),
        "{b}"
    );
    assert!(
        b.contains("Expiring, by time left") && b.contains("certs/soon.pem"),
        "{b}"
    );
    // Time left as `--status` says it (a 5-day certificate, read a moment
    // later), coloured against the default warning_days 30 / critical_days 7.
    assert!(
        b.contains(
            "<span class=\"b err\">in 4 days 23h</span></td><td><code>certs/soon.pem</code>"
        ),
        "{b}"
    );
    assert!(b.contains("nas-port"), "{b}");
    assert!(b.contains("http-equiv=\"refresh\""));
    assert!(b.contains("name=\"viewport\""));
    assert!(b.contains("href=\"/metrics\"") && b.contains("href=\"/api/v1/status\""));
    // Markup from the config is escaped, and nothing is loaded from elsewhere.
    assert!(!b.contains("<img"), "{b}");
    assert!(b.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!b.contains("<script") && !b.contains("http://") && !b.contains("https://"));

    let j = get(e.port, "/api/v1/status");
    assert_eq!(j.status, 200);
    assert!(j.headers.to_ascii_lowercase().contains("application/json"));
    let v: serde_json::Value = serde_json::from_str(&j.body).unwrap();
    assert_eq!(v["overall"], "findings");
    let certs = v["panels"]["expiry"].as_array().unwrap();
    assert_eq!(certs[0]["item"], "certs/soon.pem");
    assert_eq!(certs[0]["monitor"], "certificate_expiry");
    assert_eq!(certs[0]["state"], "critical");
    let days = certs[0]["days_left"].as_f64().unwrap();
    assert!((4.0..=5.1).contains(&days), "{days}");
    // The thresholds the colour follows: the monitor's defaults, exported.
    assert_eq!(certs[0]["warning_threshold_seconds"], 30 * 86_400);
    assert_eq!(certs[0]["critical_threshold_seconds"], 7 * 86_400);
    assert!(v["attention"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["target"] == "terraform/environments/prod/terraform.tfstate"));
    let checks = v["panels"]["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2);
    assert_eq!(checks[0]["item"], "nas-port");
    assert_eq!(checks[0]["success"], false);
    // The prod state's drift is a finding of the generic findings panel.
    assert!(
        v["panels"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["monitor"] == "terraform_state"
                && f["target"] == "terraform/environments/prod/terraform.tfstate"
                && f["kind"] == "drift"),
        "{v}"
    );
    assert!(b.contains("<section id=\"findings\">"), "{b}");
    assert_eq!(v["monitors"].as_array().unwrap().len(), 3);
}

#[test]
fn the_page_needs_the_same_auth_as_metrics() {
    let d = fixture();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(
        d.path().join("web.yml"),
        format!("basic_auth_users:\n  admin: \"{hash}\"\n"),
    )
    .unwrap();
    // Started by hand: the shared helper polls /healthz without credentials.
    let port = free_port();
    let child = Command::new(BIN)
        .current_dir(d.path())
        .args([
            "--config",
            "status.yaml",
            "--web.config.file",
            "web.yml",
            &format!("--web.listen-address=127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(port, "GET", "/healthz", "").is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _k = common::tools::Kill(child);
    let e = Port { port };
    for path in ["/", "/api/v1/status", "/metrics"] {
        let r = http(e.port, "GET", path, "").unwrap();
        assert_eq!(r.status, 401, "{path}");
    }
    use base64::Engine;
    let cred = base64::engine::general_purpose::STANDARD.encode("admin:s3cret");
    let r = http(
        e.port,
        "GET",
        "/",
        &format!("Authorization: Basic {cred}\r\n"),
    )
    .unwrap();
    assert_eq!(r.status, 200);
}

struct Port {
    port: u16,
}

/// Run chromium headless with `args` + `url`, bounded to 90 s.
fn chromium(args: &[&str], url: &str) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let logdir = tempfile::tempdir().unwrap();
    let out_path = logdir.path().join("stdout");
    let err_path = logdir.path().join("stderr");
    let mut child = Command::new(tool("chromium", "chromium"))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--enable-logging=stderr",
            "--v=0",
            &format!("--user-data-dir={}", profile.path().display()),
        ])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish in 90s: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    (
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default(),
    )
}

fn console_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect()
}

#[test]
fn renders_in_headless_chromium_at_desktop_and_phone_width() {
    let d = fixture();
    let e = Exporter::start(d.path(), &["--config", "status.yaml"]);
    e.wait_ready();
    let url = format!("http://127.0.0.1:{}/", e.port);

    let (dom, err) = chromium(&["--virtual-time-budget=3000", "--dump-dom"], &url);
    assert!(
        dom.contains("homelab-monitor"),
        "no page; chromium stderr:\n{err}"
    );
    assert!(
        dom.contains("terraform/environments/prod/terraform.tfstate"),
        "{dom}"
    );
    assert!(dom.contains("certs/soon.pem"), "{dom}");
    assert!(!dom.contains("<img"), "markup from the config ran: {dom}");
    assert!(console_errors(&err).is_empty(), "console messages:\n{err}");

    let shots: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&shots).unwrap();
    for (name, size) in [("desktop", "1280,1000"), ("phone", "390,844")] {
        let file = shots.join(format!("status-{name}.png"));
        let _ = std::fs::remove_file(&file);
        let (_, err) = chromium(
            &[
                &format!("--window-size={size}"),
                "--hide-scrollbars",
                &format!("--screenshot={}", file.display()),
            ],
            &url,
        );
        let png =
            std::fs::read(&file).unwrap_or_else(|e| panic!("no {name} screenshot ({e}):\n{err}"));
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5_000,
            "{name}: {} bytes",
            png.len()
        );
        assert!(
            console_errors(&err).is_empty(),
            "{name} console messages:\n{err}"
        );
        eprintln!("screenshot: {}", file.display());
    }
}
