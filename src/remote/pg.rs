//! Terraform `pg` backend: `<schema>.states (id, name, data)`, one row per
//! workspace (`name`; the default workspace is `default`).
//!
//! One `tokio-postgres` connection per entry and collection (requests are
//! serialised on it, so a backend's concurrency is 1). The server cancels a
//! statement after the request timeout (`statement_timeout`), and every
//! connect and query is bounded on this side too, so a peer that stops
//! answering costs one request timeout. A state is downloaded only when its
//! `md5(data)` changed.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::core::config::PgBackendConfig;

use super::client::{read_secret, Budget};
use super::env::Env;
use super::{Fetch, RemoteError, StateBackend, Target};

pub const DEFAULT_SCHEMA: &str = "terraform_remote_state";

pub struct PgBackend {
    label: String,
    config: tokio_postgres::Config,
    /// The password, only to scrub it from error messages.
    password: Option<String>,
    schema: String,
    /// rustls for every sslmode but `disable` (pg_tls.rs).
    tls: Option<MakeRustlsConnect>,
    client: Mutex<Option<Client>>,
}

impl PgBackend {
    pub fn from_config(
        c: &PgBackendConfig,
        base: &Path,
        timeout: Duration,
        env: &Env,
    ) -> Result<Self, RemoteError> {
        let conn = read_secret(
            base,
            c.conn_str.file.as_deref(),
            c.conn_str.env.as_deref(),
            env,
        )
        .map_err(|m| RemoteError::new("pg://", "credentials", m))?
        .unwrap_or_default();
        Self::new(&conn, &c.schema_name, base, timeout, env)
    }

