//! HTTP for remote state: one async client on `reqwest` (rustls, ring), with
//! timeouts, retries (backoff + jitter, inside a deadline), a streamed size cap
//! and bounded error reasons. Messages name the source label, never a URL
//! (presigned URLs carry signatures) or a header value.

use std::path::Path;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::env::Env;
use super::tls::{client_config, web_roots, Verify};
use super::RemoteError;
/// Limits of one collection.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub deadline: Instant,
    pub request_timeout: Duration,
    pub retries: u32,
    pub max_size: u64,
}

impl Budget {
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// A response that was read completely (within the cap).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub content_type: Option<String>,
}

/// The certificates of a PEM text (at least one); `what` names it in errors.
fn pem_certificates(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{what} is not valid PEM"))?;
    if certs.is_empty() {
        return Err(format!("{what} holds no certificate"));
    }
    Ok(certs)
}

/// TLS settings of one backend entry (PEM bytes, read by the caller from a
/// file or a working directory's record; `what` names them in messages).
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// CA certificates trusted instead of the bundled web roots.
    pub ca_pem: Option<(String, Vec<u8>)>,
    /// A client certificate chain and its private key (mutual TLS).
    pub client: Option<(String, Vec<u8>, Vec<u8>)>,
    /// Terraform's `skip_cert_verification`: accept any server certificate.
    pub skip_verify: bool,
    /// `SSL_CERT_FILE` of the environment: replaces the bundled web roots
    /// when there is no `ca_pem` (see [`TlsSettings::with_env`]).
    pub ssl_cert_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("ca", &self.ca_pem.as_ref().map(|(w, _)| w))
            .field("client", &self.client.as_ref().map(|(w, _, _)| w))
            .field("skip_verify", &self.skip_verify)
            .field("ssl_cert_file", &self.ssl_cert_file)
            .finish()
    }
}

impl TlsSettings {
    /// Take `SSL_CERT_FILE` from `env`.
    pub fn with_env(mut self, env: &Env) -> Self {
        self.ssl_cert_file = env.get("SSL_CERT_FILE").map(std::path::PathBuf::from);
        self
    }

    /// Trust the CA certificates of a PEM file.
    pub fn with_ca_file(mut self, path: &Path) -> Result<Self, String> {
        let pem = crate::core::safe_open::read(path)
            .map_err(|e| format!("cannot read ca_file {}: {}", path.display(), e.kind()))?;
        self.ca_pem = Some((format!("ca_file {}", path.display()), pem));
        Ok(self)
    }

    /// A client certificate and key from PEM files.
    pub fn with_client_files(mut self, cert: &Path, key: &Path) -> Result<Self, String> {
        let c = crate::core::safe_open::read(cert)
            .map_err(|e| format!("cannot read client_cert {}: {}", cert.display(), e.kind()))?;
        let k = crate::core::safe_open::read(key)
            .map_err(|e| format!("cannot read client_key {}: {}", key.display(), e.kind()))?;
        self.client = Some((
            format!(
                "client_cert {} / client_key {}",
                cert.display(),
                key.display()
            ),
            c,
            k,
        ));
        Ok(self)
    }

    /// The rustls configuration of these settings. Without a CA of its own,
    /// SSL_CERT_FILE (taken from the environment by [`TlsSettings::with_env`])
    /// replaces the bundled web roots, as it does for Terraform (Go), curl and
    /// OpenSSL: a private CA that terraform trusts this way is trusted here too.
    fn rustls(&self) -> Result<rustls::ClientConfig, String> {
        let from_env;
        let ca_pem = match &self.ca_pem {
            Some(ca) => Some(ca),
            None => match &self.ssl_cert_file {
                Some(path) => {
                    let pem = crate::core::safe_open::read(path).map_err(|e| {
                        format!("cannot read SSL_CERT_FILE {}: {}", path.display(), e.kind())
                    })?;
                    from_env = (format!("SSL_CERT_FILE {}", path.display()), pem);
                    Some(&from_env)
                }
                None => None,
            },
        };
        let verify = if self.skip_verify {
            Verify::AnyChain
        } else {
            match ca_pem {
                Some((what, pem)) => {
                    let mut store = rustls::RootCertStore::empty();
                    let (_, bad) = store.add_parsable_certificates(pem_certificates(what, pem)?);
                    if store.is_empty() {
                        return Err(format!(
                            "{what} holds no usable CA certificate ({bad} rejected)"
                        ));
                    }
                    Verify::Full(store)
                }
                None => Verify::Full(web_roots()),
            }
        };
        let client = match &self.client {
            Some((what, cert_pem, key_pem)) => {
                let chain = pem_certificates(what, cert_pem)?;
                // The key's text never goes into a message.
                let key = PrivateKeyDer::from_pem_slice(key_pem)
                    .map_err(|_| format!("{what}: no PEM private key could be read"))?;
                Some((chain, key))
            }
            None => None,
        };
        client_config(verify, client).map_err(|e| e.to_string())
    }
}

