//! Variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?error}`, `${VAR?error}` and `$$`.

use std::collections::BTreeMap;

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpError {
    /// `${VAR:?msg}` / `${VAR?msg}` with VAR unset (or empty for `:?`).
    Required { var: String, msg: String },
    /// A `$` not followed by a name, `{`, or `$`; or an unclosed `${`.
    Syntax(String),
}

/// Most nested `${A:-${B:-...}}` levels accepted in a default.
const MAX_NESTING: usize = 16;

/// Interpolates `s` from `env`. Variables that are unset and have no default
/// become empty; their names are pushed to `unset` (for a warning).
pub fn interpolate(
    s: &str,
    env: &BTreeMap<String, String>,
    unset: &mut Vec<String>,
) -> Result<String, InterpError> {
    interpolate_depth(s, env, unset, 0)
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

fn interpolate_depth(
    s: &str,
    env: &BTreeMap<String, String>,
    unset: &mut Vec<String>,
    depth: usize,
) -> Result<String, InterpError> {
    if depth > MAX_NESTING {
        return Err(InterpError::Syntax(format!(
            "more than {MAX_NESTING} nested substitutions"
        )));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let mut chars = after.chars();
        match chars.next() {
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('{') => {
                let body_start = 1;
                let end = find_close(&after[body_start..]).ok_or_else(|| {
                    InterpError::Syntax(format!("unclosed '${{' in {s:?}"))
                })?;
                let body = &after[body_start..body_start + end];
                out.push_str(&substitute(body, env, unset, depth, s)?);
                rest = &after[body_start + end + 1..];
            }
            Some(c) if is_name_start(c) => {
                let len = after
                    .char_indices()
                    .find(|&(_, c)| !is_name_char(c))
                    .map_or(after.len(), |(i, _)| i);
                let name = &after[..len];
                match env.get(name) {
                    Some(v) => out.push_str(v),
                    None => unset.push(name.to_string()),
                }
                rest = &after[len..];
            }
            _ => {
                return Err(InterpError::Syntax(format!(
                    "invalid interpolation format in {s:?}: '$' must be followed by a name, '{{' or '$'"
                )))
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Index of the `}` closing a `${`, counting nested `${...}`.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'$' if b.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if b.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn substitute(
    body: &str,
    env: &BTreeMap<String, String>,
    unset: &mut Vec<String>,
    depth: usize,
    whole: &str,
) -> Result<String, InterpError> {
    let name_len = body
        .char_indices()
        .find(|&(_, c)| !is_name_char(c))
        .map_or(body.len(), |(i, _)| i);
    let name = &body[..name_len];
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(InterpError::Syntax(format!(
            "invalid interpolation format in {whole:?}: bad variable name in '${{{body}}}'"
        )));
    }
    let op = &body[name_len..];
    let value = env.get(name);
    let (colon, rest) = match op.strip_prefix(':') {
        Some(r) => (true, r),
        None => (false, op),
    };
    if op.is_empty() {
        return Ok(match value {
            Some(v) => v.clone(),
            None => {
                unset.push(name.to_string());
                String::new()
            }
        });
    }
    // With ':' an empty value counts as unset.
    let missing = match value {
        None => true,
        Some(v) => colon && v.is_empty(),
    };
    if let Some(default) = rest.strip_prefix('-') {
        return if missing {
            interpolate_depth(default, env, unset, depth + 1)
        } else {
            Ok(value.cloned().unwrap_or_default())
        };
    }
    if let Some(msg) = rest.strip_prefix('?') {
        return if missing {
            Err(InterpError::Required {
                var: name.to_string(),
                msg: interpolate_depth(msg, env, unset, depth + 1)?,
            })
        } else {
            Ok(value.cloned().unwrap_or_default())
        };
    }
    if let Some(alt) = rest.strip_prefix('+') {
        return if missing {
            Ok(String::new())
        } else {
            interpolate_depth(alt, env, unset, depth + 1)
        };
    }
    Err(InterpError::Syntax(format!(
        "invalid interpolation format in {whole:?}: '${{{body}}}'"
    )))
}

/// Parses a `.env` / `--env-file` file: `KEY=VALUE` lines, `#` comments,
/// optional `export `, and values in single or double quotes.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, (usize, String)> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), v),
            None => (line, ""),
        };
        if k.is_empty() || k.chars().any(char::is_whitespace) {
            return Err((n + 1, format!("invalid line {line:?}")));
        }
        let v = v.trim_start();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            v[1..v.len() - 1].to_string()
        } else {
            v.trim_end().to_string()
        };
        out.insert(k.to_string(), v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [("A", "alpha"), ("EMPTY", ""), ("N", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn i(s: &str) -> Result<String, InterpError> {
        interpolate(s, &env(), &mut Vec::new())
    }

    #[test]
    fn forms() {
        assert_eq!(i("${A}").unwrap(), "alpha");
        assert_eq!(i("x$A-y").unwrap(), "xalpha-y");
        assert_eq!(i("$A$N").unwrap(), "alpha3");
        assert_eq!(i("${NOPE:-def}").unwrap(), "def");
        assert_eq!(i("${EMPTY:-def}").unwrap(), "def");
        assert_eq!(i("${EMPTY-def}").unwrap(), "");
        assert_eq!(i("${NOPE-def}").unwrap(), "def");
        assert_eq!(i("${A:-def}").unwrap(), "alpha");
        assert_eq!(i("$$A $${A}").unwrap(), "$A ${A}");
        assert_eq!(i("${NOPE:-${A}}").unwrap(), "alpha");
        assert_eq!(i("${NOPE:-a b:c}").unwrap(), "a b:c");
        assert_eq!(i("no vars").unwrap(), "no vars");
        assert_eq!(i("${A:+set}${NOPE:+x}").unwrap(), "set");
    }

    #[test]
    fn unset_is_empty_and_reported() {
        let mut unset = Vec::new();
        assert_eq!(interpolate("a${X}b$Y", &env(), &mut unset).unwrap(), "ab");
        assert_eq!(unset, vec!["X", "Y"]);
    }

    #[test]
    fn required() {
        assert_eq!(
            i("${NOPE:?must set}"),
            Err(InterpError::Required {
                var: "NOPE".into(),
                msg: "must set".into()
            })
        );
        assert!(i("${EMPTY:?e}").is_err());
        assert_eq!(i("${EMPTY?e}").unwrap(), "");
        assert!(i("${NOPE?e}").is_err());
        assert_eq!(i("${A:?e}").unwrap(), "alpha");
    }

    #[test]
    fn syntax_errors() {
        for bad in ["${", "${A", "$", "a $ b", "${}", "${1A}", "${A!x}", "$-"] {
            assert!(matches!(i(bad), Err(InterpError::Syntax(_))), "{bad}");
        }
    }

    #[test]
    fn hostile_inputs_are_bounded() {
        let deep = "${NOPE:-".repeat(10_000) + &"}".repeat(10_000);
        assert!(i(&deep).is_err());
        let long = "$A".repeat(100_000);
        assert_eq!(i(&long).unwrap().len(), 500_000);
        let unclosed = "${".repeat(100_000);
        assert!(i(&unclosed).is_err());
    }

    #[test]
    fn env_file() {
        let m = parse_env_file("# c\nA=1\nexport B = two words \nC=\"q=x\"\nD\n").unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "q=x");
        assert_eq!(m["D"], "");
        assert!(parse_env_file("bad key=1\n").is_err());
    }
}
