//! Pure parsing: bytes in, typed certificates out.
//!
//! Recognised: PEM (any number of certificates per file; private-key blocks are
//! skipped and wiped), DER, PKCS#12 (with a passphrase) and kubeconfig files
//! (`certificate-authority-data`, `client-certificate-data`). Errors name
//! positions (block, index, entry) and never quote file contents.

use base64::Engine;
use rustls_pki_types::pem::{PemObject, SectionKind};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::public_key::PublicKey;

/// Longest `sans` label value; longer lists are cut at an entry and marked.
pub const SANS_LABEL_MAX: usize = 512;
/// Longest CN label value.
pub const NAME_LABEL_MAX: usize = 256;

/// The container format a file was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pem,
    Der,
    Pkcs12,
    Kubeconfig,
    /// Java keystore, JKS or JCEKS.
    Jks,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pem => "pem",
            Format::Der => "der",
            Format::Pkcs12 => "pkcs12",
            Format::Kubeconfig => "kubeconfig",
            Format::Jks => "jks",
        }
    }
}

/// The facts exported about one certificate (no key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    /// Lowercase hex of the serial number, without leading zero bytes.
    pub serial: String,
    pub subject_cn: String,
    pub issuer_cn: String,
    /// Subject alternative names (`DNS`, `IP`, `email:`, `uri:`), in certificate order.
    pub sans: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// `rsa`, `ecdsa`, `ed25519`, `ed448`, `dsa` or the algorithm OID.
    pub key_type: String,
    pub key_bits: u32,
    /// Short name of the signature algorithm (`sha256WithRSAEncryption`, `ecdsa-with-SHA256`).
    pub signature_algorithm: String,
    pub is_ca: bool,
    /// Subject and issuer names are equal.
    pub self_signed: bool,
    /// What revocation checks match on (never exported).
    pub ids: CertIds,
}

/// A certificate's names and keys as DER, for matching CRLs to certificates
/// and verifying CRL signatures. Public data only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertIds {
    pub subject: Vec<u8>,
    pub issuer: Vec<u8>,
    /// Authority key identifier, when the certificate has one.
    pub aki: Option<Vec<u8>>,
    /// Subject key identifier, when the certificate has one.
    pub ski: Option<Vec<u8>>,
    /// SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
    /// The serial number INTEGER's contents (for an OCSP CertID).
    pub serial_raw: Vec<u8>,
    /// OCSP responder URLs from the authority information access extension.
    pub ocsp_urls: Vec<String>,
    /// Full-name URLs of the CRL distribution points.
    pub crl_urls: Vec<String>,
}

impl Cert {
    /// SANs as one bounded label value.
    pub fn sans_label(&self) -> String {
        bounded_join(&self.sans, SANS_LABEL_MAX)
    }
}

/// Everything read from one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub format: Format,
    pub certs: Vec<Cert>,
    /// Private-key blocks seen (and skipped).
    pub skipped_keys: usize,
    /// kubeconfig only: certificate files it names instead of embedding them
    /// (`certificate-authority`, `client-certificate`), read by the caller.
    pub file_refs: Vec<FileRef>,
}

/// A certificate file named by a kubeconfig entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// `clusters[name]` or `users[name]`.
    pub entry: String,
    pub field: &'static str,
    /// As written; relative paths are relative to the kubeconfig's folder.
    pub path: String,
}

/// Why a file yielded no certificates. Positions only, never contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("file is empty")]
    Empty,
    #[error("PEM block {block} is malformed ({what})")]
    MalformedPem { block: usize, what: &'static str },
    #[error("PEM file shows {markers} certificate block(s) but only {read} could be read; each -----BEGIN CERTIFICATE----- line must start a line (not indented)")]
    UnreadCertificateBlocks { markers: usize, read: usize },
    #[error("PEM file holds only {keys} private key block(s) and no certificate")]
    PrivateKeyOnly { keys: usize },
    #[error("no certificate found in this {format} file")]
    NoCertificates { format: &'static str },
    #[error("certificate {index} is truncated (incomplete DER)")]
    TruncatedDer { index: usize },
    #[error("certificate {index} is not a valid X.509 certificate")]
    MalformedCertificate { index: usize },
    #[error("PKCS#12: wrong passphrase (integrity check failed)")]
    WrongPassphrase,
    #[error(
        "PKCS#12 file needs a passphrase; set pkcs12_passphrase_file or pkcs12_passphrase_env"
    )]
    PassphraseRequired,
    #[error("PKCS#12 file is malformed or uses an unsupported algorithm ({what})")]
    MalformedPkcs12 { what: &'static str },
    #[error("kubeconfig is not valid YAML (line {line})")]
    MalformedKubeconfig { line: usize },
    #[error("kubeconfig {entry}: {field} is not valid base64")]
    KubeconfigBase64 { entry: String, field: &'static str },
    #[error("Java keystore: wrong store password (integrity check failed)")]
    KeystoreWrongPassword,
    #[error("Java keystore is malformed ({what})")]
    MalformedKeystore { what: &'static str },
    #[error("not a certificate file (neither PEM, DER, PKCS#12, Java keystore nor kubeconfig)")]
    UnknownFormat,
}

impl ParseError {
    /// Short, bounded label value.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty",
            ParseError::MalformedPem { .. } | ParseError::UnreadCertificateBlocks { .. } => {
                "malformed_pem"
            }
            ParseError::PrivateKeyOnly { .. } => "private_key_only",
            ParseError::NoCertificates { .. } => "no_certificates",
            ParseError::TruncatedDer { .. } => "truncated_der",
            ParseError::MalformedCertificate { .. } => "malformed_certificate",
            ParseError::WrongPassphrase | ParseError::KeystoreWrongPassword => "wrong_passphrase",
            ParseError::MalformedKeystore { .. } => "malformed_keystore",
            ParseError::PassphraseRequired => "passphrase_required",
            ParseError::MalformedPkcs12 { .. } => "malformed_pkcs12",
            ParseError::MalformedKubeconfig { .. } | ParseError::KubeconfigBase64 { .. } => {
                "malformed_kubeconfig"
            }
            ParseError::UnknownFormat => "unknown_format",
        }
    }
}

