//! OCSP (RFC 6960): the response an endpoint staples to its handshake (only
//! what is exported — the leaf's status, thisUpdate and nextUpdate; the
//! staple's signature is not verified), and for the active check
//! (`revocation.rs`) the request (SHA-1 CertID, as `openssl ocsp` sends it)
//! and the parts of a BasicOCSPResponse its signature check needs. A small
//! bounds-checked DER reader and writer.

use super::parse::serial_hex;

/// A leaf's status in a stapled OCSP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OcspStatus {
    Good,
    Revoked,
    Unknown,
}

impl OcspStatus {
    pub const ALL: [OcspStatus; 3] = [OcspStatus::Good, OcspStatus::Revoked, OcspStatus::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            OcspStatus::Good => "good",
            OcspStatus::Revoked => "revoked",
            OcspStatus::Unknown => "unknown",
        }
    }
}

/// What a staple says about the leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staple {
    pub status: OcspStatus,
    /// Unix seconds.
    pub this_update: i64,
    /// Unix seconds; `None` when the response has none.
    pub next_update: Option<i64>,
}

/// Why a staple could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcspError {
    #[error("the OCSP response is not well-formed DER ({0})")]
    Malformed(&'static str),
    #[error("the OCSP response is not successful (responseStatus {0})")]
    NotSuccessful(u8),
    #[error("the OCSP response is not a basic response")]
    NotBasic,
    #[error("the OCSP response has no status for the served leaf (serial {0})")]
    NoMatch(String),
}

/// A DER element: tag byte and contents.
struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
}

/// Read one element from the front of `d`; returns it and the rest.
fn tlv(d: &[u8]) -> Result<(Tlv<'_>, &[u8]), OcspError> {
    let bad = OcspError::Malformed;
    let (&tag, rest) = d.split_first().ok_or(bad("truncated"))?;
    if tag & 0x1f == 0x1f {
        return Err(bad("long tag"));
    }
    let (&first, rest) = rest.split_first().ok_or(bad("truncated"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad("bad length"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(bad("truncated"));
    }
    let (body, rest) = rest.split_at(len);
    Ok((Tlv { tag, body }, rest))
}

/// Read an element that must have `tag`.
fn expect<'a>(d: &'a [u8], tag: u8, what: &'static str) -> Result<(&'a [u8], &'a [u8]), OcspError> {
    let (t, rest) = tlv(d)?;
    if t.tag != tag {
        return Err(OcspError::Malformed(what));
    }
    Ok((t.body, rest))
}

/// GeneralizedTime `YYYYMMDDHHMMSS[.f]Z` to Unix seconds.
fn generalized_time(b: &[u8]) -> Result<i64, OcspError> {
    let bad = OcspError::Malformed("bad time");
    let s = std::str::from_utf8(b).map_err(|_| bad.clone())?;
    if s.len() < 15 || !s.ends_with('Z') || !s.is_char_boundary(14) {
        return Err(bad);
    }
    let digits = &s[..14];
    if !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad);
    }
    let n = |a: usize, b: usize| digits[a..b].parse::<i64>().unwrap_or(0);
    let (y, mo, d, h, mi, se) = (n(0, 4), n(4, 6), n(6, 8), n(8, 10), n(10, 12), n(12, 14));
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return Err(bad);
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + h * 3600 + mi * 60 + se)
}

const OID_BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

/// One SingleResponse of a BasicOCSPResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SingleResponse<'a> {
    /// The CertID's hash algorithm OID (contents).
    pub hash_oid: &'a [u8],
    pub name_hash: &'a [u8],
    pub key_hash: &'a [u8],
    /// The serial number INTEGER's contents.
    pub serial: &'a [u8],
    pub status: OcspStatus,
    pub this_update: i64,
    pub next_update: Option<i64>,
}