    /// `base`: the folder relative `sslrootcert` / `sslcert` / `sslkey` paths
    /// are resolved against; `env`: where `PGSSLMODE`, `PGSSLROOTCERT`,
    /// `PGSSLCERT` and `PGSSLKEY` are read.
    pub fn new(
        conn_str: &str,
        schema: &str,
        base: &Path,
        timeout: Duration,
        env: &Env,
    ) -> Result<Self, RemoteError> {
        let plain = schema
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !plain {
            return Err(RemoteError::new(
                "pg://",
                "config",
                "schema_name must be a plain identifier",
            ));
        }
        let lookup = |k: &str| env.var(k);
        let (conn_str, tls) = super::pg_tls::split(conn_str, base, &lookup)
            .map_err(|m| RemoteError::new("pg://", "config", m))?;
        let mut config = tokio_postgres::Config::from_str(&conn_str).map_err(|_| {
            RemoteError::new(
                "pg://",
                "bad_url",
                "the connection string cannot be parsed (its text is not shown: it may hold a password)",
            )
        })?;
        config.connect_timeout(timeout);
        config.ssl_mode(tls.mode.negotiation());
        if config.get_application_name().is_none() {
            config.application_name("homelab-monitor");
        }
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => {
                p.display().to_string().replace('/', "%2F")
            }
            None => "localhost".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let db = config
            .get_dbname()
            .map(str::to_string)
            .or_else(|| config.get_user().map(str::to_string))
            .unwrap_or_else(|| "postgres".into());
        let mut label = format!("pg://{host}:{port}/{db}");
        if schema != DEFAULT_SCHEMA {
            label.push('/');
            label.push_str(schema);
        }
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).to_string())
            .filter(|p| !p.is_empty());
        let tls = super::pg_tls::client_config(&tls)
            .map_err(|m| RemoteError::new(&label, "tls", m))?
            .map(MakeRustlsConnect::new);
        Ok(PgBackend {
            label,
            config,
            password,
            schema: schema.to_string(),
            tls,
            client: Mutex::new(None),
        })
    }

    fn error(&self, label: &str, e: &tokio_postgres::Error) -> RemoteError {
        use tokio_postgres::error::SqlState;
        let (reason, message) = if let Some(db) = e.as_db_error() {
            let code = db.code();
            let reason = if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            {
                "auth"
            } else if *code == SqlState::UNDEFINED_TABLE
                || *code == SqlState::INVALID_SCHEMA_NAME
                || *code == SqlState::INVALID_CATALOG_NAME
            {
                "not_found"
            } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
                "permission_denied"
            } else {
                "pg_error"
            };
            (reason, format!("PostgreSQL: {}", db.message()))
        } else {
            let text = e.to_string();
            let reason = if text.contains("timed out") || text.contains("timeout") {
                "timeout"
            } else if text.contains("TLS") {
                "tls"
            } else if text.contains("failed to lookup address") {
                "dns"
            } else if e.is_closed() || text.contains("connect") {
                "unreachable"
            } else {
                "pg_error"
            };
            // The TLS layer's own words (e.g. "invalid peer certificate: UnknownIssuer")
            // say what to fix; an I/O error's kind is enough otherwise.
            let cause = std::error::Error::source(e)
                .map(|c| match c.downcast_ref::<std::io::Error>() {
                    Some(io) => match io.get_ref() {
                        Some(inner) if reason == "tls" => format!(" ({inner})"),
                        _ => format!(" ({})", io.kind()),
                    },
                    None if reason == "tls" => format!(" ({c})"),
                    None => String::new(),
                })
                .unwrap_or_default();
            (reason, format!("PostgreSQL: {text}{cause}"))
        };
        let message = match &self.password {
            Some(p) => message.replace(p.as_str(), "***"),
            None => message,
        };
        let mut err = RemoteError::new(label, reason, message);
        err.retryable = matches!(reason, "unreachable" | "timeout");
        err
    }

    /// Connect, and set the statement timeout; bounded by `timeout` as a whole
    /// (TCP, TLS, authentication).
    async fn connect(&self, budget: &Budget, timeout: Duration) -> Result<Client, ConnectError> {
        let mut cfg = self.config.clone();
        cfg.connect_timeout(timeout);
        let connect = async {
            let client = match &self.tls {
                Some(tls) => {
                    let (client, conn) = cfg.connect(tls.clone()).await?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    client
                }
                None => {
                    let (client, conn) = cfg.connect(NoTls).await?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    client
                }
            };
            // The server cancels a query it cannot answer within the
            // request timeout (a lock wait, a slow disk).
            let ms = budget
                .request_timeout
                .as_millis()
                .clamp(1, i32::MAX as u128);
            client
                .batch_execute(&format!("SET statement_timeout = {ms}"))
                .await?;
            Ok(client)
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(ConnectError::Pg(e)),
            Err(_) => Err(ConnectError::TimedOut),
        }
    }

    /// Run a query on the connection, connecting (with retries) if needed.
    async fn query(
        &self,
        label: &str,
        budget: &Budget,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, RemoteError> {
        let mut guard = self.client.lock().await;
        let mut attempt = 0;
        loop {
            let remaining = budget.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(RemoteError::new(
                    label,
                    "timeout",
                    "no time left inside the monitor's timeout",
                ));
            }
            let timeout = budget.request_timeout.min(remaining);
            if guard.as_ref().is_none_or(|c| c.is_closed()) {
                match self.connect(budget, timeout).await {
                    Ok(c) => *guard = Some(c),
                    Err(e) => {
                        let err = match e {
                            ConnectError::Pg(e) => self.error(label, &e),
                            ConnectError::TimedOut => timed_out(label, timeout),
                        };
                        let wait = super::client::backoff(attempt);
                        if err.retryable
                            && attempt < budget.retries
                            && wait < budget.deadline.saturating_duration_since(Instant::now())
                        {
                            tokio::time::sleep(wait).await;
                            attempt += 1;
                            continue;
                        }
                        return Err(err);
                    }
                }
            }
            let Some(client) = guard.as_ref() else {
                continue;
            };
            return match tokio::time::timeout(timeout, client.query(sql, params)).await {
                Ok(Ok(rows)) => Ok(rows),
                Ok(Err(e)) => {
                    if client.is_closed() {
                        *guard = None;
                    }
                    Err(self.error(label, &e))
                }
                Err(_) => {
                    // The connection is in an unknown state: start afresh next time.
                    *guard = None;
                    Err(timed_out(label, timeout))
                }
            };
        }
    }

    fn target(&self, ws: &str) -> Target {
        Target {
            label: format!("{}/{}", self.label, ws),
            id: ws.to_string(),
            lock: None,
        }
    }
}

/// Why a connection could not be made.
enum ConnectError {
    Pg(tokio_postgres::Error),
    TimedOut,
}

fn timed_out(label: &str, after: Duration) -> RemoteError {
    let mut e = RemoteError::new(
        label,
        "timeout",
        format!("PostgreSQL did not answer within {after:?}"),
    );
    e.retryable = true;
    e
}