/// An async HTTP client for one backend entry (cheap to clone: the
/// connection pool is shared).
#[derive(Clone)]
pub struct HttpClient {
    http: reqwest::Client,
}

impl HttpClient {
    /// `ca_file`: PEM roots trusted instead of the bundled web roots (else
    /// `SSL_CERT_FILE` of `env`, else the web roots).
    pub fn new(
        request_timeout: Duration,
        ca_file: Option<&Path>,
        env: &Env,
    ) -> Result<Self, String> {
        let tls = TlsSettings::default().with_env(env);
        let tls = match ca_file {
            Some(path) => tls.with_ca_file(path)?,
            None => tls,
        };
        Self::with_tls(request_timeout, &tls, 3)
    }

    /// A client with CA roots, a client certificate or no verification at all.
    pub fn with_tls(
        request_timeout: Duration,
        settings: &TlsSettings,
        max_redirects: u32,
    ) -> Result<Self, String> {
        let http = crate::net::http::client_builder(settings.rustls()?, max_redirects)
            .timeout(request_timeout)
            .build()
            .map_err(|e| format!("the HTTP client cannot be built: {e}"))?;
        Ok(HttpClient { http })
    }

    /// GET with headers; retried on transient failures while the budget allows.
    /// Statuses are returned as they are (the caller maps them); 429 and 5xx
    /// are retried first, honouring `Retry-After` / `X-RateLimit-Reset`.
    pub async fn get(
        &self,
        label: &str,
        url: &str,
        headers: &[(&str, &str)],
        budget: &Budget,
    ) -> Result<Response, RemoteError> {
        self.request(label, Method::Get, url, headers, budget).await
    }

    /// Any request, retried like [`HttpClient::get`].
    pub async fn request(
        &self,
        label: &str,
        method: Method<'_>,
        url: &str,
        headers: &[(&str, &str)],
        budget: &Budget,
    ) -> Result<Response, RemoteError> {
        let mut attempt = 0u32;
        loop {
            let res = self.once(label, method, url, headers, budget).await;
            let wait = match &res {
                Ok(r) if r.response.status == 429 || r.response.status >= 500 => {
                    Some(r.retry_after.unwrap_or_else(|| backoff(attempt)))
                }
                Ok(_) => None,
                Err(e) if e.retryable => Some(backoff(attempt)),
                Err(_) => None,
            };
            match wait {
                Some(w)
                    if attempt < budget.retries
                        && w + Duration::from_millis(50) < budget.remaining() =>
                {
                    tracing::debug!(source = %label, attempt, wait_ms = w.as_millis() as u64, "retrying a remote state request");
                    tokio::time::sleep(w).await;
                    attempt += 1;
                }
                _ => return res.map(|r| r.response),
            }
        }
    }

    async fn once(
        &self,
        label: &str,
        method: Method<'_>,
        url: &str,
        headers: &[(&str, &str)],
        budget: &Budget,
    ) -> Result<Attempt, RemoteError> {
        let remaining = budget.remaining();
        if remaining.is_zero() {
            return Err(RemoteError::new(
                label,
                "timeout",
                "no time left inside the monitor's timeout",
            ));
        }
        let timeout = budget.request_timeout.min(remaining);
        let mut req = match method {
            Method::Get => self.http.get(url),
            Method::Put(b) => self.http.put(url).body(b.to_vec()),
            Method::Post(b) => self.http.post(url).body(b.to_vec()),
        };
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut resp = req
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| classify(label, &e))?;
        let status = resp.status().as_u16();
        let h = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = h("etag");
        let last_modified = h("last-modified");
        let content_type = h("content-type");
        let retry_after = h("retry-after")
            .or_else(|| h("x-ratelimit-reset"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(60.0)));
        let mut body = Vec::new();
        if status == 200 {
            if let Some(len) = resp.content_length() {
                if len > budget.max_size {
                    return Err(too_large(label, len, budget.max_size));
                }
            }
            // Streamed: a body over the cap is never held whole.
            while let Some(chunk) = resp.chunk().await.map_err(|e| classify(label, &e))? {
                if (body.len() + chunk.len()) as u64 > budget.max_size {
                    return Err(too_large(
                        label,
                        (body.len() + chunk.len()) as u64,
                        budget.max_size,
                    ));
                }
                body.extend_from_slice(&chunk);
            }
        } else {
            // Error bodies are small and only used for classification; never logged.
            while let Ok(Some(chunk)) = resp.chunk().await {
                let room = (64 * 1024usize).saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if room <= chunk.len() {
                    break;
                }
            }
        }
        Ok(Attempt {
            response: Response {
                status,
                body,
                etag,
                last_modified,
                content_type,
            },
            retry_after,
        })
    }
}

