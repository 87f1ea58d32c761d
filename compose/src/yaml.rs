//! A YAML tree with source positions, built from yaml-rust2's event parser.
//!
//! Compose files are untrusted: the loader bounds nesting depth, the total
//! number of nodes after alias expansion ("billion laughs"), and the input
//! size. Anchors, aliases and merge keys (`<<`) are resolved here, so later
//! stages see a plain tree. Scalars keep their text and whether they were
//! plain (unquoted): typing (int, bool, null) is decided by the schema
//! position that reads them, as YAML 1.1 (PyYAML, docker-compose) would.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

use crate::error::ComposeError;

/// Deepest nesting of sequences/mappings accepted.
pub const MAX_DEPTH: usize = 128;
/// Most nodes a document may hold once aliases are expanded; every 64
/// bytes of scalar text count as one more node, so this also bounds the
/// expanded size (about 64 MiB).
pub const MAX_NODES: usize = 1_000_000;
const BYTES_PER_NODE: usize = 64;
/// Largest compose file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// A position in a source file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub line: usize,
    pub col: usize,
}

/// One YAML node with where it started.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub mark: Mark,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Text and whether it was plain (unquoted, so subject to typing).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Keys are scalars (complex keys are rejected); order kept.
    Map(Vec<(Node, Node)>),
}

/// A scalar's YAML 1.1 type, as PyYAML resolves a plain scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl Node {
    pub fn scalar(text: impl Into<String>, mark: Mark) -> Node {
        Node {
            mark,
            kind: Kind::Scalar {
                text: text.into(),
                plain: false,
            },
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The raw text of a scalar node.
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Looks a key up in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.text() == Some(key))
            .map(|(_, v)| v)
    }

    /// The YAML 1.1 type of a scalar node (None for collections).
    pub fn typed(&self) -> Option<Scalar<'_>> {
        match &self.kind {
            Kind::Scalar { text, plain } => Some(if *plain {
                resolve_plain(text)
            } else {
                Scalar::Str(text)
            }),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.typed(), Some(Scalar::Null))
    }

    fn count(&self) -> usize {
        match &self.kind {
            Kind::Scalar { text, .. } => 1 + text.len() / BYTES_PER_NODE,
            Kind::Seq(s) => 1 + s.iter().map(Node::count).sum::<usize>(),
            Kind::Map(m) => 1 + m.iter().map(|(k, v)| k.count() + v.count()).sum::<usize>(),
        }
    }
}

/// YAML 1.1 resolution of a plain scalar (the subset compose files meet).
pub fn resolve_plain(text: &str) -> Scalar<'_> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => {
            // PyYAML 1.1 does not resolve y/Y; keep them strings.
            if text == "y" || text == "Y" {
                return Scalar::Str(text);
            }
            return Scalar::Bool(true);
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            return Scalar::Bool(false)
        }
        _ => {}
    }
    if let Some(i) = parse_int(text) {
        return Scalar::Int(i);
    }
    if is_float(text) {
        if let Ok(f) = text.replace('_', "").parse::<f64>() {
            return Scalar::Float(f);
        }
    }
    Scalar::Str(text)
}

