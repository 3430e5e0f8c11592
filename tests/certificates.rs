//! Certificate monitor, through the library API: certificates made here
//! (rcgen, openssl), files on disk and real TLS servers on 127.0.0.1 only.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use homelab_monitor::core::config::CertificateConfig;
use homelab_monitor::core::monitor::{CollectContext, Monitor};
use homelab_monitor::core::snapshot::{Health, Snapshot};
use homelab_monitor::monitors::certificates::CertificateMonitor;
use rcgen::{CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

mod common;

use common::certs::{self, config};
use common::free_port;
use common::tools::{s_server, spawn_quiet, Kill};

/// 2026-01-01T00:00:00Z: the injected "now" of every collection here.
const NOW: u64 = 1_767_225_600;
const DAY: f64 = 86_400.0;

fn ctx() -> CollectContext {
    CollectContext {
        now: UNIX_EPOCH + Duration::from_secs(NOW),
    }
}

fn ts(y: i32, m: u8, d: u8) -> f64 {
    rcgen::date_time_ymd(y, m, d).unix_timestamp() as f64
}

fn params(
    cn: &str,
    sans: &[&str],
    serial: u64,
    nb: (i32, u8, u8),
    na: (i32, u8, u8),
) -> CertificateParams {
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serial_number = Some(SerialNumber::from(serial));
    p.not_before = rcgen::date_time_ymd(nb.0, nb.1, nb.2);
    p.not_after = rcgen::date_time_ymd(na.0, na.1, na.2);
    p
}

fn ca_params(cn: &str, serial: u64, na: (i32, u8, u8)) -> CertificateParams {
    let mut p = params(cn, &[], serial, (2020, 1, 1), na);
    p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p
}

/// A leaf, signed by an intermediate, signed by a root.
struct Chain {
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
    leaf: rcgen::Certificate,
    leaf_key: KeyPair,
}

impl Chain {
    fn new(leaf_cn: &str, sans: &[&str], leaf_nb: (i32, u8, u8), leaf_na: (i32, u8, u8)) -> Chain {
        let root = CertifiedIssuer::self_signed(
            ca_params("Homelab Root CA", 1, (2040, 1, 1)),
            KeyPair::generate().unwrap(),
        )
        .unwrap();
        let intermediate = CertifiedIssuer::signed_by(
            ca_params("Homelab Intermediate", 2, (2035, 1, 1)),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = params(leaf_cn, sans, 3, leaf_nb, leaf_na)
            .signed_by(&leaf_key, &intermediate)
            .unwrap();
        Chain {
            root,
            intermediate,
            leaf,
            leaf_key,
        }
    }

    fn served(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![self.leaf.der().clone(), self.intermediate.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der())),
        )
    }
}

fn self_signed(
    cn: &str,
    sans: &[&str],
    serial: u64,
    nb: (i32, u8, u8),
    na: (i32, u8, u8),
) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let cert = params(cn, sans, serial, nb, na).self_signed(&key).unwrap();
    (cert, key)
}

/// The one-shot report of a certificate monitor, rendered generically from its facts.
async fn report(m: &CertificateMonitor) -> homelab_monitor::cli::report::Report {
    let s = m
        .collect_complete(ctx())
        .await
        .expect("collection never fails as a whole");
    homelab_monitor::cli::report::snapshot_report(
        &[("certificate_expiry", &s, false)],
        ctx().now,
        homelab_monitor::cli::report::Layout::Overview,
    )
}

/// The rows of the report's section titled `title`.
fn section<'a>(r: &'a homelab_monitor::cli::report::Report, title: &str) -> &'a Vec<Vec<String>> {
    &r.sections
        .iter()
        .find(|s| s.title == title)
        .unwrap_or_else(|| panic!("no section {title}"))
        .rows
}

async fn collect(yaml: &str, base: &Path) -> Snapshot {
    let m = CertificateMonitor::new(config(yaml), base.to_path_buf());
    m.collect_complete(ctx())
        .await
        .expect("collection never fails as a whole")
}

fn file(path: &str, index: usize) -> Vec<(&'static str, String)> {
    vec![
        ("source", "file".into()),
        ("path", path.into()),
        ("index", index.to_string()),
    ]
}

fn get(s: &Snapshot, name: &str, labels: &[(&'static str, String)]) -> Option<f64> {
    let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    s.value(name, &l)
}

fn up(s: &Snapshot, key: &'static str, target: &str) -> Option<f64> {
    s.value("certificate_source_up", &[(key, target)])
}

fn reason(s: &Snapshot, target: &str) -> Option<String> {
    let fam = s.family("certificate_source_error_info")?;
    fam.samples
        .iter()
        .find(|x| {
            x.labels()
                .any(|(k, v)| (k == "path" || k == "endpoint") && v == target)
        })
        .and_then(|x| x.label("reason").map(str::to_owned))
}

fn info_label(s: &Snapshot, labels: &[(&'static str, String)], key: &str) -> Option<String> {
    let fam = s.family("certificate_info")?;
    let sample = fam
        .samples
        .iter()
        .find(|x| labels.iter().all(|(k, v)| x.label(k) == Some(v.as_str())))?;
    sample.label(key).map(str::to_owned)
}

fn openssl(args: &[&str], dir: &Path) {
    common::tools::openssl(dir, args);
}

// ---------------------------------------------------------------- files

#[tokio::test]
async fn bundle_der_and_thresholds() {
    let d = tempfile::tempdir().unwrap();
    let chain = Chain::new(
        "grafana.lan",
        &["grafana.lan", "192.168.1.10"],
        (2025, 6, 1),
        (2026, 3, 1),
    );
    std::fs::create_dir(d.path().join("certs")).unwrap();
    let bundle = format!(
        "{}{}{}",
        chain.leaf.pem(),
        chain.intermediate.pem(),
        chain.root.pem()
    );
    std::fs::write(d.path().join("certs/fullchain.pem"), bundle).unwrap();
    std::fs::write(d.path().join("certs/root.der"), chain.root.der().as_ref()).unwrap();
    std::fs::write(d.path().join("certs/README.txt"), "not a certificate").unwrap();
    let s = collect(
        "warning_days: 30\ncritical_days: 7\npaths: [\"certs/\"]",
        d.path(),
    )
    .await;

    assert_eq!(
        s.value("certificate_warning_threshold_seconds", &[]),
        Some(30.0 * DAY)
    );
    assert_eq!(
        s.value("certificate_critical_threshold_seconds", &[]),
        Some(7.0 * DAY)
    );
    assert_eq!(up(&s, "path", "certs/fullchain.pem"), Some(1.0));
    assert_eq!(up(&s, "path", "certs/root.der"), Some(1.0));
    assert_eq!(
        up(&s, "path", "certs/README.txt"),
        None,
        "only certificate file names are read in folders"
    );
    let p = "certs/fullchain.pem";
    assert_eq!(
        get(&s, "certificate_not_after_timestamp_seconds", &file(p, 0)),
        Some(ts(2026, 3, 1))
    );
    assert_eq!(
        get(&s, "certificate_not_before_timestamp_seconds", &file(p, 0)),
        Some(ts(2025, 6, 1))
    );
    assert_eq!(
        get(&s, "certificate_not_after_timestamp_seconds", &file(p, 1)),
        Some(ts(2035, 1, 1))
    );
    assert_eq!(
        get(&s, "certificate_not_after_timestamp_seconds", &file(p, 2)),
        Some(ts(2040, 1, 1))
    );
    assert_eq!(get(&s, "certificate_expired", &file(p, 0)), Some(0.0));
    let mut leaf = file(p, 0);
    leaf.push(("serial", "03".into()));
    assert_eq!(
        info_label(&s, &leaf, "subject_cn").as_deref(),
        Some("grafana.lan")
    );
    assert_eq!(
        info_label(&s, &leaf, "issuer_cn").as_deref(),
        Some("Homelab Intermediate")
    );
    assert_eq!(
        info_label(&s, &leaf, "sans").as_deref(),
        Some("grafana.lan,192.168.1.10")
    );
    assert_eq!(info_label(&s, &leaf, "key_type").as_deref(), Some("ecdsa"));
    assert_eq!(info_label(&s, &leaf, "key_bits").as_deref(), Some("256"));
    assert_eq!(
        info_label(&s, &leaf, "signature_algorithm").as_deref(),
        Some("ecdsa-with-SHA256")
    );
    assert_eq!(
        info_label(&s, &file(p, 2), "is_ca").as_deref(),
        Some("true")
    );
    assert_eq!(
        get(
            &s,
            "certificate_not_after_timestamp_seconds",
            &file("certs/root.der", 0)
        ),
        Some(ts(2040, 1, 1))
    );
    assert_eq!(s.failed_targets(), 0);
}

#[tokio::test]
async fn expired_and_not_yet_valid_and_status_report() {
    let d = tempfile::tempdir().unwrap();
    let (old, _) = self_signed("old.lan", &["old.lan"], 10, (2024, 1, 1), (2025, 1, 1));
    let (future, _) = self_signed(
        "future.lan",
        &["future.lan"],
        11,
        (2026, 6, 1),
        (2027, 6, 1),
    );
    let (soon, _) = self_signed("soon.lan", &["soon.lan"], 12, (2025, 1, 1), (2026, 1, 5));
    let (fine, _) = self_signed("fine.lan", &["fine.lan"], 13, (2025, 1, 1), (2027, 1, 1));
    let (warn, _) = self_signed("warn.lan", &["warn.lan"], 14, (2025, 1, 1), (2026, 1, 20));
    for (n, c) in [
        ("old", &old),
        ("future", &future),
        ("soon", &soon),
        ("fine", &fine),
        ("warn", &warn),
    ] {
        std::fs::write(d.path().join(format!("{n}.crt")), c.pem()).unwrap();
    }
    let yaml = "paths: [\"*.crt\"]";
    let s = collect(yaml, d.path()).await;
    for (name, metric, want) in [
        ("old.crt", "certificate_expired", 1.0),
        ("old.crt", "certificate_not_yet_valid", 0.0),
        ("future.crt", "certificate_expired", 0.0),
        ("future.crt", "certificate_not_yet_valid", 1.0),
        ("fine.crt", "certificate_expired", 0.0),
    ] {
        assert_eq!(
            get(&s, metric, &file(name, 0)),
            Some(want),
            "{metric} of {name}"
        );
    }
    assert_eq!(
        up(&s, "path", "old.crt"),
        Some(1.0),
        "an expired certificate is still read"
    );
    let health = |t: &str| {
        s.targets
            .iter()
            .find(|x| x.target == format!("file: {t}"))
            .map(|x| x.health)
    };
    assert_eq!(health("old.crt"), Some(Health::Findings));
    assert_eq!(health("fine.crt"), Some(Health::Ok));

    let m = CertificateMonitor::new(config(yaml), d.path().to_path_buf());
    let r = report(&m).await;
    let rows = section(&r, "Expiry (earliest first)");
    let order: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        order,
        ["old.crt", "soon.crt", "warn.crt", "fine.crt", "future.crt"],
        "sorted by expiry"
    );
    let states: Vec<&str> = rows.iter().map(|r| r[4].as_str()).collect();
    assert_eq!(states, ["expired", "critical", "warning", "ok", "ok"]);
    let expires: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(expires[0], "expired 365 days ago");
    assert_eq!(expires[1], "in 4 days");
    // Not yet valid is a finding of its own.
    let found = section(&r, "Findings");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0][2].as_str(), found[0][3].as_str()),
        ("not yet valid", "future.crt")
    );
    assert_eq!(r.findings, 4);
    assert_eq!(r.errors, 0);
    assert_eq!(r.exit_code(), 2);
    let text = r.render(homelab_monitor::cli::report::ReportFormat::Table);
    assert!(text.contains("not yet valid"), "{text}");
}

