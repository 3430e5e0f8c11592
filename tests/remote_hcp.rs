//! HCP Terraform: a contract test against API shapes written from HashiCorp's
//! API documentation (no live service here), and zero-config reading of a
//! working directory with a `cloud` block. The canary secret must never appear
//! in metrics, reports or debug logs.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::remote::*;
use common::stub::{resp, Handler, Req, Resp, Server};
use common::{series, BIN};

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
    let yaml = format!(
        "custom_monitors:\n  terraform_state:\n    backends:\n      - {{ type: hcp, address: \"{}\", organization: acme, tags: [homelab], token: {{ env: TEST_HCP_TOKEN }} }}\n",
        srv.url("")
    );
    let env = [("TEST_HCP_TOKEN", CANARY), ("TEST_HCP_WRONG", "nope")];
    let (m, text) = monitor_and_scrape_env(dir, &yaml, &env).await;
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
    let (_nm, text) = monitor_and_scrape_env(
        dir,
        &yaml.replace("tags: [homelab]", "workspaces: [homelab-prod, gone]"),
        &env,
    )
    .await;
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
    let (_wm, text) =
        monitor_and_scrape_env(dir, &yaml.replace("TEST_HCP_TOKEN", "TEST_HCP_WRONG"), &env).await;
    assert!(
        text.contains(&format!(
            "terraform_state_error_info{{state_file=\"hcp://127.0.0.1:{}/acme\",component=\"discovery\",reason=\"http_401\"}} 1",
            srv.port
        )),
        "{text}"
    );
}

/// Zero-config for HCP Terraform: a working directory initialised with a
/// `cloud` block (or the older `remote` backend) is read with the token of
/// `terraform login` (credentials.tfrc.json) or the record, over HTTPS to a
/// private CA trusted through SSL_CERT_FILE, as terraform (Go) trusts it.
#[test]
fn zero_config_cloud_block_with_terraform_login_token_and_ssl_cert_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let certs = mtls_certificates(dir);
    let tls = {
        let (chain, key) = server_cert_and_key(&certs);
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
        let all = output_text(&out);
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
