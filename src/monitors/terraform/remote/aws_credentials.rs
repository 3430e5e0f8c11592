//! The standard AWS credential chain for the s3 backend, in the order of the
//! AWS SDKs:
//!
//! 1. environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`;
//! 2. the selected profile (`profile` of the entry, `AWS_PROFILE`, else `default`)
//!    of the shared files (`~/.aws/config` or `AWS_CONFIG_FILE`, sections
//!    `[profile name]` / `[default]`; `~/.aws/credentials` or
//!    `AWS_SHARED_CREDENTIALS_FILE`, sections `[name]`; a key in the credentials
//!    file wins over the same key in the config file): `role_arn` +
//!    `web_identity_token_file`, `role_arn` + `source_profile` /
//!    `credential_source` (STS `AssumeRole`, signed with the source's
//!    credentials), else static keys, else `credential_process`, else SSO
//!    (the cached `aws sso login` token exchanged at the SSO portal);
//! 3. web identity (IRSA): `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`
//!    (+ `AWS_ROLE_SESSION_NAME`), STS `AssumeRoleWithWebIdentity`;
//! 4. container credentials (ECS, EKS Pod Identity):
//!    `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` / `_FULL_URI`, with
//!    `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` / `_TOKEN`;
//! 5. EC2 instance metadata (IMDSv2), 1 s per request.
//!
//! A provider that is not configured is skipped; one that is configured but
//! fails ends the chain with its error (as the SDKs do: a broken web identity
//! setup must not silently fall through to another identity). Temporary
//! credentials are cached process-wide, keyed by where they come from, and
//! fetched again 5 minutes before they expire. Messages name providers, files,
//! variables and HTTP statuses; never a key, secret, token or response body.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use super::client::{Budget, Client, Method};

/// Fetch temporary credentials again this long before they expire.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
/// Cached credentials still used (when a refresh fails) if valid this much longer.
const MIN_VALIDITY: Duration = Duration::from_secs(60);
/// Timeout of each instance metadata request.
pub const IMDS_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest answer read from a credential endpoint or a `credential_process`.
const MAX_ANSWER: u64 = 64 * 1024;
const DEFAULT_SESSION_NAME: &str = "homelab-monitor";
const IMDS_ENDPOINT: &str = "http://169.254.169.254";
const ECS_HOST: &str = "http://169.254.170.2";

/// A set of AWS credentials. `Debug` shows only the key id's provider.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// When temporary credentials expire.
    pub expiration: Option<SystemTime>,
}

impl AwsCredentials {
    pub fn new(
        key: impl Into<String>,
        secret: impl Into<String>,
        token: Option<String>,
        expiration: Option<SystemTime>,
    ) -> Self {
        AwsCredentials {
            access_key_id: key.into(),
            secret_access_key: secret.into(),
            session_token: token.filter(|t| !t.is_empty()),
            expiration,
        }
    }
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// Why no credentials could be had. Both map to the `credentials` reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("no AWS credentials found (tried: {tried}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile in ~/.aws/credentials or ~/.aws/config (AWS_PROFILE or `profile`), AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE, a container credentials endpoint, or run on EC2 with an instance role")]
    NotFound { tried: String },
    #[error("AWS credentials from {provider} failed: {message} (tried: {tried})")]
    Provider {
        provider: String,
        message: String,
        tried: String,
    },
}

/// What one entry asks of the chain.
#[derive(Debug, Clone)]
pub struct ChainRequest<'a> {
    /// `profile` of the entry (else `AWS_PROFILE`, else `default`).
    pub profile: Option<&'a str>,
    /// Region of the entry: the STS endpoint's region.
    pub region: &'a str,
    /// CA roots for STS and https container endpoints (the entry's `ca_file`).
    pub ca_file: Option<&'a Path>,
}

/// An environment lookup: the process environment in production
/// ([`process_env`]), a map in tests. Empty values count as unset.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment (empty values are unset).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Outcome of one provider.
enum Step {
    Found(AwsCredentials),
    /// Not configured here: the reason goes in the "tried" list.
    Skip(String),
    /// Configured but failed: ends the chain.
    Fail(String, String),
}

/// Resolve credentials through the chain (see the module doc). Blocking;
/// network and `credential_process` are bounded by `budget`.
pub fn resolve(
    req: &ChainRequest<'_>,
    env: Env<'_>,
    budget: &Budget,
    now: SystemTime,
) -> Result<AwsCredentials, CredentialsError> {
    resolve_with(req, env, budget, now, &CACHE)
}

static CACHE: LazyLock<Cache> = LazyLock::new(Cache::default);

fn resolve_with(
    req: &ChainRequest<'_>,
    env: Env<'_>,
    budget: &Budget,
    now: SystemTime,
    cache: &Cache,
) -> Result<AwsCredentials, CredentialsError> {
    let mut tried: Vec<String> = Vec::new();
    let steps: [&dyn Fn() -> Step; 5] = [
        &|| from_env(env),
        &|| from_profile(req, env, budget, now, cache),
        &|| from_web_identity_env(req, env, budget, now, cache),
        &|| from_container(req, env, budget, now, cache),
        &|| from_imds(env, budget, now, cache),
    ];
    for step in steps {
        match step() {
            Step::Found(c) => return Ok(c),
            Step::Skip(why) => tried.push(why),
            Step::Fail(provider, message) => {
                return Err(CredentialsError::Provider {
                    provider,
                    message,
                    tried: tried.join("; "),
                })
            }
        }
    }
    Err(CredentialsError::NotFound {
        tried: tried.join("; "),
    })
}

// ---------------------------------------------------------------- 1. environment

fn from_env(env: Env<'_>) -> Step {
    match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(k), Some(s)) => {
            Step::Found(AwsCredentials::new(k, s, env("AWS_SESSION_TOKEN"), None))
        }
        (None, None) => Step::Skip("environment (AWS_ACCESS_KEY_ID not set)".into()),
        (Some(_), None) => Step::Fail(
            "the environment".into(),
            "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into(),
        ),
        (None, Some(_)) => Step::Fail(
            "the environment".into(),
            "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".into(),
        ),
    }
}

// ---------------------------------------------------------------- 2. shared files

/// Key prefix of `[sso-session name]` sections in [`Profiles`] (a profile
/// name cannot start with a NUL).
pub const SSO_SESSION: &str = "\u{0}sso-session ";

/// Properties of each profile of one shared file.
pub type Profiles = HashMap<String, HashMap<String, String>>;

/// Parse a shared config (`config == true`: `[profile name]`, `[default]`,
/// `[sso-session name]` kept under [`SSO_SESSION`] + name) or credentials file
/// (`[name]`). Full-line `#`/`;` comments; indented lines under a key without
/// value (sub-sections such as `s3 =`) are ignored, as are other config
/// sections (`[services x]`, a bare `[x]`).
pub fn parse_profiles(text: &str, config: bool) -> Profiles {
    let mut out: Profiles = HashMap::new();
    let mut current: Option<String> = None;
    let mut in_subsection = false;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            let name = line[1..line.len() - 1].trim();
            current = if !config {
                Some(name.to_string())
            } else if name == "default" {
                Some("default".into())
            } else if let Some(r) = name
                .strip_prefix("sso-session")
                .filter(|r| r.starts_with(char::is_whitespace))
            {
                Some(format!("{SSO_SESSION}{}", r.trim()))
            } else {
                name.strip_prefix("profile")
                    .filter(|r| r.starts_with(char::is_whitespace))
                    .map(|r| r.trim().to_string())
                    .filter(|n| !n.is_empty())
            };
            if let Some(name) = &current {
                out.entry(name.clone()).or_default();
            }
            in_subsection = false;
            continue;
        }
        let indented = raw.starts_with(char::is_whitespace);
        if indented && in_subsection {
            continue;
        }
        let Some(name) = &current else { continue };
        if let Some((k, v)) = line.split_once('=') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            in_subsection = v.is_empty();
            if !v.is_empty() {
                out.entry(name.clone())
                    .or_default()
                    .insert(k, v.to_string());
            }
        }
    }
    out
}

