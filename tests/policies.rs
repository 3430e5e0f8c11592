//! Rego policies (issue 8): the starter library, the input contract, metrics,
//! the one-shot report, redaction, bounded and failing evaluations, caching.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use homelab_monitor::monitors::terraform::analysis::{
    analyse_with_policies, TargetMemory, TargetSources,
};
use homelab_monitor::monitors::terraform::plan::parse_plan_with_input;
use homelab_monitor::monitors::terraform::policy::{
    check_config, evaluate, evaluate_reader, evaluate_values, scope_of, LoadedPolicy,
    PolicyOutcome, PolicyResult, PolicySet, RuleKind, Scope, BATCH_BYTES, DECLARATION,
};
use homelab_monitor::monitors::terraform::source::LocalFile;
use homelab_monitor::monitors::terraform::state::parse_state_with_input;
use serde_json::{json, Value};

fn state(resources: Value) -> Value {
    json!({"version": 4, "terraform_version": "1.9.8", "serial": 3, "lineage": "l-1",
           "outputs": {}, "resources": resources})
}

fn res(rtype: &str, name: &str, attrs: Value) -> Value {
    json!({"mode": "managed", "type": rtype, "name": name,
           "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
           "instances": [{"schema_version": 0, "attributes": attrs}]})
}

fn res_p(rtype: &str, name: &str, provider: &str, attrs: Value) -> Value {
    let mut r = res(rtype, name, attrs);
    r["provider"] = json!(format!("provider[\"{provider}\"]"));
    r
}

/// Evaluate one starter policy on a state (and optional drift report).
fn run_policy(name: &str, input: Value, drift: Option<Value>) -> PolicyResult {
    let set = PolicySet::new(
        vec![format!("policies/{name}.rego")],
        repo(),
        Duration::from_secs(10),
    );
    let (policies, _) = set.refresh();
    let mut out = eval_both(&policies, "test.tfstate", input, drift, set.timeout());
    assert_eq!(out.results.len(), 1);
    let r = out.results.remove(0);
    assert!(r.ok, "{name} failed: {:?}", r.error);
    r
}

/// Evaluate as the monitor does: on the input built by the one streaming
/// read of the state (and drift report). Asserts that the input equals the
/// whole-document conversion policies were given before (`evaluate` on the
/// `serde_json` documents) and that the results are identical.
fn eval_both(
    policies: &[LoadedPolicy],
    label: &str,
    input: Value,
    drift: Option<Value>,
    timeout: Duration,
) -> PolicyOutcome {
    let before = evaluate(policies, label, input.clone(), drift.clone(), timeout);
    let drift_for_stream = drift.clone();
    let text = input.to_string();
    let (_, doc) = parse_state_with_input(input.to_string().as_bytes()).unwrap();
    let doc = doc.unwrap().unwrap();
    assert_eq!(doc, regorus::Value::from(input));
    let drift_doc = drift.map(|d| {
        let (_, doc) = parse_plan_with_input(d.to_string().as_bytes());
        let doc = doc.unwrap().unwrap();
        assert_eq!(doc, regorus::Value::from(d));
        doc
    });
    let now = evaluate_values(policies, label, doc, drift_doc, timeout);
    let strip = |o: &PolicyOutcome| -> Vec<_> {
        o.results
            .iter()
            .map(|r| (r.policy.clone(), r.ok, r.reason, r.violations.clone()))
            .collect()
    };
    assert_eq!(strip(&before), strip(&now));
    // Per-resource evaluation (the starter policies declare it) gives the
    // same results as the whole state, one resource at a time and in the
    // default batches.
    let per_resource = policies.iter().any(|p| p.scope == Scope::Resource);
    for batch in [1, BATCH_BYTES].into_iter().filter(|_| per_resource) {
        let streamed = evaluate_reader(
            policies,
            label,
            text.as_bytes(),
            drift_for_stream.clone(),
            timeout,
            batch,
        )
        .unwrap()
        .unwrap();
        assert_eq!(strip(&before), strip(&streamed), "batches of {batch} bytes");
    }
    now
}

/// The monitor's collection of one local state (no drift report) with
/// `set`'s policies: their outcome.
fn analyse_local(src: &LocalFile, mem: &mut TargetMemory, set: &PolicySet) -> Arc<PolicyOutcome> {
    let sources = TargetSources {
        state: src,
        drift: None,
        baseline: None,
    };
    analyse_with_policies(sources, mem, Some(set))
        .policy
        .unwrap()
}

fn addresses(r: &PolicyResult, rule: RuleKind) -> Vec<String> {
    let mut v: Vec<String> = r
        .violations
        .iter()
        .filter(|v| v.rule == rule)
        .map(|v| v.address.clone().unwrap_or_default())
        .collect();
    v.sort();
    v.dedup();
    v
}

// ------------------------------------------------------------ starter library

#[test]
fn required_tags() {
    let r = run_policy(
        "required_tags",
        state(json!([
            res(
                "aws_instance",
                "ok",
                json!({"tags": {"env": "prod", "team": "a"}})
            ),
            res("aws_instance", "partial", json!({"tags": {"env": "prod"}})),
            res("aws_instance", "null_tags", json!({"tags": null})),
            res("null_resource", "untaggable", json!({"id": "1"})),
        ])),
        None,
    );
    assert_eq!(
        addresses(&r, RuleKind::Deny),
        vec!["aws_instance.null_tags", "aws_instance.partial"]
    );
    let partial = r
        .violations
        .iter()
        .find(|v| v.address.as_deref() == Some("aws_instance.partial"))
        .unwrap();
    assert_eq!(partial.severity, "medium");
    assert!(partial.msg.contains("[\"team\"]"), "{}", partial.msg);
}

