//! The environment variables the remote-state sources read (issue 16): an
//! immutable snapshot, taken from the process once per collection in
//! production ([`Env::process`]) and built from pairs in tests
//! ([`Env::from_pairs`]), so that no test has to change the process
//! environment. Values may be secrets: `Debug` shows names only.
//!
//! aws-config still reads a few variables from the process itself (see
//! docs/remote-state.md, "Environment").

use std::collections::BTreeMap;
use std::fmt;

/// A snapshot of environment variables. Empty values count as unset.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The process environment, now (variables whose name or value is not
    /// UTF-8 are left out, as `std::env::var` would not read them).
    pub fn process() -> Self {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An environment of exactly these variables (tests, embedding).
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `name`; `None` when unset or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// [`Env::get`] as an owned value.
    pub fn var(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    /// The set (non-empty) variables whose name starts with `prefix`, by name.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.vars
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("names", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_unset_and_only_given_pairs_exist() {
        let env = Env::from_pairs([("A", "1"), ("EMPTY", ""), ("B", " x ")]);
        assert_eq!(env.get("A"), Some("1"));
        assert_eq!(env.get("EMPTY"), None);
        assert_eq!(env.get("MISSING"), None);
        assert_eq!(
            env.var("B").as_deref(),
            Some(" x "),
            "values are not trimmed"
        );
        // Nothing of the process leaks into an injected environment.
        assert_eq!(Env::from_pairs::<&str, &str>([]).get("PATH"), None);
    }

    #[test]
    fn prefix_lists_set_variables_in_name_order() {
        let env = Env::from_pairs([
            ("AWS_REGION", "eu-west-1"),
            ("AWS_PROFILE", ""),
            ("AWS_ACCESS_KEY_ID", "k"),
            ("AWSX", "no"),
            ("HOME", "/h"),
        ]);
        let got: Vec<_> = env.with_prefix("AWS_").collect();
        assert_eq!(
            got,
            vec![("AWS_ACCESS_KEY_ID", "k"), ("AWS_REGION", "eu-west-1")]
        );
    }

    #[test]
    fn debug_shows_names_not_values() {
        let env = Env::from_pairs([("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")]);
        let d = format!("{env:?}");
        assert!(
            d.contains("AWS_SECRET_ACCESS_KEY") && !d.contains("s3cr3t"),
            "{d}"
        );
    }

    #[test]
    fn the_process_snapshot_holds_the_process_variables() {
        // PATH is set for every test run (cargo sets it); read-only check.
        let path = std::env::var("PATH").ok().filter(|p| !p.is_empty());
        assert_eq!(Env::process().var("PATH"), path);
    }
}