/// `~/` expanded with HOME.
fn expand_home(p: &str, env: Env<'_>) -> Option<PathBuf> {
    match p.strip_prefix("~/") {
        Some(rest) => env("HOME").map(|h| Path::new(&h).join(rest)),
        None => Some(PathBuf::from(p)),
    }
}

/// A shared file: (path, text); a missing file is empty.
fn read_shared(
    var: &str,
    default: &str,
    env: Env<'_>,
) -> Result<Option<(PathBuf, String)>, String> {
    let path = match env(var) {
        Some(p) => expand_home(&p, env),
        None => env("HOME").map(|h| Path::new(&h).join(default)),
    };
    let Some(path) = path else { return Ok(None) };
    match crate::safe_open::read_to_string(&path) {
        Ok(t) => Ok(Some((path, t))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {}", path.display(), e.kind())),
    }
}

/// The merged properties of `name`: config file first, credentials file over it.
pub fn merged_profile(
    name: &str,
    config: &Profiles,
    credentials: &Profiles,
) -> Option<HashMap<String, String>> {
    let (a, b) = (config.get(name), credentials.get(name));
    if a.is_none() && b.is_none() {
        return None;
    }
    let mut out = a.cloned().unwrap_or_default();
    out.extend(b.cloned().unwrap_or_default());
    Some(out)
}

fn from_profile(
    req: &ChainRequest<'_>,
    env: Env<'_>,
    budget: &Budget,
    now: SystemTime,
    cache: &Cache,
) -> Step {
    let env_profile = env("AWS_PROFILE");
    let explicit = req.profile.is_some() || env_profile.is_some();
    let name = req
        .profile
        .map(str::to_string)
        .or(env_profile)
        .unwrap_or_else(|| "default".into());
    let provider = format!("profile {name}");
    let files = read_shared("AWS_CONFIG_FILE", ".aws/config", env).and_then(|c| {
        read_shared("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials", env).map(|k| (c, k))
    });
    let (config, creds) = match files {
        Ok(f) => f,
        Err(m) => return Step::Fail(provider, m),
    };
    let shown = |f: &Option<(PathBuf, String)>, default: &str| {
        f.as_ref()
            .map(|(p, _)| p.display().to_string())
            .unwrap_or_else(|| default.to_string())
    };
    let where_ = format!(
        "{} or {}",
        shown(&config, "~/.aws/config"),
        shown(&creds, "~/.aws/credentials")
    );
    let cp = config
        .as_ref()
        .map(|(_, t)| parse_profiles(t, true))
        .unwrap_or_default();
    let kp = creds
        .as_ref()
        .map(|(_, t)| parse_profiles(t, false))
        .unwrap_or_default();
    let Some(p) = merged_profile(&name, &cp, &kp) else {
        let m = format!("profile {name} is not in {where_}");
        return if explicit {
            Step::Fail(provider, m)
        } else {
            Step::Skip(m)
        };
    };
    let ctx = ProfileCtx {
        config: &cp,
        credentials: &kp,
        req,
        env,
        budget,
        now,
        cache,
    };
    profile_credentials(&name, &p, &ctx, 0).unwrap_or_else(|| {
        let m = format!("profile {name} in {where_} has no credentials");
        if explicit {
            Step::Fail(provider, m)
        } else {
            Step::Skip(m)
        }
    })
}

/// What resolving a profile (and its `source_profile` chain) needs.
struct ProfileCtx<'a> {
    config: &'a Profiles,
    credentials: &'a Profiles,
    req: &'a ChainRequest<'a>,
    env: Env<'a>,
    budget: &'a Budget,
    now: SystemTime,
    cache: &'a Cache,
}

/// Longest `source_profile` chain followed (the SDKs reject loops too).
const MAX_SOURCE_DEPTH: usize = 4;

/// Credentials of one merged profile; `None` if it names none.
fn profile_credentials(
    name: &str,
    p: &HashMap<String, String>,
    ctx: &ProfileCtx<'_>,
    depth: usize,
) -> Option<Step> {
    let (req, env, budget, now, cache) = (ctx.req, ctx.env, ctx.budget, ctx.now, ctx.cache);
    let provider = format!("profile {name}");
    let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
    if let Some(role) = get("role_arn") {
        let Some(token_file) = get("web_identity_token_file") else {
            return Some(assume_role_profile(name, role, p, ctx, depth));
        };
        let wi = WebIdentity {
            role_arn: role.to_string(),
            token_file: expand_home(token_file, env).unwrap_or_else(|| token_file.into()),
            session_name: get("role_session_name")
                .unwrap_or(DEFAULT_SESSION_NAME)
                .to_string(),
        };
        return Some(web_identity(&provider, &wi, req, env, budget, now, cache));
    }
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(k), Some(s)) => {
            return Some(Step::Found(AwsCredentials::new(
                k,
                s,
                get("aws_session_token").map(str::to_string),
                None,
            )))
        }
        (Some(_), None) | (None, Some(_)) => {
            return Some(Step::Fail(
                provider,
                "aws_access_key_id and aws_secret_access_key must both be set".into(),
            ))
        }
        (None, None) => {}
    }
    if let Some(cmd) = get("credential_process") {
        let key = format!("process\u{0}{name}\u{0}{cmd}");
        return Some(
            match cache.get_or_fetch(&key, now, || credential_process(cmd, budget.deadline, now)) {
                Ok(c) => Step::Found(c),
                Err(m) => Step::Fail(format!("{provider} (credential_process)"), m),
            },
        );
    }
    if get("sso_start_url").is_some() || get("sso_session").is_some() {
        return Some(sso_profile(name, p, ctx));
    }
    None
}

/// IAM Identity Center (SSO): the token `aws sso login` cached under
/// `~/.aws/sso/cache/`, exchanged at the SSO portal for role credentials.
fn sso_profile(name: &str, p: &HashMap<String, String>, ctx: &ProfileCtx<'_>) -> Step {
    let provider = format!("profile {name} (SSO)");
    let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let (start_url, region, cache_name) = match get("sso_session") {
        Some(session) => {
            let Some(s) = ctx.config.get(&format!("{SSO_SESSION}{session}")) else {
                return Step::Fail(
                    provider,
                    format!("sso_session {session} has no [sso-session {session}] section in the config file"),
                );
            };
            let g = |k: &str| s.get(k).map(String::as_str).filter(|v| !v.is_empty());
            (g("sso_start_url"), g("sso_region"), session.to_string())
        }
        None => (
            get("sso_start_url"),
            get("sso_region"),
            get("sso_start_url").unwrap_or("").to_string(),
        ),
    };
    let (Some(_), Some(region), Some(account), Some(role)) = (
        start_url,
        region,
        get("sso_account_id"),
        get("sso_role_name"),
    ) else {
        return Step::Fail(
            provider,
            "an SSO profile needs sso_start_url and sso_region (or an sso_session with them), sso_account_id and sso_role_name".into(),
        );
    };
    let file = {
        use sha1::Digest;
        let digest = sha1::Sha1::digest(cache_name.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        match expand_home(&format!("~/.aws/sso/cache/{hex}.json"), ctx.env) {
            Some(f) => f,
            None => {
                return Step::Fail(
                    provider,
                    "HOME is not set: cannot find the SSO token cache".into(),
                )
            }
        }
    };
    let token = match read_sso_token(&file, ctx.now) {
        Ok(t) => t,
        Err(m) => {
            return Step::Fail(
                provider,
                format!("{m}: run `aws sso login --profile {name}` where the exporter's HOME is"),
            )
        }
    };
    let env = ctx.env;
    let endpoint = env("AWS_ENDPOINT_URL_SSO")
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| format!("https://portal.sso.{region}.amazonaws.com"));
    let key = format!(
        "sso\u{0}{endpoint}\u{0}{account}\u{0}{role}\u{0}{}",
        file.display()
    );
    match ctx.cache.get_or_fetch(&key, ctx.now, || {
        sso_role_credentials(&endpoint, account, role, &token, ctx.req, ctx.budget)
    }) {
        Ok(c) => Step::Found(c),
        Err(m) => Step::Fail(provider, m),
    }
}

