//! Issue 19: sharded replicas (`--shard`/`--total-shards`, `--pod`) split a
//! fleet of 600 state files, 60 remote states (http backend), 20 certificate files and 30 TLS endpoints on
//! loopback so that together they export every target exactly once; checked
//! on each replica's /metrics and through a real Prometheus scraping all of
//! them, then again after moving from 3 to 2 replicas (the mismatch alert's
//! expression holds while old and new replicas disagree, and clears after).

mod common;
#[path = "common/kubeapi.rs"]
mod kubeapi;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::tools::{prom_api, prom_query, prometheus};
use common::*;

const LOCAL_STATES: usize = 600;
/// Remote states behind the loopback HTTP backend helper (one `http` backend each).
const REMOTE_STATES: usize = 60;
const STATES: usize = LOCAL_STATES + REMOTE_STATES;
const CERT_FILES: usize = 20;
const ENDPOINTS: usize = 30;

/// The labels of one exposition line, if it is a sample of `metric`.
fn labels_of(line: &str, metric: &str) -> Option<BTreeMap<String, String>> {
    let rest = line.strip_prefix(metric)?.strip_prefix('{')?;
    let (inside, _) = rest.split_once("} ")?;
    let mut out = BTreeMap::new();
    for part in inside.split("\",") {
        let (k, v) = part.split_once("=\"")?;
        out.insert(k.to_string(), v.trim_end_matches('"').to_string());
    }
    Some(out)
}

fn value_of(line: &str) -> Option<f64> {
    line.rsplit_once(' ')?.1.parse().ok()
}

/// Every target one replica exports, as `kind:key`, each with the value of its `up` series.
fn exported(metrics: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        if let Some(l) = labels_of(line, "terraform_state_up") {
            out.insert(
                format!("state:{}", l["state_file"]),
                value_of(line).unwrap_or(-1.0),
            );
        }
        if let Some(l) = labels_of(line, "certificate_source_up") {
            let key = match l["source"].as_str() {
                "file" => format!("file:{}", l["path"]),
                _ => format!("endpoint:{}", l["endpoint"]),
            };
            out.insert(key, value_of(line).unwrap_or(-1.0));
        }
    }
    out
}

fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(value_of)
}

/// A self-signed certificate (PEM) and its key, for `cn`.
fn cert(cn: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![cn.to_string()]).unwrap();
    let c = params.self_signed(&key).unwrap();
    (c.pem(), key.serialize_pem())
}

/// `n` TLS servers on 127.0.0.1 (each completes handshakes), run by `rt`.
fn tls_endpoints(rt: &tokio::runtime::Runtime, n: usize) -> Vec<String> {
    tls_endpoints_and_cert(rt, n).0
}

