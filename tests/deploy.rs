//! Everything `deploy/` ships (Helm chart, kustomize manifests, compose stack,
//! Dockerfile) checked offline by `scripts/check-deploy.sh`: helm lint/template,
//! kubernetes-validate, kubectl kustomize, promtool, amtool, yamllint, the
//! chart's copies of the rules and dashboards in sync, and the shipped configs
//! loading in this build of the exporter. The script installs its tools on the
//! first run (apt, PyPI) and caches them in `.cache/tools`.

use std::path::Path;
use std::process::Command;

#[test]
fn deploy_assets_pass_check_deploy_script() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("scripts/check-deploy.sh"))
        .current_dir(root)
        .env("HOMELAB_MONITOR_BIN", env!("CARGO_BIN_EXE_homelab-monitor"))
        .output()
        .expect("run scripts/check-deploy.sh");
    assert!(
        out.status.success(),
        "scripts/check-deploy.sh failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
