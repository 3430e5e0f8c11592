# Homelab: every Proxmox VM and container is tagged for backup (a tag
# `backup` or `backup-<schedule>`), so the vzdump job that selects by tag
# picks it up; a guest explicitly tagged `no-backup` is exempt with a warning.
# Evaluated one batch of resources at a time (bounded memory; see README).
# policy-scope: resource
package homelab.proxmox_backup

import rego.v1

guest_types := {
	"proxmox_virtual_environment_vm",
	"proxmox_virtual_environment_container",
	"proxmox_vm_qemu",
	"proxmox_lxc",
}

# bpg/proxmox: a list of strings; telmate/proxmox: "a;b" or "a,b".
tags(attrs) := {t | some t in attrs.tags} if is_array(attrs.tags)

tags(attrs) := {trim_space(t) | some t in split(replace(attrs.tags, ",", ";"), ";")} if is_string(attrs.tags)

tags(attrs) := set() if {
	not is_array(attrs.tags)
	not is_string(attrs.tags)
}

backed_up(ts) if "backup" in ts

backed_up(ts) if {
	some t in ts
	startswith(t, "backup-")
}

deny contains v if {
	some r in input.resources
	r.mode == "managed"
	r.type in guest_types
	some i in r.instances
	ts := tags(i.attributes)
	not backed_up(ts)
	not "no-backup" in ts
	addr := homelab.address(r, i)
	v := {
		"msg": sprintf("%s has no backup tag (add `backup` or `backup-<schedule>`)", [addr]),
		"address": addr,
		"severity": "high",
	}
}

warn contains v if {
	some r in input.resources
	r.mode == "managed"
	r.type in guest_types
	some i in r.instances
	"no-backup" in tags(i.attributes)
	addr := homelab.address(r, i)
	v := {
		"msg": sprintf("%s is tagged no-backup", [addr]),
		"address": addr,
		"severity": "low",
	}
}
