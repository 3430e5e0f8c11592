//! The s3 backend's credential chain against moto_server in its authenticated
//! mode (`INITIAL_NO_AUTH_ACTION_COUNT`): after the first requests (which create
//! an IAM user, its access key and policy), moto verifies every SigV4 signature,
//! so a state is read (`terraform_state_up 1`) only with the IAM user's real key.
//!
//! - wrong credentials (right key id with a wrong secret, an unknown key id) are
//!   reported per source while a good source in the same config still reads;
//! - each provider of the chain supplies the key that moto accepts, with no
//!   other source available: a `[profile x]` of the config file, a
//!   `credential_process`, web identity (env and profile) against a loopback STS
//!   stand-in, the container endpoint, IMDSv2; temporary credentials are cached;
//! - no secret (secret key, session token, web identity token, container and
//!   IMDS tokens, state content) reaches metrics, reports or logs, even at trace.
//!
//! The monitor's remote sources read an injected environment
//! ([`homelab_monitor::remote::Env`]): the tests whose providers take all their
//! settings from it (static keys and profiles of the shared files under an
//! injected HOME, `credential_process`) run on a map and leave the process
//! environment alone. aws-config still reads some variables from the process
//! itself (its `Env` injection is only public behind its `test-util` feature):
//! `AWS_ENDPOINT_URL_STS` / `_SSO` (web identity, assume-role, SSO), `HOME`
//! for the SSO token cache, `AWS_CONTAINER_*` (container credentials) and
//! `AWS_EC2_METADATA_DISABLED` (honoured from the process even when the
//! injected environment enables IMDS). The tests that need those take turns on
//! [`ENV`] and set the process environment; each test has its own moto and
//! temporary HOME.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::remote::{self, monitor, monitor_with_env, output_text};
use common::stub::{moto_venv, resp, wait_port, Proc, Req, Server};
use common::{free_port, run_ok};
use homelab_monitor::core::encoder::{encode, Format};
use homelab_monitor::core::monitor::{CollectContext, Monitor};
use homelab_monitor::monitors::terraform::TerraformMonitor;
use homelab_monitor::remote::Env;

const CANARY: &str = "CANARY-5ecret-s3auth-91e2";
const WEB_IDENTITY_TOKEN: &str = "CANARY-web-identity-jwt-77aa";
const CONTAINER_TOKEN: &str = "CANARY-container-auth-token-0b9e";
const IMDS_TOKEN: &str = "CANARY-imds-token-5f30";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/tf-state-reader";
const PROFILE_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/tf-state-reader-profile";

// ---------------------------------------------------------------- moto

/// A state with one null_resource whose trigger holds the canary.
fn state() -> String {
    format!(
        r#"{{"version":4,"terraform_version":"1.9.0","serial":3,"lineage":"4b1e0c5e-0000-4000-8000-000000000001","outputs":{{}},"resources":[{{"mode":"managed","type":"null_resource","name":"n","provider":"provider[\"registry.terraform.io/hashicorp/null\"]","instances":[{{"schema_version":0,"attributes":{{"id":"1","triggers":{{"secret":"{CANARY}"}}}},"sensitive_attributes":[]}}]}}]}}"#
    )
}

/// Keys made in moto by the setup.
struct Keys {
    /// The IAM user's access key (id, secret).
    user: (String, String),
    /// Temporary credentials of a role assumed by that user (id, secret, token):
    /// what STS, the container endpoint and IMDS hand out.
    temp: (String, String, String),
}

