//! `--web.config.file`: TLS and basic authentication in the Prometheus
//! exporter-toolkit format, re-read when the file changes.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # paths relative to this file's folder
//!   key_file: server.key
//!   min_version: TLS12             # TLS12 (default) or TLS13
//!   client_auth_type: RequireAndVerifyClientCert   # or NoClientCert, VerifyClientCertIfGiven
//!   client_ca_file: clients-ca.crt
//! http_server_config:
//!   headers: { X-Frame-Options: deny }
//! basic_auth_users:
//!   prometheus: $2y$10$...         # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use serde::Deserialize;

/// Why a web config cannot be used. Messages name files and keys, never secrets.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("cannot read web config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid web config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("web config file {path}: cannot load {what} {file}: {message}")]
    Tls {
        path: PathBuf,
        what: &'static str,
        file: PathBuf,
        message: String,
    },
}

impl WebConfigError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            WebConfigError::Read { .. } => "read",
            WebConfigError::Invalid { .. } => "invalid",
            WebConfigError::Tls { .. } => "tls",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: String,
    key_file: String,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// A loaded, validated web configuration.
pub struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    users: BTreeMap<String, String>,
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    /// Verified (user, sha256(password)) pairs, so bcrypt runs once per credential.
    verified: Mutex<HashMap<(String, [u8; 32]), bool>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A bcrypt hash of a random password: checked for unknown users so that the
/// time taken does not tell whether a user exists.
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DSmegJpCn8Ag7OFY.XwaG";

