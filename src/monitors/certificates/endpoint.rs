//! Live TLS endpoints: connect (optionally after a STARTTLS upgrade), record
//! the chain the server serves whatever its trust, then verify that chain
//! separately against the web roots or the endpoint's `ca_file`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, RootCertStore};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::parse::{cert_from_der, Cert, ParseError};
use super::config::StartTls;

/// One endpoint to probe, resolved from config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port` as configured (the `endpoint` label).
    pub address: String,
    /// SNI and the name verified (the `server_name` label).
    pub server_name: String,
    pub starttls: Option<StartTls>,
    pub timeout: Duration,
    /// Absolute path of a PEM file of trusted CAs, instead of the web roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// `ca_file` as configured, for messages.
    pub ca_label: Option<String>,
    /// Active revocation checks of the leaf, when enabled.
    pub revocation: Option<super::revocation::RevocationConfig>,
}

/// Why an endpoint could not be read. Never quotes what the server sent.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("{0}: cannot resolve host")]
    Resolve(String),
    #[error("{0}: connection refused")]
    Refused(String),
    #[error("{endpoint}: cannot connect ({kind})")]
    Connect {
        endpoint: String,
        kind: std::io::ErrorKind,
    },
    #[error("{endpoint}: no answer within {after:?} (during {stage})")]
    Timeout {
        endpoint: String,
        stage: &'static str,
        after: Duration,
    },
    #[error("{endpoint}: {protocol} STARTTLS failed: {what}")]
    StartTls {
        endpoint: String,
        protocol: &'static str,
        what: String,
    },
    #[error("{endpoint}: TLS handshake failed: {reason}")]
    Handshake { endpoint: String, reason: String },
    #[error("{0}: server sent no certificate")]
    NoCertificate(String),
    #[error("{endpoint}: server_name {name:?} is not a valid DNS name or IP address")]
    BadServerName { endpoint: String, name: String },
    #[error("{endpoint}: served {source}")]
    Parse {
        endpoint: String,
        #[source]
        source: ParseError,
    },
}

impl EndpointError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            EndpointError::Resolve(_) => "resolve",
            EndpointError::Refused(_) => "refused",
            EndpointError::Connect { .. } => "connect",
            EndpointError::Timeout { .. } => "timeout",
            EndpointError::StartTls { .. } => "starttls",
            EndpointError::Handshake { .. } => "handshake",
            EndpointError::NoCertificate(_) => "no_certificate",
            EndpointError::BadServerName { .. } => "bad_server_name",
            EndpointError::Parse { .. } => "malformed_certificate",
        }
    }
}

/// What one probe found.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The served chain, leaf first.
    pub certs: Vec<Cert>,
    /// `Ok` when the chain verifies for `server_name` at the collection time; else why not.
    pub verified: Result<(), String>,
    /// `TLSv1_3`, `TLSv1_2`.
    pub protocol: String,
    /// The OCSP response the server stapled (DER), if any.
    pub ocsp: Option<Vec<u8>>,
}

/// Accepts any chain (as [`crate::net::verify::AcceptAnyChain`]) and keeps
/// the OCSP response stapled to the handshake. One per probe.
#[derive(Debug)]
struct StapleRecorder {
    inner: crate::net::verify::AcceptAnyChain,
    staple: std::sync::Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for StapleRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if !ocsp_response.is_empty() {
            *self.staple.lock().unwrap_or_else(|e| e.into_inner()) = Some(ocsp_response.to_vec());
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Shared, per-monitor TLS machinery.
pub struct Prober {
    provider: Arc<CryptoProvider>,
    client: Arc<rustls::ClientConfig>,
    web_verifier: Arc<WebPkiServerVerifier>,
}

impl Prober {
    pub fn new() -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let recorder = Arc::new(crate::net::verify::AcceptAnyChain {
            provider: provider.clone(),
        });
        let client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(recorder)
            .with_no_client_auth();
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let web_verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| e.to_string())?;
        Ok(Prober {
            provider,
            client: Arc::new(client),
            web_verifier,
        })
    }