/// Moto's first 5 requests are not authenticated: they create an IAM user, its
/// access key and policy, and a role with its policy. Then, signed, the bucket
/// and its objects are written and the role is assumed (temporary
/// credentials that moto checks with their session token). Also checks that
/// moto refuses a wrong secret with 403 and an unsigned request.
fn moto_setup(venv: &Path, endpoint: &str, keys: &[&str]) -> Keys {
    let script = r#"
import boto3, json, sys
from botocore.exceptions import ClientError
ep, body, keys = sys.argv[1], sys.argv[2], sys.argv[3:]
anon = dict(endpoint_url=ep, region_name="us-east-1",
            aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="setup")
allow = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:*", "sts:AssumeRole"], "Resource": "*"}]})
trust = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:user/monitor"}, "Action": "sts:AssumeRole"}]})
iam = boto3.client("iam", **anon)
iam.create_user(UserName="monitor")
k = iam.create_access_key(UserName="monitor")["AccessKey"]
iam.put_user_policy(UserName="monitor", PolicyName="s3", PolicyDocument=allow)
iam.create_role(RoleName="tf-state-reader", AssumeRolePolicyDocument=trust)
iam.put_role_policy(RoleName="tf-state-reader", PolicyName="s3", PolicyDocument=allow)
good = dict(endpoint_url=ep, region_name="us-east-1",
            aws_access_key_id=k["AccessKeyId"], aws_secret_access_key=k["SecretAccessKey"])
cfg = boto3.session.Config(s3={"addressing_style": "path"})
s3 = boto3.client("s3", config=cfg, **good)
s3.create_bucket(Bucket="tfstate")
for key in keys:
    s3.put_object(Bucket="tfstate", Key=key, Body=body.encode())
t = boto3.client("sts", **good).assume_role(
    RoleArn="arn:aws:iam::123456789012:role/tf-state-reader", RoleSessionName="setup",
    DurationSeconds=3600)["Credentials"]
tmp = boto3.client("s3", config=cfg, endpoint_url=ep, region_name="us-east-1",
                   aws_access_key_id=t["AccessKeyId"], aws_secret_access_key=t["SecretAccessKey"],
                   aws_session_token=t["SessionToken"])
tmp.get_object(Bucket="tfstate", Key=keys[0])
for (kid, sec, tok) in [(k["AccessKeyId"], "wrong-secret", None),
                        (t["AccessKeyId"], t["SecretAccessKey"], "wrong-token")]:
    bad = boto3.client("s3", endpoint_url=ep, region_name="us-east-1", config=cfg,
                       aws_access_key_id=kid, aws_secret_access_key=sec, aws_session_token=tok)
    try:
        bad.get_object(Bucket="tfstate", Key=keys[0])
        sys.exit("moto accepted wrong credentials: authentication is not enforced")
    except ClientError as e:
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        if status not in (400, 403):
            sys.exit("moto answered %d to wrong credentials" % status)
print(json.dumps([k["AccessKeyId"], k["SecretAccessKey"],
                  t["AccessKeyId"], t["SecretAccessKey"], t["SessionToken"]]))
"#;
    let out = run_ok(
        "the moto setup",
        Command::new(venv.join("bin/python"))
            .arg("-c")
            .arg(script)
            .arg(endpoint)
            .arg(state())
            .args(keys)
            .stdin(Stdio::null()),
    );
    let v: [String; 5] =
        serde_json::from_slice(&out.stdout).expect("the setup prints the keys as JSON");
    let [a, b, c, d, e] = v;
    // An unsigned request is refused too (authentication is on).
    let status = std::thread::scope(|s| {
        s.spawn(|| {
            reqwest::blocking::get(format!("{endpoint}/tfstate/{}", keys[0]))
                .expect("moto answers")
                .status()
        })
        .join()
        .expect("GET thread")
    });
    assert!(
        status.as_u16() >= 400,
        "moto served an unsigned request: {status}"
    );
    Keys {
        user: (a, b),
        temp: (c, d, e),
    }
}

// ---------------------------------------------------------------- environment

/// The injected environment of a test: an empty HOME, IMDS disabled, `vars`
/// (what [`set_env`] makes of the process environment, as a map).
fn injected_env(home: &Path, vars: &[(&str, &str)]) -> Env {
    let mut pairs = vec![
        ("HOME".to_string(), home.display().to_string()),
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
    ];
    pairs.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Env::from_pairs(pairs)
}

/// Remove every AWS_* variable and point HOME at an empty folder, then set `vars`.
/// IMDS is disabled unless a case enables it. Only for the tests that hold
/// [`ENV`] (aws-config reads these variables from the process).
fn set_env(home: &Path, vars: &[(&str, &str)]) {
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            std::env::remove_var(k);
        }
    }
    std::env::set_var("HOME", home);
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
}

// ---------------------------------------------------------------- exporter

/// A config of S3 entries (bucket tfstate on moto), each `(key, profile)`.
fn yaml(endpoint: &str, entries: &[(&str, Option<&str>)]) -> String {
    let mut y = String::from(
        "custom_monitors:\n  terraform_state:\n    check_interval: 1ms\n    timeout: 20s\n    remote: { retries: 0, request_timeout: 5s }\n    backends:\n",
    );
    for (key, profile) in entries {
        y.push_str(&format!(
            "      - {{ type: s3, bucket: tfstate, key: \"{key}\", endpoint: \"{endpoint}\", use_path_style: true{} }}\n",
            profile.map(|p| format!(", profile: {p}")).unwrap_or_default()
        ));
    }
    y
}

fn assert_no_secret(text: &str, secrets: &[&str], what: &str) {
    for s in secrets {
        assert!(!text.contains(s), "a secret leaked into {what}:\n{text}");
    }
}

async fn scrape(m: &TerraformMonitor, secrets: &[&str]) -> String {
    // Results are cached for check_interval (1 ms): let it pass.
    std::thread::sleep(Duration::from_millis(5));
    let snap = m
        .collect(CollectContext {
            now: SystemTime::now(),
        })
        .await
        .expect("collection must not fail as a whole");
    let text = encode(vec![Arc::new(snap)], Format::Classic).expect("/metrics renders");
    assert_no_secret(&text, secrets, "metrics");
    text
}

fn label(key: &str) -> String {
    format!("s3://tfstate/{key}")
}

