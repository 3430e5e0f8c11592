//! HCP Terraform / Terraform Enterprise: workspaces of an organization (by
//! name, tags or name prefix; paginated), each workspace's current state
//! version, downloaded only when the version id changed. 429 answers are
//! retried after `Retry-After` / `X-RateLimit-Reset` within the budget.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::core::config::HcpBackendConfig;

use super::client::{read_secret, status_error, Budget, HttpClient};
use super::env::Env;
use super::{rfc3339, Fetch, LockState, RemoteError, StateBackend, Target};

const MAX_PAGES: u64 = 1000;
const DEFAULT_HOST: &str = "app.terraform.io";

/// `hcp://org` (or `hcp://host/org` off app.terraform.io).
pub fn org_label(address: &str, org: &str) -> String {
    let host = super::host_port_of(address);
    if host == DEFAULT_HOST {
        format!("hcp://{org}")
    } else {
        format!("hcp://{host}/{org}")
    }
}

/// Everything an HCP backend needs; the token never leaves it.
pub struct HcpParams {
    pub address: url::Url,
    pub organization: String,
    pub workspaces: Vec<String>,
    pub tags: Vec<String>,
    pub prefix: Option<String>,
    pub token: Option<String>,
}

/// `TF_TOKEN_<host>` as Terraform reads it: dots as underscores, hyphens as
/// double underscores (a port's colon as an underscore).
fn token_var(host: &str) -> String {
    host.replace('-', "__").replace(['.', ':'], "_")
}

