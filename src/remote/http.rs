//! Terraform `http` backend (GitLab-managed state, Gitea, any server that
//! answers GET on the state address).

use std::path::Path;
use std::time::Duration;

use base64::Engine;

use crate::core::config::{HttpAuth, HttpBackendConfig};

use super::client::{read_secret, Budget, HttpClient, TlsSettings};
use super::env::Env;
use super::{Fetch, RemoteError, StateBackend, Target};

/// Label of an address: scheme, host, port and path; no user info, query or fragment.
pub fn label_of(address: &str) -> String {
    match url::Url::parse(address) {
        Ok(u) => format!("{}://{}{}", u.scheme(), super::host_port(&u), u.path()),
        Err(_) => "http://invalid-address".into(),
    }
}

pub struct HttpBackend {
    label: String,
    address: String,
    /// (header name, value); the value is a secret.
    auth: Option<(&'static str, String)>,
    client: HttpClient,
}

impl HttpBackend {
    pub fn from_config(
        c: &HttpBackendConfig,
        base: &Path,
        timeout: Duration,
        env: &Env,
    ) -> Result<Self, RemoteError> {
        let label = label_of(&c.address);
        let token = match &c.token {
            Some(t) => read_secret(base, t.file.as_deref(), t.env.as_deref(), env)
                .map_err(|m| RemoteError::new(&label, "credentials", m))?,
            None => None,
        };
        let auth = c.auth.unwrap_or(match (&c.username, &token) {
            (Some(_), Some(_)) => HttpAuth::Basic,
            (None, Some(_)) => HttpAuth::Bearer,
            _ => HttpAuth::None,
        });
        let mut tls = TlsSettings {
            skip_verify: c.skip_cert_verification,
            ..TlsSettings::default()
        }
        .with_env(env);
        if let Some(f) = &c.ca_file {
            tls = tls
                .with_ca_file(&base.join(f))
                .map_err(|m| RemoteError::new(&label, "tls", m))?;
        }
        match (&c.client_cert, &c.client_key) {
            (Some(cert), Some(key)) => {
                tls = tls
                    .with_client_files(&base.join(cert), &base.join(key))
                    .map_err(|m| RemoteError::new(&label, "tls", m))?;
            }
            (None, None) => {}
            _ => {
                return Err(RemoteError::new(
                    &label,
                    "config",
                    "client_cert and client_key go together",
                ))
            }
        }
        Self::new(
            &c.address,
            auth,
            c.username.as_deref(),
            token,
            &tls,
            timeout,
        )
    }

    pub fn new(
        address: &str,
        auth: HttpAuth,
        username: Option<&str>,
        token: Option<String>,
        tls: &TlsSettings,
        timeout: Duration,
    ) -> Result<Self, RemoteError> {
        let label = label_of(address);
        let client = HttpClient::with_tls(timeout, tls, 3)
            .map_err(|m| RemoteError::new(&label, "tls", m))?;
        let header = match (auth, token) {
            (HttpAuth::None, _) => None,
            (_, None) => {
                return Err(RemoteError::new(
                    &label,
                    "credentials",
                    "auth is set but no token was given",
                ))
            }
            (HttpAuth::Basic, Some(t)) => {
                let user = username.unwrap_or("");
                let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{t}"));
                Some(("authorization", format!("Basic {enc}")))
            }
            (HttpAuth::Bearer, Some(t)) => Some(("authorization", format!("Bearer {t}"))),
            (HttpAuth::PrivateToken, Some(t)) => Some(("private-token", t)),
            (HttpAuth::JobToken, Some(t)) => Some(("job-token", t)),
        };
        Ok(HttpBackend {
            label,
            address: address.to_string(),
            auth: header,
            client,
        })
    }
}

#[async_trait::async_trait]
impl StateBackend for HttpBackend {
    fn label(&self) -> &str {
        &self.label
    }

    async fn discover(&self, _budget: &Budget) -> Result<Vec<Target>, RemoteError> {
        Ok(vec![Target {
            label: self.label.clone(),
            id: String::new(),
            lock: None,
        }])
    }

    async fn fetch(
        &self,
        t: &Target,
        known: Option<&str>,
        budget: &Budget,
        transferred: &mut u64,
    ) -> Result<Fetch, RemoteError> {
        let mut headers: Vec<(&str, &str)> = vec![("accept", "application/json")];
        if let Some((k, v)) = &self.auth {
            headers.push((*k, v.as_str()));
        }
        if let Some(k) = known {
            headers.push(("if-none-match", k));
        }
        let r = self
            .client
            .get(&t.label, &self.address, &headers, budget)
            .await?;
        Fetch::from_response(&t.label, r, known, transferred)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_drop_credentials_and_queries() {
        assert_eq!(
            label_of("https://user:pw@gitlab.lan:8443/api/v4/projects/1/terraform/state/prod?private_token=x#f"),
            "https://gitlab.lan:8443/api/v4/projects/1/terraform/state/prod"
        );
    }
}