fn up(m: &str, key: &str) -> Option<f64> {
    remote::up(m, &label(key))
}

fn error_reason(m: &str, key: &str, component: &str) -> Option<String> {
    remote::component_error(m, &label(key), component)
}

/// The state `key` was read (`terraform_state_up 1`).
fn assert_up(m: &str, key: &str) {
    assert_eq!(up(m, key), Some(1.0), "{key}:\n{m}");
}

/// The entry of `key` failed for want of credentials.
fn assert_credentials_error(m: &str, key: &str) {
    assert_eq!(
        error_reason(m, key, "discovery").as_deref(),
        Some("credentials"),
        "{key}:\n{m}"
    );
}

fn instances(m: &str, key: &str) -> Option<f64> {
    remote::instances(m, &label(key))
}

/// The binary's one-shot report with trace logs, in a child process with its
/// own environment (the AWS_* variables of this process removed first).
fn status_report(dir: &Path, home: &Path, env: &[(&str, &str)], secrets: &[&str]) -> String {
    let mut cmd = remote::status_command(dir);
    cmd.env_remove("RUST_LOG").env("HOME", home);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    // Never the real instance metadata address (loopback only), unless a case
    // points it at its own stand-in.
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("cannot run homelab-monitor");
    let all = output_text(&out);
    assert_no_secret(&all, secrets, "the report or trace logs");
    all
}

// ---------------------------------------------------------------- stand-ins

fn expiration_in(secs: u64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs as i64);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// STS stand-in: AssumeRoleWithWebIdentity returns the IAM user's real key as
/// "temporary" credentials. Records (role ARN, session name, token) per call.
fn sts(key: &(String, String, String), calls: Arc<Mutex<Vec<(String, String, String)>>>) -> Server {
    let (id, secret, token) = key.clone();
    Server::start(Arc::new(move |r: &Req| {
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(&r.body).into_owned().collect();
        if r.method != "POST"
            || form.get("Action").map(String::as_str) != Some("AssumeRoleWithWebIdentity")
            || form.get("Version").map(String::as_str) != Some("2011-06-15")
        {
            return resp(
                400,
                "<ErrorResponse><Error><Code>InvalidAction</Code></Error></ErrorResponse>",
            );
        }
        let g = |k: &str| form.get(k).cloned().unwrap_or_default();
        calls
            .lock()
            .unwrap()
            .push((g("RoleArn"), g("RoleSessionName"), g("WebIdentityToken")));
        if g("WebIdentityToken") != WEB_IDENTITY_TOKEN {
            return resp(
                400,
                "<ErrorResponse><Error><Code>InvalidIdentityToken</Code></Error></ErrorResponse>",
            );
        }
        resp(
            200,
            format!(
                r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:monitoring:homelab-monitor</SubjectFromWebIdentityToken>
    <AssumedRoleUser><Arn>{}/x</Arn><AssumedRoleId>AROA:x</AssumedRoleId></AssumedRoleUser>
    <Credentials>
      <SessionToken>{token}</SessionToken>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <Expiration>{}</Expiration>
      <AccessKeyId>{id}</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#,
                g("RoleArn"),
                expiration_in(3600)
            ),
        )
    }))
}

fn endpoint_json(key: &(String, String, String)) -> String {
    format!(
        r#"{{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"{}","SecretAccessKey":"{}","Token":"{}","Expiration":"{}"}}"#,
        key.0,
        key.1,
        key.2,
        expiration_in(3600)
    )
}

/// Container endpoint stand-in: answers only with the right Authorization.
fn container(key: &(String, String, String), seen: Arc<Mutex<Vec<Option<String>>>>) -> Server {
    let key = key.clone();
    Server::start(Arc::new(move |r: &Req| {
        seen.lock()
            .unwrap()
            .push(r.headers.get("authorization").cloned());
        if r.method != "GET" || r.path != "/v1/credentials" {
            return resp(404, "");
        }
        if r.headers.get("authorization").map(String::as_str) != Some(CONTAINER_TOKEN) {
            return resp(401, "");
        }
        resp(200, endpoint_json(&key))
    }))
}

/// IMDSv2 stand-in: a PUT for a session token, then GETs that must carry it.
fn imds(key: &(String, String, String), log: Arc<Mutex<Vec<String>>>) -> Server {
    let key = key.clone();
    Server::start(Arc::new(move |r: &Req| {
        log.lock().unwrap().push(format!("{} {}", r.method, r.path));
        if r.path == "/latest/api/token" {
            if r.method != "PUT"
                || !r
                    .headers
                    .contains_key("x-aws-ec2-metadata-token-ttl-seconds")
            {
                return resp(400, "");
            }
            // As IMDS answers: the token with its TTL.
            let mut ok = resp(200, IMDS_TOKEN);
            ok.headers.push((
                "x-aws-ec2-metadata-token-ttl-seconds".into(),
                "21600".into(),
            ));
            return ok;
        }
        if r.method != "GET"
            || r.headers
                .get("x-aws-ec2-metadata-token")
                .map(String::as_str)
                != Some(IMDS_TOKEN)
        {
            return resp(401, "");
        }
        match r.path.as_str() {
            // No trailing newline, as IMDS answers (aws-config panics on one).
            "/latest/meta-data/iam/security-credentials/" => resp(200, "tf-reader-role"),
            "/latest/meta-data/iam/security-credentials/tf-reader-role" => {
                resp(200, endpoint_json(&key))
            }
            _ => resp(404, ""),
        }
    }))
}

