//! The stack test: a real Prometheus with the shipped rules scrapes the
//! exporter (serving fixture data) and a real node_exporter. Every query of
//! every dashboard panel and variable must parse and return data, and exactly
//! the alerts the fixtures should trigger must fire.
//! Three sharded replicas of the same config (issue 19) must show the same
//! on every panel and fire the same alerts.
//!
//! The rules are loaded with every `for:` set to 0s: the `for` durations are
//! covered by `promtool test rules` (tests/alerts.rs); here the expressions
//! meet real scraped series.

mod common;
#[path = "common/kubeapi.rs"]
mod kubeapi;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::tools::{openssl_cert, prom_query as query, prometheus, s_server, spawn_quiet};
use common::*;

/// A self-signed certificate valid for `days` from now: `{name}.pem`, `{name}.key`.
fn cert(dir: &Path, name: &str, days: u32) {
    openssl_cert(
        dir,
        &format!("{name}.key"),
        &format!("{name}.pem"),
        &format!("{name}.homelab.lan"),
        days,
    );
}

/// A certificate valid only from `from` to `to` (years), as `{name}.pem`.
fn dated_cert(dir: &Path, name: &str, from: i32, to: i32) {
    let mut p = rcgen::CertificateParams::new(vec![format!("{name}.homelab.lan")]).unwrap();
    p.not_before = rcgen::date_time_ymd(from, 1, 1);
    p.not_after = rcgen::date_time_ymd(to, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let c = p.self_signed(&key).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), c.pem()).unwrap();
}

/// The real terraform on PATH, or `None` (the caller prints what is skipped).
fn real_terraform() -> Option<std::path::PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join("terraform"))
        .find(|p| p.is_file())
}