impl WebConfig {
    /// Plain HTTP, no authentication.
    pub fn open() -> Self {
        WebConfig {
            tls: None,
            users: BTreeMap::new(),
            headers: Vec::new(),
            verified: Mutex::new(HashMap::new()),
        }
    }

    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Check an `Authorization` header value.
    pub fn authorize(&self, header: Option<&str>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let Some((user, pass)) = header.and_then(parse_basic) else {
            return false;
        };
        let digest = sha256(pass.as_bytes());
        let key = (user.clone(), digest);
        if let Some(ok) = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return *ok;
        }
        let ok = match self.users.get(&user) {
            Some(hash) => bcrypt::verify(&pass, hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(&pass, DUMMY_HASH);
                false
            }
        };
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 1024 {
            cache.clear();
        }
        cache.insert(key, ok);
        ok
    }

    /// Load and validate `path`.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| WebConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawWebConfig = if text.trim().is_empty() {
            RawWebConfig::default()
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| {
                let loc = e
                    .location()
                    .map(|l| format!("line {}: ", l.line()))
                    .unwrap_or_default();
                let msg = e.to_string();
                let msg = msg
                    .rsplit_once(" at line ")
                    .map(|(m, _)| m.to_string())
                    .unwrap_or(msg);
                // Reload errors are logged: never repeat values from the file.
                invalid(format!("{loc}{}", crate::config::redact_quoted(&msg)))
            })?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        for (user, hash) in &raw.basic_auth_users {
            if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")) {
                return Err(invalid(format!(
                    "basic_auth_users.{user} is not a bcrypt hash; create one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                )));
            }
        }
        let mut headers = Vec::new();
        if let Some(h) = &raw.http_server_config {
            for (k, v) in &h.headers {
                let name = hyper::header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                    invalid(format!(
                        "http_server_config.headers: invalid header name {k:?}"
                    ))
                })?;
                let value = hyper::header::HeaderValue::from_str(v).map_err(|_| {
                    invalid(format!(
                        "http_server_config.headers.{k}: invalid header value"
                    ))
                })?;
                headers.push((name, value));
            }
        }
        let tls = match raw.tls_server_config {
            Some(t) => Some(Arc::new(tls_config(path, base, &t)?)),
            None => None,
        };
        Ok(WebConfig {
            tls,
            users: raw.basic_auth_users,
            headers,
            verified: Mutex::new(HashMap::new()),
        })
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn parse_basic(header: &str) -> Option<(String, String)> {
    use base64::Engine;
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn tls_config(
    path: &Path,
    base: &Path,
    t: &RawTls,
) -> Result<rustls::ServerConfig, WebConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls_err = |what: &'static str, file: &Path, message: String| WebConfigError::Tls {
        path: path.to_path_buf(),
        what,
        file: file.to_path_buf(),
        message,
    };
    let invalid = |message: String| WebConfigError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let cert_path = base.join(&t.cert_file);
    let key_path = base.join(&t.key_file);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| tls_err("cert_file", &cert_path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err("cert_file", &cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_err(
            "cert_file",
            &cert_path,
            "no certificate found".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|_| {
        tls_err(
            "key_file",
            &key_path,
            "no readable private key (PEM)".into(),
        )
    })?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match (t.min_version.as_deref(), t.max_version.as_deref()) {
        (None | Some("TLS12"), None | Some("TLS13")) => vec![&rustls::version::TLS12, &rustls::version::TLS13],
        (Some("TLS13"), None | Some("TLS13")) => vec![&rustls::version::TLS13],
        (None | Some("TLS12"), Some("TLS12")) => vec![&rustls::version::TLS12],
        (Some(v @ ("TLS10" | "TLS11")), _) | (_, Some(v @ ("TLS10" | "TLS11"))) => {
            return Err(invalid(format!("tls_server_config: {v} is not supported (insecure); use TLS12 or TLS13")))
        }
        (min, max) => {
            return Err(invalid(format!(
                "tls_server_config: invalid min_version/max_version {min:?}/{max:?}; use TLS12 or TLS13"
            )))
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| invalid(format!("tls_server_config: {e}")))?;
    let auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match auth {
        "NoClientCert" => builder.with_no_client_auth(),
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let ca = t.client_ca_file.as_deref().ok_or_else(|| {
                invalid(format!("tls_server_config: client_auth_type {auth} needs client_ca_file"))
            })?;
            let ca_path = base.join(ca);
            let mut roots = rustls::RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(&ca_path)
                .map_err(|e| tls_err("client_ca_file", &ca_path, e.to_string()))?;
            for c in cas {
                let c = c.map_err(|e| tls_err("client_ca_file", &ca_path, e.to_string()))?;
                roots
                    .add(c)
                    .map_err(|e| tls_err("client_ca_file", &ca_path, e.to_string()))?;
            }
            let mut vb = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if auth == "VerifyClientCertIfGiven" {
                vb = vb.allow_unauthenticated();
            }
            let verifier = vb
                .build()
                .map_err(|e| tls_err("client_ca_file", &ca_path, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        other => {
            return Err(invalid(format!(
                "tls_server_config.client_auth_type {other:?} is not supported; use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            )))
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| tls_err("key_file", &key_path, e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The current web config, re-read when its file changes (checked at most once a second).
pub struct WebConfigWatcher {
    path: Option<PathBuf>,
    state: RwLock<(Arc<WebConfig>, Option<SystemTime>, std::time::Instant)>,
}

impl WebConfigWatcher {
    /// Without a path: plain HTTP, no authentication, forever.
    pub fn new(path: Option<PathBuf>) -> Result<Self, WebConfigError> {
        let (cfg, mtime) = match &path {
            Some(p) => (WebConfig::load(p)?, mtime(p)),
            None => (WebConfig::open(), None),
        };
        Ok(WebConfigWatcher {
            path,
            state: RwLock::new((Arc::new(cfg), mtime, std::time::Instant::now())),
        })
    }

    /// The config to use for a new connection.
    pub fn current(&self) -> Arc<WebConfig> {
        let Some(path) = &self.path else {
            return self
                .state
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .0
                .clone();
        };
        {
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            if st.2.elapsed() < std::time::Duration::from_secs(1) {
                return st.0.clone();
            }
        }
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        st.2 = std::time::Instant::now();
        let now_mtime = mtime(path);
        if now_mtime != st.1 {
            match WebConfig::load(path) {
                Ok(cfg) => {
                    tracing::info!(file = %path.display(), "web config reloaded");
                    st.0 = Arc::new(cfg);
                    st.1 = now_mtime;
                }
                Err(e) => {
                    // Keep serving with the last good config.
                    tracing::error!(error = %e, "web config not reloaded; keeping the previous one");
                    st.1 = now_mtime;
                }
            }
        }
        st.0.clone()
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn basic_auth_with_bcrypt() {
        let d = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let p = write(
            d.path(),
            "web.yml",
            &format!("basic_auth_users:\n  prom: '{hash}'\n"),
        );
        let cfg = WebConfig::load(&p).unwrap();
        use base64::Engine;
        let enc = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(cfg.authorize(Some(&enc("prom:s3cret"))));
        assert!(cfg.authorize(Some(&enc("prom:s3cret"))), "cached path");
        assert!(!cfg.authorize(Some(&enc("prom:wrong"))));
        assert!(!cfg.authorize(Some(&enc("nobody:s3cret"))));
        assert!(!cfg.authorize(Some("Bearer x")));
        assert!(!cfg.authorize(None));
        assert!(WebConfig::open().authorize(None));
    }

    #[test]
    fn bad_configs_are_rejected_clearly() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "a.yml",
            "basic_auth_users:\n  prom: plaintext-CANARY\n",
        );
        let e = WebConfig::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("not a bcrypt hash") && !e.contains("CANARY"),
            "{e}"
        );
        let p = write(
            d.path(),
            "b.yml",
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
        );
        let e = WebConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("cert_file") && e.contains("nope.crt"), "{e}");
        let p = write(d.path(), "d.yml", "tls_server_config: \"CANARY-string\"\n");
        let e = WebConfig::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("basic_auth_users") || e.contains("invalid type"),
            "{e}"
        );
        assert!(!e.contains("CANARY"), "{e}");
        let p = write(d.path(), "c.yml", "tls_server_confg: {}\n");
        let e = WebConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
    }
}
