//! `/probe?target=host:port&module=NAME` (the blackbox_exporter pattern) on
//! the real binary, against real TLS servers (`openssl s_server`) and a real
//! Prometheus with the standard relabeling. Loopback only.

mod common;

use std::path::Path;

use common::tools::{openssl_cert, prom_api, prom_query, prometheus, s_server};
use common::*;

/// A self-signed certificate for `probe.lan` served by `openssl s_server`.
fn tls_target(dir: &Path) -> (common::tools::Kill, String) {
    openssl_cert(dir, "t.key", "t.pem", "probe.lan", 30);
    s_server(dir, &["-cert", "t.pem", "-key", "t.key", "-www"])
}

/// Exporter config: a certificate file of its own (so /metrics has certificate
/// series that /probe must not show) and the probe modules.
const CONFIG: &str = "custom_monitors:\n  certificate_expiry:\n    paths: [own.pem]\n    endpoint_timeout: 5s\n    modules:\n      lan: { server_name: probe.lan, timeout: 5s }\n      smtp: { starttls: smtp, timeout: 3s }\n";

fn exporter(dir: &Path, yaml: &str) -> Exporter {
    openssl_cert(dir, "own.key", "own.pem", "own.lan", 90);
    Exporter::with_config(dir, yaml)
}

fn value(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn probe_answers_the_targets_series_only() {
    let d = tempfile::tempdir().unwrap();
    let (_srv, addr) = tls_target(d.path());
    let ex = exporter(d.path(), CONFIG);

    let r = get(ex.port, &format!("/probe?target={addr}&module=lan"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.headers.contains("text/plain; version=0.0.4"),
        "{}",
        r.headers
    );
    let b = &r.body;
    assert_eq!(value(b, "probe_success"), Some(1.0), "{b}");
    assert!(value(b, "probe_duration_seconds").is_some(), "{b}");
    let id = format!("source=\"endpoint\",endpoint=\"{addr}\",server_name=\"probe.lan\"");
    assert_eq!(
        value(b, &format!("certificate_source_up{{{id}}}")),
        Some(1.0),
        "{b}"
    );
    let not_after = b
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "certificate_not_after_timestamp_seconds{{{id},index=\"0\",serial="
            ))
        })
        .unwrap_or_else(|| panic!("no not_after series for {addr}: {b}"));
    assert!(
        not_after
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v > 1.7e9),
        "{not_after}"
    );
    assert!(b.contains("subject_cn=\"probe.lan\""), "{b}");
    // Self-signed: read, not verified against the web roots.
    assert_eq!(
        value(b, &format!("certificate_verified{{{id}}}")),
        Some(0.0),
        "{b}"
    );
    // The exporter's own metrics and its configured sources stay on /metrics.
    assert!(!b.contains("homelab_monitor_"), "{b}");
    assert!(!b.contains("own.pem") && !b.contains("own.lan"), "{b}");
    promtool_check(b);
    let m = ex.metrics();
    assert!(
        m.contains("homelab_monitor_build_info") && m.contains("own.pem"),
        "{m}"
    );
    assert!(!m.contains(&addr) && !m.contains("probe_success"), "{m}");

    // OpenMetrics on request, as /metrics.
    let r = http(
        ex.port,
        "GET",
        &format!("/probe?target={addr}&module=lan"),
        "Accept: application/openmetrics-text; version=1.0.0\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.headers.contains("application/openmetrics-text"),
        "{}",
        r.headers
    );
    assert!(r.body.ends_with("# EOF\n"), "{}", r.body);

    // No module: the endpoint defaults (SNI = the target's host).
    let r = get(ex.port, &format!("/probe?target={addr}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("server_name=\"127.0.0.1\""), "{}", r.body);
}

#[test]
fn unreachable_is_200_with_probe_success_0_and_bad_requests_are_400() {
    let d = tempfile::tempdir().unwrap();
    let ex = exporter(d.path(), CONFIG);
    let closed = format!("127.0.0.1:{}", free_port());
    let r = get(ex.port, &format!("/probe?target={closed}&module=lan"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(value(&r.body, "probe_success"), Some(0.0), "{}", r.body);
    assert!(
        r.body.contains(&format!("certificate_source_error_info{{source=\"endpoint\",endpoint=\"{closed}\",server_name=\"probe.lan\",reason=\"refused\"}}")),
        "{}",
        r.body
    );
    promtool_check(&r.body);

    let r = get(ex.port, &format!("/probe?target={closed}&module=nope"));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("unknown module \"nope\"") && r.body.contains("lan, smtp"),
        "{}",
        r.body
    );
    let r = get(ex.port, "/probe?module=lan");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("missing target"), "{}", r.body);
    let r = get(ex.port, "/probe?target=127.0.0.1");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("host:port"), "{}", r.body);
}