/// The access token of an SSO token cache file, if it has not expired.
/// Errors name the file, never its content.
fn read_sso_token(file: &Path, now: SystemTime) -> Result<String, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct CachedToken {
        access_token: String,
        expires_at: String,
    }
    let bytes = crate::safe_open::read(file)
        .map_err(|e| format!("no SSO token in {} ({})", file.display(), e.kind()))?;
    let t: CachedToken = serde_json::from_slice(&bytes).map_err(|_| {
        format!(
            "{} is not an SSO token cache (accessToken, expiresAt)",
            file.display()
        )
    })?;
    let expires = super::rfc3339(t.expires_at.trim())
        .ok_or_else(|| format!("{} has a bad expiresAt", file.display()))?;
    if expires <= now {
        return Err(format!("the SSO token in {} has expired", file.display()));
    }
    Ok(t.access_token)
}

/// `GET /federation/credentials` of the SSO portal.
fn sso_role_credentials(
    endpoint: &str,
    account: &str,
    role: &str,
    token: &str,
    req: &ChainRequest<'_>,
    budget: &Budget,
) -> Result<AwsCredentials, String> {
    let mut url = url::Url::parse(&format!(
        "{}/federation/credentials",
        endpoint.trim_end_matches('/')
    ))
    .map_err(|_| "the SSO endpoint is not a URL".to_string())?;
    url.query_pairs_mut()
        .append_pair("account_id", account)
        .append_pair("role_name", role);
    let client = Client::with_redirects(budget.request_timeout, req.ca_file, 0)?;
    let r = client
        .get(
            "sso",
            url.as_str(),
            &[
                ("x-amz-sso_bearer_token", token),
                ("accept", "application/json"),
            ],
            &Budget {
                max_size: MAX_ANSWER,
                ..*budget
            },
        )
        .map_err(|e| {
            format!(
                "SSO portal at {} ({}): {}",
                shown_url(url.as_str()),
                e.reason,
                e.message
            )
        })?;
    if r.status != 200 {
        let hint = if r.status == 401 || r.status == 403 {
            " (the token was refused: run `aws sso login` again, or check the account and role)"
        } else {
            ""
        };
        return Err(format!(
            "SSO portal at {} answered HTTP {} to GetRoleCredentials for account {account} role {role}{hint}",
            shown_url(url.as_str()),
            r.status
        ));
    }
    parse_sso_credentials(&r.body)
}

/// Parse a `GetRoleCredentials` answer. Errors never quote it.
pub fn parse_sso_credentials(bytes: &[u8]) -> Result<AwsCredentials, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        role_credentials: RoleCredentials,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RoleCredentials {
        access_key_id: String,
        secret_access_key: String,
        #[serde(default)]
        session_token: Option<String>,
        /// Milliseconds since the epoch.
        #[serde(default)]
        expiration: Option<u64>,
    }
    let a: Answer = serde_json::from_slice(bytes)
        .map_err(|_| "the SSO answer is not roleCredentials JSON".to_string())?;
    let c = a.role_credentials;
    if c.access_key_id.is_empty() || c.secret_access_key.is_empty() {
        return Err("the SSO answer has empty credentials".into());
    }
    Ok(AwsCredentials::new(
        c.access_key_id,
        c.secret_access_key,
        c.session_token,
        c.expiration
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
    ))
}

/// `role_arn` with `source_profile` or `credential_source`: STS `AssumeRole`,
/// signed with the source's credentials.
fn assume_role_profile(
    name: &str,
    role: &str,
    p: &HashMap<String, String>,
    ctx: &ProfileCtx<'_>,
    depth: usize,
) -> Step {
    let provider = format!("profile {name} (AssumeRole)");
    let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
    if get("mfa_serial").is_some() {
        return Step::Fail(
            provider,
            "mfa_serial needs a code typed by a person, which an exporter cannot do; use a role without MFA for monitoring".into(),
        );
    }
    let source = match (get("source_profile"), get("credential_source")) {
        (Some(_), Some(_)) => {
            return Step::Fail(
                provider,
                "set source_profile or credential_source, not both".into(),
            )
        }
        (Some(sp), None) if sp == name => {
            // A profile may be its own source: its static keys assume the role.
            match (get("aws_access_key_id"), get("aws_secret_access_key")) {
                (Some(k), Some(s)) => Step::Found(AwsCredentials::new(
                    k,
                    s,
                    get("aws_session_token").map(str::to_string),
                    None,
                )),
                _ => Step::Fail(
                    provider.clone(),
                    format!("source_profile {sp} is this profile, which has no static keys"),
                ),
            }
        }
        (Some(sp), None) => {
            if depth >= MAX_SOURCE_DEPTH {
                return Step::Fail(
                    provider,
                    format!("source_profile chain longer than {MAX_SOURCE_DEPTH} (a loop?)"),
                );
            }
            match merged_profile(sp, ctx.config, ctx.credentials) {
                None => {
                    return Step::Fail(
                        provider,
                        format!(
                            "source_profile {sp} is not in the shared config or credentials file"
                        ),
                    )
                }
                Some(sp_profile) => profile_credentials(sp, &sp_profile, ctx, depth + 1)
                    .unwrap_or_else(|| {
                        Step::Fail(
                            provider.clone(),
                            format!("source_profile {sp} has no credentials"),
                        )
                    }),
            }
        }
        (None, Some("Environment")) => from_env(ctx.env),
        (None, Some("Ec2InstanceMetadata")) => from_imds(ctx.env, ctx.budget, ctx.now, ctx.cache),
        (None, Some("EcsContainer")) => {
            from_container(ctx.req, ctx.env, ctx.budget, ctx.now, ctx.cache)
        }
        (None, Some(_)) => {
            return Step::Fail(
                provider,
                "credential_source must be Environment, Ec2InstanceMetadata or EcsContainer".into(),
            )
        }
        (None, None) => {
            return Step::Fail(
                provider,
                "role_arn needs source_profile, credential_source or web_identity_token_file"
                    .into(),
            )
        }
    };
    let source = match source {
        Step::Found(c) => c,
        Step::Skip(why) => {
            return Step::Fail(
                provider,
                format!("the source credentials were not found ({why})"),
            )
        }
        Step::Fail(p, m) => return Step::Fail(format!("{provider} <- {p}"), m),
    };
    let ar = AssumeRole {
        role_arn: role.to_string(),
        session_name: get("role_session_name")
            .unwrap_or(DEFAULT_SESSION_NAME)
            .to_string(),
        external_id: get("external_id").map(str::to_string),
        duration_seconds: get("duration_seconds").map(str::to_string),
    };
    let endpoint = sts_endpoint(ctx.req.region, ctx.env);
    let key = format!(
        "assume\u{0}{endpoint}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
        ar.role_arn,
        ar.session_name,
        ar.external_id.as_deref().unwrap_or(""),
        source.access_key_id
    );
    match ctx.cache.get_or_fetch(&key, ctx.now, || {
        assume_role(&endpoint, &ar, &source, ctx.req, ctx.budget, ctx.now)
    }) {
        Ok(c) => Step::Found(c),
        Err(m) => Step::Fail(provider, m),
    }
}

struct AssumeRole {
    role_arn: String,
    session_name: String,
    external_id: Option<String>,
    duration_seconds: Option<String>,
}

/// STS `AssumeRole` (a SigV4-signed form POST).
fn assume_role(
    endpoint: &str,
    ar: &AssumeRole,
    source: &AwsCredentials,
    req: &ChainRequest<'_>,
    budget: &Budget,
    now: SystemTime,
) -> Result<AwsCredentials, String> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", "AssumeRole")
        .append_pair("Version", "2011-06-15")
        .append_pair("RoleArn", &ar.role_arn)
        .append_pair("RoleSessionName", &ar.session_name);
    if let Some(e) = &ar.external_id {
        form.append_pair("ExternalId", e);
    }
    if let Some(d) = &ar.duration_seconds {
        form.append_pair("DurationSeconds", d);
    }
    let body = form.finish();
    let text = sts_call(
        StsCall {
            endpoint,
            action: "AssumeRole",
            role_arn: &ar.role_arn,
            body: &body,
            signer: Some((source, now)),
        },
        req,
        budget,
    )?;
    parse_assume_role_response(&text)
}

