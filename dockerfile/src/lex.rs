//! Docker's shell-word lexer: variable substitution, quote removal and word
//! splitting as the Dockerfile frontend applies them to instruction
//! arguments (buildkit's `frontend/dockerfile/shell/lex.go`).
//!
//! It is not a shell: there is no command substitution, globbing or
//! arithmetic, and `RUN`/`CMD` text is never passed through it.

use crate::glob::{CharSet, Piece, Program};

/// How deeply `${a:-${b:-...}}` may nest before the lexer gives up (Docker
/// has no limit; this bounds our recursion on hostile input).
const MAX_NESTING: usize = 64;

/// Looks up a variable: `None` when it is unset.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Options of one lexer run (buildkit's `Lex` fields).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lexer {
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset_env: bool,
    /// Treat quote characters as ordinary characters.
    pub skip_process_quotes: bool,
}

impl Lexer {
    pub(crate) fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }

    /// Expands `word` (buildkit `ProcessWord`).
    pub(crate) fn process_word(&self, word: &str, lookup: Lookup) -> Result<String, String> {
        self.process(word, lookup).map(|(w, _)| w)
    }

    /// Expands `word` and splits it into words (buildkit `ProcessWords`).
    pub(crate) fn process_words(&self, word: &str, lookup: Lookup) -> Result<Vec<String>, String> {
        self.process(word, lookup).map(|(_, ws)| ws)
    }

    fn process(&self, word: &str, lookup: Lookup) -> Result<(String, Vec<String>), String> {
        let mut st = State {
            lex: *self,
            lookup,
            src: word,
            pos: 0,
            raw_escapes: self.raw_escapes,
            depth: 0,
        };
        let raw = st.raw_escapes;
        st.process_stop_on(None, raw)
            .map_err(|e| format!("failed to process {word:?}: {e}"))
    }
}

/// Words being accumulated while expanding (buildkit `wordsStruct`).
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

struct State<'a, 'l> {
    lex: Lexer,
    lookup: Lookup<'l>,
    src: &'a str,
    pos: usize,
    raw_escapes: bool,
    depth: usize,
}

