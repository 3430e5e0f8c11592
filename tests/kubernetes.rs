//! `certificate_expiry.kubernetes`: the monitor against a small test API server
//! (tests/common/kubeapi.rs) on 127.0.0.1 that answers like the Kubernetes API (shapes from the API
//! reference's "API Concepts": list responses with `metadata.resourceVersion`
//! and `metadata.continue`, items without kind/apiVersion; watch streams of
//! `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": ...}` lines; an
//! expired resourceVersion as an ERROR event carrying a 410 `Status`
//! (reason `Expired`); RBAC refusals as a 403 `Status` (reason `Forbidden`)).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::json;

use homelab_monitor::core::config::{parse, CertificateConfig};
use homelab_monitor::core::monitor::{CollectContext, Monitor};
use homelab_monitor::core::snapshot::{Health, Snapshot};
use homelab_monitor::monitors::certificates::CertificateMonitor;

mod common;
#[path = "common/kubeapi.rs"]
mod kubeapi;
use kubeapi::{b64, tls_secret, FakeApi};

/// 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;

fn ctx() -> CollectContext {
    CollectContext {
        now: UNIX_EPOCH + Duration::from_secs(NOW),
    }
}

/// A self-signed certificate valid until `na` (y, m, d); returns (PEM, DER, notAfter).
fn cert(cn: &str, na: (i32, u8, u8)) -> (String, Vec<u8>, f64) {
    let mut p = rcgen::CertificateParams::new(vec![format!("{cn}.lan")]).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(na.0, na.1, na.2);
    let key = rcgen::KeyPair::generate().unwrap();
    let c = p.self_signed(&key).unwrap();
    (
        c.pem(),
        c.der().to_vec(),
        p.not_after.unix_timestamp() as f64,
    )
}

// ---------------------------------------------------------------- monitor helpers