/// JSON printed by a `credential_process` (Version 1).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProcessOutput {
    version: u32,
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
}

/// Parse a `credential_process` answer. Errors never quote it.
pub fn parse_process_output(bytes: &[u8]) -> Result<AwsCredentials, String> {
    let o: ProcessOutput = serde_json::from_slice(bytes).map_err(|_| {
        "its output is not the credential_process JSON (Version 1, AccessKeyId, SecretAccessKey)"
            .to_string()
    })?;
    if o.version != 1 {
        return Err(format!(
            "its output has Version {}, only 1 is known",
            o.version
        ));
    }
    if o.access_key_id.is_empty() || o.secret_access_key.is_empty() {
        return Err("its output has an empty AccessKeyId or SecretAccessKey".into());
    }
    let expiration = match o.expiration.as_deref() {
        Some(e) => {
            Some(super::rfc3339(e).ok_or("its Expiration is not an RFC 3339 time".to_string())?)
        }
        None => None,
    };
    Ok(AwsCredentials::new(
        o.access_key_id,
        o.secret_access_key,
        o.session_token,
        expiration,
    ))
}

/// Run `cmd` with the shell, read its standard output (its standard error is
/// discarded, never logged), kill it at `deadline`.
fn credential_process(
    cmd: &str,
    deadline: Instant,
    now: SystemTime,
) -> Result<AwsCredentials, String> {
    let mut command = if cfg!(windows) {
        let mut c = Command::new("cmd");
        c.args(["/C", cmd]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", cmd]);
        c
    };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start it: {}", e.kind()))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("cannot read its output".into());
    };
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let r = stdout.take(MAX_ANSWER + 1).read_to_end(&mut buf);
        r.map(|_| buf)
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("it did not finish within the monitor's timeout".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("cannot wait for it: {}", e.kind()));
            }
        }
    };
    // The process may have left a child holding the pipe open: do not wait past the deadline.
    let out = loop {
        if reader.is_finished() {
            break reader
                .join()
                .map_err(|_| "cannot read its output".to_string())?
                .map_err(|e| format!("cannot read its output: {}", e.kind()))?;
        }
        if Instant::now() >= deadline {
            return Err("its output did not end within the monitor's timeout".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if !status.success() {
        return Err(match status.code() {
            Some(c) => format!("it exited with status {c} (its output is not shown)"),
            None => "it was killed by a signal".into(),
        });
    }
    if out.len() as u64 > MAX_ANSWER {
        return Err(format!("its output is over {MAX_ANSWER} bytes"));
    }
    let c = parse_process_output(&out)?;
    if c.expiration.is_some_and(|e| e <= now) {
        return Err("it returned credentials that have already expired".into());
    }
    Ok(c)
}

// ---------------------------------------------------------------- 3. web identity

struct WebIdentity {
    role_arn: String,
    token_file: PathBuf,
    session_name: String,
}

fn from_web_identity_env(
    req: &ChainRequest<'_>,
    env: Env<'_>,
    budget: &Budget,
    now: SystemTime,
    cache: &Cache,
) -> Step {
    let provider = "web identity (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE)";
    match (env("AWS_ROLE_ARN"), env("AWS_WEB_IDENTITY_TOKEN_FILE")) {
        (None, None) => Step::Skip("web identity (AWS_ROLE_ARN not set)".into()),
        (Some(_), None) => Step::Fail(
            provider.into(),
            "AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not".into(),
        ),
        (None, Some(_)) => Step::Fail(
            provider.into(),
            "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not".into(),
        ),
        (Some(role_arn), Some(file)) => {
            let wi = WebIdentity {
                role_arn,
                token_file: expand_home(&file, env).unwrap_or_else(|| file.into()),
                session_name: env("AWS_ROLE_SESSION_NAME")
                    .unwrap_or_else(|| DEFAULT_SESSION_NAME.into()),
            };
            web_identity(provider, &wi, req, env, budget, now, cache)
        }
    }
}

/// The STS endpoint: `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, else regional.
pub fn sts_endpoint(region: &str, env: Env<'_>) -> String {
    env("AWS_ENDPOINT_URL_STS")
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| {
            let suffix = if region.starts_with("cn-") {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            };
            format!("https://sts.{region}.{suffix}")
        })
}

fn web_identity(
    provider: &str,
    wi: &WebIdentity,
    req: &ChainRequest<'_>,
    env: Env<'_>,
    budget: &Budget,
    now: SystemTime,
    cache: &Cache,
) -> Step {
    let endpoint = sts_endpoint(req.region, env);
    let key = format!(
        "sts\u{0}{endpoint}\u{0}{}\u{0}{}\u{0}{}",
        wi.role_arn,
        wi.token_file.display(),
        wi.session_name
    );
    match cache.get_or_fetch(&key, now, || {
        assume_role_with_web_identity(&endpoint, wi, req, budget)
    }) {
        Ok(c) => Step::Found(c),
        Err(m) => Step::Fail(provider.to_string(), m),
    }
}

fn assume_role_with_web_identity(
    endpoint: &str,
    wi: &WebIdentity,
    req: &ChainRequest<'_>,
    budget: &Budget,
) -> Result<AwsCredentials, String> {
    let token = crate::safe_open::read_to_string(&wi.token_file).map_err(|e| {
        format!(
            "cannot read the web identity token file {}: {}",
            wi.token_file.display(),
            e.kind()
        )
    })?;
    let token = token.trim();
    if token.is_empty() {
        return Err(format!(
            "the web identity token file {} is empty",
            wi.token_file.display()
        ));
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "AssumeRoleWithWebIdentity")
        .append_pair("Version", "2011-06-15")
        .append_pair("RoleArn", &wi.role_arn)
        .append_pair("RoleSessionName", &wi.session_name)
        .append_pair("WebIdentityToken", token)
        .finish();
    let text = sts_call(
        StsCall {
            endpoint,
            action: "AssumeRoleWithWebIdentity",
            role_arn: &wi.role_arn,
            body: &body,
            signer: None,
        },
        req,
        budget,
    )?;
    parse_sts_response(&text)
}

/// One STS query-API call (a form POST), signed with `signer` when given.
struct StsCall<'a> {
    endpoint: &'a str,
    action: &'a str,
    role_arn: &'a str,
    body: &'a str,
    signer: Option<(&'a AwsCredentials, SystemTime)>,
}

/// POST `call` to STS; the answer's text on 200. Errors name the endpoint,
/// the action, the role and STS's error code, never the answer's body.
fn sts_call(call: StsCall<'_>, req: &ChainRequest<'_>, budget: &Budget) -> Result<String, String> {
    let url = format!("{}/", call.endpoint.trim_end_matches('/'));
    let signed = match call.signer {
        Some((creds, now)) => {
            let parsed =
                url::Url::parse(&url).map_err(|_| "the STS endpoint is not a URL".to_string())?;
            super::sigv4::sign_form_post(
                &parsed,
                call.body.as_bytes(),
                req.region,
                "sts",
                creds,
                now,
            )
            .ok_or_else(|| "the STS request could not be signed".to_string())?
        }
        None => Vec::new(),
    };
    let mut headers: Vec<(&str, &str)> = signed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    headers.push(("content-type", "application/x-www-form-urlencoded"));
    headers.push(("accept", "application/xml"));
    let client = Client::with_redirects(budget.request_timeout, req.ca_file, 0)?;
    let r = client
        .request(
            "sts",
            Method::Post(call.body.as_bytes()),
            &url,
            &headers,
            &Budget {
                max_size: MAX_ANSWER,
                ..*budget
            },
        )
        .map_err(|e| format!("STS at {} ({}): {}", shown_url(&url), e.reason, e.message))?;
    if r.status != 200 {
        let code = sts_error_code(&r.body)
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        return Err(format!(
            "STS at {} answered HTTP {}{code} to {} for {}",
            shown_url(&url),
            r.status,
            call.action,
            call.role_arn
        ));
    }
    Ok(String::from_utf8_lossy(&r.body).into_owned())
}

mod sts_xml {
    use instant_xml::FromXml;

    pub const NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

    #[derive(FromXml)]
    #[xml(rename = "AssumeRoleWithWebIdentityResponse", ns(NS))]
    pub struct Response {
        pub result: AssumeResult,
    }

    #[derive(FromXml)]
    #[xml(rename = "AssumeRoleWithWebIdentityResult", ns(NS))]
    pub struct AssumeResult {
        pub credentials: Credentials,
    }

    #[derive(FromXml)]
    #[xml(rename = "Credentials", ns(NS))]
    pub struct Credentials {
        #[xml(rename = "AccessKeyId")]
        pub access_key_id: String,
        #[xml(rename = "SecretAccessKey")]
        pub secret_access_key: String,
        #[xml(rename = "SessionToken")]
        pub session_token: Option<String>,
        #[xml(rename = "Expiration")]
        pub expiration: Option<String>,
    }
}

mod sts_assume_xml {
    use instant_xml::FromXml;

    use super::sts_xml::{Credentials, NS};

    #[derive(FromXml)]
    #[xml(rename = "AssumeRoleResponse", ns(NS))]
    pub struct Response {
        pub result: AssumeResult,
    }

    #[derive(FromXml)]
    #[xml(rename = "AssumeRoleResult", ns(NS))]
    pub struct AssumeResult {
        pub credentials: Credentials,
    }
}

/// Parse an `AssumeRole` answer (XML). Errors never quote it.
pub fn parse_assume_role_response(text: &str) -> Result<AwsCredentials, String> {
    let r: sts_assume_xml::Response = instant_xml::from_str(text)
        .map_err(|_| "the STS answer is not an AssumeRole result".to_string())?;
    sts_credentials(r.result.credentials)
}

/// Parse an `AssumeRoleWithWebIdentity` answer (XML). Errors never quote it.
pub fn parse_sts_response(text: &str) -> Result<AwsCredentials, String> {
    let r: sts_xml::Response = instant_xml::from_str(text)
        .map_err(|_| "the STS answer is not an AssumeRoleWithWebIdentity result".to_string())?;
    sts_credentials(r.result.credentials)
}

fn sts_credentials(c: sts_xml::Credentials) -> Result<AwsCredentials, String> {
    if c.access_key_id.is_empty() || c.secret_access_key.is_empty() {
        return Err("the STS answer has empty credentials".into());
    }
    let expiration = match c.expiration.as_deref() {
        Some(e) => Some(super::rfc3339(e.trim()).ok_or("the STS answer has a bad Expiration")?),
        None => None,
    };
    Ok(AwsCredentials::new(
        c.access_key_id,
        c.secret_access_key,
        c.session_token,
        expiration,
    ))
}

/// The `<Code>` of an STS error answer when it is a plain identifier.
fn sts_error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    let code = &text[start..start + len];
    (!code.is_empty()
        && code.len() <= 64
        && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
    .then(|| code.to_string())
}

/// scheme://host[:port] of a URL, for messages (no path, query or user info).
fn shown_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(p) => match (p.host_str(), p.port()) {
            (Some(h), Some(port)) => format!("{}://{h}:{port}", p.scheme()),
            (Some(h), None) => format!("{}://{h}", p.scheme()),
            _ => "an endpoint without host".into(),
        },
        Err(_) => "an endpoint that is not a URL".into(),
    }
}