/// Parse one file's bytes. `extension` (lowercase, no dot) steers PKCS#12 detection;
/// `passphrase` is used for PKCS#12 only (`None`: try the empty passphrase).
pub fn parse_file(
    bytes: &[u8],
    extension: Option<&str>,
    passphrase: Option<&str>,
) -> Result<Parsed, ParseError> {
    // A UTF-8 byte-order mark (Windows editors) is not part of any format; openssl skips it.
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ParseError::Empty);
    }
    if super::jks::is_keystore(bytes) {
        return parse_keystore(bytes, passphrase);
    }
    let is_p12_name = matches!(extension, Some("p12" | "pfx"));
    if !is_p12_name && contains(bytes, b"-----BEGIN ") {
        return parse_pem(bytes);
    }
    if !is_p12_name && looks_like_kubeconfig(bytes) {
        return parse_kubeconfig(bytes);
    }
    if is_p12_name {
        return parse_pkcs12(bytes, passphrase);
    }
    if bytes.first() != Some(&0x30) {
        return Err(ParseError::UnknownFormat);
    }
    match der_certs(bytes) {
        Ok(certs) => Ok(Parsed {
            format: Format::Der,
            certs,
            skipped_keys: 0,
            file_refs: Vec::new(),
        }),
        Err(der_err) => match parse_pkcs12(bytes, passphrase) {
            Ok(p) => Ok(p),
            // It is a PKCS#12 container: its error is the one that matters.
            Err(e @ (ParseError::WrongPassphrase | ParseError::PassphraseRequired)) => Err(e),
            Err(_) => Err(der_err),
        },
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn looks_like_kubeconfig(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    text.contains("certificate-authority-data")
        || text.contains("client-certificate-data")
        || is_kubeconfig_text(text)
}

/// A kubeconfig by content, whatever its name: YAML or JSON with `kind: Config`
/// at the top level, `apiVersion`, and `clusters` or `users`.
pub fn is_kubeconfig_text(text: &str) -> bool {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let kind_config = text.lines().any(|line| {
        // YAML: `kind: Config` at the start of a line (top level), quoted or not.
        let yaml = line
            .strip_prefix("kind:")
            .map(|v| v.split('#').next().unwrap_or("").trim())
            .is_some_and(|v| v.trim_matches(|c| c == '"' || c == '\'') == "Config");
        yaml || json_kind_config(line)
    });
    kind_config
        && text.contains("apiVersion")
        && (text.contains("clusters") || text.contains("users"))
}

/// JSON: `"kind": "Config"` anywhere on the line (whitespace allowed around `:`).
fn json_kind_config(line: &str) -> bool {
    let mut rest = line;
    while let Some(i) = rest.find("\"kind\"") {
        let after = rest[i + 6..].trim_start();
        if let Some(v) = after.strip_prefix(':') {
            if v.trim_start().starts_with("\"Config\"") {
                return true;
            }
        }
        rest = &rest[i + 6..];
    }
    false
}

/// Concatenated DER certificates (one is usual); bytes after the last that do not
/// parse as a certificate are ignored, as openssl does.
fn der_certs(bytes: &[u8]) -> Result<Vec<Cert>, ParseError> {
    let (mut rest, first) = x509_parser::parse_x509_certificate(bytes)
        .map(|(rest, c)| (rest, describe(&c)))
        .map_err(|e| {
            if der_outer_len(bytes).is_some_and(|len| len > bytes.len()) {
                ParseError::TruncatedDer { index: 0 }
            } else {
                der_error(&e, 0)
            }
        })?;
    let mut certs = vec![first];
    while rest.first() == Some(&0x30) {
        match x509_parser::parse_x509_certificate(rest) {
            Ok((next, c)) => {
                certs.push(describe(&c));
                rest = next;
            }
            Err(_) => break,
        }
    }
    Ok(certs)
}

/// PEM: every CERTIFICATE block in order; key blocks are counted, wiped and dropped.
/// `TRUSTED CERTIFICATE` and `X509 CERTIFICATE` blocks (openssl's other names) are
/// certificates too, and a byte-order mark before a line is skipped, as openssl does.
pub fn parse_pem(bytes: &[u8]) -> Result<Parsed, ParseError> {
    match normalize_pem(bytes) {
        None => parse_pem_blocks(bytes),
        Some(mut copy) => {
            let result = parse_pem_blocks(&copy);
            // The copy may hold private keys: do not leave them in freed memory.
            copy.fill(0);
            result
        }
    }
}

/// Other names openssl gives certificate blocks. A `TRUSTED CERTIFICATE` is a
/// certificate followed by trust settings, which are ignored here.
const CERT_LABEL_ALIASES: [&[u8]; 2] = [b"TRUSTED CERTIFICATE-----", b"X509 CERTIFICATE-----"];

/// A copy with byte-order marks at line starts removed and certificate label
/// aliases renamed to `CERTIFICATE`, or `None` when the input needs neither.
fn normalize_pem(bytes: &[u8]) -> Option<Vec<u8>> {
    let needs = contains(bytes, BOM) || CERT_LABEL_ALIASES.iter().any(|a| contains(bytes, a));
    if !needs {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let line = line.strip_prefix(BOM).unwrap_or(line);
        let marker = [b"-----BEGIN ".as_slice(), b"-----END ".as_slice()]
            .into_iter()
            .find(|m| line.starts_with(m));
        match marker {
            Some(m) => {
                let label = &line[m.len()..];
                match CERT_LABEL_ALIASES.iter().find(|a| label.starts_with(a)) {
                    Some(alias) => {
                        out.extend_from_slice(m);
                        out.extend_from_slice(b"CERTIFICATE-----");
                        out.extend_from_slice(&label[alias.len()..]);
                    }
                    None => out.extend_from_slice(line),
                }
            }
            None => out.extend_from_slice(line),
        }
    }
    Some(out)
}

/// `-----BEGIN CERTIFICATE-----` markers anywhere in the text, at a line start or not.
fn certificate_markers(bytes: &[u8]) -> usize {
    count(bytes, b"-----BEGIN CERTIFICATE-----")
}

fn parse_pem_blocks(bytes: &[u8]) -> Result<Parsed, ParseError> {
    let mut certs = Vec::new();
    let mut keys = 0usize;
    for (i, item) in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(bytes).enumerate() {
        let block = i + 1;
        let (kind, mut der) = item.map_err(|e| ParseError::MalformedPem {
            block,
            what: pem_error_kind(&e),
        })?;
        match kind {
            SectionKind::Certificate => {
                let index = certs.len();
                certs.push(cert_from_der(&der, index)?);
            }
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey => {
                keys += 1;
                der.fill(0);
            }
            _ => {}
        }
    }
    // A certificate block that was not read (a BEGIN line indented or after other
    // text on its line) must not leave a bundle looking complete.
    let markers = certificate_markers(bytes);
    if markers > certs.len() {
        return Err(ParseError::UnreadCertificateBlocks {
            markers,
            read: certs.len(),
        });
    }
    // `ENCRYPTED PRIVATE KEY` is not decoded by the PEM reader; it is still a key.
    keys += count(bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----");
    if certs.is_empty() {
        return Err(if keys > 0 {
            ParseError::PrivateKeyOnly { keys }
        } else {
            ParseError::NoCertificates { format: "PEM" }
        });
    }
    Ok(Parsed {
        format: Format::Pem,
        certs,
        skipped_keys: keys,
        file_refs: Vec::new(),
    })
}

fn pem_error_kind(e: &rustls_pki_types::pem::Error) -> &'static str {
    use rustls_pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { .. } => "missing END line",
        E::IllegalSectionStart { .. } => "bad BEGIN line",
        E::Base64Decode(_) => "invalid base64",
        E::SectionTooLarge => "section too large",
        _ => "unreadable",
    }
}

