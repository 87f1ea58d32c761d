//! Instruction flags (`--from=`, `--link`, ...) with the rules of buildkit's
//! `instructions/bflag.go`.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--name`, `--name=true|false`.
    Bool,
    /// `--name=value`, at most once.
    String,
    /// `--name=value`, repeatable.
    Strings,
    /// A flag newer Docker versions know that berth does not implement.
    Unsupported,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Bool(bool),
    String(String),
    Strings(Vec<String>),
}

/// The flags given to one instruction.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: HashMap<&'static str, Value>,
}

impl Flags {
    /// Checks `words` against `spec`; fails on unknown, duplicate or
    /// malformed flags.
    pub(crate) fn parse(
        words: &[String],
        spec: &[(&'static str, FlagKind)],
    ) -> Result<Flags, String> {
        let mut flags = Flags::default();
        for word in words {
            if word == "--" {
                break;
            }
            let Some(body) = word.strip_prefix("--") else {
                return Err(format!("arg should start with -- : {word}"));
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let shown = format!("--{name}");
            let Some(&(key, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                return Err(format!("unknown flag: {shown}"));
            };
            if kind != FlagKind::Strings && flags.values.contains_key(key) {
                return Err(format!("duplicate flag specified: {shown}"));
            }
            let missing = || format!("missing a value on flag: {shown}");
            match kind {
                FlagKind::Unsupported => return Err(format!("unsupported flag: {shown}")),
                FlagKind::Bool => {
                    let b = match value.map(str::to_ascii_lowercase).as_deref() {
                        None => true,
                        Some("") => return Err(missing()),
                        Some("true") => true,
                        Some("false") => false,
                        Some(_) => {
                            return Err(format!(
                                "expecting boolean value for flag {shown}, not: {}",
                                value.unwrap_or_default()
                            ))
                        }
                    };
                    flags.values.insert(key, Value::Bool(b));
                }
                FlagKind::String => {
                    let v = value.ok_or_else(missing)?;
                    flags.values.insert(key, Value::String(v.to_string()));
                }
                FlagKind::Strings => {
                    let v = value.ok_or_else(missing)?;
                    match flags
                        .values
                        .entry(key)
                        .or_insert_with(|| Value::Strings(Vec::new()))
                    {
                        Value::Strings(list) => list.push(v.to_string()),
                        _ => unreachable!("only Strings flags are stored as lists"),
                    }
                }
            }
        }
        Ok(flags)
    }

    pub(crate) fn bool(&self, name: &str) -> bool {
        matches!(self.values.get(name), Some(Value::Bool(true)))
    }

    pub(crate) fn string(&self, name: &str) -> Option<String> {
        match self.values.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        }
    }

    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        match self.values.get(name) {
            Some(Value::Strings(v)) => v.clone(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &[(&str, FlagKind)] = &[
        ("from", FlagKind::String),
        ("link", FlagKind::Bool),
        ("mount", FlagKind::Strings),
        ("parents", FlagKind::Unsupported),
    ];

    fn parse(words: &[&str]) -> Result<Flags, String> {
        let words: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        Flags::parse(&words, SPEC)
    }

    #[test]
    fn values() {
        let f = parse(&["--from=builder", "--link", "--mount=a", "--mount=b"]).unwrap();
        assert_eq!(f.string("from").as_deref(), Some("builder"));
        assert!(f.bool("link"));
        assert_eq!(f.strings("mount"), vec!["a", "b"]);
        assert!(!parse(&["--link=FALSE"]).unwrap().bool("link"));
        assert!(parse(&["--link=True"]).unwrap().bool("link"));
        assert_eq!(
            parse(&["--from="]).unwrap().string("from").as_deref(),
            Some("")
        );
        assert!(parse(&["--", "--bogus"]).is_ok());
    }

    #[test]
    fn errors() {
        for (words, msg) in [
            (&["--bogus=1"][..], "unknown flag: --bogus"),
            (
                &["--from=a", "--from=b"],
                "duplicate flag specified: --from",
            ),
            (&["--from"], "missing a value on flag: --from"),
            (&["--link="], "missing a value on flag: --link"),
            (
                &["--link=yes"],
                "expecting boolean value for flag --link, not: yes",
            ),
            (&["--mount"], "missing a value on flag: --mount"),
            (&["--parents"], "unsupported flag: --parents"),
        ] {
            assert_eq!(parse(words).err().as_deref(), Some(msg), "{words:?}");
        }
    }
}
