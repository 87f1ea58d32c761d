//! A plain data value (the `config` output, and spec keys kept verbatim),
//! with a YAML emitter whose output PyYAML and YAML 1.2 parsers both read
//! back as the same data.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::yaml::{Kind, Node, Scalar};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// Converts a YAML node, typing plain scalars as YAML 1.1 does.
    pub fn from_node(n: &Node) -> Value {
        match &n.kind {
            Kind::Scalar { .. } => match n.typed() {
                Some(Scalar::Null) => Value::Null,
                Some(Scalar::Bool(b)) => Value::Bool(b),
                Some(Scalar::Int(i)) => Value::Int(i),
                Some(Scalar::Float(f)) => Value::Float(f),
                Some(Scalar::Str(s)) => Value::Str(s.to_string()),
                None => Value::Null,
            },
            Kind::Seq(s) => Value::Seq(s.iter().map(Value::from_node).collect()),
            Kind::Map(m) => Value::Map(
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.text().unwrap_or_default().to_string(),
                            Value::from_node(v),
                        )
                    })
                    .collect(),
            ),
        }
    }

    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// Emits block-style YAML (a document without `---`).
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        match self {
            Value::Map(m) if !m.is_empty() => emit_map(&mut out, m, 0),
            Value::Seq(s) if !s.is_empty() => emit_seq(&mut out, s, 0),
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
        out
    }
}

fn emit_map(out: &mut String, m: &BTreeMap<String, Value>, indent: usize) {
    for (k, v) in m {
        out.push_str(&" ".repeat(indent));
        out.push_str(&quote(k));
        out.push(':');
        emit_child(out, v, indent + 2, false);
    }
}

fn emit_seq(out: &mut String, s: &[Value], indent: usize) {
    for v in s {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match v {
            // `- key: value` with the other keys under the first.
            Value::Map(m) if !m.is_empty() => {
                let mut first = true;
                for (k, item) in m {
                    if first {
                        out.push(' ');
                        first = false;
                    } else {
                        out.push_str(&" ".repeat(indent + 2));
                    }
                    out.push_str(&quote(k));
                    out.push(':');
                    emit_child(out, item, indent + 4, false);
                }
            }
            _ => emit_child(out, v, indent + 2, true),
        }
    }
}

fn emit_child(out: &mut String, v: &Value, indent: usize, in_seq: bool) {
    match v {
        Value::Map(m) if !m.is_empty() => {
            out.push('\n');
            emit_map(out, m, indent);
        }
        Value::Seq(s) if !s.is_empty() => {
            out.push('\n');
            // Sequences inside mappings sit at the key's indent, PyYAML style.
            emit_seq(out, s, if in_seq { indent } else { indent - 2 });
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => {
            if f.is_nan() {
                ".nan".into()
            } else if f.is_infinite() {
                if *f > 0.0 { ".inf" } else { "-.inf" }.into()
            } else {
                let s = format!("{f:?}");
                if s.contains('.') || s.contains('e') {
                    s
                } else {
                    format!("{s}.0")
                }
            }
        }
        Value::Str(s) => quote(s),
        Value::Map(_) => "{}".into(),
        Value::Seq(_) => "[]".into(),
    }
}

/// Quotes a string unless it reads back as the same string as a plain
/// scalar under both YAML 1.1 and 1.2.
pub fn quote(s: &str) -> String {
    let needs = s.is_empty()
        || !matches!(crate::yaml::resolve_plain(s), Scalar::Str(_))
        || s.parse::<f64>().is_ok()
        || matches!(
            s.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        )
        || s.starts_with([
            ' ', '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"',
            '%', '@', '`', '~', '.', '+',
        ])
        || s.ends_with([' ', ':'])
        || s.contains(": ")
        || s.contains(" #")
        || s.chars().any(|c| c.is_control() || c == '\u{feff}')
        || looks_sexagesimal(s);
    if !needs {
        return s.to_string();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            '\r' => q.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' => {
                let _ = write!(q, "\\u{:04x}", c as u32);
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// `1:20` style numbers, which YAML 1.1 reads as base 60.
fn looks_sexagesimal(s: &str) -> bool {
    let t = s.trim_start_matches(['-', '+']);
    t.contains(':')
        && t.split(':')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit() || b == b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn round_trip_through_our_loader() {
        let mut m = BTreeMap::new();
        for s in [
            "",
            "yes",
            "no",
            "1",
            "1.5",
            "a: b",
            "-x",
            "#c",
            "null",
            "~",
            "12:30",
            "8080:80",
            "ip:1:2/tcp",
            "x\ny",
            "tab\there",
            "quote\"d",
            "$$HOME",
            ".env",
            "1e3",
            "0x10",
        ] {
            m.insert(format!("k{s}"), Value::str(s));
        }
        m.insert("n".into(), Value::Null);
        m.insert("i".into(), Value::Int(-3));
        m.insert("b".into(), Value::Bool(true));
        m.insert("f".into(), Value::Float(2.0));
        m.insert("e".into(), Value::Map(BTreeMap::new()));
        m.insert(
            "s".into(),
            Value::Seq(vec![
                Value::str("a"),
                Value::Map(m.clone()),
                Value::Seq(vec![]),
            ]),
        );
        let v = Value::Map(m);
        let text = v.to_yaml();
        let back = crate::yaml::load(Path::new("t"), text.as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(Value::from_node(&back), v, "{text}");
    }
}