/// A BasicOCSPResponse, with what its signature check needs.
#[derive(Debug, Clone)]
pub struct BasicResponse<'a> {
    /// ResponseData as signed (DER, with its header).
    pub tbs: &'a [u8],
    /// signatureAlgorithm (DER, with its header).
    pub sig_alg: &'a [u8],
    /// The signature BIT STRING's contents (first byte: unused bits).
    pub signature: &'a [u8],
    /// The certificates the responder included (DER).
    pub certs: Vec<&'a [u8]>,
    pub responses: Vec<SingleResponse<'a>>,
}

/// Parse an OCSPResponse down to its BasicOCSPResponse.
pub fn parse_basic(der: &[u8]) -> Result<BasicResponse<'_>, OcspError> {
    let (resp, _) = expect(der, 0x30, "OCSPResponse")?;
    let (status, rest) = expect(resp, 0x0a, "responseStatus")?;
    match status {
        [0] => {}
        [s] => return Err(OcspError::NotSuccessful(*s)),
        _ => return Err(OcspError::Malformed("responseStatus")),
    }
    let (bytes, _) = expect(rest, 0xa0, "responseBytes")?;
    let (bytes, _) = expect(bytes, 0x30, "responseBytes")?;
    let (oid, rest) = expect(bytes, 0x06, "responseType")?;
    if oid != OID_BASIC {
        return Err(OcspError::NotBasic);
    }
    let (basic, _) = expect(rest, 0x04, "response")?;
    let (basic, _) = expect(basic, 0x30, "BasicOCSPResponse")?;
    let (data, after_data) = expect(basic, 0x30, "ResponseData")?;
    let tbs = &basic[..basic.len() - after_data.len()];
    let (_, after_alg) = expect(after_data, 0x30, "signatureAlgorithm")?;
    let sig_alg = &after_data[..after_data.len() - after_alg.len()];
    let (signature, after_sig) = expect(after_alg, 0x03, "signature")?;
    let mut certs = Vec::new();
    if let Ok((t, _)) = tlv(after_sig) {
        if t.tag == 0xa0 {
            let (mut list, _) = expect(t.body, 0x30, "certs")?;
            while !list.is_empty() {
                let (_, r) = expect(list, 0x30, "certificate")?;
                certs.push(&list[..list.len() - r.len()]);
                list = r;
            }
        }
    }
    let mut rest = data;
    // version [0] EXPLICIT (optional), responderID [1] or [2], producedAt.
    let (t, r) = tlv(rest)?;
    rest = if t.tag == 0xa0 { tlv(r)?.1 } else { r };
    let (_produced, r) = expect(rest, 0x18, "producedAt")?;
    let (mut list, _) = expect(r, 0x30, "responses")?;
    let mut responses = Vec::new();
    while !list.is_empty() {
        let (single, r) = expect(list, 0x30, "SingleResponse")?;
        list = r;
        let (cert_id, r) = expect(single, 0x30, "CertID")?;
        let (alg, c) = expect(cert_id, 0x30, "hashAlgorithm")?;
        let (hash_oid, _) = expect(alg, 0x06, "hashAlgorithm")?;
        let (name_hash, c) = expect(c, 0x04, "issuerNameHash")?;
        let (key_hash, c) = expect(c, 0x04, "issuerKeyHash")?;
        let (serial, _) = expect(c, 0x02, "serialNumber")?;
        let (st, r) = tlv(r)?;
        let status = match st.tag {
            0x80 => OcspStatus::Good,
            0xa1 => OcspStatus::Revoked,
            0x82 => OcspStatus::Unknown,
            _ => return Err(OcspError::Malformed("certStatus")),
        };
        let (this, r) = expect(r, 0x18, "thisUpdate")?;
        let this_update = generalized_time(this)?;
        let next_update = match tlv(r) {
            Ok((t, _)) if t.tag == 0xa0 => {
                Some(generalized_time(expect(t.body, 0x18, "nextUpdate")?.0)?)
            }
            _ => None,
        };
        responses.push(SingleResponse {
            hash_oid,
            name_hash,
            key_hash,
            serial,
            status,
            this_update,
            next_update,
        });
    }
    Ok(BasicResponse {
        tbs,
        sig_alg,
        signature,
        certs,
        responses,
    })
}

