//! Everything `deploy/` ships (Helm chart, kustomize manifests, compose stack,
//! Dockerfile) checked offline by `scripts/check-deploy.sh`: helm lint/template,
//! kubernetes-validate, kubectl kustomize, promtool, amtool, yamllint, the
//! chart's copies of the rules and dashboards in sync, and the shipped configs
//! loading in this build of the exporter. The script installs its tools on the
//! first run (apt, PyPI) and caches them in `.cache/tools`.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn deploy_assets_pass_check_deploy_script() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    common::run_ok(
        "scripts/check-deploy.sh",
        Command::new("bash")
            .arg(root.join("scripts/check-deploy.sh"))
            .current_dir(root)
            .env("HOMELAB_MONITOR_BIN", env!("CARGO_BIN_EXE_homelab-monitor")),
    );
}

/// `rust-version` in Cargo.toml is at least what every locked dependency
/// declares (a build with an older toolchain fails in a dependency), and the
/// README names the same version.
#[test]
fn rust_version_covers_every_locked_dependency() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let host = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("run rustc -vV");
    let host = String::from_utf8_lossy(&host.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host");
    let out = common::run_ok(
        "cargo metadata",
        Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--locked", "--offline"])
            .args(["--filter-platform", &host])
            .current_dir(root),
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let parse = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let mut ours = None;
    let mut highest: (Vec<u64>, String) = (vec![0], String::new());
    for p in meta["packages"].as_array().expect("packages") {
        let Some(rv) = p["rust_version"].as_str() else {
            continue;
        };
        if p["name"] == "homelab-monitor" {
            ours = Some(rv.to_string());
        } else if parse(rv) > highest.0 {
            highest = (parse(rv), format!("{} {} ({rv})", p["name"], p["version"]));
        }
    }
    let ours = ours.expect("Cargo.toml sets rust-version");
    assert!(
        parse(&ours) >= highest.0,
        "rust-version {ours} is lower than {} declares",
        highest.1
    );
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    assert!(
        readme.contains(&format!("Rust toolchain ({ours}+")),
        "README.md does not say `Rust toolchain ({ours}+`"
    );
}

/// issue 13: scripts/demo.sh reported success while another process held its
/// port (it scraped that process), and showed Terraform alone. It must fail
/// clearly when its port is taken, and otherwise show all three monitors from
/// its own exporter.
#[test]
fn demo_script_uses_its_own_exporter_and_shows_three_monitors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if Command::new("openssl").arg("version").output().is_err() {
        println!("SKIP: openssl is not installed (scripts/test.sh installs it)");
        return;
    }
    let demo = |port: Option<u16>| {
        let mut c = Command::new("bash");
        c.arg(root.join("scripts/demo.sh"))
            .current_dir(root)
            .env("HOMELAB_MONITOR_BIN", env!("CARGO_BIN_EXE_homelab-monitor"))
            .env_remove("PORT");
        if let Some(p) = port {
            c.env("PORT", p.to_string());
        }
        let out = c.output().expect("run scripts/demo.sh");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // Another homelab-monitor already answers on the port the demo is given.
    let ex = common::example_copy();
    let other = common::Exporter::start(ex.path(), &["--config", "monitoring-config.yaml"]);
    let (code, out, err) = demo(Some(other.port));
    assert_eq!(code, Some(1), "demo on a taken port:\n{out}\n{err}");
    assert!(
        err.contains(&format!(
            "port {} on 127.0.0.1 is already taken",
            other.port
        )),
        "{err}"
    );
    assert!(!out.contains("demo: ok"), "{out}");
    drop(other);

    // A free port: its own exporter, all three monitors, exit 0.
    let (code, out, err) = demo(None);
    assert_eq!(code, Some(0), "demo:\n{out}\n{err}");
    for want in [
        "terraform_state_drift{state_file=\"terraform/environments/prod/terraform.tfstate\"} 2",
        "certificate_source_up{source=\"file\",path=\"certs/web.pem\"} 1",
        "backup_source_up{source=\"app\"} 1",
        "backup_verification_success{source=\"app\"} 1",
        "homelab_monitor_collector_success{monitor=\"certificate_expiry\"} 1",
        "homelab_monitor_collector_success{monitor=\"backup_validation\"} 1",
        "demo: ok",
    ] {
        assert!(
            out.contains(want),
            "demo output lacks {want:?}:\n{out}\n{err}"
        );
    }
    assert!(!err.contains("lists no paths"), "{err}");
}
