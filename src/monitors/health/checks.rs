//! The built-in checks: `http`, `tcp`, `dns`, `disk`, `file_age`, `command`.
//!
//! Messages quote names, status codes and sizes, never response bodies,
//! command output or URL credentials.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use super::config::{
    BodyRegex, CommandCheckConfig, DiskCheckConfig, DnsCheckConfig, FileAgeCheckConfig,
    HttpCheckConfig, StatusList, TcpCheckConfig,
};
use super::{Check, CheckContext, CheckError};
use crate::net::tls::{client_config, web_roots, Verify};

/// Largest command output read (the rest is discarded).
pub const COMMAND_OUTPUT_LIMIT: usize = 64 * 1024;
/// Most entries visited under a `file_age` folder.
pub const FILE_AGE_ENTRY_LIMIT: usize = 100_000;

// ---------------------------------------------------------------- http

/// GET a URL and check status and (optionally) body, with the shared HTTP
/// client stack (`crate::net`): HTTP/1.1, no redirects, no proxy, a fresh
/// connection per run, no credentials (user info in the URL is dropped).
pub struct HttpCheck {
    client: reqwest::Client,
    url: reqwest::Url,
    port: u16,
    expected: Option<StatusList>,
    body_regex: Option<BodyRegex>,
    max_body: usize,
}

impl HttpCheck {
    /// Build from config; `base` resolves a relative `ca_file`.
    pub fn new(c: &HttpCheckConfig, base: &Path) -> Result<Self, CheckError> {
        let mut url = reqwest::Url::parse(&c.url)
            .map_err(|_| CheckError::Config("url is not a valid absolute URL".into()))?;
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(CheckError::Config("url must be http:// or https://".into())),
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(CheckError::Config("url has no host".into()));
        }
        let port = url
            .port_or_known_default()
            .unwrap_or(if https { 443 } else { 80 });
        // No credentials are sent: reqwest would turn user info into a Basic
        // Authorization header.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let tls = if https {
            tls_config(c, base)?
        } else {
            // Never used (no redirects are followed), but the builder needs one.
            client_config(Verify::Full(web_roots()), None)
                .map_err(|e| CheckError::Config(format!("TLS setup failed: {e}")))?
        };
        // The check's own timeout (the runner's) bounds the whole run.
        let client = crate::net::http::client_builder(tls, 0)
            .http1_only()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| CheckError::Config(format!("the HTTP client cannot be built: {e}")))?;
        Ok(HttpCheck {
            client,
            url,
            port,
            expected: c.expected_status.clone(),
            body_regex: c.body_regex.clone(),
            max_body: c
                .max_body_size
                .map(|b| usize::try_from(b.0).unwrap_or(usize::MAX))
                .unwrap_or(1 << 20),
        })
    }

    /// A client error as a message that quotes neither the URL nor a body.
    fn error(&self, e: &reqwest::Error) -> CheckError {
        let causes = crate::net::http::causes(e as &(dyn std::error::Error + 'static));
        if let Some(t) = causes
            .iter()
            .find_map(|c| c.downcast_ref::<rustls::Error>())
        {
            return CheckError::Failed(format!("TLS handshake failed: {t}"));
        }
        if e.is_timeout() {
            return CheckError::Failed("timed out".into());
        }
        let io = causes
            .iter()
            .find_map(|c| c.downcast_ref::<std::io::Error>());
        if e.is_connect() {
            return CheckError::Failed(match io {
                Some(io) => format!("cannot connect to port {}: {io}", self.port),
                None => format!("cannot connect to port {}", self.port),
            });
        }
        // The outermost cause (reqwest's) names the URL: skip it.
        let why = causes
            .iter()
            .skip(1)
            .last()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "HTTP protocol error".into());
        CheckError::Failed(format!("request failed: {why}"))
    }
}

#[async_trait]
impl Check for HttpCheck {
    fn kind(&self) -> &'static str {
        "http"
    }

    async fn run(&self, _ctx: &CheckContext) -> Result<String, CheckError> {
        let mut resp = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| self.error(&e))?;
        let status = resp.status().as_u16();
        let ok = match &self.expected {
            Some(list) => list.contains(status),
            None => (200..300).contains(&status),
        };
        if !ok {
            return Err(CheckError::Failed(format!(
                "unexpected HTTP status {status}"
            )));
        }
        let Some(re) = &self.body_regex else {
            return Ok(format!("HTTP {status}"));
        };
        let too_large = || {
            CheckError::Failed(format!(
                "HTTP {status}, but the body is over max_body_size ({} bytes)",
                self.max_body
            ))
        };
        if resp
            .content_length()
            .is_some_and(|l| l > self.max_body as u64)
        {
            return Err(too_large());
        }
        // Streamed: a body over the cap is never held whole.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| match self.error(&e) {
            CheckError::Failed(m) => CheckError::Failed(format!("reading the body failed: {m}")),
            other => other,
        })? {
            if body.len().saturating_add(chunk.len()) > self.max_body {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&body);
        if !re.0.is_match(&text) {
            return Err(CheckError::Failed(format!(
                "HTTP {status}, but the body does not match body_regex"
            )));
        }
        Ok(format!("HTTP {status}, body matches"))
    }
}

