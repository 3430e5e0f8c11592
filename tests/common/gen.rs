//! Generator of large, realistic Terraform v4 state files (tests and benchmarks).
#![allow(clippy::write_with_newline)]

use std::io::Write;

/// Write a v4 state with `instances` resource instances of about `bytes_per_instance`
/// bytes each. Every instance carries a canary secret in its attributes and in
/// `private`; outputs include a sensitive canary.
pub fn write_state<W: Write>(
    w: &mut W,
    instances: usize,
    bytes_per_instance: usize,
    lineage: &str,
    serial: u64,
) -> std::io::Result<()> {
    let pad = "x".repeat(bytes_per_instance.saturating_sub(700).max(16));
    write!(
        w,
        "{{\n  \"version\": 4,\n  \"terraform_version\": \"1.9.8\",\n  \"serial\": {serial},\n  \"lineage\": \"{lineage}\",\n  \"outputs\": {{\n    \"admin_password\": {{\"value\": \"CANARY-gen-output\", \"type\": \"string\", \"sensitive\": true}},\n    \"count\": {{\"value\": {instances}, \"type\": \"number\"}}\n  }},\n  \"resources\": [\n"
    )?;
    let per_resource = 100usize;
    let resources = instances.div_ceil(per_resource);
    let mut left = instances;
    for r in 0..resources {
        let n = left.min(per_resource);
        left -= n;
        let (rtype, module) = match r % 4 {
            0 => ("aws_instance", String::new()),
            1 => (
                "aws_security_group",
                format!("\"module\": \"module.net[\\\"m{}\\\"]\", ", r % 7),
            ),
            2 => ("cloudflare_record", String::new()),
            _ => ("null_resource", "\"module\": \"module.app\", ".to_string()),
        };
        write!(
            w,
            "    {{{module}\"mode\": \"managed\", \"type\": \"{rtype}\", \"name\": \"r{r}\", \"provider\": \"provider[\\\"registry.terraform.io/hashicorp/aws\\\"]\", \"instances\": [\n"
        )?;
        for i in 0..n {
            let key = if r % 2 == 0 {
                format!("{i}")
            } else {
                format!("\"k{i}\"")
            };
            write!(
                w,
                "      {{\"index_key\": {key}, \"schema_version\": 1, \"attributes\": {{\"id\": \"id-{r}-{i}\", \"arn\": \"arn:aws:ec2:eu-west-1:123456789012:instance/i-{r:08x}{i:08x}\", \"name\": \"res-{r}-{i}\", \"password\": \"CANARY-gen-password-{r}-{i}\", \"tags\": {{\"Name\": \"res-{r}-{i}\", \"env\": \"prod\", \"team\": \"platform\"}}, \"ingress\": [{{\"from_port\": 443, \"to_port\": 443, \"protocol\": \"tcp\", \"cidr_blocks\": [\"10.0.0.0/8\", \"192.168.0.0/16\"]}}, {{\"from_port\": 22, \"to_port\": 22, \"protocol\": \"tcp\", \"cidr_blocks\": []}}], \"enabled\": true, \"size\": {i}, \"ratio\": 0.5, \"user_data\": \"{pad}\", \"nothing\": null}}, \"sensitive_attributes\": [[{{\"type\": \"get_attr\", \"value\": \"password\"}}]], \"private\": \"CANARY-gen-private-eyJzY2hlbWFfdmVyc2lvbiI6IjEifQ==\", \"dependencies\": [\"aws_vpc.main\"]}}{}\n",
                if i + 1 < n { "," } else { "" }
            )?;
        }
        write!(w, "    ]}}{}\n", if r + 1 < resources { "," } else { "" })?;
    }
    write!(w, "  ],\n  \"check_results\": null\n}}\n")?;
    Ok(())
}
