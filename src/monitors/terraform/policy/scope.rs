//! Policy scope: a policy declared `# policy-scope: resource` is evaluated on
//! the state's resources a batch at a time as they stream past (memory
//! bounded by a batch, not by the state); every other policy gets the whole
//! state as one input. The declaration is checked at load, conservatively:
//! the policy may read `input` only by iterating `input.resources`
//! (`some r in input.resources` or `input.resources[_]`), and not
//! `data.drift` (the drift report is read after the state).

use super::PolicyError;

/// How a policy is given the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// The whole state as one input (bounded by `policy_max_input_size`).
    #[default]
    State,
    /// Batches of resources, `{"resources": [...]}`, as they stream past.
    Resource,
}

/// The declaration line (a comment anywhere in the file).
pub const DECLARATION: &str = "# policy-scope: resource";

/// The policy's declared scope, refused when a `resource` policy reads the
/// state other than one resource at a time.
pub fn scope_of(display: &str, source: &str) -> Result<Scope, PolicyError> {
    let declared = source.lines().any(|l| {
        let t = l.trim();
        t.strip_prefix('#')
            .and_then(|c| c.trim().strip_prefix("policy-scope:"))
            .is_some_and(|v| v.trim() == "resource")
    });
    if !declared {
        return Ok(Scope::State);
    }
    let code = code_only(source);
    let line_of = |pos: usize| 1 + code[..pos].matches('\n').count();
    let refuse = |pos: usize, what: &str| PolicyError::Invalid {
        path: display.to_string(),
        message: format!(
            "declared `{DECLARATION}`, but line {} {what}; a per-resource policy is given a batch of resources at a time ({{\"resources\": [...]}}) and may read input only as `some r in input.resources` or `input.resources[_]`. Iterate that way, or remove the declaration to evaluate it on the whole state (bounded by policy_max_input_size)",
            line_of(pos)
        ),
    };
    for (pos, word) in words(&code) {
        let before = code[..pos].trim_end();
        if before.ends_with('.') {
            continue; // a field named `input` (x.input), not the document
        }
        if word == "data" {
            if code[pos + 4..].trim_start().starts_with(".drift")
                || code[pos + 4..].trim_start().starts_with("[")
                || !code[pos + 4..].trim_start().starts_with('.')
            {
                return Err(refuse(
                    pos,
                    "reads data.drift or the whole data document (the drift report is not given to per-resource policies)",
                ));
            }
            continue;
        }
        if word != "input" {
            continue;
        }
        let rest = &code[pos + 5..];
        let Some(after) = rest.strip_prefix(".resources") else {
            return Err(refuse(pos, "reads input other than through input.resources"));
        };
        if after
            .as_bytes()
            .first()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            return Err(refuse(pos, "reads input other than through input.resources"));
        }
        let wildcard = after.trim_start().strip_prefix('[').is_some_and(|x| {
            x.trim_start()
                .strip_prefix('_')
                .is_some_and(|y| y.trim_start().starts_with(']'))
        });
        let iterated = {
            // `some <ident> in input.resources`
            let mut it = before.rsplitn(2, char::is_whitespace);
            let last = it.next().unwrap_or("");
            let head = it.next().unwrap_or("").trim_end();
            let mut it2 = head.rsplitn(2, char::is_whitespace);
            let var = it2.next().unwrap_or("");
            let some = it2.next().unwrap_or("").trim_end();
            last == "in"
                && !var.is_empty()
                && var.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
                && (some.ends_with("some")
                    && some[..some.len() - 4]
                        .bytes()
                        .last()
                        .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == b'_')))
        };
        if in_comprehension(&code[..pos]) {
            return Err(refuse(
                pos,
                "iterates input.resources inside a comprehension (a set or count over all resources)",
            ));
        }
        if !(wildcard || iterated) {
            return Err(refuse(
                pos,
                "uses input.resources as a whole (not `some r in input.resources` or `input.resources[_]`)",
            ));
        }
    }
    Ok(Scope::Resource)
}