#[test]
fn allowed_targets_refuse_the_rest_and_probing_is_opt_in() {
    let d = tempfile::tempdir().unwrap();
    let (_srv, addr) = tls_target(d.path());
    let ex = exporter(
        d.path(),
        "custom_monitors:\n  certificate_expiry:\n    paths: [own.pem]\n    probe:\n      allowed_targets: [\"10.0.0.0/8\", \"*.lan\"]\n",
    );
    let r = get(ex.port, &format!("/probe?target={addr}"));
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("probe.allowed_targets"), "{}", r.body);
    drop(ex);

    let d2 = tempfile::tempdir().unwrap();
    let ex = exporter(
        d2.path(),
        "custom_monitors:\n  certificate_expiry:\n    paths: [own.pem]\n    probe:\n      allowed_targets: [\"127.0.0.0/8\"]\n",
    );
    let r = get(ex.port, &format!("/probe?target={addr}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(value(&r.body, "probe_success"), Some(1.0), "{}", r.body);
    drop(ex);

    // No modules and no probe block: no /probe.
    let d3 = tempfile::tempdir().unwrap();
    let ex = exporter(
        d3.path(),
        "custom_monitors:\n  certificate_expiry:\n    paths: [own.pem]\n",
    );
    let r = get(ex.port, &format!("/probe?target={addr}"));
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("modules"), "{}", r.body);
}

