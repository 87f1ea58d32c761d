//! `.dockerignore` files: which paths of the build context are left out.
//!
//! Follows moby's `patternmatcher` (`ignorefile.ReadAll` to read the file,
//! `MatchesOrParentMatches` to match) and the context walker's rule for
//! descending into excluded directories.

use crate::glob::{CharSet, Piece, Program};

/// Go's `filepath.Clean` for slash-separated paths.
pub(crate) fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[derive(Debug, Clone)]
enum Kind {
    /// `**` followed by literal text: Docker tests `path.ends_with(text)`
    /// (and `**/foo` also matches `foo`).
    Suffix(String),
    Glob(Program),
}

/// One line of the ignore file.
#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern without its `!`.
    text: String,
    exclusion: bool,
    kind: Kind,
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            Kind::Glob(prog) => prog.full_match(path),
        }
    }
}

/// Compiles a cleaned pattern with the rules of `patternmatcher`'s
/// regexp translation and `filepath.Match`'s syntax checks.
fn compile(pattern: &str) -> Result<Kind, String> {
    let bad = || format!("syntax error in pattern: {pattern:?}");
    let chars: Vec<char> = pattern.chars().collect();
    let mut pieces = Vec::new();
    // Whether everything after a leading `**` is literal.
    let mut literal_after_globstar = pattern.starts_with("**");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at_start = i == 0;
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    pieces.push(Piece::Many(CharSet::Any));
                } else {
                    pieces.push(Piece::Globstar);
                }
                if !at_start {
                    literal_after_globstar = false;
                }
            }
            '*' => {
                pieces.push(Piece::Many(CharSet::NotSlash));
                literal_after_globstar = false;
            }
            '?' => {
                pieces.push(Piece::One(CharSet::NotSlash));
                literal_after_globstar = false;
            }
            '\\' => {
                let Some(&e) = chars.get(i) else {
                    return Err(bad());
                };
                i += 1;
                pieces.push(Piece::One(CharSet::Lit(e)));
                literal_after_globstar = false;
            }
            '[' => {
                let (set, next) = parse_class(&chars, i).ok_or_else(bad)?;
                i = next;
                pieces.push(Piece::One(set));
                literal_after_globstar = false;
            }
            ']' => {
                pieces.push(Piece::One(CharSet::Lit(']')));
                literal_after_globstar = false;
            }
            c => pieces.push(Piece::One(CharSet::Lit(c))),
        }
    }
    if literal_after_globstar {
        return Ok(Kind::Suffix(pattern[2..].to_string()));
    }
    Ok(Kind::Glob(Program::compile(&pieces)))
}

/// A `[...]` class starting after the `[` at `i`, with `filepath.Match`'s
/// rules: `^` negates, ranges `a-z`, `\` escapes, at least one element.
fn parse_class(chars: &[char], mut i: usize) -> Option<(CharSet, usize)> {
    let mut negated = false;
    if chars.get(i) == Some(&'^') {
        negated = true;
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Some((CharSet::Class { negated, ranges }, i + 1));
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            let (h, next) = class_char(chars, i + 1)?;
            hi = h;
            i = next;
        }
        ranges.push((lo, hi));
    }
}

fn class_char(chars: &[char], mut i: usize) -> Option<(char, usize)> {
    let c = *chars.get(i)?;
    if c == '-' || c == ']' {
        return None;
    }
    let c = if c == '\\' {
        i += 1;
        *chars.get(i)?
    } else {
        c
    };
    i += 1;
    // The class must be closed later.
    if i >= chars.len() {
        return None;
    }
    Some((c, i))
}

/// The rules of a `.dockerignore` file.
#[derive(Debug, Clone)]
pub struct Matcher {
    patterns: Vec<Pattern>,
}

impl Matcher {
    /// Reads `.dockerignore` content: a BOM is dropped, lines starting with
    /// `#` are comments, blank lines are skipped, other lines are trimmed,
    /// cleaned (`a/../b` → `b`) and lose a leading `/`; `!` marks an
    /// exception. Malformed patterns (an unclosed `[`, a trailing `\`) and a
    /// lone `!` are errors.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for line in text.lines() {
            // Comments are recognized before trimming, like Docker.
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (exclusion, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if body.is_empty() {
                return Err("illegal exclusion pattern: \"!\"".to_string());
            }
            let mut text = clean_path(body);
            if text.len() > 1 && text.starts_with('/') {
                text.remove(0);
            }
            let kind = compile(&text)?;
            patterns.push(Pattern {
                text,
                exclusion,
                kind,
            });
        }
        Ok(Matcher { patterns })
    }

    /// Whether `path` (slash-separated, relative to the context root) is left
    /// out of the context: the last pattern that matches it or one of its
    /// parent directories decides, and `!` patterns re-include.
    pub fn excluded(&self, path: &str) -> bool {
        let path = clean_path(path);
        if path == "." {
            return false;
        }
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => path[..i]
                .match_indices('/')
                .map(|(j, _)| &path[..j])
                .chain([&path[..i]])
                .collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            // An inclusion cannot change an excluded path, nor an exception
            // an included one.
            if p.exclusion != matched {
                continue;
            }
            if p.matches(&path) || parents.iter().any(|d| p.matches(d)) {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether the walker must look inside the excluded directory `dir`
    /// because an exception may re-include something below it. Docker
    /// descends only when an exception pattern, read as text, starts with
    /// `dir/` (so `!dir/keep` counts but `!**/keep` does not).
    pub fn may_reinclude_under(&self, dir: &str) -> bool {
        let dir = clean_path(dir);
        let prefix = format!("{dir}/");
        self.patterns
            .iter()
            .filter(|p| p.exclusion)
            .any(|p| format!("{}/", p.text).starts_with(&prefix))
    }

    /// Whether the file has any `!` exceptions.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// The cleaned patterns in file order, exceptions with their `!`.
    pub fn patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|p| {
                if p.exclusion {
                    format!("!{}", p.text)
                } else {
                    p.text.clone()
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