#[tokio::test]
async fn same_cn_never_collides_and_many_sans_are_bounded() {
    let d = tempfile::tempdir().unwrap();
    let (a, _) = self_signed(
        "grafana.lan",
        &["grafana.lan"],
        100,
        (2025, 1, 1),
        (2026, 5, 1),
    );
    let (b, _) = self_signed(
        "grafana.lan",
        &["grafana.lan"],
        101,
        (2025, 1, 1),
        (2026, 7, 1),
    );
    std::fs::write(
        d.path().join("both.pem"),
        format!("{}{}{}", a.pem(), b.pem(), a.pem()),
    )
    .unwrap();
    std::fs::write(d.path().join("a.pem"), a.pem()).unwrap();
    let sans: Vec<String> = (0..300)
        .map(|i| format!("service-{i}.homelab.example"))
        .collect();
    let san_refs: Vec<&str> = sans.iter().map(String::as_str).collect();
    let (many, _) = self_signed("many.lan", &san_refs, 7, (2025, 1, 1), (2027, 1, 1));
    std::fs::write(d.path().join("many.pem"), many.pem()).unwrap();
    let s = collect("paths: [\"a.pem\", \"both.pem\", \"many.pem\"]", d.path()).await;
    let fam = s.family("certificate_not_after_timestamp_seconds").unwrap();
    assert_eq!(
        fam.samples.len(),
        5,
        "3 in the bundle (one repeated at another position) + 1 + 1"
    );
    assert_eq!(
        get(
            &s,
            "certificate_not_after_timestamp_seconds",
            &file("both.pem", 0)
        ),
        Some(ts(2026, 5, 1))
    );
    assert_eq!(
        get(
            &s,
            "certificate_not_after_timestamp_seconds",
            &file("both.pem", 1)
        ),
        Some(ts(2026, 7, 1))
    );
    assert_eq!(
        get(
            &s,
            "certificate_not_after_timestamp_seconds",
            &file("both.pem", 2)
        ),
        Some(ts(2026, 5, 1))
    );
    let mut seen = std::collections::HashSet::new();
    for f in &s.families {
        for x in &f.samples {
            assert!(
                seen.insert((f.def.name, x.owned_labels())),
                "duplicate series in {}",
                f.def.name
            );
        }
    }
    let label = info_label(&s, &file("many.pem", 0), "sans").unwrap();
    assert!(label.chars().count() <= 512, "{}", label.len());
    assert!(
        label.starts_with("service-0.homelab.example,service-1.homelab.example"),
        "{label}"
    );
    let shown = label.split(',').count() - 1;
    let more: usize = label.rsplit('+').next().unwrap().parse().unwrap();
    assert_eq!(shown + more, 300, "{label}");
}

#[tokio::test]
async fn rsa_pkcs12_and_kubeconfig() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "rsa.key",
            "-out",
            "rsa.crt",
            "-days",
            "400",
            "-subj",
            "/CN=rsa.lan",
            "-set_serial",
            "0x0abc",
        ],
        p,
    );
    let chain = Chain::new("p12.lan", &["p12.lan"], (2025, 2, 1), (2026, 2, 1));
    std::fs::write(p.join("leaf.pem"), chain.leaf.pem()).unwrap();
    std::fs::write(p.join("leaf.key"), chain.leaf_key.serialize_pem()).unwrap();
    std::fs::write(p.join("inter.pem"), chain.intermediate.pem()).unwrap();
    openssl(
        &[
            "pkcs12",
            "-export",
            "-in",
            "leaf.pem",
            "-inkey",
            "leaf.key",
            "-certfile",
            "inter.pem",
            "-passout",
            "pass:correct horse",
            "-out",
            "bundle.p12",
        ],
        p,
    );
    std::fs::write(p.join("p12.pass"), "correct horse\n").unwrap();
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let kube = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: home\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(chain.root.pem().as_bytes()),
        b64(chain.leaf.pem().as_bytes()),
        b64(chain.leaf_key.serialize_pem().as_bytes())
    );
    std::fs::write(p.join("admin.kubeconfig"), kube).unwrap();
    let s = collect(
        "pkcs12_passphrase_file: p12.pass\npaths: [\"rsa.crt\", \"bundle.p12\", \"admin.kubeconfig\", \"rsa.key\"]",
        p,
    )
    .await;
    let rsa = file("rsa.crt", 0);
    assert_eq!(info_label(&s, &rsa, "key_type").as_deref(), Some("rsa"));
    assert_eq!(info_label(&s, &rsa, "key_bits").as_deref(), Some("2048"));
    assert_eq!(info_label(&s, &rsa, "serial").as_deref(), Some("0abc"));
    assert_eq!(
        info_label(&s, &rsa, "signature_algorithm").as_deref(),
        Some("sha256WithRSAEncryption")
    );
    let na = get(&s, "certificate_not_after_timestamp_seconds", &rsa).unwrap();
    let nb = get(&s, "certificate_not_before_timestamp_seconds", &rsa).unwrap();
    assert_eq!(na - nb, 400.0 * DAY);
    assert_eq!(up(&s, "path", "bundle.p12"), Some(1.0), "{:?}", s.targets);
    assert_eq!(
        s.value("certificate_source_certificates", &[("path", "bundle.p12")]),
        Some(2.0)
    );
    let subjects: Vec<String> = (0..2)
        .filter_map(|i| info_label(&s, &file("bundle.p12", i), "subject_cn"))
        .collect();
    assert!(
        subjects.contains(&"p12.lan".to_string())
            && subjects.contains(&"Homelab Intermediate".to_string()),
        "{subjects:?}"
    );
    assert_eq!(
        info_label(&s, &file("admin.kubeconfig", 0), "subject_cn").as_deref(),
        Some("Homelab Root CA")
    );
    assert_eq!(
        info_label(&s, &file("admin.kubeconfig", 1), "subject_cn").as_deref(),
        Some("p12.lan")
    );
    assert_eq!(up(&s, "path", "rsa.key"), Some(0.0));
    assert_eq!(reason(&s, "rsa.key").as_deref(), Some("private_key_only"));
}