#[test]
fn no_open_admin_ports() {
    let sg = |name: &str, from: u16, to: u16, cidr: &str| {
        res(
            "aws_security_group",
            name,
            json!({"ingress": [{"from_port": from, "to_port": to, "protocol": "tcp", "cidr_blocks": [cidr], "ipv6_cidr_blocks": []}]}),
        )
    };
    let r = run_policy(
        "no_open_admin_ports",
        state(json!([
            sg("ssh_world", 22, 22, "0.0.0.0/0"),
            sg("range_world", 3000, 4000, "0.0.0.0/0"),
            sg("https_world", 443, 443, "0.0.0.0/0"),
            sg("ssh_lan", 22, 22, "192.168.1.0/24"),
            sg("ssh_office", 22, 22, "203.0.113.7/32"),
            res(
                "aws_security_group_rule",
                "rdp",
                json!({"type": "ingress", "from_port": 3389, "to_port": 3389, "cidr_blocks": [], "ipv6_cidr_blocks": ["::/0"]})
            ),
            res(
                "aws_security_group_rule",
                "egress",
                json!({"type": "egress", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]})
            ),
            res(
                "aws_vpc_security_group_ingress_rule",
                "pve",
                json!({"from_port": 8006, "to_port": 8006, "cidr_ipv4": "0.0.0.0/0", "cidr_ipv6": null})
            ),
        ])),
        None,
    );
    assert_eq!(
        addresses(&r, RuleKind::Deny),
        vec![
            "aws_security_group.range_world",
            "aws_security_group.ssh_world",
            "aws_security_group_rule.rdp",
            "aws_vpc_security_group_ingress_rule.pve",
        ]
    );
    assert_eq!(
        addresses(&r, RuleKind::Warn),
        vec!["aws_security_group.ssh_office"]
    );
    assert!(r
        .violations
        .iter()
        .filter(|v| v.rule == RuleKind::Deny)
        .all(|v| v.severity == "critical"));
}

#[test]
fn no_public_s3_acl() {
    let r = run_policy(
        "no_public_s3_acl",
        state(json!([
            res("aws_s3_bucket", "public", json!({"acl": "public-read"})),
            res("aws_s3_bucket", "private", json!({"acl": "private"})),
            res("aws_s3_bucket", "modern", json!({"acl": null})),
            res(
                "aws_s3_bucket_acl",
                "grant",
                json!({"acl": null, "access_control_policy": [{"grant": [{"permission": "READ", "grantee": [{"type": "Group", "uri": "http://acs.amazonaws.com/groups/global/AllUsers"}]}]}]})
            ),
            res(
                "aws_s3_bucket_public_access_block",
                "off",
                json!({"block_public_acls": false, "block_public_policy": true, "ignore_public_acls": true, "restrict_public_buckets": true})
            ),
            res(
                "aws_s3_bucket_public_access_block",
                "on",
                json!({"block_public_acls": true, "block_public_policy": true, "ignore_public_acls": true, "restrict_public_buckets": true})
            ),
        ])),
        None,
    );
    assert_eq!(
        addresses(&r, RuleKind::Deny),
        vec!["aws_s3_bucket.public", "aws_s3_bucket_acl.grant"]
    );
    assert_eq!(
        addresses(&r, RuleKind::Warn),
        vec!["aws_s3_bucket_public_access_block.off"]
    );
}

#[test]
fn encryption_at_rest() {
    let r = run_policy(
        "encryption_at_rest",
        state(json!([
            res(
                "aws_db_instance",
                "plain",
                json!({"storage_encrypted": false})
            ),
            res("aws_db_instance", "enc", json!({"storage_encrypted": true})),
            res("aws_ebs_volume", "missing", json!({"size": 10})),
            res("aws_efs_file_system", "enc", json!({"encrypted": true})),
            res(
                "aws_instance",
                "root",
                json!({"root_block_device": [{"encrypted": false}]})
            ),
            res(
                "aws_instance",
                "root_ok",
                json!({"root_block_device": [{"encrypted": true}]})
            ),
        ])),
        None,
    );
    assert_eq!(
        addresses(&r, RuleKind::Deny),
        vec![
            "aws_db_instance.plain",
            "aws_ebs_volume.missing",
            "aws_instance.root"
        ]
    );
}

#[test]
fn allowed_providers_regions() {
    let r = run_policy(
        "allowed_providers_regions",
        state(json!([
            res(
                "aws_instance",
                "eu",
                json!({"availability_zone": "eu-west-1a"})
            ),
            res(
                "aws_instance",
                "us",
                json!({"availability_zone": "us-east-1b"})
            ),
            res(
                "aws_s3_bucket",
                "arn_us",
                json!({"arn": "arn:aws:s3:us-west-2:123:bucket/x"})
            ),
            res(
                "aws_iam_role",
                "global",
                json!({"arn": "arn:aws:iam::123:role/x"})
            ),
            res("aws_vpc", "region_attr", json!({"region": "ap-south-1"})),
            res_p(
                "random_pet",
                "ok",
                "registry.terraform.io/hashicorp/random",
                json!({})
            ),
            // Terraform's built-in provider (terraform_data, terraform_remote_state).
            res_p(
                "terraform_data",
                "builtin",
                "terraform.io/builtin/terraform",
                json!({})
            ),
            res_p(
                "shady_thing",
                "x",
                "registry.terraform.io/someone/shady",
                json!({})
            ),
        ])),
        None,
    );
    assert_eq!(
        addresses(&r, RuleKind::Deny),
        vec![
            "aws_instance.us",
            "aws_s3_bucket.arn_us",
            "aws_vpc.region_attr",
            "shady_thing.x"
        ]
    );
}

#[test]
fn proxmox_backup() {
    let pve = "registry.terraform.io/bpg/proxmox";
    let tel = "registry.terraform.io/telmate/proxmox";
    let r = run_policy(
        "proxmox_backup",
        state(json!([
            res_p(
                "proxmox_virtual_environment_vm",
                "tagged",
                pve,
                json!({"tags": ["backup", "web"]})
            ),
            res_p(
                "proxmox_virtual_environment_vm",
                "scheduled",
                pve,
                json!({"tags": ["backup-daily"]})
            ),
            res_p(
                "proxmox_virtual_environment_vm",
                "untagged",
                pve,
                json!({"tags": ["web"]})
            ),
            res_p(
                "proxmox_virtual_environment_container",
                "null_tags",
                pve,
                json!({"tags": null})
            ),
            res_p(
                "proxmox_vm_qemu",
                "telmate_ok",
                tel,
                json!({"tags": "web;backup"})
            ),
            res_p(
                "proxmox_vm_qemu",
                "telmate_bad",
                tel,
                json!({"tags": "web"})
            ),
            res_p("proxmox_lxc", "exempt", tel, json!({"tags": "no-backup"})),
        ])),
        None,
    );
    assert_eq!(
        addresses(&r, RuleKind::Deny),
        vec![
            "proxmox_virtual_environment_container.null_tags",
            "proxmox_virtual_environment_vm.untagged",
            "proxmox_vm_qemu.telmate_bad"
        ]
    );
    assert_eq!(addresses(&r, RuleKind::Warn), vec!["proxmox_lxc.exempt"]);
}

