//! GitLab-managed Terraform state, project-wide: GitLab's GraphQL API lists
//! the project's states (`terraformStates`, with `lockedAt`), and each one is
//! read through the REST state API (the address Terraform's http backend
//! uses), so a state added in GitLab is monitored without a config change.
//! Labels are the REST addresses, the same as a `type: http` entry's.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::core::config::GitlabBackendConfig;

use super::client::{read_secret, status_error, Budget, HttpClient};
use super::env::Env;
use super::http::label_of;
use super::{rfc3339, Fetch, LockState, RemoteError, StateBackend, Target};

/// Pages of 100 states at most (a project with more is unusual).
const MAX_PAGES: usize = 100;

const QUERY: &str = "query($path: ID!, $after: String) { project(fullPath: $path) { \
    terraformStates(first: 100, after: $after) { nodes { name lockedAt } \
    pageInfo { hasNextPage endCursor } } } }";

pub struct GitlabBackend {
    label: String,
    base: url::Url,
    project: String,
    states: Vec<String>,
    auth: String,
    client: HttpClient,
}

impl GitlabBackend {
    pub fn from_config(
        c: &GitlabBackendConfig,
        base: &Path,
        timeout: Duration,
        env: &Env,
    ) -> Result<Self, RemoteError> {
        let label = entry_label(&c.url, &c.project);
        let url = url::Url::parse(&c.url)
            .map_err(|_| RemoteError::new(&label, "bad_url", "url is not a URL"))?;
        let token = read_secret(base, c.token.file.as_deref(), c.token.env.as_deref(), env)
            .map_err(|m| RemoteError::new(&label, "credentials", m))?
            .ok_or_else(|| RemoteError::new(&label, "credentials", "no access token"))?;
        let client = HttpClient::new(
            timeout,
            c.ca_file.as_ref().map(|f| base.join(f)).as_deref(),
            env,
        )
        .map_err(|m| RemoteError::new(&label, "tls", m))?;
        Ok(GitlabBackend {
            label,
            base: url,
            project: c.project.clone(),
            states: c.states.clone(),
            auth: format!("Bearer {token}"),
            client,
        })
    }

    /// `<url>/api/v4/projects/<group%2Fproject>/terraform/state/<name>`.
    fn state_url(&self, name: &str) -> url::Url {
        let mut u = self.base.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty().extend([
                "api",
                "v4",
                "projects",
                &self.project,
                "terraform",
                "state",
                name,
            ]);
        }
        u
    }

    fn target(&self, name: &str, lock: Option<LockState>) -> Target {
        Target {
            label: label_of(self.state_url(name).as_str()),
            id: name.to_string(),
            lock,
        }
    }

    /// Every state of the project with its lock, page by page.
    async fn list(&self, budget: &Budget) -> Result<Vec<(String, Option<LockState>)>, RemoteError> {
        let mut url = self.base.clone();
        if let Ok(mut p) = url.path_segments_mut() {
            p.pop_if_empty().extend(["api", "graphql"]);
        }
        let mut out = Vec::new();
        let mut after = Value::Null;
        for _ in 0..MAX_PAGES {
            let body = serde_json::json!({
                "query": QUERY,
                "variables": {"path": self.project, "after": after},
            })
            .to_string();
            let r = self
                .client
                .request(
                    &self.label,
                    super::client::Method::Post(body.as_bytes()),
                    url.as_str(),
                    &[
                        ("authorization", self.auth.as_str()),
                        ("content-type", "application/json"),
                        ("accept", "application/json"),
                    ],
                    budget,
                )
                .await?;
            if r.status != 200 {
                return Err(status_error(&self.label, r.status));
            }
            let v: Value = serde_json::from_slice(&r.body).map_err(|_| {
                RemoteError::new(&self.label, "not_json", "the GraphQL answer is not JSON")
            })?;
            if v["errors"].as_array().is_some_and(|e| !e.is_empty()) {
                return Err(RemoteError::new(
                    &self.label,
                    "protocol",
                    "GitLab's GraphQL API answered with errors (is this GitLab 13.0 or later, and does the token have read_api?)",
                ));
            }
            let project = &v["data"]["project"];
            if project.is_null() {
                return Err(RemoteError::new(
                    &self.label,
                    "not_found",
                    "the project does not exist or the token cannot see it",
                ));
            }
            let states = &project["terraformStates"];
            for n in states["nodes"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                let Some(name) = n["name"].as_str().filter(|s| !s.is_empty()) else {
                    continue;
                };
                let locked_at = n["lockedAt"].as_str();
                out.push((
                    name.to_string(),
                    Some(LockState {
                        locked: locked_at.is_some(),
                        since: locked_at.and_then(rfc3339),
                    }),
                ));
            }
            let page = &states["pageInfo"];
            match (page["hasNextPage"].as_bool(), page["endCursor"].as_str()) {
                (Some(true), Some(c)) if Some(c) != after.as_str() => after = c.into(),
                _ => return Ok(out),
            }
        }
        Ok(out)
    }
}

