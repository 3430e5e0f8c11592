#!/usr/bin/env bash
# Regenerate tests/fixtures/terraform/real/ with a real `terraform` and the
# hashicorp/null provider, offline. Needs: terraform (TERRAFORM=path to choose),
# the null provider under ~/.terraform.d/plugins (see ../shared/TOOLS.md or the
# README "Test fixtures" section). The committed fixtures were made with it.
set -euo pipefail
TF=${TERRAFORM:-terraform}
here=$(cd "$(dirname "$0")/.." && pwd)
out="$here/tests/fixtures/terraform/real"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/modules/net" "$out"
cat > "$work/modules/net/main.tf" <<'HCL'
variable "region" { type = string }
resource "null_resource" "router" {
  triggers = { region = var.region }
}
HCL
write_main() {
  local web_count=$1 svc_tag=$2
  cat > "$work/main.tf" <<HCL
terraform {
  required_providers {
    null = { source = "hashicorp/null", version = "2.1.2" }
  }
}
variable "db_password" {
  type      = string
  default   = "CANARY-tfvar-password-7f3a"
  sensitive = true
}
resource "null_resource" "web" {
  count    = $web_count
  triggers = { index = count.index, secret = var.db_password }
}
resource "null_resource" "svc" {
  for_each = toset(["api", "db", "cache"])
  triggers = { name = each.key, tag = "$svc_tag" }
}
module "net" {
  source   = "./modules/net"
  for_each = toset(["eu", "us"])
  region   = each.key
}
data "null_data_source" "info" {
  inputs = { password = var.db_password }
}
output "db_password" {
  value     = var.db_password
  sensitive = true
}
output "web_ids" { value = null_resource.web[*].id }
HCL
}
cd "$work"
write_main 3 v1
"$TF" init -input=false -no-color >/dev/null
"$TF" apply -auto-approve -input=false -no-color >/dev/null
cp terraform.tfstate "$out/terraform.tfstate.approved"
"$TF" taint -no-color 'null_resource.web[1]' >/dev/null
write_main 4 v2
"$TF" plan -input=false -no-color -out=tfplan >/dev/null || true
"$TF" show -json tfplan > "$out/plan.json"
cp terraform.tfstate "$out/terraform.tfstate"
"$TF" version -json > "$out/terraform-version.json"
echo "wrote $out"