// ---------------------------------------------------------------- fixture

/// The process environment is global: the tests of this file take turns.
static ENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One authenticated moto with the setup's keys, in a temporary folder with an
/// empty HOME; holds this file's turn on the process environment when the
/// test needs it ([`fixture_with_process_env`]).
struct Fixture {
    _env: Option<tokio::sync::MutexGuard<'static, ()>>,
    _moto: Proc,
    tmp: tempfile::TempDir,
    endpoint: String,
    k: Keys,
}

impl Fixture {
    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn home(&self) -> std::path::PathBuf {
        self.tmp.path().join("home")
    }

    /// A monitor of one S3 entry on moto: the state `key`, read with `profile`.
    fn monitor(&self, key: &str, profile: Option<&str>) -> TerraformMonitor {
        monitor(self.dir(), &yaml(&self.endpoint, &[(key, profile)]))
    }

    /// [`Fixture::monitor`] reading only the injected environment of `vars`.
    fn monitor_injected(
        &self,
        vars: &[(&str, &str)],
        key: &str,
        profile: Option<&str>,
    ) -> TerraformMonitor {
        monitor_with_env(
            self.dir(),
            &yaml(&self.endpoint, &[(key, profile)]),
            Some(injected_env(&self.home(), vars)),
        )
    }

    /// With only `vars` (and the empty HOME) in the environment, a monitor of
    /// `key` read with `profile`, and its first scrape.
    async fn read(
        &self,
        vars: &[(&str, &str)],
        key: &str,
        profile: Option<&str>,
        secrets: &[&str],
    ) -> (TerraformMonitor, String) {
        set_env(&self.home(), vars);
        let m = self.monitor(key, profile);
        let text = scrape(&m, secrets).await;
        (m, text)
    }

    /// Every secret of the fixture, none of which may leak.
    fn secrets(&self) -> Vec<&str> {
        vec![
            CANARY,
            &self.k.user.1,
            &self.k.temp.1,
            &self.k.temp.2,
            WEB_IDENTITY_TOKEN,
            CONTAINER_TOKEN,
            IMDS_TOKEN,
            "wrong-secret-value-3c9d",
        ]
    }
}

/// A fixture for a test that sets the process environment (holds [`ENV`]).
async fn fixture_with_process_env() -> Fixture {
    let guard = ENV.lock().await;
    Fixture {
        _env: Some(guard),
        ..fixture().await
    }
}

/// A fixture for a test on an injected environment (no turn on [`ENV`]).
async fn fixture() -> Fixture {
    let _env = None;
    let venv = moto_venv();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let port = free_port();
    // The first 5 requests (IAM user, key, policies, role) are not authenticated.
    let _moto = Proc(
        Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "5")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start moto_server"),
    );
    wait_port(port);
    let endpoint = format!("http://127.0.0.1:{port}");
    let keys = [
        "good/terraform.tfstate",
        // A workspace: the key holds `:` (percent-encoded in the signed path).
        "env:/prod/good/terraform.tfstate",
        "wrong-secret/terraform.tfstate",
        "unknown-key/terraform.tfstate",
        "config-profile/terraform.tfstate",
        "process/terraform.tfstate",
        "web-identity/terraform.tfstate",
        "web-identity-profile/terraform.tfstate",
        "assume-role/terraform.tfstate",
        "sso/terraform.tfstate",
        "container/terraform.tfstate",
        "imds/terraform.tfstate",
    ];
    let k = moto_setup(&venv, &endpoint, &keys);
    Fixture {
        _env,
        _moto,
        tmp,
        endpoint,
        k,
    }
}