/// `n` TLS servers on 127.0.0.1 and the certificate they all serve (for `fleet.test`).
fn tls_endpoints_and_cert(
    rt: &tokio::runtime::Runtime,
    n: usize,
) -> (Vec<String>, rustls::pki_types::CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let c = rcgen::CertificateParams::new(vec!["fleet.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![c.der().clone().into_owned()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let addrs = (0..n)
        .map(|_| {
            let acceptor = acceptor.clone();
            let listener = rt
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            rt.spawn(async move {
                while let Ok((sock, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        if let Ok(mut tls) = acceptor.accept(sock).await {
                            use tokio::io::AsyncReadExt;
                            let mut buf = [0u8; 64];
                            let _ =
                                tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
                                    .await;
                        }
                    });
                }
            });
            addr
        })
        .collect();
    (addrs, c.der().clone().into_owned())
}

/// The fleet on disk: states, certificate files and the config naming the endpoints.
/// Returns every target key the replicas must cover.
fn fleet(dir: &Path, endpoints: &[String], remote_port: u16) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for i in 0..LOCAL_STATES {
        let d = dir.join(format!("states/env-{i:03}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("terraform.tfstate"),
            format!("{{\"version\": 4, \"terraform_version\": \"1.11.0\", \"serial\": {i}, \"lineage\": \"l-{i}\", \"outputs\": {{}}, \"resources\": []}}\n"),
        )
        .unwrap();
        all.insert(format!("state:states/env-{i:03}/terraform.tfstate"));
    }
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    for i in 0..CERT_FILES {
        let (pem, _) = cert(&format!("host-{i}.fleet.test"));
        std::fs::write(dir.join(format!("certs/host-{i:02}.pem")), pem).unwrap();
        all.insert(format!("file:certs/host-{i:02}.pem"));
    }
    let eps: String = endpoints.iter().map(|e| format!("      - {e}\n")).collect();
    let mut backends = String::new();
    for i in 0..REMOTE_STATES {
        let url = format!("http://127.0.0.1:{remote_port}/state/app-{i:02}");
        backends.push_str(&format!(
            "      - {{ type: http, address: \"{url}\", auth: none }}\n"
        ));
        all.insert(format!("state:{url}"));
    }
    std::fs::write(
        dir.join("c.yaml"),
        format!("custom_monitors:\n  terraform_state:\n    state_dirs: [states]\n    remote: {{ retries: 0 }}\n    backends:\n{backends}  certificate_expiry:\n    paths: [certs]\n    endpoints:\n{eps}"),
    )
    .unwrap();
    for e in endpoints {
        all.insert(format!("endpoint:{e}"));
    }
    all
}

/// Each replica's exported targets; asserts they are a partition of `all`
/// (union = all, pairwise disjoint), every one read (up 1), and that each
/// replica's self metrics tell its shard and how many targets it owns.
fn assert_partition(replicas: &[(&Exporter, u32, u32)], all: &BTreeSet<String>) {
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for (e, shard, total) in replicas {
        let m = e.metrics();
        let own = exported(&m);
        assert!(!own.is_empty(), "shard {shard} exports nothing");
        let info =
            format!("homelab_monitor_shard_info{{shard=\"{shard}\",total_shards=\"{total}\"}} 1");
        assert!(m.contains(&info), "no {info} in shard {shard}'s metrics");
        assert_eq!(
            sample(&m, "homelab_monitor_shard_total_shards "),
            Some(f64::from(*total))
        );
        let states = own.keys().filter(|k| k.starts_with("state:")).count();
        assert_eq!(
            sample(
                &m,
                "homelab_monitor_shard_targets{monitor=\"terraform_state\"}"
            ),
            Some(states as f64),
            "shard {shard}"
        );
        assert_eq!(
            sample(&m, "terraform_state_targets "),
            Some(states as f64),
            "shard {shard}"
        );
        for (k, up) in own {
            assert_eq!(up, 1.0, "{k} on shard {shard} was not read");
            if let Some(other) = seen.insert(k.clone(), *shard) {
                panic!("{k} is exported by shards {other} and {shard}");
            }
        }
    }
    let got: BTreeSet<String> = seen.keys().cloned().collect();
    let missing: Vec<&String> = all.difference(&got).collect();
    let extra: Vec<&String> = got.difference(all).collect();
    assert!(
        missing.is_empty(),
        "not exported by any replica: {missing:?}"
    );
    assert!(extra.is_empty(), "unexpected targets: {extra:?}");
}

/// Write Prometheus' file_sd target list (atomically).
fn write_targets(path: &Path, ports: &[u16]) {
    let list: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("[{{\"targets\": [{}]}}]\n", list.join(", "))).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn query_vector(port: u16, expr: &str) -> Vec<serde_json::Value> {
    let v = prom_query(port, expr);
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn assert_empty(port: u16, expr: &str) {
    let r = query_vector(port, expr);
    assert!(r.is_empty(), "{expr}: {r:?}");
}

fn scalar_of(result: &[serde_json::Value]) -> Option<f64> {
    result.first()?["value"][1].as_str()?.parse().ok()
}

const MISMATCH: &str = "HomelabMonitorShardMismatch";

/// The shipped mismatch rule's expression.
fn mismatch_expr() -> String {
    let text = std::fs::read_to_string(repo().join("alerts/homelab-monitor.rules.yml")).unwrap();
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    v["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .find(|r| r["alert"] == MISMATCH)
        .and_then(|r| r["expr"].as_str().map(str::to_string))
        .expect("the mismatch rule is shipped")
}

#[test]
fn shards_partition_the_fleet_and_converge_from_three_to_two_replicas() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let endpoints = tls_endpoints(&rt, ENDPOINTS);
    let dir = tempfile::tempdir().unwrap();
    let state = b"{\"version\": 4, \"terraform_version\": \"1.11.0\", \"serial\": 1, \"lineage\": \"remote\", \"outputs\": {}, \"resources\": []}\n".to_vec();
    let (remote, _) = common::remote::etag_fleet_server(state, Duration::ZERO);
    let all = fleet(dir.path(), &endpoints, remote.port);
    let cfg = ["--config", "c.yaml"];

    // Three replicas; the third finds its shard from its StatefulSet pod name.
    let r0 = Exporter::start(
        dir.path(),
        &[&cfg[..], &["--shard", "0", "--total-shards", "3"]].concat(),
    );
    let r1 = Exporter::start(
        dir.path(),
        &[&cfg[..], &["--shard", "1", "--total-shards", "3"]].concat(),
    );
    let r2 = Exporter::start(
        dir.path(),
        &[
            &cfg[..],
            &[
                "--pod",
                "homelab-monitor-2",
                "--pod-namespace",
                "monitoring",
                "--total-shards",
                "3",
            ],
        ]
        .concat(),
    );
    for r in [&r0, &r1, &r2] {
        r.wait_ready();
    }
    assert_partition(&[(&r0, 0, 3), (&r1, 1, 3), (&r2, 2, 3)], &all);

    // Through a real Prometheus scraping every replica.
    let work = tempfile::tempdir().unwrap();
    let sd = work.path().join("targets.json");
    write_targets(&sd, &[r0.port, r1.port, r2.port]);
    std::fs::write(
        work.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: homelab-monitor\n    file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 1s\n",
            repo().join("alerts/homelab-monitor.rules.yml").display(),
            sd.display()
        ),
    )
    .unwrap();
    let (_prom, pp) = prometheus(work.path(), &work.path().join("prometheus.yml"));
    let covered = |n_replicas: usize, total: u32| {
        wait_for("every replica scraped", 90, || {
            let up = query_vector(pp, "count(up == 1)");
            let info = query_vector(
                pp,
                &format!("count(homelab_monitor_shard_info{{total_shards=\"{total}\"}})"),
            );
            (scalar_of(&up) == Some(n_replicas as f64)
                && scalar_of(&info) == Some(n_replicas as f64)
                && query_vector(pp, "up == 0").is_empty())
            .then_some(())
        });
        // Union = all: every state and endpoint is in Prometheus...
        let states = query_vector(pp, "count(count by (state_file) (terraform_state_up == 1))");
        assert_eq!(scalar_of(&states), Some(STATES as f64));
        let eps = query_vector(
            pp,
            "count(count by (endpoint) (certificate_source_up{source=\"endpoint\"} == 1))",
        );
        assert_eq!(scalar_of(&eps), Some(ENDPOINTS as f64));
        let files = query_vector(
            pp,
            "count(count by (path) (certificate_source_up{source=\"file\"} == 1))",
        );
        assert_eq!(scalar_of(&files), Some(CERT_FILES as f64));
        // ...and intersections are empty: no target from two replicas.
        assert_empty(pp, "count by (state_file) (terraform_state_up) > 1");
        assert_empty(
            pp,
            "count by (endpoint) (certificate_source_up{source=\"endpoint\"}) > 1",
        );
        assert_empty(
            pp,
            "count by (path) (certificate_source_up{source=\"file\"}) > 1",
        );
        // The replicas' own count agrees.
        let owned = query_vector(
            pp,
            "sum(homelab_monitor_shard_targets{monitor=\"terraform_state\"})",
        );
        assert_eq!(scalar_of(&owned), Some(STATES as f64));
        let owned = query_vector(
            pp,
            "sum(homelab_monitor_shard_targets{monitor=\"certificate_expiry\"})",
        );
        assert_eq!(scalar_of(&owned), Some((ENDPOINTS + CERT_FILES) as f64));
    };
    covered(3, 3);
    let expr = mismatch_expr();
    assert_empty(pp, &expr);

    // 3 -> 2: the new replicas start while the old ones still run (a
    // rolling change): the replicas disagree on the total and some targets
    // are exported twice; the mismatch expression holds.
    let n0 = Exporter::start(
        dir.path(),
        &[&cfg[..], &["--shard", "0", "--total-shards", "2"]].concat(),
    );
    let n1 = Exporter::start(
        dir.path(),
        &[&cfg[..], &["--shard", "1", "--total-shards", "2"]].concat(),
    );
    n0.wait_ready();
    n1.wait_ready();
    assert_partition(&[(&n0, 0, 2), (&n1, 1, 2)], &all);
    write_targets(&sd, &[r0.port, r1.port, r2.port, n0.port, n1.port]);
    wait_for(
        "the mismatch while old and new replicas disagree",
        90,
        || (!query_vector(pp, &expr).is_empty()).then_some(()),
    );
    let twice = query_vector(pp, "count(count by (state_file) (terraform_state_up) > 1)");
    assert!(
        scalar_of(&twice).unwrap_or(0.0) > 0.0,
        "double coverage while both sets run"
    );
    wait_for("the mismatch alert pending", 90, || {
        let v = prom_api(pp, "/api/v1/alerts");
        v["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .any(|a| a["labels"]["alertname"] == MISMATCH)
            .then_some(())
    });

    // The old replicas go: full coverage by two, exactly once, and the mismatch clears.
    write_targets(&sd, &[n0.port, n1.port]);
    drop((r0, r1, r2));
    wait_for("the old replicas gone from Prometheus", 90, || {
        let n = query_vector(pp, "count(homelab_monitor_shard_info)");
        (scalar_of(&n) == Some(2.0)).then_some(())
    });
    covered(2, 2);
    wait_for("the mismatch cleared", 90, || {
        query_vector(pp, &expr).is_empty().then_some(())
    });
    drop(rt);
}

// Bad sharding flags (also from the environment) stop the exporter with a message that says what to do.
#[test]
fn invalid_shard_flags_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(BIN)
            .args(args)
            .args(["--web.listen-address", "127.0.0.1:1"])
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(
        &[],
        &[
            ("HOMELAB_MONITOR_SHARD", "3"),
            ("HOMELAB_MONITOR_TOTAL_SHARDS", "3"),
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--shard 3 is out of range for --total-shards 3: shards are numbered 0 to 2"),
        "{err}"
    );
    let (code, err) = run(&["--shard", "0", "--total-shards", "0"], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--total-shards must be at least 1"), "{err}");
    let (code, err) = run(
        &["--total-shards", "2"],
        &[("HOMELAB_MONITOR_POD", "homelab-monitor-abc")],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("does not end in a StatefulSet ordinal"),
        "{err}"
    );
    // --pod alone reads the total from the StatefulSet: outside a cluster
    // (no service account, no --kubeconfig) it cannot start, and says why.
    let (code, err) = run(&["--pod", "homelab-monitor-1"], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--pod homelab-monitor-1 without --total-shards reads the number of shards from the pod's StatefulSet")
            && err.contains("give --kubeconfig, or give --total-shards"),
        "{err}"
    );
}

/// Peak resident memory of a process (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The baseline: one process (this test, one thread) reading the same bytes
/// in turn: every remote state by a plain HTTP GET, then one TLS handshake
/// per endpoint. Returns the wall time and how many handshakes verified.
fn single_process_read(
    remote_port: u16,
    n: usize,
    endpoints: &[String],
    ca: &rustls::pki_types::CertificateDer<'static>,
) -> (f64, usize) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let t0 = std::time::Instant::now();
    for i in 0..n {
        let r = http(remote_port, "GET", &format!("/state/app-{i:03}"), "").unwrap();
        assert_eq!(r.status, 200);
    }
    let mut verified = 0;
    for e in endpoints {
        let name = rustls::pki_types::ServerName::try_from("fleet.test").unwrap();
        let mut conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
        let mut sock = std::net::TcpStream::connect(e.as_str()).unwrap();
        let mut ok = true;
        while conn.is_handshaking() {
            if conn.complete_io(&mut sock).is_err() {
                ok = false;
                break;
            }
        }
        verified += usize::from(ok);
    }
    (t0.elapsed().as_secs_f64(), verified)
}

/// Release fleet benchmark (README "Sharding"), issue 19: N remote states
/// (one `http` backend each) behind the loopback fleet server answering after
/// 20 ms (a slow backend), and N/2 TLS endpoints on loopback (rustls), read
/// cold by 1 replica, then by 3 started together: wall time from start until
/// every replica has read each of its targets (up 1, polled every 50 ms), and
/// each replica's peak RSS; medians of 3 fresh runs, for N = 100, 300, 600.
/// The baseline is one process reading the same bytes in turn (every state
/// GET, then one handshake per endpoint).
///
///     cargo test --release --test sharding -- --ignored --nocapture sharding_bench
#[test]
#[ignore]
fn sharding_bench() {
    const RUNS: usize = 3;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let state = b"{\"version\": 4, \"terraform_version\": \"1.11.0\", \"serial\": 1, \"lineage\": \"remote\", \"outputs\": {}, \"resources\": []}\n".to_vec();
    let (remote, _) = common::remote::etag_fleet_server(state, Duration::from_millis(20));
    let (all_endpoints, ca) = tls_endpoints_and_cert(&rt, 300);
    for n in [100usize, 300, 600] {
        let endpoints = &all_endpoints[..n / 2];
        let dir = tempfile::tempdir().unwrap();
        let mut backends = String::new();
        for i in 0..n {
            backends.push_str(&format!(
                "      - {{ type: http, address: \"http://127.0.0.1:{}/state/app-{i:03}\", auth: none }}\n",
                remote.port
            ));
        }
        let eps: String = endpoints.iter().map(|e| format!("      - {e}\n")).collect();
        std::fs::write(
            dir.path().join("c.yaml"),
            format!("custom_monitors:\n  terraform_state:\n    timeout: 120s\n    remote: {{ retries: 0 }}\n    backends:\n{backends}  certificate_expiry:\n    timeout: 120s\n    endpoints:\n{eps}"),
        )
        .unwrap();
        let targets = n + endpoints.len();
        let base: Vec<(f64, usize)> = (0..RUNS)
            .map(|_| single_process_read(remote.port, n, endpoints, &ca))
            .collect();
        println!(
            "sharding bench: {n} remote states + {} endpoints: single-process read {:.2} s ({} of {} handshakes verified)",
            endpoints.len(),
            median(base.iter().map(|b| b.0).collect()),
            base[0].1,
            endpoints.len()
        );
        for total in [1u32, 3] {
            let mut walls = Vec::new();
            let mut rss: Vec<Vec<f64>> = vec![Vec::new(); total as usize];
            for _ in 0..RUNS {
                let t0 = std::time::Instant::now();
                let replicas: Vec<Exporter> = (0..total)
                    .map(|s| {
                        let (s, t) = (s.to_string(), total.to_string());
                        Exporter::start(
                            dir.path(),
                            &["--config", "c.yaml", "--shard", &s, "--total-shards", &t],
                        )
                    })
                    .collect();
                // Ready may serve a first collection with reads still
                // running: wait until every target has been read.
                let deadline = std::time::Instant::now() + Duration::from_secs(300);
                loop {
                    let read: usize = replicas
                        .iter()
                        .map(|r| {
                            exported(&r.metrics())
                                .values()
                                .filter(|up| **up == 1.0)
                                .count()
                        })
                        .sum();
                    if read == targets {
                        break;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{read} of {targets} read after 300 s"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
                walls.push(t0.elapsed().as_secs_f64());
                for (i, r) in replicas.iter().enumerate() {
                    rss[i].push(peak_rss_mib(r.child.id()));
                }
            }
            let rss: Vec<String> = rss
                .into_iter()
                .map(|v| format!("{:.1}", median(v)))
                .collect();
            println!(
                "sharding bench: {n} remote states + {} endpoints, {total} replica(s): cold collection {:.2} s (runs {}), peak RSS per replica {} MiB",
                endpoints.len(),
                median(walls.clone()),
                walls.iter().map(|w| format!("{w:.2}")).collect::<Vec<_>>().join(" "),
                rss.join(" / ")
            );
        }
    }
    drop(rt);
}

/// Issue 19 for the backups, health checks and zfs monitors: two replicas of
/// one config read and export disjoint sets of backup sources (by name),
/// health checks (by name) and zpool status files (by path), whose union is
/// every one configured; each replica's `homelab_monitor_shard_targets`
/// counts its own.
#[test]
fn shards_partition_backup_sources_health_checks_and_zfs_files() {
    const N: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let (mut sources, mut checks, mut files) = (String::new(), String::new(), Vec::new());
    let mut all: BTreeSet<String> = BTreeSet::new();
    for i in 0..N {
        let b = dir.path().join(format!("backups/b{i:02}"));
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("dump.sql.gz"), b"x").unwrap();
        sources.push_str(&format!(
            "      - {{ name: src-{i:02}, format: directory, path: backups/b{i:02} }}\n"
        ));
        all.insert(format!("backup_validation:src-{i:02}"));
        checks.push_str(&format!(
            "    - {{ name: disk-{i:02}, disk: {{ path: \".\", min_free_ratio: 0.0 }} }}\n"
        ));
        all.insert(format!("health_checks:disk-{i:02}"));
        std::fs::create_dir_all(dir.path().join("zfs")).unwrap();
        std::fs::write(
            dir.path().join(format!("zfs/host-{i:02}.txt")),
            format!("  pool: tank{i}\n state: ONLINE\n  scan: scrub repaired 0B in 00:12:34 with 0 errors on Sun Nov  8 00:36:35 2026\nconfig:\n\n\tNAME        STATE     READ WRITE CKSUM\n\ttank{i}       ONLINE       0     0     0\n\nerrors: No known data errors\n"),
        )
        .unwrap();
        files.push(format!("zfs/host-{i:02}.txt"));
        all.insert(format!("zfs_scrub:zfs/host-{i:02}.txt"));
    }
    std::fs::write(
        dir.path().join("c.yaml"),
        format!(
            "custom_monitors:\n  backup_validation:\n    sources:\n{sources}  zfs_scrub:\n    timezone: UTC\n    status_files: [{}]\nhealth_checks:\n  checks:\n{checks}",
            files.join(", ")
        ),
    )
    .unwrap();
    let replicas: Vec<Exporter> = (0..2)
        .map(|s| {
            Exporter::start(
                dir.path(),
                &[
                    "--config",
                    "c.yaml",
                    "--shard",
                    &s.to_string(),
                    "--total-shards",
                    "2",
                ],
            )
        })
        .collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (shard, e) in replicas.iter().enumerate() {
        e.wait_ready();
        let m = e.metrics();
        let mut own: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for line in m.lines() {
            if let Some(l) = labels_of(line, "homelab_monitor_target_last_read_timestamp_seconds") {
                let key = format!("{}:{}", l["monitor"], l["target"]);
                if let Some(other) = seen.insert(key.clone(), shard) {
                    panic!("{key} is read by shards {other} and {shard}");
                }
            }
            // The monitors' own series follow the same split.
            for (metric, label, monitor) in [
                ("backup_source_up", "source", "backup_validation"),
                ("health_check_success", "check", "health_checks"),
                ("zfs_status_file_up", "file", "zfs_scrub"),
            ] {
                if let Some(l) = labels_of(line, metric) {
                    assert_eq!(value_of(line), Some(1.0), "shard {shard}: {line}");
                    own.entry(monitor).or_default().insert(l[label].clone());
                }
            }
        }
        for monitor in ["backup_validation", "health_checks", "zfs_scrub"] {
            let read: BTreeSet<String> = seen
                .iter()
                .filter(|(k, s)| **s == shard && k.starts_with(&format!("{monitor}:")))
                .map(|(k, _)| k[monitor.len() + 1..].to_string())
                .collect();
            let exported = own.get(monitor).cloned().unwrap_or_default();
            assert!(
                !read.is_empty(),
                "shard {shard} reads no {monitor} target:\n{m}"
            );
            assert_eq!(exported, read, "shard {shard} {monitor}: exported vs read");
            assert_eq!(
                sample(
                    &m,
                    &format!("homelab_monitor_shard_targets{{monitor=\"{monitor}\"}}")
                ),
                Some(read.len() as f64),
                "shard {shard} {monitor}"
            );
        }
    }
    let got: BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(
        got, all,
        "the union of both shards is every configured target"
    );
}

// ---------------------------------------------------------------- auto total from the StatefulSet

const NS: &str = "monitoring";
const STS: &str = "homelab-monitor";
const POD: &str = "homelab-monitor-1";

/// A StatefulSet as the API returns it (the fields k8s-openapi requires).
fn statefulset(replicas: u32) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"labels": {"app.kubernetes.io/name": "homelab-monitor"}},
        "spec": {
            "replicas": replicas,
            "serviceName": STS,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app.kubernetes.io/name": "homelab-monitor"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "homelab-monitor"}},
                "spec": {"containers": [{"name": "exporter", "image": "homelab-monitor"}]}
            }
        },
        "status": {"replicas": replicas}
    })
}