/// Run the real terraform in `dir` (offline: `terraform_data` is built in).
fn tf(bin: &Path, dir: &Path, args: &[&str]) {
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env_remove("TF_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "terraform {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A state written by the real terraform, and its drift report: a
/// refresh-only plan (`-target` ones when `target` is given), as the README's
/// nightly job writes it.
fn terraform_state_with_report(bin: &Path, dir: &Path, main_tf: &str, target: Option<&str>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("main.tf"), main_tf).unwrap();
    tf(bin, dir, &["init", "-input=false", "-no-color"]);
    tf(
        bin,
        dir,
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    let mut plan = vec![
        "plan",
        "-refresh-only",
        "-input=false",
        "-no-color",
        "-out=tfplan",
    ];
    let t;
    if let Some(target) = target {
        t = format!("-target={target}");
        plan.push(&t);
    }
    tf(bin, dir, &plan);
    let out = Command::new(bin)
        .args(["show", "-json", "tfplan"])
        .current_dir(dir)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(dir.join("drift.json"), out.stdout).unwrap();
}

fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$job", ".*")
        .replace("$instance", ".*")
        .replace("$node", ".*")
        .replace("$state_file", ".*")
}

#[test]
fn dashboards_and_alerts_against_a_real_prometheus() {
    let node_exporter = tool("prometheus-node-exporter", "prometheus-node-exporter");
    let ex = example_copy();
    let d = ex.path();
    // The starter policies (docs/policies.md) feed the policy panel and alert.
    copy_dir(&repo().join("policies"), &d.join("policies"));
    // Drift reports carry their own timestamp; drop it so report age = file age (fresh).
    for f in [
        "terraform/drift.json",
        "terraform/environments/prod/drift.json",
        "terraform/environments/staging/drift.json",
    ] {
        let p = d.join(f);
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("timestamp");
        std::fs::write(&p, v.to_string()).unwrap();
    }
    // Real terraform: a check block that fails (in the state from the apply
    // and in the nightly refresh-only plan), and a drift report made with
    // -target (incomplete). An OpenTofu encrypted state cannot be checked.
    let terraform = real_terraform();
    if let Some(bin) = &terraform {
        terraform_state_with_report(
            bin,
            &d.join("generated/checks"),
            "resource \"terraform_data\" \"web\" { input = \"v1\" }\ncheck \"web_is_v2\" {\n  assert {\n    condition     = terraform_data.web.output == \"v2\"\n    error_message = \"web is not at v2\"\n  }\n}\n",
            None,
        );
        terraform_state_with_report(
            bin,
            &d.join("generated/partial"),
            "resource \"terraform_data\" \"web\" { input = \"v1\" }\nresource \"terraform_data\" \"db\" { input = \"v1\" }\n",
            Some("terraform_data.web"),
        );
    } else {
        eprintln!("SKIPPED the terraform-made states of the stack test (TerraformDriftReportChecksFailing, TerraformDriftReportIncomplete): `terraform` is not on PATH (scripts/install-terraform.sh installs one)");
    }
    std::fs::create_dir_all(d.join("terraform/environments/sealed")).unwrap();
    std::fs::copy(
        repo().join("tests/fixtures/terraform/hand/encrypted.tfstate"),
        d.join("terraform/environments/sealed/terraform.tfstate"),
    )
    .unwrap();
    // Those two are served by a second exporter without the starter policies
    // (they would flag Terraform's built-in provider of `terraform_data`).
    std::fs::write(
        d.join("generated.yaml"),
        "custom_monitors:\n  terraform_state:\n    check_interval: 2s\n    state_files: [generated/*/terraform.tfstate]\n",
    )
    .unwrap();
    // A third exporter whose state folder is empty: nothing is monitored.
    std::fs::create_dir_all(d.join("empty-states")).unwrap();
    std::fs::write(
        d.join("empty.yaml"),
        "custom_monitors:\n  terraform_state:\n    check_interval: 2s\n    state_dirs: [empty-states/]\n",
    )
    .unwrap();

    // Certificates: fine, inside warning_days, inside critical_days, expired.
    let certs = d.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    cert(&certs, "fine", 400);
    cert(&certs, "soon", 20);
    cert(&certs, "urgent", 3);
    dated_cert(&certs, "expired", 2020, 2021);
    // Deployed before its notBefore: clients reject it.
    dated_cert(&certs, "future", 2099, 2100);
    for k in ["fine.key", "soon.key", "urgent.key"] {
        std::fs::remove_file(certs.join(k)).unwrap();
    }
    // A live endpoint with a self-signed chain (does not verify).
    let tls_dir = tempfile::tempdir().unwrap();
    cert(tls_dir.path(), "selfsigned", 400);
    let (_s, tls_addr) = s_server(
        tls_dir.path(),
        &["-cert", "selfsigned.pem", "-key", "selfsigned.key", "-www"],
    );
    let tls_port = tls_addr.rsplit(':').next().unwrap().to_string();
    // A CRL file (fresh, from `openssl ca -gencrl`) for the revocation panels.
    let crl_dir = d.join("crl");
    std::fs::create_dir_all(&crl_dir).unwrap();
    openssl_cert(&crl_dir, "ca.key", "ca.pem", "Stack CRL CA", 30);
    std::fs::write(
        crl_dir.join("ca.cnf"),
        "[ ca ]\ndefault_ca = d\n[ d ]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\n",
    )
    .unwrap();
    std::fs::write(crl_dir.join("index.txt"), "").unwrap();
    std::fs::write(crl_dir.join("crlnumber"), "01\n").unwrap();
    common::tools::openssl(
        &crl_dir,
        &[
            "ca", "-config", "ca.cnf", "-gencrl", "-keyfile", "ca.key", "-cert", "ca.pem",
            "-crldays", "7", "-out", "ca.crl",
        ],
    );
    // Backups: healthy, shrunk, stopped, tampered, old without max_age,
    // fewer than min_snapshots, gone.
    let b = d.join("backups");
    let now = std::time::SystemTime::now();
    let at = |hours_ago: u64| {
        humantime::format_rfc3339_seconds(now - Duration::from_secs(hours_ago * 3600)).to_string()
    };
    let run = |hours_ago: u64, size: u64| serde_json::json!({"version": 1, "id": format!("run-{hours_ago}"), "start": at(hours_ago + 1), "end": at(hours_ago), "status": "success", "size": size});
    let write_json = |rel: &str, v: serde_json::Value| {
        let p = b.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, v.to_string()).unwrap();
    };
    write_json(
        "nightly/manifest.json",
        serde_json::json!([
            run(97, 1000),
            run(73, 1010),
            run(49, 1020),
            run(25, 1030),
            run(1, 1040)
        ]),
    );
    write_json(
        "shrunk/manifest.json",
        serde_json::json!([run(73, 1000), run(49, 1000), run(25, 1000), run(1, 100)]),
    );
    write_json(
        "stale/manifest.json",
        serde_json::json!([run(120, 1000), run(96, 1000), run(72, 1000)]),
    );
    // The newest tampered run lists a file that is not there any more.
    std::fs::create_dir_all(b.join("tampered")).unwrap();
    std::fs::write(b.join("tampered/db.sql.gz"), vec![7u8; 64]).unwrap();
    let mut last = run(1, 128);
    last["files"] =
        serde_json::json!([{"path": "db.sql.gz", "size": 64}, {"path": "uploads.tar", "size": 64}]);
    write_json(
        "tampered/manifest.json",
        serde_json::json!([run(49, 128), run(25, 128), last]),
    );
    // No max_age: the rule's 2-day default applies.
    write_json(
        "forgotten/manifest.json",
        serde_json::json!([run(100, 1000), run(76, 1000), run(52, 1000)]),
    );
    // A restic repository shared by two hosts (restic 0.17 snapshot JSON):
    // both sets fresh, for the per-set panels.
    let snap = |host: &str, hours_ago: u64| serde_json::json!({"time": at(hours_ago + 1), "hostname": host, "paths": [format!("/srv/{host}")], "summary": {"backup_end": at(hours_ago), "total_files_processed": 10, "total_bytes_processed": 1000}});
    write_json(
        "shared/snapshots.json",
        serde_json::json!([
            snap("web", 25),
            snap("db", 25),
            snap("web", 1),
            snap("db", 2)
        ]),
    );
    std::fs::create_dir_all(b.join("pruned")).unwrap();
    std::fs::write(b.join("pruned/dump-latest.sql.gz"), vec![1u8; 2048]).unwrap();

    // Kubernetes sources against the test API server: TLS Secrets in two
    // namespaces (one inside warning_days), and ConfigMaps the token may not
    // list (forbidden: the source is down, with its reason).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt.block_on(kubeapi::FakeApi::start());
    let kube_dir = tempfile::tempdir().unwrap();
    let secret = |name: &str, days: u32| {
        cert(kube_dir.path(), name, days);
        let pem = std::fs::read_to_string(kube_dir.path().join(format!("{name}.pem"))).unwrap();
        kubeapi::tls_secret(&pem, None, serde_json::json!({}))
    };
    api.put("secrets", "apps", "web-tls", secret("web", 10));
    api.put("secrets", "infra", "ingress-tls", secret("ingress", 300));
    api.forbid("configmaps");
    let kubeconfig = api.kubeconfig(d);

    // Health checks: one port that answers, one that is closed (nothing listens).
    let closed_port = free_port();
    std::fs::write(
        d.join("stack.yaml"),
        format!(
            "custom_monitors:\n  terraform_state:\n    check_interval: 2s\n    policies: [policies/]\n    state_files:\n      - terraform/terraform.tfstate\n      - terraform/environments/*/terraform.tfstate\n  certificate_expiry:\n    check_interval: 2s\n    warning_days: 30\n    critical_days: 7\n    paths: [certs/]\n    crls: [crl/ca.crl]\n    endpoints: [{{ address: \"127.0.0.1:{tls_port}\", revocation: {{ ocsp: true }} }}]\n    kubernetes:\n      kubeconfig: {}\n      sources:\n        - kind: tls_secrets\n        - kind: configmaps\n          keys: [ca.crt]\n  backup_validation:\n    check_interval: 2s\n    retention_days: 30\n    sources:\n      - {{ name: nightly, format: manifest, path: backups/nightly/manifest.json, max_age: 26h }}\n      - {{ name: shrunk, format: manifest, path: backups/shrunk/manifest.json, max_age: 26h }}\n      - {{ name: stale, format: manifest, path: backups/stale/manifest.json, max_age: 26h }}\n      - {{ name: tampered, format: manifest, path: backups/tampered/manifest.json, verify: sizes }}\n      - {{ name: forgotten, format: manifest, path: backups/forgotten/manifest.json }}\n      - {{ name: pruned, format: directory, path: backups/pruned, pattern: \"*.sql.gz\", min_snapshots: 3 }}\n      - {{ name: gone, format: directory, path: backups/gone }}\n      - {{ name: shared, format: restic, path: backups/shared/snapshots.json, max_age: 26h }}\nhealth_checks:\n  checks:\n    - {{ name: tls-port, interval: 2s, tcp: {{ address: \"127.0.0.1:{tls_port}\" }} }}\n    - {{ name: closed-port, interval: 2s, timeout: 2s, tcp: {{ address: \"127.0.0.1:{closed_port}\" }} }}\n    - {{ name: workdir-disk, interval: 2s, disk: {{ path: \".\", min_free_ratio: 0.0 }} }}\n",
            kubeconfig.display()
        ),
    )
    .unwrap();
    let exporter = Exporter::start(d, &["--config", "stack.yaml"]);
    exporter.wait_ready();
    let generated = Exporter::start(d, &["--config", "generated.yaml"]);
    generated.wait_ready();
    let empty = Exporter::start(d, &["--config", "empty.yaml"]);
    empty.wait_ready();
    // The same config split between 3 sharded replicas (issue 19): its
    // dashboards must show what the unsharded job shows.
    let shards: Vec<Exporter> = (0..3)
        .map(|i| {
            let i = i.to_string();
            Exporter::start(
                d,
                &[
                    "--config",
                    "stack.yaml",
                    "--shard",
                    &i,
                    "--total-shards",
                    "3",
                ],
            )
        })
        .collect();
    let sharded_targets: String = shards
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.wait_ready();
            format!(
                "      - {{targets: ['127.0.0.1:{}'], labels: {{pod: homelab-monitor-{i}}}}}\n",
                e.port
            )
        })
        .collect();

    let node_port = free_port();
    let _n = spawn_quiet(
        "node_exporter",
        Command::new(node_exporter).arg(format!("--web.listen-address=127.0.0.1:{node_port}")),
    );

    // The shipped rules with every `for:` removed.
    let work = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(repo().join("alerts/homelab-monitor.rules.yml")).unwrap();
    let rules: String = rules
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("for: ") {
                format!("{}for: 0s", &l[..l.len() - l.trim_start().len()])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(work.path().join("rules.yml"), rules).unwrap();
    std::fs::write(
        work.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: homelab-monitor\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n  - job_name: homelab-monitor-generated\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n  - job_name: homelab-monitor-empty\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n  - job_name: node\n    static_configs: [{{targets: ['127.0.0.1:{node_port}']}}]\n  - job_name: {SHARDED}\n    static_configs:\n{sharded_targets}",
            exporter.port, generated.port, empty.port
        ),
    )
    .unwrap();
    let (_p, port) = prometheus(work.path(), Path::new("prometheus.yml"));
    wait_for("all seven targets up", 60, || {
        let v = query(port, "count(up == 1)");
        (v["data"]["result"][0]["value"][1] == "7").then_some(())
    });
    // rate() over 1m needs a few samples; let some scrapes and evaluations pass.
    std::thread::sleep(Duration::from_secs(8));

    // Every dashboard: every panel query and variable query returns data.
    let mut checked = 0;
    let mut empty = Vec::new();
    for entry in std::fs::read_dir(repo().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for v in dash["templating"]["list"].as_array().unwrap() {
            let Some(q) = v["definition"].as_str() else {
                continue;
            };
            // label_values(selector, label)
            let inner = q.trim_start_matches("label_values(").trim_end_matches(')');
            let (sel, label) = inner.rsplit_once(',').unwrap();
            let r = query(
                port,
                &format!("count by ({}) ({})", label.trim(), substitute(sel.trim())),
            );
            assert_eq!(r["status"], "success", "{name} variable {q}: {r}");
            if r["data"]["result"]
                .as_array()
                .map(|a| a.is_empty())
                .unwrap_or(true)
            {
                empty.push(format!("{name}: variable {q}"));
            }
            checked += 1;
        }
        for panel in dash["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().unwrap() {
                let expr = substitute(t["expr"].as_str().unwrap());
                let r = query(port, &expr);
                assert_eq!(
                    r["status"], "success",
                    "{name} / {}: {expr}: {r}",
                    panel["title"]
                );
                if r["data"]["result"]
                    .as_array()
                    .map(|a| a.is_empty())
                    .unwrap_or(true)
                {
                    empty.push(format!("{name} / {}: {expr}", panel["title"]));
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 60, "only {checked} queries");
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );

    dashboards_equal_over_the_sharded_job(port);

    // Alerts: exactly the expected ones fire.
    let mut expected: BTreeSet<String> = [
        "TerraformStateDrift terraform/environments/prod/terraform.tfstate",
        "TerraformPendingChanges terraform/terraform.tfstate",
        "TerraformTaintedInstances terraform/terraform.tfstate",
        "TerraformDeposedInstances terraform/environments/prod/terraform.tfstate",
        "TerraformChecksFailing terraform/environments/prod/terraform.tfstate",
        "TerraformPolicyViolation terraform/environments/prod/terraform.tfstate",
        "TerraformStateNotChecked terraform/environments/sealed/terraform.tfstate",
        "TerraformNothingMonitored ",
        "CertificateExpiringWarning certs/soon.pem",
        "CertificateExpiringWarning certs/urgent.pem",
        "CertificateExpiringCritical certs/urgent.pem",
        "CertificateExpired certs/expired.pem",
        "CertificateNotYetValid certs/future.pem",
        &format!("CertificateNotVerified 127.0.0.1:{tls_port}"),
        // Revocation is on for the self-signed endpoint: no issuer to check
        // an answer with, so unknown (for: 1h, 0s here). No request is made.
        &format!("CertificateRevocationCheckFailing 127.0.0.1:{tls_port}"),
        "BackupShrank shrunk",
        "BackupTooOld stale",
        "BackupTooOldWithoutMaxAge forgotten",
        "BackupVerificationFailed tampered",
        "BackupTooFewSnapshots pruned",
        "BackupSourceDown gone",
        "HealthCheckFailing closed-port",
        "HealthCheckDown closed-port",
        "HomelabMonitorTargetsFailing backup_validation",
        "CertificateExpiringWarning secret",
        "CertificateKubernetesSourceDown ",
        "HomelabMonitorTargetsFailing certificate_expiry",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if terraform.is_some() {
        for a in [
            "TerraformChecksFailing generated/checks/terraform.tfstate",
            "TerraformDriftReportChecksFailing generated/checks/terraform.tfstate",
            "TerraformDriftReportIncomplete generated/partial/terraform.tfstate",
        ] {
            expected.insert(a.to_string());
        }
    }
    let firing = wait_for("alerts", 60, || {
        let r = get(port, "/api/v1/alerts");
        let start = r.body.find('{')?;
        let v: serde_json::Value =
            serde_json::from_str(&r.body[start..r.body.rfind('}')? + 1]).ok()?;
        let set: BTreeSet<String> = v["data"]["alerts"]
            .as_array()?
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                let l = &a["labels"];
                let key = [
                    "state_file",
                    "path",
                    "endpoint",
                    "source",
                    "monitor",
                    "check",
                ]
                .iter()
                .find_map(|k| {
                    l[*k].as_str().filter(|_| {
                        *k != "source" || l["path"].is_null() && l["endpoint"].is_null()
                    })
                })
                .unwrap_or("");
                format!("{} {}", l["alertname"].as_str().unwrap_or(""), key)
            })
            .collect();
        (set.len() >= expected.len()).then_some(set)
    });
    assert_eq!(firing, expected, "metrics:\n{}", exporter.metrics());
    // The sharded job fires the same alerts, with the same labels, as the unsharded one.
    let by_job = |job: &str| -> BTreeSet<String> {
        let v = common::tools::prom_api(port, "/api/v1/alerts");
        v["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|a| a["state"] == "firing" && a["labels"]["job"] == job)
            .map(|a| key_of(&a["labels"]))
            .collect()
    };
    let unsharded = by_job(UNSHARDED);
    assert!(!unsharded.is_empty());
    assert_eq!(by_job(SHARDED), unsharded);
}