/// `~/.aws/config` with every profile the tests use, the `credential_process`
/// script (counting its runs in `process-runs`) and the web identity token file.
fn write_profiles(f: &Fixture) {
    let (dir, home) = (f.dir(), f.home());
    let (key_id, secret) = (f.k.user.0.as_str(), f.k.user.1.as_str());
    let (temp_id, temp_secret, temp_token) = (
        f.k.temp.0.as_str(),
        f.k.temp.1.as_str(),
        f.k.temp.2.as_str(),
    );
    let aws = home.join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    let process_count = dir.join("process-runs");
    let script = dir.join("creds.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> '{}'\necho 'diagnostics on stderr {CANARY}' >&2\nprintf '%s' '{{\"Version\":1,\"AccessKeyId\":\"{temp_id}\",\"SecretAccessKey\":\"{temp_secret}\",\"SessionToken\":\"{temp_token}\",\"Expiration\":\"{}\"}}'\n",
            process_count.display(),
            expiration_in(3600)
        ),
    )
    .unwrap();
    let token_file = dir.join("web-identity-token");
    // As Kubernetes writes it: aws-config sends the file's content as it is.
    std::fs::write(&token_file, WEB_IDENTITY_TOKEN).unwrap();
    let mut cfg_text = format!(
            "[default]\nregion = us-east-1\n\n[profile cfg]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n\n\
             [profile proc]\ncredential_process = sh {}\n\n\
             [profile wi]\nrole_arn = {PROFILE_ROLE_ARN}\nweb_identity_token_file = {}\nrole_session_name = from-profile\n",
            script.display(),
            token_file.display()
        );
    cfg_text.push_str(&format!(
        "\n[profile assumer]\nrole_arn = {ROLE_ARN}\nsource_profile = cfg\nrole_session_name = assumed-by-monitor\n\
         \n[profile badsource]\naws_access_key_id = {key_id}\naws_secret_access_key = wrong-secret-value-3c9d\n\
         \n[profile assumer-bad]\nrole_arn = {ROLE_ARN}\nsource_profile = badsource\n"
    ));
    cfg_text.push_str(
        "\n[profile sso]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = ReadState\n\
         \n[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\nsso_registration_scopes = sso:account:access\n",
    );
    std::fs::write(aws.join("config"), cfg_text).unwrap();
}

/// Wrong credentials are reported per source while a good source reads.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_fail_per_source_and_a_rotated_file_is_read_again() {
    // Injected environment: static keys of the shared credentials file.
    let f = fixture().await;
    let (dir, home, endpoint) = (f.dir(), f.home(), f.endpoint.clone());
    let k = &f.k;
    let (key_id, secret) = (k.user.0.as_str(), k.user.1.as_str());
    let secrets = f.secrets();
    // Profiles of the shared credentials file: the right key with a wrong
    // secret, an unknown key id, and the good key for a second source.
    let creds_file = dir.join("credentials");
    std::fs::write(
        &creds_file,
        format!(
            "[good]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n\
             [wrongsecret]\naws_access_key_id = {key_id}\naws_secret_access_key = wrong-secret-value-3c9d\n\
             [unknownkey]\naws_access_key_id = AKIAUNKNOWNKEY000000\naws_secret_access_key = {secret}\n"
        ),
    )
    .unwrap();
    let creds_s = creds_file.to_str().unwrap();
    let y = yaml(
        &endpoint,
        &[
            ("good/terraform.tfstate", Some("good")),
            ("wrong-secret/terraform.tfstate", Some("wrongsecret")),
            ("unknown-key/terraform.tfstate", Some("unknownkey")),
        ],
    );
    let m = monitor_with_env(
        dir,
        &y,
        Some(injected_env(
            &home,
            &[("AWS_SHARED_CREDENTIALS_FILE", creds_s)],
        )),
    );
    let text = scrape(&m, &secrets).await;
    assert_up(&text, "good/terraform.tfstate");
    assert_up(&text, "env:/prod/good/terraform.tfstate");
    assert_eq!(
        instances(&text, "good/terraform.tfstate"),
        Some(1.0),
        "{text}"
    );
    for bad in [
        "wrong-secret/terraform.tfstate",
        "unknown-key/terraform.tfstate",
    ] {
        assert_eq!(up(&text, bad), Some(0.0), "{bad}:\n{text}");
        assert_eq!(
            error_reason(&text, bad, "state").as_deref(),
            Some("http_403"),
            "{bad}:\n{text}"
        );
    }
    let report = status_report(
        dir,
        &home,
        &[("AWS_SHARED_CREDENTIALS_FILE", creds_s)],
        &secrets,
    );
    assert!(
        report.contains("s3://tfstate/wrong-secret/terraform.tfstate")
            && report.contains("HTTP 403"),
        "the report names the source and the status:\n{report}"
    );
    // The file is rotated (the wrong secret replaced by the right one): the next
    // collection reads it again, as it reads static keys at every collection.
    std::fs::write(
        &creds_file,
        format!("[wrongsecret]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"),
    )
    .unwrap();
    let text = scrape(&m, &secrets).await;
    assert_eq!(
        up(&text, "wrong-secret/terraform.tfstate"),
        Some(1.0),
        "a rotated credentials file is read again:\n{text}"
    );
}

