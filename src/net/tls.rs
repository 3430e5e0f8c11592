//! The one rustls client configuration of the HTTP and database clients: the
//! remote-state HTTP client (http, GitLab, HCP, S3 and the credential
//! endpoints), the `pg` backend and the `http` health check all build theirs
//! here, with the ring provider, the safe protocol versions, a server verifier
//! and an optional client certificate.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How the server's certificate is checked.
pub enum Verify {
    /// The chain must lead to one of these roots and name the host.
    Full(RootCertStore),
    /// The chain must lead to one of these roots; the host name is not
    /// checked (libpq's `verify-ca`).
    ChainOnly(RootCertStore),
    /// Any chain; the handshake signatures are still checked (libpq's
    /// `require` without a root, Terraform's `skip_cert_verification`).
    AnyChain,
}

/// A client certificate chain and its private key (mutual TLS).
pub type ClientAuth = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Why a configuration could not be built; the caller names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsBuildError {
    #[error("TLS set-up failed: {0}")]
    Setup(rustls::Error),
    #[error("no usable CA certificate: {0}")]
    Roots(rustls::client::VerifierBuilderError),
    #[error("the client certificate and key cannot be used: {0}")]
    ClientAuth(rustls::Error),
}

/// The bundled web roots (what a client trusts without a CA of its own).
pub fn web_roots() -> RootCertStore {
    let mut store = RootCertStore::empty();
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    store
}

/// Build the client configuration.
pub fn client_config(
    verify: Verify,
    client: Option<ClientAuth>,
) -> Result<rustls::ClientConfig, TlsBuildError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsBuildError::Setup)?;
    let webpki = |store: RootCertStore| {
        WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
            .build()
            .map_err(TlsBuildError::Roots)
    };
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Full(store) => webpki(store)?,
        Verify::ChainOnly(store) => Arc::new(ChainOnly(webpki(store)?)),
        Verify::AnyChain => Arc::new(crate::net::verify::AcceptAnyChain {
            provider: provider.clone(),
        }),
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(TlsBuildError::ClientAuth),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