#[test]
fn web_config_auth_applies_to_probe() {
    let d = tempfile::tempdir().unwrap();
    let (_srv, addr) = tls_target(d.path());
    openssl_cert(d.path(), "own.key", "own.pem", "own.lan", 90);
    std::fs::write(d.path().join("c.yaml"), CONFIG).unwrap();
    let hash = bcrypt::hash("probe-pass", 4).unwrap();
    std::fs::write(
        d.path().join("web.yml"),
        format!("basic_auth_users:\n  prom: '{hash}'\n"),
    )
    .unwrap();
    let ex = Exporter::start_tcp(
        d.path(),
        &["--config", "c.yaml", "--web.config.file", "web.yml"],
    );
    let path = format!("/probe?target={addr}&module=lan");
    let r = http(ex.port, "GET", &path, "").unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(!r.body.contains("probe_success"), "{}", r.body);
    use base64::Engine;
    let cred = base64::engine::general_purpose::STANDARD.encode("prom:probe-pass");
    let r = http(
        ex.port,
        "GET",
        &path,
        &format!("Authorization: Basic {cred}\r\n"),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(value(&r.body, "probe_success"), Some(1.0), "{}", r.body);
}

#[test]
fn real_prometheus_probes_through_the_exporter_with_the_standard_relabeling() {
    let d = tempfile::tempdir().unwrap();
    let (_srv, addr) = tls_target(d.path());
    let ex = exporter(d.path(), CONFIG);
    let closed = format!("127.0.0.1:{}", free_port());
    let work = tempfile::tempdir().unwrap();
    // The relabeling the README documents, verbatim in shape.
    std::fs::write(
        work.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\nscrape_configs:\n  - job_name: certificates-probe\n    metrics_path: /probe\n    params:\n      module: [lan]\n    static_configs:\n      - targets: ['{addr}', '{closed}']\n    relabel_configs:\n      - source_labels: [__address__]\n        target_label: __param_target\n      - source_labels: [__param_target]\n        target_label: instance\n      - target_label: __address__\n        replacement: 127.0.0.1:{}\n",
            ex.port
        ),
    )
    .unwrap();
    let (_p, port) = prometheus(work.path(), &work.path().join("prometheus.yml"));
    wait_for("both probe targets up", 90, || {
        let v = prom_api(port, "/api/v1/targets");
        let t = v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (t.len() == 2 && t.iter().all(|t| t["health"] == "up")).then_some(())
    });
    let series = wait_for("the target's certificate series", 90, || {
        let v = prom_query(
            port,
            &format!("certificate_not_after_timestamp_seconds{{instance=\"{addr}\"}}"),
        );
        let r = v["data"]["result"].as_array().cloned().unwrap_or_default();
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(series.len(), 1, "{series:?}");
    let m = &series[0]["metric"];
    assert_eq!(m["job"], "certificates-probe", "{m}");
    assert_eq!(m["endpoint"], addr.as_str(), "{m}");
    assert_eq!(m["server_name"], "probe.lan", "{m}");
    let success = |instance: &str| {
        let v = prom_query(port, &format!("probe_success{{instance=\"{instance}\"}}"));
        v["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!(success(&addr).as_deref(), Some("1"));
    assert_eq!(success(&closed).as_deref(), Some("0"));
    // The exporter's own metrics are not scraped through /probe.
    let v = prom_query(port, "homelab_monitor_build_info");
    assert_eq!(v["data"]["result"].as_array().map(Vec::len), Some(0), "{v}");
}

/// The shard Prometheus' `hashmod` relabeling gives `value` for `modulus` 2:
/// the low 8 bytes of its MD5 as a big-endian integer, mod 2 (the last
/// byte's low bit). MD5 from the real openssl.
fn hashmod2(value: &str) -> u8 {
    use std::io::Write;
    let mut child = std::process::Command::new(tool("openssl", "openssl"))
        .args(["dgst", "-md5", "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(value.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8_lossy(&out.stdout);
    let last = u8::from_str_radix(&hex[30..32], 16).unwrap();
    last & 1
}

/// docs/probe.md "Sharding probe targets": two scrape configs (as two
/// Prometheus servers would have) keep each its `hashmod` 2 share of one
/// target list and send it to its own exporter replica. Every target is
/// probed by exactly one of them, the one its hash names, and together they
/// probe the whole list.
#[test]
fn hashmod_relabeling_splits_probe_targets_between_two_scrape_configs() {
    let d = tempfile::tempdir().unwrap();
    let (_srv, addr) = tls_target(d.path());
    let ex0 = exporter(d.path(), CONFIG);
    let ex1 = Exporter::with_config(d.path(), CONFIG);
    // The live TLS server plus closed ports, until each shard has two targets.
    let mut targets = vec![addr.clone()];
    while [0, 1]
        .iter()
        .any(|s| targets.iter().filter(|t| hashmod2(t) == *s).count() < 2)
    {
        targets.push(format!("127.0.0.1:{}", free_port()));
    }
    let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    let job = |shard: u8, exporter_port: u16| {
        format!(
            "  - job_name: probe-shard-{shard}\n    metrics_path: /probe\n    params:\n      module: [lan]\n    static_configs:\n      - targets: [{}]\n    relabel_configs:\n      - source_labels: [__address__]\n        modulus: 2\n        target_label: __tmp_shard\n        action: hashmod\n      - source_labels: [__tmp_shard]\n        regex: \"{shard}\"\n        action: keep\n      - source_labels: [__address__]\n        target_label: __param_target\n      - source_labels: [__param_target]\n        target_label: instance\n      - target_label: __address__\n        replacement: 127.0.0.1:{exporter_port}\n",
            list.join(", ")
        )
    };
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\nscrape_configs:\n{}{}",
            job(0, ex0.port),
            job(1, ex1.port)
        ),
    )
    .unwrap();
    let (_p, port) = prometheus(work.path(), &work.path().join("prometheus.yml"));
    // Which job probes which target, from Prometheus' active targets...
    let active = wait_for("every probe target scraped once", 90, || {
        let v = prom_api(port, "/api/v1/targets");
        let t = v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (t.len() == targets.len() && t.iter().all(|t| t["health"] != "unknown")).then_some(t)
    });
    let mut seen = std::collections::BTreeMap::new();
    for t in &active {
        let instance = t["labels"]["instance"].as_str().unwrap_or("").to_string();
        let job = t["labels"]["job"].as_str().unwrap_or("").to_string();
        assert!(
            seen.insert(instance.clone(), job).is_none(),
            "{instance} is scraped by both jobs"
        );
    }
    for t in &targets {
        assert_eq!(
            seen.get(t).map(String::as_str),
            Some(format!("probe-shard-{}", hashmod2(t)).as_str()),
            "{t}: {seen:?}"
        );
    }
    // ...and the probes' own series: one probe_success per target, from that job.
    let series = wait_for("a probe_success per target", 90, || {
        let v = prom_query(port, "probe_success");
        let r = v["data"]["result"].as_array().cloned().unwrap_or_default();
        (r.len() == targets.len()).then_some(r)
    });
    for s in &series {
        let m = &s["metric"];
        let instance = m["instance"].as_str().unwrap_or("");
        assert_eq!(
            m["job"].as_str(),
            seen.get(instance).map(String::as_str),
            "{m}"
        );
        let want = if instance == addr { "1" } else { "0" };
        assert_eq!(s["value"][1], want, "{m}");
    }
}
