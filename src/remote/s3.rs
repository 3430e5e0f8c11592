//! Terraform `s3` backend and S3-compatible stores (MinIO, Garage, Ceph).
//! URLs are built with `rusty-s3`, requests are SigV4-signed in the
//! `Authorization` header ([`super::sigv4`]) with credentials from AWS's own
//! chain (`aws-config`, adapted in [`super::aws_credentials`]) and sent with the shared client; state
//! reads are conditional on the ETag.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rusty_s3::actions::{GetObject, ListObjectsV2};
use rusty_s3::{Bucket, S3Action, UrlStyle};

use crate::core::config::S3BackendConfig;

use super::aws_credentials::{self, AwsCredentials, ChainRequest};
use super::client::{status_error, Budget, HttpClient};
use super::env::Env;
use super::{Fetch, LockState, RemoteError, StateBackend, Target};

/// Unused by unsigned URLs; `rusty-s3` wants an expiry.
const UNSIGNED: Duration = Duration::from_secs(300);
const MAX_PAGES: usize = 1000;

/// Everything an S3 backend needs; credentials never leave this struct.
pub struct S3Params {
    pub bucket: String,
    pub key: Option<String>,
    pub prefix: Option<String>,
    pub region: String,
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub workspace_key_prefix: String,
    /// Inline credentials (zero-config record) or None for the standard chain.
    pub credentials: Option<(String, String, Option<String>)>,
    pub profile: Option<String>,
    pub ca_file: Option<std::path::PathBuf>,
}

pub struct S3Backend {
    label: String,
    bucket: Bucket,
    region: String,
    creds: AwsCredentials,
    key: Option<String>,
    prefix: Option<String>,
    wkp: String,
    client: HttpClient,
}

impl S3Backend {
    pub fn from_config(
        c: &S3BackendConfig,
        base: &Path,
        timeout: Duration,
        budget: &Budget,
        env: &Env,
    ) -> Result<Self, RemoteError> {
        Self::new(
            S3Params {
                bucket: c.bucket.clone(),
                key: c.key.clone(),
                prefix: c.prefix.clone(),
                region: c.region.clone(),
                endpoint: c.endpoint.clone(),
                path_style: c.use_path_style,
                workspace_key_prefix: c.workspace_key_prefix.clone(),
                credentials: None,
                profile: c.profile.clone(),
                ca_file: c.ca_file.as_ref().map(|f| base.join(f)),
            },
            timeout,
            budget,
            env,
        )
    }

    /// Credentials are resolved here (every collection builds the backend
    /// anew, so rotated credentials are picked up); `env`: the environment
    /// of the chain and of `SSL_CERT_FILE` (a snapshot of the process's
    /// outside tests).
    pub fn new(
        p: S3Params,
        timeout: Duration,
        budget: &Budget,
        env: &Env,
    ) -> Result<Self, RemoteError> {
        let label = format!(
            "s3://{}/{}",
            p.bucket,
            p.key.as_deref().or(p.prefix.as_deref()).unwrap_or("")
        );
        let endpoint = p
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", p.region));
        let url = url::Url::parse(&endpoint)
            .map_err(|_| RemoteError::new(&label, "bad_url", "endpoint is not a URL"))?;
        let style = if p.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(url, style, p.bucket.clone(), p.region.clone()).map_err(|_| {
            RemoteError::new(&label, "bad_url", "endpoint or bucket name is invalid")
        })?;
        let creds = match p.credentials {
            Some((k, s, t)) => AwsCredentials::new(k, s, t, None),
            None => aws_credentials::resolve(
                &ChainRequest {
                    profile: p.profile.as_deref(),
                    region: &p.region,
                    ca_file: p.ca_file.as_deref(),
                },
                env,
                budget,
                SystemTime::now(),
            )
            .map_err(|e| RemoteError::new(&label, "credentials", e.to_string()))?,
        };
        let client = HttpClient::new(timeout, p.ca_file.as_deref(), env)
            .map_err(|m| RemoteError::new(&label, "tls", m))?;
        Ok(S3Backend {
            label,
            bucket,
            region: p.region,
            creds,
            key: p.key,
            prefix: p.prefix,
            wkp: p.workspace_key_prefix.trim_end_matches('/').to_string(),
            client,
        })
    }

    /// GET a URL built by `rusty-s3` (unsigned), signed in the headers.
    async fn get(
        &self,
        label: &str,
        url: &url::Url,
        extra: &[(&str, &str)],
        budget: &Budget,
    ) -> Result<super::client::Response, RemoteError> {
        let signed =
            super::sigv4::sign_get(url, &self.region, &self.creds, std::time::SystemTime::now())
                .ok_or_else(|| {
                    RemoteError::new(label, "bad_url", "the endpoint URL has no host")
                })?;
        let mut headers: Vec<(&str, &str)> = signed.iter().map(|(k, v)| (*k, v.as_str())).collect();
        headers.extend_from_slice(extra);
        self.client.get(label, url.as_str(), &headers, budget).await
    }

    fn target(&self, key: &str) -> Target {
        Target {
            label: format!("s3://{}/{}", self.bucket.name(), key),
            id: key.to_string(),
            lock: None,
        }
    }