// ---------------------------------------------------------------- 4. container

/// JSON of the container and instance metadata endpoints.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EndpointCredentials {
    #[serde(default)]
    code: Option<String>,
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
}

/// Parse the JSON of a container or instance metadata endpoint.
pub fn parse_endpoint_credentials(bytes: &[u8]) -> Result<AwsCredentials, String> {
    let e: EndpointCredentials = serde_json::from_slice(bytes).map_err(|_| {
        "the answer is not credentials JSON (AccessKeyId, SecretAccessKey, Token, Expiration)"
            .to_string()
    })?;
    if let Some(code) = e.code.as_deref().filter(|c| *c != "Success") {
        let code = if code.chars().all(|c| c.is_ascii_alphanumeric()) && code.len() <= 64 {
            code
        } else {
            "?"
        };
        return Err(format!("the answer's Code is {code}, not Success"));
    }
    if e.access_key_id.is_empty() || e.secret_access_key.is_empty() {
        return Err("the answer has empty credentials".into());
    }
    let expiration = match e.expiration.as_deref() {
        Some(x) => Some(super::rfc3339(x).ok_or("the answer has a bad Expiration")?),
        None => None,
    };
    Ok(AwsCredentials::new(
        e.access_key_id,
        e.secret_access_key,
        e.token,
        expiration,
    ))
}

/// May the full URI be used? https anywhere; http only to loopback or the
/// ECS / EKS Pod Identity agent addresses (the authorization token must not
/// travel in clear text elsewhere).
pub fn full_uri_allowed(u: &url::Url) -> bool {
    match u.scheme() {
        "https" => true,
        "http" => match u.host() {
            Some(url::Host::Ipv4(ip)) => {
                ip.is_loopback()
                    || ip == std::net::Ipv4Addr::new(169, 254, 170, 2)
                    || ip == std::net::Ipv4Addr::new(169, 254, 170, 23)
            }
            Some(url::Host::Ipv6(ip)) => {
                // fd00:ec2::23, the EKS Pod Identity agent.
                ip.is_loopback()
                    || ip == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23)
            }
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        },
        _ => false,
    }
}

fn from_container(
    req: &ChainRequest<'_>,
    env: Env<'_>,
    budget: &Budget,
    now: SystemTime,
    cache: &Cache,
) -> Step {
    let provider = "container credentials (AWS_CONTAINER_CREDENTIALS_*)";
    let uri = match (
        env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        env("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    ) {
        (Some(rel), _) => {
            let rel = if rel.starts_with('/') {
                rel
            } else {
                format!("/{rel}")
            };
            format!("{ECS_HOST}{rel}")
        }
        (None, Some(full)) => {
            match url::Url::parse(&full) {
                Ok(u) if full_uri_allowed(&u) => {}
                Ok(_) => {
                    return Step::Fail(
                        provider.into(),
                        "AWS_CONTAINER_CREDENTIALS_FULL_URI must be https, or http to a loopback, ECS or EKS Pod Identity address".into(),
                    )
                }
                Err(_) => {
                    return Step::Fail(
                        provider.into(),
                        "AWS_CONTAINER_CREDENTIALS_FULL_URI is not a URL".into(),
                    )
                }
            }
            full
        }
        (None, None) => return Step::Skip(
            "container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI not set)"
                .into(),
        ),
    };
    let key = format!("container\u{0}{uri}");
    match cache.get_or_fetch(&key, now, || container_fetch(&uri, req, env, budget)) {
        Ok(c) => Step::Found(c),
        Err(m) => Step::Fail(provider.into(), m),
    }
}

fn container_fetch(
    uri: &str,
    req: &ChainRequest<'_>,
    env: Env<'_>,
    budget: &Budget,
) -> Result<AwsCredentials, String> {
    let token = match env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        Some(f) => {
            let path = expand_home(&f, env).unwrap_or_else(|| f.into());
            let t = crate::safe_open::read_to_string(&path).map_err(|e| {
                format!(
                    "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {}: {}",
                    path.display(),
                    e.kind()
                )
            })?;
            Some(t.trim().to_string())
        }
        None => env("AWS_CONTAINER_AUTHORIZATION_TOKEN").map(|t| t.trim().to_string()),
    };
    if token
        .as_deref()
        .is_some_and(|t| t.contains(['\r', '\n']) || t.is_empty())
    {
        return Err("the container authorization token is empty or has a line break".into());
    }
    let client = Client::with_redirects(budget.request_timeout, req.ca_file, 0)?;
    let mut headers = vec![("accept", "application/json")];
    if let Some(t) = token.as_deref() {
        headers.push(("authorization", t));
    }
    let r = client
        .request(
            "container",
            Method::Get,
            uri,
            &headers,
            &Budget {
                max_size: MAX_ANSWER,
                ..*budget
            },
        )
        .map_err(|e| format!("endpoint {} ({}): {}", shown_url(uri), e.reason, e.message))?;
    if r.status != 200 {
        return Err(format!(
            "endpoint {} answered HTTP {}",
            shown_url(uri),
            r.status
        ));
    }
    parse_endpoint_credentials(&r.body)
}