fn parse_int(text: &str) -> Option<i64> {
    let (neg, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if body.is_empty() {
        return None;
    }
    let clean: String = body.chars().filter(|&c| c != '_').collect();
    if clean.is_empty() {
        return None;
    }
    let v = if let Some(h) = clean.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(b) = clean.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if clean.len() > 1 && clean.starts_with('0') {
        i64::from_str_radix(&clean[1..], 8).ok()?
    } else if clean.bytes().all(|b| b.is_ascii_digit()) && !body.starts_with('_') {
        clean.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

fn is_float(text: &str) -> bool {
    // [-+]?([0-9][0-9_]*)?\.[0-9.]*([eE][-+][0-9]+)? and .inf/.nan forms
    let t = text.trim_start_matches(['-', '+']);
    if matches!(t, ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let (mant, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    if mant.matches('.').count() != 1 || mant.starts_with('_') {
        return false;
    }
    if !mant
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'_')
    {
        return false;
    }
    if !mant.bytes().any(|b| b.is_ascii_digit()) && mant != "." {
        return false;
    }
    if mant == "." {
        return false;
    }
    match exp {
        None => true,
        Some(e) => {
            let e = e
                .strip_prefix('-')
                .or_else(|| e.strip_prefix('+'))
                .unwrap_or("");
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        }
    }
}

enum Frame {
    Seq {
        anchor: usize,
        mark: Mark,
        items: Vec<Node>,
    },
    Map {
        anchor: usize,
        mark: Mark,
        items: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

/// Parses one YAML document from bytes. An empty document gives None.
pub fn load(file: &Path, bytes: &[u8]) -> Result<Option<Node>, ComposeError> {
    let fname = file.to_path_buf();
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ComposeError::Limit {
            file: fname,
            what: format!("file larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| ComposeError::NotUtf8 {
        file: fname.clone(),
        offset: e.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut total = 0usize;
    let mut root: Option<Node> = None;
    let mut docs = 0usize;
    let syntax = |line: usize, col: usize, msg: String| ComposeError::Syntax {
        file: file.to_path_buf(),
        line,
        col,
        msg,
    };
    loop {
        let (ev, m) = parser.next_token().map_err(|e| {
            syntax(
                e.marker().line(),
                e.marker().col() + 1,
                e.info().to_string(),
            )
        })?;
        let mark = Mark {
            line: m.line(),
            col: m.col() + 1,
        };
        let (node, anchor) = match ev {
            Event::StreamEnd => break,
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => continue,
            Event::DocumentStart => {
                docs += 1;
                if docs > 1 {
                    return Err(syntax(
                        mark.line,
                        mark.col,
                        "expected a single document in the stream".into(),
                    ));
                }
                continue;
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(ComposeError::Limit {
                        file: fname,
                        what: format!(
                            "nesting deeper than {MAX_DEPTH} levels (line {})",
                            mark.line
                        ),
                    });
                }
                total += 1;
                stack.push(if matches!(ev, Event::SequenceStart(..)) {
                    Frame::Seq {
                        anchor,
                        mark,
                        items: Vec::new(),
                    }
                } else {
                    Frame::Map {
                        anchor,
                        mark,
                        items: Vec::new(),
                        key: None,
                    }
                });
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    anchor,
                    mark,
                    items,
                }) => (
                    Node {
                        mark,
                        kind: Kind::Seq(items),
                    },
                    anchor,
                ),
                _ => return Err(syntax(mark.line, mark.col, "unbalanced sequence".into())),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    anchor,
                    mark: start,
                    items,
                    ..
                }) => (
                    Node {
                        mark: start,
                        kind: Kind::Map(apply_merge(file, items)?),
                    },
                    anchor,
                ),
                _ => return Err(syntax(mark.line, mark.col, "unbalanced mapping".into())),
            },
            Event::Scalar(text, style, anchor, _tag) => {
                total += 1 + text.len() / BYTES_PER_NODE;
                (
                    Node {
                        mark,
                        kind: Kind::Scalar {
                            text,
                            plain: style == TScalarStyle::Plain,
                        },
                    },
                    anchor,
                )
            }
            Event::Alias(id) => {
                let (node, size) = anchors
                    .get(&id)
                    .ok_or_else(|| syntax(mark.line, mark.col, "unknown alias".into()))?;
                total = total.saturating_add(*size);
                if total > MAX_NODES {
                    return Err(ComposeError::Limit {
                        file: fname,
                        what: format!(
                            "more than {MAX_NODES} nodes after expanding aliases (line {})",
                            mark.line
                        ),
                    });
                }
                (node.clone(), 0)
            }
        };
        if total > MAX_NODES {
            return Err(ComposeError::Limit {
                file: fname,
                what: format!("more than {MAX_NODES} nodes (line {})", mark.line),
            });
        }
        if anchor > 0 {
            let size = node.count();
            anchors.insert(anchor, (node.clone(), size));
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { items, key, .. }) => match key.take() {
                None => {
                    if node.text().is_none() {
                        return Err(syntax(
                            node.mark.line,
                            node.mark.col,
                            "mapping keys must be scalars".into(),
                        ));
                    }
                    *key = Some(node);
                }
                Some(k) => items.push((k, node)),
            },
        }
    }
    Ok(root)
}

/// Resolves `<<` merge keys and rejects duplicate keys.
fn apply_merge(file: &Path, items: Vec<(Node, Node)>) -> Result<Vec<(Node, Node)>, ComposeError> {
    let mut seen: HashSet<String> = HashSet::with_capacity(items.len());
    let mut merged_seen: HashSet<String> = HashSet::new();
    let has_merge = items
        .iter()
        .any(|(k, _)| matches!(&k.kind, Kind::Scalar { text, plain: true } if text == "<<"));
    let mut out: Vec<(Node, Node)> = Vec::with_capacity(items.len());
    let mut merged: Vec<(Node, Node)> = Vec::new();
    for (k, v) in items {
        if matches!(&k.kind, Kind::Scalar { text, plain: true } if text == "<<") {
            let sources: Vec<Node> = match v.kind {
                Kind::Map(_) => vec![v],
                Kind::Seq(s) => s,
                _ => {
                    return Err(ComposeError::Invalid {
                        file: file.to_path_buf(),
                        line: k.mark.line,
                        col: k.mark.col,
                        key: "<<".into(),
                        msg: "a merge key takes a mapping or a list of mappings".into(),
                    })
                }
            };
            for src in sources {
                let Kind::Map(entries) = src.kind else {
                    return Err(ComposeError::Invalid {
                        file: file.to_path_buf(),
                        line: src.mark.line,
                        col: src.mark.col,
                        key: "<<".into(),
                        msg: "a merge key takes a mapping or a list of mappings".into(),
                    });
                };
                for (mk, mv) in entries {
                    // The first source to give a key wins.
                    if merged_seen.insert(mk.text().unwrap_or_default().to_string()) {
                        merged.push((mk, mv));
                    }
                }
            }
            continue;
        }
        if !seen.insert(k.text().unwrap_or_default().to_string()) {
            return Err(ComposeError::Invalid {
                file: file.to_path_buf(),
                line: k.mark.line,
                col: k.mark.col,
                key: k.text().unwrap_or_default().to_string(),
                msg: "duplicate key".into(),
            });
        }
        out.push((k, v));
    }
    if has_merge {
        for (mk, mv) in merged {
            if !seen.contains(mk.text().unwrap_or_default()) {
                out.push((mk, mv));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Option<Node>, ComposeError> {
        load(Path::new("t.yml"), s.as_bytes())
    }

    #[test]
    fn merge_keys_and_positions() {
        let n = p("base: &b\n  a: 1\n  b: 2\nx:\n  <<: *b\n  b: 3\n")
            .unwrap()
            .unwrap();
        let x = n.get("x").unwrap();
        assert_eq!(x.get("a").unwrap().typed(), Some(Scalar::Int(1)));
        assert_eq!(x.get("b").unwrap().typed(), Some(Scalar::Int(3)));
        assert_eq!(x.get("b").unwrap().mark.line, 6);
    }

    #[test]
    fn billion_laughs_is_bounded() {
        let mut s = String::from("a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n");
        for i in 1..12 {
            let p = i - 1;
            s.push_str(&format!(
                "a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
            ));
        }
        assert!(matches!(p(&s), Err(ComposeError::Limit { .. })));
    }

    #[test]
    fn big_aliased_strings_are_bounded() {
        let big = "x".repeat(1 << 20);
        let mut s = format!("a: &a {big}\nb: [");
        s.push_str(&vec!["*a"; 200].join(","));
        s.push_str("]\n");
        assert!(matches!(p(&s), Err(ComposeError::Limit { .. })));
    }

    #[test]
    fn wide_mappings_and_late_duplicates() {
        let s: String = (0..200_000).map(|i| format!("k{i}: v\n")).collect();
        let n = p(&s).unwrap().unwrap();
        assert_eq!(n.as_map().unwrap().len(), 200_000);
        let dup = s + "k7: again\n";
        assert!(matches!(
            p(&dup),
            Err(ComposeError::Invalid { line: 200_001, .. })
        ));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let s = "[".repeat(100_000) + &"]".repeat(100_000);
        let r = p(&s);
        assert!(
            matches!(
                r,
                Err(ComposeError::Limit { .. }) | Err(ComposeError::Syntax { .. })
            ),
            "{r:?}"
        );
        let s = "a:\n".to_string()
            + &(1..200)
                .map(|i| format!("{}b{i}:\n", " ".repeat(i)))
                .collect::<String>();
        let r = p(&s);
        assert!(matches!(r, Err(ComposeError::Limit { .. })), "{r:?}");
    }

    #[test]
    fn non_utf8_and_long_strings() {
        assert!(matches!(
            load(Path::new("t.yml"), b"a: \xff\xfe\n"),
            Err(ComposeError::NotUtf8 { offset: 3, .. })
        ));
        let long = "x".repeat(2 << 20);
        let n = p(&format!("a: {long}\n")).unwrap().unwrap();
        assert_eq!(n.get("a").unwrap().text().unwrap().len(), long.len());
    }

    #[test]
    fn duplicate_keys_rejected() {
        let e = p("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(matches!(e, ComposeError::Invalid { line: 3, ref key, .. } if key == "a"));
    }

    #[test]
    fn typing_follows_yaml_1_1() {
        assert_eq!(resolve_plain("yes"), Scalar::Bool(true));
        assert_eq!(resolve_plain("off"), Scalar::Bool(false));
        assert_eq!(resolve_plain("0x1f"), Scalar::Int(31));
        assert_eq!(resolve_plain("1.5"), Scalar::Float(1.5));
        assert_eq!(resolve_plain("8080:80"), Scalar::Str("8080:80"));
        assert_eq!(resolve_plain("~"), Scalar::Null);
        assert_eq!(resolve_plain("1.2.3"), Scalar::Str("1.2.3"));
    }
}