#[test]
fn addresses_include_modules_data_and_index_keys() {
    let mut r1 = res("aws_instance", "web", json!({"tags": {}}));
    r1["module"] = json!("module.net[\"a\"]");
    r1["instances"] = json!([{"index_key": 0, "attributes": {"tags": {}}}, {"index_key": "k", "attributes": {"tags": {}}}, {"index_key": "${x}", "attributes": {"tags": {}}}]);
    let r = run_policy("required_tags", state(json!([r1])), None);
    assert_eq!(
        addresses(&r, RuleKind::Deny),
        vec![
            // As Terraform prints it (pasteable into -replace=).
            "module.net[\"a\"].aws_instance.web[\"$${x}\"]",
            "module.net[\"a\"].aws_instance.web[\"k\"]",
            "module.net[\"a\"].aws_instance.web[0]"
        ]
    );
}

// ------------------------------------------------------ the input contract

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn conftest_conventions_v0_syntax_strings_and_drift_at_data_drift() {
    let dir = tempfile::tempdir().unwrap();
    // conftest's classic v0 syntax, string messages, `violation`, and data.drift.
    write(
        dir.path(),
        "p/classic.rego",
        r#"package main

deny[msg] {
  input.version != 4
  msg := "not a v4 state"
}

warn[msg] {
  some i
  input.resources[i].type == "aws_instance"
  msg := sprintf("instance %s", [input.resources[i].name])
}

deny[msg] {
  c := data.drift.resource_drift[_]
  msg := sprintf("%s drifted", [c.address])
}
"#,
    );
    let set = PolicySet::new(vec!["p/".into()], dir.path().into(), Duration::from_secs(5));
    let (policies, _) = set.refresh();
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].name, "classic");
    let drift = json!({"format_version": "1.2", "resource_drift": [{"address": "aws_instance.web", "change": {"actions": ["update"]}}]});
    let out = eval_both(
        &policies,
        "s.tfstate",
        state(json!([res("aws_instance", "web", json!({}))])),
        Some(drift),
        set.timeout(),
    );
    let r = &out.results[0];
    assert!(r.ok, "{:?}", r.error);
    let msgs: Vec<(&str, RuleKind)> = r
        .violations
        .iter()
        .map(|v| (v.msg.as_str(), v.rule))
        .collect();
    assert!(
        msgs.contains(&("aws_instance.web drifted", RuleKind::Deny)),
        "{msgs:?}"
    );
    assert!(msgs.contains(&("instance web", RuleKind::Warn)), "{msgs:?}");
    assert_eq!(r.violations.len(), 2);
    // Without a drift report `data.drift` is undefined: the rule is silent.
    let out = eval_both(
        &policies,
        "s.tfstate",
        state(json!([])),
        None,
        set.timeout(),
    );
    assert!(out.results[0].ok && out.results[0].violations.is_empty());
}

#[test]
fn cidr_functions() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "cidr.rego",
        r#"package cidr
import rego.v1
deny contains "intersects" if homelab.cidr_intersects("10.0.0.0/8", "10.1.2.0/24")
deny contains "disjoint" if homelab.cidr_intersects("10.0.0.0/8", "192.168.0.0/16")
deny contains "public" if homelab.cidr_is_public("0.0.0.0/0")
deny contains "private" if homelab.cidr_is_public("192.168.1.0/24")
deny contains "contains" if net.cidr_contains("10.0.0.0/8", "10.1.0.0/16")
deny contains "all_ports" if homelab.port_in_range(22, 0, 0)
"#,
    );
    let set = PolicySet::new(
        vec!["cidr.rego".into()],
        dir.path().into(),
        Duration::from_secs(5),
    );
    let out = eval_both(&set.refresh().0, "s", state(json!([])), None, set.timeout());
    let mut msgs: Vec<String> = out.results[0]
        .violations
        .iter()
        .map(|v| v.msg.clone())
        .collect();
    msgs.sort();
    assert_eq!(
        msgs,
        vec!["all_ports", "contains", "intersects", "public"],
        "{:?}",
        out.results[0].error
    );
}

// ------------------------------------------------------- bad policies

#[test]
fn a_slow_policy_is_stopped_and_others_still_run() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p/slow.rego",
        "package slow\nimport rego.v1\ndeny contains \"never\" if {\n  some a in numbers.range(1, 30000)\n  some b in numbers.range(1, 30000)\n  a * b == -1\n}\n",
    );
    write(
        dir.path(),
        "p/fine.rego",
        "package fine\nimport rego.v1\ndeny contains \"x\" if input.version == 4\n",
    );
    let set = PolicySet::new(
        vec!["p".into()],
        dir.path().into(),
        Duration::from_millis(500),
    );
    let started = std::time::Instant::now();
    let out = eval_both(&set.refresh().0, "s", state(json!([])), None, set.timeout());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let slow = out.results.iter().find(|r| r.policy == "slow").unwrap();
    assert!(!slow.ok);
    assert_eq!(slow.reason, Some("timeout"), "{:?}", slow.error);
    assert!(
        slow.error.as_deref().unwrap().contains("slow"),
        "{:?}",
        slow.error
    );
    let fine = out.results.iter().find(|r| r.policy == "fine").unwrap();
    assert!(fine.ok && fine.violations.len() == 1);
}