/// Whether the end of `code` is inside the body of a comprehension
/// (`{x | ...}`, `[x | ...]`, `{k: v | ...}`): a `|` at the level of the
/// innermost bracket still open.
fn in_comprehension(code: &str) -> bool {
    let mut depth = 0usize;
    for c in code.bytes().rev() {
        match c {
            b'}' | b']' | b')' => depth += 1,
            b'{' | b'[' | b'(' => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
            }
            b'|' if depth == 0 => return true,
            _ => {}
        }
    }
    false
}

/// The source with comments and string literals blanked (same positions).
fn code_only(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                out.push(' ');
                while let Some(&n) = chars.peek() {
                    if n == '\n' {
                        break;
                    }
                    out.push(' ');
                    chars.next();
                }
            }
            '"' => {
                out.push('"');
                while let Some(n) = chars.next() {
                    if n == '\\' {
                        out.push(' ');
                        if chars.next().is_some() {
                            out.push(' ');
                        }
                        continue;
                    }
                    if n == '"' {
                        out.push('"');
                        break;
                    }
                    out.push(if n == '\n' { '\n' } else { ' ' });
                }
            }
            '`' => {
                out.push('`');
                for n in chars.by_ref() {
                    if n == '`' {
                        out.push('`');
                        break;
                    }
                    out.push(if n == '\n' { '\n' } else { ' ' });
                }
            }
            c if c.is_ascii() => out.push(c),
            // Keep byte positions: non-ASCII only occurs in strings/comments
            // in valid Rego, blank it byte for byte.
            c => (0..c.len_utf8()).for_each(|_| out.push(' ')),
        }
    }
    out
}

/// Identifiers and their byte positions.
fn words(code: &str) -> Vec<(usize, &str)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((start, &code[start..i]));
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(src: &str) -> Result<Scope, PolicyError> {
        scope_of("p.rego", src)
    }

    #[test]
    fn undeclared_policies_get_the_whole_state() {
        assert_eq!(
            scope("package p\ndeny contains x if { some r in input.resources; x := r.type }\n").ok(),
            Some(Scope::State)
        );
    }

    #[test]
    fn declared_iterations_are_accepted() {
        let src = "# policy-scope: resource\npackage p\nimport rego.v1\n\
            deny contains x if { some r in input.resources; x := r.type }\n\
            warn contains x if { r := input.resources[ _ ]; x := concat(\"\", [\"input\", r.name]) } # input.outputs\n\
            deny contains x if { some r in input.resources; x := data.p.allowed[r.type] }\n";
        assert_eq!(scope(src).ok(), Some(Scope::Resource));
    }

    #[test]
    fn declared_whole_state_reads_are_refused_with_the_line() {
        for (line, bad) in [
            "deny contains x if { x := count(input.resources) }",
            "deny contains x if { some i, r in input.resources; x := i }",
            "deny contains x if { r := input.resources[0]; x := r }",
            "deny contains x if { some o in input.outputs; x := o }",
            "deny contains x if { x := input }",
            "deny contains x if { some c in data.drift.resource_drift; x := c }",
            "deny contains x if { rs := input.resources; some r in rs; x := r }",
            "deny contains x if { n := count({r | some r in input.resources}); n > 9; x := n }",
            "deny contains x if { every r in input.resources { r.type == \"a\" }; x := 1 }",
            "deny contains x if { x := [r | r := input.resources[_]] }",
        ]
        .iter()
        .map(|b| (4, *b))
        {
            let src = format!("# policy-scope: resource\npackage p\nimport rego.v1\n{bad}\n");
            let e = scope(&src).expect_err(bad);
            let text = e.to_string();
            assert!(text.contains(&format!("line {line} ")), "{bad}: {text}");
            assert!(text.contains("policy-scope"), "{text}");
        }
    }
}