/// PKCS#12: every certificate bag, in file order. Keys are decrypted by the
/// library as part of reading the container and dropped at once.
///
/// With a passphrase configured, a file exported without one (`openssl pkcs12
/// -export -passout pass:`) is read too: the empty passphrase is tried when the
/// configured one does not fit.
pub fn parse_pkcs12(bytes: &[u8], passphrase: Option<&str>) -> Result<Parsed, ParseError> {
    use p12_keystore::error::Error as E;
    let given = passphrase.unwrap_or("");
    let opened = match p12_keystore::Pkcs12Archive::from_pkcs12(bytes, given) {
        Err(e) if !given.is_empty() && bad_password(&e) => {
            p12_keystore::Pkcs12Archive::from_pkcs12(bytes, "")
        }
        other => other,
    };
    let archive = opened.map_err(|e| match e {
        // Without a MAC, a wrong passphrase shows up as a failed decryption.
        e if bad_password(&e) && passphrase.is_none() => ParseError::PassphraseRequired,
        e if bad_password(&e) => ParseError::WrongPassphrase,
        E::DerError(_) | E::InvalidVersion | E::InvalidLength | E::InvalidData => {
            ParseError::MalformedPkcs12 {
                what: "invalid structure",
            }
        }
        E::UnsupportedContentType => ParseError::MalformedPkcs12 {
            what: "unsupported content type",
        },
        E::UnsupportedEncryptionScheme | E::UnsupportedMacAlgorithm => {
            ParseError::MalformedPkcs12 {
                what: "unsupported algorithm",
            }
        }
        _ => ParseError::MalformedPkcs12 { what: "unreadable" },
    })?;
    let keys = archive.keys.len();
    let mut certs = Vec::with_capacity(archive.certs.len());
    for (index, bag) in archive.certs.iter().enumerate() {
        certs.push(cert_from_der(bag.cert.as_der(), index)?);
    }
    drop(archive);
    if certs.is_empty() {
        return Err(ParseError::NoCertificates { format: "PKCS#12" });
    }
    Ok(Parsed {
        format: Format::Pkcs12,
        certs,
        skipped_keys: keys,
        file_refs: Vec::new(),
    })
}

