//! Policy scope: a policy declared `# policy-scope: resource` is evaluated on
//! the state's resources a batch at a time as they stream past (memory
//! bounded by a batch, not by the state); every other policy gets the whole
//! state as one input.
//!
//! The declaration is checked at load on the policy's syntax tree (regorus'
//! parser): the policy must be *per-resource*, i.e. its result on the whole
//! state must be the union of its results on any split of the resources
//! into batches. What is accepted (everything else is refused, with the line):
//!
//! - `input` is read only as `some r in input.resources` or
//!   `input.resources[_]` (one resource at a time; not the index, not
//!   `input.resources[0]`, not `input.outputs`, not `input` itself), and
//!   `data.drift` not at all (the drift report is read after the state);
//! - a rule that reads resources (directly, or through another such rule)
//!   is a partial set rule (`deny contains v if { ... }`, v0 `deny[v] { ... }`),
//!   whose value is the union over its resources; it is itself used only
//!   element by element (`some x in s` or `s[_]`);
//! - each rule body iterates resources (input.resources or such a set) at
//!   most once (two iterations are a join of two resources, whose pairs in
//!   different batches would never meet);
//! - no resource collection inside a comprehension, an `every`, a `not`, or
//!   as a function argument (`count`, `sum`, `max`, `sort`, ...): all of
//!   these compute over the resources of one batch;
//! - no complete rule (`n := ...`, `any_public if ...`), function or object
//!   rule computed from resources: one value per batch, not per state.
//!
//! A per-resource attribute is not a resource collection: `count(r.tags)`,
//! `{k | some k, _ in r.tags}` or `every i in r.instances { ... }` on one
//! resource `r` are fine.

use std::collections::BTreeSet;

use regorus::unstable::{Expr, Literal, LiteralStmt, Module, Parser, Query, Rule, RuleHead};
use regorus::Source;

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

/// What is said after the problem, in every refusal.
const WHY: &str = "a per-resource policy is given the resources a batch at a time ({\"resources\": [...]}, 1 MiB of JSON each), so anything computed across resources (count, sum, max, sort, a comprehension, every, a negation, a join of two resources, a rule with one value) sees one batch only and can miss a violation: a false clean. Read resources only one at a time, as `some r in input.resources` or `input.resources[_]` (or `some x in s` for a set rule `s` built that way), or remove the `# policy-scope: resource` line to evaluate this policy on the whole state (bounded by policy_max_input_size)";

/// The policy's declared scope, refused when a `resource` policy computes
/// anything across resources (see the module documentation).
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
    let Some(module) = parse(display, source) else {
        return Err(PolicyError::Invalid {
            path: display.to_string(),
            message: format!("declared `{DECLARATION}`, but the policy does not parse"),
        });
    };
    let mut problems = Checker::new(&module).check(&module);
    problems.sort();
    match problems.first() {
        None => Ok(Scope::Resource),
        Some((line, _, what)) => {
            let mut others: Vec<String> = problems
                .iter()
                .filter(|(l, _, _)| l != line)
                .map(|(l, _, _)| l.to_string())
                .collect();
            others.dedup();
            let more = match others.len() {
                0 => String::new(),
                _ => format!(" (the same check also refuses line(s) {})", others.join(", ")),
            };
            Err(PolicyError::Invalid {
                path: display.to_string(),
                message: format!(
                    "declared `{DECLARATION}`, but line {line} {what}{more}; {WHY}"
                ),
            })
        }
    }
}

/// The module as the engine parses it: Rego v1 first, then v0.
fn parse(display: &str, source: &str) -> Option<Module> {
    for v1 in [true, false] {
        let Ok(src) = Source::from_contents(display.to_string(), source.to_string()) else {
            return None;
        };
        let Ok(mut parser) = Parser::new(&src) else {
            continue;
        };
        if v1 && parser.enable_rego_v1().is_err() {
            continue;
        }
        if let Ok(m) = parser.parse() {
            return Some(m);
        }
    }
    None
}

fn var(e: &Expr) -> Option<&str> {
    match e {
        Expr::Var { value, .. } => value.as_string().ok().map(|s| &**s),
        _ => None,
    }
}