/// Parse a stapled OCSPResponse and find the status of the certificate with
/// `serial` (as [`serial_hex`] writes it).
pub fn parse_staple(der: &[u8], serial: &str) -> Result<Staple, OcspError> {
    let basic = parse_basic(der)?;
    basic
        .responses
        .iter()
        .find(|r| serial_hex(r.serial) == serial)
        .map(|r| Staple {
            status: r.status,
            this_update: r.this_update,
            next_update: r.next_update,
        })
        .ok_or_else(|| OcspError::NoMatch(serial.to_string()))
}

/// SHA-1 (1.3.14.3.2.26), the CertID hash `openssl ocsp` and the web's responders use.
pub const OID_SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];

/// One DER element: `tag`, definite length, `body`.
pub fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = body.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(body);
    out
}

/// An OCSPRequest for one certificate (RFC 6960 4.1.1), without a nonce or
/// signature: CertID with SHA-1 `name_hash` (of the issuer's subject name),
/// `key_hash` (of the issuer's public key) and `serial` (INTEGER contents).
pub fn build_request(name_hash: &[u8], key_hash: &[u8], serial: &[u8]) -> Vec<u8> {
    let alg = der(0x30, &[der(0x06, OID_SHA1), vec![0x05, 0x00]].concat());
    let cert_id = der(
        0x30,
        &[
            alg,
            der(0x04, name_hash),
            der(0x04, key_hash),
            der(0x02, serial),
        ]
        .concat(),
    );
    let request = der(0x30, &cert_id);
    let request_list = der(0x30, &request);
    let tbs = der(0x30, &request_list);
    der(0x30, &tbs)
}

/// The subjectPublicKey BIT STRING's value (without the unused-bits byte) of
/// a SubjectPublicKeyInfo: what the CertID's issuerKeyHash hashes.
pub fn spki_key_bits(spki: &[u8]) -> Result<&[u8], OcspError> {
    let (body, _) = expect(spki, 0x30, "SubjectPublicKeyInfo")?;
    let (_, rest) = expect(body, 0x30, "algorithm")?;
    let (bits, _) = expect(rest, 0x03, "subjectPublicKey")?;
    bits.split_first()
        .map(|(_, k)| k)
        .ok_or(OcspError::Malformed("subjectPublicKey"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_bad_input() {
        assert_eq!(generalized_time(b"19700101000000Z"), Ok(0));
        assert_eq!(generalized_time(b"20260101000000Z"), Ok(1_767_225_600));
        assert!(generalized_time(b"2026").is_err());
        assert!(generalized_time(b"20261301000000Z").is_err());
        for bad in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x0a\x01\x01",
            b"\x30\x03\x0a\x01\x00",
            b"\x1f\x00",
        ] {
            assert!(parse_staple(bad, "01").is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_staple(b"\x30\x03\x0a\x01\x06", "01"),
            Err(OcspError::NotSuccessful(6))
        );
    }

    #[test]
    fn der_lengths_and_the_request_read_back() {
        assert_eq!(der(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = der(0x04, &[0; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let (t, rest) = tlv(&long).unwrap();
        assert_eq!((t.tag, t.body.len(), rest.len()), (0x04, 300, 0));
        let req = build_request(&[0xaa; 20], &[0xbb; 20], &[0x00, 0x80]);
        // OCSPRequest > TBSRequest > requestList > Request > CertID
        let mut d = req.as_slice();
        for what in ["req", "tbs", "list", "request"] {
            d = expect(d, 0x30, what).unwrap().0;
        }
        let (cert_id, _) = expect(d, 0x30, "certid").unwrap();
        let (alg, c) = expect(cert_id, 0x30, "alg").unwrap();
        assert_eq!(expect(alg, 0x06, "oid").unwrap().0, OID_SHA1);
        let (n, c) = expect(c, 0x04, "n").unwrap();
        let (k, c) = expect(c, 0x04, "k").unwrap();
        let (s, c) = expect(c, 0x02, "s").unwrap();
        assert_eq!((n, k, s, c), (&[0xaa; 20][..], &[0xbb; 20][..], &[0, 0x80][..], &[][..]));
    }
}