/// Conflicting values of a complete rule: an error on states with serial > 1 only.
const FLAKY: &str = "package flaky\nimport rego.v1\nlevel := \"a\" if input.serial > 0\nlevel := \"b\" if input.serial > 1\ndeny contains level if true\n";

#[test]
fn a_policy_error_fails_that_state_only() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "flaky.rego", FLAKY);
    let set = PolicySet::new(
        vec!["flaky.rego".into()],
        dir.path().into(),
        Duration::from_secs(5),
    );
    let p = set.refresh().0;
    let mut one = state(json!([]));
    one["serial"] = json!(1);
    let good = eval_both(&p, "one", one, None, set.timeout());
    assert!(good.results[0].ok, "{:?}", good.results[0].error);
    let bad = eval_both(&p, "three", state(json!([])), None, set.timeout());
    assert!(!bad.results[0].ok);
    assert_eq!(bad.results[0].reason, Some("eval"));
}

#[test]
fn evaluation_is_cached_by_state_and_policy_stamps() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.rego",
        "package p\nimport rego.v1\ndeny contains \"x\" if input.version == 4\n",
    );
    let st = write(dir.path(), "a.tfstate", &state(json!([])).to_string());
    let src = LocalFile {
        label: "a.tfstate".into(),
        path: st.clone(),
        max_size: 1 << 20,
    };
    let set = PolicySet::new(
        vec!["p.rego".into()],
        dir.path().into(),
        Duration::from_secs(5),
    );
    let mut mem = TargetMemory::default();
    let mut run = || analyse_local(&src, &mut mem, &set);
    let a = run();
    let b = run();
    assert!(
        Arc::ptr_eq(&a, &b),
        "unchanged files must not be re-evaluated"
    );
    // A policy change re-evaluates.
    std::thread::sleep(Duration::from_millis(20));
    write(dir.path(), "p.rego", "package p\nimport rego.v1\ndeny contains \"y\" if input.version == 4\nwarn contains \"z\" if true\n");
    let c = run();
    assert!(!Arc::ptr_eq(&b, &c));
    assert_eq!(c.violations(), 2);
    // A state change re-evaluates.
    std::fs::write(
        &st,
        state(json!([res("aws_instance", "x", json!({}))])).to_string() + "\n",
    )
    .unwrap();
    let d = run();
    assert!(!Arc::ptr_eq(&c, &d));
}

// ------------------------------------------------ the binary, end to end

const LEAKY: &str = r#"package leaky
import rego.v1
deny contains v if {
  print("leaky print:", input.resources[0].instances[0].attributes.password)
  some r in input.resources
  some i in r.instances
  v := {"msg": sprintf("password=%s db=%s out=%s", [i.attributes.password, i.attributes.db.conn, input.outputs.admin.value]),
        "address": sprintf("%s/%s", [homelab.address(r, i), i.attributes.password]), "severity": i.attributes.password}
}
"#;

/// LEAKY, evaluated per resource: prints and returns secret values.
const LEAKY_PER_RESOURCE: &str = r#"# policy-scope: resource
package leaky_per_resource
import rego.v1
deny contains v if {
  some r in input.resources
  print("leaky-per-resource print:", r.instances[0].attributes.password, r.instances[0].attributes.db.conn)
  some i in r.instances
  v := {"msg": sprintf("password=%s db=%s", [i.attributes.password, i.attributes.db.conn]),
        "address": sprintf("%s/%s", [homelab.address(r, i), i.attributes.db.conn]), "severity": i.attributes.password}
}
"#;

fn canary_state(serial: u64) -> String {
    json!({"version": 4, "terraform_version": "1.9.8", "serial": serial, "lineage": "l-1",
        "outputs": {"admin": {"value": "CANARY-output-value", "type": "string", "sensitive": true}},
        "resources": [{"mode": "managed", "type": "aws_instance", "name": "web",
            "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
            "instances": [{"schema_version": 1,
                "attributes": {"id": "i-1", "password": "CANARY-password-value", "db": {"conn": "CANARY-nested-value"},
                    "tags": {"env": "prod"}, "availability_zone": "eu-west-1a"},
                "sensitive_attributes": [[{"type": "get_attr", "value": "db"}, {"type": "get_attr", "value": "conn"}]]}]}]})
    .to_string()
}

fn setup_e2e(dir: &Path, extra_policies: &[(&str, &str)]) {
    write(dir, "states/a.tfstate", &canary_state(1));
    write(dir, "states/b.tfstate", &canary_state(3));
    common::copy_dir(&repo().join("policies"), &dir.join("policies"));
    write(dir, "extra/leaky.rego", LEAKY);
    write(dir, "extra/leaky_per_resource.rego", LEAKY_PER_RESOURCE);
    for (n, t) in extra_policies {
        write(dir, &format!("extra/{n}"), t);
    }
    write(
        dir,
        "monitoring-config.yaml",
        "custom_monitors:\n  terraform_state:\n    state_dirs: [states]\n    policies: [policies/, extra/]\n    policy_timeout: 2s\n",
    );
}

