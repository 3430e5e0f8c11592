//! TLS for the `pg` backend, with libpq's connection-string options
//! (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, and the `PGSSL*`
//! environment variables), which Terraform's `pg` backend accepts too.
//!
//! The `tokio-postgres` crate knows only `sslmode=disable|prefer|require` and no
//! certificate options, so these options are taken out of the connection
//! string here and turned into a rustls configuration:
//!
//! | sslmode | encryption | server certificate |
//! |---|---|---|
//! | `disable` | never | - |
//! | `allow`, `prefer` (default) | if the server offers it | not checked; checked against `sslrootcert` when that is given |
//! | `require` | always | not checked; checked against `sslrootcert` like `verify-ca` when that is given (libpq) |
//! | `verify-ca` | always | chain to `sslrootcert` |
//! | `verify-full` | always | chain to `sslrootcert` and host name |
//!
//! `sslrootcert=system` trusts the bundled web roots. Messages never quote the
//! connection string (it may hold a password).

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// The mode `tokio-postgres` is given (it negotiates; rustls verifies).
    pub fn negotiation(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

/// Where trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    /// `sslrootcert=system`: the bundled web roots.
    System,
}

/// The TLS options of one connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<RootCert>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Take libpq's TLS options out of `conn` (URL or `key=value` form), with the
/// `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY` variables of `env` as
/// fallbacks; relative certificate paths are resolved against `base`.
/// Returns the connection string without them, for `tokio_postgres::Config`.
pub fn split(
    conn: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, TlsSettings), String> {
    let (rest, mut found) = if conn.starts_with("postgres://") || conn.starts_with("postgresql://")
    {
        split_url(conn)?
    } else {
        split_key_value(conn)?
    };
    let mut take = |key: &str, var: &str| {
        found
            .iter()
            .position(|(k, _)| k == key)
            .map(|i| found.remove(i).1)
            .or_else(|| env(var))
            .filter(|v| !v.is_empty())
    };
    let mode = match take("sslmode", "PGSSLMODE") {
        None => SslMode::Prefer,
        Some(m) => SslMode::parse(&m).ok_or_else(|| {
            "sslmode must be disable, allow, prefer, require, verify-ca or verify-full".to_string()
        })?,
    };
    let path = |p: String| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            base.join(p)
        }
    };
    let root_cert = take("sslrootcert", "PGSSLROOTCERT").map(|r| {
        if r == "system" {
            RootCert::System
        } else {
            RootCert::File(path(r))
        }
    });
    let cert = take("sslcert", "PGSSLCERT").map(path);
    let key = take("sslkey", "PGSSLKEY").map(path);
    if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root_cert.is_none() {
        return Err(format!(
            "sslmode={} needs sslrootcert (a PEM file of the CA that signed the server's certificate, or `system` for the public web roots)",
            if mode == SslMode::VerifyCa { "verify-ca" } else { "verify-full" }
        ));
    }
    if cert.is_some() != key.is_some() {
        return Err("sslcert and sslkey go together (client certificate authentication)".into());
    }
    Ok((
        rest,
        TlsSettings {
            mode,
            root_cert,
            cert,
            key,
        },
    ))
}

type Found = Vec<(String, String)>;

fn split_url(conn: &str) -> Result<(String, Found), String> {
    let Ok(mut url) = url::Url::parse(conn) else {
        // Left for tokio_postgres::Config to reject with its own (redacted) message.
        return Ok((conn.to_string(), Vec::new()));
    };
    let mut found = Vec::new();
    let mut keep = Vec::new();
    for (k, v) in url.query_pairs() {
        if TLS_KEYS.contains(&k.as_ref()) {
            found.push((k.to_string(), v.to_string()));
        } else {
            keep.push((k.to_string(), v.to_string()));
        }
    }
    if found.is_empty() {
        return Ok((conn.to_string(), found));
    }
    if keep.is_empty() {
        url.set_query(None);
    } else {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(keep)
            .finish();
        url.set_query(Some(&q));
    }
    Ok((url.to_string(), found))
}

/// libpq's `key = value` form: values may be single-quoted, with `\'` and `\\`.
fn split_key_value(conn: &str) -> Result<(String, Found), String> {
    let mut found = Vec::new();
    let mut keep = Vec::new();
    let mut chars = conn.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err("the connection string cannot be parsed: a key without `=value` (its text is not shown: it may hold a password)".into());
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '\'' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err("the connection string cannot be parsed: an unclosed quote (its text is not shown: it may hold a password)".into());
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    chars.next();
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                    continue;
                }
                value.push(c);
                chars.next();
            }
        }
        if TLS_KEYS.contains(&key.as_str()) {
            found.push((key, value));
        } else {
            keep.push((key, value));
        }
    }
    let rest = keep
        .iter()
        .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect::<Vec<_>>()
        .join(" ");
    Ok((rest, found))
}

