//! Certificate monitor against real servers and tools from the distribution's
//! packages, on 127.0.0.1 only: STARTTLS for PostgreSQL, MariaDB, OpenLDAP
//! slapd, vsftpd and Prosody. Each server runs with a certificate made here
//! by openssl; the exported notAfter must be the one openssl states. A test
//! whose server is not installed prints SKIP with the package to install
//! (scripts/test.sh installs them).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use homelab_monitor::core::monitor::{CollectContext, Monitor};
use homelab_monitor::core::snapshot::Snapshot;
use homelab_monitor::monitors::certificates::CertificateMonitor;

mod common;

use common::certs::config;
use common::tools::{openssl, s_server, spawn_quiet, Kill};
use common::{free_port, wait_for};

/// An installed program: PATH, then the sbin folders (root's PATH has them, a
/// user's may not) and PostgreSQL's versioned bin folder.
fn installed(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(PathBuf::from)
        .chain(
            ["/usr/sbin", "/sbin", "/usr/lib/postgresql/15/bin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The program, or None after printing the SKIP line with the package to install.
fn require(name: &str, package: &str, test: &str) -> Option<PathBuf> {
    let found = installed(name);
    if found.is_none() {
        println!("SKIP {test}: `{name}` is not installed (apt-get install -y {package})");
    }
    found
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it,
/// made by openssl in `dir`: ca.crt, srv.crt, srv.key (EC P-256), valid `days`.
fn openssl_chain(dir: &Path, days: u32) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=servers test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
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
            "0x5eed",
            "-days",
            &days.to_string(),
            "-extfile",
            "ext.cnf",
            "-out",
            "srv.crt",
        ],
    );
}

/// notAfter of a PEM certificate as openssl prints it, in Unix seconds.
fn openssl_not_after(dir: &Path, cert: &str) -> f64 {
    let out = common::run_ok(
        "openssl x509 -enddate",
        Command::new("openssl")
            .args([
                "x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in", cert,
            ])
            .current_dir(dir),
    );
    // notAfter=2026-12-31 00:00:00Z
    let text = String::from_utf8_lossy(&out.stdout);
    let date = text
        .trim()
        .trim_start_matches("notAfter=")
        .replace(' ', "T");
    let t: jiff::Timestamp = date
        .parse()
        .unwrap_or_else(|e| panic!("openssl date {date:?}: {e}"));
    t.as_second() as f64
}

/// One collection (at the real time: openssl dates from now) of `endpoints`.
async fn collect(dir: &Path, endpoints: &str) -> Snapshot {
    let m = CertificateMonitor::new(
        config(&format!("endpoints:\n{endpoints}")),
        dir.to_path_buf(),
    );
    m.collect_complete(CollectContext {
        now: SystemTime::now(),
    })
    .await
    .expect("collection never fails as a whole")
}

fn endpoint_line(addr: &str, proto: &str, server_name: &str) -> String {
    format!(
        "  - {{ address: \"{addr}\", server_name: {server_name}, starttls: {proto}, ca_file: ca.crt, timeout: 20s }}\n"
    )
}

fn reason(s: &Snapshot, addr: &str) -> Option<String> {
    let fam = s.family("certificate_source_error_info")?;
    fam.samples
        .iter()
        .find(|x| x.label("endpoint") == Some(addr))
        .and_then(|x| x.label("reason").map(str::to_owned))
}

fn error_of(s: &Snapshot, addr: &str) -> String {
    s.targets
        .iter()
        .find_map(|t| t.error.clone().filter(|e| e.contains(addr)))
        .unwrap_or_default()
}

/// The leaf read over `proto` has openssl's notAfter, and the chain verifies against ca.crt.
fn assert_read(s: &Snapshot, dir: &Path, addr: &str, server_name: &str) {
    let leaf = [
        ("source", "endpoint"),
        ("endpoint", addr),
        ("server_name", server_name),
        ("index", "0"),
    ];
    assert_eq!(
        s.value("certificate_source_up", &[("endpoint", addr)]),
        Some(1.0),
        "{addr}: {:?}",
        s.targets
    );
    assert_eq!(
        s.value("certificate_not_after_timestamp_seconds", &leaf),
        Some(openssl_not_after(dir, "srv.crt")),
        "{addr}"
    );
    assert_eq!(
        s.value("certificate_verified", &[("endpoint", addr)]),
        Some(1.0),
        "{addr}"
    );
}

fn wait_port(what: &str, port: u16) {
    wait_for(what, 60, || TcpStream::connect(("127.0.0.1", port)).ok());
}

// ---------------------------------------------------------------- PostgreSQL

struct Pg {
    pg_ctl: PathBuf,
    data: PathBuf,
}

fn as_postgres(cmd: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(cmd);
        c
    } else {
        Command::new(cmd)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = as_postgres(&self.pg_ctl)
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn postgres_sslrequest_against_postgresql() {
    let Some(initdb) = require(
        "initdb",
        "postgresql",
        "postgres_sslrequest_against_postgresql",
    ) else {
        return;
    };
    let bin = std::fs::canonicalize(&initdb)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    openssl_chain(dir, 45);
    let pgdir = dir.join("pg");
    std::fs::create_dir_all(&pgdir).unwrap();
    if is_root() {
        run_quiet(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&pgdir),
        );
    }
    let data = pgdir.join("data");
    run_quiet(
        as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-N"]),
    );
    let pg = Pg {
        pg_ctl: bin.join("pg_ctl"),
        data: data.clone(),
    };
    // The key must belong to the server's user, mode 0600.
    std::fs::copy(dir.join("srv.crt"), data.join("server.crt")).unwrap();
    std::fs::copy(dir.join("srv.key"), data.join("server.key")).unwrap();
    run_quiet(
        Command::new("chmod")
            .arg("600")
            .arg(data.join("server.key")),
    );
    if is_root() {
        run_quiet(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data),
        );
    }
    let port = free_port();
    run_quiet(
        as_postgres(&pg.pg_ctl)
            .arg("-D")
            .arg(&data)
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c ssl=on",
                pgdir.display()
            ))
            .arg("-l")
            .arg(pgdir.join("log"))
            .args(["-w", "start"]),
    );
    let addr = format!("127.0.0.1:{port}");
    let s = collect(dir, &endpoint_line(&addr, "postgres", "localhost")).await;
    assert_read(&s, dir, &addr, "localhost");
    drop(pg);
}