/// A pod of the StatefulSet `owner` (None: a bare pod).
fn pod(owner: Option<&str>) -> serde_json::Value {
    let owners: Vec<serde_json::Value> = owner
        .map(|o| {
            serde_json::json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": o,
                                     "uid": "00000000-0000-4000-8000-00000000beef",
                                     "controller": true, "blockOwnerDeletion": true})
        })
        .into_iter()
        .collect();
    serde_json::json!({
        "metadata": {"ownerReferences": owners},
        "spec": {"containers": [{"name": "exporter", "image": "homelab-monitor"}]}
    })
}

/// 30 local states and 9 health checks, re-checked every second; their keys
/// (`homelab_monitor_target_last_read_timestamp_seconds`'s `target`).
fn small_fleet(dir: &Path) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    let mut checks = String::new();
    for i in 0..30 {
        let d = dir.join(format!("states/env-{i:02}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("terraform.tfstate"),
            format!("{{\"version\": 4, \"terraform_version\": \"1.11.0\", \"serial\": {i}, \"lineage\": \"l-{i}\", \"outputs\": {{}}, \"resources\": []}}\n"),
        )
        .unwrap();
        keys.push((
            "terraform_state".to_string(),
            format!("states/env-{i:02}/terraform.tfstate"),
        ));
    }
    for i in 0..9 {
        checks.push_str(&format!(
            "    - {{ name: disk-{i}, interval: 1s, disk: {{ path: \".\", min_free_ratio: 0.0 }} }}\n"
        ));
        keys.push(("health_checks".to_string(), format!("disk-{i}")));
    }
    std::fs::write(
        dir.join("c.yaml"),
        format!("custom_monitors:\n  terraform_state:\n    check_interval: 1s\n    retry_interval: 0s\n    state_dirs: [states]\nhealth_checks:\n  checks:\n{checks}"),
    )
    .unwrap();
    keys
}

