# Resources only from approved providers, and cloud resources only in
# approved regions (read from the region attribute, the availability zone
# or the ARN).
# Evaluated one batch of resources at a time (bounded memory; see README).
# policy-scope: resource
package homelab.allowed_providers_regions

import rego.v1

allowed_providers := {
	# Terraform's and OpenTofu's built-in provider: terraform_data, terraform_remote_state.
	"terraform.io/builtin/terraform",
	"registry.terraform.io/hashicorp/aws",
	"registry.terraform.io/hashicorp/null",
	"registry.terraform.io/hashicorp/random",
	"registry.terraform.io/hashicorp/local",
	"registry.terraform.io/hashicorp/tls",
	"registry.terraform.io/cloudflare/cloudflare",
	"registry.terraform.io/bpg/proxmox",
	"registry.terraform.io/telmate/proxmox",
	"registry.opentofu.org/hashicorp/aws",
	"registry.opentofu.org/bpg/proxmox",
}

allowed_regions := {"eu-west-1", "eu-central-1"}

# provider["registry.terraform.io/hashicorp/aws"].alias -> registry.terraform.io/hashicorp/aws
provider_source(p) := s if {
	parts := split(p, "\"")
	count(parts) >= 2
	s := parts[1]
}

deny contains v if {
	some r in input.resources
	src := provider_source(r.provider)
	not src in allowed_providers
	some i in r.instances
	addr := homelab.address(r, i)
	v := {
		"msg": sprintf("%s comes from the provider %s, which is not allowed", [addr, src]),
		"address": addr,
		"severity": "high",
	}
}

region(attrs) := attrs.region if is_string(attrs.region)

region(attrs) := substring(attrs.availability_zone, 0, count(attrs.availability_zone) - 1) if {
	not is_string(attrs.region)
	is_string(attrs.availability_zone)
	count(attrs.availability_zone) > 1
}

region(attrs) := split(attrs.arn, ":")[3] if {
	not is_string(attrs.region)
	not is_string(attrs.availability_zone)
	is_string(attrs.arn)
	count(split(attrs.arn, ":")) > 4
}

deny contains v if {
	some r in input.resources
	r.mode == "managed"
	startswith(r.type, "aws_")
	some i in r.instances
	reg := region(i.attributes)
	reg != ""
	not reg in allowed_regions
	addr := homelab.address(r, i)
	v := {
		"msg": sprintf("%s is in the region %s, which is not allowed", [addr, reg]),
		"address": addr,
		"severity": "high",
	}
}
