//! Real tools the tests drive, shared so that no test file carries its own
//! copy: child processes killed on drop, `openssl` (certificates, `s_server`),
//! a generated PKI for TLS tests, and a real Prometheus with its HTTP API.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::{free_port, get, http, run_ok, tool, wait_for};

/// A child process killed (and reaped) on drop.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `cmd` (`what` names it) with no input and its output discarded;
/// killed on drop.
pub fn spawn_quiet(what: &str, cmd: &mut Command) -> Kill {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    Kill(child)
}

/// Run `openssl args` in `dir`; panics with its stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) {
    run_ok(
        &format!("openssl {args:?}"),
        Command::new(tool("openssl", "openssl"))
            .args(args)
            .current_dir(dir),
    );
}

/// A self-signed P-256 certificate made by openssl in `dir`: the certificate
/// in `cert`, its key in `key`, subject `CN=cn`, valid `days` from now.
pub fn openssl_cert(dir: &Path, key: &str, cert: &str, cn: &str, days: u32) {
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
            key,
            "-out",
            cert,
            "-days",
            &days.to_string(),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
}

/// `openssl s_server -accept 127.0.0.1:<free port> <args> -quiet` in `dir`,
/// once it accepts connections; killed on drop. Returns it and its address.
pub fn s_server(dir: &Path, args: &[&str]) -> (Kill, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let guard = spawn_quiet(
        "openssl s_server",
        Command::new(tool("openssl", "openssl"))
            .args(["s_server", "-accept", &addr])
            .args(args)
            .arg("-quiet")
            .current_dir(dir),
    );
    wait_for("openssl s_server", 30, || TcpStream::connect(&addr).ok());
    (guard, addr)
}

/// A CA, a server certificate for `localhost` and 127.0.0.1, and a client
/// certificate (CN `prometheus`), all PEM.
pub struct Pki {
    pub ca_pem: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

pub fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut sp = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    sp.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let server = sp.signed_by(&server_key, &issuer).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut cp = CertificateParams::new(vec!["prometheus".to_string()]).unwrap();
    cp.distinguished_name.push(DnType::CommonName, "prometheus");
    let client = cp.signed_by(&client_key, &issuer).unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    }
}

/// A real Prometheus with `config` (relative paths from `work`), its data in
/// `work/data`, on a free loopback port, once `/-/ready` answers 200.
pub fn prometheus(work: &Path, config: &Path) -> (Kill, u16) {
    let port = free_port();
    let guard = spawn_quiet(
        "prometheus",
        Command::new(tool("prometheus", "prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(work),
    );
    wait_for("prometheus ready", 90, || {
        http(port, "GET", "/-/ready", "")
            .ok()
            .filter(|r| r.status == 200)
    });
    (guard, port)
}

/// A GET of Prometheus' HTTP API, as JSON (answered 200).
pub fn prom_api(port: u16, path: &str) -> serde_json::Value {
    let r = get(port, path);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    // Prometheus may answer chunked; take the JSON object inside.
    let start = r.body.find('{').unwrap_or(0);
    let end = r.body.rfind('}').map(|i| i + 1).unwrap_or(r.body.len());
    serde_json::from_str(&r.body[start..end]).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body))
}

/// An instant query (`/api/v1/query`), the whole answer.
pub fn prom_query(port: u16, expr: &str) -> serde_json::Value {
    let enc: String = expr
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    prom_api(port, &format!("/api/v1/query?query={enc}"))
}