/// No credentials anywhere: a bounded reason, every source named.
#[tokio::test(flavor = "multi_thread")]
async fn no_credentials_lists_every_source_and_unanswered_imds_is_bounded() {
    // Process environment: aws-config reads AWS_CONTAINER_* and AWS_EC2_METADATA_DISABLED
    // itself; "no credentials anywhere" must not see another test's.
    let f = fixture_with_process_env().await;
    let (dir, home) = (f.dir(), f.home());
    let secrets = f.secrets();
    // No credentials anywhere: a bounded reason and a message naming the providers.
    let (m, text) = f.read(&[], "good/terraform.tfstate", None, &secrets).await;
    assert_credentials_error(&text, "good/terraform.tfstate");
    let report = status_report(dir, &home, &[], &secrets);
    for part in [
        "no AWS credentials found",
        "environment",
        "profile default",
        "web identity",
        "container credentials",
        "EC2 instance metadata",
    ] {
        assert!(report.contains(part), "{part} missing from:\n{report}");
    }
    // IMDS that does not answer costs about a second, not the collection.
    let closed = free_port();
    let imds_closed = format!("http://127.0.0.1:{closed}");
    set_env(
        &home,
        &[
            ("AWS_EC2_METADATA_DISABLED", "false"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds_closed),
        ],
    );
    let started = Instant::now();
    let text = scrape(&m, &secrets).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_credentials_error(&text, "good/terraform.tfstate");
    set_env(&home, &[]);
}

/// A `[profile x]` of the config file; `credential_process` runs once while its credentials are fresh.
#[tokio::test(flavor = "multi_thread")]
async fn config_profile_and_credential_process_run_once() {
    // Injected environment: profiles of ~/.aws/config under the injected HOME.
    let f = fixture().await;
    let (dir, home) = (f.dir(), f.home());
    let secrets = f.secrets();
    write_profiles(&f);
    let process_count = dir.join("process-runs");
    let m = f.monitor_injected(&[], "config-profile/terraform.tfstate", Some("cfg"));
    let text = scrape(&m, &secrets).await;
    assert_up(&text, "config-profile/terraform.tfstate");

    // credential_process: run once, then cached until 5 minutes before Expiration.
    let m = f.monitor_injected(&[], "process/terraform.tfstate", Some("proc"));
    let text = scrape(&m, &secrets).await;
    assert_up(&text, "process/terraform.tfstate");
    let text = scrape(&m, &secrets).await;
    assert_up(&text, "process/terraform.tfstate");
    let runs = std::fs::read_to_string(&process_count).unwrap_or_default();
    assert_eq!(runs.lines().count(), 1, "credential_process runs: {runs}");
    status_report(dir, &home, &[], &secrets);
}

/// Web identity from the environment and from a profile, against the STS stand-in.
#[tokio::test(flavor = "multi_thread")]
async fn web_identity_from_env_and_profile() {
    // Process environment: aws-config reads AWS_ENDPOINT_URL_STS itself (the STS stand-in).
    let f = fixture_with_process_env().await;
    let (dir, home) = (f.dir(), f.home());
    let k = &f.k;
    let secrets = f.secrets();
    write_profiles(&f);
    let token_file = dir.join("web-identity-token");
    // Web identity from the environment (IRSA), against the STS stand-in.
    let calls = Arc::new(Mutex::new(Vec::new()));
    let sts_srv = sts(&k.temp, calls.clone());
    let sts_url = sts_srv.url("");
    let token_s = token_file.to_str().unwrap();
    let wi_env = [
        ("AWS_ROLE_ARN", ROLE_ARN),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_s),
        ("AWS_ENDPOINT_URL_STS", sts_url.as_str()),
    ];
    set_env(&home, &wi_env);
    // The config file's default profile has no credentials: the chain goes on.
    let m = f.monitor("web-identity/terraform.tfstate", None);
    let text = scrape(&m, &secrets).await;
    assert_up(&text, "web-identity/terraform.tfstate");
    {
        // aws-config names the session `web-identity-token-<ms>` unless
        // AWS_ROLE_SESSION_NAME is set.
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 1, "{calls:?}");
        let (role, session, token) = &calls[0];
        assert_eq!(
            (role.as_str(), token.as_str()),
            (ROLE_ARN, WEB_IDENTITY_TOKEN)
        );
        assert!(session.starts_with("web-identity-token-"), "{session}");
    }
    // Cached: the next collection does not ask STS again.
    let text = scrape(&m, &secrets).await;
    assert_up(&text, "web-identity/terraform.tfstate");
    assert_eq!(calls.lock().unwrap().len(), 1);
    status_report(dir, &home, &wi_env, &secrets);
    // A token that STS refuses: a credentials error naming the provider, no token.
    let bad_token = dir.join("bad-token");
    std::fs::write(&bad_token, "CANARY-refused-token").unwrap();
    let bad_env = [
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/other"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", bad_token.to_str().unwrap()),
        ("AWS_ENDPOINT_URL_STS", sts_url.as_str()),
    ];
    let (_m, text) = f
        .read(&bad_env, "web-identity/terraform.tfstate", None, &secrets)
        .await;
    assert_credentials_error(&text, "web-identity/terraform.tfstate");
    let mut more = secrets.to_vec();
    more.push("CANARY-refused-token");
    let report = status_report(dir, &home, &bad_env, &more);
    assert!(
        report.contains("web identity") && report.contains("InvalidIdentityToken"),
        "{report}"
    );

    // Web identity from a profile (role_arn + web_identity_token_file).
    let (_m, text) = f
        .read(
            &[("AWS_ENDPOINT_URL_STS", sts_url.as_str())],
            "web-identity-profile/terraform.tfstate",
            Some("wi"),
            &secrets,
        )
        .await;
    assert_up(&text, "web-identity-profile/terraform.tfstate");
    assert_eq!(
        calls.lock().unwrap().last().cloned(),
        Some((
            PROFILE_ROLE_ARN.to_string(),
            "from-profile".to_string(),
            WEB_IDENTITY_TOKEN.to_string()
        ))
    );
    drop(sts_srv);
    set_env(&home, &[]);
}