/// A reference as its root variable and its constant fields
/// (`data.a["b"].c` -> `data`, `[a, b, c]`); `None` for anything else.
fn ref_path(e: &Expr) -> Option<(&str, Vec<String>)> {
    match e {
        Expr::Var { .. } => var(e).map(|v| (v, Vec::new())),
        Expr::RefDot { refr, field, .. } => {
            let (root, mut fields) = ref_path(refr)?;
            fields.push(field.1.as_string().ok()?.to_string());
            Some((root, fields))
        }
        Expr::RefBrack { refr, index, .. } => match index.as_ref() {
            Expr::String { value, .. } | Expr::RawString { value, .. } => {
                let (root, mut fields) = ref_path(refr)?;
                fields.push(value.as_string().ok()?.to_string());
                Some((root, fields))
            }
            _ => None,
        },
        _ => None,
    }
}

/// The name a rule defines: the root of its head (`deny` for
/// `deny contains v`, `p` for `p[k] := v` or `p.q := 1`).
fn rule_name(rule: &Rule) -> Option<&str> {
    let refr = match rule {
        Rule::Spec { head, .. } => match head {
            RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } | RuleHead::Func { refr, .. } => refr,
        },
        Rule::Default { refr, .. } => refr,
    };
    let mut e: &Expr = refr;
    loop {
        match e {
            Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } => e = refr,
            _ => return var(e),
        }
    }
}

/// Every expression a rule evaluates (head values, bodies; not the head's
/// name or a function's parameters), with the literal it is in.
fn each_expr(rule: &Rule, f: &mut dyn FnMut(&Expr)) {
    fn expr(e: &Expr, f: &mut dyn FnMut(&Expr)) {
        f(e);
        for c in children(e) {
            expr(c, f);
        }
        match e {
            Expr::ArrayCompr { term, query: q, .. } | Expr::SetCompr { term, query: q, .. } => {
                expr(term, f);
                query(q, f);
            }
            Expr::ObjectCompr {
                key, value, query: q, ..
            } => {
                expr(key, f);
                expr(value, f);
                query(q, f);
            }
            _ => {}
        }
    }
    fn query(q: &Query, f: &mut dyn FnMut(&Expr)) {
        for s in &q.stmts {
            stmt(s, f);
        }
    }
    fn stmt(s: &LiteralStmt, f: &mut dyn FnMut(&Expr)) {
        match &s.literal {
            Literal::SomeVars { .. } => {}
            Literal::SomeIn { key, value, collection, .. } => {
                key.iter().for_each(|k| expr(k, f));
                expr(value, f);
                expr(collection, f);
            }
            Literal::Expr { expr: e, .. } | Literal::NotExpr { expr: e, .. } => expr(e, f),
            Literal::Every { domain, query: q, .. } => {
                expr(domain, f);
                query(q, f);
            }
        }
        for w in &s.with_mods {
            expr(&w.refr, f);
            expr(&w.r#as, f);
        }
    }
    match rule {
        Rule::Spec { head, bodies, .. } => {
            match head {
                RuleHead::Set { key, .. } => key.iter().for_each(|k| expr(k, f)),
                RuleHead::Compr { assign, .. } | RuleHead::Func { assign, .. } => {
                    assign.iter().for_each(|a| expr(&a.value, f))
                }
            }
            for b in bodies {
                b.assign.iter().for_each(|a| expr(&a.value, f));
                query(&b.query, f);
            }
        }
        Rule::Default { value, .. } => expr(value, f),
    }
}

/// The sub-expressions of an expression (not of its comprehensions' queries).
fn children(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Array { items, .. } | Expr::Set { items, .. } => items.iter().map(|i| &**i).collect(),
        Expr::Object { fields, .. } => fields.iter().flat_map(|(_, k, v)| [&**k, &**v]).collect(),
        Expr::Call { fcn, params, .. } => std::iter::once(&**fcn)
            .chain(params.iter().map(|p| &**p))
            .collect(),
        Expr::UnaryExpr { expr, .. } => vec![expr],
        Expr::RefDot { refr, .. } => vec![refr],
        Expr::RefBrack { refr, index, .. } => vec![refr, index],
        Expr::BinExpr { lhs, rhs, .. }
        | Expr::BoolExpr { lhs, rhs, .. }
        | Expr::ArithExpr { lhs, rhs, .. }
        | Expr::AssignExpr { lhs, rhs, .. } => vec![lhs, rhs],
        Expr::Membership {
            key,
            value,
            collection,
            ..
        } => key
            .iter()
            .map(|k| &**k)
            .chain([&**value, &**collection])
            .collect(),
        _ => Vec::new(),
    }
}