fn monitor(dir: &Path, yaml_inside_certificate_expiry: &str) -> CertificateMonitor {
    let text = format!(
        "custom_monitors:\n  certificate_expiry:\n{}",
        yaml_inside_certificate_expiry
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    );
    let cfg: CertificateConfig = parse(&text, Path::new("test.yaml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .custom_monitors
        .certificate_expiry
        .unwrap();
    CertificateMonitor::new(cfg, dir.to_path_buf())
}

/// Collect until `ok` holds (the watches run in the background; a collection
/// never waits on the API). Fails after 60 s with the last snapshot's series.
async fn until(m: &CertificateMonitor, what: &str, ok: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let start = Instant::now();
    loop {
        let s = m.collect(ctx()).await.unwrap();
        if ok(&s) {
            return s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let text = homelab_monitor::core::encoder::encode(
                vec![Arc::new(s.clone())],
                homelab_monitor::core::encoder::Format::Classic,
            )
            .unwrap_or_default();
            panic!("timed out waiting for: {what}\n{text}\n{:#?}", s.targets);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn secret_not_after(s: &Snapshot, ns: &str, name: &str, key: &str, index: &str) -> Option<f64> {
    s.value(
        "certificate_not_after_timestamp_seconds",
        &[
            ("source", "secret"),
            ("namespace", ns),
            ("secret", name),
            ("key", key),
            ("index", index),
        ],
    )
}

fn lists(api: &FakeApi) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.contains("/secrets") && !r.contains("watch=true"))
        .count()
}

// ---------------------------------------------------------------- tests

/// TLS Secrets are listed in pages with the `type` field selector, then watched:
/// an added, a modified and a deleted Secret each change the exported series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_secrets_list_in_pages_then_follow_the_watch() {
    let api = FakeApi::start().await;
    let (ca_pem, _, ca_na) = cert("Cluster CA", (2030, 1, 1));
    let mut na = BTreeMap::new();
    for i in 0..5 {
        let (pem, _, t) = cert(&format!("web{i}"), (2026, 3, 1 + i as u8));
        api.put(
            "secrets",
            "apps",
            &format!("web{i}"),
            tls_secret(&pem, Some(&ca_pem), json!({})),
        );
        na.insert(format!("web{i}"), t);
    }
    // Not a TLS Secret: the field selector keeps it out (and its key is not read).
    api.put(
        "secrets",
        "apps",
        "helm-release",
        json!({"type": "helm.sh/release.v1", "data": {"tls.crt": b64(b"not a certificate")}}),
    );
    // An excluded namespace.
    let (pem, _, _) = cert("sys", (2026, 6, 1));
    api.put(
        "secrets",
        "kube-system",
        "sys",
        tls_secret(&pem, None, json!({})),
    );

    let d = tempfile::tempdir().unwrap();
    let kc = api.kubeconfig(d.path());
    let m = monitor(
        d.path(),
        &format!(
            "kubernetes:\n  kubeconfig: {}\n  page_size: 2\n  sources:\n    - kind: tls_secrets\n      exclude_namespaces: [kube-system]\n",
            kc.display()
        ),
    );
    // The first collection starts the watches; until the first LIST completes it is pending.
    let s = until(&m, "the first complete list", |s| {
        s.value("certificate_kubernetes_source_synced", &[]) == Some(1.0)
    })
    .await;
    for i in 0..5 {
        let name = format!("web{i}");
        assert_eq!(
            secret_not_after(&s, "apps", &name, "tls.crt", "0"),
            Some(na[&name]),
            "{name}"
        );
        assert_eq!(
            secret_not_after(&s, "apps", &name, "ca.crt", "0"),
            Some(ca_na)
        );
    }
    assert_eq!(
        secret_not_after(&s, "apps", "helm-release", "tls.crt", "0"),
        None
    );
    assert_eq!(
        secret_not_after(&s, "kube-system", "sys", "tls.crt", "0"),
        None
    );
    assert_eq!(
        s.value(
            "certificate_kubernetes_source_up",
            &[("kind", "tls_secrets")]
        ),
        Some(1.0)
    );
    assert_eq!(
        s.value("certificate_kubernetes_source_objects", &[]),
        Some(5.0)
    );
    let reqs = api.requests();
    let list_reqs: Vec<&String> = reqs
        .iter()
        .filter(|r| r.starts_with("/api/v1/secrets?") && !r.contains("watch=true"))
        .collect();
    // 5 TLS Secrets in pages of 2: three LIST requests, the later ones with `continue`.
    assert_eq!(list_reqs.len(), 3, "{reqs:#?}");
    for r in &list_reqs {
        assert!(r.contains("limit=2"), "{r}");
        assert!(
            r.contains(
                "fieldSelector=type%3Dkubernetes.io%2Ftls%2Cmetadata.namespace%21%3Dkube-system"
            ),
            "{r}"
        );
    }
    assert!(
        list_reqs[1].contains("continue=2") && list_reqs[2].contains("continue=4"),
        "{list_reqs:#?}"
    );
    let watch = reqs
        .iter()
        .find(|r| r.contains("watch=true"))
        .expect("a watch request");
    assert!(watch.contains("allowWatchBookmarks=true"), "{watch}");
    assert!(watch.contains("resourceVersion="), "{watch}");
    assert!(
        watch.contains("fieldSelector=type%3Dkubernetes.io%2Ftls"),
        "{watch}"
    );

    // ADDED
    let (pem, _, new_na) = cert("new", (2027, 1, 1));
    api.put("secrets", "apps", "new", tls_secret(&pem, None, json!({})));
    until(&m, "the added Secret", |s| {
        secret_not_after(s, "apps", "new", "tls.crt", "0") == Some(new_na)
    })
    .await;
    // MODIFIED: a renewed certificate replaces the series.
    let (pem, _, renewed) = cert("web0", (2028, 2, 2));
    api.put("secrets", "apps", "web0", tls_secret(&pem, None, json!({})));
    let s = until(&m, "the modified Secret", |s| {
        secret_not_after(s, "apps", "web0", "tls.crt", "0") == Some(renewed)
    })
    .await;
    // Its ca.crt key went away with the update.
    assert_eq!(secret_not_after(&s, "apps", "web0", "ca.crt", "0"), None);
    // DELETED
    api.delete("secrets", "apps", "web1");
    let s = until(&m, "the deleted Secret to go", |s| {
        secret_not_after(s, "apps", "web1", "tls.crt", "0").is_none()
    })
    .await;
    assert_eq!(
        secret_not_after(&s, "apps", "web2", "tls.crt", "0"),
        Some(na["web2"])
    );
    // Only the initial LIST pages: the changes came through the watch.
    assert_eq!(lists(&api), 3);
}

/// A watch whose resourceVersion has expired gets 410 Gone and re-lists: a
/// Secret removed while no watch could report it disappears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_410_triggers_a_relist() {
    let api = FakeApi::start().await;
    for name in ["keep", "gone"] {
        let (pem, _, _) = cert(name, (2026, 5, 1));
        api.put("secrets", "apps", name, tls_secret(&pem, None, json!({})));
    }
    let d = tempfile::tempdir().unwrap();
    let kc = api.kubeconfig(d.path());
    let m = monitor(
        d.path(),
        &format!(
            "kubernetes:\n  kubeconfig: {}\n  sources:\n    - kind: tls_secrets\n",
            kc.display()
        ),
    );
    until(&m, "both Secrets", |s| {
        secret_not_after(s, "apps", "gone", "tls.crt", "0").is_some()
            && secret_not_after(s, "apps", "keep", "tls.crt", "0").is_some()
    })
    .await;
    assert_eq!(lists(&api), 1);
    api.compact_and_drop("secrets", "apps", "gone");
    let s = until(
        &m,
        "the re-list to drop the Secret removed during the gap",
        |s| secret_not_after(s, "apps", "gone", "tls.crt", "0").is_none(),
    )
    .await;
    assert!(secret_not_after(&s, "apps", "keep", "tls.crt", "0").is_some());
    assert_eq!(lists(&api), 2, "{:#?}", api.requests());
    // An expired watch is not an outage.
    assert_eq!(s.value("certificate_kubernetes_source_up", &[]), Some(1.0));
    assert!(s
        .family("certificate_kubernetes_source_error_info")
        .is_none_or(|f| f.samples.is_empty()));
}

/// RBAC refusing the list: an error metric and an error target, never a clean
/// "no certificates"; a refusal after a good read keeps the old facts, stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_is_an_error_not_a_clean() {
    let api = FakeApi::start().await;
    let (pem, _, na) = cert("web", (2026, 5, 1));
    api.put("secrets", "apps", "web", tls_secret(&pem, None, json!({})));
    api.put(
        "configmaps",
        "apps",
        "bundle",
        json!({"data": {"ca.crt": pem}}),
    );
    api.forbid("configmaps");
    let d = tempfile::tempdir().unwrap();
    let kc = api.kubeconfig(d.path());
    let m = monitor(
        d.path(),
        &format!(
            "kubernetes:\n  kubeconfig: {}\n  sources:\n    - kind: tls_secrets\n      namespaces: [apps]\n    - kind: configmaps\n      keys: [ca.crt]\n",
            kc.display()
        ),
    );
    let s = until(&m, "the configmaps error and the secrets list", |s| {
        s.value(
            "certificate_kubernetes_source_up",
            &[("kind", "configmaps")],
        ) == Some(0.0)
            && s.value(
                "certificate_kubernetes_source_synced",
                &[("kind", "tls_secrets")],
            ) == Some(1.0)
    })
    .await;
    assert_eq!(
        s.value(
            "certificate_kubernetes_source_error_info",
            &[
                ("kind", "configmaps"),
                ("namespace", ""),
                ("reason", "forbidden")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        s.value(
            "certificate_kubernetes_source_synced",
            &[("kind", "configmaps")]
        ),
        Some(0.0)
    );
    let t = s
        .targets
        .iter()
        .find(|t| t.target == "kubernetes configmaps")
        .expect("a target for the failing source");
    assert_eq!(t.health, Health::Error);
    assert!(t.error.as_deref().unwrap_or("").contains("403"), "{t:?}");
    assert!(t.finding_count(NOW as i64) == 0 && t.health != Health::Ok);
    // The namespaced Secret watch works (its URL names the namespace).
    assert_eq!(
        secret_not_after(&s, "apps", "web", "tls.crt", "0"),
        Some(na)
    );
    assert!(api
        .requests()
        .iter()
        .any(|r| r.starts_with("/api/v1/namespaces/apps/secrets?")));

    // Now the Secrets watch is refused too: the last good facts stay, stale.
    api.forbid("secrets");
    let s = until(&m, "the secrets error", |s| {
        s.value(
            "certificate_kubernetes_source_up",
            &[("kind", "tls_secrets")],
        ) == Some(0.0)
    })
    .await;
    assert_eq!(
        secret_not_after(&s, "apps", "web", "tls.crt", "0"),
        Some(na)
    );
    let t = s
        .targets
        .iter()
        .find(|t| t.target.starts_with("kubernetes: secret apps/web"))
        .expect("the Secret's target");
    assert!(t.stale, "{t:?}");
    let w = s
        .targets
        .iter()
        .find(|t| t.target == "kubernetes tls_secrets in apps")
        .expect("the watch target");
    assert_eq!(w.health, Health::Error);
    assert!(w.stale);
}

/// ConfigMaps by key (PEM in data, DER in binaryData) with a label selector,
/// and the CA bundles of a ValidatingWebhookConfiguration (one series per webhook).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmaps_by_key_and_webhook_ca_bundles() {
    let api = FakeApi::start().await;
    let (pem, _, pem_na) = cert("bundle-pem", (2029, 1, 1));
    let (_, der, der_na) = cert("bundle-der", (2029, 2, 2));
    api.put("configmaps", "infra", "trust", json!({"metadata": {"labels": {"app": "trust"}}, "data": {"ca.crt": pem, "other": "x"}, "binaryData": {"ca.der": b64(&der)}}));
    api.put(
        "configmaps",
        "infra",
        "unlabelled",
        json!({"data": {"ca.crt": pem}}),
    );
    api.put("configmaps", "infra", "broken", json!({"metadata": {"labels": {"app": "trust"}}, "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"}}));
    let (w1, _, w1_na) = cert("hook-one", (2027, 7, 7));
    let (w2, _, w2_na) = cert("hook-two", (2027, 8, 8));
    api.put(
        "validatingwebhookconfigurations",
        "",
        "policy",
        json!({"webhooks": [
            {"name": "one.policy.example.com", "clientConfig": {"caBundle": b64(format!("{w1}{w2}").as_bytes()), "service": {"namespace": "policy", "name": "hook"}}, "sideEffects": "None", "admissionReviewVersions": ["v1"]},
            {"name": "two.policy.example.com", "clientConfig": {"url": "https://hook.example.com"}, "sideEffects": "None", "admissionReviewVersions": ["v1"]}
        ]}),
    );
    let d = tempfile::tempdir().unwrap();
    let kc = api.kubeconfig(d.path());
    let m = monitor(
        d.path(),
        &format!(
            "kubernetes:\n  kubeconfig: {}\n  sources:\n    - kind: configmaps\n      keys: [ca.crt, ca.der]\n      label_selector: app=trust\n    - kind: validating_webhooks\n",
            kc.display()
        ),
    );
    let s = until(&m, "both sources listed", |s| {
        s.family("certificate_kubernetes_source_synced")
            .is_some_and(|f| f.samples.len() == 2 && f.samples.iter().all(|x| x.value == 1.0))
    })
    .await;
    let cm = |name: &str, key: &str| {
        s.value(
            "certificate_not_after_timestamp_seconds",
            &[
                ("source", "configmap"),
                ("namespace", "infra"),
                ("configmap", name),
                ("key", key),
                ("index", "0"),
            ],
        )
    };
    assert_eq!(cm("trust", "ca.crt"), Some(pem_na));
    assert_eq!(cm("trust", "ca.der"), Some(der_na));
    assert_eq!(cm("unlabelled", "ca.crt"), None);
    assert!(api
        .requests()
        .iter()
        .any(|r| r.contains("/configmaps?") && r.contains("labelSelector=app%3Dtrust")));
    // A key that does not parse is an error series of its own, with the parser's reason.
    assert_eq!(
        s.value(
            "certificate_source_up",
            &[
                ("source", "configmap"),
                ("configmap", "broken"),
                ("key", "ca.crt")
            ]
        ),
        Some(0.0)
    );
    assert_eq!(
        s.value(
            "certificate_source_error_info",
            &[("configmap", "broken"), ("reason", "malformed_pem")]
        ),
        Some(1.0)
    );
    let hook = |index: &str| {
        s.value(
            "certificate_not_after_timestamp_seconds",
            &[
                ("source", "validating_webhook"),
                ("namespace", ""),
                ("webhook", "policy"),
                ("key", "one.policy.example.com"),
                ("index", index),
            ],
        )
    };
    assert_eq!(hook("0"), Some(w1_na));
    assert_eq!(hook("1"), Some(w2_na));
    // The webhook without a caBundle has no series.
    assert_eq!(
        s.value(
            "certificate_source_up",
            &[("webhook", "policy"), ("key", "two.policy.example.com")]
        ),
        None
    );
    // No Secret data and no private key ever reaches the exposition.
    let text = homelab_monitor::core::encoder::encode(
        vec![Arc::new(s.clone())],
        homelab_monitor::core::encoder::Format::Classic,
    )
    .unwrap();
    assert!(!text.contains("BEGIN"), "{text}");
}