#[tokio::test]
async fn bad_files_fail_alone() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let (good, key) = self_signed("good.lan", &["good.lan"], 1, (2025, 1, 1), (2027, 1, 1));
    std::fs::write(p.join("good.pem"), good.pem()).unwrap();
    std::fs::write(
        p.join("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\nTOP*SECRET*VALUE\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(p.join("binary.crt"), [0x13u8, 0x37, 0xde, 0xad, 0xbe, 0xef]).unwrap();
    std::fs::write(p.join("truncated.der"), &good.der()[..200]).unwrap();
    std::fs::write(p.join("onlykey.pem"), key.serialize_pem()).unwrap();
    std::fs::write(p.join("empty.pem"), "").unwrap();
    std::os::unix::fs::symlink("missing.pem", p.join("dangling.pem")).unwrap();
    std::os::unix::fs::symlink("loop-b.pem", p.join("loop-a.pem")).unwrap();
    std::os::unix::fs::symlink("loop-a.pem", p.join("loop-b.pem")).unwrap();
    std::fs::write(p.join("leaf.pem"), good.pem()).unwrap();
    std::fs::write(p.join("leaf.key"), key.serialize_pem()).unwrap();
    openssl(
        &[
            "pkcs12",
            "-export",
            "-in",
            "leaf.pem",
            "-inkey",
            "leaf.key",
            "-passout",
            "pass:right",
            "-out",
            "wrong.p12",
        ],
        p,
    );
    std::fs::remove_file(p.join("leaf.pem")).unwrap();
    let env = "HOMELAB_MONITOR_TEST_WRONG_P12";
    std::env::set_var(env, "not-the-passphrase");
    let s = collect(
        &format!(
            "pkcs12_passphrase_env: {env}\npaths: [\".\", \"nothing-here/*.pem\", \"absent.pem\"]"
        ),
        p,
    )
    .await;
    let expect = [
        ("good.pem", None),
        ("garbage.pem", Some("malformed_pem")),
        ("binary.crt", Some("unknown_format")),
        ("truncated.der", Some("truncated_der")),
        ("onlykey.pem", Some("private_key_only")),
        ("empty.pem", Some("empty")),
        ("dangling.pem", Some("dangling_symlink")),
        ("loop-a.pem", Some("symlink_loop")),
        ("loop-b.pem", Some("symlink_loop")),
        ("wrong.p12", Some("wrong_passphrase")),
        ("nothing-here/*.pem", Some("not_found")),
        ("absent.pem", Some("not_found")),
    ];
    for (target, why) in expect {
        let want_up = if why.is_none() { 1.0 } else { 0.0 };
        assert_eq!(
            up(&s, "path", target),
            Some(want_up),
            "{target}: {:?}",
            s.targets
        );
        assert_eq!(reason(&s, target).as_deref(), why, "{target}");
        if why.is_some() {
            let t = s
                .targets
                .iter()
                .find(|t| t.target == format!("file: {target}"))
                .unwrap();
            assert_eq!(t.health, Health::Error, "{target}");
            let msg = t.error.as_deref().unwrap();
            assert!(msg.contains(target.trim_start_matches("./")), "{msg}");
            assert!(
                !msg.contains("SECRET"),
                "errors never quote contents: {msg}"
            );
        }
    }
    assert_eq!(
        get(
            &s,
            "certificate_not_after_timestamp_seconds",
            &file("good.pem", 0)
        ),
        Some(ts(2027, 1, 1))
    );
    assert_eq!(s.failed_targets(), expect.len() - 1);
}

#[tokio::test]
async fn link_farms_are_reported_once_and_folder_loops_survive() {
    use std::os::unix::fs::symlink;
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let (a1, _) = self_signed("home.lan", &["home.lan"], 1, (2025, 1, 1), (2026, 4, 1));
    let (a2, _) = self_signed("home.lan", &["home.lan"], 2, (2025, 9, 1), (2026, 12, 1));
    // certbot: live/ links into archive/.
    std::fs::create_dir_all(p.join("le/archive/home.lan")).unwrap();
    std::fs::create_dir_all(p.join("le/live/home.lan")).unwrap();
    std::fs::write(p.join("le/archive/home.lan/cert1.pem"), a1.pem()).unwrap();
    std::fs::write(p.join("le/archive/home.lan/cert2.pem"), a2.pem()).unwrap();
    symlink(
        "../../archive/home.lan/cert2.pem",
        p.join("le/live/home.lan/cert.pem"),
    )
    .unwrap();
    // Kubernetes secret mount: tls.crt -> ..data/tls.crt, ..data -> ..2026_01_01.
    std::fs::create_dir_all(p.join("secret/..2026_01_01")).unwrap();
    std::fs::write(p.join("secret/..2026_01_01/tls.crt"), a1.pem()).unwrap();
    symlink("..2026_01_01", p.join("secret/..data")).unwrap();
    symlink("..data/tls.crt", p.join("secret/tls.crt")).unwrap();
    // A folder link back up the tree.
    symlink("..", p.join("secret/up")).unwrap();
    // A hard link is the same file too.
    std::fs::hard_link(
        p.join("le/archive/home.lan/cert1.pem"),
        p.join("le/cert1-hardlink.pem"),
    )
    .unwrap();
    let s = collect(
        "paths: [\"le/\", \"secret\", \"le/live/home.lan/cert.pem\"]",
        p,
    )
    .await;
    let up_fam = s.family("certificate_source_up").unwrap();
    let mut labels: Vec<String> = up_fam
        .samples
        .iter()
        .map(|x| x.label("path").unwrap().to_owned())
        .collect();
    labels.sort();
    // The hard link and archive/cert1.pem are one file: the shallower name wins.
    assert_eq!(
        labels,
        [
            "le/cert1-hardlink.pem",
            "le/live/home.lan/cert.pem",
            "secret/tls.crt"
        ],
        "{:?}",
        s.targets
    );
    assert!(up_fam.samples.iter().all(|x| x.value == 1.0));
    assert_eq!(
        get(
            &s,
            "certificate_not_after_timestamp_seconds",
            &file("le/live/home.lan/cert.pem", 0)
        ),
        Some(ts(2026, 12, 1))
    );
    assert_eq!(
        get(
            &s,
            "certificate_not_after_timestamp_seconds",
            &file("secret/tls.crt", 0)
        ),
        Some(ts(2026, 4, 1))
    );
}

#[test]
fn config_keys_are_validated_at_load() {
    let err = certs::config_error;
    let e = err("endpoints:\n  - { address: \"mail.lan:587\", starttls: gopher }");
    assert!(e.contains("starttls") && e.contains("smtp"), "{e}");
    let e = err("endpoints:\n  - { address: \"mail.lan:587\", sni: x }");
    assert!(
        e.contains("unknown key `sni`") && e.contains("server_name"),
        "{e}"
    );
    let e = err("endpoints: [\"no-port.lan\"]");
    assert!(e.contains("endpoints[0]") && e.contains("host:port"), "{e}");
    let e = err("endpoints: [\"a.lan:443\", \"a.lan:443\"]");
    assert!(e.contains("listed twice"), "{e}");
    let e = err("endpoint_concurrency: 0");
    assert!(e.contains("endpoint_concurrency"), "{e}");
    let e = err("pkcs12_passphrase_file: a\npkcs12_passphrase_env: B");
    assert!(e.contains("not both"), "{e}");
    let e = err("warning_ratio: 20");
    assert!(
        e.contains("warning_ratio") && e.contains("between 0 and 1"),
        "{e}"
    );
    let e = err("warning_ratio: 0.1\ncritical_ratio: 0.3");
    assert!(e.contains("critical_ratio (0.3) must not be larger"), "{e}");
    let c = config("short_lived_days: 14\ncrls: [\"crl/*.crl\"]");
    assert_eq!((c.short_lived_days, c.crls.len()), (14, 1));
    assert_eq!((c.warning_ratio, c.critical_ratio), (0.2, 0.1));
    let e = err("warning_dayz: 3");
    assert!(e.contains("did you mean `warning_days`?"), "{e}");
    let c = config("endpoints:\n  - \"[::1]:443\"\n  - { address: \"mail.lan:587\", starttls: smtp, timeout: 2s, server_name: mail.lan }\nendpoint_timeout: 3s");
    assert_eq!(c.endpoints.len(), 2);
    assert_eq!(c.endpoint_timeout.0, Duration::from_secs(3));
}

// ------------------------------------------------------------ endpoints

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Arc<rustls::ServerConfig> {
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    Arc::new(cfg)
}

/// What a test server speaks before the TLS handshake.
#[derive(Clone, Copy, PartialEq)]
enum Pre {
    None,
    Smtp,
    /// Greets only after 1.5 s (a server doing reverse DNS first).
    SlowSmtp,
    Imap,
    Pop3,
}

/// A rustls server on 127.0.0.1, optionally behind a tiny SMTP/IMAP/POP3 STARTTLS exchange.
async fn tls_server(cfg: Arc<rustls::ServerConfig>, smtp: bool) -> SocketAddr {
    tls_server_pre(cfg, if smtp { Pre::Smtp } else { Pre::None }).await
}

async fn tls_server_pre(cfg: Arc<rustls::ServerConfig>, pre: Pre) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut line = String::new();
                match pre {
                    Pre::None => {}
                    Pre::Smtp | Pre::SlowSmtp => {
                        if pre == Pre::SlowSmtp {
                            tokio::time::sleep(Duration::from_millis(1500)).await;
                        }
                        sock.write_all(b"220 mail.test ESMTP ready\r\n").await.ok();
                        let mut r = BufReader::new(&mut sock);
                        r.read_line(&mut line).await.ok();
                        if !line.starts_with("EHLO") {
                            return;
                        }
                        r.get_mut()
                            .write_all(b"250-mail.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
                            .await
                            .ok();
                        line.clear();
                        r.read_line(&mut line).await.ok();
                        if line.trim_end() != "STARTTLS" {
                            return;
                        }
                        r.get_mut().write_all(b"220 2.0.0 go ahead\r\n").await.ok();
                    }
                    Pre::Imap => {
                        sock.write_all(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
                            .await
                            .ok();
                        let mut r = BufReader::new(&mut sock);
                        r.read_line(&mut line).await.ok();
                        let Some(tag) = line.strip_suffix(" STARTTLS\r\n") else {
                            return;
                        };
                        let reply = format!("{tag} OK Begin TLS negotiation now\r\n");
                        r.get_mut().write_all(reply.as_bytes()).await.ok();
                    }
                    Pre::Pop3 => {
                        sock.write_all(b"+OK POP3 ready\r\n").await.ok();
                        let mut r = BufReader::new(&mut sock);
                        r.read_line(&mut line).await.ok();
                        if line.trim_end() != "STLS" {
                            return;
                        }
                        r.get_mut().write_all(b"+OK Begin TLS\r\n").await.ok();
                    }
                }
                if let Ok(mut tls) = acceptor.accept(sock).await {
                    let mut buf = [0u8; 64];
                    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await;
                }
            });
        }
    });
    addr
}

fn ep(addr: SocketAddr) -> String {
    addr.to_string()
}

fn endpoint(addr: &str, index: usize) -> Vec<(&'static str, String)> {
    vec![
        ("source", "endpoint".into()),
        ("endpoint", addr.into()),
        ("index", index.to_string()),
    ]
}

