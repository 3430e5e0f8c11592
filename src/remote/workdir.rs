//! Zero-config: the backend recorded by `terraform init` in
//! `<dir>/.terraform/terraform.tfstate`, with credentials from that record or
//! the environment as Terraform reads them. Values of that file are never
//! logged or put in messages (it may hold keys and passwords).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::core::config::HttpAuth;

use super::client::Budget;
use super::env::Env;
use super::hcp::{HcpBackend, HcpParams};
use super::http::HttpBackend;
use super::pg::{PgBackend, DEFAULT_SCHEMA};
use super::s3::{S3Backend, S3Params};
use super::{RemoteError, StateBackend};

/// The backend of a working directory; `None` if it records none (local state
/// or not initialised). `env`: the variables Terraform would read
/// (`TF_HTTP_*`, `AWS_*`, `PG_CONN_STR`, `TF_CLOUD_*`, `TF_TOKEN_*`…).
pub fn backend_of(
    dir: &Path,
    base: &Path,
    timeout: Duration,
    budget: &Budget,
    env: &Env,
) -> Result<Option<Box<dyn StateBackend>>, RemoteError> {
    let Some((shown, v)) = read_record(dir, base)? else {
        return Ok(None);
    };
    let b = &v["backend"];
    let kind = b["type"].as_str().unwrap_or("");
    let c = &b["config"];
    let s = |k: &str| c[k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let vars = env;
    let env = |k: &str| vars.var(k);
    let backend: Box<dyn StateBackend> = match kind {
        "local" | "" => return Ok(None),
        "http" => {
            let Some(address) = s("address").or_else(|| env("TF_HTTP_ADDRESS")) else {
                return Err(RemoteError::new(
                    &shown,
                    "config",
                    "the http backend record has no address (set TF_HTTP_ADDRESS)",
                ));
            };
            let user = s("username").or_else(|| env("TF_HTTP_USERNAME"));
            let password = s("password").or_else(|| env("TF_HTTP_PASSWORD"));
            let auth = if user.is_some() || password.is_some() {
                HttpAuth::Basic
            } else {
                HttpAuth::None
            };
            // TLS as Terraform's http backend takes it: inline PEM in the record
            // (or TF_HTTP_CLIENT_* variables) and skip_cert_verification.
            let label = super::http::label_of(&address);
            let pem = |k: &str, var: &str| s(k).or_else(|| env(var)).map(String::into_bytes);
            let mut tls = super::client::TlsSettings {
                skip_verify: c["skip_cert_verification"].as_bool().unwrap_or(false),
                ..Default::default()
            }
            .with_env(vars);
            if let Some(ca) = pem(
                "client_ca_certificate_pem",
                "TF_HTTP_CLIENT_CA_CERTIFICATE_PEM",
            ) {
                tls.ca_pem = Some((format!("client_ca_certificate_pem of {shown}"), ca));
            }
            match (
                pem("client_certificate_pem", "TF_HTTP_CLIENT_CERTIFICATE_PEM"),
                pem("client_private_key_pem", "TF_HTTP_CLIENT_PRIVATE_KEY_PEM"),
            ) {
                (Some(cert), Some(key)) => {
                    tls.client = Some((format!("client_certificate_pem of {shown}"), cert, key))
                }
                (None, None) => {}
                _ => {
                    return Err(RemoteError::new(
                        &label,
                        "config",
                        format!(
                        "{shown}: client_certificate_pem and client_private_key_pem go together"
                    ),
                    ))
                }
            }
            Box::new(HttpBackend::new(
                &address,
                auth,
                user.as_deref(),
                password,
                &tls,
                timeout,
            )?)
        }
        "s3" => {
            let Some(bucket) = s("bucket") else {
                return Err(RemoteError::new(
                    &shown,
                    "config",
                    "the s3 backend record has no bucket",
                ));
            };
            let endpoint = c["endpoints"]["s3"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .or_else(|| s("endpoint"))
                .or_else(|| env("AWS_ENDPOINT_URL_S3"))
                .or_else(|| env("AWS_ENDPOINT_URL"));
            let credentials = match (s("access_key"), s("secret_key")) {
                (Some(k), Some(sk)) => Some((k, sk, s("token"))),
                _ => None,
            };
            Box::new(S3Backend::new(
                S3Params {
                    bucket,
                    key: Some(s("key").unwrap_or_else(|| "terraform.tfstate".into())),
                    prefix: None,
                    region: s("region")
                        .or_else(|| env("AWS_REGION"))
                        .or_else(|| env("AWS_DEFAULT_REGION"))
                        .unwrap_or_else(|| "us-east-1".into()),
                    endpoint,
                    path_style: c["use_path_style"].as_bool().unwrap_or(false)
                        || c["force_path_style"].as_bool().unwrap_or(false),
                    workspace_key_prefix: s("workspace_key_prefix")
                        .unwrap_or_else(|| "env:".into()),
                    credentials,
                    profile: s("profile"),
                    ca_file: None,
                },
                timeout,
                budget,
                vars,
            )?)
        }
        "pg" => {
            let Some(conn) = s("conn_str").or_else(|| env("PG_CONN_STR")) else {
                return Err(RemoteError::new(
                    &shown,
                    "config",
                    "the pg backend record has no conn_str (set PG_CONN_STR)",
                ));
            };
            let schema = s("schema_name")
                .or_else(|| env("PG_SCHEMA_NAME"))
                .unwrap_or_else(|| DEFAULT_SCHEMA.into());
            Box::new(PgBackend::new(&conn, &schema, dir, timeout, vars)?)
        }
        "cloud" | "remote" => {
            // HCP Terraform / Terraform Enterprise: the `cloud` block (1.1+) or
            // the older `remote` backend.
            let host = s("hostname")
                .or_else(|| {
                    (kind == "cloud")
                        .then(|| env("TF_CLOUD_HOSTNAME"))
                        .flatten()
                })
                .unwrap_or_else(|| "app.terraform.io".into());
            let Some(org) = s("organization").or_else(|| {
                (kind == "cloud")
                    .then(|| env("TF_CLOUD_ORGANIZATION"))
                    .flatten()
            }) else {
                return Err(RemoteError::new(
                    &shown,
                    "config",
                    format!("the {kind} record has no organization (set TF_CLOUD_ORGANIZATION)"),
                ));
            };
            let address = url::Url::parse(&format!("https://{host}")).map_err(|_| {
                RemoteError::new(
                    &shown,
                    "bad_url",
                    format!("the {kind} record's hostname is not a host name"),
                )
            })?;
            let ws = &c["workspaces"];
            let names: Vec<String> = ws["name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(|n| vec![n.to_string()])
                .unwrap_or_default();
            // `tags` is a list of names (a map of key/values in newer versions: its keys).
            let tags: Vec<String> = match &ws["tags"] {
                Value::Array(a) => a
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect(),
                Value::Object(o) => o.keys().cloned().collect(),
                _ => Vec::new(),
            };
            let prefix = ws["prefix"]
                .as_str()
                .filter(|p| !p.is_empty())
                .map(str::to_string);
            if names.is_empty() && tags.is_empty() && prefix.is_none() {
                return Err(RemoteError::new(
                    &shown,
                    "config",
                    format!("the {kind} record names no workspace (name, tags or prefix)"),
                ));
            }
            let label = super::hcp::org_label(address.as_str(), &org);
            let token = match s("token") {
                Some(t) => Some(t),
                None => super::hcp::token_for_host(&label, &super::host_port(&address), vars)?,
            };
            Box::new(HcpBackend::new(
                HcpParams {
                    address,
                    organization: org,
                    workspaces: names,
                    tags,
                    prefix,
                    token,
                },
                None,
                timeout,
                vars,
            )?)
        }
        other => {
            let other = if other.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                other
            } else {
                "?"
            };
            return Err(RemoteError::new(
                &shown,
                "unsupported_backend",
                format!(
                    "backend type {other} is not supported (http, s3, pg, cloud and remote are)"
                ),
            ));
        }
    };
    Ok(Some(backend))
}

/// `<dir>/.terraform/terraform.tfstate` as JSON, with its path relative to
/// `base` for messages; `None` when there is none or it records no backend.
fn read_record(dir: &Path, base: &Path) -> Result<Option<(String, Value)>, RemoteError> {
    let record = dir.join(".terraform").join("terraform.tfstate");
    let shown = record
        .strip_prefix(base)
        .unwrap_or(&record)
        .to_string_lossy()
        .replace('\\', "/");
    let text = match crate::core::safe_open::read(&record) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(RemoteError::new(
                &shown,
                "io",
                format!("cannot read the backend record: {}", e.kind()),
            ))
        }
    };
    let v: Value = serde_json::from_slice(&text)
        .map_err(|_| RemoteError::new(&shown, "not_json", "the backend record is not JSON"))?;
    if !v.get("backend").is_some_and(|b| b.is_object()) {
        return Ok(None);
    }
    Ok(Some((shown, v)))
}

