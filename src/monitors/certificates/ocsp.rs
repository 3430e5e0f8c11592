//! The OCSP response an endpoint staples to its handshake (RFC 6960): only
//! what is exported — the leaf's status, thisUpdate and nextUpdate. A small
//! bounds-checked DER reader; the response's signature is not verified (it
//! comes from the server being probed, over the handshake it signed).

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
    #[error("the stapled OCSP response is not well-formed DER ({0})")]
    Malformed(&'static str),
    #[error("the stapled OCSP response is not successful (responseStatus {0})")]
    NotSuccessful(u8),
    #[error("the stapled OCSP response is not a basic response")]
    NotBasic,
    #[error("the stapled OCSP response has no status for the served leaf (serial {0})")]
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

/// Parse a stapled OCSPResponse and find the status of the certificate with
/// `serial` (as [`serial_hex`] writes it).
pub fn parse_staple(der: &[u8], serial: &str) -> Result<Staple, OcspError> {
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
    let (data, _) = expect(basic, 0x30, "ResponseData")?;
    let mut rest = data;
    // version [0] EXPLICIT (optional), responderID [1] or [2], producedAt.
    let (t, r) = tlv(rest)?;
    rest = if t.tag == 0xa0 { tlv(r)?.1 } else { r };
    let (_produced, r) = expect(rest, 0x18, "producedAt")?;
    let (mut responses, _) = expect(r, 0x30, "responses")?;
    while !responses.is_empty() {
        let (single, r) = expect(responses, 0x30, "SingleResponse")?;
        responses = r;
        let (cert_id, r) = expect(single, 0x30, "CertID")?;
        let (_, c) = expect(cert_id, 0x30, "hashAlgorithm")?;
        let (_, c) = expect(c, 0x04, "issuerNameHash")?;
        let (_, c) = expect(c, 0x04, "issuerKeyHash")?;
        let (sn, _) = expect(c, 0x02, "serialNumber")?;
        if serial_hex(sn) != serial {
            continue;
        }
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
            Ok((t, _)) if t.tag == 0xa0 => Some(generalized_time(expect(t.body, 0x18, "nextUpdate")?.0)?),
            _ => None,
        };
        return Ok(Staple {
            status,
            this_update,
            next_update,
        });
    }
    Err(OcspError::NoMatch(serial.to_string()))
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
}