    /// Probe one endpoint; `now` is the collection's clock, used for verification.
    pub async fn probe(&self, ep: &Endpoint, now: SystemTime) -> Result<Probe, EndpointError> {
        let name = ServerName::try_from(ep.server_name.clone()).map_err(|_| {
            EndpointError::BadServerName {
                endpoint: ep.address.clone(),
                name: ep.server_name.clone(),
            }
        })?;
        let deadline = Instant::now() + ep.timeout;
        let timeout = |stage: &'static str| EndpointError::Timeout {
            endpoint: ep.address.clone(),
            stage,
            after: ep.timeout,
        };
        let mut stream = timeout_at(deadline, connect(&ep.address))
            .await
            .map_err(|_| timeout("connect"))??;
        if let Some(proto) = ep.starttls {
            // Servers of greeting protocols (SMTP, IMAP, POP3, FTP, MySQL) speak first; a
            // TLS server waits for the client. A silent server is checked on a fresh
            // connection for direct TLS (465, 993, 995, 990), so that `starttls` on such a
            // port is reported as what it is, not as a timeout. The first connection is
            // closed first: single-threaded servers (openssl s_server) would not accept the
            // second one while it is open. Client-first protocols (PostgreSQL, LDAP, XMPP)
            // recognise a TLS answer to their request instead.
            let quiet = GREETING_QUIET.min(ep.timeout / 4);
            if proto.server_speaks_first() && !speaks_within(&stream, quiet).await {
                drop(stream);
                let direct = timeout_at(deadline, self.speaks_tls(&ep.address, name.clone()))
                    .await
                    .map_err(|_| timeout("starttls: no greeting, and no TLS answer either"))?;
                if direct {
                    return Err(EndpointError::StartTls {
                        endpoint: ep.address.clone(),
                        protocol: proto.as_str(),
                        what: proto.direct_tls_message(),
                    });
                }
                stream = timeout_at(deadline, connect(&ep.address))
                    .await
                    .map_err(|_| timeout("connect"))??;
            }
            let upgraded = timeout_at(
                deadline,
                super::starttls::upgrade(&mut stream, proto, &ep.address, &ep.server_name),
            )
            .await
            .map_err(|_| timeout("starttls"))?;
            if let Err(e) = upgraded {
                // A TLS-only port closes on a request that is not a ClientHello (OpenSSL
                // without even an alert): a fresh connection tells that case apart.
                let closed = matches!(&e, EndpointError::StartTls { what, .. } if what == super::starttls::CLOSED);
                if closed && !proto.server_speaks_first() {
                    drop(stream);
                    let direct = timeout_at(deadline, self.speaks_tls(&ep.address, name.clone()))
                        .await
                        .unwrap_or(false);
                    if direct {
                        return Err(EndpointError::StartTls {
                            endpoint: ep.address.clone(),
                            protocol: proto.as_str(),
                            what: proto.direct_tls_message(),
                        });
                    }
                }
                return Err(e);
            }
        }
        // A client per probe: its verifier keeps this handshake's OCSP staple.
        let recorder = Arc::new(StapleRecorder {
            inner: crate::net::verify::AcceptAnyChain {
                provider: self.provider.clone(),
            },
            staple: std::sync::Mutex::new(None),
        });
        let client = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| EndpointError::Handshake {
                endpoint: ep.address.clone(),
                reason: e.to_string(),
            })?
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone())
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tls = timeout_at(deadline, connector.connect(name.clone(), stream))
            .await
            .map_err(|_| timeout("handshake"))?
            .map_err(|e| EndpointError::Handshake {
                endpoint: ep.address.clone(),
                reason: handshake_reason(&e),
            })?;
        let (_, conn) = tls.get_ref();
        let chain: Vec<CertificateDer<'static>> = conn
            .peer_certificates()
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        let protocol = conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        // Close politely but do not wait for the server.
        let mut tls = tls;
        let _ = tokio::time::timeout(Duration::from_millis(100), tls.shutdown()).await;
        drop(tls);
        let Some((leaf, rest)) = chain.split_first() else {
            return Err(EndpointError::NoCertificate(ep.address.clone()));
        };
        let mut certs = Vec::with_capacity(chain.len());
        for (i, der) in chain.iter().enumerate() {
            certs.push(
                cert_from_der(der, i).map_err(|source| EndpointError::Parse {
                    endpoint: ep.address.clone(),
                    source,
                })?,
            );
        }
        let verified = self.verify(ep, leaf, rest, &name, now);
        let ocsp = recorder
            .staple
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        Ok(Probe {
            certs,
            verified,
            protocol,
            ocsp,
        })
    }

    /// Whether a fresh connection to `address` completes a TLS handshake (or gets a TLS alert).
    async fn speaks_tls(&self, address: &str, name: ServerName<'static>) -> bool {
        let Ok(tcp) = connect(address).await else {
            return false;
        };
        let connector = tokio_rustls::TlsConnector::from(self.client.clone());
        match connector.connect(name, tcp).await {
            Ok(mut tls) => {
                let _ = tokio::time::timeout(Duration::from_millis(100), tls.shutdown()).await;
                true
            }
            Err(e) => matches!(
                e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
                Some(rustls::Error::AlertReceived(_))
            ),
        }
    }

    fn verify(
        &self,
        ep: &Endpoint,
        leaf: &CertificateDer<'_>,
        rest: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        now: SystemTime,
    ) -> Result<(), String> {
        let now = UnixTime::since_unix_epoch(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let custom;
        let verifier: &WebPkiServerVerifier = match &ep.ca_file {
            None => &self.web_verifier,
            Some(path) => {
                let label = ep.ca_label.as_deref().unwrap_or("ca_file");
                custom = self.custom_verifier(path, label)?;
                &custom
            }
        };
        verifier
            .verify_server_cert(leaf, rest, name, &[], now)
            .map(|_| ())
            .map_err(|e| match &ep.ca_label {
                // Not signed by the CA the user named: never the "self-signed, fine" case.
                Some(ca) => format!("{} (against ca_file {ca})", verify_reason(&e)),
                None => verify_reason(&e),
            })
    }

    fn custom_verifier(
        &self,
        path: &std::path::Path,
        label: &str,
    ) -> Result<Arc<WebPkiServerVerifier>, String> {
        use rustls::pki_types::pem::PemObject;
        let bytes = crate::core::safe_open::read(path)
            .map_err(|e| format!("ca_file {label}: cannot read ({})", e.kind()))?;
        let mut store = RootCertStore::empty();
        for item in CertificateDer::pem_slice_iter(&bytes) {
            let der = item.map_err(|_| format!("ca_file {label}: malformed PEM"))?;
            store.add(der).map_err(|_| {
                format!("ca_file {label}: a certificate cannot be used as a trust anchor")
            })?;
        }
        if store.is_empty() {
            return Err(format!("ca_file {label}: holds no certificate"));
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(store), self.provider.clone())
            .build()
            .map_err(|e| format!("ca_file {label}: {e}"))
    }
}