/// Every `monitor:target` read and exported by one replica (a state counts
/// only if its `terraform_state_up` series is there too).
fn read_targets(m: &str) -> BTreeSet<String> {
    let states: BTreeSet<String> = m
        .lines()
        .filter_map(|l| labels_of(l, "terraform_state_up"))
        .map(|l| l["state_file"].clone())
        .collect();
    m.lines()
        .filter_map(|l| labels_of(l, "homelab_monitor_target_last_read_timestamp_seconds"))
        .filter(|l| l["monitor"] != "terraform_state" || states.contains(&l["target"]))
        .map(|l| format!("{}:{}", l["monitor"], l["target"]))
        .collect()
}

/// The part of `keys` shard 1 of `total` owns.
fn part(keys: &[(String, String)], total: u32) -> BTreeSet<String> {
    keys.iter()
        .filter(|(_, k)| homelab_monitor::core::shard::shard_of(k, total) == 1)
        .map(|(m, k)| format!("{m}:{k}"))
        .collect()
}

/// Scrape until the replica partitions with `total` and exports exactly `want`.
fn until_partitioned(e: &Exporter, total: u32, want: &BTreeSet<String>) -> String {
    let mut last = String::new();
    for _ in 0..60 {
        let m = e.refreshed_metrics();
        if sample(&m, "homelab_monitor_shard_total_shards ") == Some(f64::from(total))
            && read_targets(&m) == *want
        {
            return m;
        }
        last = m;
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!(
        "never partitioned with {total} shards exporting {want:?}; last read {:?}\n{}",
        read_targets(&last),
        e.logs()
    );
}

// Issue 19: --pod without --total-shards takes the total from the pod's
// StatefulSet and follows its spec.replicas at run time: 3 -> 2 re-partitions
// without a restart (targets no longer owned vanish, new ones appear); a
// scale-down that leaves this ordinal out is held; an API error keeps the total.
#[test]
fn auto_total_follows_the_statefulset_replicas_without_restart() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt.block_on(kubeapi::FakeApi::start());
    api.put("statefulsets", NS, STS, statefulset(3));
    api.put("pods", NS, POD, pod(Some(STS)));
    let dir = tempfile::tempdir().unwrap();
    let keys = small_fleet(dir.path());
    let kc = api.kubeconfig(dir.path());
    let e = Exporter::start(
        dir.path(),
        &[
            "--config",
            "c.yaml",
            "--pod",
            POD,
            "--pod-namespace",
            NS,
            "--kubeconfig",
            kc.to_str().unwrap(),
        ],
    );
    e.wait_ready();
    let (third, half) = (part(&keys, 3), part(&keys, 2));
    // The change must drop and add targets, else it would prove nothing.
    assert!(!third.is_empty() && !half.is_empty());
    assert!(third.difference(&half).count() > 0 && half.difference(&third).count() > 0);
    let m = until_partitioned(&e, 3, &third);
    let sts = format!("{{statefulset=\"{NS}/{STS}\"}}");
    assert!(m.contains("homelab_monitor_shard_info{shard=\"1\",total_shards=\"3\"} 1"));
    assert_eq!(
        sample(&m, &format!("homelab_monitor_shard_statefulset_up{sts}")),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            &format!("homelab_monitor_shard_statefulset_replicas{sts}")
        ),
        Some(3.0)
    );
    let reqs = api.requests();
    assert!(
        reqs.iter()
            .any(|r| r.starts_with(&format!("/api/v1/namespaces/{NS}/pods/{POD}"))),
        "{reqs:?}"
    );

    // 3 -> 2 in the API: no restart, the next checks re-partition.
    api.put("statefulsets", NS, STS, statefulset(2));
    let m = until_partitioned(&e, 2, &half);
    assert!(m.contains("homelab_monitor_shard_info{shard=\"1\",total_shards=\"2\"} 1"));
    assert_eq!(
        sample(
            &m,
            &format!("homelab_monitor_shard_statefulset_replicas{sts}")
        ),
        Some(2.0)
    );
    assert!(
        e.logs()
            .contains(&format!("total shards 3 → 2 from StatefulSet {NS}/{STS}")),
        "{}",
        e.logs()
    );
    let reqs = api.requests();
    assert!(
        reqs.iter().any(
            |r| r.starts_with(&format!("/apis/apps/v1/namespaces/{NS}/statefulsets?"))
                && r.contains("watch=true")
                && r.contains("metadata.name%3Dhomelab-monitor")
        ),
        "the StatefulSet is watched: {reqs:?}"
    );

    // Scaled to 1: this pod (ordinal 1) is about to go; it keeps 2 shards and
    // its targets rather than owning nothing, and warns.
    api.put("statefulsets", NS, STS, statefulset(1));
    wait_for("the StatefulSet's replicas 1 seen", 60, || {
        let m = e.metrics();
        (sample(
            &m,
            &format!("homelab_monitor_shard_statefulset_replicas{sts}"),
        ) == Some(1.0))
        .then_some(())
    });
    until_partitioned(&e, 2, &half);
    assert!(
        e.logs().contains(
            "scaled to 1 replicas, which leaves out this pod's shard 1: keeping 2 shards"
        ),
        "{}",
        e.logs()
    );

    // The API refuses from now on: the last known total stays, the metric says so.
    api.forbid("statefulsets");
    wait_for("the StatefulSet watch failing", 60, || {
        let m = e.metrics();
        (sample(&m, &format!("homelab_monitor_shard_statefulset_up{sts}")) == Some(0.0))
            .then_some(())
    });
    until_partitioned(&e, 2, &half);
    assert!(
        e.logs()
            .contains(&format!("cannot watch StatefulSet {NS}/{STS}")),
        "{}",
        e.logs()
    );
    // The watch task does not hold up a clean shutdown.
    let mut e = e;
    assert_eq!(e.terminate(), Some(0), "{}", e.logs());
    drop(rt);
}

