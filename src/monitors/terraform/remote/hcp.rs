//! HCP Terraform / Terraform Enterprise: workspaces of an organization (by
//! name, tags or name prefix; paginated), each workspace's current state
//! version, downloaded only when the version id changed. 429 answers are
//! retried after `Retry-After` / `X-RateLimit-Reset` within the budget.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::config::HcpBackendConfig;

use super::client::{read_secret, status_error, Budget, Client};
use super::{rfc3339, Backend, Fetch, RemoteError, Target};

const MAX_PAGES: u64 = 1000;
const DEFAULT_HOST: &str = "app.terraform.io";

/// `hcp://org` (or `hcp://host/org` off app.terraform.io).
pub fn org_label(address: &str, org: &str) -> String {
    let host = url::Url::parse(address)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| h.to_string() + &u.port().map(|p| format!(":{p}")).unwrap_or_default())
        })
        .unwrap_or_default();
    if host == DEFAULT_HOST {
        format!("hcp://{org}")
    } else {
        format!("hcp://{host}/{org}")
    }
}

pub struct HcpBackend {
    label: String,
    base: url::Url,
    org: String,
    names: Vec<String>,
    tags: Vec<String>,
    prefix: Option<String>,
    auth: String,
    client: Client,
}

impl HcpBackend {
    pub fn from_config(
        c: &HcpBackendConfig,
        base: &Path,
        timeout: Duration,
    ) -> Result<Self, RemoteError> {
        let label = org_label(&c.address, &c.organization);
        let url = url::Url::parse(&c.address)
            .map_err(|_| RemoteError::new(&label, "bad_url", "address is not a URL"))?;
        let token = match &c.token {
            Some(t) => read_secret(base, t.file.as_deref(), t.env.as_deref())
                .map_err(|m| RemoteError::new(&label, "credentials", m))?,
            None => {
                // As Terraform: TF_TOKEN_<host, dots as underscores>.
                let var = format!(
                    "TF_TOKEN_{}",
                    url.host_str().unwrap_or("").replace(['.', '-'], "_")
                );
                read_secret(base, None, Some(&var))
                    .map_err(|m| RemoteError::new(&label, "credentials", m))?
            }
        };
        let Some(token) = token else {
            return Err(RemoteError::new(&label, "credentials", "no API token"));
        };
        let client = Client::new(timeout, c.ca_file.as_ref().map(|f| base.join(f)).as_deref())
            .map_err(|m| RemoteError::new(&label, "tls", m))?;
        Ok(HcpBackend {
            label,
            base: url,
            org: c.organization.clone(),
            names: c.workspaces.clone(),
            tags: c.tags.clone(),
            prefix: c.prefix.clone(),
            auth: format!("Bearer {token}"),
            client,
        })
    }

    fn api(&self, segments: &[&str]) -> url::Url {
        let mut u = self.base.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty().extend(["api", "v2"]).extend(segments);
        }
        u
    }

    fn get_json(
        &self,
        label: &str,
        url: &str,
        budget: &Budget,
    ) -> Result<(u16, Value), RemoteError> {
        let headers = [
            ("authorization", self.auth.as_str()),
            ("content-type", "application/vnd.api+json"),
        ];
        let r = self.client.get(label, url, &headers, budget)?;
        if r.status != 200 {
            return Ok((r.status, Value::Null));
        }
        let v = serde_json::from_slice(&r.body)
            .map_err(|_| RemoteError::new(label, "not_json", "the API answer is not JSON"))?;
        Ok((r.status, v))
    }

    fn target(&self, name: &str, id: &str) -> Target {
        Target {
            label: format!("{}/{}", self.label, name),
            id: id.to_string(),
        }
    }
}

impl Backend for HcpBackend {
    fn label(&self) -> &str {
        &self.label
    }

    fn discover(&self, budget: &Budget) -> Result<Vec<Target>, RemoteError> {
        let mut out = Vec::new();
        if !self.names.is_empty() {
            for name in &self.names {
                let url = self.api(&["organizations", &self.org, "workspaces", name]);
                let label = format!("{}/{}", self.label, name);
                let (status, v) = self.get_json(&label, url.as_str(), budget)?;
                match status {
                    200 => {
                        let id = v["data"]["id"].as_str().unwrap_or("");
                        out.push(self.target(name, id));
                    }
                    // Reported on the workspace itself at fetch time.
                    404 => out.push(self.target(name, "")),
                    s => return Err(status_error(&self.label, s)),
                }
            }
            return Ok(out);
        }
        let mut page = 1u64;
        while page <= MAX_PAGES {
            let mut url = self.api(&["organizations", &self.org, "workspaces"]);
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("page[number]", &page.to_string());
                q.append_pair("page[size]", "100");
                if !self.tags.is_empty() {
                    q.append_pair("search[tags]", &self.tags.join(","));
                }
                if let Some(p) = &self.prefix {
                    q.append_pair("search[name]", p);
                }
            }
            let (status, v) = self.get_json(&self.label, url.as_str(), budget)?;
            if status != 200 {
                return Err(status_error(&self.label, status));
            }
            for w in v["data"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                let (Some(id), Some(name)) = (w["id"].as_str(), w["attributes"]["name"].as_str())
                else {
                    continue;
                };
                // search[name] is a fuzzy match: keep true prefixes only.
                if self.prefix.as_deref().is_some_and(|p| !name.starts_with(p)) {
                    continue;
                }
                out.push(self.target(name, id));
            }
            match v["meta"]["pagination"]["next-page"].as_u64() {
                Some(n) if n > page => page = n,
                _ => break,
            }
        }
        out.sort_by(|a, b| a.label.cmp(&b.label));
        out.dedup();
        Ok(out)
    }

    fn fetch(
        &self,
        t: &Target,
        known: Option<&str>,
        budget: &Budget,
        transferred: &mut u64,
    ) -> Result<Fetch, RemoteError> {
        if t.id.is_empty() {
            return Err(RemoteError::new(
                &t.label,
                "not_found",
                "no such workspace (or no access)",
            ));
        }
        let url = self.api(&["workspaces", &t.id, "current-state-version"]);
        let (status, v) = self.get_json(&t.label, url.as_str(), budget)?;
        match status {
            200 => {}
            404 => return Ok(Fetch::NoState),
            s => return Err(status_error(&t.label, s)),
        }
        let version = v["data"]["id"].as_str().map(str::to_string);
        if version.is_some() && known == version.as_deref() {
            return Ok(Fetch::NotModified);
        }
        let attrs = &v["data"]["attributes"];
        let Some(download) = attrs["hosted-state-download-url"].as_str() else {
            return Err(RemoteError::new(
                &t.label,
                "protocol",
                "the state version has no download URL",
            ));
        };
        let download = self
            .base
            .join(download)
            .map_err(|_| RemoteError::new(&t.label, "protocol", "invalid download URL"))?;
        // The token goes only to the API's own host.
        let same_host = download.host_str() == self.base.host_str();
        let headers: Vec<(&str, &str)> = if same_host {
            vec![("authorization", self.auth.as_str())]
        } else {
            Vec::new()
        };
        let r = self
            .client
            .get(&t.label, download.as_str(), &headers, budget)?;
        *transferred += r.body.len() as u64;
        if r.status != 200 {
            return Err(status_error(&t.label, r.status));
        }
        Ok(Fetch::Body {
            bytes: r.body,
            version,
            modified: attrs["created-at"].as_str().and_then(rfc3339),
        })
    }
}
