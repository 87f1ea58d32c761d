//! Finding heredoc delimiters (`<<EOF`, `<<-EOF`, `<<"EOF"`) on an
//! instruction line (buildkit `ParseHeredoc` and `heredocsFromLine`).

use crate::lex::Lexer;

/// A heredoc named on an instruction line, before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeredocSpec {
    pub name: String,
    pub expand: bool,
    pub chomp: bool,
}

fn no_vars(_: &str) -> Option<String> {
    None
}

/// Go's `\s`.
fn is_go_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ')
}

/// Interprets one word as a heredoc delimiter: `^(\d*)<<(-?)\s*([^<]*)$`
/// whose last part is a single shell word.
pub(crate) fn parse_heredoc_word(word: &str) -> Result<Option<HeredocSpec>, String> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = rest.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(is_go_space);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let lexer = Lexer {
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    let words = lexer.process_words(rest, &no_vars)?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    let raw = Lexer {
        raw_quotes: true,
        ..lexer
    }
    .process_words(rest, &no_vars)?;
    let [raw_name] = raw.as_slice() else {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    };
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    Ok(Some(HeredocSpec {
        name: name.clone(),
        expand: quotes(name) == quotes(raw_name),
        chomp,
    }))
}

/// The heredocs named on an instruction line, in order.
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<HeredocSpec>, String> {
    let lexer = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    // A line the lexer rejects (unbalanced quotes) has no heredocs.
    let words = lexer.process_words(line, &no_vars).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc_word(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(word: &str) -> Option<(String, bool, bool)> {
        parse_heredoc_word(word)
            .unwrap()
            .map(|h| (h.name, h.expand, h.chomp))
    }

    #[test]
    fn delimiter_words() {
        for w in [
            "<<EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<-EOF",
            "<<-'EOF'",
            "<<-\"EOF\"",
            "<<EO\"F\"",
            "<< EOF",
            "<<- EOF",
            "3<<EOF",
        ] {
            assert_eq!(name(w).map(|n| n.0).as_deref(), Some("EOF"), "{w}");
        }
        for w in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"] {
            assert_eq!(name(w), None, "{w}");
        }
        for w in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_heredoc_word(w).is_err(), "{w}");
        }
        assert_eq!(name("<<EOF"), Some(("EOF".into(), true, false)));
        assert_eq!(name("<<-'EOF'"), Some(("EOF".into(), false, true)));
        assert_eq!(name("<<eo'f'"), Some(("eof".into(), false, false)));
        assert_eq!(name("<<eo\\'f"), Some(("eo'f".into(), true, false)));
        assert_eq!(name("<<'e'o\\'f"), Some(("eo'f".into(), false, false)));
        assert_eq!(name("<<$EOF"), Some(("$EOF".into(), true, false)));
    }

    #[test]
    fn line_scan() {
        let names = |line: &str| -> Vec<String> {
            heredocs_from_line(line)
                .unwrap()
                .into_iter()
                .map(|h| h.name)
                .collect()
        };
        assert_eq!(names("RUN <<EOF"), vec!["EOF"]);
        assert_eq!(names("RUN <<EOF bash"), vec!["EOF"]);
        assert_eq!(names("RUN <<EOF1 <<EOF2"), vec!["EOF1", "EOF2"]);
        assert_eq!(names("COPY <<FILE1 <<FILE2 /dest"), vec!["FILE1", "FILE2"]);
        assert_eq!(names("RUN \"<<NOHEREDOC\""), Vec::<String>::new());
        assert_eq!(names("RUN <<'one two'"), vec!["one two"]);
        assert_eq!(names("RUN <<  EOF  > foo"), vec!["EOF"]);
        assert_eq!(
            names("RUN --mount=type=cache,target=/foo <<MOUNT"),
            vec!["MOUNT"]
        );
        assert_eq!(names("RUN echo 'unterminated <<EOF"), Vec::<String>::new());
    }
}