// No total at start-up: the exporter refuses to start and names what it needs.
#[test]
fn auto_total_refuses_to_start_without_a_statefulset_total() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt.block_on(kubeapi::FakeApi::start());
    let dir = tempfile::tempdir().unwrap();
    small_fleet(dir.path());
    let kc = api.kubeconfig(dir.path());
    let run = |pod_name: &str| {
        let out = Command::new(BIN)
            .args([
                "--config",
                "c.yaml",
                "--pod",
                pod_name,
                "--pod-namespace",
                NS,
            ])
            .args(["--kubeconfig", kc.to_str().unwrap()])
            .args(["--web.listen-address", "127.0.0.1:1"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // RBAC refuses the pod: the message names the Role needed.
    api.put("statefulsets", NS, STS, statefulset(3));
    api.put("pods", NS, POD, pod(Some(STS)));
    api.forbid("pods");
    let (code, err) = run(POD);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot get pod {NS}/{POD}: the API server answered 403 Forbidden"
        )),
        "{err}"
    );
    assert!(
        err.contains("needs a Role in the pod's namespace with `get` on pods and `get`, `list`, `watch` on statefulsets"),
        "{err}"
    );
    api.state.lock().unwrap().forbidden.clear();
    // RBAC refuses the StatefulSet.
    api.forbid("statefulsets");
    let (code, err) = run(POD);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot get StatefulSet {NS}/{STS}: the API server answered 403"
        )),
        "{err}"
    );
    api.state.lock().unwrap().forbidden.clear();
    // A pod no StatefulSet owns.
    api.put("pods", NS, "bare-0", pod(None));
    let (code, err) = run("bare-0");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("has no StatefulSet among its ownerReferences"),
        "{err}"
    );
    // Scaled below this ordinal: no part of the targets is left for it.
    api.put("statefulsets", NS, STS, statefulset(1));
    let (code, err) = run(POD);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "StatefulSet {NS}/{STS} has spec.replicas 1, which leaves out this pod's ordinal 1"
        )),
        "{err}"
    );
    drop(rt);
}
