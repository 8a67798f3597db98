//! The machinery behind the one declaration of the configuration keys in
//! `config/mod.rs`: what a key is (`Key`), the `settings!` macro that turns
//! a documented struct into its keys, its reader and its `Debug`, and the
//! merged sources the readers take values from (`Source`).

use std::collections::BTreeMap;

use url::Url;

use super::{ConfigError, ENV_PREFIX, invalid};

/// What a key falls back to when neither the file nor the environment sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// This text, as if the file had it.
    Value(&'static str),
    /// No value: what the key turns on stays off.
    Unset,
    /// Computed from another key or from the machine; the text says how,
    /// in the README's words.
    Derived(&'static str),
}

/// One configuration key, as `settings!` declares it.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The name in the file; in the environment, `COOP_IDP_` and the name in
    /// upper case.
    pub name: &'static str,
    pub fallback: Fallback,
    /// Inclusive bounds of a whole-number key.
    pub bounds: Option<(i64, i64)>,
    /// The value may carry a password, which `Debug` hides.
    pub secret: bool,
    /// The README's description (the field's doc comment).
    pub meaning: &'static str,
}

impl Key {
    /// The environment variable that sets this key.
    pub fn env_var(&self) -> String {
        format!("{ENV_PREFIX}{}", self.name.to_ascii_uppercase())
    }
}

/// Declares a configuration struct field by field. Each field carries its
/// doc comment (the README's meaning) and, in parentheses, its key, its
/// fallback and how it is read:
/// - `int(MIN, MAX)`: a whole number within inclusive bounds;
/// - `int(MIN, MAX) or FUNCTION`: the same, FUNCTION's value when unset;
/// - `FUNCTION` (or `secret FUNCTION`, for a URL whose password `Debug`
///   hides): `FUNCTION(&Source, key)` reads and checks the value;
/// - `(group)` instead: a nested struct declared the same way.
///
/// From it come the struct, `collect_keys` (every key, in order), `read`
/// (the typed values from a `Source`) and `Debug`.
macro_rules! settings {
    (@key $keys:ident, $ty:ty, (group), $meaning:expr) => {
        <$ty>::collect_keys($keys)
    };
    (@key $keys:ident, $ty:ty, ($name:literal, $fallback:expr, $($rule:tt)+), $meaning:expr) => {
        $keys.push($crate::config::table::Key {
            name: $name,
            fallback: $fallback,
            bounds: $crate::config::table::settings!(@bounds $($rule)+),
            secret: $crate::config::table::settings!(@secret $($rule)+),
            meaning: $meaning,
        })
    };
    (@bounds int($min:expr, $max:expr) $($rest:tt)*) => { Some(($min, $max)) };
    (@bounds $($rule:tt)+) => { None };
    (@secret secret $reader:ident) => { true };
    (@secret $($rule:tt)+) => { false };
    (@read $source:ident, $ty:ty, (group)) => { <$ty>::read($source)? };
    (@read $source:ident, $ty:ty, ($name:literal, $fallback:expr, int($min:expr, $max:expr))) => {
        $source.int($name)?
    };
    (@read $source:ident, $ty:ty, ($name:literal, $fallback:expr, int($min:expr, $max:expr) or $unset:ident)) => {
        match $source.get($name) {
            Some(_) => $source.int($name)?,
            None => $unset(),
        }
    };
    (@read $source:ident, $ty:ty, ($name:literal, $fallback:expr, secret $reader:ident)) => {
        $reader($source, $name)?
    };
    (@read $source:ident, $ty:ty, ($name:literal, $fallback:expr, $reader:ident)) => {
        $reader($source, $name)?
    };
    (@show $value:expr, ($name:literal, $fallback:expr, secret $reader:ident)) => {
        &$crate::config::table::Hidden(&$value)
    };
    (@show $value:expr, $spec:tt) => { &$value };
    (
        $(#[$meta:meta])*
        pub struct $struct:ident {
            $(
                $(#[doc = $doc:literal])*
                pub $field:ident: $ty:ty = $spec:tt,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $struct {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl $struct {
            /// Appends this struct's keys (its groups' included) in declaration order.
            pub(crate) fn collect_keys(keys: &mut Vec<$crate::config::table::Key>) {
                $( $crate::config::table::settings!(@key keys, $ty, $spec, concat!($($doc),*)); )*
            }

            pub(crate) fn read(source: &$crate::config::table::Source) -> Result<Self, $crate::config::ConfigError> {
                Ok($struct { $( $field: $crate::config::table::settings!(@read source, $ty, $spec), )* })
            }
        }

        impl std::fmt::Debug for $struct {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($struct))
                    $( .field(stringify!($field), $crate::config::table::settings!(@show self.$field, $spec)) )*
                    .finish()
            }
        }
    };
}

pub(crate) use settings;

/// The values the file and the environment give, over the fallbacks.
pub struct Source {
    keys: Vec<Key>,
    raw: BTreeMap<String, String>,
}

impl Source {
    /// Merges a TOML text and environment pairs (the environment wins);
    /// `keys` are the keys there are.
    pub fn new(keys: Vec<Key>, toml_text: Option<&str>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut raw = BTreeMap::new();
        let known = |name: &str| keys.iter().any(|k| k.name == name);
        if let Some(text) = toml_text {
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| syntax_error(text, &e))?;
            for (name, value) in table {
                if !known(&name) {
                    let names = keys.iter().map(|k| k.name.to_string());
                    return Err(invalid(&name, format!("unknown key{}", did_you_mean(&name, names))));
                }
                let as_text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Array(items) => items
                        .into_iter()
                        .map(|v| match v {
                            toml::Value::String(s) => Ok(s),
                            _ => Err(invalid(&name, "expected a list of strings")),
                        })
                        .collect::<Result<Vec<_>, _>>()?
                        .join(","),
                    other => return Err(invalid(&name, format!("unexpected value {other}"))),
                };
                raw.insert(name, as_text);
            }
        }
        for (var, value) in env {
            if let Some(name) = var.strip_prefix(ENV_PREFIX) {
                let name = name.to_ascii_lowercase();
                if known(&name) {
                    raw.insert(name, value.clone());
                } else if !is_other_variable(var) {
                    let names = keys.iter().map(Key::env_var);
                    return Err(ConfigError::UnknownVariable { name: var.clone(), hint: did_you_mean(var, names) });
                }
            }
        }
        Ok(Source { keys, raw })
    }

    /// The text of `name`: as set, else its fallback value (`None` when
    /// unset or derived).
    pub fn get(&self, name: &str) -> Option<String> {
        self.raw.get(name).cloned().or_else(|| match self.key(name)?.fallback {
            Fallback::Value(v) => Some(v.to_string()),
            Fallback::Unset | Fallback::Derived(_) => None,
        })
    }

    /// A whole number within the key's bounds, as the field's type.
    pub fn int<T: TryFrom<i64>>(&self, name: &str) -> Result<T, ConfigError> {
        let v = self.get(name).unwrap_or_default();
        let n: i64 = v.trim().parse().map_err(|_| invalid(name, format!("`{v}` is not a whole number")))?;
        if let Some((min, max)) = self.key(name).and_then(|k| k.bounds)
            && (n < min || n > max)
        {
            return Err(invalid(name, format!("{n} is outside {min}..={max}")));
        }
        T::try_from(n).map_err(|_| invalid(name, format!("{n} is out of range")))
    }

    fn key(&self, name: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.name == name)
    }
}