/// The API token Terraform would use for `host`: `TF_TOKEN_<host>`, else the
/// `credentials` of `terraform login` (`~/.terraform.d/credentials.tfrc.json`,
/// or `TF_CLI_CONFIG_DIR`), the variables taken from `env`. `Ok(None)` when
/// there is none.
pub fn token_for_host(label: &str, host: &str, env: &Env) -> Result<Option<String>, RemoteError> {
    let var = format!("TF_TOKEN_{}", token_var(host));
    if let Some(t) = env.get(&var).filter(|t| !t.trim().is_empty()) {
        return Ok(Some(t.trim().to_string()));
    }
    let Some(file) = credentials_file(env) else {
        return Ok(None);
    };
    let text = match crate::core::safe_open::read(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(RemoteError::new(
                label,
                "credentials",
                format!("cannot read {}: {}", file.display(), e.kind()),
            ))
        }
    };
    let v: Value = serde_json::from_slice(&text).map_err(|_| {
        RemoteError::new(
            label,
            "credentials",
            format!("{} is not JSON", file.display()),
        )
    })?;
    Ok(v["credentials"][host]["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string))
}

/// Where `terraform login` keeps tokens: `TF_CLI_CONFIG_DIR`, else
/// `~/.terraform.d`, `credentials.tfrc.json` inside.
fn credentials_file(env: &Env) -> Option<std::path::PathBuf> {
    env.get("TF_CLI_CONFIG_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| env.get("HOME").map(|h| Path::new(h).join(".terraform.d")))
        .map(|d| d.join("credentials.tfrc.json"))
}

/// A workspace's `locked` attribute (no lock time in the API's workspace record).
fn lock_of(workspace: &Value) -> Option<LockState> {
    workspace["attributes"]["locked"]
        .as_bool()
        .map(|locked| LockState {
            locked,
            since: None,
        })
}

pub struct HcpBackend {
    label: String,
    base: url::Url,
    org: String,
    names: Vec<String>,
    tags: Vec<String>,
    prefix: Option<String>,
    auth: String,
    client: HttpClient,
}

impl HcpBackend {
    pub fn from_config(
        c: &HcpBackendConfig,
        base: &Path,
        timeout: Duration,
        env: &Env,
    ) -> Result<Self, RemoteError> {
        let label = org_label(&c.address, &c.organization);
        let url = url::Url::parse(&c.address)
            .map_err(|_| RemoteError::new(&label, "bad_url", "address is not a URL"))?;
        let token = match &c.token {
            Some(t) => read_secret(base, t.file.as_deref(), t.env.as_deref(), env)
                .map_err(|m| RemoteError::new(&label, "credentials", m))?,
            None => token_for_host(&label, &super::host_port(&url), env)?,
        };
        let ca = c.ca_file.as_ref().map(|f| base.join(f));
        Self::new(
            HcpParams {
                address: url,
                organization: c.organization.clone(),
                workspaces: c.workspaces.clone(),
                tags: c.tags.clone(),
                prefix: c.prefix.clone(),
                token,
            },
            ca.as_deref(),
            timeout,
            env,
        )
    }

    pub fn new(
        p: HcpParams,
        ca_file: Option<&Path>,
        timeout: Duration,
        env: &Env,
    ) -> Result<Self, RemoteError> {
        let label = org_label(p.address.as_str(), &p.organization);
        let Some(token) = p.token else {
            return Err(RemoteError::new(
                &label,
                "credentials",
                format!(
                    "no API token: set `token` in the config, TF_TOKEN_{} or run `terraform login {}` (credentials.tfrc.json)",
                    token_var(&super::host_port(&p.address)),
                    super::host_port(&p.address)
                ),
            ));
        };
        let client = HttpClient::new(timeout, ca_file, env)
            .map_err(|m| RemoteError::new(&label, "tls", m))?;
        Ok(HcpBackend {
            label,
            base: p.address,
            org: p.organization,
            names: p.workspaces,
            tags: p.tags,
            prefix: p.prefix,
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

    async fn get_json(
        &self,
        label: &str,
        url: &str,
        budget: &Budget,
    ) -> Result<(u16, Value), RemoteError> {
        let headers = [
            ("authorization", self.auth.as_str()),
            ("content-type", "application/vnd.api+json"),
        ];
        let r = self.client.get(label, url, &headers, budget).await?;
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
            lock: None,
        }
    }
}

#[async_trait::async_trait]
impl StateBackend for HcpBackend {
    fn label(&self) -> &str {
        &self.label
    }

    async fn discover(&self, budget: &Budget) -> Result<Vec<Target>, RemoteError> {
        let mut out = Vec::new();
        if !self.names.is_empty() {
            for name in &self.names {
                let url = self.api(&["organizations", &self.org, "workspaces", name]);
                let label = format!("{}/{}", self.label, name);
                let (status, v) = self.get_json(&label, url.as_str(), budget).await?;
                match status {
                    200 => {
                        let id = v["data"]["id"].as_str().unwrap_or("");
                        out.push(Target {
                            lock: lock_of(&v["data"]),
                            ..self.target(name, id)
                        });
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
            let (status, v) = self.get_json(&self.label, url.as_str(), budget).await?;
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
                out.push(Target {
                    lock: lock_of(w),
                    ..self.target(name, id)
                });
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

    async fn fetch(
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
        let (status, v) = self.get_json(&t.label, url.as_str(), budget).await?;
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
            .get(&t.label, download.as_str(), &headers, budget)
            .await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_tf_token_then_terraform_login_of_the_injected_environment() {
        let host = "tfe.home-lab.lan:8443";
        let var = "TF_TOKEN_tfe_home__lab_lan_8443";
        let env = Env::from_pairs([(var, " tok-from-var ")]);
        assert_eq!(
            token_for_host("l", host, &env).unwrap().as_deref(),
            Some("tok-from-var")
        );
        let dir = tempfile::tempdir().unwrap();
        let creds = r#"{"credentials":{"tfe.home-lab.lan:8443":{"token":"tok-from-file"}}}"#;
        std::fs::create_dir_all(dir.path().join("cli")).unwrap();
        std::fs::write(dir.path().join("cli/credentials.tfrc.json"), creds).unwrap();
        std::fs::create_dir_all(dir.path().join(".terraform.d")).unwrap();
        std::fs::write(
            dir.path().join(".terraform.d/credentials.tfrc.json"),
            creds.replace("tok-from-file", "tok-from-home"),
        )
        .unwrap();
        let home = dir.path().to_str().unwrap();
        let cli = dir.path().join("cli");
        let env = Env::from_pairs([("TF_CLI_CONFIG_DIR", cli.to_str().unwrap()), ("HOME", home)]);
        assert_eq!(
            token_for_host("l", host, &env).unwrap().as_deref(),
            Some("tok-from-file")
        );
        let env = Env::from_pairs([("HOME", home), (var, "")]);
        assert_eq!(
            token_for_host("l", host, &env).unwrap().as_deref(),
            Some("tok-from-home"),
            "an empty TF_TOKEN_ is unset"
        );
        assert_eq!(token_for_host("l", host, &Env::default()).unwrap(), None);
        assert_eq!(
            token_for_host("l", "other.lan", &Env::from_pairs([("HOME", home)])).unwrap(),
            None
        );
    }
}
