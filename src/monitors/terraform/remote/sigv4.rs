//! AWS Signature Version 4 in the `Authorization` header, for the S3 GET
//! requests of the s3 backend (bucket listings and object reads).
//!
//! Header signing, rather than presigned URLs, keeps signatures out of URLs and
//! is what S3-compatible stores and emulators verify most faithfully. URLs are
//! built by `rusty-s3` (unsigned), whose path and query encoding is the one
//! SigV4 expects (RFC 3986 unreserved characters left as they are).

use sha2::{Digest, Sha256};

use super::aws_credentials::AwsCredentials;

/// SHA-256 of an empty payload (every request signed here is a GET).
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The headers that sign `GET url` for `region` at `now`: `authorization`,
/// `x-amz-content-sha256`, `x-amz-date` and, with temporary credentials,
/// `x-amz-security-token`. `None` if the URL has no host.
pub fn sign_get(
    url: &url::Url,
    region: &str,
    creds: &AwsCredentials,
    now: jiff::Timestamp,
) -> Option<Vec<(&'static str, String)>> {
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str()?),
        None => url.host_str()?.to_string(),
    };
    let amz_date = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    let mut headers: Vec<(&str, &str)> = vec![
        ("host", &host),
        ("x-amz-content-sha256", EMPTY_SHA256),
        ("x-amz-date", &amz_date),
    ];
    if let Some(t) = &creds.session_token {
        headers.push(("x-amz-security-token", t));
    }
    let path = if url.path().is_empty() {
        "/"
    } else {
        url.path()
    };
    let (signed, signature) = signature(
        "GET",
        path,
        url.query().unwrap_or(""),
        &headers,
        EMPTY_SHA256,
        &creds.secret_access_key,
        region,
        "s3",
        &amz_date,
    );
    let scope = format!("{}/{region}/s3/aws4_request", &amz_date[..8]);
    let mut out = vec![
        (
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                creds.access_key_id
            ),
        ),
        ("x-amz-content-sha256", EMPTY_SHA256.to_string()),
        ("x-amz-date", amz_date.clone()),
    ];
    if let Some(t) = &creds.session_token {
        out.push(("x-amz-security-token", t.clone()));
    }
    Some(out)
}

/// (signed header names, hex signature). `headers` are lower-case names.
#[allow(clippy::too_many_arguments)]
fn signature(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    payload_hash: &str,
    secret: &str,
    region: &str,
    service: &str,
    amz_date: &str,
) -> (String, String) {
    let mut headers = headers.to_vec();
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let signed = headers
        .iter()
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .join(";");
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let canonical =
        format!("{method}\n{path}\n{query}\n{canonical_headers}\n{signed}\n{payload_hash}");
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    (signed, hex(&hmac_sha256(&k_signing, to_sign.as_bytes())))
}

/// HMAC-SHA-256 (RFC 2104) over the `sha2` crate the project already uses.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn hmac_rfc4231_case_2() {
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than the block is hashed first (RFC 4231 case 6).
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    /// The worked examples of the S3 SigV4 documentation ("Signature
    /// Calculations for the Authorization Header").
    #[test]
    fn aws_documented_examples() {
        let date = "20130524T000000Z";
        let (signed, sig) = signature(
            "GET",
            "/test.txt",
            "",
            &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_SHA256),
                ("x-amz-date", date),
            ],
            EMPTY_SHA256,
            SECRET,
            "us-east-1",
            "s3",
            date,
        );
        assert_eq!(signed, "host;range;x-amz-content-sha256;x-amz-date");
        assert_eq!(
            sig,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        // GET Bucket (list objects): the query is sorted.
        let (_, sig) = signature(
            "GET",
            "/",
            "prefix=J&max-keys=2",
            &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("x-amz-content-sha256", EMPTY_SHA256),
                ("x-amz-date", date),
            ],
            EMPTY_SHA256,
            SECRET,
            "us-east-1",
            "s3",
            date,
        );
        assert_eq!(
            sig,
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn headers_of_a_get() {
        let creds = AwsCredentials::new("AKIDEXAMPLE", SECRET, Some("tok".into()), None);
        let url = url::Url::parse("http://127.0.0.1:9000/b/env%3A/k?list-type=2").unwrap();
        let now: jiff::Timestamp = "2013-05-24T00:00:00Z".parse().unwrap();
        let h = sign_get(&url, "eu-west-1", &creds, now).unwrap();
        let auth = &h.iter().find(|(k, _)| *k == "authorization").unwrap().1;
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20130524/eu-west-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="
        ));
        assert!(!auth.contains(SECRET));
        assert!(h.contains(&("x-amz-security-token", "tok".to_string())));
        assert!(h.contains(&("x-amz-date", "20130524T000000Z".to_string())));
    }
}
