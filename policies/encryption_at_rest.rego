# Storage is encrypted at rest.
# Evaluated one batch of resources at a time (bounded memory; see README).
# policy-scope: resource
package homelab.encryption_at_rest

import rego.v1

# resource type -> attribute that must be true
encrypted_flag := {
	"aws_db_instance": "storage_encrypted",
	"aws_rds_cluster": "storage_encrypted",
	"aws_ebs_volume": "encrypted",
	"aws_efs_file_system": "encrypted",
	"aws_redshift_cluster": "encrypted",
	"aws_elasticache_replication_group": "at_rest_encryption_enabled",
}

deny contains v if {
	some r in input.resources
	r.mode == "managed"
	flag := encrypted_flag[r.type]
	some i in r.instances
	object.get(i.attributes, flag, false) != true
	addr := homelab.address(r, i)
	v := {
		"msg": sprintf("%s is not encrypted at rest (%s is not true)", [addr, flag]),
		"address": addr,
		"severity": "high",
	}
}

# Root block devices of instances.
deny contains v if {
	some r in input.resources
	r.type == "aws_instance"
	some i in r.instances
	some d in object.get(i.attributes, "root_block_device", [])
	object.get(d, "encrypted", false) != true
	addr := homelab.address(r, i)
	v := {
		"msg": sprintf("%s has an unencrypted root block device", [addr]),
		"address": addr,
		"severity": "high",
	}
}