fn tls_config(c: &HttpCheckConfig, base: &Path) -> Result<rustls::ClientConfig, CheckError> {
    let verify = if c.insecure_skip_verify {
        Verify::AnyChain
    } else {
        match &c.ca_file {
            Some(f) => {
                use rustls::pki_types::pem::PemObject;
                let path = resolve(base, f);
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
                    .and_then(|it| it.collect::<Result<_, _>>())
                    .map_err(|e| {
                        CheckError::Config(format!("cannot read ca_file {}: {e}", path.display()))
                    })?;
                if certs.is_empty() {
                    return Err(CheckError::Config(format!(
                        "ca_file {} holds no certificate",
                        path.display()
                    )));
                }
                let mut roots = RootCertStore::empty();
                for cert in certs {
                    roots.add(cert).map_err(|e| {
                        CheckError::Config(format!("ca_file {}: {e}", path.display()))
                    })?;
                }
                Verify::Full(roots)
            }
            None => Verify::Full(web_roots()),
        }
    };
    client_config(verify, None).map_err(|e| CheckError::Config(format!("TLS setup failed: {e}")))
}

// ---------------------------------------------------------------- tcp

/// Connect to `host:port`.
pub struct TcpCheck {
    host: String,
    port: u16,
}

impl TcpCheck {
    pub fn new(c: &TcpCheckConfig) -> Result<Self, CheckError> {
        let (host, port) =
            crate::core::config::values::split_host_port(&c.address).map_err(CheckError::Config)?;
        Ok(TcpCheck { host, port })
    }
}

#[async_trait]
impl Check for TcpCheck {
    fn kind(&self) -> &'static str {
        "tcp"
    }

    async fn run(&self, _ctx: &CheckContext) -> Result<String, CheckError> {
        tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map(|_| format!("port {} accepts connections", self.port))
            .map_err(|e| CheckError::Failed(format!("cannot connect to port {}: {e}", self.port)))
    }
}

// ---------------------------------------------------------------- dns

/// Resolve a name with the system resolver.
pub struct DnsCheck {
    cfg: DnsCheckConfig,
}

impl DnsCheck {
    pub fn new(c: &DnsCheckConfig) -> Self {
        DnsCheck { cfg: c.clone() }
    }
}

#[async_trait]
impl Check for DnsCheck {
    fn kind(&self) -> &'static str {
        "dns"
    }

    async fn run(&self, _ctx: &CheckContext) -> Result<String, CheckError> {
        let found: Vec<std::net::IpAddr> = tokio::net::lookup_host((self.cfg.name.as_str(), 0))
            .await
            .map_err(|e| CheckError::Failed(format!("{} does not resolve: {e}", self.cfg.name)))?
            .map(|a| a.ip())
            .collect();
        if found.is_empty() {
            return Err(CheckError::Failed(format!(
                "{} resolves to no address",
                self.cfg.name
            )));
        }
        let missing: Vec<String> = self
            .cfg
            .expected_addresses
            .iter()
            .filter(|a| !found.contains(a))
            .map(|a| a.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(CheckError::Failed(format!(
                "{} does not resolve to {}",
                self.cfg.name,
                missing.join(", ")
            )));
        }
        Ok(format!(
            "{} resolves to {} address(es)",
            self.cfg.name,
            found.len()
        ))
    }
}

// ---------------------------------------------------------------- disk

/// Free space of the filesystem holding a path.
pub struct DiskCheck {
    path: PathBuf,
    cfg: DiskCheckConfig,
}

impl DiskCheck {
    pub fn new(c: &DiskCheckConfig, base: &Path) -> Self {
        DiskCheck {
            path: resolve(base, &c.path),
            cfg: c.clone(),
        }
    }
}

/// Bytes available to unprivileged users and the filesystem's size.
pub fn disk_space(path: &Path) -> Result<(u64, u64), CheckError> {
    let st = rustix::fs::statvfs(path).map_err(|e| {
        CheckError::Failed(format!(
            "cannot stat the filesystem of {}: {e}",
            path.display()
        ))
    })?;
    let frsize = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    Ok((
        st.f_bavail.saturating_mul(frsize),
        st.f_blocks.saturating_mul(frsize),
    ))
}