#[test]
fn metrics_report_and_logs_with_redaction_and_isolation() {
    let dir = tempfile::tempdir().unwrap();
    setup_e2e(dir.path(), &[("flaky.rego", FLAKY)]);
    let mut e = Exporter::start(
        dir.path(),
        &["--config", "monitoring-config.yaml", "--log.level", "debug"],
    );
    e.wait_ready();
    let m = e.metrics();
    let v = |s: &str| series(&m, s);
    assert_eq!(
        v("terraform_state_policy_violations{state_file=\"states/a.tfstate\",policy=\"required_tags\",severity=\"medium\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        v("terraform_state_policy_violations{state_file=\"states/a.tfstate\",policy=\"required_tags\",severity=\"critical\"}"),
        Some(0.0)
    );
    assert_eq!(
        v("terraform_state_policy_evaluation_success{state_file=\"states/a.tfstate\",policy=\"required_tags\"}"),
        Some(1.0)
    );
    // flaky errors on b (serial 3) only; a still evaluates.
    assert_eq!(
        v("terraform_state_policy_evaluation_success{state_file=\"states/a.tfstate\",policy=\"flaky\"}"),
        Some(1.0)
    );
    assert_eq!(
        v("terraform_state_policy_evaluation_success{state_file=\"states/b.tfstate\",policy=\"flaky\"}"),
        Some(0.0)
    );
    assert_eq!(
        v("terraform_state_policy_evaluation_success{state_file=\"states/b.tfstate\",policy=\"required_tags\"}"),
        Some(1.0)
    );
    // leaky's severity is a secret: it falls back to the bounded default.
    assert_eq!(
        v("terraform_state_policy_violations{state_file=\"states/a.tfstate\",policy=\"leaky\",severity=\"high\"}"),
        Some(1.0)
    );
    assert_eq!(
        v("terraform_state_policy_violations{state_file=\"states/a.tfstate\",policy=\"leaky_per_resource\",severity=\"high\"}"),
        Some(1.0),
        "{m}"
    );
    assert!(!m.contains("CANARY"), "a value leaked into /metrics");
    e.terminate();
    let logs = e.logs();
    assert!(logs.contains("flaky"), "{logs}");
    // print() output is logged at debug level, redacted.
    assert!(logs.contains("leaky print: (redacted)"), "{logs}");
    assert!(
        logs.contains("leaky-per-resource print: (redacted) (redacted)"),
        "{logs}"
    );
    assert!(
        !logs.contains("CANARY"),
        "a value leaked into the logs: {logs}"
    );

    // The one-shot report: violations with addresses, exit 2 for deny, redacted.
    let cfg = "custom_monitors:\n  terraform_state:\n    state_files: [states/a.tfstate]\n    policies: [policies/, extra/leaky.rego]\n";
    write(dir.path(), "one.yaml", cfg);
    for format in ["table", "json"] {
        let (code, out, err) = run(
            dir.path(),
            &[
                "--config",
                "one.yaml",
                "--state-file",
                "states/a.tfstate",
                "--format",
                format,
            ],
        );
        assert_eq!(code, 2, "{out}{err}");
        assert!(out.contains("aws_instance.web"), "{out}");
        assert!(out.contains("required_tags"), "{out}");
        assert!(out.contains("(redacted)"), "{out}");
        assert!(
            !out.contains("CANARY") && !err.contains("CANARY"),
            "a value leaked: {out}{err}"
        );
    }
}

#[test]
fn only_warnings_exit_0_and_status_shows_policies() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "s.tfstate",
        &state(json!([res("aws_instance", "x", json!({}))])).to_string(),
    );
    write(
        dir.path(),
        "w.rego",
        "package w\nimport rego.v1\nwarn contains \"just a warning\" if true\n",
    );
    write(
        dir.path(),
        "c.yaml",
        "custom_monitors:\n  terraform_state:\n    state_files: [s.tfstate]\n    policies: [w.rego]\n",
    );
    let (code, out, err) = run(
        dir.path(),
        &["--config", "c.yaml", "--state-file", "s.tfstate"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("just a warning"), "{out}");
}

#[test]
fn a_policy_that_does_not_parse_is_a_config_error_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "s.tfstate", &state(json!([])).to_string());
    write(
        dir.path(),
        "p/broken.rego",
        "package broken\nimport rego.v1\n\ndeny contains msg if {\n  msg := \n}\n",
    );
    write(
        dir.path(),
        "c.yaml",
        "custom_monitors:\n  terraform_state:\n    state_files: [s.tfstate]\n    policies: [p/]\n",
    );
    let (code, out, err) = run(dir.path(), &["--config", "c.yaml", "--status"]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("p/broken.rego line"), "{err}");
    assert!(
        err.contains("custom_monitors.terraform_state.policies"),
        "{err}"
    );
    // A missing policy file too.
    write(
        dir.path(),
        "c.yaml",
        "custom_monitors:\n  terraform_state:\n    state_files: [s.tfstate]\n    policies: [nope.rego]\n",
    );
    let (code, _, err) = run(dir.path(), &["--config", "c.yaml", "--status"]);
    assert_ne!(code, 0);
    assert!(err.contains("nope.rego"), "{err}");
}

/// The shipped starter library parses and every policy is clean on the example states.
#[test]
fn starter_library_loads() {
    let set = PolicySet::new(vec!["policies/".into()], repo(), Duration::from_secs(10));
    let (p, _) = set.refresh();
    let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "allowed_providers_regions",
            "encryption_at_rest",
            "no_open_admin_ports",
            "no_public_s3_acl",
            "proxmox_backup",
            "required_tags"
        ]
    );
    let out = eval_both(&p, "empty", state(json!([])), None, set.timeout());
    assert!(
        out.results.iter().all(|r| r.ok && r.violations.is_empty()),
        "{out:?}"
    );
}

// ------------------------------------------- per-resource evaluation (issue 21)

/// The starter library with its `# policy-scope: resource` lines removed:
/// the same policies evaluated on the whole state.
fn whole_state_copy(dir: &Path) -> PathBuf {
    let to = dir.join("whole");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(repo().join("policies")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rego") {
            let text = std::fs::read_to_string(&p).unwrap();
            let text: String = text
                .lines()
                .filter(|l| l.trim() != "# policy-scope: resource")
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(to.join(p.file_name().unwrap()), text).unwrap();
        }
    }
    to
}

#[test]
fn the_starter_policies_are_all_per_resource() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) =
        PolicySet::new(vec!["policies/".into()], repo(), Duration::from_secs(10)).refresh();
    assert_eq!(p.len(), 6);
    assert!(p.iter().all(|p| p.scope == Scope::Resource), "{p:?}");
    let whole = whole_state_copy(dir.path());
    let (w, _) = PolicySet::new(
        vec!["whole/".into()],
        dir.path().into(),
        Duration::from_secs(10),
    )
    .refresh();
    assert!(
        w.iter()
            .all(|p| p.scope == Scope::State && !p.name.is_empty()),
        "{w:?}"
    );
    assert!(whole.join("required_tags.rego").is_file());
}