/// JKS/JCEKS: every certificate (key entries' chains and trusted entries),
/// in file order; the store password (the PKCS#12 passphrase setting) checks
/// the integrity hash when configured.
pub fn parse_keystore(bytes: &[u8], passphrase: Option<&str>) -> Result<Parsed, ParseError> {
    use super::jks::JksError;
    let store = super::jks::parse(bytes, passphrase).map_err(|e| match e {
        JksError::WrongPassword => ParseError::KeystoreWrongPassword,
        JksError::Malformed(what) => ParseError::MalformedKeystore { what },
    })?;
    let mut certs = Vec::with_capacity(store.certs.len());
    for (index, der) in store.certs.iter().enumerate() {
        certs.push(cert_from_der(der, index)?);
    }
    if certs.is_empty() {
        return Err(ParseError::NoCertificates {
            format: "Java keystore",
        });
    }
    Ok(Parsed {
        format: Format::Jks,
        certs,
        skipped_keys: store.keys,
        file_refs: Vec::new(),
    })
}

/// The errors a wrong passphrase causes: the MAC does not match, or (without a
/// MAC) decryption gives bad padding.
fn bad_password(e: &p12_keystore::error::Error) -> bool {
    use p12_keystore::error::Error as E;
    match e {
        E::MacError(_) | E::UnpadError => true,
        E::Pkcs5Error(m) => m == "PKCS#5 decryption failed",
        _ => false,
    }
}

/// kubeconfig: `clusters[].cluster.certificate-authority-data` then
/// `users[].user.client-certificate-data` (base64 of PEM or DER). Key data is never decoded.
pub fn parse_kubeconfig(bytes: &[u8]) -> Result<Parsed, ParseError> {
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_slice(bytes).map_err(|e| ParseError::MalformedKubeconfig {
            line: e.location().map(|l| l.line()).unwrap_or(0),
        })?;
    let mut blobs: Vec<(String, &'static str, &str)> = Vec::new();
    for (list, inner, field) in [
        ("clusters", "cluster", "certificate-authority-data"),
        ("users", "user", "client-certificate-data"),
    ] {
        let Some(items) = doc.get(list).and_then(|v| v.as_sequence()) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let name = item
                .get("name")
                .and_then(|n| n.as_str())
                .map(|n| truncate(n, 64))
                .unwrap_or_else(|| i.to_string());
            if let Some(data) = item
                .get(inner)
                .and_then(|c| c.get(field))
                .and_then(|d| d.as_str())
            {
                blobs.push((format!("{list}[{name}]"), field, data));
            }
        }
    }
    let mut certs = Vec::new();
    for (entry, field, data) in blobs {
        let cleaned: String = data.chars().filter(|c| !c.is_whitespace()).collect();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(cleaned.as_bytes())
            .map_err(|_| ParseError::KubeconfigBase64 {
                entry: entry.clone(),
                field,
            })?;
        if contains(&decoded, b"-----BEGIN ") {
            let offset = certs.len();
            let p = parse_pem(&decoded).map_err(|e| shift_index(e, offset))?;
            certs.extend(p.certs);
        } else {
            let index = certs.len();
            certs.push(cert_from_der(&decoded, index)?);
        }
    }
    let mut file_refs = Vec::new();
    for (list, inner, field) in [
        ("clusters", "cluster", "certificate-authority"),
        ("users", "user", "client-certificate"),
    ] {
        let Some(items) = doc.get(list).and_then(|v| v.as_sequence()) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let path = item
                .get(inner)
                .and_then(|c| c.get(field))
                .and_then(|d| d.as_str())
                .filter(|p| !p.is_empty());
            if let Some(path) = path {
                let name = item
                    .get("name")
                    .and_then(|n| n.as_str())
                    .map(|n| truncate(n, 64))
                    .unwrap_or_else(|| i.to_string());
                file_refs.push(FileRef {
                    entry: format!("{list}[{name}]"),
                    field,
                    path: path.to_string(),
                });
            }
        }
    }
    if certs.is_empty() && file_refs.is_empty() {
        return Err(ParseError::NoCertificates {
            format: "kubeconfig",
        });
    }
    Ok(Parsed {
        format: Format::Kubeconfig,
        certs,
        skipped_keys: 0,
        file_refs,
    })
}

