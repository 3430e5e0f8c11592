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

/// Write a v4 state shaped like real AWS states (see README "Benchmarks"):
/// JSON-encoded IAM policies (strings full of `\"`), `user_data` scripts
/// with `\n`, `\t` and the `\u003c`/`\u003e`/`\u0026` escapes Terraform's
/// encoder writes for `<`, `>` and `&`, non-ASCII text, nested blocks and
/// tags. About 2.4 KB per instance.
pub fn write_aws_state<W: Write>(
    w: &mut W,
    instances: usize,
    lineage: &str,
    serial: u64,
) -> std::io::Result<()> {
    write!(
        w,
        "{{\n  \"version\": 4,\n  \"terraform_version\": \"1.11.4\",\n  \"serial\": {serial},\n  \"lineage\": \"{lineage}\",\n  \"outputs\": {{\n    \"db_password\": {{\"value\": \"CANARY-aws-output\", \"type\": \"string\", \"sensitive\": true}}\n  }},\n  \"resources\": [\n"
    )?;
    let per_resource = 100usize;
    let resources = instances.div_ceil(per_resource);
    let mut left = instances;
    for r in 0..resources {
        let n = left.min(per_resource);
        left -= n;
        let (rtype, module) = match r % 3 {
            0 => (
                "aws_instance",
                format!("\"module\": \"module.web[\\\"eu-{}\\\"]\", ", r % 5),
            ),
            1 => ("aws_iam_policy", String::new()),
            _ => ("aws_iam_role", "\"module\": \"module.iam\", ".to_string()),
        };
        write!(
            w,
            "    {{\n      {module}\"mode\": \"managed\",\n      \"type\": \"{rtype}\",\n      \"name\": \"r{r}\",\n      \"provider\": \"provider[\\\"registry.terraform.io/hashicorp/aws\\\"]\",\n      \"instances\": [\n"
        )?;
        for i in 0..n {
            let key = format!("\"{rtype}-{i}\"");
            let tags = format!(
                "{{\n              \"Name\": \"{rtype}-{r}-{i}\",\n              \"cost-center\": \"cc-{:04}\",\n              \"env\": \"prod\",\n              \"owner\": \"équipe-plateforme\"\n            }}",
                r % 97
            );
            let attrs = match r % 3 {
                0 => format!(
                    "\"ami\": \"ami-0c55b159cbfafe1f{}\",\n            \"arn\": \"arn:aws:ec2:eu-west-1:123456789012:instance/i-{r:08x}{i:08x}\",\n            \"id\": \"i-{r:08x}{i:08x}\",\n            \"instance_type\": \"t3.large\",\n            \"metadata_options\": [\n              {{\n                \"http_endpoint\": \"enabled\",\n                \"http_put_response_hop_limit\": 2,\n                \"http_tokens\": \"required\",\n                \"instance_metadata_tags\": \"disabled\"\n              }}\n            ],\n            \"private_ip\": \"10.{}.{}.{}\",\n            \"root_block_device\": [\n              {{\n                \"delete_on_termination\": true,\n                \"encrypted\": true,\n                \"iops\": 3000,\n                \"kms_key_id\": \"arn:aws:kms:eu-west-1:123456789012:key/{r:08x}-{i:04x}\",\n                \"tags\": {{}},\n                \"throughput\": 125,\n                \"volume_size\": 50,\n                \"volume_type\": \"gp3\"\n              }}\n            ],\n            \"tags\": {tags},\n            \"tags_all\": {tags},\n            \"user_data\": \"#!/bin/bash\\nset -euo pipefail\\nexec \\u003e \\u003e(tee /var/log/user-data.log) 2\\u003e\\u00261\\n\\n# Bootstrap web node {r}-{i} (généré — ne pas éditer)\\nexport APP_ENV=\\\"prod\\\"\\nexport APP_NODE=\\\"{r}-{i}\\\"\\nyum install -y nginx amazon-cloudwatch-agent \\u0026\\u0026 systemctl enable --now nginx\\ncat \\u003c\\u003c'EOF' \\u003e /etc/nginx/conf.d/app.conf\\nserver {{\\n\\tlisten 80;\\n\\tserver_name app-{i}.example.com;\\n\\tlocation / {{\\n\\t\\tproxy_pass http://127.0.0.1:8080;\\n\\t\\tproxy_set_header Host $host;\\n\\t\\tproxy_set_header X-Real-IP $remote_addr;\\n\\t}}\\n}}\\nEOF\\nif [ \\\"$(curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1/)\\\" != \\\"200\\\" ]; then\\n\\techo \\\"health check failed ✗\\\" \\u003e\\u00262\\n\\texit 1\\nfi\\necho \\\"ready ✓\\\" \\u003e /var/run/bootstrap.done\\n\",\n            \"vpc_security_group_ids\": [\n              \"sg-0a1b2c3d{:04x}\",\n              \"sg-0f9e8d7c{:04x}\"\n            ]",
                    i % 10, r % 256, i % 256, (r + i) % 250, i, r
                ),
                1 => format!(
                    "\"arn\": \"arn:aws:iam::123456789012:policy/app-{r}-{i}\",\n            \"description\": \"Access for app {r}-{i} \\u0026 its workers\",\n            \"id\": \"arn:aws:iam::123456789012:policy/app-{r}-{i}\",\n            \"name\": \"app-{r}-{i}\",\n            \"path\": \"/\",\n            \"policy\": \"{{\\\"Statement\\\":[{{\\\"Action\\\":[\\\"s3:GetObject\\\",\\\"s3:GetObjectVersion\\\",\\\"s3:ListBucket\\\",\\\"s3:PutObject\\\"],\\\"Condition\\\":{{\\\"StringEquals\\\":{{\\\"aws:PrincipalTag/team\\\":\\\"platform\\\",\\\"s3:x-amz-server-side-encryption\\\":\\\"aws:kms\\\"}}}},\\\"Effect\\\":\\\"Allow\\\",\\\"Resource\\\":[\\\"arn:aws:s3:::app-{r}-{i}-data\\\",\\\"arn:aws:s3:::app-{r}-{i}-data/*\\\"],\\\"Sid\\\":\\\"DataAccess\\\"}},{{\\\"Action\\\":[\\\"kms:Decrypt\\\",\\\"kms:GenerateDataKey\\\"],\\\"Effect\\\":\\\"Allow\\\",\\\"Resource\\\":\\\"arn:aws:kms:eu-west-1:123456789012:key/{r:08x}-{i:04x}\\\",\\\"Sid\\\":\\\"Kms\\\"}},{{\\\"Action\\\":[\\\"logs:CreateLogStream\\\",\\\"logs:PutLogEvents\\\"],\\\"Effect\\\":\\\"Allow\\\",\\\"Resource\\\":\\\"arn:aws:logs:eu-west-1:123456789012:log-group:/app/{r}/{i}:*\\\",\\\"Sid\\\":\\\"Logs\\\"}},{{\\\"Action\\\":\\\"s3:*\\\",\\\"Condition\\\":{{\\\"Bool\\\":{{\\\"aws:SecureTransport\\\":\\\"false\\\"}},\\\"NotIpAddress\\\":{{\\\"aws:SourceIp\\\":[\\\"10.0.0.0/8\\\",\\\"192.168.{i}.0/24\\\"]}}}},\\\"Effect\\\":\\\"Deny\\\",\\\"Resource\\\":[\\\"arn:aws:s3:::app-{r}-{i}-data\\\",\\\"arn:aws:s3:::app-{r}-{i}-data/*\\\"],\\\"Sid\\\":\\\"DenyInsecure\\\"}},{{\\\"Action\\\":\\\"sqs:*\\\",\\\"Effect\\\":\\\"Deny\\\",\\\"NotResource\\\":[\\\"arn:aws:sqs:eu-west-1:123456789012:app-{r}-{i}\\\"],\\\"Sid\\\":\\\"NoOtherQueues\\\"}}],\\\"Version\\\":\\\"2012-10-17\\\"}}\",\n            \"policy_id\": \"ANPA{r:08X}{i:08X}\",\n            \"tags\": {tags},\n            \"tags_all\": {tags}"
                ),
                _ => format!(
                    "\"arn\": \"arn:aws:iam::123456789012:role/svc-{r}-{i}\",\n            \"assume_role_policy\": \"{{\\\"Statement\\\":[{{\\\"Action\\\":\\\"sts:AssumeRoleWithWebIdentity\\\",\\\"Condition\\\":{{\\\"StringEquals\\\":{{\\\"oidc.eks.eu-west-1.amazonaws.com/id/{r:08X}:sub\\\":\\\"system:serviceaccount:apps:svc-{i}\\\"}}}},\\\"Effect\\\":\\\"Allow\\\",\\\"Principal\\\":{{\\\"Federated\\\":\\\"arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/{r:08X}\\\"}}}}],\\\"Version\\\":\\\"2012-10-17\\\"}}\",\n            \"create_date\": \"2026-03-0{}T12:00:00Z\",\n            \"description\": \"Service role for svc-{i} — \\\"apps\\\" namespace \\u0026 its workers\",\n            \"force_detach_policies\": false,\n            \"id\": \"svc-{r}-{i}\",\n            \"inline_policy\": [\n              {{\n                \"name\": \"inline-{i}\",\n                \"policy\": \"{{\\\"Statement\\\":[{{\\\"Action\\\":[\\\"dynamodb:GetItem\\\",\\\"dynamodb:PutItem\\\",\\\"dynamodb:Query\\\"],\\\"Effect\\\":\\\"Allow\\\",\\\"Resource\\\":\\\"arn:aws:dynamodb:eu-west-1:123456789012:table/svc-{r}-{i}\\\"}},{{\\\"Action\\\":\\\"secretsmanager:GetSecretValue\\\",\\\"Effect\\\":\\\"Allow\\\",\\\"Resource\\\":\\\"arn:aws:secretsmanager:eu-west-1:123456789012:secret:svc-{r}-{i}-*\\\"}}],\\\"Version\\\":\\\"2012-10-17\\\"}}\"\n              }}\n            ],\n            \"managed_policy_arns\": [\n              \"arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore\",\n              \"arn:aws:iam::123456789012:policy/app-{r}-{i}\"\n            ],\n            \"max_session_duration\": 3600,\n            \"name\": \"svc-{r}-{i}\",\n            \"path\": \"/service/\",\n            \"permissions_boundary\": null,\n            \"tags\": {tags},\n            \"tags_all\": {tags}",
                    1 + i % 9
                ),
            };
            write!(
                w,
                "        {{\n          \"index_key\": {key},\n          \"schema_version\": 1,\n          \"attributes\": {{\n            {attrs}\n          }},\n          \"sensitive_attributes\": [],\n          \"private\": \"Q0FOQVJZLWF3cy1wcml2YXRl\",\n          \"dependencies\": [\n            \"module.vpc.aws_vpc.main\",\n            \"module.vpc.aws_subnet.private\"\n          ]\n        }}{}\n",
                if i + 1 < n { "," } else { "" }
            )?;
        }
        write!(
            w,
            "      ]\n    }}{}\n",
            if r + 1 < resources { "," } else { "" }
        )?;
    }
    write!(w, "  ],\n  \"check_results\": null\n}}\n")?;
    Ok(())
}