/// The job of the exporter serving stack.yaml, and of its 3 sharded replicas.
const UNSHARDED: &str = "homelab-monitor";
const SHARDED: &str = "homelab-monitor-sharded";

/// Panels whose values may differ between the unsharded job and the sharded
/// one, each with why; their label sets (without instance and pod) must still
/// be equal. Every other panel must give the same label sets and values.
const PER_REPLICA_PANELS: &[(&str, &str)] = &[
    ("Exporter up", "self metric: one `up` per replica by design (each pod's health)"),
    ("Monitors", "self metric: every replica runs every monitor (on its share of the targets), so 3 replicas count each monitor 3 times"),
    ("Collection duration", "duration: each replica's own collection time"),
    ("Age of served values (cached for check_interval)", "time: depends on when each replica last collected"),
    ("Collections per minute", "self metric: a rate per replica, driven by its own scrapes"),
    ("Stale monitors", "self metric: one series per replica and monitor"),
    ("Build", "self metric: one build_info per replica"),
    ("Health check duration", "duration: each run's own timing"),
];

/// Panels computed from the time a replica read its target (not from the
/// fixture files alone), each with the largest difference allowed between
/// two replicas that read seconds apart, and why.
const READ_TIME_PANELS: &[(&str, f64, &str)] = &[(
    "Lifetime left",
    1e-4,
    "certificate_lifetime_remaining_ratio is (notAfter - now) / lifetime at read time: 1e-4 of the shortest fixture lifetime (20 days) is 3 minutes",
)];

