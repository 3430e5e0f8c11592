# No admin port (SSH, RDP, WinRM, Proxmox UI, Kubernetes API, databases)
# open to the whole Internet (0.0.0.0/0 or ::/0): deny. Open to another
# public range: warn (a VPN or a bastion is the usual answer).
# Evaluated one batch of resources at a time (bounded memory; see README).
# policy-scope: resource
package homelab.no_open_admin_ports

import rego.v1

admin_ports := [22, 3389, 5985, 5986, 8006, 6443, 5432, 3306]

world := {"0.0.0.0/0", "::/0"}

# Ingress rules as {address, from, to, cidr} from the three AWS shapes.
rules contains x if {
	some r in input.resources
	r.type == "aws_security_group"
	some i in r.instances
	some rule in object.get(i.attributes, "ingress", [])
	some cidr in array.concat(object.get(rule, "cidr_blocks", []), object.get(rule, "ipv6_cidr_blocks", []))
	x := {"address": homelab.address(r, i), "from": rule.from_port, "to": rule.to_port, "cidr": cidr}
}

rules contains x if {
	some r in input.resources
	r.type == "aws_security_group_rule"
	some i in r.instances
	i.attributes.type == "ingress"
	some cidr in array.concat(object.get(i.attributes, "cidr_blocks", []), object.get(i.attributes, "ipv6_cidr_blocks", []))
	x := {"address": homelab.address(r, i), "from": i.attributes.from_port, "to": i.attributes.to_port, "cidr": cidr}
}

rules contains x if {
	some r in input.resources
	r.type == "aws_vpc_security_group_ingress_rule"
	some i in r.instances
	some key in ["cidr_ipv4", "cidr_ipv6"]
	cidr := object.get(i.attributes, key, null)
	is_string(cidr)
	x := {"address": homelab.address(r, i), "from": object.get(i.attributes, "from_port", 0), "to": object.get(i.attributes, "to_port", 0), "cidr": cidr}
}

deny contains v if {
	some x in rules
	x.cidr in world
	some port in admin_ports
	homelab.port_in_range(port, x.from, x.to)
	v := {
		"msg": sprintf("%s allows ingress to admin port %d from %s", [x.address, port, x.cidr]),
		"address": x.address,
		"severity": "critical",
	}
}

warn contains v if {
	some x in rules
	not x.cidr in world
	homelab.cidr_is_public(x.cidr)
	some port in admin_ports
	homelab.port_in_range(port, x.from, x.to)
	v := {
		"msg": sprintf("%s allows ingress to admin port %d from the public range %s", [x.address, port, x.cidr]),
		"address": x.address,
		"severity": "medium",
	}
}