/// A state written by the real terraform: the same violations per resource
/// (one at a time, and in batches) as on the whole state.
#[test]
fn real_terraform_state_gives_the_same_violations_per_resource() {
    let Some(bin) = common::remote::which("terraform") else {
        println!("SKIP: terraform is not installed (scripts/test.sh installs it: scripts/install-terraform.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "tf/main.tf",
        r#"
resource "terraform_data" "web" {
  count = 3
  input = { env = count.index == 1 ? "dev" : "prod", tags = { team = "a", name = "web-${count.index}" } }
}
resource "terraform_data" "db" {
  for_each = toset(["eu", "us"])
  input    = { env = each.key == "us" ? "test" : "prod", note = "quote \" and <html> & ✓" }
}
module "m" {
  source = "./m"
}
"#,
    );
    write(
        dir.path(),
        "tf/m/main.tf",
        "resource \"terraform_data\" \"inner\" {\n  input = { env = \"staging\" }\n}\n",
    );
    let tf = |args: &[&str]| {
        let out = std::process::Command::new(&bin)
            .args(args)
            .current_dir(dir.path().join("tf"))
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_CLI_CONFIG_FILE", "/dev/null")
            .env_remove("TF_LOG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "terraform {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    tf(&["init", "-input=false", "-no-color"]);
    tf(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    let text = std::fs::read_to_string(dir.path().join("tf/terraform.tfstate")).unwrap();
    let input: Value = serde_json::from_str(&text).unwrap();
    // A policy of this test, on what terraform_data holds, beside the starters.
    write(
        dir.path(),
        "p/env.rego",
        "# policy-scope: resource\npackage env\nimport rego.v1\n\
         deny contains v if {\n  some r in input.resources\n  some i in r.instances\n  i.attributes.input.value.env != \"prod\"\n\
           addr := homelab.address(r, i)\n  v := {\"msg\": sprintf(\"%s is %s\", [addr, i.attributes.input.value.env]), \"address\": addr}\n}\n\
         warn contains \"some resource is not in prod\" if {\n  some r in input.resources\n  some i in r.instances\n  i.attributes.input.value.env != \"prod\"\n}\n",
    );
    common::copy_dir(&repo().join("policies"), &dir.path().join("p"));
    let (p, _) = PolicySet::new(
        vec!["p/".into()],
        dir.path().into(),
        Duration::from_secs(10),
    )
    .refresh();
    assert_eq!(p.len(), 7);
    assert!(p.iter().all(|p| p.scope == Scope::Resource));
    // eval_both: whole document == streamed input, whole == per resource.
    let out = eval_both(&p, "real.tfstate", input, None, Duration::from_secs(10));
    let env = out.results.iter().find(|r| r.policy == "env").unwrap();
    assert_eq!(
        addresses(env, RuleKind::Deny),
        vec![
            "module.m.terraform_data.inner",
            "terraform_data.db[\"us\"]",
            "terraform_data.web[1]"
        ],
        "{env:?}"
    );
    // The boolean-like warn is one violation, not one per resource.
    assert_eq!(
        env.violations
            .iter()
            .filter(|v| v.rule == RuleKind::Warn)
            .count(),
        1
    );
    assert!(out.results.iter().all(|r| r.ok), "{out:?}");
}

/// On a state larger than policy_max_input_size, per-resource policies are
/// evaluated (same violations as on the whole state) while the same policies
/// evaluated whole-state fail with reason too_large.
#[test]
fn per_resource_policies_are_not_bounded_by_the_whole_state_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(dir.path().join("aws.tfstate")).unwrap());
    common::gen::write_aws_state(&mut f, 1500, "l-aws", 1).unwrap();
    drop(f);
    let size = std::fs::metadata(dir.path().join("aws.tfstate"))
        .unwrap()
        .len();
    assert!(size > 3 * BATCH_BYTES as u64, "{size}");
    whole_state_copy(dir.path());
    common::copy_dir(&repo().join("policies"), &dir.path().join("per"));
    let src = LocalFile {
        label: "aws.tfstate".into(),
        path: dir.path().join("aws.tfstate"),
        max_size: 1 << 30,
    };
    let run = |folder: &str| {
        let set = PolicySet::new(
            vec![folder.into()],
            dir.path().into(),
            Duration::from_secs(60),
        )
        .with_max_input(1 << 20);
        analyse_local(&src, &mut TargetMemory::default(), &set)
    };
    let whole = run("whole/");
    assert_eq!(whole.results.len(), 6);
    assert!(
        whole
            .results
            .iter()
            .all(|r| !r.ok && r.reason == Some("too_large")),
        "{whole:?}"
    );
    let per = run("per/");
    assert!(per.results.iter().all(|r| r.ok), "{per:?}");
    // Every instance lacks the `team` tag: one required_tags deny each.
    let tags = per
        .results
        .iter()
        .find(|r| r.policy == "required_tags")
        .unwrap();
    assert_eq!(tags.denies(), 1500);
    // The same violations as the whole state evaluated without a bound.
    let (p, _) = PolicySet::new(
        vec!["per/".into()],
        dir.path().into(),
        Duration::from_secs(60),
    )
    .refresh();
    let input: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("aws.tfstate")).unwrap()).unwrap();
    let reference = evaluate(&p, "aws.tfstate", input, None, Duration::from_secs(60));
    let strip = |o: &PolicyOutcome| -> Vec<_> {
        o.results
            .iter()
            .map(|r| (r.policy.clone(), r.ok, r.violations.clone()))
            .collect()
    };
    assert_eq!(strip(&reference), strip(&per));
    // No attribute value in what leaves: the generator's canary strings.
    let text = format!("{per:?}");
    assert!(!text.contains("Q0FOQVJZ"), "private leaked");
}

#[test]
fn a_slow_per_resource_policy_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p/slow.rego",
        "# policy-scope: resource\npackage slow\nimport rego.v1\ndeny contains \"never\" if {\n  some r in input.resources\n  some a in numbers.range(1, 30000)\n  some b in numbers.range(1, 30000)\n  a * b == -1\n}\n",
    );
    let set = PolicySet::new(
        vec!["p".into()],
        dir.path().into(),
        Duration::from_millis(300),
    );
    let (p, _) = set.refresh();
    assert_eq!(p[0].scope, Scope::Resource);
    let input = state(json!([
        res("aws_instance", "a", json!({})),
        res("aws_instance", "b", json!({}))
    ]));
    let out = evaluate_reader(
        &p,
        "s",
        input.to_string().as_bytes(),
        None,
        set.timeout(),
        1,
    )
    .unwrap()
    .unwrap();
    assert!(!out.results[0].ok);
    assert_eq!(
        out.results[0].reason,
        Some("timeout"),
        "{:?}",
        out.results[0].error
    );
}

