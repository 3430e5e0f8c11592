//! Active revocation checks of an endpoint's leaf certificate (`revocation:`
//! per endpoint or `/probe` module; off by default): an OCSP request to the
//! responder named in the leaf's authority information access, and the CRL
//! downloaded from its distribution point.
//!
//! The issuer is the certificate of the served chain (else of the endpoint's
//! `ca_file`) whose subject is the leaf's issuer (and whose key id matches,
//! when both carry one). An OCSP
//! answer counts only when its signature verifies against the issuer's key, or
//! against a responder certificate included in the response that the issuer
//! signed, that is valid now and carries the OCSP-signing extended key usage;
//! a downloaded CRL only when its signature verifies against the issuer. A
//! check that fails for any reason is "unknown" with a reason, never "good".
//!
//! Answers are cached per issuer and serial until the answer's nextUpdate or
//! `cache_for`, whichever comes first; failures are not cached.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use sha1::Digest;
use x509_parser::prelude::FromDer;

use crate::core::config::values::{ByteSize, HumanDuration};

use super::crl;
use super::ocsp::{self, OcspStatus};
use super::parse::{serial_hex, Cert};

/// `revocation:` of an endpoint or `/probe` module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationConfig {
    /// Ask the leaf's OCSP responder (AIA) for its status.
    #[serde(default)]
    pub ocsp: bool,
    /// Download the leaf's CRL (distribution point, http only).
    #[serde(default)]
    pub crl: bool,
    /// Per request (connect, send, read); default 10 s.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Longest an answer is reused (it is never reused past its nextUpdate); default 1 h.
    #[serde(default)]
    pub cache_for: Option<HumanDuration>,
    /// Largest CRL (or OCSP response) read; default 8 MiB.
    #[serde(default)]
    pub max_size: Option<ByteSize>,
}

impl RevocationConfig {
    pub fn enabled(&self) -> bool {
        self.ocsp || self.crl
    }
    fn timeout(&self) -> Duration {
        self.timeout.map(|t| t.0).unwrap_or(Duration::from_secs(10))
    }
    fn cache_for(&self) -> Duration {
        self.cache_for
            .map(|t| t.0)
            .unwrap_or(Duration::from_secs(3600))
    }
    fn max_size(&self) -> u64 {
        self.max_size.map(|b| b.0).unwrap_or(8 << 20)
    }

    /// Load-time checks; the message names the key below `revocation`.
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout.is_some_and(|t| t.0.is_zero()) {
            return Err("revocation.timeout must be longer than zero".into());
        }
        if self.max_size.is_some_and(|b| b.0 == 0) {
            return Err("revocation.max_size must be larger than zero".into());
        }
        Ok(())
    }
}

/// How the status was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Ocsp,
    Crl,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Ocsp => "ocsp",
            Method::Crl => "crl",
        }
    }
}

/// A verified answer about the leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: OcspStatus,
    /// Unix seconds; the answer's nextUpdate.
    pub next_update: Option<i64>,
}

/// Why a check gave no usable answer. Never quotes what a server sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    #[error("the certificate names no {0}")]
    NoUrl(&'static str),
    #[error("{0}: only http:// URLs are fetched")]
    UnsupportedUrl(String),
    #[error("the issuer's certificate is neither in the served chain nor in ca_file (the answer's signature cannot be checked)")]
    NoIssuer,
    #[error("{url}: cannot connect ({what})")]
    Connect { url: String, what: String },
    #[error("{url}: no answer within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("{url}: HTTP status {status}")]
    HttpStatus { url: String, status: u16 },
    #[error("{url}: the answer is larger than max_size ({max} bytes)")]
    TooLarge { url: String, max: u64 },
    #[error("{url}: {what}")]
    Malformed { url: String, what: String },
    #[error("{url}: the OCSP responder refused the request (responseStatus {status})")]
    NotSuccessful { url: String, status: u8 },
    #[error("{url}: the answer holds no status for this certificate")]
    NoStatus { url: String },
    #[error("{url}: the signature does not verify against the issuer or a responder certificate it signed")]
    BadSignature { url: String },
    #[error("{url}: the answer is out of date or not yet valid ({what})")]
    Stale { url: String, what: String },
}