#[tokio::test]
async fn endpoints_record_chain_and_verify_separately() {
    let d = tempfile::tempdir().unwrap();
    let chain = Chain::new(
        "svc.homelab.test",
        &["svc.homelab.test"],
        (2025, 6, 1),
        (2026, 2, 15),
    );
    std::fs::write(d.path().join("root.pem"), chain.root.pem()).unwrap();
    let (certs, key) = chain.served();
    let addr = ep(tls_server(server_config(certs, key), false).await);
    let smtp_chain = Chain::new(
        "mail.homelab.test",
        &["mail.homelab.test"],
        (2025, 6, 1),
        (2026, 3, 1),
    );
    let (certs, key) = smtp_chain.served();
    let smtp = ep(tls_server(server_config(certs, key), true).await);
    let (expired, expired_key) = self_signed(
        "old.homelab.test",
        &["old.homelab.test"],
        9,
        (2024, 1, 1),
        (2025, 6, 1),
    );
    std::fs::write(d.path().join("old.pem"), expired.pem()).unwrap();
    let old = ep(tls_server(
        server_config(
            vec![expired.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(expired_key.serialize_der())),
        ),
        false,
    )
    .await);
    let yaml = format!(
        "endpoints:\n  - {{ address: \"{addr}\", server_name: svc.homelab.test, ca_file: root.pem }}\n  - {{ address: \"{addr}\", server_name: other.homelab.test, ca_file: root.pem }}\n  - {{ address: \"{smtp}\", server_name: mail.homelab.test, starttls: smtp }}\n  - {{ address: \"{old}\", server_name: old.homelab.test, ca_file: old.pem }}\nendpoint_concurrency: 2"
    );
    let s = collect(&yaml, d.path()).await;
    let with_sni = |addr: &str, sni: &str, i: usize| {
        let mut l = endpoint(addr, i);
        l.push(("server_name", sni.into()));
        l
    };
    let svc = with_sni(&addr, "svc.homelab.test", 0);
    assert_eq!(
        get(&s, "certificate_source_up", &svc[..2]),
        Some(1.0),
        "{:?}",
        s.targets
    );
    assert_eq!(
        get(&s, "certificate_not_after_timestamp_seconds", &svc),
        Some(ts(2026, 2, 15))
    );
    assert_eq!(
        get(
            &s,
            "certificate_not_after_timestamp_seconds",
            &with_sni(&addr, "svc.homelab.test", 1)
        ),
        Some(ts(2035, 1, 1))
    );
    assert_eq!(
        info_label(&s, &svc, "subject_cn").as_deref(),
        Some("svc.homelab.test")
    );
    let verified = |addr: &str, sni: &str| {
        s.value(
            "certificate_verified",
            &[("endpoint", addr), ("server_name", sni)],
        )
    };
    assert_eq!(verified(&addr, "svc.homelab.test"), Some(1.0));
    assert_eq!(
        verified(&addr, "other.homelab.test"),
        Some(0.0),
        "name mismatch: not verified"
    );
    assert_eq!(
        get(
            &s,
            "certificate_not_after_timestamp_seconds",
            &with_sni(&addr, "other.homelab.test", 0)
        ),
        Some(ts(2026, 2, 15)),
        "the chain is still recorded"
    );
    // SMTP STARTTLS, private CA, no ca_file: recorded, not verified against the web roots.
    let m = with_sni(&smtp, "mail.homelab.test", 0);
    assert_eq!(
        get(&s, "certificate_not_after_timestamp_seconds", &m),
        Some(ts(2026, 3, 1)),
        "{:?}",
        s.targets
    );
    assert_eq!(verified(&smtp, "mail.homelab.test"), Some(0.0));
    assert_eq!(
        s.value(
            "certificate_source_certificates",
            &[("endpoint", smtp.as_str())]
        ),
        Some(2.0)
    );
    // Expired leaf, trusted by ca_file: recorded and flagged, does not verify.
    let o = with_sni(&old, "old.homelab.test", 0);
    assert_eq!(get(&s, "certificate_expired", &o), Some(1.0));
    assert_eq!(verified(&old, "old.homelab.test"), Some(0.0));
    let t = s.targets.iter().find(|t| t.target.contains(&old)).unwrap();
    assert!(t.summary.contains("not verified: expired"), "{}", t.summary);
    assert_eq!(s.failed_targets(), 0);
    // What a client would refuse is a finding, not "ok"; a private CA checked
    // against the web roots (no ca_file) is the normal homelab case.
    let health = |addr: &str, sni: &str| {
        s.targets
            .iter()
            .find(|t| {
                t.target.contains(addr) && (t.target.contains(sni) || !t.target.contains("SNI"))
            })
            .map(|t| (t.health, t.summary.clone()))
    };
    let (h, why) = health(&addr, "SNI other.homelab.test").unwrap();
    assert_eq!(h, Health::Findings, "name mismatch: {why}");
    assert!(why.contains("not verified: name_mismatch"), "{why}");
    let (h, why) = health(&addr, "SNI svc.homelab.test").unwrap();
    assert_eq!(h, Health::Ok, "{why}");
    let (h, why) = health(&smtp, "SNI mail.homelab.test").unwrap();
    assert_eq!(h, Health::Ok, "private CA without ca_file: {why}");
    let m = CertificateMonitor::new(config(&yaml), d.path().to_path_buf());
    let r = report(&m).await;
    // The mismatched name and the expired chain (its certificate, its verification).
    assert_eq!(
        r.findings,
        3,
        "{}",
        r.render(homelab_monitor::cli::report::ReportFormat::Table)
    );
}

#[tokio::test]
async fn endpoint_failures_fail_alone() {
    // Refused: a port that was bound and released.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    // Accepts and never answers.
    let silent_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = silent_l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent_l.accept().await {
            held.push(s);
        }
    });
    // Plain HTTP.
    let http_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = http_l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = http_l.accept().await {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
        }
    });
    // SMTP server without STARTTLS.
    let smtp_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smtp = smtp_l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = smtp_l.accept().await {
            let _ = s.write_all(b"220 plain ESMTP\r\n").await;
            let mut r = BufReader::new(&mut s);
            let mut line = String::new();
            let _ = r.read_line(&mut line).await;
            let _ = r
                .get_mut()
                .write_all(b"250-plain\r\n250 SIZE 1000\r\n")
                .await;
        }
    });
    let chain = Chain::new(
        "ok.homelab.test",
        &["ok.homelab.test"],
        (2025, 1, 1),
        (2027, 1, 1),
    );
    let (certs, key) = chain.served();
    let ok = ep(tls_server(server_config(certs, key), false).await);
    let d = tempfile::tempdir().unwrap();
    let yaml = format!(
        "endpoint_timeout: 400ms\nendpoints:\n  - {{ address: \"{refused}\", timeout: 10s }}\n  - \"{silent}\"\n  - {{ address: \"{http}\", timeout: 10s }}\n  - {{ address: \"{smtp}\", starttls: smtp, timeout: 10s }}\n  - {{ address: \"{silent}\", server_name: starttls.test, starttls: smtp }}\n  - {{ address: \"{ok}\", server_name: ok.homelab.test, timeout: 10s }}"
    );
    let s = collect(&yaml, d.path()).await;
    let reason_sni = |addr: &str, sni: &str| -> Option<String> {
        let fam = s.family("certificate_source_error_info")?;
        fam.samples
            .iter()
            .find(|x| x.label("endpoint") == Some(addr) && x.label("server_name") == Some(sni))
            .and_then(|x| x.label("reason").map(str::to_owned))
    };
    assert_eq!(
        reason_sni(&refused, "127.0.0.1").as_deref(),
        Some("refused"),
        "{:?}",
        s.targets
    );
    assert_eq!(reason_sni(&silent, "127.0.0.1").as_deref(), Some("timeout"));
    assert_eq!(reason_sni(&http, "127.0.0.1").as_deref(), Some("handshake"));
    assert_eq!(reason_sni(&smtp, "127.0.0.1").as_deref(), Some("starttls"));
    assert_eq!(
        reason_sni(&silent, "starttls.test").as_deref(),
        Some("timeout")
    );
    for a in [&refused, &silent, &http, &smtp] {
        assert_eq!(
            s.value(
                "certificate_source_up",
                &[("endpoint", a.as_str()), ("server_name", "127.0.0.1")]
            ),
            Some(0.0),
            "{a}"
        );
    }
    assert_eq!(
        s.value("certificate_source_up", &[("endpoint", ok.as_str())]),
        Some(1.0)
    );
    assert_eq!(s.failed_targets(), 5);
    let t = s.targets.iter().find(|t| t.target.contains(&http)).unwrap();
    assert!(
        t.error.as_deref().unwrap().contains("not TLS"),
        "{:?}",
        t.error
    );
    let t = s.targets.iter().find(|t| t.target.contains(&smtp)).unwrap();
    assert!(
        t.error
            .as_deref()
            .unwrap()
            .contains("does not offer STARTTLS"),
        "{:?}",
        t.error
    );
}

#[tokio::test]
async fn openssl_s_server_rsa_chain() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=s_server CA",
        ],
        p,
    );
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=localhost",
        ],
        p,
    );
    std::fs::write(
        p.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "0x1234",
            "-days",
            "90",
            "-extfile",
            "ext.cnf",
            "-out",
            "srv.crt",
        ],
        p,
    );
    let (_guard, addr) = s_server(
        p,
        &[
            "-cert",
            "srv.crt",
            "-key",
            "srv.key",
            "-cert_chain",
            "ca.crt",
        ],
    );
    // Collect at the real time: openssl dates certificates from now.
    let m = CertificateMonitor::new(
        config(&format!(
            "endpoints:\n  - {{ address: \"{addr}\", server_name: localhost, ca_file: ca.crt }}"
        )),
        p.to_path_buf(),
    );
    let s = m
        .collect_complete(CollectContext {
            now: SystemTime::now(),
        })
        .await
        .unwrap();
    let leaf = endpoint(&addr, 0);
    assert_eq!(
        get(&s, "certificate_source_up", &leaf[..2]),
        Some(1.0),
        "{:?}",
        s.targets
    );
    assert_eq!(info_label(&s, &leaf, "serial").as_deref(), Some("1234"));
    assert_eq!(info_label(&s, &leaf, "key_type").as_deref(), Some("rsa"));
    assert_eq!(
        info_label(&s, &leaf, "sans").as_deref(),
        Some("localhost,127.0.0.1")
    );
    assert_eq!(
        info_label(&s, &endpoint(&addr, 1), "subject_cn").as_deref(),
        Some("s_server CA")
    );
    let na = get(&s, "certificate_not_after_timestamp_seconds", &leaf).unwrap();
    let nb = get(&s, "certificate_not_before_timestamp_seconds", &leaf).unwrap();
    assert_eq!(na - nb, 90.0 * DAY);
    assert_eq!(
        s.value("certificate_verified", &[("endpoint", addr.as_str())]),
        Some(1.0)
    );
}