/// `gitlab://host/group/project`, the entry's own label (discovery errors).
pub fn entry_label(url: &str, project: &str) -> String {
    format!("gitlab://{}/{project}", super::host_port_of(url))
}

#[async_trait::async_trait]
impl StateBackend for GitlabBackend {
    fn label(&self) -> &str {
        &self.label
    }

    async fn discover(&self, budget: &Budget) -> Result<Vec<Target>, RemoteError> {
        let listed = self.list(budget).await?;
        let mut out: Vec<Target> = if self.states.is_empty() {
            listed.iter().map(|(n, l)| self.target(n, *l)).collect()
        } else {
            // Named states; one GitLab does not know is reported at fetch (404).
            self.states
                .iter()
                .map(|n| {
                    let lock = listed.iter().find(|(m, _)| m == n).and_then(|(_, l)| *l);
                    self.target(n, lock)
                })
                .collect()
        };
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
        let url = self.state_url(&t.id);
        let mut headers: Vec<(&str, &str)> = vec![
            ("accept", "application/json"),
            ("authorization", self.auth.as_str()),
        ];
        if let Some(k) = known {
            headers.push(("if-none-match", k));
        }
        let r = self
            .client
            .get(&t.label, url.as_str(), &headers, budget)
            .await?;
        Fetch::from_response(&t.label, r, known, transferred)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_addresses_and_labels() {
        let g = GitlabBackendConfig {
            url: "https://gitlab.lan:8443/".into(),
            project: "home lab/infra".into(),
            states: vec![],
            token: crate::core::config::SecretRef {
                file: None,
                env: Some("HM_TEST_GITLAB_TOKEN_UNIT".into()),
            },
            ca_file: None,
        };
        let env = Env::from_pairs([("HM_TEST_GITLAB_TOKEN_UNIT", "t")]);
        let b =
            GitlabBackend::from_config(&g, Path::new("/"), Duration::from_secs(1), &env).unwrap();
        assert_eq!(
            b.state_url("prod/eu").as_str(),
            "https://gitlab.lan:8443/api/v4/projects/home%20lab%2Finfra/terraform/state/prod%2Feu"
        );
        assert_eq!(b.label(), "gitlab://gitlab.lan:8443/home lab/infra");
    }

    #[test]
    fn a_missing_token_variable_is_named() {
        let g = GitlabBackendConfig {
            url: "https://gitlab.lan/".into(),
            project: "infra".into(),
            states: vec![],
            token: crate::core::config::SecretRef {
                file: None,
                env: Some("HM_TEST_GITLAB_TOKEN_UNSET".into()),
            },
            ca_file: None,
        };
        let e =
            GitlabBackend::from_config(&g, Path::new("/"), Duration::from_secs(1), &Env::default())
                .err()
                .unwrap();
        assert_eq!(e.reason, "credentials");
        assert!(
            e.message.contains("HM_TEST_GITLAB_TOKEN_UNSET is not set"),
            "{e}"
        );
    }
}