/// The variables under `COOP_IDP_` that are not configuration keys: the log
/// filter, and the prefixes the tests and benchmarks keep for themselves
/// (README "Configuration"). Any other one is a typo, and stops start-up.
pub const OTHER_VARIABLES: &[&str] = &["COOP_IDP_LOG"];
pub const RESERVED_PREFIXES: &[&str] = &["COOP_IDP_TEST_", "COOP_IDP_BENCH_"];

fn is_other_variable(var: &str) -> bool {
    OTHER_VARIABLES.contains(&var) || RESERVED_PREFIXES.iter().any(|p| var.starts_with(p))
}

/// A TOML syntax error with its place: line and column (from 1) of the
/// first character the parser refused.
fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let at = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    ConfigError::Syntax { path: "coop-idp.toml".into(), line, column, reason: e.message().to_string() }
}

/// `; did you mean `X`?` when one of `names` is at most two edits away.
fn did_you_mean(typed: &str, names: impl Iterator<Item = String>) -> String {
    let typed = typed.to_ascii_lowercase();
    names
        .map(|n| (edits(&typed, &n.to_ascii_lowercase()), n))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| format!("; did you mean `{n}`?"))
        .unwrap_or_default()
}

/// Levenshtein distance (names are short: one row is enough).
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb)).min(row[j] + 1).min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// A URL (or an unset one) shown with its password replaced by `***`.
pub struct Hidden<'a, T>(pub &'a T);

impl std::fmt::Debug for Hidden<'_, String> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&without_password(self.0), f)
    }
}

impl std::fmt::Debug for Hidden<'_, Option<String>> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0.as_deref().map(without_password), f)
    }
}

/// A URL with its password replaced by `***` (and one that does not parse
/// replaced whole, since it cannot be cut safely).
pub(crate) fn without_password(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "(unparsable URL, not shown)".to_string(),
    }
}

/// The README's table of keys (section "Configuration"), one row a key.
pub fn markdown(keys: &[Key]) -> String {
    let mut out = String::from("| key | default | accepted | meaning |\n|---|---|---|---|\n");
    for key in keys {
        let fallback = match key.fallback {
            Fallback::Value("") => "empty".to_string(),
            Fallback::Value(v) => format!("`{v}`"),
            Fallback::Unset => "unset".to_string(),
            Fallback::Derived(how) => how.to_string(),
        };
        let accepted = key.bounds.map(|(min, max)| format!("{min} to {max}")).unwrap_or_default();
        let meaning = key.meaning.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|");
        out.push_str(&format!("| `{}` | {fallback} | {accepted} | {meaning} |\n", key.name));
    }
    out
}