/// A Prometheus series' labels without the ones that tell replicas apart.
fn key_of(labels: &serde_json::Value) -> String {
    let mut m = labels.as_object().cloned().unwrap_or_default();
    for l in ["job", "instance", "pod"] {
        m.remove(l);
    }
    serde_json::Value::Object(m).to_string()
}

/// An instant query evaluated at `time` (unix seconds): (labels without
/// job/instance/pod, value) of every series.
fn query_at(port: u16, expr: &str, time: f64) -> Vec<(String, f64)> {
    let enc: String = expr
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let v = common::tools::prom_api(port, &format!("/api/v1/query?query={enc}&time={time:.3}"));
    assert_eq!(v["status"], "success", "{expr}: {v}");
    let value = |p: &serde_json::Value| {
        p[1].as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN)
    };
    match v["data"]["resultType"].as_str() {
        Some("scalar") => vec![(String::new(), value(&v["data"]["result"]))],
        _ => v["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| (key_of(&s["metric"]), value(&s["value"])))
            .collect(),
    }
}

/// What one panel query shows for `job`: values by label set, sorted.
fn shown(port: u16, expr: &str, job: &str, time: f64) -> Vec<(String, f64)> {
    let e = expr
        .replace("$__rate_interval", "1m")
        .replace("$job", job)
        .replace("$instance", ".*")
        .replace("$node", ".*")
        .replace("$state_file", ".*");
    let mut r = query_at(port, &e, time);
    r.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    r
}