impl RevocationError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            RevocationError::NoUrl(_) => "no_url",
            RevocationError::UnsupportedUrl(_) => "unsupported_url",
            RevocationError::NoIssuer => "no_issuer",
            RevocationError::Connect { .. } => "connect",
            RevocationError::Timeout { .. } => "timeout",
            RevocationError::HttpStatus { .. } => "http_status",
            RevocationError::TooLarge { .. } => "too_large",
            RevocationError::Malformed { .. } => "malformed",
            RevocationError::NotSuccessful { .. } => "not_successful",
            RevocationError::NoStatus { .. } => "no_status",
            RevocationError::BadSignature { .. } => "bad_signature",
            RevocationError::Stale { .. } => "stale",
        }
    }
}

/// Every `reason` of `certificate_revocation_check_error_info` (README lists them).
pub const REASONS: &[&str] = &[
    "no_url",
    "unsupported_url",
    "no_issuer",
    "connect",
    "timeout",
    "http_status",
    "too_large",
    "malformed",
    "not_successful",
    "no_status",
    "bad_signature",
    "stale",
    "client",
];

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub method: Method,
    /// `Err((reason, message))`.
    pub outcome: Result<Answer, (&'static str, String)>,
}

/// Tolerated clock skew for thisUpdate in the future.
const SKEW: i64 = 300;
/// Cache entries kept at most (expired ones are dropped first).
const CACHE_MAX: usize = 4096;

type CacheKey = (Method, Vec<u8>, String);

/// The HTTP client and the answer cache; one per monitor (and one for `/probe`).
pub struct Checker {
    client: Result<reqwest::Client, String>,
    cache: std::sync::Mutex<HashMap<CacheKey, (Answer, SystemTime)>>,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker").finish_non_exhaustive()
    }
}

impl Default for Checker {
    fn default() -> Self {
        Self::new()
    }
}

impl Checker {
    pub fn new() -> Self {
        // Only http:// is fetched; the TLS configuration is what the builder needs.
        let client = crate::net::tls::client_config(
            crate::net::tls::Verify::Full(crate::net::tls::web_roots()),
            None,
        )
        .map_err(|e| e.to_string())
        .and_then(|tls| {
            crate::net::http::client_builder(tls, 0)
                .http1_only()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .build()
                .map_err(|e| e.to_string())
        });
        Checker {
            client,
            cache: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The checks `cfg` asks for, about `chain`'s leaf, at `now`. The issuer is
    /// looked for in the chain, then in `anchors` (the endpoint's `ca_file`).
    pub async fn check(
        &self,
        cfg: &RevocationConfig,
        chain: &[Cert],
        anchors: &[Cert],
        now: SystemTime,
    ) -> Vec<Check> {
        let mut out = Vec::new();
        let Some(leaf) = chain.first() else {
            return out;
        };
        let issuer = find_issuer(leaf, &chain[1..]).or_else(|| find_issuer(leaf, anchors));
        // Both at once: the probe's budget holds one `timeout`, not two.
        let methods = [(cfg.ocsp, Method::Ocsp), (cfg.crl, Method::Crl)];
        let runs = methods.iter().filter(|(on, _)| *on).map(|(_, method)| async move {
            let outcome = self.check_one(cfg, *method, leaf, issuer, now).await;
            if let Err((reason, message)) = &outcome {
                tracing::warn!(monitor = "certificate_expiry", method = method.as_str(), reason, "revocation check failed: {message}");
            }
            Check {
                method: *method,
                outcome,
            }
        });
        out.extend(futures::future::join_all(runs).await);
        out
    }

    async fn check_one(
        &self,
        cfg: &RevocationConfig,
        method: Method,
        leaf: &Cert,
        issuer: Option<&Cert>,
        now: SystemTime,
    ) -> Result<Answer, (&'static str, String)> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| ("client", format!("the HTTP client cannot be built: {e}")))?;
        let fail = |e: RevocationError| (e.metric_label(), e.to_string());
        let issuer = issuer.ok_or(RevocationError::NoIssuer).map_err(fail)?;
        let key = (method, issuer.ids.spki.clone(), leaf.serial.clone());
        let now_s = unix(now);
        if let Some((a, until)) = self.cache_get(&key) {
            if now < until {
                return Ok(a);
            }
        }
        let answer = match method {
            Method::Ocsp => ocsp_check(client, cfg, leaf, issuer, now_s).await,
            Method::Crl => crl_check(client, cfg, leaf, issuer, now_s).await,
        }
        .map_err(fail)?;
        let mut until = now + cfg.cache_for();
        if let Some(n) = answer.next_update {
            let next = SystemTime::UNIX_EPOCH + Duration::from_secs(n.max(0) as u64);
            until = until.min(next);
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, u)| *u > now);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, (answer, until));
        Ok(answer)
    }