#[test]
fn a_declared_per_resource_policy_reading_the_whole_state_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "s.tfstate", &state(json!([])).to_string());
    write(
        dir.path(),
        "p/count.rego",
        "# policy-scope: resource\npackage count\nimport rego.v1\n\ndeny contains \"too many\" if count(input.resources) > 100\n",
    );
    write(
        dir.path(),
        "c.yaml",
        "custom_monitors:\n  terraform_state:\n    state_files: [s.tfstate]\n    policies: [p/]\n",
    );
    let (code, out, err) = run(dir.path(), &["--config", "c.yaml", "--status"]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("p/count.rego"), "{err}");
    assert!(err.contains("line 5"), "{err}");
    assert!(err.contains("input.resources as a whole"), "{err}");
}

// ------------------- per-resource policies must not aggregate (issue 21)

/// A declared policy's source: the declaration, a package `p`, Rego v1.
fn declared(body: &str) -> String {
    format!("# policy-scope: resource\npackage p\nimport rego.v1\n{body}\n")
}

/// Forms that compute across resources: each is refused at load with its
/// line (the first problem's), the remedy, and what the problem is.
#[test]
fn declared_per_resource_policies_that_aggregate_are_refused_with_the_line() {
    let untagged = "untagged contains r.name if {\n  some r in input.resources\n  not r.tags\n}\n";
    let cases: &[(&str, u32, &str)] = &[
        // A threshold over a set rule built from the resources.
        (
            &format!("{untagged}deny contains \"too many\" if count(untagged) > 10"),
            8,
            "uses the rule `untagged` (computed from input.resources) as a whole in `count(untagged)`",
        ),
        // The same through the package path.
        (
            &format!("{untagged}deny contains \"too many\" if count(data.p.untagged) > 10"),
            8,
            "as a whole in `count(data.p.untagged)`",
        ),
        // count / sum / max over comprehensions.
        (
            "deny contains \"many\" if {\n  n := count([r | some r in input.resources; r.mode == \"managed\"])\n  n > 10\n}",
            5,
            "iterates input.resources inside a comprehension",
        ),
        (
            "deny contains \"big\" if {\n  sum({k: count(r.instances) | some r in input.resources; k := r.name}) > 100\n}",
            5,
            "inside a comprehension",
        ),
        (
            "sizes contains count(r.instances) if some r in input.resources\n\ndeny contains \"big\" if max(sizes) > 3",
            6,
            "as a whole in `max(sizes)`",
        ),
        (
            &format!("{untagged}deny contains x if x := concat(\", \", sort(untagged))"),
            8,
            "as a whole in `sort(untagged)`",
        ),
        (
            "names contains r.name if some r in input.resources\n\ndeny contains x if x := json.marshal(names)",
            6,
            "as a whole in `json.marshal(names)`",
        ),
        // every, over the resources or a set rule.
        (
            "deny contains \"unencrypted\" if {\n  every r in input.resources { not r.encrypted }\n}",
            5,
            "uses input.resources inside `every`",
        ),
        (
            "deny contains \"unencrypted\" if {\n  not every_encrypted\n}\n\nevery_encrypted if every r in input.resources { r.encrypted }",
            5,
            "negates the rule `every_encrypted` (computed from input.resources) with `not`",
        ),
        (
            &format!("{untagged}deny contains \"x\" if {{\n  every n in untagged {{ n != \"\" }}\n}}"),
            9,
            "uses the rule `untagged` (computed from input.resources) inside `every`",
        ),
        // A negation of a rule that ranges over the resources.
        (
            "any_encrypted if {\n  some r in input.resources\n  r.encrypted\n}\n\ndeny contains \"none encrypted\" if not any_encrypted",
            4,
            "defines `any_encrypted` as one value computed from input.resources",
        ),
        (
            "encrypted contains r.name if {\n  some r in input.resources\n  r.encrypted\n}\n\ndeny contains n if {\n  some r in input.resources\n  n := r.name\n  not n in encrypted\n}",
            12,
            "negates the rule `encrypted`",
        ),
        (
            "deny contains \"none public\" if {\n  not input.resources[_].public\n}",
            5,
            "iterates input.resources under `not`",
        ),
        // One value, a function, an object from the resources.
        (
            "n := count(input.resources)\n\ndeny contains \"many\" if n > 10",
            4,
            "defines `n` as one value computed from input.resources",
        ),
        (
            "exists(t) if {\n  some r in input.resources\n  r.type == t\n}\n\ndeny contains \"no vpc\" if not exists(\"aws_vpc\")",
            4,
            "defines the function `exists` from input.resources",
        ),
        (
            "by_name[r.name] := r if some r in input.resources\n\ndeny contains n if some n, _ in by_name",
            4,
            "defines the object rule `by_name`",
        ),
        // A join of two resources.
        (
            "deny contains a.name if {\n  some a in input.resources\n  some b in input.resources\n  a.name == b.name\n  a != b\n}",
            6,
            "a join of two resources",
        ),
        (
            &format!("{untagged}deny contains n if {{\n  some n in untagged\n  some r in input.resources\n  r.name == n\n}}"),
            10,
            "a join of two resources",
        ),
        // An alias of the input.
        (
            "import input.resources as rs\n\ndeny contains r.name if some r in rs",
            4,
            "has `import input.resources as rs`",
        ),
    ];
    for (body, line, what) in cases {
        let src = declared(body);
        let e = scope_of("p/agg.rego", &src).expect_err(body);
        let text = e.to_string();
        assert!(
            text.starts_with("policy p/agg.rego: declared `# policy-scope: resource`, but line "),
            "{body}: {text}"
        );
        assert!(
            text.contains(&format!("but line {line} ")),
            "{body}: expected line {line}: {text}"
        );
        assert!(text.contains(what), "{body}: expected {what:?}: {text}");
        assert!(
            text.contains("remove the `# policy-scope: resource` line to evaluate this policy on the whole state"),
            "{text}"
        );
        // Without the declaration the same policy is a whole-state policy.
        let whole = src.replace("# policy-scope: resource\n", "");
        assert_eq!(
            scope_of("p/agg.rego", &whole).ok(),
            Some(Scope::State),
            "{body}"
        );
    }
    // Rego v0 is checked the same way.
    let v0 = "# policy-scope: resource\npackage p\n\ndeny[msg] {\n  count(input.resources) > 3\n  msg := \"many\"\n}\n";
    let text = scope_of("p/v0.rego", v0).unwrap_err().to_string();
    assert!(
        text.contains("but line 5 uses input.resources as a whole"),
        "{text}"
    );
}

