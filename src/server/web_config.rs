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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

/// Why a web config cannot be used. Messages name files and keys, never secrets.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The OS error is in the message only, so a rendered chain prints it once.
    #[error("cannot read web config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
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
    /// Checked for unknown users: a hash of the highest cost among the users,
    /// so that an unknown user costs as much as a configured one.
    dummy_hash: String,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Salt of the dummy hash checked for unknown users (any fixed salt will do:
/// only its cost matters).
const DUMMY_SALT: [u8; 16] = *b"homelab-monitor!";

/// A hash of cost `cost` for a password nobody knows.
fn dummy_hash(cost: u32) -> String {
    bcrypt::hash_with_salt("\u{0}not a password\u{0}", cost, DUMMY_SALT)
        .map(|h| h.format_for_version(bcrypt::Version::TwoY))
        .unwrap_or_default()
}

impl WebConfig {
    /// Plain HTTP, no authentication.
    pub fn open() -> Self {
        WebConfig {
            tls: None,
            users: BTreeMap::new(),
            headers: Vec::new(),
            verified: Mutex::new(HashMap::new()),
            dummy_hash: String::new(),
        }
    }

    /// True when this configuration serves TLS.
    pub fn has_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The bcrypt cost checked for an unknown user (the highest cost among the users).
    pub fn unknown_user_cost(&self) -> Option<u32> {
        self.dummy_hash
            .parse::<bcrypt::HashParts>()
            .ok()
            .map(|h| h.get_cost())
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
                let _ = bcrypt::verify(&pass, &self.dummy_hash);
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
        let text =
            crate::core::safe_open::read_to_string(path).map_err(|error| WebConfigError::Read {
                path: path.to_path_buf(),
                error,
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
                invalid(format!("{loc}{}", crate::core::config::redact_quoted(&msg)))
            })?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let mut max_cost = None;
        for (user, hash) in &raw.basic_auth_users {
            // A malformed hash would lock the user out for ever (and tell by timing
            // that the user exists): refuse it at load.
            let parts =
                (hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$"))
                    .then(|| hash.parse::<bcrypt::HashParts>().ok())
                    .flatten()
                    .filter(|p| (4..=31).contains(&p.get_cost()));
            let Some(parts) = parts else {
                return Err(invalid(format!(
                    "basic_auth_users.{user} is not a bcrypt hash (expected $2y$, a two-digit cost, $ and 53 characters of salt and hash); create one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                )));
            };
            max_cost = max_cost.max(Some(parts.get_cost()));
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
            dummy_hash: max_cost.map(dummy_hash).unwrap_or_default(),
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
    let cert_pem = crate::core::safe_open::read(&cert_path)
        .map_err(|e| tls_err("cert_file", &cert_path, e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err("cert_file", &cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_err(
            "cert_file",
            &cert_path,
            "no certificate found".into(),
        ));
    }
    let mut key_pem = crate::core::safe_open::read(&key_path)
        .map_err(|e| tls_err("key_file", &key_path, e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem);
    // Do not leave the key's PEM in freed memory.
    key_pem.fill(0);
    let key = key.map_err(|_| {
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
            let ca_pem = crate::core::safe_open::read(&ca_path)
                .map_err(|e| tls_err("client_ca_file", &ca_path, e.to_string()))?;
            for c in CertificateDer::pem_slice_iter(&ca_pem) {
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

/// How often the reloader looks at the web config file.
pub const RELOAD_PERIOD: Duration = Duration::from_secs(1);
/// How long one look (stat + read) may take before the reloader gives up on
/// it for now (a stalled filesystem); the server keeps the current config.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// What one look at the file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// No file configured, or the file did not change.
    Unchanged,
    /// The new file is in force.
    Reloaded,
    /// The new file is broken (unreadable, invalid, not a regular file): the previous one stays.
    Failed,
    /// The new file would turn TLS or authentication off: the previous one stays.
    Refused,
}

/// (mtime, size, inode, ctime) of the file, to notice changes.
type FileStamp = (Option<SystemTime>, u64, u64, i64, i64);

fn stamp(p: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| {
        (
            m.modified().ok(),
            m.len(),
            m.ino(),
            m.ctime(),
            m.ctime_nsec(),
        )
    })
}

/// The current web config. [`WebConfigWatcher::current`] never touches the
/// file system: a background task ([`WebConfigWatcher::run`]) re-reads the
/// file when it changes, off the request path, under a timeout, and swaps the
/// new configuration in. A reload never weakens security: a file that would
/// turn TLS or basic authentication off is refused (restart the exporter to
/// really turn them off).
pub struct WebConfigWatcher {
    path: Option<PathBuf>,
    current: RwLock<Arc<WebConfig>>,
    /// The stamp of the file behind `current` (or of the last refused version).
    seen: Mutex<Option<FileStamp>>,
    /// A look at the file is in flight (maybe stuck on a stalled filesystem).
    busy: AtomicBool,
    last_ok: AtomicBool,
}

impl WebConfigWatcher {
    /// Without a path: plain HTTP, no authentication, forever.
    pub fn new(path: Option<PathBuf>) -> Result<Self, WebConfigError> {
        let (cfg, seen) = match &path {
            Some(p) => {
                let seen = stamp(p);
                (WebConfig::load(p)?, seen)
            }
            None => (WebConfig::open(), None),
        };
        Ok(WebConfigWatcher {
            path,
            current: RwLock::new(Arc::new(cfg)),
            seen: Mutex::new(seen),
            busy: AtomicBool::new(false),
            last_ok: AtomicBool::new(true),
        })
    }

    /// The config to use for a new connection or request (no I/O, no waiting on a reload).
    pub fn current(&self) -> Arc<WebConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// False after a reload that failed or was refused, until one succeeds.
    pub fn last_reload_ok(&self) -> bool {
        self.last_ok.load(Ordering::Relaxed)
    }

    /// Look at the file once and reload it if it changed (blocking: stat and
    /// read; the lock is only taken to swap the result in).
    pub fn check_now(&self) -> Reload {
        let Some(path) = &self.path else {
            return Reload::Unchanged;
        };
        let now = stamp(path);
        if now == *self.seen.lock().unwrap_or_else(|e| e.into_inner()) {
            return Reload::Unchanged;
        }
        let outcome = match WebConfig::load(path) {
            Ok(cfg) => {
                let cur = self.current();
                let drops_tls = cur.has_tls() && !cfg.has_tls();
                let drops_auth = cur.requires_auth() && !cfg.requires_auth();
                if drops_tls || drops_auth {
                    let what = match (drops_tls, drops_auth) {
                        (true, true) => "TLS and basic authentication",
                        (true, false) => "TLS",
                        _ => "basic authentication",
                    };
                    tracing::error!(
                        file = %path.display(),
                        "web config not reloaded: the file now turns {what} off (empty, comments only, or the section removed); keeping the previous configuration. If this is intended, restart the exporter"
                    );
                    Reload::Refused
                } else {
                    *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
                    tracing::info!(file = %path.display(), "web config reloaded");
                    Reload::Reloaded
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "web config not reloaded; keeping the previous one");
                Reload::Failed
            }
        };
        self.last_ok
            .store(outcome == Reload::Reloaded, Ordering::Relaxed);
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = now;
        outcome
    }

    /// Re-read the file when it changes, every [`RELOAD_PERIOD`], each look on
    /// a blocking thread under [`RELOAD_TIMEOUT`]; runs until dropped (abort the task).
    pub async fn run(self: Arc<Self>) {
        if self.path.is_none() {
            return;
        }
        let mut stuck_reported = false;
        loop {
            tokio::time::sleep(RELOAD_PERIOD).await;
            if self.busy.swap(true, Ordering::AcqRel) {
                // The previous look is still blocked: do not pile up threads behind it.
                if !stuck_reported {
                    tracing::error!(
                        file = %self.path.as_deref().unwrap_or(Path::new("")).display(),
                        "the web config file could not be read within {RELOAD_TIMEOUT:?} (stalled filesystem?); keeping the current configuration"
                    );
                    stuck_reported = true;
                }
                continue;
            }
            stuck_reported = false;
            let me = self.clone();
            let look = tokio::task::spawn_blocking(move || {
                let r = me.check_now();
                me.busy.store(false, Ordering::Release);
                r
            });
            if tokio::time::timeout(RELOAD_TIMEOUT, look).await.is_err() {
                self.last_ok.store(false, Ordering::Relaxed);
                tracing::error!(
                    file = %self.path.as_deref().unwrap_or(Path::new("")).display(),
                    "the web config file could not be read within {RELOAD_TIMEOUT:?} (stalled filesystem?); keeping the current configuration"
                );
                stuck_reported = true;
            }
        }
    }
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

    #[test]
    fn malformed_bcrypt_hashes_are_refused_and_unknown_users_cost_the_most() {
        let d = tempfile::tempdir().unwrap();
        for bad in [
            "$2y$10$tooshort",
            "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DSmegJpCn8Ag7OFY.Xw",
            "$2y$xx$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DSmegJpCn8Ag7OFY.XwaG",
            "$2y$99$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DSmegJpCn8Ag7OFY.XwaG",
        ] {
            let p = write(
                d.path(),
                "m.yml",
                &format!("basic_auth_users:\n  prom: '{bad}'\n"),
            );
            let e = WebConfig::load(&p).unwrap_err().to_string();
            assert!(
                e.contains("basic_auth_users.prom is not a bcrypt hash"),
                "{bad}: {e}"
            );
        }
        let h5 = bcrypt::hash("a", 5).unwrap();
        let h6 = bcrypt::hash("b", 6).unwrap();
        let p = write(
            d.path(),
            "ok.yml",
            &format!("basic_auth_users:\n  a: '{h5}'\n  b: '{h6}'\n"),
        );
        let cfg = WebConfig::load(&p).unwrap();
        assert_eq!(cfg.unknown_user_cost(), Some(6));
        assert!(!cfg.authorize(Some("Basic bm9ib2R5OmE=")), "nobody:a");
    }

    #[test]
    fn a_reload_never_turns_auth_off_and_never_blocks_on_a_fifo() {
        let d = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("pw", 4).unwrap();
        let full = format!("basic_auth_users:\n  prom: '{hash}'\n");
        let p = write(d.path(), "web.yml", &full);
        let w = WebConfigWatcher::new(Some(p.clone())).unwrap();
        assert!(w.current().requires_auth());
        for weaker in ["", "# all commented out\n", "basic_auth_users:\n"] {
            std::fs::write(&p, weaker).unwrap();
            assert_eq!(w.check_now(), Reload::Refused, "{weaker:?}");
            assert!(w.current().requires_auth(), "{weaker:?}");
            assert!(!w.last_reload_ok());
        }
        std::fs::write(&p, &full).unwrap();
        assert_eq!(w.check_now(), Reload::Reloaded);
        assert!(w.last_reload_ok());
        // A FIFO in place of the file: refused at once, the config stays.
        std::fs::remove_file(&p).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &p,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert_eq!(w.check_now(), Reload::Failed);
        assert!(w.current().requires_auth());
    }
}