// ---------------------------------------------------------------- 5. IMDSv2

fn from_imds(env: Env<'_>, budget: &Budget, now: SystemTime, cache: &Cache) -> Step {
    let provider = "EC2 instance metadata";
    if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Step::Skip("EC2 instance metadata (AWS_EC2_METADATA_DISABLED=true)".into());
    }
    let endpoint = env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or_else(|| IMDS_ENDPOINT.into())
        .trim_end_matches('/')
        .to_string();
    let key = format!("imds\u{0}{endpoint}");
    let mut skipped: Option<String> = None;
    let r = cache.get_or_fetch(&key, now, || match imds_fetch(&endpoint, budget) {
        Ok(Some(c)) => Ok(c),
        Ok(None) => {
            skipped = Some(format!(
                "EC2 instance metadata (no answer from {} within {} s, or no instance role)",
                shown_url(&endpoint),
                IMDS_TIMEOUT.as_secs()
            ));
            Err(String::new())
        }
        Err(m) => Err(m),
    });
    match (r, skipped) {
        (Ok(c), _) => Step::Found(c),
        (Err(_), Some(why)) => Step::Skip(why),
        (Err(m), None) => Step::Fail(provider.into(), m),
    }
}

/// `Ok(None)`: no metadata service here, or no role attached.
fn imds_fetch(endpoint: &str, budget: &Budget) -> Result<Option<AwsCredentials>, String> {
    let client = Client::with_redirects(IMDS_TIMEOUT, None, 0)?;
    let b = Budget {
        deadline: budget
            .deadline
            .min(Instant::now() + IMDS_TIMEOUT * 3 + Duration::from_millis(500)),
        request_timeout: IMDS_TIMEOUT,
        retries: 0,
        max_size: MAX_ANSWER,
    };
    let shown = shown_url(endpoint);
    let r = match client.request(
        "imds",
        Method::Put(b""),
        &format!("{endpoint}/latest/api/token"),
        &[("x-aws-ec2-metadata-token-ttl-seconds", "21600")],
        &b,
    ) {
        Ok(r) => r,
        // Not on EC2 (or IMDS unreachable from this network namespace).
        Err(_) => return Ok(None),
    };
    match r.status {
        200 => {}
        // IMDS disabled or refusing: treat as absent.
        403..=405 => return Ok(None),
        s => return Err(format!("{shown} answered HTTP {s} to the token request")),
    }
    let token = String::from_utf8(r.body)
        .map_err(|_| format!("{shown} returned a token that is not text"))?;
    let token = token.trim().to_string();
    if token.is_empty() || token.contains(['\r', '\n']) {
        return Err(format!("{shown} returned an unusable token"));
    }
    let auth = [("x-aws-ec2-metadata-token", token.as_str())];
    let base = format!("{endpoint}/latest/meta-data/iam/security-credentials/");
    let r = client
        .request("imds", Method::Get, &base, &auth, &b)
        .map_err(|e| format!("{shown} ({}): {}", e.reason, e.message))?;
    match r.status {
        200 => {}
        404 => return Ok(None),
        s => return Err(format!("{shown} answered HTTP {s} to the role listing")),
    }
    let listing = String::from_utf8_lossy(&r.body);
    let Some(role) = listing.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return Ok(None);
    };
    if !role
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    {
        return Err(format!("{shown} listed a role name that is not valid"));
    }
    let r = client
        .request("imds", Method::Get, &format!("{base}{role}"), &auth, &b)
        .map_err(|e| format!("{shown} ({}): {}", e.reason, e.message))?;
    if r.status != 200 {
        return Err(format!(
            "{shown} answered HTTP {} for the credentials of role {role}",
            r.status
        ));
    }
    parse_endpoint_credentials(&r.body).map(Some)
}

// ---------------------------------------------------------------- cache

/// Temporary credentials by source. Entries without an expiration are not kept.
#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<String, AwsCredentials>>,
}

/// Fresh enough to use without asking again?
pub fn is_fresh(expiration: Option<SystemTime>, now: SystemTime) -> bool {
    expiration.is_some_and(|e| e > now + REFRESH_BEFORE)
}

impl Cache {
    /// The cached credentials of `key` if fresh; else `fetch` (and keep the
    /// result if it expires). If `fetch` fails while the cached ones are still
    /// valid for a minute, those are used and the failure is logged.
    pub fn get_or_fetch(
        &self,
        key: &str,
        now: SystemTime,
        fetch: impl FnOnce() -> Result<AwsCredentials, String>,
    ) -> Result<AwsCredentials, String> {
        let cached = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        if let Some(c) = &cached {
            if is_fresh(c.expiration, now) {
                return Ok(c.clone());
            }
        }
        match fetch() {
            Ok(c) => {
                let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
                if c.expiration.is_some() {
                    map.insert(key.to_string(), c.clone());
                } else {
                    map.remove(key);
                }
                Ok(c)
            }
            Err(m) => match cached {
                Some(c) if c.expiration.is_some_and(|e| e > now + MIN_VALIDITY) => {
                    if !m.is_empty() {
                        tracing::warn!(error = %m, "refreshing temporary AWS credentials failed; using the cached ones until they expire");
                    }
                    Ok(c)
                }
                _ => Err(m),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).filter(|v| !v.is_empty()).cloned()
    }

    fn budget() -> Budget {
        Budget {
            deadline: Instant::now() + Duration::from_secs(10),
            request_timeout: Duration::from_secs(2),
            retries: 0,
            max_size: 1 << 20,
        }
    }

    fn req() -> ChainRequest<'static> {
        ChainRequest {
            profile: None,
            region: "us-east-1",
            ca_file: None,
        }
    }

    /// Resolve with a private cache and IMDS disabled (no network in unit tests).
    fn resolve_env(
        pairs: &[(&str, &str)],
        req: &ChainRequest<'_>,
    ) -> Result<AwsCredentials, CredentialsError> {
        let mut all = pairs.to_vec();
        all.push(("AWS_EC2_METADATA_DISABLED", "true"));
        let env = env_of(&all);
        resolve_with(req, &env, &budget(), SystemTime::now(), &Cache::default())
    }

    const CONFIG: &str = "\
# comment
[default]
region = eu-west-1
aws_access_key_id = CFGDEFAULT
aws_secret_access_key = cfg-default-secret

[profile ci]
aws_access_key_id=CFGCI
aws_secret_access_key=cfg-ci-secret
s3 =
  max_concurrent_requests = 10
aws_session_token = cfg-ci-token

[ci2]
aws_access_key_id = IGNORED
aws_secret_access_key = ignored

[sso-session corp]
sso_start_url = https://example.awsapps.com/start
";

    const CREDENTIALS: &str = "\
[default]
aws_access_key_id = CREDDEFAULT
aws_secret_access_key = cred-default-secret
; comment
[ci2]
aws_access_key_id = CREDCI2
aws_secret_access_key = cred-ci2-secret
";

    #[test]
    fn config_and_credentials_sections() {
        let c = parse_profiles(CONFIG, true);
        assert_eq!(c["ci"]["aws_access_key_id"], "CFGCI");
        assert_eq!(c["ci"]["aws_session_token"], "cfg-ci-token");
        // Sub-section keys are not profile keys.
        assert!(!c["ci"].contains_key("max_concurrent_requests"));
        // `[ci2]` in the config file is not a profile; sso-session neither.
        assert!(!c.contains_key("ci2"));
        assert!(!c.contains_key("corp"));
        assert!(!c.contains_key("sso-session corp"));
        let k = parse_profiles(CREDENTIALS, false);
        assert_eq!(k["ci2"]["aws_access_key_id"], "CREDCI2");
        // The credentials file wins, key by key.
        let m = merged_profile("default", &c, &k).unwrap();
        assert_eq!(m["aws_access_key_id"], "CREDDEFAULT");
        assert_eq!(m["region"], "eu-west-1");
        assert!(merged_profile("nope", &c, &k).is_none());
    }