pub(super) fn shift_index(e: ParseError, offset: usize) -> ParseError {
    match e {
        ParseError::TruncatedDer { index } => ParseError::TruncatedDer {
            index: index + offset,
        },
        ParseError::MalformedCertificate { index } => ParseError::MalformedCertificate {
            index: index + offset,
        },
        other => other,
    }
}

/// One DER certificate. `index` is only used in errors.
pub fn cert_from_der(der: &[u8], index: usize) -> Result<Cert, ParseError> {
    let (_, c) = x509_parser::parse_x509_certificate(der).map_err(|e| {
        if der_outer_len(der).is_some_and(|len| len > der.len()) {
            ParseError::TruncatedDer { index }
        } else {
            der_error(&e, index)
        }
    })?;
    Ok(describe(&c))
}

/// Total length (header + content) the outer DER SEQUENCE declares, if it is one.
fn der_outer_len(der: &[u8]) -> Option<usize> {
    if *der.first()? != 0x30 {
        return None;
    }
    let first = *der.get(1)? as usize;
    if first < 0x80 {
        return Some(2 + first);
    }
    let n = first & 0x7f;
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | *der.get(2 + i)? as usize;
    }
    Some(2 + n + len)
}

fn der_error(e: &x509_parser::nom::Err<x509_parser::error::X509Error>, index: usize) -> ParseError {
    use x509_parser::error::X509Error;
    use x509_parser::nom::Err;
    let truncated = match e {
        Err::Incomplete(_) => true,
        Err::Error(X509Error::Der(d)) | Err::Failure(X509Error::Der(d)) => {
            matches!(d, x509_parser::der_parser::error::Error::Incomplete(_))
        }
        _ => false,
    };
    if truncated {
        ParseError::TruncatedDer { index }
    } else {
        ParseError::MalformedCertificate { index }
    }
}

fn describe(c: &X509Certificate<'_>) -> Cert {
    let (ocsp_urls, crl_urls) = revocation_urls(c);
    let cn = |name: &x509_parser::x509::X509Name<'_>| {
        name.iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .map(|s| truncate(s, NAME_LABEL_MAX))
            .unwrap_or_default()
    };
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = c.subject_alternative_name() {
        for gn in &ext.value.general_names {
            match gn {
                GeneralName::DNSName(d) => sans.push((*d).to_string()),
                GeneralName::IPAddress(b) => {
                    if let Some(ip) = ip_from_bytes(b) {
                        sans.push(ip.to_string());
                    }
                }
                GeneralName::RFC822Name(m) => sans.push(format!("email:{m}")),
                GeneralName::URI(u) => sans.push(format!("uri:{u}")),
                _ => {}
            }
        }
    }
    let spki = c.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    let parsed_bits = spki.parsed().map(|k| k.key_size()).unwrap_or(0);
    let (key_type, key_bits) = match alg.as_str() {
        "1.2.840.113549.1.1.1" => ("rsa".to_string(), parsed_bits),
        "1.2.840.10045.2.1" => {
            let curve_bits = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .and_then(|o| match o.as_str() {
                    "1.2.840.10045.3.1.7" => Some(256),
                    "1.3.132.0.34" => Some(384),
                    "1.3.132.0.35" => Some(521),
                    "1.3.132.0.10" => Some(256),
                    _ => None,
                });
            ("ecdsa".to_string(), curve_bits.unwrap_or(parsed_bits))
        }
        "1.3.101.112" => ("ed25519".to_string(), 256),
        "1.3.101.113" => ("ed448".to_string(), 456),
        "1.2.840.10040.4.1" => ("dsa".to_string(), parsed_bits),
        _ => {
            let bits = match spki.parsed() {
                Ok(PublicKey::Unknown(b)) => b.len() * 8,
                _ => parsed_bits,
            };
            (alg.clone(), bits)
        }
    };
    let sig_oid = &c.signature_algorithm.algorithm;
    let signature_algorithm =
        x509_parser::objects::oid2sn(sig_oid, x509_parser::objects::oid_registry())
            .map(str::to_string)
            .unwrap_or_else(|_| sig_oid.to_id_string());
    Cert {
        serial: serial_hex(c.raw_serial()),
        subject_cn: cn(c.subject()),
        issuer_cn: cn(c.issuer()),
        sans,
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
        key_type,
        key_bits: u32::try_from(key_bits).unwrap_or(u32::MAX),
        signature_algorithm,
        is_ca: c.is_ca(),
        self_signed: c.subject().as_raw() == c.issuer().as_raw(),
        ids: CertIds {
            subject: c.subject().as_raw().to_vec(),
            issuer: c.issuer().as_raw().to_vec(),
            aki: aki_of(c.extensions()),
            ski: c.extensions().iter().find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.0.to_vec())
                }
                _ => None,
            }),
            spki: c.public_key().raw.to_vec(),
            serial_raw: c.raw_serial().to_vec(),
            ocsp_urls,
            crl_urls,
        },
    }
}