    /// Every key under `prefix` with its LastModified (paged).
    async fn list(&self, prefix: &str, budget: &Budget) -> Result<Vec<Listed>, RemoteError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut action: ListObjectsV2<'_> = self.bucket.list_objects_v2(None);
            if !prefix.is_empty() {
                action.with_prefix(prefix);
            }
            if let Some(t) = &token {
                action.with_continuation_token(t.clone());
            }
            let url = action.sign(UNSIGNED);
            let r = self.get(&self.label, &url, &[], budget).await?;
            if r.status != 200 {
                return Err(status_error(&self.label, r.status));
            }
            let text = String::from_utf8_lossy(&r.body);
            let parsed = ListObjectsV2::parse_response(&text).map_err(|_| {
                RemoteError::new(&self.label, "protocol", "the bucket listing is not S3 XML")
            })?;
            keys.extend(parsed.contents.into_iter().map(|c| Listed {
                modified: super::rfc3339(c.last_modified.trim()),
                key: c.key,
            }));
            match parsed.next_continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(keys),
            }
        }
        Ok(keys)
    }
}

/// One object of a bucket listing.
struct Listed {
    key: String,
    modified: Option<std::time::SystemTime>,
}

/// Lock objects (`<state key>.tflock`, Terraform 1.10+ `use_lockfile`) of a
/// listing, by the state key they lock, with their LastModified.
fn lock_objects(listed: &[Listed]) -> HashMap<&str, Option<std::time::SystemTime>> {
    listed
        .iter()
        .filter_map(|l| l.key.strip_suffix(".tflock").map(|k| (k, l.modified)))
        .collect()
}

fn lock_of(locks: &HashMap<&str, Option<std::time::SystemTime>>, key: &str) -> Option<LockState> {
    Some(LockState {
        locked: locks.contains_key(key),
        since: locks.get(key).copied().flatten(),
    })
}

/// Workspace of `k` if it is `<wkp>/<workspace>/<key>`.
fn workspace_key<'a>(wkp: &str, key: &str, k: &'a str) -> Option<&'a str> {
    let rest = k.strip_prefix(wkp)?.strip_prefix('/')?;
    let ws = rest.strip_suffix(key)?.strip_suffix('/')?;
    (!ws.is_empty() && !ws.contains('/')).then_some(ws)
}

fn skipped(k: &str) -> bool {
    k.ends_with(".tflock") || k.ends_with('/')
}

#[async_trait::async_trait]
impl StateBackend for S3Backend {
    fn label(&self) -> &str {
        &self.label
    }

    async fn discover(&self, budget: &Budget) -> Result<Vec<Target>, RemoteError> {
        let mut out = Vec::new();
        match (&self.key, &self.prefix) {
            (Some(key), _) => {
                // The default workspace's key, and `<prefix>/<workspace>/<key>`.
                let mut listed = match self.list(key, budget).await {
                    Ok(k) => k,
                    // Without s3:ListBucket only the key itself can be read (no
                    // workspaces, no lock state).
                    Err(e) if e.reason == "http_403" => {
                        tracing::debug!(source = %self.label, "listing forbidden; reading the key only");
                        return Ok(vec![self.target(key)]);
                    }
                    Err(e) => return Err(e),
                };
                listed.extend(self.list(&format!("{}/", self.wkp), budget).await?);
                let locks = lock_objects(&listed);
                let mut keys: Vec<&str> = listed
                    .iter()
                    .map(|l| l.key.as_str())
                    .filter(|k| *k == key || workspace_key(&self.wkp, key, k).is_some())
                    .collect();
                if keys.is_empty() {
                    // Nothing yet: report the configured key (not found) rather than nothing.
                    keys.push(key);
                }
                out.extend(keys.iter().map(|k| Target {
                    lock: lock_of(&locks, k),
                    ..self.target(k)
                }));
            }
            (None, prefix) => {
                let listed = self.list(prefix.as_deref().unwrap_or(""), budget).await?;
                let locks = lock_objects(&listed);
                out.extend(listed.iter().filter(|l| !skipped(&l.key)).map(|l| Target {
                    lock: lock_of(&locks, &l.key),
                    ..self.target(&l.key)
                }));
            }
        }
        out.sort_by(|a, b| a.label.cmp(&b.label));
        out.dedup();
        Ok(out)
    }

    async fn fetch(
        &self,
        t: &Target,
        known: Option<&str>,
        budget: &Budget,
        transferred: &mut u64,
    ) -> Result<Fetch, RemoteError> {
        let action = GetObject::new(&self.bucket, None, &t.id);
        let url = action.sign(UNSIGNED);
        let mut headers = Vec::new();
        if let Some(k) = known {
            headers.push(("if-none-match", k));
        }
        let r = self.get(&t.label, &url, &headers, budget).await?;
        Fetch::from_response(&t.label, r, known, transferred)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_keys() {
        assert_eq!(
            workspace_key(
                "env:",
                "app/terraform.tfstate",
                "env:/prod/app/terraform.tfstate"
            ),
            Some("prod")
        );
        assert_eq!(
            workspace_key(
                "env:",
                "app/terraform.tfstate",
                "env:/a/b/app/terraform.tfstate"
            ),
            None
        );
        assert_eq!(workspace_key("env:", "k", "k"), None);
        assert!(skipped("x/terraform.tfstate.tflock"));
        assert!(!skipped("x/terraform.tfstate"));
    }
}
