//! Reading a Dockerfile into instructions and stages: physical lines,
//! directives, comments, line continuations and heredoc bodies (buildkit
//! `parser/parser.go`), then grouping into stages (`instructions.Parse`).

use crate::ast::{Dockerfile, Instruction, InstructionKind, Location, Stage};
use crate::directives::Directives;
use crate::error::ParseError;
use crate::heredoc::heredocs_from_line;
use crate::instructions::{build, takes_heredocs, RawHeredoc};
use crate::words::split_command;

/// Physical lines, each with its line ending, and their 1-based numbers.
struct Lines<'a> {
    rest: &'a str,
    number: usize,
}

impl<'a> Lines<'a> {
    fn next_line(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let end = self.rest.find('\n').map_or(self.rest.len(), |i| i + 1);
        let (line, rest) = self.rest.split_at(end);
        self.rest = rest;
        self.number += 1;
        Some(line)
    }
}

/// Go's `bytes.TrimRight(line, "\r\n")`.
fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a trailing line-continuation escape (optionally followed by
/// spaces or tabs); returns the line and whether the instruction ends here.
/// An escape preceded by another escape is not a continuation.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, true);
    };
    if before.ends_with(escape) {
        return (line, true);
    }
    (before, false)
}

/// One instruction as read from the file.
struct LogicalLine {
    text: String,
    loc: Location,
}

struct Reader<'a> {
    file: &'a str,
    lines: Lines<'a>,
    directives: Directives,
}

impl<'a> Reader<'a> {
    fn error(&self, loc: Location, message: impl Into<String>) -> ParseError {
        ParseError {
            file: self.file.to_string(),
            line: loc.line,
            column: loc.column,
            message: message.into(),
        }
    }

    /// The next instruction line with continuations joined, or `None` at the
    /// end of the file.
    fn next_instruction(&mut self) -> Result<Option<LogicalLine>, ParseError> {
        while let Some(raw) = self.lines.next_line() {
            let number = self.lines.number;
            let line = trim_newline(raw);
            let stripped = line.trim_start();
            let column = line[..line.len() - stripped.len()].chars().count() + 1;
            self.directives.observe(stripped).map_err(|m| {
                self.error(
                    Location {
                        line: number,
                        column: 1,
                    },
                    m,
                )
            })?;
            let escape = self.directives.escape;
            let first = if is_comment(stripped) { "" } else { stripped };
            let (first, mut done) = trim_continuation(first, escape);
            if done && first.is_empty() {
                continue;
            }
            let mut text = first.to_string();
            while !done {
                let Some(raw) = self.lines.next_line() else {
                    break;
                };
                let line = trim_newline(raw);
                // Comments and blank lines inside a continuation are skipped
                // and do not end it.
                if is_comment(line) || line.trim_start().is_empty() {
                    continue;
                }
                let (part, end) = trim_continuation(line, escape);
                text.push_str(part);
                done = end;
            }
            let column = if first.is_empty() { 1 } else { column };
            return Ok(Some(LogicalLine {
                text,
                loc: Location {
                    line: number,
                    column,
                },
            }));
        }
        Ok(None)
    }

    /// Reads the bodies of `specs` from the following lines.
    fn read_heredocs(&mut self, line: &LogicalLine) -> Result<Vec<RawHeredoc>, ParseError> {
        let specs = heredocs_from_line(&line.text).map_err(|m| self.error(line.loc, m))?;
        let mut docs = Vec::with_capacity(specs.len());
        for spec in specs {
            let mut content = String::new();
            let mut terminated = false;
            while let Some(raw) = self.lines.next_line() {
                let mut candidate = trim_newline(raw);
                if spec.chomp {
                    candidate = candidate.trim_start_matches('\t');
                }
                if candidate == spec.name {
                    terminated = true;
                    break;
                }
                content.push_str(raw);
            }
            if !terminated {
                return Err(self.error(line.loc, "unterminated heredoc"));
            }
            docs.push(RawHeredoc { spec, content });
        }
        Ok(docs)
    }
}

pub(crate) fn parse(file_name: &str, text: &str) -> Result<Dockerfile, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader {
        file: file_name,
        lines: Lines {
            rest: text,
            number: 0,
        },
        directives: Directives::default(),
    };
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut seen_instruction = false;
    while let Some(line) = reader.next_instruction()? {
        seen_instruction = true;
        let escape = reader.directives.escape;
        let split = split_command(&line.text, escape);
        let heredocs = if takes_heredocs(&split, escape) && line.text.contains("<<") {
            reader.read_heredocs(&line)?
        } else {
            Vec::new()
        };
        let (kind, from) = build(&split, &line.text, &heredocs, line.loc, escape)
            .map_err(|m| reader.error(line.loc, m))?;
        let instruction = Instruction {
            loc: line.loc,
            original: line.text.trim().to_string(),
            kind,
        };
        if let Some(from) = from {
            if let Some(name) = &from.name {
                if stages.iter().any(|s| s.name.as_ref() == Some(name)) {
                    return Err(reader.error(line.loc, format!("duplicate stage name {name:?}")));
                }
            }
            stages.push(Stage {
                index: stages.len(),
                name: from.name,
                base: from.base,
                platform: from.platform,
                from: instruction,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(instruction);
        } else if matches!(instruction.kind, InstructionKind::Arg(_)) {
            global_args.push(instruction);
        } else {
            return Err(reader.error(line.loc, "no build stage in current context"));
        }
    }
    let end = Location {
        line: reader.lines.number.max(1),
        column: 1,
    };
    if !seen_instruction {
        return Err(reader.error(end, "file with no instructions"));
    }
    if stages.is_empty() {
        return Err(reader.error(end, "dockerfile contains no stages to build"));
    }
    Ok(Dockerfile {
        escape: reader.directives.escape,
        syntax: reader.directives.syntax.clone(),
        global_args,
        stages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("RUN a \\", '\\'), ("RUN a ", false));
        assert_eq!(trim_continuation("RUN a \\  \t", '\\'), ("RUN a ", false));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", true));
        assert_eq!(trim_continuation("a`", '`'), ("a", false));
        assert_eq!(trim_continuation("a\\", '`'), ("a\\", true));
        assert_eq!(trim_continuation("a", '\\'), ("a", true));
    }
}
