//! Parser directives (`# syntax=...`, `# escape=...`, `# check=...`) at the
//! top of a Dockerfile (buildkit `parser/directives.go`).

/// Go's `\s`.
fn is_go_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ')
}

/// Directive state while reading the first lines of a file.
#[derive(Debug)]
pub(crate) struct Directives {
    done: bool,
    seen: Vec<&'static str>,
    pub escape: char,
    pub syntax: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            done: false,
            seen: Vec::new(),
            escape: '\\',
            syntax: None,
        }
    }
}

impl Directives {
    /// Looks at the next line of the file. Directives stop at the first line
    /// that is not one (an instruction, a blank line or any other comment).
    pub(crate) fn observe(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        match parse_directive(line) {
            Some((key, value)) => {
                if self.seen.contains(&key) {
                    return Err(format!("only one {key} parser directive can be used"));
                }
                self.seen.push(key);
                match key {
                    "escape" => {
                        self.escape = match value.as_str() {
                            "\\" => '\\',
                            "`" => '`',
                            _ => {
                                return Err(format!(
                                    "invalid escape token '{value}' does not match ` or \\"
                                ))
                            }
                        }
                    }
                    "syntax" => self.syntax = Some(value),
                    _ => {}
                }
            }
            None => self.done = true,
        }
        Ok(())
    }
}

/// `#` key `=` value, for the known keys; the key lowercased.
fn parse_directive(line: &str) -> Option<(&'static str, String)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let key_len = rest
        .char_indices()
        .take_while(|&(i, c)| {
            if i == 0 {
                c.is_ascii_alphabetic()
            } else {
                c.is_ascii_alphanumeric()
            }
        })
        .count();
    if key_len == 0 {
        return None;
    }
    let key = match rest[..key_len].to_ascii_lowercase().as_str() {
        "syntax" => "syntax",
        "escape" => "escape",
        "check" => "check",
        _ => return None,
    };
    let after_key = rest[key_len..].trim_start_matches(is_go_space);
    let after_eq = after_key.strip_prefix('=')?;
    let value = after_eq.trim_matches(is_go_space);
    if !value.is_empty() {
        return Some((key, value.to_string()));
    }
    // `key= ` still matches Docker's regex, with the last space as the value.
    after_eq.chars().last().map(|c| (key, c.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_forms() {
        assert_eq!(parse_directive("# escape=`"), Some(("escape", "`".into())));
        assert_eq!(parse_directive("#escape = `"), Some(("escape", "`".into())));
        assert_eq!(
            parse_directive("# ESCAPE=\\"),
            Some(("escape", "\\".into()))
        );
        assert_eq!(
            parse_directive("# syntax = docker/dockerfile:1 "),
            Some(("syntax", "docker/dockerfile:1".into()))
        );
        assert_eq!(
            parse_directive("# check=skip=all"),
            Some(("check", "skip=all".into()))
        );
        assert_eq!(parse_directive("# foo=bar"), None);
        assert_eq!(parse_directive("# escape"), None);
        assert_eq!(parse_directive("# escape="), None);
        assert_eq!(parse_directive("# escape= "), Some(("escape", " ".into())));
        assert_eq!(parse_directive("escape=`"), None);
        assert_eq!(parse_directive("# 1escape=`"), None);
    }

    #[test]
    fn directives_stop_at_the_first_other_line() {
        let mut d = Directives::default();
        d.observe("# syntax=docker/dockerfile:1").unwrap();
        d.observe("# escape=`").unwrap();
        d.observe("").unwrap();
        d.observe("# escape=\\").unwrap();
        assert_eq!(d.escape, '`');
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));

        let mut d = Directives::default();
        d.observe("# a comment").unwrap();
        d.observe("# escape=`").unwrap();
        assert_eq!(d.escape, '\\');
    }

    #[test]
    fn directive_errors() {
        let mut d = Directives::default();
        d.observe("# escape=`").unwrap();
        assert_eq!(
            d.observe("# escape=\\").unwrap_err(),
            "only one escape parser directive can be used"
        );
        let mut d = Directives::default();
        assert!(d
            .observe("# escape=x")
            .unwrap_err()
            .contains("invalid escape token 'x'"));
    }
}