async fn connect(address: &str) -> Result<TcpStream, EndpointError> {
    let addrs: Vec<_> = tokio::net::lookup_host(address)
        .await
        .map_err(|_| EndpointError::Resolve(address.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(EndpointError::Resolve(address.to_string()));
    }
    let mut last = None;
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            EndpointError::Refused(address.to_string())
        }
        Some(e) => EndpointError::Connect {
            endpoint: address.to_string(),
            kind: e.kind(),
        },
        None => EndpointError::Resolve(address.to_string()),
    })
}

/// Whether the server sends something (or closes) within `quiet`.
async fn speaks_within(stream: &TcpStream, quiet: Duration) -> bool {
    let mut byte = [0u8; 1];
    tokio::time::timeout(quiet, stream.peek(&mut byte))
        .await
        .is_ok()
}

/// How long a STARTTLS server may stay silent before the port is checked for direct TLS.
const GREETING_QUIET: Duration = Duration::from_secs(1);

fn handshake_reason(e: &std::io::Error) -> String {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return match inner {
            rustls::Error::InvalidMessage(_) => {
                "not TLS (the server answered something else: plain HTTP, or a mail port that needs `starttls`?)".into()
            }
            other => other.to_string(),
        };
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "server closed the connection".into(),
        k => format!("{k}"),
    }
}

/// Short reason for `certificate_verified 0`.
pub fn verify_reason(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired".into(),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not_yet_valid".into()
            }
            CertificateError::UnknownIssuer => "unknown_issuer".into(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "name_mismatch".into()
            }
            CertificateError::BadSignature => "bad_signature".into(),
            CertificateError::Revoked => "revoked".into(),
            other => format!("invalid ({other:?})").chars().take(80).collect(),
        },
        other => other.to_string(),
    }
}