/// Config mistakes stop start-up with a message naming the source.
/// The value of the first sample whose line starts with `prefix`.
fn first_value(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
}

/// The secrets (`namespace/name`) one replica exports certificates of.
fn exported_secrets(metrics: &str) -> std::collections::BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("certificate_not_after_timestamp_seconds{"))
        .filter(|l| l.contains("source=\"secret\""))
        .filter_map(|l| {
            let label = |k: &str| {
                let rest = l.split_once(&format!("{k}=\""))?.1;
                rest.split_once('"').map(|(v, _)| v.to_string())
            };
            Some(format!("{}/{}", label("namespace")?, label("secret")?))
        })
        .collect()
}

/// Issue 19: two replicas (`--shard 0|1 --total-shards 2`, the real binary)
/// watching the same 12 TLS Secrets export each Secret exactly once, and the
/// one whose shard is FNV-1a(uid) mod 2 (not the name: a Secret recreated
/// under the same name may move).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_partition_kubernetes_objects_by_uid() {
    let api = FakeApi::start().await;
    let mut all = std::collections::BTreeSet::new();
    for i in 0..12 {
        let (pem, _, _) = cert(&format!("svc{i}"), (2026, 5, 1 + i as u8));
        let ns = if i % 2 == 0 { "apps" } else { "web" };
        api.put(
            "secrets",
            ns,
            &format!("svc{i}"),
            tls_secret(&pem, None, json!({})),
        );
        all.insert(format!("{ns}/svc{i}"));
    }
    let uid_of: BTreeMap<String, String> = api
        .state
        .lock()
        .unwrap()
        .objects
        .iter()
        .map(|((_, ns, name), o)| {
            let uid = o["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (format!("{ns}/{name}"), uid)
        })
        .collect();
    let d = tempfile::tempdir().unwrap();
    let kc = api.kubeconfig(d.path());
    std::fs::write(
        d.path().join("c.yaml"),
        format!(
            "custom_monitors:\n  certificate_expiry:\n    kubernetes:\n      kubeconfig: {}\n      sources:\n        - kind: tls_secrets\n",
            kc.display()
        ),
    )
    .unwrap();
    let dir = d.path().to_path_buf();
    let per_shard = tokio::task::spawn_blocking(move || {
        (0..2u32)
            .map(|shard| {
                let s = shard.to_string();
                let e = common::Exporter::start(
                    &dir,
                    &["--config", "c.yaml", "--shard", &s, "--total-shards", "2"],
                );
                let m = common::wait_for("the replica's first complete list", 60, || {
                    let m = e.refreshed_metrics();
                    (first_value(&m, "certificate_kubernetes_source_synced{") == Some(1.0))
                        .then_some(m)
                });
                (shard, exported_secrets(&m), m)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let (a, b) = (&per_shard[0].1, &per_shard[1].1);
    assert!(
        a.is_disjoint(b),
        "both replicas export {:?}",
        a.intersection(b).collect::<Vec<_>>()
    );
    let union: std::collections::BTreeSet<String> = a.union(b).cloned().collect();
    assert_eq!(union, all, "together the replicas export every Secret");
    for (shard, owned, m) in &per_shard {
        assert!(
            !owned.is_empty(),
            "shard {shard} owns nothing of 12 Secrets:\n{m}"
        );
        for secret in owned {
            assert_eq!(
                homelab_monitor::core::shard::shard_of(&uid_of[secret], 2),
                *shard,
                "{secret} (uid {}) exported by the wrong shard",
                uid_of[secret]
            );
        }
        let objects = first_value(m, "certificate_kubernetes_source_objects{");
        assert_eq!(
            objects,
            Some(owned.len() as f64),
            "objects gauge of shard {shard}:\n{m}"
        );
    }
}

#[test]
fn config_mistakes_are_rejected() {
    let load = |k: &str| {
        let text = format!(
            "custom_monitors:\n  certificate_expiry:\n    kubernetes:\n{}",
            k.lines()
                .map(|l| format!("      {l}\n"))
                .collect::<String>()
        );
        parse(&text, Path::new("test.yaml")).map_err(|e| e.to_string())
    };
    for (yaml, want) in [
        ("sources: []", "kubernetes.sources is empty"),
        ("sources:\n  - kind: secrets", "secrets needs `keys`"),
        (
            "sources:\n  - kind: validating_webhooks\n    namespaces: [a]",
            "cluster-scoped",
        ),
        (
            "sources:\n  - kind: tls_secrets\n    namespaces: [a]\n    exclude_namespaces: [b]",
            "not both",
        ),
        (
            "page_size: 0\nsources:\n  - kind: tls_secrets",
            "page_size must be at least 1",
        ),
        ("sources:\n  - kind: webhooks", "webhooks"),
    ] {
        let err = load(yaml).expect_err(yaml);
        assert!(err.contains(want), "{yaml}: {err}");
    }
    load("sources:\n  - kind: tls_secrets\n  - kind: configmaps\n    keys: [ca.crt]").unwrap();
}

fn proc_status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The README's figure: 20,000 TLS Secrets of 10 KB each from the test API
/// server (pages of 500): time to the first complete collection, and the
/// memory the exporter side adds (the server's own copy of the objects is
/// in this process too, so figures are deltas from before the monitor
/// started; the peak is reset through /proc/self/clear_refs).
/// `cargo test --release --test kubernetes -- --ignored --nocapture bench_`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand"]
async fn bench_20000_tls_secrets_of_10kb() {
    const N: usize = 20_000;
    let api = FakeApi::start().await;
    let (pem, _, _) = cert("bench", (2027, 1, 1));
    // tls.crt plus a padding key to 10 KB of data per Secret.
    let pad = "A".repeat(10 * 1024 - pem.len());
    for i in 0..N {
        let mut s = tls_secret(&pem, None, json!({"owner": "helm"}));
        s["data"]["tls.key"] = json!(b64(pad.as_bytes()));
        api.put(
            "secrets",
            &format!("ns{}", i % 50),
            &format!("release-{i}"),
            s,
        );
    }
    // The history is only needed for watches that resume; keep memory to the objects.
    api.state.lock().unwrap().history.clear();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss0 = proc_status_kib("VmRSS:").unwrap_or(0);
    let d = tempfile::tempdir().unwrap();
    let kc = api.kubeconfig(d.path());
    let m = monitor(
        d.path(),
        &format!(
            "kubernetes:\n  kubeconfig: {}\n  sources:\n    - kind: tls_secrets\n",
            kc.display()
        ),
    );
    let start = Instant::now();
    let s = until(&m, "all Secrets", |s| {
        s.value("certificate_kubernetes_source_objects", &[]) == Some(N as f64)
    })
    .await;
    let took = start.elapsed();
    let rss1 = proc_status_kib("VmRSS:").unwrap_or(0);
    let hwm = proc_status_kib("VmHWM:").unwrap_or(0);
    let series = s
        .family("certificate_not_after_timestamp_seconds")
        .map(|f| f.samples.len())
        .unwrap_or(0);
    assert_eq!(series, N);
    println!(
        "{N} TLS Secrets of 10 KB: first complete collection after {took:.2?}; RSS {} MiB before the monitor, {} MiB after (+{} MiB), peak {} MiB (+{} MiB)",
        rss0 / 1024,
        rss1 / 1024,
        rss1.saturating_sub(rss0) / 1024,
        hwm / 1024,
        hwm.saturating_sub(rss0) / 1024
    );
}
