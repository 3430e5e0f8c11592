# Every taggable managed resource carries the tags the team relies on.
# Taggable = its attributes have a `tags` key (AWS, Azure, ...).
# Evaluated one batch of resources at a time (bounded memory; see README).
# policy-scope: resource
package homelab.required_tags

import rego.v1

required_tags := {"env", "team"}

deny contains v if {
	some r in input.resources
	r.mode == "managed"
	some i in r.instances
	"tags" in object.keys(i.attributes)
	tags := object.get(i.attributes, "tags", {})
	present := {k | some k, _ in tags_or_empty(tags)}
	missing := required_tags - present
	count(missing) > 0
	addr := homelab.address(r, i)
	v := {
		"msg": sprintf("%s is missing required tags %v", [addr, sort(missing)]),
		"address": addr,
		"severity": "medium",
	}
}

tags_or_empty(t) := t if is_object(t)

tags_or_empty(t) := {} if not is_object(t)