    fn cache_get(&self, key: &CacheKey) -> Option<(Answer, SystemTime)> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
    }
}

/// The certificates of an endpoint's `ca_file` (PEM), as issuer candidates;
/// none when it is not set or cannot be read (the probe reports that).
pub fn anchors(ca_file: Option<&std::path::Path>) -> Vec<Cert> {
    ca_file
        .and_then(|p| crate::core::safe_open::read(p).ok())
        .and_then(|b| super::parse::parse_pem(&b).ok())
        .map(|p| p.certs)
        .unwrap_or_default()
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The certificate of `rest` that issued `leaf`: subject = leaf's issuer, and
/// key ids equal when both have one.
fn find_issuer<'a>(leaf: &Cert, rest: &'a [Cert]) -> Option<&'a Cert> {
    rest.iter().find(|c| {
        c.ids.subject == leaf.ids.issuer
            && match (&c.ids.ski, &leaf.ids.aki) {
                (Some(s), Some(a)) => s == a,
                _ => true,
            }
    })
}

/// The first http:// URL of `urls`.
fn http_url(urls: &[String], what: &'static str) -> Result<reqwest::Url, RevocationError> {
    let first = urls.first().ok_or(RevocationError::NoUrl(what))?;
    for u in urls {
        if let Ok(mut url) = reqwest::Url::parse(u) {
            if url.scheme() == "http" && url.host_str().is_some_and(|h| !h.is_empty()) {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                return Ok(url);
            }
        }
    }
    Err(RevocationError::UnsupportedUrl(
        first.chars().take(200).collect(),
    ))
}

