//! AWS Signature Version 4 in the `Authorization` header, for the S3 GET
//! requests of the s3 backend (bucket listings and object reads) and the STS
//! `AssumeRole` call of `role_arn` + `source_profile` profiles.
//!
//! Header signing, rather than presigned URLs, keeps signatures out of URLs and
//! is what S3-compatible stores and emulators verify most faithfully. URLs are
//! built by `rusty-s3` (unsigned), whose path and query encoding is the one
//! SigV4 expects (RFC 3986 unreserved characters left as they are).

use std::time::SystemTime;

use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;

use super::aws_credentials::AwsCredentials;

/// The headers that sign `GET url` for `region` at `now`: `authorization`,
/// `x-amz-content-sha256`, `x-amz-date` and, with temporary credentials,
/// `x-amz-security-token`. Signed by AWS's own `aws-sigv4` crate with S3's
/// rules (single URI encoding, no path normalisation, signed payload hash).
/// `None` if the URL cannot be signed (no host).
pub fn sign_get(
    url: &url::Url,
    region: &str,
    creds: &AwsCredentials,
    now: SystemTime,
) -> Option<Vec<(&'static str, String)>> {
    sign_get_with(url, region, creds, now, &[])
}

/// [`sign_get`] with extra headers that are signed too (e.g. `range`); the
/// caller sends them as given.
fn sign_get_with(
    url: &url::Url,
    region: &str,
    creds: &AwsCredentials,
    now: SystemTime,
    extra: &[(&str, &str)],
) -> Option<Vec<(&'static str, String)>> {
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    sign_request(
        Request {
            method: "GET",
            url,
            headers: extra,
            body: &[],
        },
        region,
        "s3",
        settings,
        creds,
        now,
    )
}

struct Request<'a> {
    method: &'a str,
    url: &'a url::Url,
    headers: &'a [(&'a str, &'a str)],
    body: &'a [u8],
}

fn sign_request(
    r: Request<'_>,
    region: &str,
    service: &str,
    settings: SigningSettings,
    creds: &AwsCredentials,
    now: SystemTime,
) -> Option<Vec<(&'static str, String)>> {
    let url = r.url;
    url.host_str()?;
    let host = super::host_port(url);
    let identity = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        creds.session_token.clone(),
        None,
        "homelab-monitor",
    )
    .into();
    let params: aws_sigv4::http_request::SigningParams<'_> = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(now)
        .settings(settings)
        .build()
        .ok()?
        .into();
    let headers = std::iter::once(("host", host.as_str())).chain(r.headers.iter().copied());
    let request =
        SignableRequest::new(r.method, url.as_str(), headers, SignableBody::Bytes(r.body)).ok()?;
    let (instructions, _signature) = sign(request, &params).ok()?.into_parts();
    let (headers, _params) = instructions.into_parts();
    Some(
        headers
            .into_iter()
            .map(|h| (h.name(), h.value().to_string()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of an empty payload (every request signed here is a GET).
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn at(t: &str) -> SystemTime {
        let t: jiff::Timestamp = t.parse().unwrap();
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t.as_second() as u64)
    }

    fn auth(h: &[(&'static str, String)]) -> String {
        h.iter()
            .find(|(k, _)| *k == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap()
    }

    /// The worked examples of the S3 SigV4 documentation ("Signature
    /// Calculations for the Authorization Header"): our settings must give
    /// exactly AWS's signatures.
    #[test]
    fn aws_documented_examples() {
        let creds = AwsCredentials::new("AKIAIOSFODNN7EXAMPLE", SECRET, None, None);
        let now = at("2013-05-24T00:00:00Z");
        let url = url::Url::parse("https://examplebucket.s3.amazonaws.com/test.txt").unwrap();
        let h = sign_get_with(&url, "us-east-1", &creds, now, &[("range", "bytes=0-9")]).unwrap();
        assert_eq!(
            auth(&h),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        // GET Bucket (list objects): the query is sorted.
        let url =
            url::Url::parse("https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J").unwrap();
        let h = sign_get(&url, "us-east-1", &creds, now).unwrap();
        assert!(
            auth(&h).ends_with(
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
            ),
            "{}",
            auth(&h)
        );
    }

    #[test]
    fn headers_of_a_get() {
        let creds = AwsCredentials::new("AKIDEXAMPLE", SECRET, Some("tok".into()), None);
        let url = url::Url::parse("http://127.0.0.1:9000/b/env%3A/k?list-type=2").unwrap();
        let h = sign_get(&url, "eu-west-1", &creds, at("2013-05-24T00:00:00Z")).unwrap();
        let auth = auth(&h);
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20130524/eu-west-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="
        ), "{auth}");
        assert!(!auth.contains(SECRET));
        assert!(h.contains(&("x-amz-security-token", "tok".to_string())));
        assert!(h.contains(&("x-amz-date", "20130524T000000Z".to_string())));
        assert!(h.contains(&("x-amz-content-sha256", EMPTY_SHA256.to_string())));
    }
}
