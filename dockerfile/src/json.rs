//! The JSON (exec) form of `RUN`, `CMD`, `ENTRYPOINT`, `SHELL`, `COPY`,
//! `ADD`, `VOLUME` and `HEALTHCHECK CMD`.
//!
//! Docker decodes the arguments with Go's `encoding/json`: anything that is
//! not a valid JSON array falls back to the shell form, while a valid array
//! with a non-string element is an error.

/// Go's `encoding/json` nesting limit.
const MAX_DEPTH: usize = 10_000;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JsonArgs {
    /// A JSON array of strings.
    Strings(Vec<String>),
    /// A valid JSON array with an element that is not a string.
    NotStrings,
    /// Not a JSON array: the caller uses the shell form.
    NotJson,
}

pub(crate) const NOT_STRINGS_ERROR: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

pub(crate) fn parse_array(text: &str) -> JsonArgs {
    let text = text.trim_start();
    if !text.starts_with('[') {
        return JsonArgs::NotJson;
    }
    let mut p = Parser {
        s: text.as_bytes(),
        src: text,
        pos: 1,
    };
    match p.array() {
        Some(r) => {
            p.ws();
            if p.pos != p.s.len() {
                return JsonArgs::NotJson;
            }
            match r {
                Some(v) => JsonArgs::Strings(v),
                None => JsonArgs::NotStrings,
            }
        }
        None => JsonArgs::NotJson,
    }
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// The top-level array after its `[`: `None` when invalid JSON,
    /// `Some(None)` when valid with a non-string element.
    fn array(&mut self) -> Option<Option<Vec<String>>> {
        let mut out = Some(Vec::new());
        self.ws();
        if self.eat(b']') {
            return Some(out);
        }
        loop {
            self.ws();
            if self.peek() == Some(b'"') {
                let s = self.string()?;
                if let Some(v) = out.as_mut() {
                    v.push(s);
                }
            } else {
                self.skip_value()?;
                out = None;
            }
            self.ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b']') {
                return Some(out);
            }
            return None;
        }
    }

    fn string(&mut self) -> Option<String> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(&b) = self.s.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // Only ASCII bytes stop the scan, so these are char boundaries.
            out.push_str(&self.src[start..self.pos]);
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.pos += 1;
                    let e = self.peek()?;
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&hi)
                                && self.s[self.pos..].starts_with(b"\\u")
                            {
                                let save = self.pos;
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                } else {
                                    // Not a pair: the lone half becomes U+FFFD
                                    // and the second escape is decoded alone.
                                    self.pos = save;
                                    None
                                }
                            } else {
                                char::from_u32(hi)
                            };
                            out.push(c.unwrap_or('\u{FFFD}'));
                        }
                        _ => return None,
                    }
                }
                _ => return None, // control character
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.pos..self.pos + 4)?;
        let h = std::str::from_utf8(h).ok()?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.pos += 4;
        u32::from_str_radix(h, 16).ok()
    }

    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.') {
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.s[self.pos..].starts_with(word) {
            self.pos += word.len();
            Some(())
        } else {
            None
        }
    }

    /// Skips one JSON value of any type, iteratively.
    fn skip_value(&mut self) -> Option<()> {
        let mut stack: Vec<u8> = Vec::new();
        loop {
            // A value is expected here.
            self.ws();
            match self.peek()? {
                b'"' => {
                    self.string()?;
                }
                b'-' | b'0'..=b'9' => self.number()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'[' => {
                    self.pos += 1;
                    stack.push(b'[');
                    self.ws();
                    if !self.eat(b']') {
                        if stack.len() > MAX_DEPTH {
                            return None;
                        }
                        continue;
                    }
                    stack.pop();
                }
                b'{' => {
                    self.pos += 1;
                    stack.push(b'{');
                    self.ws();
                    if !self.eat(b'}') {
                        if stack.len() > MAX_DEPTH {
                            return None;
                        }
                        self.key()?;
                        continue;
                    }
                    stack.pop();
                }
                _ => return None,
            }
            // After a value: close containers or move to the next element.
            loop {
                let Some(&top) = stack.last() else {
                    return Some(());
                };
                self.ws();
                if self.eat(b',') {
                    if top == b'{' {
                        self.ws();
                        self.key()?;
                    }
                    break;
                }
                let close = if top == b'[' { b']' } else { b'}' };
                if !self.eat(close) {
                    return None;
                }
                stack.pop();
            }
        }
    }

    /// An object key and its colon.
    fn key(&mut self) -> Option<()> {
        if self.peek()? != b'"' {
            return None;
        }
        self.string()?;
        self.ws();
        self.eat(b':').then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> JsonArgs {
        JsonArgs::Strings(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn arrays_of_strings() {
        assert_eq!(parse_array("[]"), strings(&[]));
        assert_eq!(parse_array("[\"\"]"), strings(&[""]));
        assert_eq!(parse_array(" [ \"a\",\t\"b\" ] "), strings(&["a", "b"]));
        assert_eq!(
            parse_array(r#"["abc 123", "♥", "\" \\ \/ \b \f \n \r \t \u0000"]"#),
            strings(&["abc 123", "♥", "\" \\ / \u{8} \u{c} \n \r \t \u{0}"])
        );
        assert_eq!(
            parse_array(r#"["\ud83d\ude00", "\ud800x"]"#),
            strings(&["😀", "\u{FFFD}x"])
        );
    }

    #[test]
    fn non_strings_are_an_error() {
        assert_eq!(parse_array(r#"["a", 1]"#), JsonArgs::NotStrings);
        assert_eq!(
            parse_array(r#"[ "echo", [ "nested json" ] ]"#),
            JsonArgs::NotStrings
        );
        assert_eq!(
            parse_array(r#"[null, {"a": [1, 2.5e3, true]}]"#),
            JsonArgs::NotStrings
        );
    }

    #[test]
    fn invalid_json_falls_back() {
        for s in [
            "['echo','single quotes are invalid JSON']",
            r#"["echo", "Please, close the brackets when you're done""#,
            r#"["echo", "look ma, no quote!]"#,
            r#""[\"echo\", \"Phew\"]""#,
            r#"["a"] x"#,
            r#"["a",]"#,
            r#"["a\q"]"#,
            "[\"a\u{1}\"]",
            "[01]",
            "[1.]",
            "[tru]",
            r#"[{"a"}]"#,
            "echo [x]",
        ] {
            assert_eq!(parse_array(s), JsonArgs::NotJson, "{s}");
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let deep = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse_array(&deep), JsonArgs::NotJson);
        let ok = format!("[{}{}]", "[".repeat(100), "]".repeat(100));
        assert_eq!(parse_array(&ok), JsonArgs::NotStrings);
    }
}
