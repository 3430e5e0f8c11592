//! Custom built-ins Terraform policies need that regorus lacks, under `homelab.`.

use regorus::{Engine, Value};

/// Functions Terraform policies need that regorus lacks, under `homelab.`.
pub(super) fn add_extensions(engine: &mut Engine) -> Result<(), anyhow::Error> {
    engine.add_extension(
        "homelab.cidr_intersects".into(),
        2,
        Box::new(|args: Vec<Value>| {
            let (a, b) = (cidr_arg(&args, 0)?, cidr_arg(&args, 1)?);
            Ok(Value::from(
                a.contains(&b.network()) || b.contains(&a.network()),
            ))
        }),
    )?;
    engine.add_extension(
        "homelab.cidr_is_public".into(),
        1,
        Box::new(|args: Vec<Value>| {
            let n = cidr_arg(&args, 0)?;
            Ok(Value::from(is_world(&n)))
        }),
    )?;
    engine.add_extension(
        "homelab.address".into(),
        2,
        Box::new(|args: Vec<Value>| {
            let (r, i) = match (args.first(), args.get(1)) {
                (Some(r), Some(i)) => (r, i),
                _ => anyhow::bail!("homelab.address needs a resource and an instance"),
            };
            Ok(Value::from(address_of(r, i)))
        }),
    )?;
    engine.add_extension(
        "homelab.port_in_range".into(),
        3,
        Box::new(|args: Vec<Value>| {
            let num = |i: usize| -> anyhow::Result<f64> {
                args.get(i).and_then(|v| v.as_f64().ok()).ok_or_else(|| {
                    anyhow::anyhow!("homelab.port_in_range: argument {} is not a number", i + 1)
                })
            };
            let (port, from, to) = (num(0)?, num(1)?, num(2)?);
            // from_port = to_port = 0 with protocol -1 means all ports in AWS.
            Ok(Value::from(
                (from == 0.0 && to == 0.0) || (from <= port && port <= to),
            ))
        }),
    )?;
    Ok(())
}

fn field<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    v.as_object().ok().and_then(|o| o.get(&Value::from(k)))
}

fn field_str(v: &Value, k: &str) -> String {
    field(v, k)
        .and_then(|x| x.as_string().ok())
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// The instance's Terraform address: `module.m["a"].aws_instance.web[0]`.
fn address_of(r: &Value, i: &Value) -> String {
    let mut out = String::new();
    let module = field_str(r, "module");
    if !module.is_empty() {
        out.push_str(&module);
        out.push('.');
    }
    if field_str(r, "mode") == "data" {
        out.push_str("data.");
    }
    out.push_str(&field_str(r, "type"));
    out.push('.');
    out.push_str(&field_str(r, "name"));
    match field(i, "index_key") {
        Some(Value::String(k)) => {
            out.push_str(&format!("[{}]", super::super::state::hcl_quoted(k.as_ref())));
        }
        Some(Value::Number(n)) => {
            if let Some(n) = n.as_u64() {
                out.push_str(&format!("[{n}]"));
            }
        }
        _ => {}
    }
    out
}

fn cidr_arg(args: &[Value], i: usize) -> anyhow::Result<ipnet::IpNet> {
    let s = args
        .get(i)
        .and_then(|v| v.as_string().ok())
        .ok_or_else(|| anyhow::anyhow!("argument {} is not a CIDR string", i + 1))?;
    let s: &str = s;
    if let Ok(n) = s.parse::<ipnet::IpNet>() {
        return Ok(n);
    }
    s.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| anyhow::anyhow!("argument {} is not a CIDR", i + 1))
}

/// A range that reaches (part of) the public Internet: not inside private,
/// loopback, link-local or ULA space.
fn is_world(n: &ipnet::IpNet) -> bool {
    const PRIVATE: [&str; 8] = [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
        "fe80::/10",
    ];
    let inside = PRIVATE
        .iter()
        .filter_map(|p| p.parse::<ipnet::IpNet>().ok())
        .any(|p| p.contains(n));
    !inside && !matches!(n, ipnet::IpNet::V6(v) if v.network().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_cidrs() {
        let w = |s: &str| is_world(&s.parse().unwrap());
        assert!(w("0.0.0.0/0"));
        assert!(w("8.8.8.0/24"));
        assert!(!w("10.1.0.0/16"));
        assert!(w("::/0"));
        assert!(!w("fd00::/8"));
    }
}