#[tokio::test]
async fn imap_and_pop3_starttls() {
    let chain = Chain::new(
        "imap.homelab.test",
        &["imap.homelab.test"],
        (2025, 1, 1),
        (2026, 8, 1),
    );
    let (certs, key) = chain.served();
    let imap = ep(tls_server_pre(server_config(certs.clone(), key.clone_key()), Pre::Imap).await);
    let pop3 = ep(tls_server_pre(server_config(certs, key), Pre::Pop3).await);
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("root.pem"), chain.root.pem()).unwrap();
    let yaml = format!(
        "endpoints:\n  - {{ address: \"{imap}\", server_name: imap.homelab.test, starttls: imap, ca_file: root.pem }}\n  - {{ address: \"{pop3}\", server_name: imap.homelab.test, starttls: pop3, ca_file: root.pem }}"
    );
    let s = collect(&yaml, d.path()).await;
    for a in [&imap, &pop3] {
        assert_eq!(
            get(
                &s,
                "certificate_not_after_timestamp_seconds",
                &endpoint(a, 0)
            ),
            Some(ts(2026, 8, 1)),
            "{a}: {:?}",
            s.targets
        );
        assert_eq!(
            s.value("certificate_verified", &[("endpoint", a.as_str())]),
            Some(1.0)
        );
    }
}