/// Where a resource collection is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Within {
    /// The top level of a rule body (its head values included).
    Body,
    Comprehension,
    Every,
    Not,
}

impl Within {
    /// The context inside `inner` (the outermost restriction wins).
    fn nested(self, inner: Within) -> Within {
        if self == Within::Body {
            inner
        } else {
            self
        }
    }
}

/// A resource collection: `input.resources`, or a rule computed from it.
enum Src {
    Input,
    Rule(String),
}

impl Src {
    fn shown(&self) -> String {
        match self {
            Src::Input => "input.resources".to_string(),
            Src::Rule(n) => format!("the rule `{n}` (computed from input.resources)"),
        }
    }
}

/// A short quote of an expression for messages.
fn quote(e: &Expr) -> String {
    let t = e.span().text().split_whitespace().collect::<Vec<_>>().join(" ");
    match t.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t,
    }
}

struct Checker {
    /// The package's path under `data` (`["homelab", "required_tags"]`).
    package: Vec<String>,
    /// Rules computed from resources (directly or through each other).
    derived: BTreeSet<String>,
    /// (line, column, what is wrong there).
    problems: Vec<(u32, u32, String)>,
}

impl Checker {
    fn new(m: &Module) -> Self {
        let mut package: Vec<String> = ref_path(&m.package.refr)
            .map(|(root, fields)| std::iter::once(root.to_string()).chain(fields).collect())
            .unwrap_or_default();
        if package.first().is_some_and(|r| r == "data") {
            package.remove(0);
        }
        let mut c = Checker {
            package,
            derived: BTreeSet::new(),
            problems: Vec::new(),
        };
        loop {
            let before = c.derived.len();
            for rule in &m.policy {
                if let Some(name) = rule_name(rule) {
                    if !c.derived.contains(name) && c.reads_resources(rule) {
                        c.derived.insert(name.to_string());
                    }
                }
            }
            if c.derived.len() == before {
                break;
            }
        }
        c
    }

    /// Whether `e` is `data.<this package>.<rule>`: the rule's name.
    fn package_rule(&self, e: &Expr) -> Option<String> {
        let (root, fields) = ref_path(e)?;
        (root == "data"
            && fields.len() == self.package.len() + 1
            && fields.starts_with(&self.package))
        .then(|| fields[self.package.len()].clone())
    }

    /// Whether a rule reads input, data.drift or a rule computed from them.
    fn reads_resources(&self, rule: &Rule) -> bool {
        let mut reads = false;
        each_expr(rule, &mut |e| {
            reads = reads
                || var(e).is_some_and(|v| v == "input" || self.derived.contains(v))
                || ref_path(e).is_some_and(|(root, f)| {
                    root == "data" && f.first().is_some_and(|f| f == "drift")
                })
                || self
                    .package_rule(e)
                    .is_some_and(|n| self.derived.contains(&n));
        });
        reads
    }

    /// Whether `e` is a resource collection (exactly).
    fn source(&self, e: &Expr) -> Option<Src> {
        if let Expr::RefDot { refr, field, .. } = e {
            if var(refr) == Some("input") && field.1.as_string().is_ok_and(|f| &**f == "resources")
            {
                return Some(Src::Input);
            }
        }
        if let Some(v) = var(e) {
            return self.derived.contains(v).then(|| Src::Rule(v.to_string()));
        }
        self.package_rule(e)
            .filter(|n| self.derived.contains(n))
            .map(Src::Rule)
    }

    fn problem(&mut self, at: &Expr, what: String) {
        let s = at.span();
        self.problems.push((s.line, s.col, what));
    }

