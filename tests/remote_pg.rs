//! Remote Terraform state in PostgreSQL 15 (Debian `postgresql`), states written
//! by terraform's pg backend; libpq TLS modes; a silent peer. The canary secret
//! must never appear in metrics, reports or debug logs.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::remote::*;
use common::{free_port, repo, series};
use homelab_monitor::remote::Env;

// ---------------------------------------------------------------- PostgreSQL

struct Pg {
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
}

impl Pg {
    fn cmd(&self, tool: &str) -> Command {
        if self.as_postgres {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                .arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn start_pg(root: &Path) -> (Pg, u16) {
    start_pg_with(root, |_| {})
}

/// Start a cluster; `setup` edits its data folder (config, certificates) first.
fn start_pg_with(root: &Path, setup: impl FnOnce(&Path)) -> (Pg, u16) {
    let initdb = which("initdb")
        .or_else(|| {
            Some(PathBuf::from("/usr/lib/postgresql/15/bin/initdb")).filter(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("`initdb` is not installed: run `apt-get install -y postgresql`")
        });
    let initdb = std::fs::canonicalize(initdb).unwrap();
    let bin = initdb.parent().unwrap().to_path_buf();
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let pgdir = root.join("pg");
    std::fs::create_dir_all(&pgdir).unwrap();
    if is_root {
        let uid = Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .unwrap();
        let uid: u32 = String::from_utf8_lossy(&uid.stdout).trim().parse().unwrap();
        std::os::unix::fs::chown(&pgdir, Some(uid), None).unwrap();
    }
    let pg = Pg {
        bin,
        data: pgdir.join("data"),
        as_postgres: is_root,
    };
    let st = pg
        .cmd("initdb")
        .arg("-D")
        .arg(&pg.data)
        .args(["-A", "trust"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "initdb failed");
    setup(&pg.data);
    if is_root {
        // Files the setup wrote must belong to the server's user (keys: 0600).
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&pg.data)
            .status();
    }
    let port = free_port();
    let st = pg
        .cmd("pg_ctl")
        .arg("-D")
        .arg(&pg.data)
        .arg("-o")
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            pgdir.display()
        ))
        .arg("-l")
        .arg(pgdir.join("log"))
        .args(["-w", "start"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "pg_ctl start failed");
    (pg, port)
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_backend_with_real_terraform_and_postgresql() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_pg, port) = start_pg(dir);
    // Trust auth accepts any password: the canary stands for a real one.
    let conn = format!("postgres://postgres:{CANARY}@127.0.0.1:{port}/postgres?sslmode=disable");
    let proj = dir.join("infra");
    project(&proj, r#"backend "pg" {}"#);
    init(&proj, &[&format!("conn_str={conn}")]);
    apply(&proj, 2, &[]);
    tf(&proj, &["workspace", "new", "staging"], &[]);
    apply(&proj, 3, &[]);

    let m = monitor_with_env(
        dir,
        "custom_monitors:\n  terraform_state:\n    check_interval: 1ms\n    backends:\n      - { type: pg, conn_str: { env: TEST_PG_CONN } }\n      - { type: pg, conn_str: { env: TEST_PG_CONN }, schema_name: nope }\n",
        Some(Env::from_pairs([("TEST_PG_CONN", conn.as_str())])),
    );
    let base = format!("pg://127.0.0.1:{port}/postgres");
    let text = scrape(&m).await;
    let default = format!("{base}/default");
    let staging = format!("{base}/staging");
    assert_eq!(up(&text, &default), Some(1.0), "{text}");
    assert_eq!(up(&text, &staging), Some(1.0), "{text}");
    assert_eq!(instances(&text, &default), Some(2.0), "{text}");
    assert_eq!(instances(&text, &staging), Some(3.0), "{text}");
    // A schema that does not exist: a discovery error on that entry only.
    assert!(
        text.contains(&format!(
            "terraform_state_error_info{{state_file=\"{base}/nope\",component=\"discovery\",reason=\"not_found\"}} 1"
        )),
        "{text}"
    );
    let b = bytes(&text, &staging);
    let text = scrape(&m).await;
    assert_eq!(bytes(&text, &staging), b, "unchanged state fetched again");
    apply(&proj, 1, &[]);
    let text = scrape(&m).await;
    assert_eq!(instances(&text, &staging), Some(1.0), "{text}");

    // Zero-config: conn_str from the working directory's record (holds the canary).
    let (_zm, text) = monitor_and_scrape(
        dir,
        "custom_monitors:\n  terraform_state:\n    working_dirs: [infra]\n",
    )
    .await;
    assert_eq!(up(&text, &default), Some(1.0), "{text}");
    status_without_canary(dir, &[("TEST_PG_CONN", &conn)]);

    // Unreachable server: per-source error, scrape still fine.
    let down = format!(
        "postgres://postgres:{CANARY}@127.0.0.1:{}/postgres?sslmode=disable",
        free_port()
    );
    let (_dm, text) = monitor_and_scrape_env(
        dir,
        "custom_monitors:\n  terraform_state:\n    remote: { retries: 0 }\n    backends:\n      - { type: pg, conn_str: { env: TEST_PG_DOWN } }\n",
        &[("TEST_PG_DOWN", down.as_str())],
    ).await;
    assert!(text.contains("reason=\"unreachable\""), "{text}");
}

// ---------------------------------------------------------------- PostgreSQL over TLS

/// A CA, a server certificate for `localhost` only (not 127.0.0.1) and a client
/// certificate for the role `certuser`, written as PEM files into `base/certs`,
/// which is returned.
fn pg_certificates(base: &Path) -> PathBuf {
    let dir = base.join("certs");
    std::fs::create_dir_all(&dir).unwrap();
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "pg test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
    other
        .distinguished_name
        .push(DnType::CommonName, "another CA");
    other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other = CertifiedIssuer::self_signed(other, KeyPair::generate().unwrap()).unwrap();
    let leaf = |cn: &str, sans: Vec<String>, name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join(format!("{name}.key")),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    };
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(dir.join("other-ca.crt"), other.pem()).unwrap();
    leaf("localhost", vec!["localhost".into()], "server");
    leaf("certuser", vec![], "client");
    dir
}

/// libpq's TLS options work as Terraform's pg backend (lib/pq) takes them:
/// terraform itself writes the states over `verify-full`; the monitor then
/// reads them with each sslmode, a wrong CA, a host name the certificate does
/// not name, a server that refuses plain connections, and a client certificate.
#[tokio::test(flavor = "multi_thread")]
async fn pg_backend_over_tls_with_libpq_sslmodes_and_client_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let certs = pg_certificates(dir);
    let (pg, port) = start_pg_with(dir, |data| {
        for f in ["ca.crt", "server.crt", "server.key"] {
            std::fs::copy(certs.join(f), data.join(f)).unwrap();
        }
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        writeln!(
            conf,
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'ca.crt'"
        )
        .unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostnossl all all 127.0.0.1/32 reject\nhostssl all certuser 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
    });
    let sock = dir.join("pg");
    let st = pg
        .cmd("psql")
        .arg("-h")
        .arg(&sock)
        .args(["-p", &port.to_string(), "-U", "postgres", "-q", "-c"])
        .arg("CREATE ROLE certuser LOGIN SUPERUSER")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "psql CREATE ROLE failed");
    let ca = certs.join("ca.crt");
    // Terraform writes over verify-full (lib/pq), two workspaces.
    let conn = format!(
        "postgres://postgres:{CANARY}@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        ca.display()
    );
    let proj = dir.join("infra");
    project(&proj, r#"backend "pg" {}"#);
    init(&proj, &[&format!("conn_str={conn}")]);
    apply(&proj, 2, &[]);

    // One monitor per connection string: (conn, entry label, expected).
    let read = |conn: String| {
        let var = "TEST_PG_TLS";
        let m = monitor_with_env(
            dir,
            &format!("custom_monitors:\n  terraform_state:\n    remote: {{ retries: 0 }}\n    backends:\n      - {{ type: pg, conn_str: {{ env: {var} }} }}\n"),
            Some(Env::from_pairs([(var, conn)])),
        );
        async move { scrape(&m).await }
    };
    let local = format!("pg://localhost:{port}/postgres");
    let discovery = |text: &str, label: &str| component_error(text, label, "discovery");

    // verify-full with the right CA and host name: read.
    let text = read(conn.clone()).await;
    assert_eq!(up(&text, &format!("{local}/default")), Some(1.0), "{text}");
    assert_eq!(
        instances(&text, &format!("{local}/default")),
        Some(2.0),
        "{text}"
    );
    // The key=value form, CA path relative to the config file's folder.
    let text = read(format!(
        "host=localhost port={port} user=postgres password='{CANARY}' dbname=postgres sslmode=verify-full sslrootcert=certs/ca.crt"
    ))
    .await;
    assert_eq!(up(&text, &format!("{local}/default")), Some(1.0), "{text}");
    // libpq's sslmodes against the server's certificate (for `localhost` only):
    // (what, host, query, expected discovery error; `None`: the state is read).
    let other_ca = certs.join("other-ca.crt").display().to_string();
    let ca_s = ca.display().to_string();
    let cases = [
        (
            "verify-full with another CA: a TLS error, nothing read",
            "localhost",
            format!("sslmode=verify-full&sslrootcert={other_ca}"),
            Some("tls"),
        ),
        (
            "verify-full to 127.0.0.1: the certificate names only localhost",
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={ca_s}"),
            Some("tls"),
        ),
        (
            "verify-ca checks the chain only: read",
            "127.0.0.1",
            format!("sslmode=verify-ca&sslrootcert={ca_s}"),
            None,
        ),
        (
            "require: encrypted, certificate not checked (libpq's meaning): read",
            "127.0.0.1",
            "sslmode=require".to_string(),
            None,
        ),
        (
            "require + sslrootcert of another CA acts as verify-ca (libpq): refused",
            "127.0.0.1",
            format!("sslmode=require&sslrootcert={other_ca}"),
            Some("tls"),
        ),
        (
            "disable: the server only takes TLS (pg_hba hostnossl reject): a login error",
            "127.0.0.1",
            "sslmode=disable".to_string(),
            Some("auth"),
        ),
    ];
    for (what, host, query, expected) in cases {
        let text = read(format!(
            "postgres://postgres:{CANARY}@{host}:{port}/postgres?{query}"
        ))
        .await;
        let label = format!("pg://{host}:{port}/postgres");
        match expected {
            None => assert_eq!(
                up(&text, &format!("{label}/default")),
                Some(1.0),
                "{what}:\n{text}"
            ),
            Some(reason) => assert_eq!(
                discovery(&text, &label).as_deref(),
                Some(reason),
                "{what}:\n{text}"
            ),
        }
    }
    // Client certificate authentication (pg_hba `cert` for certuser).
    let client = |extra: &str| {
        format!(
            "postgres://certuser@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}{extra}",
            ca.display()
        )
    };
    let text = read(client(&format!(
        "&sslcert={}&sslkey={}",
        certs.join("client.crt").display(),
        certs.join("client.key").display()
    )))
    .await;
    assert_eq!(up(&text, &format!("{local}/default")), Some(1.0), "{text}");
    let text = read(client("")).await;
    assert_eq!(discovery(&text, &local).as_deref(), Some("auth"), "{text}");
    // A verify mode without a CA is a configuration error, named as such.
    let text = read(format!(
        "postgres://postgres:{CANARY}@localhost:{port}/postgres?sslmode=verify-full"
    ))
    .await;
    assert!(text.contains("reason=\"config\""), "{text}");
}

/// A PostgreSQL peer that accepts the connection and never answers costs one
/// `request_timeout` on that entry, reported on the entry itself (`timeout`),
/// while an HTTP entry of the same collection is read: the collection is not
/// held until the monitor's deadline (then the whole remote read would be
/// abandoned and reported as one `remote` timeout).
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_pg_peer_costs_one_request_timeout_and_others_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    {
        let held = held.clone();
        std::thread::spawn(move || {
            for s in silent.incoming().flatten() {
                held.lock().unwrap().push(s);
            }
        });
    }
    let state =
        std::fs::read(repo().join("examples/terraform/environments/prod/terraform.tfstate"))
            .unwrap();
    let (srv, _) = etag_fleet_server(state, Duration::ZERO);
    let http = srv.url("/state/ok");
    let silent = format!("postgres://tf:{CANARY}@127.0.0.1:{port}/tf?sslmode=disable");
    let yaml = format!(
        "custom_monitors:\n  terraform_state:\n    timeout: 60s\n    remote: {{ request_timeout: 1s, retries: 0 }}\n    backends:\n      - {{ type: pg, conn_str: {{ env: TEST_PG_SILENT }} }}\n      - {{ type: http, address: \"{http}\", auth: none }}\n"
    );
    let (_m, text) =
        monitor_and_scrape_env(dir, &yaml, &[("TEST_PG_SILENT", silent.as_str())]).await;
    assert!(
        !held.lock().unwrap().is_empty(),
        "the pg entry never connected"
    );
    assert_eq!(
        series(
            &text,
            &format!("terraform_state_error_info{{state_file=\"pg://127.0.0.1:{port}/tf\",component=\"discovery\",reason=\"timeout\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(up(&text, &http), Some(1.0), "{text}");
    assert!(
        !text.contains("state_file=\"remote\""),
        "the whole remote read was abandoned:\n{text}"
    );
}