/// `role_arn` + `source_profile` against moto's own STS.
#[tokio::test(flavor = "multi_thread")]
async fn assume_role_from_profile_against_motos_sts() {
    // Process environment: aws-config reads AWS_ENDPOINT_URL_STS itself (moto's STS).
    let f = fixture_with_process_env().await;
    let (dir, home, endpoint) = (f.dir(), f.home(), f.endpoint.clone());
    let secrets = f.secrets();
    write_profiles(&f);
    // AssumeRole from a profile (role_arn + source_profile), against moto's own
    // STS, which checks the request's SigV4 signature with the source profile's
    // secret and hands out temporary credentials that its S3 then checks.
    let (_m, text) = f
        .read(
            &[("AWS_ENDPOINT_URL_STS", endpoint.as_str())],
            "assume-role/terraform.tfstate",
            Some("assumer"),
            &secrets,
        )
        .await;
    assert_up(&text, "assume-role/terraform.tfstate");
    // The source's secret is wrong: STS refuses the signature; a credentials error.
    let m = f.monitor("assume-role/terraform.tfstate", Some("assumer-bad"));
    let text = scrape(&m, &secrets).await;
    assert_credentials_error(&text, "assume-role/terraform.tfstate");
    let report = status_report(
        dir,
        &home,
        &[
            ("AWS_ENDPOINT_URL_STS", endpoint.as_str()),
            ("AWS_PROFILE", "assumer-bad"),
        ],
        &secrets,
    );
    // aws-config's STS error (moto's refusal) names no operation: the message
    // names the provider and the profile.
    assert!(
        report.contains("the shared files' profile") && report.contains("profile assumer-bad"),
        "{report}"
    );
    set_env(&home, &[]);
}