    fn files(dir: &Path) -> (String, String) {
        let cfg = dir.join("config");
        let cred = dir.join("credentials");
        std::fs::write(&cfg, CONFIG).unwrap();
        std::fs::write(&cred, CREDENTIALS).unwrap();
        (
            cfg.to_string_lossy().into_owned(),
            cred.to_string_lossy().into_owned(),
        )
    }

    #[test]
    fn chain_order_and_profiles() {
        let tmp = tempfile::tempdir().unwrap();
        let (cfg, cred) = files(tmp.path());
        let base = [
            ("AWS_CONFIG_FILE", cfg.as_str()),
            ("AWS_SHARED_CREDENTIALS_FILE", cred.as_str()),
        ];
        // Environment first.
        let mut e = base.to_vec();
        e.extend([
            ("AWS_ACCESS_KEY_ID", "ENVKEY"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ]);
        assert_eq!(resolve_env(&e, &req()).unwrap().access_key_id, "ENVKEY");
        // Then the default profile, credentials file over config file.
        let c = resolve_env(&base, &req()).unwrap();
        assert_eq!(c.access_key_id, "CREDDEFAULT");
        assert_eq!(c.session_token, None);
        // A `[profile x]` of the config file, chosen by AWS_PROFILE ...
        let mut e = base.to_vec();
        e.push(("AWS_PROFILE", "ci"));
        let c = resolve_env(&e, &req()).unwrap();
        assert_eq!(c.access_key_id, "CFGCI");
        assert_eq!(c.session_token.as_deref(), Some("cfg-ci-token"));
        // ... and the entry's `profile` wins over AWS_PROFILE.
        let r = ChainRequest {
            profile: Some("ci2"),
            ..req()
        };
        assert_eq!(resolve_env(&e, &r).unwrap().access_key_id, "CREDCI2");
        // An explicit profile that does not exist is an error, not a fall-through.
        let r = ChainRequest {
            profile: Some("missing"),
            ..req()
        };
        let err = resolve_env(&base, &r).unwrap_err();
        assert!(
            matches!(&err, CredentialsError::Provider { provider, .. } if provider == "profile missing"),
            "{err}"
        );
        assert!(
            err.to_string().contains("profile missing is not in"),
            "{err}"
        );
    }

    #[test]
    fn nothing_configured_names_what_was_tried_and_leaks_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let err = resolve_env(&[("HOME", tmp.path().to_str().unwrap())], &req()).unwrap_err();
        let m = err.to_string();
        assert!(matches!(err, CredentialsError::NotFound { .. }));
        for part in [
            "environment",
            "profile default",
            "web identity",
            "container credentials",
            "EC2 instance metadata",
            "AWS_ACCESS_KEY_ID",
        ] {
            assert!(m.contains(part), "{part} missing from: {m}");
        }
        // Half-configured providers fail with a clear message and no value.
        let err = resolve_env(
            &[("AWS_ACCESS_KEY_ID", "AKIDONLY"), ("HOME", "/nonexistent")],
            &req(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("AWS_SECRET_ACCESS_KEY is not"),
            "{err}"
        );
        assert!(!err.to_string().contains("AKIDONLY"));
        let err = resolve_env(
            &[
                ("AWS_ROLE_ARN", "arn:aws:iam::1:role/x"),
                ("HOME", "/nonexistent"),
            ],
            &req(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("AWS_WEB_IDENTITY_TOKEN_FILE is not"),
            "{err}"
        );
        let err = resolve_env(
            &[
                (
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "http://203.0.113.7/creds",
                ),
                ("HOME", "/nonexistent"),
            ],
            &req(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("must be https"), "{err}");
    }

    #[test]
    fn unsupported_and_broken_profile_kinds_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("config");
        std::fs::write(
            &cfg,
            "[profile ar]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = nokeys\n\
             [profile nokeys]\nregion = eu-west-1\n\
             [profile loop1]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = loop2\n\
             [profile loop2]\nrole_arn = arn:aws:iam::1:role/y\nsource_profile = loop1\n\
             [profile mfa]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = nokeys\nmfa_serial = arn:aws:iam::1:mfa/me\n\
             [profile nosource]\nrole_arn = arn:aws:iam::1:role/x\n\
             [profile missing]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = ghost\n\
             [profile badsource]\nrole_arn = arn:aws:iam::1:role/x\ncredential_source = Laptop\n\
             [profile envsource]\nrole_arn = arn:aws:iam::1:role/x\ncredential_source = Environment\n\
             [profile sso]\nsso_session = corp\n",
        )
        .unwrap();
        let cfg = cfg.to_string_lossy().into_owned();
        for (p, want) in [
            ("ar", "source_profile nokeys has no credentials"),
            ("loop1", "a loop?"),
            ("mfa", "mfa_serial"),
            ("nosource", "role_arn needs source_profile"),
            ("missing", "source_profile ghost is not in"),
            ("badsource", "credential_source must be"),
            ("envsource", "source credentials were not found"),
            ("sso", "sso_session corp has no [sso-session corp] section"),
        ] {
            let r = ChainRequest {
                profile: Some(p),
                ..req()
            };
            let err = resolve_env(&[("AWS_CONFIG_FILE", &cfg), ("HOME", "/nonexistent")], &r)
                .unwrap_err();
            assert!(err.to_string().contains(want), "{p}: {err}");
        }
    }

    #[test]
    fn sso_sessions_tokens_and_answers() {
        let p = parse_profiles(
            "[profile dev]\nsso_session = corp\nsso_account_id = 111122223333\nsso_role_name = ReadState\n\
             [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\n",
            true,
        );
        assert_eq!(p["dev"]["sso_session"], "corp");
        assert_eq!(p[&format!("{SSO_SESSION}corp")]["sso_region"], "eu-west-1");
        assert!(!p.contains_key("corp"), "an sso-session is not a profile");

        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("t.json");
        std::fs::write(
            &f,
            r#"{"startUrl":"https://corp.awsapps.com/start","region":"eu-west-1","accessToken":"tok-SECRET","expiresAt":"2030-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(read_sso_token(&f, now).unwrap(), "tok-SECRET");
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let e = read_sso_token(&f, later).unwrap_err();
        assert!(e.contains("expired") && !e.contains("SECRET"), "{e}");
        let e = read_sso_token(&tmp.path().join("none.json"), now).unwrap_err();
        assert!(e.contains("no SSO token"), "{e}");

        let c = parse_sso_credentials(
            br#"{"roleCredentials":{"accessKeyId":"ASIA1","secretAccessKey":"s","sessionToken":"t","expiration":1900000000000}}"#,
        )
        .unwrap();
        assert_eq!(c.access_key_id, "ASIA1");
        assert_eq!(
            c.expiration,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000))
        );
        let e = parse_sso_credentials(b"<html>secret-page</html>").unwrap_err();
        assert!(!e.contains("secret-page"), "{e}");
    }

    #[test]
    fn assume_role_xml() {
        let ok = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser><Arn>arn:aws:sts::1:assumed-role/r/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
      <SecretAccessKey>secret-from-sts</SecretAccessKey>
      <SessionToken>token-from-sts</SessionToken>
      <Expiration>2030-01-01T00:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#;
        let c = parse_assume_role_response(ok).unwrap();
        assert_eq!(c.access_key_id, "ASIAEXAMPLE");
        assert_eq!(c.session_token.as_deref(), Some("token-from-sts"));
        assert!(c.expiration.is_some());
        let e = parse_assume_role_response("<html>secret-in-page</html>").unwrap_err();
        assert!(!e.contains("secret-in-page"), "{e}");
    }

    #[test]
    fn credential_process_json() {
        let c = parse_process_output(
            br#"{"Version":1,"AccessKeyId":"AKID","SecretAccessKey":"s3cr3t","SessionToken":"tok","Expiration":"2030-01-02T03:04:05Z"}"#,
        )
        .unwrap();
        assert_eq!(c.access_key_id, "AKID");
        assert_eq!(c.session_token.as_deref(), Some("tok"));
        assert_eq!(c.expiration, super::super::rfc3339("2030-01-02T03:04:05Z"));
        let c =
            parse_process_output(br#"{"Version":1,"AccessKeyId":"AKID","SecretAccessKey":"s"}"#)
                .unwrap();
        assert_eq!((c.session_token, c.expiration), (None, None));
        let e =
            parse_process_output(br#"{"Version":2,"AccessKeyId":"AKID","SecretAccessKey":"s"}"#)
                .unwrap_err();
        assert!(e.contains("Version 2"));
        // Errors never quote the output.
        let e = parse_process_output(br#"{"Version":1,"AccessKeyId":"AKID","SecretAccessKey":7}"#)
            .unwrap_err();
        assert!(!e.contains("AKID") && !e.contains('7'), "{e}");
        assert!(parse_process_output(b"not json s3cr3t")
            .unwrap_err()
            .find("s3cr3t")
            .is_none());
    }

    #[cfg(unix)]
    #[test]
    fn credential_process_runs_with_a_deadline() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("config");
        std::fs::write(
            &cfg,
            "[profile p]\ncredential_process = echo leaked-on-stderr >&2; printf '{\"Version\":1,\"AccessKeyId\":\"PROCKEY\",\"SecretAccessKey\":\"proc-secret\"}'\n\
             [profile slow]\ncredential_process = sleep 30\n\
             [profile bad]\ncredential_process = echo proc-secret; exit 3\n",
        )
        .unwrap();
        let cfg = cfg.to_string_lossy().into_owned();
        let env = [("AWS_CONFIG_FILE", cfg.as_str()), ("HOME", "/nonexistent")];
        let r = ChainRequest {
            profile: Some("p"),
            ..req()
        };
        assert_eq!(resolve_env(&env, &r).unwrap().access_key_id, "PROCKEY");
        let r = ChainRequest {
            profile: Some("bad"),
            ..req()
        };
        let err = resolve_env(&env, &r).unwrap_err().to_string();
        assert!(
            err.contains("status 3") && !err.contains("proc-secret"),
            "{err}"
        );
        // A hanging process is killed at the deadline.
        let started = Instant::now();
        let b = Budget {
            deadline: Instant::now() + Duration::from_millis(300),
            ..budget()
        };
        let e = env_of(&env);
        let r = ChainRequest {
            profile: Some("slow"),
            ..req()
        };
        let err = resolve_with(&r, &e, &b, SystemTime::now(), &Cache::default()).unwrap_err();
        assert!(err.to_string().contains("did not finish"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn sts_xml() {
        let xml = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:monitoring:homelab-monitor</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/tf-read/homelab-monitor</Arn>
      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:homelab-monitor</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>FwoGZXIvYXdzEXAMPLE</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY</SecretAccessKey>
      <Expiration>2030-10-24T23:00:23Z</Expiration>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
    <Provider>arn:aws:iam::123456789012:oidc-provider/oidc.eks.example</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#;
        let c = parse_sts_response(xml).unwrap();
        assert_eq!(c.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_eq!(
            c.secret_access_key,
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        );
        assert_eq!(c.session_token.as_deref(), Some("FwoGZXIvYXdzEXAMPLE"));
        assert_eq!(c.expiration, super::super::rfc3339("2030-10-24T23:00:23Z"));
        let err = "<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>secret-ish</Message></Error></ErrorResponse>";
        assert!(parse_sts_response(err).is_err());
        assert_eq!(
            sts_error_code(err.as_bytes()).as_deref(),
            Some("InvalidIdentityToken")
        );
        assert_eq!(sts_error_code(b"<Code>a b<script></Code>"), None);
    }

    #[test]
    fn endpoint_json_and_full_uri_rules() {
        let c = parse_endpoint_credentials(
            br#"{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"ASIA","SecretAccessKey":"s","Token":"t","Expiration":"2030-01-01T00:00:00Z","RoleArn":"arn"}"#,
        )
        .unwrap();
        assert_eq!(c.session_token.as_deref(), Some("t"));
        assert!(parse_endpoint_credentials(
            br#"{"Code":"AssumeRoleUnauthorizedAccess","AccessKeyId":"","SecretAccessKey":""}"#
        )
        .unwrap_err()
        .contains("AssumeRoleUnauthorizedAccess"));
        let ok = |u: &str| full_uri_allowed(&url::Url::parse(u).unwrap());
        assert!(ok("http://127.0.0.1:8080/creds"));
        assert!(ok("http://169.254.170.23/v1/credentials"));
        assert!(ok("http://[fd00:ec2::23]/v1/credentials"));
        assert!(ok("https://creds.example/x"));
        assert!(!ok("http://creds.example/x"));
        assert!(!ok("http://10.0.0.1/x"));
    }

    #[test]
    fn refresh_logic_with_explicit_times() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let exp = t0 + Duration::from_secs(3600);
        assert!(is_fresh(Some(exp), t0));
        assert!(is_fresh(
            Some(exp),
            exp - REFRESH_BEFORE - Duration::from_secs(1)
        ));
        assert!(!is_fresh(Some(exp), exp - REFRESH_BEFORE));
        assert!(!is_fresh(None, t0));

        let cache = Cache::default();
        let fetches = std::cell::Cell::new(0);
        let creds = |k: &str, exp| AwsCredentials::new(k, "s", Some("t".into()), exp);
        let fetch = |k: &'static str, exp| {
            let f = &fetches;
            move || {
                f.set(f.get() + 1);
                Ok(creds(k, exp))
            }
        };
        // First use fetches; within the hour the cached copy is used.
        assert_eq!(
            cache
                .get_or_fetch("k", t0, fetch("A", Some(exp)))
                .unwrap()
                .access_key_id,
            "A"
        );
        let t1 = t0 + Duration::from_secs(1800);
        assert_eq!(
            cache
                .get_or_fetch("k", t1, fetch("B", Some(exp)))
                .unwrap()
                .access_key_id,
            "A"
        );
        assert_eq!(fetches.get(), 1);
        // Another key is another source.
        assert_eq!(
            cache
                .get_or_fetch("k2", t1, fetch("C", Some(exp)))
                .unwrap()
                .access_key_id,
            "C"
        );
        assert_eq!(fetches.get(), 2);
        // 4 minutes before expiry: refreshed.
        let t2 = exp - Duration::from_secs(240);
        let exp2 = t2 + Duration::from_secs(3600);
        assert_eq!(
            cache
                .get_or_fetch("k", t2, fetch("D", Some(exp2)))
                .unwrap()
                .access_key_id,
            "D"
        );
        assert_eq!(fetches.get(), 3);
        // A failed refresh keeps using credentials that are still valid ...
        let t3 = exp2 - Duration::from_secs(120);
        assert_eq!(
            cache
                .get_or_fetch("k", t3, || Err("down".into()))
                .unwrap()
                .access_key_id,
            "D"
        );
        // ... but not expired ones.
        let t4 = exp2 - Duration::from_secs(30);
        assert_eq!(
            cache
                .get_or_fetch("k", t4, || Err("down".into()))
                .unwrap_err(),
            "down"
        );
        // Credentials without an expiration are never cached.
        cache.get_or_fetch("p", t0, fetch("E", None)).unwrap();
        assert_eq!(
            cache
                .get_or_fetch("p", t0, fetch("F", None))
                .unwrap()
                .access_key_id,
            "F"
        );
    }

    #[test]
    fn sts_endpoint_choice() {
        let e = env_of(&[]);
        assert_eq!(
            sts_endpoint("eu-central-1", &e),
            "https://sts.eu-central-1.amazonaws.com"
        );
        assert_eq!(
            sts_endpoint("cn-north-1", &e),
            "https://sts.cn-north-1.amazonaws.com.cn"
        );
        let e = env_of(&[
            ("AWS_ENDPOINT_URL", "http://a"),
            ("AWS_ENDPOINT_URL_STS", "http://b"),
        ]);
        assert_eq!(sts_endpoint("x", &e), "http://b");
        let e = env_of(&[("AWS_ENDPOINT_URL", "http://a")]);
        assert_eq!(sts_endpoint("x", &e), "http://a");
    }

    #[test]
    fn debug_redacts() {
        let c = AwsCredentials::new("AKIDX", "very-secret", Some("tok-secret".into()), None);
        let d = format!("{c:?}");
        assert!(!d.contains("AKIDX") && !d.contains("very-secret") && !d.contains("tok-secret"));
    }
}