    fn check(mut self, m: &Module) -> Vec<(u32, u32, String)> {
        for imp in &m.imports {
            let Some((root, fields)) = ref_path(&imp.refr) else {
                continue;
            };
            let refused = root == "input"
                || (root == "data"
                    && (fields.first().is_none_or(|f| f == "drift")
                        || fields.starts_with(&self.package)
                        || self.package.starts_with(&fields)));
            if refused {
                let s = &imp.span;
                self.problems.push((
                    s.line,
                    s.col,
                    format!("has `{}` (an alias of the input: read input.resources directly, one resource at a time)", s.text()),
                ));
            }
        }
        for rule in &m.policy {
            self.check_rule(rule);
        }
        self.problems
    }

    fn check_rule(&mut self, rule: &Rule) {
        let name = rule_name(rule).unwrap_or("?").to_string();
        if self.derived.contains(&name) && self.reads_resources(rule) {
            let s = rule.span();
            let what = match rule {
                Rule::Spec {
                    head: RuleHead::Set { .. },
                    ..
                }
                | Rule::Default { .. } => None,
                Rule::Spec {
                    head: RuleHead::Func { .. },
                    ..
                } => Some(format!(
                    "defines the function `{name}` from input.resources (called on one resource, it would look at the other resources of its batch only)"
                )),
                Rule::Spec {
                    head: RuleHead::Compr { refr, .. },
                    ..
                } if matches!(refr.as_ref(), Expr::RefBrack { .. }) => Some(format!(
                    "defines the object rule `{name}` from input.resources (keys from different batches are never compared; make it a set rule `{name} contains x if ...`)"
                )),
                Rule::Spec { .. } => Some(format!(
                    "defines `{name}` as one value computed from input.resources: per batch it would describe that batch only (`not {name}`, a count or a threshold on it gives a false clean); make it a set rule (`{name} contains x if ...`) used element by element"
                )),
            };
            if let Some(what) = what {
                self.problems.push((s.line, s.col, what));
            }
        }
        match rule {
            Rule::Spec { head, bodies, .. } => {
                let head_values = |c: &mut Checker, it: &mut usize| match head {
                    RuleHead::Set { key, .. } => {
                        if let Some(k) = key {
                            c.walk(k, Within::Body, it, None);
                        }
                    }
                    RuleHead::Compr { assign, .. } | RuleHead::Func { assign, .. } => {
                        if let Some(a) = assign {
                            c.walk(&a.value, Within::Body, it, None);
                        }
                    }
                };
                if bodies.is_empty() {
                    head_values(self, &mut 0);
                }
                for b in bodies {
                    let mut it = 0;
                    head_values(self, &mut it);
                    if let Some(a) = &b.assign {
                        self.walk(&a.value, Within::Body, &mut it, None);
                    }
                    self.walk_query(&b.query, Within::Body, &mut it);
                }
            }
            Rule::Default { value, .. } => self.walk(value, Within::Body, &mut 0, None),
        }
    }