fn run_quiet(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------- MariaDB

#[tokio::test]
async fn mysql_ssl_request_against_mariadb() {
    let Some(mariadbd) = require(
        "mariadbd",
        "mariadb-server",
        "mysql_ssl_request_against_mariadb",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    openssl_chain(dir, 46);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let port = free_port();
    // An empty data folder and --skip-grant-tables: no mariadb-install-db (slow);
    // the greeting, the SSL request and the TLS handshake are the real server's.
    let mut cmd = Command::new(&mariadbd);
    cmd.arg("--no-defaults");
    if is_root() {
        cmd.arg("--user=root");
    }
    cmd.arg(format!("--datadir={}", dir.join("data").display()))
        .arg(format!("--socket={}", dir.join("m.sock").display()))
        .arg(format!("--pid-file={}", dir.join("m.pid").display()))
        .arg(format!("--port={port}"))
        .args([
            "--bind-address=127.0.0.1",
            "--skip-grant-tables",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=8M",
            "--innodb-log-file-size=4M",
        ])
        .arg(format!("--ssl-cert={}", dir.join("srv.crt").display()))
        .arg(format!("--ssl-key={}", dir.join("srv.key").display()));
    let _server = spawn_quiet("mariadbd", &mut cmd);
    wait_port("mariadbd", port);
    let addr = format!("127.0.0.1:{port}");
    let s = collect(dir, &endpoint_line(&addr, "mysql", "localhost")).await;
    assert_read(&s, dir, &addr, "localhost");
}

// ---------------------------------------------------------------- OpenLDAP

fn slapd(bin: &Path, dir: &Path, conf: &str, tls: bool) -> (Kill, String) {
    let mut text = format!("pidfile {}\n", dir.join(format!("{conf}.pid")).display());
    if tls {
        text.push_str(&format!(
            "TLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
            dir.join("srv.crt").display(),
            dir.join("srv.key").display()
        ));
    }
    std::fs::write(dir.join(conf), text).unwrap();
    let port = free_port();
    let guard = spawn_quiet(
        "slapd",
        Command::new(bin)
            .args(["-d", "0", "-h"])
            .arg(format!("ldap://127.0.0.1:{port}/"))
            .arg("-f")
            .arg(dir.join(conf)),
    );
    wait_port("slapd", port);
    (guard, format!("127.0.0.1:{port}"))
}

#[tokio::test]
async fn ldap_starttls_against_slapd() {
    let Some(bin) = require("slapd", "slapd", "ldap_starttls_against_slapd") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    openssl_chain(dir, 47);
    let (_tls, addr) = slapd(&bin, dir, "tls.conf", true);
    // slapd without a certificate refuses StartTLS (protocolError, result code 2).
    let (_plain, plain) = slapd(&bin, dir, "plain.conf", false);
    let s = collect(
        dir,
        &(endpoint_line(&addr, "ldap", "localhost") + &endpoint_line(&plain, "ldap", "localhost")),
    )
    .await;
    assert_read(&s, dir, &addr, "localhost");
    assert_eq!(reason(&s, &plain).as_deref(), Some("starttls"));
    let msg = error_of(&s, &plain);
    assert!(msg.contains("LDAP result code 2,"), "{msg}");
}

// ---------------------------------------------------------------- vsftpd

fn vsftpd(bin: &Path, dir: &Path, conf: &str, tls: bool) -> (Kill, String) {
    let port = free_port();
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let mut text = format!(
        "listen=YES\nlisten_address=127.0.0.1\nlisten_port={port}\nbackground=NO\nanonymous_enable=NO\nlocal_enable=YES\nseccomp_sandbox=NO\nsecure_chroot_dir={}\nssl_enable={}\nrsa_cert_file={}\nrsa_private_key_file={}\n",
        empty.display(),
        if tls { "YES" } else { "NO" },
        dir.join("srv.crt").display(),
        dir.join("srv.key").display()
    );
    if !is_root() {
        text.push_str("run_as_launching_user=YES\n");
    }
    std::fs::write(dir.join(conf), text).unwrap();
    let guard = spawn_quiet("vsftpd", Command::new(bin).arg(dir.join(conf)));
    wait_port("vsftpd", port);
    (guard, format!("127.0.0.1:{port}"))
}

#[tokio::test]
async fn ftp_auth_tls_against_vsftpd() {
    let Some(bin) = require("vsftpd", "vsftpd", "ftp_auth_tls_against_vsftpd") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    openssl_chain(dir, 48);
    let (_tls, addr) = vsftpd(&bin, dir, "tls.conf", true);
    let (_plain, plain) = vsftpd(&bin, dir, "plain.conf", false);
    let s = collect(
        dir,
        &(endpoint_line(&addr, "ftp", "localhost") + &endpoint_line(&plain, "ftp", "localhost")),
    )
    .await;
    assert_read(&s, dir, &addr, "localhost");
    assert_eq!(reason(&s, &plain).as_deref(), Some("starttls"));
    let msg = error_of(&s, &plain);
    assert!(msg.contains("AUTH TLS answered 5"), "{msg}");
}

// ---------------------------------------------------------------- Prosody

#[tokio::test]
async fn xmpp_starttls_against_prosody() {
    let Some(bin) = require("prosody", "prosody", "xmpp_starttls_against_prosody") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    openssl_chain(dir, 49);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let port = free_port();
    let conf = dir.join("prosody.cfg.lua");
    std::fs::write(
        &conf,
        format!(
            "run_as_root = true\ndaemonize = false\npidfile = \"{d}/prosody.pid\"\ndata_path = \"{d}/data\"\ninterfaces = {{ \"127.0.0.1\" }}\nc2s_ports = {{ {port} }}\ns2s_ports = {{ }}\nc2s_direct_tls_ports = {{ }}\nhttp_ports = {{ }}\nhttps_ports = {{ }}\nlog = {{ error = \"*stderr\" }}\nmodules_enabled = {{ \"tls\" }}\nVirtualHost \"localhost\"\nssl = {{ certificate = \"{d}/srv.crt\", key = \"{d}/srv.key\" }}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let _server = spawn_quiet(
        "prosody",
        Command::new(bin).arg("--config").arg(&conf).arg("-F"),
    );
    wait_port("prosody", port);
    let addr = format!("127.0.0.1:{port}");
    // The stream is for the domain in server_name; 127.0.0.1 is not one it serves.
    let s = collect(
        dir,
        &(endpoint_line(&addr, "xmpp", "localhost")
            + &format!(
                "  - {{ address: \"{addr}\", starttls: xmpp, ca_file: ca.crt, timeout: 20s }}\n"
            )),
    )
    .await;
    assert_read(&s, dir, &addr, "localhost");
    let other = s
        .targets
        .iter()
        .filter_map(|t| t.error.clone())
        .collect::<Vec<_>>()
        .join("; ");
    assert!(other.contains("host-unknown"), "{other}");
}

// ---------------------------------------------------------------- direct TLS

/// Client-first protocols on a port that speaks TLS directly: OpenSSL closes
/// on their request without an alert; the answer is still "speaks TLS directly".
#[tokio::test]
async fn client_first_starttls_on_a_direct_tls_port_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    openssl_chain(dir, 30);
    let (_server, addr) = s_server(dir, &["-cert", "srv.crt", "-key", "srv.key"]);
    for proto in ["postgres", "ldap", "xmpp", "mysql", "ftp"] {
        let s = collect(dir, &endpoint_line(&addr, proto, "localhost")).await;
        assert_eq!(reason(&s, &addr).as_deref(), Some("starttls"), "{proto}");
        let msg = error_of(&s, &addr);
        assert!(
            msg.contains(&format!("did not answer as {proto}"))
                && msg.contains("speaks TLS directly"),
            "{proto}: {msg}"
        );
    }
}

// ---------------------------------------------------------------- Java keystores

fn keytool(bin: &Path, dir: &Path, args: &[&str]) {
    run_quiet(Command::new(bin).args(args).current_dir(dir));
}

/// JKS and JCEKS stores written by keytool: a key entry (from an openssl
/// PKCS#12) with its chain, and a trusted-certificate entry. Read without a
/// password (unchecked), with the right one (integrity checked), and with a
/// wrong one (an error, never the certificates).
#[tokio::test]
async fn jks_and_jceks_from_keytool() {
    let Some(bin) = require(
        "keytool",
        "default-jre-headless",
        "jks_and_jceks_from_keytool",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    openssl_chain(dir, 50);
    openssl(
        dir,
        &[
            "pkcs12",
            "-export",
            "-in",
            "srv.crt",
            "-inkey",
            "srv.key",
            "-certfile",
            "ca.crt",
            "-name",
            "server",
            "-out",
            "srv.p12",
            "-passout",
            "pass:storepass1",
        ],
    );
    for (store, kind) in [("store.jks", "JKS"), ("store.jceks", "JCEKS")] {
        keytool(
            &bin,
            dir,
            &[
                "-importkeystore",
                "-noprompt",
                "-srckeystore",
                "srv.p12",
                "-srcstoretype",
                "PKCS12",
                "-srcstorepass",
                "storepass1",
                "-destkeystore",
                store,
                "-deststoretype",
                kind,
                "-deststorepass",
                "storepass1",
                "-destkeypass",
                "storepass1",
            ],
        );
        keytool(
            &bin,
            dir,
            &[
                "-importcert",
                "-noprompt",
                "-alias",
                "zz-root",
                "-file",
                "ca.crt",
                "-keystore",
                store,
                "-storetype",
                kind,
                "-storepass",
                "storepass1",
            ],
        );
    }
    // keytool wrote the Java formats, not PKCS#12 (the default store type since Java 9).
    let magic = |f: &str| std::fs::read(dir.join(f)).unwrap()[..4].to_vec();
    assert_eq!(magic("store.jks"), [0xfe, 0xed, 0xfe, 0xed]);
    assert_eq!(magic("store.jceks"), [0xce, 0xce, 0xce, 0xce]);
    let na = openssl_not_after(dir, "srv.crt");
    let ca_na = openssl_not_after(dir, "ca.crt");
    std::fs::write(dir.join("right.pass"), "storepass1\n").unwrap();
    std::fs::write(dir.join("wrong.pass"), "not-it\n").unwrap();
    for pass in [None, Some("right.pass"), Some("wrong.pass")] {
        let mut yaml = "paths: [store.jks, store.jceks]\n".to_string();
        if let Some(p) = pass {
            yaml.push_str(&format!("pkcs12_passphrase_file: {p}\n"));
        }
        let m = CertificateMonitor::new(config(&yaml), dir.to_path_buf());
        let s = m
            .collect_complete(CollectContext {
                now: SystemTime::now(),
            })
            .await
            .unwrap();
        for store in ["store.jks", "store.jceks"] {
            let at = |i: &str| {
                s.value(
                    "certificate_not_after_timestamp_seconds",
                    &[("source", "file"), ("path", store), ("index", i)],
                )
            };
            if pass == Some("wrong.pass") {
                assert_eq!(
                    s.value("certificate_source_up", &[("path", store)]),
                    Some(0.0),
                    "{store}"
                );
                assert_eq!(at("0"), None, "{store}");
                let fam = s.family("certificate_source_error_info").unwrap();
                assert!(fam.samples.iter().any(|x| x.label("path") == Some(store)
                    && x.label("reason") == Some("wrong_passphrase")));
            } else {
                assert_eq!(
                    s.value("certificate_source_up", &[("path", store)]),
                    Some(1.0),
                    "{store} {pass:?}: {:?}",
                    s.targets
                );
                // The key entry's chain (leaf, CA) and the trusted entry (CA), in the
                // store's entry order (keytool's hash order, not insertion order).
                let mut got: Vec<f64> = ["0", "1", "2"].iter().filter_map(|i| at(i)).collect();
                got.sort_by(f64::total_cmp);
                let mut want = vec![na, ca_na, ca_na];
                want.sort_by(f64::total_cmp);
                assert_eq!(got, want, "{store}");
                assert_eq!(at("3"), None, "{store}");
            }
        }
    }
}
