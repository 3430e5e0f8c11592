# No S3 bucket readable or writable by everyone through a canned ACL, and
# no public access block left switched off.
# Evaluated one batch of resources at a time (bounded memory; see README).
# policy-scope: resource
package homelab.no_public_s3_acl

import rego.v1

public_acls := {"public-read", "public-read-write", "authenticated-read"}

deny contains v if {
	some r in input.resources
	r.type in {"aws_s3_bucket", "aws_s3_bucket_acl"}
	some i in r.instances
	i.attributes.acl in public_acls
	addr := homelab.address(r, i)
	v := {
		"msg": sprintf("%s has the public canned ACL %s", [addr, i.attributes.acl]),
		"address": addr,
		"severity": "critical",
	}
}

deny contains v if {
	some r in input.resources
	r.type == "aws_s3_bucket_acl"
	some i in r.instances
	some policy in object.get(i.attributes, "access_control_policy", [])
	some grant in policy.grant
	some grantee in grant.grantee
	endswith(object.get(grantee, "uri", ""), "/global/AllUsers")
	addr := homelab.address(r, i)
	v := {
		"msg": sprintf("%s grants %s to AllUsers", [addr, grant.permission]),
		"address": addr,
		"severity": "critical",
	}
}

warn contains v if {
	some r in input.resources
	r.type == "aws_s3_bucket_public_access_block"
	some i in r.instances
	some flag in ["block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"]
	object.get(i.attributes, flag, false) != true
	addr := homelab.address(r, i)
	v := {
		"msg": sprintf("%s has %s switched off", [addr, flag]),
		"address": addr,
		"severity": "medium",
	}
}