/// GET (`body` None) or POST an OCSP request; the answer's body, at most `max` bytes.
async fn fetch(
    client: &reqwest::Client,
    url: &reqwest::Url,
    body: Option<Vec<u8>>,
    timeout: Duration,
    max: u64,
) -> Result<Vec<u8>, RevocationError> {
    let shown = url.as_str().to_string();
    let req = match body {
        Some(b) => client
            .post(url.clone())
            .header("content-type", "application/ocsp-request")
            .body(b),
        None => client.get(url.clone()),
    }
    .timeout(timeout);
    let run = async {
        let err = |e: reqwest::Error| {
            if e.is_timeout() {
                RevocationError::Timeout {
                    url: shown.clone(),
                    after: timeout,
                }
            } else {
                let causes = crate::net::http::causes(&e as &(dyn std::error::Error + 'static));
                let what = causes
                    .iter()
                    .find_map(|c| c.downcast_ref::<std::io::Error>())
                    .map(|io| io.kind().to_string())
                    .unwrap_or_else(|| "request failed".into());
                RevocationError::Connect {
                    url: shown.clone(),
                    what,
                }
            }
        };
        let mut resp = req.send().await.map_err(err)?;
        if !resp.status().is_success() {
            return Err(RevocationError::HttpStatus {
                url: shown.clone(),
                status: resp.status().as_u16(),
            });
        }
        if resp.content_length().is_some_and(|l| l > max) {
            return Err(RevocationError::TooLarge {
                url: shown.clone(),
                max,
            });
        }
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(err)? {
            if out.len() as u64 + chunk.len() as u64 > max {
                return Err(RevocationError::TooLarge {
                    url: shown.clone(),
                    max,
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    };
    tokio::time::timeout(timeout + Duration::from_millis(200), run)
        .await
        .unwrap_or_else(|_| {
            Err(RevocationError::Timeout {
                url: shown.clone(),
                after: timeout,
            })
        })
}

/// Whether `signature` (BIT STRING contents) by algorithm `sig_alg` (DER) over
/// `data` verifies with the key `spki` (DER).
fn verifies(spki: &[u8], sig_alg: &[u8], signature: &[u8], data: &[u8]) -> bool {
    let Ok((_, key)) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki) else {
        return false;
    };
    let Ok((_, alg)) = x509_parser::x509::AlgorithmIdentifier::from_der(sig_alg) else {
        return false;
    };
    let Some((&unused, bits)) = signature.split_first() else {
        return false;
    };
    let sig = x509_parser::asn1_rs::BitString::new(unused, bits);
    x509_parser::verify::verify_signature(&key, &alg, &sig, data).is_ok()
}

/// Whether `der` is a responder certificate `issuer` delegated OCSP signing
/// to (RFC 6960 4.2.2.2), valid at `now`; its key (SPKI DER) if so.
fn delegated_key(der: &[u8], issuer: &Cert, now: i64) -> Option<Vec<u8>> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    if c.issuer().as_raw() != issuer.ids.subject.as_slice() {
        return None;
    }
    let (_, issuer_key) =
        x509_parser::x509::SubjectPublicKeyInfo::from_der(&issuer.ids.spki).ok()?;
    c.verify_signature(Some(&issuer_key)).ok()?;
    let eku = c.extended_key_usage().ok()??;
    if !eku.value.ocsp_signing {
        return None;
    }
    let v = c.validity();
    if now < v.not_before.timestamp() || now > v.not_after.timestamp() {
        return None;
    }
    Some(c.public_key().raw.to_vec())
}

fn time_check(
    url: &str,
    this_update: i64,
    next_update: Option<i64>,
    now: i64,
) -> Result<(), RevocationError> {
    if this_update > now + SKEW {
        return Err(RevocationError::Stale {
            url: url.to_string(),
            what: "thisUpdate is in the future".into(),
        });
    }
    if next_update.is_some_and(|n| n < now) {
        return Err(RevocationError::Stale {
            url: url.to_string(),
            what: "nextUpdate is past".into(),
        });
    }
    Ok(())
}

/// The CertID hashes of `leaf` under `issuer`: SHA-1 of the issuer's name (the
/// leaf's issuer field) and of the issuer's public key bits.
pub fn cert_id_hashes(leaf: &Cert, issuer: &Cert) -> Result<(Vec<u8>, Vec<u8>), ocsp::OcspError> {
    let name = sha1::Sha1::digest(&leaf.ids.issuer).to_vec();
    let key = sha1::Sha1::digest(ocsp::spki_key_bits(&issuer.ids.spki)?).to_vec();
    Ok((name, key))
}

/// Ask the OCSP responder; check the answer and its signature.
async fn ocsp_check(
    client: &reqwest::Client,
    cfg: &RevocationConfig,
    leaf: &Cert,
    issuer: &Cert,
    now: i64,
) -> Result<Answer, RevocationError> {
    let url = http_url(&leaf.ids.ocsp_urls, "OCSP responder (authority information access)")?;
    let shown = url.as_str().to_string();
    let id = cert_id_hashes(leaf, issuer).map_err(|e| malformed(&shown, format!("issuer key: {e}")))?;
    let request = ocsp::build_request(&id.0, &id.1, &leaf.ids.serial_raw);
    let body = fetch(client, &url, Some(request), cfg.timeout(), cfg.max_size()).await?;
    verify_ocsp(&body, &shown, leaf, issuer, &id, now)
}

/// An answer from `url` that cannot be read (what is wrong, never its bytes).
fn malformed(url: &str, what: String) -> RevocationError {
    RevocationError::Malformed {
        url: url.to_string(),
        what,
    }
}

/// Check an OCSP response `body` from `url` about `leaf` (issued by `issuer`),
/// whose request asked about the CertID hashes `id` (from [`cert_id_hashes`]).
pub fn verify_ocsp(
    body: &[u8],
    url: &str,
    leaf: &Cert,
    issuer: &Cert,
    id: &(Vec<u8>, Vec<u8>),
    now: i64,
) -> Result<Answer, RevocationError> {
    let basic = ocsp::parse_basic(body).map_err(|e| match e {
        ocsp::OcspError::NotSuccessful(status) => RevocationError::NotSuccessful {
            url: url.to_string(),
            status,
        },
        other => malformed(url, other.to_string()),
    })?;
    let (name_hash, key_hash) = id;
    let single = basic
        .responses
        .iter()
        .find(|r| {
            r.hash_oid == ocsp::OID_SHA1
                && r.name_hash == name_hash.as_slice()
                && r.key_hash == key_hash.as_slice()
                && serial_hex(r.serial) == leaf.serial
        })
        .ok_or_else(|| RevocationError::NoStatus {
            url: url.to_string(),
        })?;
    let by_issuer = verifies(&issuer.ids.spki, basic.sig_alg, basic.signature, basic.tbs);
    let by_delegate = || {
        basic.certs.iter().any(|der| {
            delegated_key(der, issuer, now)
                .is_some_and(|k| verifies(&k, basic.sig_alg, basic.signature, basic.tbs))
        })
    };
    if !by_issuer && !by_delegate() {
        return Err(RevocationError::BadSignature {
            url: url.to_string(),
        });
    }
    time_check(url, single.this_update, single.next_update, now)?;
    Ok(Answer {
        status: single.status,
        next_update: single.next_update,
    })
}

/// Download the CRL; check its signature and whether it lists the leaf.
async fn crl_check(
    client: &reqwest::Client,
    cfg: &RevocationConfig,
    leaf: &Cert,
    issuer: &Cert,
    now: i64,
) -> Result<Answer, RevocationError> {
    let url = http_url(&leaf.ids.crl_urls, "CRL distribution point")?;
    let shown = url.as_str().to_string();
    let body = fetch(client, &url, None, cfg.timeout(), cfg.max_size()).await?;
    verify_crl(&body, &shown, leaf, issuer, now)
}

/// Check a downloaded CRL `body` from `url` about `leaf` (issued by `issuer`).
pub fn verify_crl(
    body: &[u8],
    url: &str,
    leaf: &Cert,
    issuer: &Cert,
    now: i64,
) -> Result<Answer, RevocationError> {
    let list = crl::parse_crls(body).map_err(|e| malformed(url, format!("not a CRL: {e}")))?;
    let mut covering = list.iter().filter(|c| c.covers(leaf)).peekable();
    if covering.peek().is_none() {
        return Err(RevocationError::NoStatus {
            url: url.to_string(),
        });
    }
    let mut answer: Option<Answer> = None;
    for c in covering {
        if c.verify_with(issuer) != Some(true) {
            return Err(RevocationError::BadSignature {
                url: url.to_string(),
            });
        }
        time_check(url, c.this_update, c.next_update, now)?;
        let status = if c.revoked.contains(&leaf.serial) {
            OcspStatus::Revoked
        } else {
            OcspStatus::Good
        };
        let next = match (answer.and_then(|a| a.next_update), c.next_update) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let worse = answer.is_some_and(|a| a.status == OcspStatus::Revoked);
        answer = Some(Answer {
            status: if worse { OcspStatus::Revoked } else { status },
            next_update: next,
        });
    }
    answer.ok_or_else(|| RevocationError::NoStatus {
        url: url.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_and_every_reason_is_listed() {
        assert_eq!(
            http_url(&[], "x").unwrap_err(),
            RevocationError::NoUrl("x")
        );
        assert_eq!(
            http_url(&["ldap://x/cn=crl".into()], "x").unwrap_err().metric_label(),
            "unsupported_url"
        );
        let u = http_url(
            &["ldap://x/".into(), "http://user:pw@ocsp.lan:8080/a".into()],
            "x",
        )
        .unwrap();
        assert_eq!(u.as_str(), "http://ocsp.lan:8080/a");
        let s = || String::new();
        let all = [
            RevocationError::NoUrl(""),
            RevocationError::UnsupportedUrl(s()),
            RevocationError::NoIssuer,
            RevocationError::Connect { url: s(), what: s() },
            RevocationError::Timeout {
                url: s(),
                after: Duration::ZERO,
            },
            RevocationError::HttpStatus { url: s(), status: 500 },
            RevocationError::TooLarge { url: s(), max: 1 },
            RevocationError::Malformed { url: s(), what: s() },
            RevocationError::NotSuccessful { url: s(), status: 1 },
            RevocationError::NoStatus { url: s() },
            RevocationError::BadSignature { url: s() },
            RevocationError::Stale { url: s(), what: s() },
        ];
        let mut labels: Vec<&str> = all.iter().map(|e| e.metric_label()).collect();
        labels.push("client");
        assert_eq!(labels, REASONS);
    }

    #[test]
    fn time_checks() {
        assert!(time_check("u", 100, Some(200), 150).is_ok());
        assert!(time_check("u", 100, None, 150).is_ok());
        assert!(time_check("u", 100, Some(120), 150).is_err());
        assert!(time_check("u", 1000, Some(2000), 150).is_err());
    }
}