/// Method of a request, with its body.
#[derive(Debug, Clone, Copy)]
pub enum Method<'a> {
    Get,
    Put(&'a [u8]),
    Post(&'a [u8]),
}

struct Attempt {
    response: Response,
    retry_after: Option<Duration>,
}

fn too_large(label: &str, size: u64, limit: u64) -> RemoteError {
    RemoteError::new(
        label,
        "too_large",
        format!("response of {size}+ bytes is over the {limit}-byte limit (raise max_file_size if it is genuine)"),
    )
}

/// Exponential backoff with jitter: 200ms, 400ms, 800ms ... (+0-50%), at most 5s.
pub fn backoff(attempt: u32) -> Duration {
    let base = 200u64.saturating_mul(1u64 << attempt.min(5)).min(5_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    Duration::from_millis(base + (nanos % (base / 2 + 1)))
}

fn io_error(label: &str, e: &std::io::Error) -> RemoteError {
    let timeout = matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    );
    let refused = matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::NotConnected
    );
    // getaddrinfo failures surface as plain io errors.
    let text = e.to_string();
    let dns = text.contains("lookup address")
        || text.contains("Name or service not known")
        || text.contains("No address associated")
        || text.contains("Temporary failure in name resolution");
    // rustls errors reach us wrapped in io errors.
    if let Some(t) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return RemoteError::new(label, "tls", format!("TLS error: {t}"));
    }
    let mut err = RemoteError::new(
        label,
        if dns {
            "dns"
        } else if timeout {
            "timeout"
        } else if refused {
            "unreachable"
        } else {
            "io"
        },
        if dns {
            "host name not found (DNS)".to_string()
        } else {
            format!("connection failed: {}", e.kind())
        },
    );
    err.retryable = true;
    err
}