impl State<'_, '_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn at_eof(&self) -> bool {
        self.pos >= self.src.len()
    }

    /// Processes up to `stop` (consumed) or the end of input when `stop` is
    /// `None`; returns the expanded text and its words.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), String> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn process_stop_on_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let tmp = self.process_dollar()?;
                    result.push_str(&tmp);
                    words.add_string(&tmp);
                }
                '<' => {
                    let tmp = self.process_possible_heredoc();
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '\'' if !self.lex.skip_process_quotes => {
                    let tmp = self.process_single_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '"' if !self.lex.skip_process_quotes => {
                    let tmp = self.process_double_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                _ => {
                    self.next();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // The escape escapes the next character; at the end
                        // of the input it is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, String> {
        // Everything up to the next single quote is literal.
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .to_string(),
                    )
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, String> {
        // Literal except for `$`, and the escape before `"`, `$` or itself.
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .to_string(),
                    )
                }
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                ch = c;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.next();
        // `<<  EOF` stays one word so heredoc detection sees it.
        let mut result = "<<".to_string();
        while let Some(c @ ('\t' | '\r' | ' ')) = self.peek() {
            result.push(c);
            self.next();
        }
        result
    }

    fn lookup(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    fn process_dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".to_string()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".to_string()),
            Some(_) => {}
        }
        if self.depth >= MAX_NESTING {
            return Err("too many nested substitutions".to_string());
        }
        self.depth += 1;
        let r = self.process_braced();
        self.depth -= 1;
        r
    }

    fn process_braced(&mut self) -> Result<String, String> {
        let name = self.process_name();
        let Some(ch) = self.next() else {
            return Err("syntax error: missing '}'".to_string());
        };
        match ch {
            '}' => Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' => {
                let Some(modifier) = self.next() else {
                    return Err("syntax error: missing '}'".to_string());
                };
                self.process_modifier(&name, modifier, true)
            }
            '+' | '-' | '?' | '#' | '%' => self.process_modifier(&name, ch, false),
            '/' => self.process_replace(&name),
            _ => Err(format!("unsupported modifier ({ch}) in substitution")),
        }
    }

    fn word_until_brace(&mut self, raw_escapes: bool) -> Result<String, String> {
        match self.process_stop_on(Some('}'), raw_escapes) {
            Ok((w, _)) => Ok(w),
            Err(_) if self.at_eof() => Err("syntax error: missing '}'".to_string()),
            Err(e) => Err(e),
        }
    }

    fn process_modifier(
        &mut self,
        name: &str,
        modifier: char,
        null_is_unset: bool,
    ) -> Result<String, String> {
        let chs = if null_is_unset {
            format!(":{modifier}")
        } else {
            modifier.to_string()
        };
        let pattern_op = modifier == '#' || modifier == '%';
        if null_is_unset && pattern_op {
            return Err(format!("unsupported modifier ({chs}) in substitution"));
        }
        let mut word = self.word_until_brace(pattern_op)?;
        let value = self.lookup(name);
        if value.is_none() && self.lex.skip_unset_env {
            return Ok(format!("${{{name}{chs}{word}}}"));
        }
        let unset_or_null = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match modifier {
            '-' => Ok(if unset_or_null {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if unset_or_null { String::new() } else { word }),
            '?' => match value {
                None => Err(format!(
                    "{name}: {}",
                    if word.is_empty() {
                        "is not allowed to be unset"
                    } else {
                        &word
                    }
                )),
                Some(v) if null_is_unset && v.is_empty() => Err(format!(
                    "{name}: {}",
                    if word.is_empty() {
                        "is not allowed to be empty"
                    } else {
                        &word
                    }
                )),
                Some(v) => Ok(v),
            },
            '#' | '%' => {
                // `#`/`%` remove the shortest match, `##`/`%%` the longest.
                let longest = word.starts_with(modifier);
                if longest {
                    word.remove(0);
                }
                let value = value.unwrap_or_default();
                if modifier == '#' {
                    trim_prefix(&word, &value, longest)
                } else {
                    trim_suffix(&word, &value, longest)
                }
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn process_replace(&mut self, name: &str) -> Result<String, String> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let pattern = match self.process_stop_on(Some('/'), true) {
            Ok((w, _)) => w,
            Err(_) if self.at_eof() => return Err("syntax error: missing '/' in ${}".to_string()),
            Err(e) => return Err(e),
        };
        let replacement = self.word_until_brace(true)?;
        let value = self.lookup(name);
        let Some(value) = value else {
            if self.lex.skip_unset_env {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            return Ok(String::new());
        };
        let prog = Program::compile(&shell_pattern(&pattern, false)?);
        Ok(replace(&prog, &value, &replacement, all))
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                // Positional parameter: all the digits.
                while let Some(d) = self.peek().filter(|c| c.is_numeric()) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// Converts a `${V#pattern}` pattern (escapes still in it) to pieces, in
/// reverse order when matching from the end.
fn shell_pattern(pattern: &str, reversed: bool) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => pieces.push(Piece::Many(CharSet::Any)),
            '?' => pieces.push(Piece::One(CharSet::Any)),
            '\\' => match chars.peek() {
                // `}` and `/` are escaped only to get them past the lexer.
                Some('}' | '/') => {}
                Some(&e @ ('*' | '?' | '\\')) => {
                    chars.next();
                    pieces.push(Piece::One(CharSet::Lit(e)));
                }
                Some(&e) => {
                    return Err(format!(
                        "invalid pattern ({pattern}) in substitution: invalid escape '\\{e}'"
                    ))
                }
                None => {
                    return Err(format!(
                        "invalid pattern ({pattern}) in substitution: invalid escape '\\'"
                    ))
                }
            },
            c => pieces.push(Piece::One(CharSet::Lit(c))),
        }
    }
    if reversed {
        pieces.reverse();
    }
    Ok(pieces)
}

fn trim_prefix(pattern: &str, value: &str, longest: bool) -> Result<String, String> {
    let prog = Program::compile(&shell_pattern(pattern, false)?);
    Ok(match prog.prefix_matches(value) {
        Some((short, long)) => value[if longest { long } else { short }..].to_string(),
        None => value.to_string(),
    })
}

fn trim_suffix(pattern: &str, value: &str, longest: bool) -> Result<String, String> {
    let prog = Program::compile(&shell_pattern(pattern, true)?);
    let reversed: String = value.chars().rev().collect();
    Ok(match prog.prefix_matches(&reversed) {
        Some((short, long)) => {
            value[..value.len() - if longest { long } else { short }].to_string()
        }
        None => value.to_string(),
    })
}

/// `${V/pattern/repl}` and `${V//pattern/repl}` with Go's `ReplaceAllString`
/// rules for empty matches.
fn replace(prog: &Program, value: &str, replacement: &str, all: bool) -> String {
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= value.len() {
        let Some((start, end)) = prog.find(value, search) else {
            break;
        };
        out.push_str(&value[last_end..start]);
        // No replacement for an empty match right after the previous match.
        if end > last_end || start == 0 {
            out.push_str(replacement);
        }
        last_end = end;
        if !all {
            break;
        }
        let width = value[search..].chars().next().map_or(1, char::len_utf8);
        search = if search + width > end {
            search + width
        } else {
            end
        };
    }
    out.push_str(&value[last_end.min(value.len())..]);
    out
}

#[cfg(test)]
mod tests;