/// The differences between the two jobs over every dashboard panel query
/// and every variable but job/instance, evaluated at one instant.
fn dashboard_differences(port: u16) -> (usize, Vec<String>) {
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let (mut compared, mut diffs) = (0, Vec::new());
    for entry in std::fs::read_dir(repo().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let mut exprs: Vec<(String, String)> = Vec::new();
        for v in dash["templating"]["list"].as_array().unwrap() {
            let Some(q) = v["definition"].as_str() else {
                continue;
            };
            let inner = q.trim_start_matches("label_values(").trim_end_matches(')');
            let (sel, label) = inner.rsplit_once(',').unwrap();
            if !["job", "instance"].contains(&label.trim()) {
                exprs.push((
                    format!("variable {q}"),
                    format!("count by ({}) ({})", label.trim(), sel.trim()),
                ));
            }
        }
        for panel in dash["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().unwrap() {
                let title = panel["title"].as_str().unwrap_or("").to_string();
                exprs.push((title, t["expr"].as_str().unwrap().to_string()));
            }
        }
        for (title, expr) in exprs {
            let a = shown(port, &expr, UNSHARDED, time);
            let b = shown(port, &expr, SHARDED, time);
            compared += 1;
            let per_replica = PER_REPLICA_PANELS.iter().any(|(t, _)| *t == title);
            let tolerance = READ_TIME_PANELS
                .iter()
                .find(|(t, _, _)| *t == title)
                .map_or(0.0, |(_, tol, _)| *tol);
            let same = if per_replica {
                let keys =
                    |r: &[(String, f64)]| r.iter().map(|x| x.0.clone()).collect::<BTreeSet<_>>();
                keys(&a) == keys(&b)
            } else {
                a.len() == b.len()
                    && a.iter().zip(&b).all(|(x, y)| {
                        x.0 == y.0
                            && (x.1 == y.1
                                || (x.1 - y.1).abs() <= 1e-9 * x.1.abs().max(1.0) + tolerance
                                || x.1.is_nan() && y.1.is_nan())
                    })
            };
            if !same {
                diffs.push(format!(
                    "{name} / {title}: {expr}\n  {UNSHARDED}: {a:?}\n  {SHARDED}: {b:?}"
                ));
            }
        }
    }
    (compared, diffs)
}

/// Issue 19: every dashboard panel shows the same for the sharded job (3
/// replicas, `pod` labels as a PodMonitor adds them) as for the unsharded
/// one over the same fixture files: the same label sets once instance and pod
/// are dropped, and the same values at one evaluation time, except the
/// per-replica panels (label sets only) and the read-time ones (a
/// tolerance) listed above. Retried for a while:
/// the replicas' first collections and scrapes land at different times.
fn dashboards_equal_over_the_sharded_job(port: u16) {
    let mut last = Vec::new();
    for _ in 0..30 {
        let (compared, diffs) = dashboard_differences(port);
        assert!(compared > 60, "only {compared} queries compared");
        if diffs.is_empty() {
            return;
        }
        last = diffs;
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!(
        "dashboards differ between the unsharded and the sharded job:\n{}",
        last.join("\n")
    );
}
