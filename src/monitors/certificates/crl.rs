//! Certificate revocation lists read from files (`certificate_expiry.crls`):
//! DER or PEM (`X509 CRL` blocks, several per file as nginx's `ssl_crl`
//! takes them), their update times and revoked serials, and which certificate
//! they revoke.
//!
//! A CRL applies to a certificate when the CRL's issuer name equals the
//! certificate's issuer name (DER, byte for byte) and, when both carry an
//! authority key identifier, those are equal. Its signature is checked against
//! the issuer's certificate when that certificate is among the certificate
//! sources (file or endpoint chain); a CRL whose signature does not verify is
//! not used. A CRL that cannot be read makes revocation unknown, never "not
//! revoked".

use std::collections::HashSet;

use x509_parser::prelude::FromDer;

use super::parse::{aki_of, serial_hex, Cert};

/// One CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    /// Issuer name for messages (RFC 4514-like, bounded).
    pub issuer: String,
    pub issuer_raw: Vec<u8>,
    pub aki: Option<Vec<u8>>,
    /// Unix seconds.
    pub this_update: i64,
    /// Unix seconds; `None` when the CRL has no nextUpdate.
    pub next_update: Option<i64>,
    /// Revoked serials, as [`serial_hex`] writes them.
    pub revoked: HashSet<String>,
    /// The CRL itself, to verify its signature against an issuer certificate.
    pub der: Vec<u8>,
}

/// Why a CRL file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrlError {
    #[error("the file is empty")]
    Empty,
    #[error("PEM block {block} is malformed ({what})")]
    MalformedPem { block: usize, what: &'static str },
    #[error("holds no X509 CRL (PEM without an `X509 CRL` block, or DER that is not a CRL)")]
    NoCrl,
    #[error("CRL {index} is malformed or truncated")]
    Malformed { index: usize },
}

impl CrlError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            CrlError::Empty => "empty",
            CrlError::MalformedPem { .. } => "malformed_pem",
            CrlError::NoCrl => "no_crl",
            CrlError::Malformed { .. } => "malformed_crl",
        }
    }
}

/// Parse a CRL file's bytes: DER (one CRL) or PEM (one or more `X509 CRL` blocks).
pub fn parse_crls(bytes: &[u8]) -> Result<Vec<Crl>, CrlError> {
    let text_start = bytes
        .strip_prefix(b"\xef\xbb\xbf")
        .unwrap_or(bytes)
        .trim_ascii_start();
    if text_start.is_empty() {
        return Err(CrlError::Empty);
    }
    if !text_start.starts_with(b"-----BEGIN") {
        return parse_der(bytes, 0, false).map(|c| vec![c]);
    }
    let mut out = Vec::new();
    for (block, pem) in x509_parser::pem::Pem::iter_from_buffer(text_start).enumerate() {
        let pem = pem.map_err(|e| CrlError::MalformedPem {
            block: block + 1,
            what: match e {
                x509_parser::error::PEMError::Base64DecodeError => "bad base64",
                x509_parser::error::PEMError::MissingHeader => "missing header",
                x509_parser::error::PEMError::IncompletePEM => "incomplete",
                x509_parser::error::PEMError::InvalidHeader => "invalid header",
                _ => "unreadable",
            },
        })?;
        if pem.label == "X509 CRL" {
            out.push(parse_der(&pem.contents, out.len(), true)?);
        }
    }
    if out.is_empty() {
        return Err(CrlError::NoCrl);
    }
    Ok(out)
}

/// `labelled`: the bytes come from an `X509 CRL` PEM block, so they are meant to be a CRL.
fn parse_der(der: &[u8], index: usize, labelled: bool) -> Result<Crl, CrlError> {
    let (rest, crl) = x509_parser::parse_x509_crl(der).map_err(|_| {
        // Unlabelled bytes that are a certificate or not DER at all: not a CRL.
        if !labelled
            && (der.first() != Some(&0x30) || x509_parser::parse_x509_certificate(der).is_ok())
        {
            CrlError::NoCrl
        } else {
            CrlError::Malformed { index }
        }
    })?;
    let used = der.len() - rest.len();
    let issuer: String = crl.issuer().to_string().chars().take(256).collect();
    Ok(Crl {
        issuer,
        issuer_raw: crl.issuer().as_raw().to_vec(),
        aki: aki_of(crl.extensions()),
        this_update: crl.last_update().timestamp(),
        next_update: crl.next_update().map(|t| t.timestamp()),
        revoked: crl
            .iter_revoked_certificates()
            .map(|r| serial_hex(r.raw_serial()))
            .collect(),
        der: der[..used].to_vec(),
    })
}

impl Crl {
    /// Whether this CRL is about certificates issued like `c` (name, and key id when both have one).
    pub fn covers(&self, c: &Cert) -> bool {
        self.issuer_raw == c.ids.issuer
            && match (&self.aki, &c.ids.aki) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// The CRL's signature against `issuer` (a certificate whose subject is the
    /// CRL's issuer): `Some(true)` verified, `Some(false)` does not verify,
    /// `None` when `issuer` is not a candidate (other name or key id).
    pub fn verify_with(&self, issuer: &Cert) -> Option<bool> {
        if issuer.ids.subject != self.issuer_raw {
            return None;
        }
        if let (Some(a), Some(s)) = (&self.aki, &issuer.ids.ski) {
            if a != s {
                return None;
            }
        }
        let Ok((_, spki)) =
            x509_parser::x509::SubjectPublicKeyInfo::from_der(issuer.ids.spki.as_slice())
        else {
            return Some(false);
        };
        let Ok((_, crl)) = x509_parser::parse_x509_crl(&self.der) else {
            return Some(false);
        };
        Some(crl.verify_signature(&spki).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_inputs_are_typed_errors() {
        assert_eq!(parse_crls(b"").unwrap_err(), CrlError::Empty);
        assert_eq!(parse_crls(b"  \n").unwrap_err(), CrlError::Empty);
        assert_eq!(parse_crls(b"hello").unwrap_err(), CrlError::NoCrl);
        assert_eq!(
            parse_crls(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .unwrap_err(),
            CrlError::NoCrl
        );
        assert_eq!(
            parse_crls(b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n").unwrap_err(),
            CrlError::Malformed { index: 0 }
        );
        assert_eq!(
            parse_crls(&[0x30, 0x82, 0x10, 0x00, 0x30]).unwrap_err(),
            CrlError::Malformed { index: 0 }
        );
        assert!(matches!(
            parse_crls(b"-----BEGIN X509 CRL-----\n!!!!\n-----END X509 CRL-----\n").unwrap_err(),
            CrlError::MalformedPem { block: 1, .. }
        ));
    }
}