/// IAM Identity Center: the cached `aws sso login` token at the portal stand-in.
#[tokio::test(flavor = "multi_thread")]
async fn sso_token_exchanged_at_the_portal() {
    // Process environment: aws-config reads AWS_ENDPOINT_URL_SSO and HOME (the token
    // cache) itself.
    let f = fixture_with_process_env().await;
    let (dir, home) = (f.dir(), f.home());
    let k = &f.k;
    let secrets = f.secrets();
    write_profiles(&f);
    let aws = home.join(".aws");
    // IAM Identity Center (SSO): the token `aws sso login` cached, exchanged
    // at the portal (a stand-in handing out moto's real temporary credentials).
    const SSO_TOKEN: &str = "CANARY-sso-access-token-4d1c";
    let portal_seen = Arc::new(Mutex::new(Vec::new()));
    let portal = {
        let seen = portal_seen.clone();
        let (id, secret, token) = k.temp.clone();
        Server::start(Arc::new(move |r: &Req| {
            seen.lock().unwrap().push((
                r.path.clone(),
                r.headers.get("x-amz-sso_bearer_token").cloned(),
            ));
            if r.headers.get("x-amz-sso_bearer_token").map(String::as_str) != Some(SSO_TOKEN) {
                return resp(401, r#"{"message":"Session token not found or invalid"}"#);
            }
            let exp = (SystemTime::now() + Duration::from_secs(3600))
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis();
            resp(
                200,
                format!(
                    r#"{{"roleCredentials":{{"accessKeyId":"{id}","secretAccessKey":"{secret}","sessionToken":"{token}","expiration":{exp}}}}}"#
                ),
            )
        }))
    };
    let cache = aws.join("sso/cache");
    std::fs::create_dir_all(&cache).unwrap();
    // The file name is the SHA-1 of the session name, as the AWS CLI writes it.
    let sha = {
        let out = Command::new("sha1sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().unwrap().write_all(b"corp")?;
                c.wait_with_output()
            })
            .expect("sha1sum");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let token_file = cache.join(format!("{sha}.json"));
    std::fs::write(
        &token_file,
        format!(
            r#"{{"startUrl":"https://corp.awsapps.com/start","region":"eu-west-1","accessToken":"{SSO_TOKEN}","expiresAt":"{}"}}"#,
            expiration_in(3600)
        ),
    )
    .unwrap();
    let portal_url = portal.url("");
    set_env(&home, &[("AWS_ENDPOINT_URL_SSO", portal_url.as_str())]);
    let mut more = secrets.to_vec();
    more.push(SSO_TOKEN);
    let m = f.monitor("sso/terraform.tfstate", Some("sso"));
    let text = scrape(&m, &more).await;
    assert_up(&text, "sso/terraform.tfstate");
    {
        let seen = portal_seen.lock().unwrap();
        let (path, bearer) = seen.first().cloned().expect("the portal was asked");
        let (route, query) = path.split_once('?').unwrap_or((path.as_str(), ""));
        let mut params: Vec<&str> = query.split('&').collect();
        params.sort_unstable();
        assert_eq!(
            (route, params, bearer.as_deref()),
            (
                "/federation/credentials",
                vec!["account_id=123456789012", "role_name=ReadState"],
                Some(SSO_TOKEN)
            )
        );
    }
    // An expired token: a credentials error that says to log in again.
    std::fs::write(
        &token_file,
        format!(r#"{{"accessToken":"{SSO_TOKEN}","expiresAt":"2020-01-01T00:00:00Z"}}"#),
    )
    .unwrap();
    let report = status_report(
        dir,
        &home,
        &[
            ("AWS_ENDPOINT_URL_SSO", portal_url.as_str()),
            ("AWS_PROFILE", "sso"),
        ],
        &more,
    );
    assert!(report.contains("aws sso login"), "{report}");
    set_env(&home, &[]);
}

/// Container credentials (ECS, EKS Pod Identity).
#[tokio::test(flavor = "multi_thread")]
async fn container_credentials_with_token() {
    // Process environment: aws-config reads AWS_CONTAINER_* itself.
    let f = fixture_with_process_env().await;
    let (dir, home) = (f.dir(), f.home());
    let k = &f.k;
    let secrets = f.secrets();
    // Container credentials (ECS / EKS Pod Identity), token from a file.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let ctr = container(&k.temp, seen.clone());
    let ctr_url = ctr.url("/v1/credentials");
    let ctr_token_file = dir.join("container-token");
    std::fs::write(&ctr_token_file, CONTAINER_TOKEN).unwrap();
    let ctr_env = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", ctr_url.as_str()),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            ctr_token_file.to_str().unwrap(),
        ),
    ];
    let (_m, text) = f
        .read(&ctr_env, "container/terraform.tfstate", None, &secrets)
        .await;
    assert_up(&text, "container/terraform.tfstate");
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![Some(CONTAINER_TOKEN.to_string())]
    );
    status_report(dir, &home, &ctr_env, &secrets);
    // A wrong token (here from AWS_CONTAINER_AUTHORIZATION_TOKEN) is refused (401);
    // another endpoint instance, so that the cached credentials are not used.
    let ctr2 = container(&k.temp, seen.clone());
    let ctr2_url = ctr2.url("/v1/credentials");
    let wrong_ctr = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", ctr2_url.as_str()),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            "CANARY-wrong-container-token",
        ),
    ];
    let (_m, text) = f
        .read(&wrong_ctr, "container/terraform.tfstate", None, &secrets)
        .await;
    assert_credentials_error(&text, "container/terraform.tfstate");
    let mut more = secrets.to_vec();
    more.push("CANARY-wrong-container-token");
    let report = status_report(dir, &home, &wrong_ctr, &more);
    assert!(
        report.contains("container credentials") && report.contains("401"),
        "{report}"
    );
    drop((ctr, ctr2));
    set_env(&home, &[]);
}

/// EC2 instance metadata, IMDSv2.
#[tokio::test(flavor = "multi_thread")]
async fn imds_v2() {
    // Process environment: aws-config reads AWS_EC2_METADATA_DISABLED itself (and
    // another test's `true` in the process would turn IMDS off).
    let f = fixture_with_process_env().await;
    let (dir, home) = (f.dir(), f.home());
    let k = &f.k;
    let secrets = f.secrets();
    // EC2 instance metadata (IMDSv2): token first, then role, then credentials.
    let log = Arc::new(Mutex::new(Vec::new()));
    let md = imds(&k.temp, log.clone());
    let md_url = md.url("");
    let md_env = [
        ("AWS_EC2_METADATA_DISABLED", "false"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", md_url.as_str()),
    ];
    let (_m, text) = f
        .read(&md_env, "imds/terraform.tfstate", None, &secrets)
        .await;
    assert_up(&text, "imds/terraform.tfstate");
    assert_eq!(
        log.lock().unwrap().clone(),
        vec![
            "PUT /latest/api/token".to_string(),
            "GET /latest/meta-data/iam/security-credentials/".to_string(),
            "GET /latest/meta-data/iam/security-credentials/tf-reader-role".to_string(),
        ]
    );
    status_report(dir, &home, &md_env, &secrets);
    drop(md);

    set_env(&home, &[]);
}
