//! Dockerfile and `.dockerignore` parsing with Docker's semantics.
//!
//! [`parse`] reads a Dockerfile the way Docker's classic builder and the
//! buildkit Dockerfile frontend do (directives, continuations, comments,
//! heredocs, JSON vs shell form, flags) into typed [`Stage`]s and
//! [`Instruction`]s. Arguments stay raw where Docker expands them at build
//! time; the builder expands them with [`expand_word`] / [`expand_words`].
//! [`ignore::Matcher`] decides which context paths `.dockerignore` excludes.
//!
//! See the crate README for what is supported and where berth differs.

mod ast;
mod directives;
mod duration;
mod error;
mod flags;
mod glob;
mod heredoc;
pub mod ignore;
mod instructions;
mod json;
mod lex;
mod parser;
mod words;

pub use ast::{
    CopyArgs, Dockerfile, Healthcheck, Heredoc, Instruction, InstructionKind, Location,
    ShellOrExec, Stage,
};
pub use duration::parse_go_duration;
pub use error::ParseError;

/// Parses Dockerfile `text`; `file_name` only labels errors.
pub fn parse(file_name: &str, text: &str) -> Result<Dockerfile, ParseError> {
    parser::parse(file_name, text)
}

/// Variable expansion with docker's shell-lexer rules (`$V`, `${V}`,
/// `${V:-x}`, `${V-x}`, `${V:+x}`, `${V+x}`, `${V:?msg}` (an error),
/// `${V#pat}`, `${V##pat}`, `${V%pat}`, `${V%%pat}`, `${V/pat/r}`,
/// `${V//pat/r}`, escapes, single and double quotes). Quotes are removed
/// like docker's `ProcessWord`. `lookup` returns the current value of a
/// build arg or env var, `None` when unset.
pub fn expand_word(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    lex::Lexer::new(escape).process_word(word, lookup)
}

/// Like docker's `ProcessWords`: expands `word`, then splits it into words
/// on unquoted whitespace (whitespace inside quotes, or escaped, is kept).
/// Docker uses this for `EXPOSE` only; other list instructions expand word
/// by word with [`expand_word`].
pub fn expand_words(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    lex::Lexer::new(escape).process_words(word, lookup)
}

/// Expands the body of a `COPY <<EOF` / `ADD <<EOF` heredoc whose
/// [`Heredoc::expand`] is true, as buildkit does: `$V` and `${V...}` forms
/// are substituted and `\` escapes the next character, but quotes are
/// ordinary characters and stay in the file. The escape character is always
/// `\`, whatever the `# escape=` directive says.
pub fn expand_heredoc(
    content: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    lex::Lexer {
        skip_process_quotes: true,
        ..lex::Lexer::new('\\')
    }
    .process_word(content, lookup)
}