/// Permission denied cannot be provoked as root: the parent runs
/// `permission_denied_child` as `nobody` through setpriv.
#[test]
fn permission_denied_is_a_source_error() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (good, _) = self_signed("good.lan", &["good.lan"], 1, (2025, 1, 1), (2027, 1, 1));
    std::fs::write(p.join("good.pem"), good.pem()).unwrap();
    std::fs::write(p.join("locked.pem"), good.pem()).unwrap();
    std::fs::set_permissions(p.join("good.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(p.join("locked.pem"), std::fs::Permissions::from_mode(0o000)).unwrap();
    // A kubeconfig as kubectl leaves it (0600, another user's): the folder is not "empty".
    std::fs::create_dir(p.join("kube")).unwrap();
    std::fs::write(
        p.join("kube/config"),
        "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\n",
    )
    .unwrap();
    std::fs::set_permissions(
        p.join("kube/config"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let uid = Command::new("id").arg("-u").output().unwrap();
    let root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
    if !root {
        check_permission_denied(p);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    // Where `nobody` cannot reach the test binary or the temporary folder
    // (a private checkout or TMPDIR), the check cannot run here.
    let as_nobody = |args: &[&std::ffi::OsStr]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let good = p.join("good.pem");
    let can_run = as_nobody(&[exe.as_os_str(), "--list".as_ref()]);
    let can_read = as_nobody(&["test".as_ref(), "-r".as_ref(), good.as_os_str()]);
    if !can_run || !can_read {
        eprintln!(
            "SKIPPED: user nobody cannot run {} or read {}",
            exe.display(),
            p.display()
        );
        return;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args([
            "--exact",
            "permission_denied_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CERT_TEST_PERMISSION_DIR", p)
        .output()
        .expect("setpriv (util-linux) is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "the child test ran: {stdout}");
}

#[test]
#[ignore = "run by permission_denied_is_a_source_error as an unprivileged user"]
fn permission_denied_child() {
    let Some(dir) = std::env::var_os("CERT_TEST_PERMISSION_DIR") else {
        return;
    };
    check_permission_denied(Path::new(&dir));
}

fn check_permission_denied(dir: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(collect(
        "paths: [\"good.pem\", \"locked.pem\", \"kube\"]",
        dir,
    ));
    assert_eq!(up(&s, "path", "good.pem"), Some(1.0), "{:?}", s.targets);
    assert_eq!(up(&s, "path", "locked.pem"), Some(0.0), "{:?}", s.targets);
    assert_eq!(
        reason(&s, "locked.pem").as_deref(),
        Some("permission_denied")
    );
    assert_eq!(reason(&s, "kube").as_deref(), Some("permission_denied"));
    let t = s.targets.iter().find(|t| t.target == "file: kube").unwrap();
    assert!(
        t.error
            .as_deref()
            .unwrap_or("")
            .contains("kube/config could not be opened"),
        "{:?}",
        t.error
    );
}

/// Raw HTTP/1.0 GET on loopback (keeps the test runtime polling the TLS servers).
async fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut body = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut body))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

fn metric_line(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Cross-check: the earliest notAfter we report per endpoint equals Debian's
/// `prometheus-blackbox-exporter`'s `probe_ssl_earliest_cert_expiry` for the
/// same servers (plain TLS and SMTP STARTTLS). Skipped when it is not installed.
#[tokio::test]
async fn earliest_expiry_matches_blackbox_exporter() {
    let bin = "/usr/bin/prometheus-blackbox-exporter";
    if !Path::new(bin).exists() {
        eprintln!("SKIPPED: {bin} not installed (apt-get install prometheus-blackbox-exporter)");
        return;
    }
    // The intermediate expires before the leaf: the earliest member is not the leaf.
    let root = CertifiedIssuer::self_signed(
        ca_params("BB Root", 1, (2040, 1, 1)),
        KeyPair::generate().unwrap(),
    )
    .unwrap();
    let inter = CertifiedIssuer::signed_by(
        ca_params("BB Intermediate", 2, (2026, 1, 20)),
        KeyPair::generate().unwrap(),
        &root,
    )
    .unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = params(
        "bb.homelab.test",
        &["bb.homelab.test"],
        3,
        (2025, 1, 1),
        (2026, 6, 1),
    )
    .signed_by(&leaf_key, &inter)
    .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let tls = ep(tls_server(
        server_config(vec![leaf.der().clone(), inter.der().clone()], key),
        false,
    )
    .await);
    let smtp_chain = Chain::new(
        "mx.homelab.test",
        &["mx.homelab.test"],
        (2025, 1, 1),
        (2026, 4, 9),
    );
    let (certs, key) = smtp_chain.served();
    let smtp = ep(tls_server(server_config(certs, key), true).await);

    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("blackbox.yml"),
        "modules:\n  tls:\n    prober: tcp\n    timeout: 5s\n    tcp:\n      preferred_ip_protocol: ip4\n      tls: true\n      tls_config:\n        insecure_skip_verify: true\n  smtp_starttls:\n    prober: tcp\n    timeout: 5s\n    tcp:\n      preferred_ip_protocol: ip4\n      query_response:\n        - expect: \"^220\"\n        - send: \"EHLO prober\\r\"\n        - expect: \"^250 STARTTLS\"\n        - send: \"STARTTLS\\r\"\n        - expect: \"^220\"\n        - starttls: true\n      tls_config:\n        insecure_skip_verify: true\n",
    )
    .unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _guard = spawn_quiet(
        "the blackbox exporter",
        Command::new(bin)
            .arg(format!(
                "--config.file={}",
                d.path().join("blackbox.yml").display()
            ))
            .arg(format!("--web.listen-address={listen}")),
    );
    common::wait_for("the blackbox exporter", 30, || {
        std::net::TcpStream::connect(&listen).ok()
    });

    let yaml = format!(
        "endpoints:\n  - {{ address: \"{tls}\", server_name: bb.homelab.test }}\n  - {{ address: \"{smtp}\", server_name: mx.homelab.test, starttls: smtp }}"
    );
    let s = collect(&yaml, d.path()).await;
    for (addr, module, expected) in [
        (&tls, "tls", ts(2026, 1, 20)),
        (&smtp, "smtp_starttls", ts(2026, 4, 9)),
    ] {
        let ours = s
            .family("certificate_not_after_timestamp_seconds")
            .unwrap()
            .samples
            .iter()
            .filter(|x| x.label("endpoint") == Some(addr))
            .map(|x| x.value)
            .fold(f64::INFINITY, f64::min);
        assert_eq!(ours, expected, "{addr}: {:?}", s.targets);
        let body = http_get(&listen, &format!("/probe?module={module}&target={addr}"))
            .await
            .expect("blackbox answers");
        assert_eq!(
            metric_line(&body, "probe_success"),
            Some(1.0),
            "{module}: {body}"
        );
        let theirs = metric_line(&body, "probe_ssl_earliest_cert_expiry").expect(&body);
        eprintln!("{module}: ours {ours}, blackbox {theirs}");
        assert_eq!(ours, theirs, "{module}: ours {ours}, blackbox {theirs}");
    }
}

/// The registry builds the monitor from a config file, and what it exports
/// passes `promtool check metrics` (when promtool is installed) in both formats.
#[tokio::test]
async fn registered_and_exposition_passes_promtool() {
    use homelab_monitor::core::encoder::{encode, Format};
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let chain = Chain::new(
        "svc.lan",
        &["svc.lan", "10.1.2.3"],
        (2025, 1, 1),
        (2026, 9, 1),
    );
    std::fs::write(
        p.join("chain.pem"),
        format!("{}{}", chain.leaf.pem(), chain.intermediate.pem()),
    )
    .unwrap();
    std::fs::write(
        p.join("bad.pem"),
        "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let (certs, key) = chain.served();
    let addr = ep(tls_server(server_config(certs, key), false).await);
    let cfg_path = p.join("monitoring-config.yaml");
    std::fs::write(
        &cfg_path,
        format!("custom_monitors:\n  certificate_expiry:\n    paths: [\"*.pem\"]\n    endpoints: [\"{addr}\"]\n"),
    )
    .unwrap();
    let config = homelab_monitor::core::config::Config::load(&cfg_path).unwrap();
    let monitors = homelab_monitor::monitors::build(&config, &Default::default());
    let m = monitors
        .iter()
        .find(|m| m.name() == "certificate_expiry")
        .expect("registered");
    let snap = Arc::new(m.collect_complete(ctx()).await.unwrap());
    assert_eq!(
        snap.value("certificate_source_up", &[("path", "chain.pem")]),
        Some(1.0)
    );
    assert_eq!(
        snap.value("certificate_source_up", &[("path", "bad.pem")]),
        Some(0.0)
    );
    assert_eq!(
        snap.value("certificate_source_up", &[("endpoint", addr.as_str())]),
        Some(1.0)
    );
    for format in [Format::Classic, Format::OpenMetrics] {
        let text = encode(vec![snap.clone()], format).unwrap();
        if std::env::var_os("SHOW_EXPOSITION").is_some() {
            println!("{text}");
        }
        assert!(
            text.contains("# TYPE certificate_not_after_timestamp_seconds gauge"),
            "{text}"
        );
        assert!(text.contains(&format!("certificate_not_after_timestamp_seconds{{source=\"file\",path=\"chain.pem\",index=\"0\",serial=\"03\"}} {}", ts(2026, 9, 1) as i64)), "{text}");
        if !Path::new("/usr/bin/promtool").exists() {
            eprintln!("promtool not installed: exposition not linted");
            continue;
        }
        let mut child = Command::new("/usr/bin/promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn config_errors_read_well() {
    for y in [
        "endpoints:\n  - { address: \"mail.lan:587\", starttls: gopher }",
        "endpoints:\n  - { address: \"mail.lan:587\", sni: x }",
        "endpoints:\n  - \"a.lan:443\"\n  - \"no-port.lan\"",
        "endpoints: [42]",
    ] {
        let e = certs::config_error(y);
        if std::env::var_os("SHOW_ERRORS").is_some() {
            println!("{e}");
        }
        assert!(e.contains("cfg.yaml, line "), "{e}");
        assert!(e.contains("endpoints"), "{e}");
    }
}

// ------------------------------------------------ issue 13: no false "clean"

fn openssl_cert(dir: &Path, name: &str, cn: &str, days: u32) {
    common::tools::openssl_cert(
        dir,
        &format!("{name}.key"),
        &format!("{name}.crt"),
        cn,
        days,
    );
}

fn p12(dir: &Path, name: &str, out: &str, pass: &str, extra: &[&str]) {
    let mut args = vec![
        "pkcs12",
        "-export",
        "-in",
        &*format!("{name}.crt"),
        "-inkey",
        &*format!("{name}.key"),
    ]
    .into_iter()
    .map(str::to_string)
    .collect::<Vec<_>>();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend([
        "-passout".into(),
        format!("pass:{pass}"),
        "-out".into(),
        out.into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    openssl(&args, dir);
}

async fn collect_now(yaml: &str, base: &Path) -> Snapshot {
    // openssl dates its certificates from the real clock.
    let m = CertificateMonitor::new(config(yaml), base.to_path_buf());
    m.collect_complete(CollectContext {
        now: SystemTime::now(),
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn pkcs12_without_password_is_read_beside_a_configured_passphrase() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    openssl_cert(p, "srv", "p12.lan", 90);
    p12(p, "srv", "empty.p12", "", &[]);
    p12(p, "srv", "protected.p12", "s3cret", &[]);
    p12(p, "srv", "other.p12", "another", &[]);
    // Older exports: RC2/3DES (openssl -legacy), when this openssl still has them.
    let legacy = Command::new("openssl")
        .args([
            "pkcs12",
            "-export",
            "-legacy",
            "-in",
            "srv.crt",
            "-inkey",
            "srv.key",
            "-passout",
            "pass:",
            "-out",
            "legacy.p12",
        ])
        .current_dir(p)
        .output()
        .is_ok_and(|o| o.status.success());
    if !legacy {
        println!("skipping legacy.p12: this openssl cannot export -legacy PKCS#12");
    }
    std::fs::write(p.join("p12.pass"), "s3cret\n").unwrap();
    let s = collect_now("pkcs12_passphrase_file: p12.pass\npaths: [\"*.p12\"]", p).await;
    for f in ["empty.p12", "protected.p12"] {
        assert_eq!(up(&s, "path", f), Some(1.0), "{f}: {:?}", s.targets);
        assert_eq!(
            info_label(&s, &file(f, 0), "subject_cn").as_deref(),
            Some("p12.lan")
        );
    }
    if legacy {
        assert_eq!(up(&s, "path", "legacy.p12"), Some(1.0), "{:?}", s.targets);
    }
    assert_eq!(reason(&s, "other.p12").as_deref(), Some("wrong_passphrase"));
    // Without a passphrase: the empty one works, the protected file asks for one.
    let s = collect_now("paths: [\"*.p12\"]", p).await;
    assert_eq!(up(&s, "path", "empty.p12"), Some(1.0));
    assert_eq!(
        reason(&s, "protected.p12").as_deref(),
        Some("passphrase_required")
    );
}

#[tokio::test]
async fn tilde_paths_and_kubeconfigs_found_by_content() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("home");
    let kube = home.join(".kube");
    std::fs::create_dir_all(kube.join("cache/discovery/127.0.0.1_6443")).unwrap();
    let etc = d.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    openssl_cert(&etc, "ca", "k3s-server-ca", 3650);
    openssl_cert(&etc, "admin", "system:admin", 365);
    use base64::Engine;
    let b64 = |f: &str| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(etc.join(f)).unwrap())
    };
    // As kubectl writes it: keys sorted, so `kind: Config` comes after the clusters.
    let config = format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://127.0.0.1:6443\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\nkind: Config\npreferences: {{}}\nusers:\n- name: default\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64("ca.crt"),
        b64("admin.crt"),
        b64("admin.key")
    );
    std::fs::write(kube.join("config"), &config).unwrap();
    std::fs::write(
        kube.join("cache/discovery/127.0.0.1_6443/servergroups.json"),
        r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#,
    )
    .unwrap();
    let yaml = "paths: [\"~/.kube/\", \"~/.kube/config\"]";
    let m = CertificateMonitor::with_home(config_of(yaml), etc.clone(), Some(home.clone()));
    let s = m
        .collect_complete(CollectContext {
            now: SystemTime::now(),
        })
        .await
        .unwrap();
    assert_eq!(
        up(&s, "path", "~/.kube/config"),
        Some(1.0),
        "{:?}",
        s.targets
    );
    assert_eq!(
        s.value(
            "certificate_source_certificates",
            &[("path", "~/.kube/config")]
        ),
        Some(2.0)
    );
    assert_eq!(
        info_label(&s, &file("~/.kube/config", 1), "subject_cn").as_deref(),
        Some("system:admin")
    );
    assert_eq!(s.failed_targets(), 0, "{:?}", s.targets);
    assert_eq!(
        s.family("certificate_source_up").unwrap().samples.len(),
        1,
        "one file, one source; the discovery cache is not a certificate source"
    );
    // Without a home, `~/` fails loudly instead of pointing at nothing.
    let m = CertificateMonitor::with_home(config_of(yaml), etc.clone(), None);
    let s = m.collect_complete(ctx()).await.unwrap();
    assert_eq!(reason(&s, "~/.kube/config").as_deref(), Some("not_found"));
    let t = s
        .targets
        .iter()
        .find(|t| t.target == "file: ~/.kube/config")
        .unwrap();
    assert!(
        t.error.as_deref().unwrap().contains("HOME"),
        "{:?}",
        t.error
    );
}

fn config_of(yaml: &str) -> CertificateConfig {
    config(yaml)
}

#[tokio::test]
async fn byte_order_marks_and_trusted_certificates_from_openssl() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    openssl_cert(p, "a", "a.lan", 90);
    openssl_cert(p, "b", "b.lan", 30);
    let a = std::fs::read(p.join("a.crt")).unwrap();
    let b = std::fs::read(p.join("b.crt")).unwrap();
    let bom = b"\xEF\xBB\xBF";
    std::fs::write(p.join("bom.pem"), [&bom[..], &a].concat()).unwrap();
    std::fs::write(p.join("bundle.pem"), [&a[..], bom, &b].concat()).unwrap();
    // openssl reads both: the files are valid as far as the real tool goes.
    openssl(&["x509", "-in", "bom.pem", "-noout"], p);
    let out = Command::new("openssl")
        .args(["storeutl", "-noout", "-certs", "bundle.pem"])
        .current_dir(p)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Total found: 2"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // `openssl x509 -trustout` writes TRUSTED CERTIFICATE blocks.
    openssl(
        &[
            "x509",
            "-in",
            "b.crt",
            "-trustout",
            "-addtrust",
            "serverAuth",
            "-out",
            "trusted.pem",
        ],
        p,
    );
    assert!(std::fs::read_to_string(p.join("trusted.pem"))
        .unwrap()
        .starts_with("-----BEGIN TRUSTED CERTIFICATE-----"));
    let s = collect_now("paths: [\"*.pem\"]", p).await;
    assert_eq!(up(&s, "path", "bom.pem"), Some(1.0), "{:?}", s.targets);
    assert_eq!(
        s.value("certificate_source_certificates", &[("path", "bundle.pem")]),
        Some(2.0),
        "the second certificate of the bundle is not dropped"
    );
    assert_eq!(
        info_label(&s, &file("bundle.pem", 1), "subject_cn").as_deref(),
        Some("b.lan")
    );
    assert_eq!(
        info_label(&s, &file("trusted.pem", 0), "subject_cn").as_deref(),
        Some("b.lan")
    );
}

#[tokio::test]
async fn inputs_that_must_not_read_as_clean() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let (fine, key) = self_signed("fine.lan", &["fine.lan"], 1, (2025, 1, 1), (2027, 1, 1));
    let (old, _) = self_signed("old-intermediate", &[], 2, (2020, 1, 1), (2025, 6, 1));
    std::fs::write(p.join("empty.pem"), "\n").unwrap();
    std::fs::create_dir(p.join("no-certs")).unwrap();
    std::fs::write(p.join("no-certs/README"), "certs go here\n").unwrap();
    std::fs::write(p.join("key-only.pem"), key.serialize_pem()).unwrap();
    // A chain whose later member expired: the file is read, and it is a finding.
    std::fs::write(p.join("chain.pem"), format!("{}{}", fine.pem(), old.pem())).unwrap();
    // A second block indented (pasted from YAML): not read, so not a complete bundle.
    let indented: String = old.pem().lines().map(|l| format!("    {l}\n")).collect();
    std::fs::write(p.join("pasted.pem"), format!("{}{indented}", fine.pem())).unwrap();
    let yaml =
        "paths: [\"empty.pem\", \"no-certs\", \"key-only.pem\", \"chain.pem\", \"pasted.pem\"]";
    let s = collect(yaml, p).await;
    for (f, why) in [
        ("empty.pem", "empty"),
        ("no-certs", "no_files"),
        ("key-only.pem", "private_key_only"),
        ("pasted.pem", "malformed_pem"),
    ] {
        assert_eq!(up(&s, "path", f), Some(0.0), "{f}");
        assert_eq!(reason(&s, f).as_deref(), Some(why), "{f}");
    }
    let chain = s
        .targets
        .iter()
        .find(|t| t.target == "file: chain.pem")
        .unwrap();
    assert_eq!(chain.health, Health::Findings, "{}", chain.summary);
    assert!(
        chain
            .summary
            .contains("old-intermediate expired 214 days ago"),
        "{}",
        chain.summary
    );
    assert_eq!(
        get(&s, "certificate_expired", &file("chain.pem", 1)),
        Some(1.0)
    );
    let m = CertificateMonitor::new(config(yaml), p.to_path_buf());
    let r = report(&m).await;
    assert_eq!(
        r.exit_code(),
        1,
        "unreadable sources make the one-shot exit 1"
    );
    let text = r.render(homelab_monitor::cli::report::ReportFormat::Table);
    assert!(text.contains("expired 214 days ago"), "{text}");
    assert!(!text.contains("-214"), "{text}");
}

/// `openssl s_server` speaking TLS directly on a free loopback port.
fn direct_tls_server(dir: &Path) -> (Kill, String) {
    openssl_cert(dir, "srv", "localhost", 30);
    s_server(dir, &["-cert", "srv.crt", "-key", "srv.key"])
}

#[tokio::test]
async fn starttls_on_a_direct_tls_port_says_starttls() {
    let d = tempfile::tempdir().unwrap();
    let (_server, addr) = direct_tls_server(d.path());
    for proto in ["smtp", "imap", "pop3"] {
        let yaml = format!(
            "endpoints:\n  - {{ address: \"{addr}\", server_name: localhost, starttls: {proto}, timeout: 20s }}"
        );
        let s = collect_now(&yaml, d.path()).await;
        assert_eq!(
            reason(&s, &addr).as_deref(),
            Some("starttls"),
            "{proto}: {:?}",
            s.targets
        );
        let msg = s.targets[0].error.clone().unwrap_or_default();
        assert!(
            msg.contains(&format!("did not answer as {proto}"))
                && msg.contains("speaks TLS directly"),
            "{msg}"
        );
    }
    // The same port without starttls is read.
    let yaml = format!("endpoints:\n  - {{ address: \"{addr}\", server_name: localhost }}");
    let s = collect_now(&yaml, d.path()).await;
    assert_eq!(
        s.value("certificate_source_up", &[("endpoint", addr.as_str())]),
        Some(1.0),
        "{:?}",
        s.targets
    );
}

#[test]
fn readme_lists_every_error_reason() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md is readable");
    let start = readme
        .find("Reasons in `certificate_source_error_info`")
        .expect("README has the certificate reasons table");
    let table = &readme[start..];
    let table = &table[..table
        .find("\n\n")
        .map(|i| {
            // The heading line, a blank line, then the table up to the next blank line.
            let rest = &table[i + 2..];
            i + 2 + rest.find("\n\n").unwrap_or(rest.len())
        })
        .unwrap_or(table.len())];
    for r in homelab_monitor::monitors::certificates::ERROR_REASONS {
        assert!(
            table.contains(&format!("`{r}`")),
            "README misses reason `{r}`"
        );
    }
}

/// The binary, as a user runs it: `~/` is the exporter's own HOME.
#[test]
fn status_expands_tilde_from_the_exporters_home() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("home");
    std::fs::create_dir_all(home.join(".kube")).unwrap();
    let cfg = d.path().join("etc");
    std::fs::create_dir_all(&cfg).unwrap();
    openssl_cert(&cfg, "ca", "kube-ca", 90);
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(cfg.join("ca.crt")).unwrap());
    std::fs::write(
        home.join(".kube/config"),
        format!("apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: https://127.0.0.1:6443\n  name: default\nkind: Config\nusers: []\n"),
    )
    .unwrap();
    std::fs::write(
        cfg.join("monitoring-config.yaml"),
        "custom_monitors:\n  certificate_expiry:\n    paths: [\"~/.kube/\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_homelab-monitor"))
        .args(["--status", "--config", "monitoring-config.yaml"])
        .current_dir(&cfg)
        .env("HOME", &home)
        .output()
        .expect("the binary runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("file: ~/.kube/config"), "{text}");
    assert!(
        text.contains("kubeconfig, earliest expiry in 90 days")
            || text.contains("kubeconfig, earliest expiry in 89 days 23h"),
        "{text}"
    );
    assert!(!text.contains("day(s)"), "{text}");
}

/// minikube writes file paths into ~/.kube/config, beside other tools' embedded data:
/// the named files are checked too, not silently left out.
#[tokio::test]
async fn kubeconfig_certificate_files_are_checked() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path();
    let mk = home.join(".minikube");
    std::fs::create_dir_all(mk.join("profiles/minikube")).unwrap();
    std::fs::create_dir_all(home.join(".kube")).unwrap();
    openssl_cert(&mk, "ca", "minikubeCA", 3650);
    openssl_cert(
        &mk.join("profiles/minikube"),
        "client",
        "minikube-user",
        365,
    );
    openssl_cert(home, "k3s", "k3s-server-ca", 3650);
    use base64::Engine;
    let k3s = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(home.join("k3s.crt")).unwrap());
    let config = format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {k3s}\n    server: https://127.0.0.1:6443\n  name: k3s\n- cluster:\n    certificate-authority: {}\n    server: https://192.168.49.2:8443\n  name: minikube\nkind: Config\nusers:\n- name: minikube\n  user:\n    client-certificate: ../.minikube/profiles/minikube/client.crt\n    client-key: ../.minikube/profiles/minikube/client.key\n",
        mk.join("ca.crt").display()
    );
    std::fs::write(home.join(".kube/config"), &config).unwrap();
    std::fs::write(
        home.join(".kube/stale.kubeconfig"),
        config.replace("client.crt", "gone.crt"),
    )
    .unwrap();
    let s = collect_now("paths: [\".kube/\"]", home).await;
    assert_eq!(up(&s, "path", ".kube/config"), Some(1.0), "{:?}", s.targets);
    let cns: Vec<String> = (0..3)
        .filter_map(|i| info_label(&s, &file(".kube/config", i), "subject_cn"))
        .collect();
    assert_eq!(cns, ["k3s-server-ca", "minikubeCA", "minikube-user"]);
    assert_eq!(
        reason(&s, ".kube/stale.kubeconfig").as_deref(),
        Some("not_found")
    );
    let t = s
        .targets
        .iter()
        .find(|t| t.target == "file: .kube/stale.kubeconfig")
        .unwrap();
    let msg = t.error.as_deref().unwrap_or("");
    assert!(
        msg.contains("users[minikube] client-certificate ../.minikube/profiles/minikube/gone.crt"),
        "{msg}"
    );
}