/// The `state_file` label the Terraform monitor gives to the state of
/// `workspace` of the backend recorded in `dir` (as [`backend_of`] and the
/// backend's discovery name it); `None` for the local backend or no record.
/// No request is made and no credential is read: the drift runner uses it to
/// put a remote state's report where the exporter looks for it.
pub fn state_label_of(
    dir: &Path,
    base: &Path,
    workspace: &str,
    env: &Env,
) -> Result<Option<String>, RemoteError> {
    let Some((shown, v)) = read_record(dir, base)? else {
        return Ok(None);
    };
    let b = &v["backend"];
    let kind = b["type"].as_str().unwrap_or("");
    let c = &b["config"];
    let s = |k: &str| c[k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let default_ws = workspace.is_empty() || workspace == "default";
    let missing = |what: &str| {
        RemoteError::new(
            &shown,
            "config",
            format!("the {kind} backend record has no {what}"),
        )
    };
    let label = match kind {
        "local" | "" => return Ok(None),
        // The http backend has no workspaces.
        "http" => super::http::label_of(
            &s("address")
                .or_else(|| env.var("TF_HTTP_ADDRESS"))
                .ok_or_else(|| missing("address (set TF_HTTP_ADDRESS)"))?,
        ),
        "s3" => {
            let bucket = s("bucket").ok_or_else(|| missing("bucket"))?;
            let key = s("key").unwrap_or_else(|| "terraform.tfstate".into());
            if default_ws {
                format!("s3://{bucket}/{key}")
            } else {
                let wkp = s("workspace_key_prefix").unwrap_or_else(|| "env:".into());
                format!(
                    "s3://{bucket}/{}/{workspace}/{key}",
                    wkp.trim_end_matches('/')
                )
            }
        }
        "pg" => {
            let conn = s("conn_str")
                .or_else(|| env.var("PG_CONN_STR"))
                .ok_or_else(|| missing("conn_str (set PG_CONN_STR)"))?;
            let schema = s("schema_name")
                .or_else(|| env.var("PG_SCHEMA_NAME"))
                .unwrap_or_else(|| DEFAULT_SCHEMA.into());
            let ws = if default_ws { "default" } else { workspace };
            let entry = PgBackend::new(&conn, &schema, dir, Duration::from_secs(1), env)?;
            format!("{}/{ws}", entry.label())
        }
        "cloud" | "remote" => {
            let host = s("hostname")
                .or_else(|| {
                    (kind == "cloud")
                        .then(|| env.var("TF_CLOUD_HOSTNAME"))
                        .flatten()
                })
                .unwrap_or_else(|| "app.terraform.io".into());
            let org = s("organization")
                .or_else(|| {
                    (kind == "cloud")
                        .then(|| env.var("TF_CLOUD_ORGANIZATION"))
                        .flatten()
                })
                .ok_or_else(|| missing("organization (set TF_CLOUD_ORGANIZATION)"))?;
            let ws = &c["workspaces"];
            let name =
                match (
                    ws["name"].as_str().filter(|n| !n.is_empty()),
                    ws["prefix"].as_str().filter(|p| !p.is_empty()),
                ) {
                    (Some(n), _) => n.to_string(),
                    (None, Some(p)) if !default_ws => format!("{p}{workspace}"),
                    (None, None) if !default_ws => workspace.to_string(),
                    _ => return Err(missing(
                        "workspace name for the selected workspace (select one with TF_WORKSPACE)",
                    )),
                };
            format!(
                "{}/{name}",
                super::hcp::org_label(&format!("https://{host}"), &org)
            )
        }
        _ => {
            return Err(RemoteError::new(
                &shown,
                "unsupported_backend",
                "this backend type is not supported (http, s3, pg, cloud and remote are)",
            ))
        }
    };
    Ok(Some(label))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(dir: &Path, json: &str) {
        std::fs::create_dir_all(dir.join(".terraform")).unwrap();
        std::fs::write(dir.join(".terraform/terraform.tfstate"), json).unwrap();
    }

    #[test]
    fn records_without_a_backend_add_nothing_and_unknown_types_are_named() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let timeout = Duration::from_secs(1);
        let budget = Budget {
            deadline: std::time::Instant::now() + timeout,
            request_timeout: timeout,
            retries: 0,
            max_size: 1 << 20,
        };
        assert!(
            backend_of(d, d, timeout, &budget, &Env::default())
                .unwrap()
                .is_none(),
            "no record"
        );
        record(d, r#"{"version":3,"serial":1}"#);
        assert!(
            backend_of(d, d, timeout, &budget, &Env::default())
                .unwrap()
                .is_none(),
            "no backend"
        );
        record(
            d,
            r#"{"version":3,"backend":{"type":"gcs","config":{"bucket":"b","credentials":"SECRET-IN-RECORD"}}}"#,
        );
        let e = backend_of(d, d, timeout, &budget, &Env::default())
            .err()
            .unwrap();
        assert_eq!(e.reason, "unsupported_backend");
        assert!(!e.to_string().contains("SECRET"), "{e}");
        assert!(
            e.to_string().contains(".terraform/terraform.tfstate"),
            "{e}"
        );
        record(d, "not json SECRET");
        let e = backend_of(d, d, timeout, &budget, &Env::default())
            .err()
            .unwrap();
        assert_eq!(e.reason, "not_json");
        assert!(!e.to_string().contains("SECRET"), "{e}");
        record(
            d,
            r#"{"backend":{"type":"http","config":{"address":"https://h.lan/s","username":"u","password":"SECRET-PW"}}}"#,
        );
        let b = backend_of(d, d, timeout, &budget, &Env::default())
            .unwrap()
            .unwrap();
        assert_eq!(b.label(), "https://h.lan/s");
    }

    #[test]
    fn terraform_variables_come_from_the_injected_environment() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let timeout = Duration::from_secs(1);
        let budget = Budget {
            deadline: std::time::Instant::now() + timeout,
            request_timeout: timeout,
            retries: 0,
            max_size: 1 << 20,
        };
        let label = |env: &Env| match backend_of(d, d, timeout, &budget, env) {
            Ok(Some(b)) => Ok(b.label().to_string()),
            Ok(None) => Ok("none".to_string()),
            Err(e) => Err(e),
        };
        // http: the address from TF_HTTP_ADDRESS; a half client pair is refused.
        record(d, r#"{"backend":{"type":"http","config":{}}}"#);
        let e = label(&Env::default()).unwrap_err();
        assert!(e.message.contains("TF_HTTP_ADDRESS"), "{e}");
        let env = Env::from_pairs([("TF_HTTP_ADDRESS", "https://state.lan/p")]);
        assert_eq!(label(&env).unwrap(), "https://state.lan/p");
        let env = Env::from_pairs([
            ("TF_HTTP_ADDRESS", "https://state.lan/p"),
            ("TF_HTTP_CLIENT_CERTIFICATE_PEM", "x"),
        ]);
        assert!(label(&env).unwrap_err().message.contains("go together"));
        // pg: PG_CONN_STR and PG_SCHEMA_NAME.
        record(d, r#"{"backend":{"type":"pg","config":{}}}"#);
        assert!(label(&Env::default())
            .unwrap_err()
            .message
            .contains("PG_CONN_STR"));
        let env = Env::from_pairs([
            ("PG_CONN_STR", "postgres://u:SECRET@db.lan/tf"),
            ("PG_SCHEMA_NAME", "states"),
        ]);
        assert_eq!(label(&env).unwrap(), "pg://db.lan:5432/tf/states");
        // cloud: TF_CLOUD_ORGANIZATION / _HOSTNAME, the token from TF_TOKEN_<host>.
        record(
            d,
            r#"{"backend":{"type":"cloud","config":{"workspaces":{"name":"w"}}}}"#,
        );
        assert!(label(&Env::default())
            .unwrap_err()
            .message
            .contains("TF_CLOUD_ORGANIZATION"));
        let cloud = [
            ("TF_CLOUD_ORGANIZATION", "lab"),
            ("TF_CLOUD_HOSTNAME", "tfe.lan"),
        ];
        let e = label(&Env::from_pairs(cloud)).unwrap_err();
        assert_eq!(e.reason, "credentials");
        assert!(e.message.contains("TF_TOKEN_tfe_lan"), "{e}");
        let mut with_token = cloud.to_vec();
        with_token.push(("TF_TOKEN_tfe_lan", "tok"));
        assert_eq!(
            label(&Env::from_pairs(with_token)).unwrap(),
            "hcp://tfe.lan/lab"
        );
        // s3: static keys and SSL_CERT_FILE of the environment reach the backend.
        record(
            d,
            r#"{"backend":{"type":"s3","config":{"bucket":"b","key":"k"}}}"#,
        );
        let env = Env::from_pairs([
            ("AWS_ACCESS_KEY_ID", "AKIAUNITWORKDIR"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("SSL_CERT_FILE", "/nonexistent/roots.pem"),
        ]);
        let e = label(&env).unwrap_err();
        assert_eq!(e.reason, "tls", "{e}");
        assert!(e.message.contains("SSL_CERT_FILE"), "{e}");
    }

    #[test]
    fn state_labels_of_working_directories_match_discovery_without_requests() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let env = Env::default();
        let label = |ws: &str| state_label_of(d, d, ws, &env).map_err(|e| e.to_string());
        assert_eq!(label("default"), Ok(None), "no record");
        record(d, r#"{"backend":{"type":"local","config":{}}}"#);
        assert_eq!(label("default"), Ok(None), "local backend");
        record(
            d,
            r#"{"backend":{"type":"http","config":{"address":"https://u:SECRET@h.lan/s?token=SECRET"}}}"#,
        );
        assert_eq!(label("default"), Ok(Some("https://h.lan/s".into())));
        // s3: the default workspace's key, else `<workspace_key_prefix>/<ws>/<key>` (as listed).
        record(
            d,
            r#"{"backend":{"type":"s3","config":{"bucket":"b","key":"app/terraform.tfstate"}}}"#,
        );
        assert_eq!(
            label("default"),
            Ok(Some("s3://b/app/terraform.tfstate".into()))
        );
        assert_eq!(
            label("prod"),
            Ok(Some("s3://b/env:/prod/app/terraform.tfstate".into()))
        );
        record(
            d,
            r#"{"backend":{"type":"s3","config":{"bucket":"b","key":"k","workspace_key_prefix":"ws/"}}}"#,
        );
        assert_eq!(label("prod"), Ok(Some("s3://b/ws/prod/k".into())));
        // pg: the entry's label and the workspace.
        record(
            d,
            r#"{"backend":{"type":"pg","config":{"conn_str":"postgres://u:SECRET@db.lan/tf"}}}"#,
        );
        assert_eq!(
            label("default"),
            Ok(Some("pg://db.lan:5432/tf/default".into()))
        );
        assert_eq!(label("prod"), Ok(Some("pg://db.lan:5432/tf/prod".into())));
        // cloud: the named workspace, or the prefix and the selected one.
        record(
            d,
            r#"{"backend":{"type":"cloud","config":{"organization":"lab","workspaces":{"name":"w"}}}}"#,
        );
        assert_eq!(label("default"), Ok(Some("hcp://lab/w".into())));
        record(
            d,
            r#"{"backend":{"type":"remote","config":{"hostname":"tfe.lan","organization":"lab","workspaces":{"prefix":"app-"}}}}"#,
        );
        assert_eq!(label("prod"), Ok(Some("hcp://tfe.lan/lab/app-prod".into())));
        assert!(label("default").is_err());
        record(
            d,
            r#"{"backend":{"type":"gcs","config":{"credentials":"SECRET"}}}"#,
        );
        let e = label("default").unwrap_err();
        assert!(e.contains("not supported") && !e.contains("SECRET"), "{e}");
    }
}