/// The key identifier of an authority key identifier extension.
/// The OCSP responder URLs (AIA) and CRL distribution point URLs of `c`
/// (at most 4 of each, each at most 512 bytes).
fn revocation_urls(c: &x509_parser::certificate::X509Certificate<'_>) -> (Vec<String>, Vec<String>) {
    use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
    let (mut ocsp, mut crl) = (Vec::new(), Vec::new());
    let keep = |list: &mut Vec<String>, u: &str| {
        if list.len() < 4 && u.len() <= 512 && !list.iter().any(|x| x == u) {
            list.push(u.to_string());
        }
    };
    for e in c.extensions() {
        match e.parsed_extension() {
            ParsedExtension::AuthorityInfoAccess(aia) => {
                for d in aia.iter() {
                    if d.access_method == x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_OCSP {
                        if let GeneralName::URI(u) = d.access_location {
                            keep(&mut ocsp, u);
                        }
                    }
                }
            }
            ParsedExtension::CRLDistributionPoints(points) => {
                for p in points.iter() {
                    if let Some(DistributionPointName::FullName(names)) = &p.distribution_point {
                        for n in names {
                            if let GeneralName::URI(u) = n {
                                keep(&mut crl, u);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    (ocsp, crl)
}

pub fn aki_of(exts: &[x509_parser::extensions::X509Extension<'_>]) -> Option<Vec<u8>> {
    exts.iter().find_map(|e| match e.parsed_extension() {
        x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
            a.key_identifier.as_ref().map(|k| k.0.to_vec())
        }
        _ => None,
    })
}

fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => {
            let a: [u8; 4] = b.try_into().ok()?;
            Some(std::net::IpAddr::from(a))
        }
        16 => {
            let a: [u8; 16] = b.try_into().ok()?;
            Some(std::net::IpAddr::from(a))
        }
        _ => None,
    }
}

/// Lowercase hex, leading zero bytes dropped (at least one byte kept).
pub fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    let mut s = String::with_capacity(raw.len() * 2);
    for b in &raw[start.min(raw.len())..] {
        s.push_str(&format!("{b:02x}"));
    }
    if s.is_empty() {
        s.push('0');
    }
    s
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Join with `,`, cutting at an entry boundary and appending `,…+N` when longer than `max`.
pub fn bounded_join(items: &[String], max: usize) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        let extra = if out.is_empty() {
            item.len()
        } else {
            item.len() + 1
        };
        let rest = items.len() - i;
        let marker = format!(",…+{rest}");
        if out.len() + extra + if rest > 1 { marker.len() } else { 0 } > max {
            out.push_str(if out.is_empty() {
                &marker[1..]
            } else {
                &marker
            });
            return out;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(item);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(params: rcgen::CertificateParams) -> (String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), cert.der().to_vec())
    }

    fn params(cn: &str, sans: &[&str]) -> rcgen::CertificateParams {
        let mut p =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0x12, 0xab]));
        p.not_before = rcgen::date_time_ymd(2024, 1, 2);
        p.not_after = rcgen::date_time_ymd(2030, 6, 7);
        p
    }

    #[test]
    fn pem_bundle_in_order_with_details() {
        let (a, _) = make(params("alpha", &["a.lan", "10.0.0.1"]));
        let (b, _) = make(params("beta", &["b.lan"]));
        let text = format!("junk before\n{a}\n{b}");
        let p = parse_file(text.as_bytes(), Some("pem"), None).unwrap();
        assert_eq!(p.format, Format::Pem);
        assert_eq!(p.certs.len(), 2);
        let c = &p.certs[0];
        assert_eq!(c.subject_cn, "alpha");
        assert_eq!(c.issuer_cn, "alpha");
        assert!(c.self_signed);
        assert_eq!(c.serial, "12ab");
        assert_eq!(c.sans, vec!["a.lan".to_string(), "10.0.0.1".to_string()]);
        assert_eq!(c.key_type, "ecdsa");
        assert_eq!(c.key_bits, 256);
        assert_eq!(c.signature_algorithm, "ecdsa-with-SHA256");
        assert_eq!(c.not_before, 1_704_153_600);
        assert_eq!(c.not_after, 1_907_020_800);
        assert_eq!(p.certs[1].subject_cn, "beta");
    }

    #[test]
    fn der_single_and_truncated() {
        let (_, der) = make(params("d", &["d.lan"]));
        let p = parse_file(&der, Some("der"), None).unwrap();
        assert_eq!(p.format, Format::Der);
        assert_eq!(p.certs[0].subject_cn, "d");
        let e = parse_file(&der[..der.len() / 2], Some("der"), None).unwrap_err();
        assert_eq!(e, ParseError::TruncatedDer { index: 0 });
        assert_eq!(e.metric_label(), "truncated_der");
    }

    #[test]
    fn bad_inputs_are_typed_errors_without_contents() {
        assert_eq!(parse_file(b"", None, None).unwrap_err(), ParseError::Empty);
        assert_eq!(
            parse_file(b" \n\t", None, None).unwrap_err(),
            ParseError::Empty
        );
        assert_eq!(
            parse_file(b"hello s3cr3t", None, None).unwrap_err(),
            ParseError::UnknownFormat
        );
        let garbage =
            b"-----BEGIN CERTIFICATE-----\nnot*base64*s3cr3t\n-----END CERTIFICATE-----\n";
        let e = parse_file(garbage, None, None).unwrap_err();
        assert_eq!(e.metric_label(), "malformed_pem");
        assert!(!e.to_string().contains("s3cr3t"));
        let not_der = b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        assert_eq!(
            parse_file(not_der, None, None).unwrap_err().metric_label(),
            "malformed_certificate"
        );
        let unterminated = b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n";
        assert_eq!(
            parse_file(unterminated, None, None)
                .unwrap_err()
                .metric_label(),
            "malformed_pem"
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let e = parse_file(key.serialize_pem().as_bytes(), None, None).unwrap_err();
        assert_eq!(e, ParseError::PrivateKeyOnly { keys: 1 });
    }

    #[test]
    fn key_blocks_beside_certificates_are_skipped() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params("k", &[]).self_signed(&key).unwrap();
        let text = format!("{}{}", key.serialize_pem(), cert.pem());
        let p = parse_file(text.as_bytes(), None, None).unwrap();
        assert_eq!(p.certs.len(), 1);
        assert_eq!(p.skipped_keys, 1);
    }

    #[test]
    fn kubeconfig_ca_and_client_data() {
        let (ca, _) = make(params("kube-ca", &[]));
        let (_, client_der) = make(params("admin", &[]));
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: home\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: c2VjcmV0\n",
            b64(ca.as_bytes()),
            b64(&client_der)
        );
        let p = parse_file(text.as_bytes(), Some("yaml"), None).unwrap();
        assert_eq!(p.format, Format::Kubeconfig);
        let cns: Vec<_> = p.certs.iter().map(|c| c.subject_cn.as_str()).collect();
        assert_eq!(cns, ["kube-ca", "admin"]);
        let bad = "kind: Config\nclusters:\n- name: x\n  cluster:\n    certificate-authority-data: '!!!'\n";
        let e = parse_file(bad.as_bytes(), None, None).unwrap_err();
        assert_eq!(e.metric_label(), "malformed_kubeconfig");
        assert!(e.to_string().contains("clusters[x]"), "{e}");
    }

    #[test]
    fn serials_and_bounded_sans() {
        assert_eq!(serial_hex(&[0, 0, 1, 2]), "0102");
        assert_eq!(serial_hex(&[0]), "00");
        assert_eq!(serial_hex(&[]), "0");
        let many: Vec<String> = (0..200).map(|i| format!("host{i}.example.lan")).collect();
        let s = bounded_join(&many, SANS_LABEL_MAX);
        assert!(s.len() <= SANS_LABEL_MAX, "{}", s.len());
        assert!(s.starts_with("host0.example.lan,host1.example.lan"));
        assert!(s.contains(",…+"), "{s}");
        let shown = s.split(',').count() - 1;
        let rest: usize = s.rsplit("+").next().unwrap().parse().unwrap();
        assert_eq!(shown + rest, 200);
        assert_eq!(bounded_join(&["a".into(), "b".into()], 100), "a,b");
    }
    #[test]
    fn byte_order_marks_and_openssl_label_aliases_are_read() {
        let (a, _) = make(params("alpha", &[]));
        let (b, _) = make(params("beta", &[]));
        // A BOM at the start (Windows editors) and one before a second file's text (cat a b).
        let text = format!("\u{feff}{a}\u{feff}{b}");
        let p = parse_file(text.as_bytes(), Some("pem"), None).unwrap();
        let cns: Vec<_> = p.certs.iter().map(|c| c.subject_cn.as_str()).collect();
        assert_eq!(cns, ["alpha", "beta"]);
        // openssl's other names for a certificate block.
        let trusted = a.replace("CERTIFICATE-----", "TRUSTED CERTIFICATE-----");
        let x509 = b.replace("CERTIFICATE-----", "X509 CERTIFICATE-----");
        let p = parse_file(format!("{trusted}{x509}").as_bytes(), None, None).unwrap();
        assert_eq!(p.certs.len(), 2);
    }

    #[test]
    fn a_certificate_block_that_is_not_read_is_an_error() {
        let (a, _) = make(params("alpha", &[]));
        let (b, _) = make(params("beta", &[]));
        let indented: String = b.lines().map(|l| format!("  {l}\n")).collect();
        let e = parse_file(format!("{a}{indented}").as_bytes(), None, None).unwrap_err();
        assert_eq!(
            e,
            ParseError::UnreadCertificateBlocks {
                markers: 2,
                read: 1
            }
        );
        assert_eq!(e.metric_label(), "malformed_pem");
    }

    #[test]
    fn encrypted_key_alone_is_a_key_not_a_certificate() {
        let text = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(
            parse_file(text.as_bytes(), None, None).unwrap_err(),
            ParseError::PrivateKeyOnly { keys: 1 }
        );
    }

    #[test]
    fn concatenated_der_certificates_are_all_read() {
        let (_, a) = make(params("alpha", &[]));
        let (_, b) = make(params("beta", &[]));
        let both = [a.as_slice(), b.as_slice()].concat();
        let p = parse_file(&both, Some("der"), None).unwrap();
        let cns: Vec<_> = p.certs.iter().map(|c| c.subject_cn.as_str()).collect();
        assert_eq!(cns, ["alpha", "beta"]);
        // Trailing bytes that are not a certificate are ignored, as openssl does.
        let tail = [a.as_slice(), b"\n\0\0"].concat();
        assert_eq!(parse_file(&tail, Some("der"), None).unwrap().certs.len(), 1);
    }

    #[test]
    fn kubeconfigs_are_recognised_by_content() {
        let yaml = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n  name: k3s\ncontexts: []\nkind: Config\npreferences: {}\nusers: []\n";
        assert!(is_kubeconfig_text(yaml));
        assert!(is_kubeconfig_text(&format!("\u{feff}{yaml}")));
        assert!(is_kubeconfig_text(
            &yaml.replace("kind: Config", "kind: \"Config\" # top")
        ));
        let json = r#"{"kind": "Config", "apiVersion": "v1", "clusters": [], "users": []}"#;
        assert!(is_kubeconfig_text(json));
        assert!(is_kubeconfig_text(&json.replace(": ", ":")));
        // kubectl's discovery cache, other Kubernetes objects, unrelated YAML.
        assert!(!is_kubeconfig_text(
            r#"{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"v1","resources":[]}"#
        ));
        assert!(!is_kubeconfig_text(
            "apiVersion: v1\nkind: ConfigMap\ndata:\n  clusters: x\n"
        ));
        assert!(!is_kubeconfig_text("apiVersion: v1\nkind: Config\n"));
        assert!(!is_kubeconfig_text(
            "  kind: Config\napiVersion: v1\nclusters: []\n"
        ));
    }

    #[test]
    fn kubeconfig_naming_certificate_files_lists_them() {
        let (ca, _) = make(params("kube-ca", &[]));
        let b64 = base64::engine::general_purpose::STANDARD.encode(ca.as_bytes());
        // minikube's entries beside an embedded one, as `minikube start` merges them.
        let text = format!("apiVersion: v1\nkind: Config\nclusters:\n- name: k3s\n  cluster:\n    certificate-authority-data: {b64}\n- name: minikube\n  cluster:\n    certificate-authority: /home/u/.minikube/ca.crt\n    server: https://192.168.49.2:8443\nusers:\n- name: minikube\n  user:\n    client-certificate: profiles/minikube/client.crt\n    client-key: profiles/minikube/client.key\n");
        let p = parse_file(text.as_bytes(), None, None).unwrap();
        assert_eq!(p.certs.len(), 1);
        let refs: Vec<_> = p
            .file_refs
            .iter()
            .map(|r| (r.entry.as_str(), r.field, r.path.as_str()))
            .collect();
        assert_eq!(
            refs,
            [
                (
                    "clusters[minikube]",
                    "certificate-authority",
                    "/home/u/.minikube/ca.crt"
                ),
                (
                    "users[minikube]",
                    "client-certificate",
                    "profiles/minikube/client.crt"
                )
            ]
        );
        let tokens_only = "apiVersion: v1\nkind: Config\nclusters:\n- name: x\n  cluster:\n    server: https://x\nusers:\n- name: x\n  user:\n    token: abc\n";
        let e = parse_file(tokens_only.as_bytes(), None, None).unwrap_err();
        assert_eq!(e.metric_label(), "no_certificates");
        assert!(!e.to_string().contains("abc"));
    }
}