/// A server that is slow to greet is not taken for a direct-TLS port: after the
/// check on a second connection it is read through STARTTLS as usual.
#[tokio::test]
async fn slow_smtp_greeting_still_works() {
    let chain = Chain::new(
        "mail.homelab.test",
        &["mail.homelab.test"],
        (2025, 1, 1),
        (2026, 8, 1),
    );
    let (certs, key) = chain.served();
    let smtp = ep(tls_server_pre(server_config(certs, key), Pre::SlowSmtp).await);
    let d = tempfile::tempdir().unwrap();
    let yaml = format!(
        "endpoints:\n  - {{ address: \"{smtp}\", server_name: mail.homelab.test, starttls: smtp, timeout: 20s }}"
    );
    let s = collect(&yaml, d.path()).await;
    assert_eq!(
        get(
            &s,
            "certificate_not_after_timestamp_seconds",
            &endpoint(&smtp, 0)
        ),
        Some(ts(2026, 8, 1)),
        "{:?}",
        s.targets
    );
}

// ---------------------------------------------------------------- revocation

/// A CA made with the real `openssl ca` in `dir`: `ca.pem`/`ca.key`, leaves
/// `good.pem` (serial 1001) and `revoked.pem` (serial 1000, revoked), the
/// CA's `index.txt`, and its CRL as `crl.pem` and `crl.der` (nextUpdate in
/// `crl_hours` hours; with an authorityKeyIdentifier when `crl_aki`).
fn openssl_ca(dir: &Path, crl_hours: u32, crl_aki: bool) {
    certs::ca_folder(
        dir,
        "copy_extensions = copy\nx509_extensions = leaf\n",
        "[ leaf ]\nbasicConstraints = CA:FALSE\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
    );
    certs::ca_cert(dir, "ca.cnf", "ca.key", "ca.pem", "Homelab CRL CA");
    for leaf in ["revoked", "good"] {
        certs::ca_signed(dir, leaf, None);
    }
    openssl(&["ca", "-config", "ca.cnf", "-revoke", "revoked.pem"], dir);
    let hours = crl_hours.to_string();
    let mut args = vec!["ca", "-config", "ca.cnf", "-gencrl", "-crlhours", &hours];
    if crl_aki {
        args.extend(["-crlexts", "crl_ext"]);
    }
    args.extend(["-out", "crl.pem"]);
    openssl(&args, dir);
    certs::crl_der(dir, "crl.pem", "crl.der");
}