/// Map a client error to a bounded reason. The message never quotes the URL.
pub fn classify(label: &str, e: &reqwest::Error) -> RemoteError {
    if e.is_timeout() {
        let mut err = RemoteError::new(label, "timeout", "timed out");
        err.retryable = true;
        return err;
    }
    // The cause: a TLS alert or certificate error, or the socket's own error.
    let causes = crate::net::http::causes(e as &(dyn std::error::Error + 'static));
    if let Some(t) = causes
        .iter()
        .find_map(|c| c.downcast_ref::<rustls::Error>())
    {
        return RemoteError::new(label, "tls", format!("TLS error: {t}"));
    }
    if let Some(io) = causes
        .iter()
        .find_map(|c| c.downcast_ref::<std::io::Error>())
    {
        return io_error(label, io);
    }
    // A new HTTPS connection that the server closed right after the
    // handshake, before the request went out: hyper reports only "canceled"
    // and drops the cause. With TLS 1.3 the client's handshake ends before
    // the server has checked the client certificate, so this is how a
    // missing or untrusted client certificate shows (the server's alert
    // arrives on a connection nobody reads any more). Not a clean answer of
    // the server either way, so it is reported as TLS, saying so.
    let canceled = causes.iter().any(|c| {
        c.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
    });
    if canceled && e.url().is_some_and(|u| u.scheme() == "https") {
        let mut err = RemoteError::new(
            label,
            "tls",
            "the server closed the connection right after the TLS handshake, before the \
             request was sent; a missing or untrusted client certificate is the usual cause \
             (check client_cert/client_key and the CA the server trusts)",
        );
        err.retryable = true;
        return err;
    }
    let (reason, message, retryable): (&'static str, String, bool) = if e.is_redirect() {
        ("redirect", "too many or failed redirects".into(), false)
    } else if e.is_builder() {
        ("bad_url", "invalid URL or header".into(), false)
    } else if e.is_connect() {
        let text = format!("{e:?}");
        if text.contains("dns error") || text.contains("lookup address") {
            ("dns", "host name not found (DNS)".into(), true)
        } else {
            ("unreachable", "cannot connect".into(), true)
        }
    } else if let Some(s) = e.status() {
        let c = s.as_u16();
        (status_reason(c), format!("HTTP {c}"), c >= 500)
    } else {
        ("protocol", "HTTP protocol error".into(), true)
    };
    let mut err = RemoteError::new(label, reason, message);
    err.retryable = retryable;
    err
}

/// Bounded reason label of an HTTP status.
pub fn status_reason(code: u16) -> &'static str {
    match code {
        401 => "http_401",
        403 => "http_403",
        404 => "not_found",
        429 => "http_429",
        400..=499 => "http_4xx",
        500..=599 => "http_5xx",
        _ => "http_status",
    }
}

/// Error of an unexpected status.
pub fn status_error(label: &str, status: u16) -> RemoteError {
    let hint = match status {
        401 => ": wrong or missing credentials",
        403 => ": the credentials lack read access",
        404 => ": no such state or wrong address",
        429 => ": rate limited",
        _ => "",
    };
    RemoteError::new(label, status_reason(status), format!("HTTP {status}{hint}"))
}

/// Read a secret: the first line of a file, or the variable `var` of `env`.
pub fn read_secret(
    base: &Path,
    file: Option<&str>,
    var: Option<&str>,
    env: &Env,
) -> Result<Option<String>, String> {
    if let Some(f) = file {
        let p = base.join(f);
        let text = crate::core::safe_open::read_to_string(&p)
            .map_err(|e| format!("cannot read secret file {}: {}", p.display(), e.kind()))?;
        let line = text.lines().next().unwrap_or("").trim().to_string();
        if line.is_empty() {
            return Err(format!("secret file {} is empty", p.display()));
        }
        return Ok(Some(line));
    }
    if let Some(name) = var {
        return match env.get(name) {
            Some(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
            _ => Err(format!("environment variable {name} is not set")),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_the_injected_environment_or_a_file() {
        let env = Env::from_pairs([("TOKEN", "  t0ken \n"), ("BLANK", "   ")]);
        let base = Path::new("/");
        assert_eq!(
            read_secret(base, None, Some("TOKEN"), &env)
                .unwrap()
                .as_deref(),
            Some("t0ken")
        );
        for missing in ["BLANK", "UNSET"] {
            let e = read_secret(base, None, Some(missing), &env).unwrap_err();
            assert_eq!(e, format!("environment variable {missing} is not set"));
        }
        assert_eq!(read_secret(base, None, None, &env).unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "from-file\nsecond line\n").unwrap();
        assert_eq!(
            read_secret(dir.path(), Some("s"), Some("TOKEN"), &env)
                .unwrap()
                .as_deref(),
            Some("from-file"),
            "the file wins"
        );
    }

    #[test]
    fn ssl_cert_file_of_the_injected_environment_replaces_the_web_roots() {
        let t = Duration::from_secs(1);
        assert!(HttpClient::new(t, None, &Env::default()).is_ok());
        let env = Env::from_pairs([("SSL_CERT_FILE", "/nonexistent/roots.pem")]);
        let e = HttpClient::new(t, None, &env).err().unwrap();
        assert!(e.contains("SSL_CERT_FILE /nonexistent/roots.pem"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "no certificate here\n").unwrap();
        let env = Env::from_pairs([("SSL_CERT_FILE", bad.to_str().unwrap())]);
        let e = HttpClient::new(t, None, &env).err().unwrap();
        assert!(e.contains("holds no certificate"), "{e}");
        // A ca_file of the entry wins over SSL_CERT_FILE.
        let e = HttpClient::new(t, Some(&dir.path().join("missing-ca.pem")), &env)
            .err()
            .unwrap();
        assert!(e.contains("cannot read ca_file"), "{e}");
        assert_eq!(
            TlsSettings::default()
                .with_env(&env)
                .ssl_cert_file
                .as_deref(),
            Some(bad.as_path())
        );
    }
}
