//! Splitting an instruction line into keyword, `--flags` and arguments, and
//! the argument splitters of Docker's line parsers
//! (buildkit `parser/split_command.go` and `parser/line_parsers.go`).

/// Characters of Docker's `[\t\v\f\r ]+` separator.
fn is_separator(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// An instruction line split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SplitLine {
    /// The keyword as written.
    pub cmd: String,
    /// `--name[=value]` words before the arguments, unquoted.
    pub flags: Vec<String>,
    /// The rest of the line, trimmed.
    pub args: String,
}

pub(crate) fn split_command(line: &str, escape: char) -> SplitLine {
    let line = line.trim();
    let (cmd, rest) = match line.find(is_separator) {
        Some(i) => (&line[..i], line[i..].trim_start_matches(is_separator)),
        None => (line, ""),
    };
    let (args, flags) = if rest.is_empty() {
        ("", Vec::new())
    } else {
        extract_flags(rest, escape)
    };
    SplitLine {
        cmd: cmd.to_string(),
        flags,
        args: args.trim().to_string(),
    }
}

/// Takes the leading `--flag` words off `line`; a lone `--` ends them.
/// Quotes in flag words are removed and the escape character escapes the
/// next character.
fn extract_flags(line: &str, escape: char) -> (&str, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut chars = line.char_indices().peekable();
    loop {
        let Some((pos, ch)) = chars.next() else {
            if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            return ("", words);
        };
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                continue;
            }
            if ch != '-' || chars.peek().map(|&(_, c)| c) != Some('-') {
                return (&line[pos..], words);
            }
            phase = Phase::Word;
        }
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    if word == "--" {
                        return (&line[pos..], words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    phase = Phase::Spaces;
                } else if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else if ch == escape {
                    // An escape at the very end is dropped.
                    if let Some((_, next)) = chars.next() {
                        word.push(next);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                } else if ch == escape {
                    match chars.next() {
                        Some((_, next)) => word.push(next),
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Spaces => unreachable!("handled above"),
        }
    }
}

/// Words separated by whitespace, quotes and escapes kept as written
/// (buildkit `parseWords`, used by `ENV`, `LABEL` and `ARG`).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut chars = rest.chars().peekable();
    loop {
        let Some(ch) = chars.next() else {
            if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            return words;
        };
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
        }
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    phase = Phase::Spaces;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    // Outside quotes the escape and the escaped character
                    // are both kept (even a quote); at the end it is dropped.
                    if let Some(next) = chars.next() {
                        word.push(ch);
                        word.push(next);
                    }
                    continue;
                }
                word.push(ch);
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                }
                if ch == escape && q != '\'' {
                    match chars.next() {
                        Some(next) => {
                            word.push(ch);
                            word.push(next);
                        }
                        None => phase = Phase::Word,
                    }
                    continue;
                }
                word.push(ch);
            }
            Phase::Spaces => unreachable!("handled above"),
        }
    }
}

/// Docker's `[\t\v\f\r ]+` split of an already trimmed argument string.
pub(crate) fn split_whitespace(rest: &str) -> Vec<String> {
    rest.split(is_separator)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `ENV`/`LABEL` arguments (buildkit `parseNameVal`): either `key value...`
/// (the whole rest is the value) or `k=v k2=v2...`. Values stay raw.
pub(crate) fn parse_name_val(
    rest: &str,
    keyword: &str,
    escape: char,
) -> Result<Vec<(String, String)>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        return match rest.find(is_separator) {
            Some(i) => Ok(vec![(
                rest[..i].to_string(),
                rest[i..].trim_start_matches(is_separator).to_string(),
            )]),
            None => Err(format!("{keyword} must have two arguments")),
        };
    }
    words
        .iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> (String, Vec<String>, String) {
        let s = split_command(line, '\\');
        (s.cmd, s.flags, s.args)
    }

    fn owned(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_are_taken_off_the_front() {
        assert_eq!(
            split("COPY foo /tmp/"),
            ("COPY".into(), owned(&[]), "foo /tmp/".into())
        );
        assert_eq!(
            split("COPY --user=me --doit=true foo /tmp/"),
            (
                "COPY".into(),
                owned(&["--user=me", "--doit=true"]),
                "foo /tmp/".into()
            )
        );
        assert_eq!(
            split("COPY --doit=true -- foo /tmp/").1,
            owned(&["--doit=true"])
        );
        assert_eq!(split("COPY --doit=true -- foo /tmp/").2, "foo /tmp/");
        assert_eq!(
            split("COPY -- foo /tmp/"),
            ("COPY".into(), owned(&[]), "foo /tmp/".into())
        );
        assert_eq!(
            split("CMD --doit -- [ ]"),
            ("CMD".into(), owned(&["--doit"]), "[ ]".into())
        );
        assert_eq!(
            split("RUN --mount=\"type=cache,target=/a b\" x").1,
            owned(&["--mount=type=cache,target=/a b"])
        );
        assert_eq!(split("RUN --a=x\\ y z").1, owned(&["--a=x y"]));
        assert_eq!(split("RUN --a=''").1, owned(&["--a="]));
        assert_eq!(split("RUN -x y"), ("RUN".into(), owned(&[]), "-x y".into()));
        assert_eq!(
            split("  RUN\t\tfoo  "),
            ("RUN".into(), owned(&[]), "foo".into())
        );
        assert_eq!(
            split("HEALTHCHECK"),
            ("HEALTHCHECK".into(), owned(&[]), "".into())
        );
        assert_eq!(
            split("RUN --network=none"),
            ("RUN".into(), owned(&["--network=none"]), "".into())
        );
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            parse_words("abc=\"123 456\" def", '\\'),
            owned(&["abc=\"123 456\"", "def"])
        );
        assert_eq!(parse_words("a=b\\ c d", '\\'), owned(&["a=b\\ c", "d"]));
        assert_eq!(parse_words("a='x\\'y", '\\'), owned(&["a='x\\'y"]));
        assert_eq!(parse_words("a=\"x\\\"y\"", '\\'), owned(&["a=\"x\\\"y\""]));
        assert_eq!(parse_words("a=\"\"", '\\'), owned(&["a=\"\""]));
        assert_eq!(parse_words("x\\", '\\'), owned(&["x"]));
        assert_eq!(parse_words("  ", '\\'), owned(&[]));
    }

    #[test]
    fn name_val_forms() {
        let kv = |rest| parse_name_val(rest, "ENV", '\\');
        assert_eq!(kv("name value"), Ok(vec![("name".into(), "value".into())]));
        assert_eq!(
            kv("SCUBA 1 DUBA 3"),
            Ok(vec![("SCUBA".into(), "1 DUBA 3".into())])
        );
        assert_eq!(
            kv("SCUBA \"1 DUBA 3\""),
            Ok(vec![("SCUBA".into(), "\"1 DUBA 3\"".into())])
        );
        assert_eq!(
            kv("name=value name2=value2"),
            Ok(vec![
                ("name".into(), "value".into()),
                ("name2".into(), "value2".into())
            ])
        );
        assert_eq!(
            kv("name=\"value value1\""),
            Ok(vec![("name".into(), "\"value value1\"".into())])
        );
        assert_eq!(kv("name"), Err("ENV must have two arguments".into()));
        assert!(kv("a=b c").unwrap_err().contains("can't find = in \"c\""));
        assert_eq!(kv(""), Ok(vec![]));
    }
}