fn crl_value(s: &Snapshot, name: &str, path: &str) -> Option<f64> {
    s.value(name, &[("path", path)])
}

#[tokio::test]
async fn crls_from_openssl_ca_mark_the_revoked_leaf_only() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    openssl_ca(p, 48, true);
    std::fs::write(p.join("garbage.crl"), b"\x30\x82\x01\x00garbage").unwrap();
    let now = SystemTime::now();
    let now_s = now.duration_since(UNIX_EPOCH).unwrap().as_secs() as f64;
    let collect_at = |yaml: &'static str| {
        let m = CertificateMonitor::new(config(yaml), p.to_path_buf());
        async move { m.collect_complete(CollectContext { now }).await.unwrap() }
    };
    // PEM and DER of the same CRL; the CA certificate is a source, so the
    // signature is verified.
    let s =
        collect_at("paths: [ca.pem, good.pem, revoked.pem]\ncrls: [crl.pem, \"*.der\"]\n").await;
    for path in ["crl.pem", "crl.der"] {
        assert_eq!(
            crl_value(&s, "certificate_crl_up", path),
            Some(1.0),
            "{path}"
        );
        assert_eq!(
            crl_value(&s, "certificate_crl_revoked_certificates", path),
            Some(1.0)
        );
        assert_eq!(crl_value(&s, "certificate_crl_verified", path), Some(1.0));
        let next = crl_value(&s, "certificate_crl_next_update_timestamp_seconds", path).unwrap();
        let this = crl_value(&s, "certificate_crl_this_update_timestamp_seconds", path).unwrap();
        assert!((next - this - 48.0 * 3600.0).abs() < 5.0, "{this} {next}");
        assert!((this - now_s).abs() < 600.0, "{this} vs {now_s}");
    }
    let revoked = |s: &Snapshot, path: &str| {
        s.value("certificate_revoked", &[("path", path), ("index", "0")])
    };
    assert_eq!(revoked(&s, "revoked.pem"), Some(1.0));
    assert_eq!(revoked(&s, "good.pem"), Some(0.0));
    // The CA is self-issued: its own CRL covers it, and does not list it.
    assert_eq!(revoked(&s, "ca.pem"), Some(0.0));
    let t = s
        .targets
        .iter()
        .find(|t| t.target == "file: revoked.pem")
        .unwrap();
    assert_eq!(t.health, Health::Findings, "{}", t.summary);
    assert!(t.summary.contains("revoked"), "{}", t.summary);

    // Without the CA certificate the signature cannot be checked; the CRL
    // (authorityKeyIdentifier) and leaves carry the same key id: still used.
    let s = collect_at("paths: [good.pem, revoked.pem]\ncrls: [crl.pem]\n").await;
    assert_eq!(
        crl_value(&s, "certificate_crl_verified", "crl.pem"),
        Some(0.0)
    );
    assert_eq!(revoked(&s, "revoked.pem"), Some(1.0));
    assert_eq!(revoked(&s, "good.pem"), Some(0.0));

    // A CRL that cannot be read: up 0 with a reason, and no "not revoked"
    // anywhere (the unreadable one could have listed it); revoked stays revoked.
    let s = collect_at(
        "paths: [ca.pem, good.pem, revoked.pem]\ncrls: [crl.pem, garbage.crl, missing.crl]\n",
    )
    .await;
    assert_eq!(
        crl_value(&s, "certificate_crl_up", "garbage.crl"),
        Some(0.0)
    );
    assert_eq!(
        crl_value(&s, "certificate_crl_up", "missing.crl"),
        Some(0.0)
    );
    assert_eq!(reason(&s, "garbage.crl").as_deref(), Some("malformed_crl"));
    assert_eq!(reason(&s, "missing.crl").as_deref(), Some("not_found"));
    assert_eq!(revoked(&s, "good.pem"), None);
    assert_eq!(revoked(&s, "revoked.pem"), Some(1.0));

    // A CRL signed by another CA under the same name (without a key id that
    // would tell them apart): its signature does not verify against the
    // configured CA, so it is not used (and said so).
    let other = tempfile::tempdir().unwrap();
    openssl_ca(other.path(), 48, false);
    std::fs::copy(other.path().join("crl.pem"), p.join("forged.pem")).unwrap();
    let s = collect_at("paths: [ca.pem, good.pem, revoked.pem]\ncrls: [forged.pem]\n").await;
    assert_eq!(
        crl_value(&s, "certificate_crl_verified", "forged.pem"),
        Some(0.0)
    );
    assert_eq!(revoked(&s, "good.pem"), None);
    let t = s
        .targets
        .iter()
        .find(|t| t.target == "crl: forged.pem")
        .unwrap();
    assert_eq!(t.health, Health::Findings);

    // No CRLs configured: no revocation series at all.
    let s = collect_at("paths: [good.pem]\n").await;
    assert!(s
        .family("certificate_revoked")
        .is_none_or(|f| f.samples.is_empty()));
}

#[tokio::test]
async fn a_crl_past_its_next_update_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    openssl_ca(p, 1, true);
    let m = CertificateMonitor::new(config("crls: [crl.der]\n"), p.to_path_buf());
    let later = SystemTime::now() + Duration::from_secs(2 * 3600);
    let s = m
        .collect_complete(CollectContext { now: later })
        .await
        .unwrap();
    let next = crl_value(
        &s,
        "certificate_crl_next_update_timestamp_seconds",
        "crl.der",
    )
    .unwrap();
    assert!(next < later.duration_since(UNIX_EPOCH).unwrap().as_secs() as f64);
    let t = s
        .targets
        .iter()
        .find(|t| t.target == "crl: crl.der")
        .unwrap();
    assert_eq!(t.health, Health::Findings, "{}", t.summary);
    let facts = format!("{:?}", t.facts);
    assert!(facts.contains("stale CRL"), "{facts}");
}

/// An OCSP response for `cert` made by the real `openssl ocsp` from the CA's
/// index (CA-signed, nextUpdate in a day), as `{out}`.
fn openssl_ocsp_response(dir: &Path, cert: &str, out: &str) {
    let req = format!("{out}.req");
    openssl(
        &[
            "ocsp",
            "-issuer",
            "ca.pem",
            "-cert",
            cert,
            "-no_nonce",
            "-reqout",
            &req,
        ],
        dir,
    );
    openssl(
        &[
            "ocsp",
            "-index",
            "index.txt",
            "-CA",
            "ca.pem",
            "-rsigner",
            "ca.pem",
            "-rkey",
            "ca.key",
            "-reqin",
            &req,
            "-respout",
            out,
            "-ndays",
            "1",
        ],
        dir,
    );
}

#[tokio::test]
async fn ocsp_staples_from_openssl_s_server_show_revoked_and_good() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    openssl_ca(p, 48, true);
    openssl_ocsp_response(p, "revoked.pem", "revoked.ocsp");
    openssl_ocsp_response(p, "good.pem", "good.ocsp");
    let (_r, revoked_addr) = s_server(
        p,
        &[
            "-cert",
            "revoked.pem",
            "-key",
            "revoked.key",
            "-status_file",
            "revoked.ocsp",
            "-www",
        ],
    );
    let (_g, good_addr) = s_server(
        p,
        &[
            "-cert",
            "good.pem",
            "-key",
            "good.key",
            "-status_file",
            "good.ocsp",
            "-www",
        ],
    );
    let (_n, plain_addr) = s_server(p, &["-cert", "good.pem", "-key", "good.key", "-www"]);
    let now = SystemTime::now();
    let m = CertificateMonitor::new(
        config(&format!(
            "endpoints:\n  - {{ address: \"{revoked_addr}\", server_name: revoked.lan }}\n  - {{ address: \"{good_addr}\", server_name: good.lan }}\n  - {{ address: \"{plain_addr}\", server_name: good.lan }}\n"
        )),
        p.to_path_buf(),
    );
    let s = m.collect_complete(CollectContext { now }).await.unwrap();
    let ep = |a: &str, name: &str| s.value(name, &[("endpoint", a)]);
    let status = |a: &str, st: &str| {
        s.value(
            "certificate_ocsp_status",
            &[("endpoint", a), ("status", st)],
        )
    };
    assert_eq!(ep(&revoked_addr, "certificate_source_up"), Some(1.0));
    assert_eq!(
        ep(&revoked_addr, "certificate_ocsp_staple_present"),
        Some(1.0)
    );
    assert_eq!(status(&revoked_addr, "revoked"), Some(1.0));
    assert_eq!(status(&revoked_addr, "good"), Some(0.0));
    assert_eq!(status(&good_addr, "good"), Some(1.0));
    assert_eq!(status(&good_addr, "revoked"), Some(0.0));
    let next = ep(&good_addr, "certificate_ocsp_next_update_timestamp_seconds").unwrap();
    let now_s = now.duration_since(UNIX_EPOCH).unwrap().as_secs() as f64;
    assert!((next - now_s - DAY).abs() < 600.0, "{next} vs {now_s}");
    // No -status_file: no staple, and no status either way.
    assert_eq!(
        ep(&plain_addr, "certificate_ocsp_staple_present"),
        Some(0.0)
    );
    assert_eq!(status(&plain_addr, "good"), None);
    let t = s
        .targets
        .iter()
        .find(|t| t.target.contains(&revoked_addr))
        .unwrap();
    assert_eq!(t.health, Health::Findings, "{}", t.summary);
    assert!(t.summary.contains("OCSP staple revoked"), "{}", t.summary);
}