/// What is provably per-resource is accepted: aggregates over ONE
/// resource's attributes, set rules iterated element by element, pure
/// helpers, negations and `every` on one resource, Rego v0.
#[test]
fn declared_per_resource_policies_may_aggregate_within_one_resource() {
    let ok = [
        "deny contains r.name if {\n  some r in input.resources\n  count(r.instances) > 1\n}",
        "deny contains r.name if {\n  r := input.resources[_]\n  count({k | some k, _ in r.instances[0].attributes.tags}) < 2\n}",
        "deny contains r.name if {\n  some r in input.resources\n  every i in r.instances { i.attributes.encrypted == false }\n}",
        "deny contains r.name if {\n  some r in input.resources\n  not encrypted(r)\n}\n\nencrypted(r) if r.instances[_].attributes.encrypted",
        "bad contains r.name if {\n  some r in input.resources\n  not r.tags\n}\n\ndeny contains n if some n in bad\n\nwarn contains msg if {\n  n := bad[_]\n  msg := sprintf(\"%s: %d\", [n, count(n)])\n}",
        "allowed := {\"a\", \"b\"}\n\ndeny contains r.type if {\n  some r in input.resources\n  not r.type in allowed\n  count(allowed) > 1\n}",
        "deny contains x if {\n  some r in input.resources\n  x := data.p.allowed[r.type]\n}",
    ];
    for body in ok {
        assert_eq!(
            scope_of("p/ok.rego", &declared(body)).map_err(|e| e.to_string()),
            Ok(Scope::Resource),
            "{body}"
        );
    }
    let v0 = "# policy-scope: resource\npackage p\n\ndeny[msg] {\n  r := input.resources[_]\n  count(r.instances) > 1\n  msg := r.name\n}\n";
    assert_eq!(scope_of("p/v0.rego", v0).ok(), Some(Scope::Resource));
}

/// Why the check exists: a threshold over a set of resources, evaluated per
/// batch, misses what the whole state shows (a false clean). Not declared,
/// the same policy keeps working on the whole state; declared, it is refused.
#[test]
fn an_aggregating_policy_per_batch_would_be_a_false_clean() {
    let dir = tempfile::tempdir().unwrap();
    let policy = "package agg\nimport rego.v1\n\n\
        untagged contains r.name if {\n  some r in input.resources\n  some i in r.instances\n  not i.attributes.tags.team\n}\n\n\
        deny contains msg if {\n  count(untagged) > 10\n  msg := sprintf(\"%d resources have no team tag\", [count(untagged)])\n}\n";
    write(dir.path(), "whole/agg.rego", policy);
    write(
        dir.path(),
        "declared/agg.rego",
        &format!("{}\n{policy}", DECLARATION),
    );
    // 12 untagged resources of ~200 KB each: 3 batches of about 5.
    let pad = "x".repeat(200_000);
    let resources: Vec<Value> = (0..12)
        .map(|n| {
            res(
                "aws_instance",
                &format!("i{n}"),
                json!({"user_data": pad, "tags": {}}),
            )
        })
        .collect();
    let input = state(Value::Array(resources));
    assert!(input.to_string().len() > 2 * BATCH_BYTES);
    let (p, _) = PolicySet::new(
        vec!["whole/".into()],
        dir.path().into(),
        Duration::from_secs(10),
    )
    .refresh();
    assert_eq!(p[0].scope, Scope::State);
    let whole = evaluate(&p, "s", input.clone(), None, Duration::from_secs(10));
    assert!(whole.results[0].ok, "{whole:?}");
    assert_eq!(
        whole.results[0]
            .violations
            .iter()
            .map(|v| v.msg.as_str())
            .collect::<Vec<_>>(),
        vec!["12 resources have no team tag"]
    );
    // The same policy given the resources a batch at a time (what the
    // declaration would do if it were accepted): no batch has more than 10.
    let mut forced = p.clone();
    forced[0].scope = Scope::Resource;
    let batched = evaluate_reader(
        &forced,
        "s",
        input.to_string().as_bytes(),
        None,
        Duration::from_secs(10),
        BATCH_BYTES,
    )
    .unwrap()
    .unwrap();
    assert!(batched.results[0].ok, "{batched:?}");
    assert!(
        batched.results[0].violations.is_empty(),
        "a false clean: {batched:?}"
    );
    // So the declaration is refused at load, with the file and the line.
    let (d, _) = PolicySet::new(
        vec!["declared/".into()],
        dir.path().into(),
        Duration::from_secs(10),
    )
    .refresh();
    let refused = evaluate(&d, "s", input, None, Duration::from_secs(10));
    assert!(!refused.results[0].ok, "{refused:?}");
    let err = refused.results[0].error.clone().unwrap_or_default();
    assert!(err.contains("declared/agg.rego"), "{err}");
    assert!(
        err.contains("but line 12 uses the rule `untagged`"),
        "{err}"
    );
    let e = check_config(dir.path(), &["declared/".into()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("declared/agg.rego") && e.contains("line 12"),
        "{e}"
    );
}