    fn walk_query(&mut self, q: &Query, within: Within, it: &mut usize) {
        for s in &q.stmts {
            match &s.literal {
                Literal::SomeVars { .. } => {}
                Literal::SomeIn {
                    key,
                    value,
                    collection,
                    ..
                } => {
                    match self.source(collection) {
                        Some(Src::Input) if key.is_some() => self.problem(
                            collection,
                            "reads the index of input.resources (`some i, r in input.resources`): a position within one batch".to_string(),
                        ),
                        Some(src) => self.iterate(collection, &src, within, it),
                        None => self.walk(collection, within, it, None),
                    }
                    if let Some(k) = key {
                        self.walk(k, within, it, None);
                    }
                    self.walk(value, within, it, None);
                }
                Literal::Expr { expr, .. } => self.walk(expr, within, it, None),
                Literal::NotExpr { expr, .. } => {
                    self.walk(expr, within.nested(Within::Not), it, None)
                }
                Literal::Every { domain, query, .. } => {
                    let inner = within.nested(Within::Every);
                    self.walk(domain, inner, it, None);
                    self.walk_query(query, inner, it);
                }
            }
            for w in &s.with_mods {
                self.walk(&w.refr, within, it, None);
                self.walk(&w.r#as, within, it, None);
            }
        }
    }

    /// An iteration over a resource collection, one element at a time.
    fn iterate(&mut self, at: &Expr, src: &Src, within: Within, it: &mut usize) {
        let src = src.shown();
        let what = match within {
            Within::Body => {
                *it += 1;
                if *it == 1 {
                    return;
                }
                format!("iterates {src} while the same rule body already iterates resources: a join of two resources, whose pairs in different batches are never compared")
            }
            Within::Comprehension => format!(
                "iterates {src} inside a comprehension (a set, array or count over all the resources)"
            ),
            Within::Every => format!("iterates {src} inside `every` (a test over all the resources)"),
            Within::Not => format!(
                "iterates {src} under `not` (a negation over all the resources: true on a batch without the resource sought)"
            ),
        };
        self.problem(at, what);
    }

    /// A resource collection used other than element by element.
    fn whole(&mut self, at: &Expr, src: &Src, within: Within, call: Option<&Expr>) {
        let shown = src.shown();
        let what = match (within, call) {
            (Within::Not, _) => format!(
                "negates {shown} with `not`: true on every batch without what it looks for, although another batch has it"
            ),
            (Within::Every, _) => format!("uses {shown} inside `every` (a test over all the resources)"),
            (Within::Comprehension, _) => format!(
                "uses {shown} inside a comprehension (a set, array or count over all the resources)"
            ),
            (Within::Body, Some(call)) => format!(
                "uses {shown} as a whole in `{}` (computed over the resources of one batch, not of the state)",
                quote(call)
            ),
            (Within::Body, None) => match src {
                Src::Input => "uses input.resources as a whole (not `some r in input.resources` or `input.resources[_]`)".to_string(),
                Src::Rule(n) => format!(
                    "uses {shown} as a whole (`{}`), not element by element (`some x in {n}`)",
                    quote(at)
                ),
            },
        };
        self.problem(at, what);
    }

    fn walk(&mut self, e: &Expr, within: Within, it: &mut usize, call: Option<&Expr>) {
        if let Some(src) = self.source(e) {
            self.whole(e, &src, within, call);
            return;
        }
        match e {
            Expr::RefBrack { refr, index, .. } => {
                if let Some(src) = self.source(refr) {
                    if var(index) == Some("_") {
                        self.iterate(e, &src, within, it);
                    } else {
                        self.problem(
                            e,
                            format!(
                                "indexes {} (`{}`): a position or key within one batch (iterate with `[_]`)",
                                src.shown(),
                                quote(e)
                            ),
                        );
                        self.walk(index, within, it, None);
                    }
                    return;
                }
            }
            Expr::RefDot { .. } => match ref_path(e) {
                Some(("input", fields)) => {
                    self.problem(
                        e,
                        format!(
                            "reads `input.{}`, other than through input.resources (a per-resource policy is given only the resources)",
                            fields.join(".")
                        ),
                    );
                    return;
                }
                Some(("data", fields)) => {
                    if fields.first().is_some_and(|f| f == "drift") {
                        self.problem(e, "reads data.drift (the drift report is not given to per-resource policies: it is read after the state)".to_string());
                    } else if self.package.starts_with(&fields) {
                        self.problem(e, format!("reads `{}`, this package's rules as a whole", quote(e)));
                    }
                    return;
                }
                _ => {}
            },
            Expr::Var { .. } => match var(e) {
                Some("input") => {
                    self.problem(e, "reads input other than through input.resources (input as a whole)".to_string());
                    return;
                }
                Some("data") => {
                    self.problem(e, "reads the whole data document (data.drift is not given to per-resource policies)".to_string());
                    return;
                }
                _ => {}
            },
            Expr::Call { params, .. } => {
                for p in params {
                    self.walk(p, within, it, Some(e));
                }
                return;
            }
            Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
                let inner = within.nested(Within::Comprehension);
                self.walk(term, inner, it, None);
                self.walk_query(query, inner, it);
                return;
            }
            Expr::ObjectCompr {
                key, value, query, ..
            } => {
                let inner = within.nested(Within::Comprehension);
                self.walk(key, inner, it, None);
                self.walk(value, inner, it, None);
                self.walk_query(query, inner, it);
                return;
            }
            _ => {}
        }
        for c in children(e) {
            self.walk(c, within, it, None);
        }
    }
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