#[async_trait::async_trait]
impl StateBackend for PgBackend {
    fn label(&self) -> &str {
        &self.label
    }

    async fn discover(&self, budget: &Budget) -> Result<Vec<Target>, RemoteError> {
        let sql = format!("SELECT name FROM {}.states ORDER BY name", self.schema);
        let rows = self.query(&self.label, budget, &sql, &[]).await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<_, String>(0).ok())
            .map(|n| self.target(&n))
            .collect())
    }

    async fn fetch(
        &self,
        t: &Target,
        known: Option<&str>,
        budget: &Budget,
        transferred: &mut u64,
    ) -> Result<Fetch, RemoteError> {
        let probe = format!(
            "SELECT md5(data), octet_length(data)::int8 FROM {}.states WHERE name = $1",
            self.schema
        );
        let rows = self.query(&t.label, budget, &probe, &[&t.id]).await?;
        let row: Option<(Option<String>, Option<i64>)> = rows
            .first()
            .map(|r| (r.try_get(0).ok().flatten(), r.try_get(1).ok().flatten()));
        let Some((md5, len)) = row else {
            return Err(RemoteError::new(
                &t.label,
                "not_found",
                "the workspace has no row any more",
            ));
        };
        let (Some(md5), Some(len)) = (md5, len) else {
            return Ok(Fetch::NoState);
        };
        if known == Some(md5.as_str()) {
            return Ok(Fetch::NotModified);
        }
        let len = u64::try_from(len).unwrap_or(0);
        if len > budget.max_size {
            return Err(RemoteError::new(
                &t.label,
                "too_large",
                format!("state of {len} bytes is over the {}-byte limit (raise max_file_size if it is genuine)", budget.max_size),
            ));
        }
        let sql = format!("SELECT data FROM {}.states WHERE name = $1", self.schema);
        let rows = self.query(&t.label, budget, &sql, &[&t.id]).await?;
        let data: Option<String> = rows
            .first()
            .and_then(|r| r.try_get::<_, Option<String>>(0).ok().flatten());
        let Some(data) = data else {
            return Ok(Fetch::NoState);
        };
        *transferred += data.len() as u64;
        Ok(Fetch::Body {
            bytes: data.into_bytes(),
            version: Some(md5),
            modified: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_tls_variables_come_from_the_injected_environment() {
        let t = Duration::from_secs(1);
        let base = Path::new("/");
        let b = PgBackend::new(
            "host=db.lan dbname=tf",
            DEFAULT_SCHEMA,
            base,
            t,
            &Env::default(),
        )
        .unwrap();
        assert_eq!(b.label, "pg://db.lan:5432/tf");
        let env = Env::from_pairs([("PGSSLMODE", "sometimes")]);
        let e = PgBackend::new("host=db.lan", DEFAULT_SCHEMA, base, t, &env)
            .err()
            .unwrap();
        assert!(e.message.contains("sslmode must be"), "{e}");
        // verify-full needs roots: PGSSLROOTCERT of the environment is read.
        let env = Env::from_pairs([
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", "/nonexistent/root.crt"),
        ]);
        let e = PgBackend::new("host=db.lan", DEFAULT_SCHEMA, base, t, &env)
            .err()
            .unwrap();
        assert!(e.message.contains("/nonexistent/root.crt"), "{e}");
    }

    #[test]
    fn the_connection_string_variable_is_read_from_the_injected_environment() {
        let c = PgBackendConfig {
            conn_str: crate::core::config::SecretRef {
                file: None,
                env: Some("UNIT_PG_CONN".into()),
            },
            schema_name: DEFAULT_SCHEMA.into(),
        };
        let t = Duration::from_secs(1);
        let env = Env::from_pairs([("UNIT_PG_CONN", "postgres://u:pw@db.lan:5433/states")]);
        let b = PgBackend::from_config(&c, Path::new("/"), t, &env).unwrap();
        assert_eq!(b.label, "pg://db.lan:5433/states");
        let e = PgBackend::from_config(&c, Path::new("/"), t, &Env::default())
            .err()
            .unwrap();
        assert_eq!(e.reason, "credentials");
        assert!(e.message.contains("UNIT_PG_CONN is not set"), "{e}");
    }
}