/// The rustls client configuration for `settings` (`None` for `disable`).
pub fn client_config(settings: &TlsSettings) -> Result<Option<rustls::ClientConfig>, String> {
    use super::tls::{TlsBuildError, Verify};
    if settings.mode == SslMode::Disable {
        return Ok(None);
    }
    let verify = match (&settings.root_cert, settings.mode) {
        (None, _) => Verify::AnyChain,
        (Some(roots), SslMode::VerifyFull) => Verify::Full(root_store(roots)?),
        // require + sslrootcert, verify-ca: the chain, not the host name.
        (Some(roots), _) => Verify::ChainOnly(root_store(roots)?),
    };
    let client = match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("sslcert {}: {e}", cert.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("sslcert {}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!("sslcert {}: no certificate in it", cert.display()));
            }
            let key = PrivateKeyDer::from_pem_file(key).map_err(|_| {
                format!("sslkey {}: no PEM private key could be read", key.display())
            })?;
            Some((chain, key))
        }
        _ => None,
    };
    super::tls::client_config(verify, client)
        .map(Some)
        .map_err(|e| match e {
            TlsBuildError::Roots(e) => format!("sslrootcert holds no usable CA certificate: {e}"),
            TlsBuildError::ClientAuth(e) => format!("sslcert/sslkey cannot be used: {e}"),
            e => e.to_string(),
        })
}

fn root_store(roots: &RootCert) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match roots {
        RootCert::System => store = super::tls::web_roots(),
        RootCert::File(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                store
                    .add(c)
                    .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            }
            if store.is_empty() {
                return Err(format!(
                    "sslrootcert {}: no PEM certificate in it",
                    path.display()
                ));
            }
        }
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn url_options_are_taken_out_and_the_rest_kept() {
        let (rest, s) = split(
            "postgres://u:p%40ss@db.lan:5433/tf?sslmode=verify-full&sslrootcert=ca.pem&application_name=x",
            Path::new("/etc/hm"),
            &no_env,
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p%40ss@db.lan:5433/tf?application_name=x"
        );
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.root_cert, Some(RootCert::File("/etc/hm/ca.pem".into())));
        let (rest, s) = split(
            "postgresql://u@h/db?sslmode=disable",
            Path::new("/"),
            &no_env,
        )
        .unwrap();
        assert_eq!(rest, "postgresql://u@h/db");
        assert_eq!(s.mode, SslMode::Disable);
        // What is left must still parse.
        assert!(rest.parse::<tokio_postgres::Config>().is_ok());
    }

    #[test]
    fn key_value_options_with_quotes() {
        let (rest, s) = split(
            "host=db.lan password='p \\'q\\' x' sslmode=require sslrootcert = '/a b/ca.pem' dbname=tf",
            Path::new("/"),
            &no_env,
        )
        .unwrap();
        assert_eq!(s.mode, SslMode::Require);
        assert_eq!(s.root_cert, Some(RootCert::File("/a b/ca.pem".into())));
        let cfg: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(cfg.get_password(), Some(&b"p 'q' x"[..]));
        assert_eq!(cfg.get_dbname(), Some("tf"));
        assert!(split("host=x password='open", Path::new("/"), &no_env).is_err());
    }

    #[test]
    fn environment_fallbacks_defaults_and_rules() {
        let env = |k: &str| match k {
            "PGSSLMODE" => Some("verify-ca".to_string()),
            "PGSSLROOTCERT" => Some("system".to_string()),
            _ => None,
        };
        let (_, s) = split("host=h", Path::new("/"), &env).unwrap();
        assert_eq!(s.mode, SslMode::VerifyCa);
        assert_eq!(s.root_cert, Some(RootCert::System));
        // The connection string wins over the environment.
        let (_, s) = split("host=h sslmode=disable", Path::new("/"), &env).unwrap();
        assert_eq!(s.mode, SslMode::Disable);
        let (_, s) = split("host=h", Path::new("/"), &no_env).unwrap();
        assert_eq!(s.mode, SslMode::Prefer);
        let e = split("host=h sslmode=verify-full", Path::new("/"), &no_env).unwrap_err();
        assert!(e.contains("sslrootcert"), "{e}");
        let e = split("host=h sslmode=maybe", Path::new("/"), &no_env).unwrap_err();
        assert!(e.contains("verify-full"), "{e}");
        let e = split("host=h sslcert=c.pem", Path::new("/"), &no_env).unwrap_err();
        assert!(e.contains("sslkey"), "{e}");
    }

    #[test]
    fn client_configs() {
        let s = |mode, root_cert| TlsSettings {
            mode,
            root_cert,
            cert: None,
            key: None,
        };
        assert!(client_config(&s(SslMode::Disable, None)).unwrap().is_none());
        assert!(client_config(&s(SslMode::Require, None)).unwrap().is_some());
        assert!(
            client_config(&s(SslMode::VerifyFull, Some(RootCert::System)))
                .unwrap()
                .is_some()
        );
        let t = tempfile::tempdir().unwrap();
        let empty = t.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let e = client_config(&s(SslMode::VerifyCa, Some(RootCert::File(empty))))
            .err()
            .unwrap();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = client_config(&s(
            SslMode::VerifyCa,
            Some(RootCert::File(t.path().join("missing.pem"))),
        ))
        .err()
        .unwrap();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