#[async_trait]
impl Check for DiskCheck {
    fn kind(&self) -> &'static str {
        "disk"
    }

    async fn run(&self, _ctx: &CheckContext) -> Result<String, CheckError> {
        let path = self.path.clone();
        let (free, total) = tokio::task::spawn_blocking(move || disk_space(&path))
            .await
            .map_err(|e| CheckError::Failed(format!("disk check task failed: {e}")))??;
        let ratio = if total > 0 {
            free as f64 / total as f64
        } else {
            0.0
        };
        let summary = format!("{} free ({:.1}%)", human_bytes(free), ratio * 100.0);
        if let Some(min) = self.cfg.min_free_bytes {
            if free < min.0 {
                return Err(CheckError::Failed(format!(
                    "{summary}, below min_free_bytes {}",
                    human_bytes(min.0)
                )));
            }
        }
        if let Some(min) = self.cfg.min_free_ratio {
            if ratio < min {
                return Err(CheckError::Failed(format!(
                    "{summary}, below min_free_ratio {:.1}%",
                    min * 100.0
                )));
            }
        }
        Ok(summary)
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1}{}", UNITS[i])
}

// ---------------------------------------------------------------- file_age

/// The newest modification time under a path is recent enough.
pub struct FileAgeCheck {
    path: PathBuf,
    cfg: FileAgeCheckConfig,
}

impl FileAgeCheck {
    pub fn new(c: &FileAgeCheckConfig, base: &Path) -> Self {
        FileAgeCheck {
            path: resolve(base, &c.path),
            cfg: c.clone(),
        }
    }
}

/// Newest mtime of a file, or of any file under a folder (bounded walk).
pub fn newest_mtime(path: &Path) -> Result<Option<SystemTime>, CheckError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| CheckError::Failed(format!("cannot read {}: {e}", path.display())))?;
    if meta.is_file() {
        return Ok(meta.modified().ok());
    }
    let mut newest: Option<SystemTime> = None;
    for entry in walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .take(FILE_AGE_ENTRY_LIMIT)
        .flatten()
    {
        if !entry.file_type().is_file() {
            continue;
        }
        if let Some(m) = entry.metadata().ok().and_then(|m| m.modified().ok()) {
            newest = Some(newest.map_or(m, |n| n.max(m)));
        }
    }
    Ok(newest)
}

#[async_trait]
impl Check for FileAgeCheck {
    fn kind(&self) -> &'static str {
        "file_age"
    }

    async fn run(&self, ctx: &CheckContext) -> Result<String, CheckError> {
        let path = self.path.clone();
        let newest = tokio::task::spawn_blocking(move || newest_mtime(&path))
            .await
            .map_err(|e| CheckError::Failed(format!("file_age task failed: {e}")))??;
        let newest = newest
            .ok_or_else(|| CheckError::Failed(format!("no file under {}", self.path.display())))?;
        let age = ctx.now.duration_since(newest).unwrap_or_default();
        let shown = crate::cli::report::human_duration(age);
        if age > self.cfg.max_age.0 {
            return Err(CheckError::Failed(format!(
                "newest file is {shown} old, older than max_age {}",
                self.cfg.max_age
            )));
        }
        Ok(format!("newest file is {shown} old"))
    }
}

// ---------------------------------------------------------------- command

/// Run a program (no shell) with [`crate::core::command`]: its own process
/// group, killed whole at the check's timeout; output is read up to a limit
/// and never shown.
pub struct CommandCheck {
    cfg: CommandCheckConfig,
    base: PathBuf,
    timeout: std::time::Duration,
}

impl CommandCheck {
    /// `timeout`: the check's (the process group is killed then).
    pub fn new(c: &CommandCheckConfig, base: &Path, timeout: std::time::Duration) -> Self {
        CommandCheck {
            cfg: c.clone(),
            base: base.to_path_buf(),
            timeout,
        }
    }
}

#[async_trait]
impl Check for CommandCheck {
    fn kind(&self) -> &'static str {
        "command"
    }

    async fn run(&self, _ctx: &CheckContext) -> Result<String, CheckError> {
        use crate::core::command::{run, RunError, Spec};
        let program = self
            .cfg
            .argv
            .first()
            .cloned()
            .ok_or_else(|| CheckError::Config("argv is empty".into()))?;
        let (argv, base, timeout) = (self.cfg.argv.clone(), self.base.clone(), self.timeout);
        let out = tokio::task::spawn_blocking(move || {
            run(&Spec {
                argv: &argv,
                dir: &base,
                env: &[],
                stdout_limit: COMMAND_OUTPUT_LIMIT,
                stderr_limit: COMMAND_OUTPUT_LIMIT,
                timeout,
            })
        })
        .await
        .map_err(|e| CheckError::Failed(format!("command task failed: {e}")))?;
        let status = match out {
            Ok(o) => o.status,
            Err(RunError::Timeout { timeout, .. }) => return Err(CheckError::Timeout(timeout)),
            Err(e) => return Err(CheckError::Failed(e.to_string())),
        };
        match status.code() {
            Some(c) if c == self.cfg.expected_exit_code => Ok(format!("{program} exited {c}")),
            Some(c) => Err(CheckError::Failed(format!(
                "{program} exited {c}, expected {}",
                self.cfg.expected_exit_code
            ))),
            None => Err(CheckError::Failed(format!(
                "{program} was killed by a signal"
            ))),
        }
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
