//! The typed Dockerfile model that [`crate::parse`] produces.
//!
//! Words are kept raw (quotes, escapes and `$VAR` references intact) wherever
//! Docker expands them at build time; see the README for which fields the
//! builder expands and with which function.

use std::time::Duration;

/// Where an instruction starts: the 1-based line and column of its keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    /// From the `# escape=` directive; `\` by default.
    pub escape: char,
    /// From the `# syntax=` directive, as written.
    pub syntax: Option<String>,
    /// `ARG` instructions before the first `FROM` (all of kind
    /// [`InstructionKind::Arg`]).
    pub global_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
}

/// One build stage: a `FROM` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Position of the stage in the file, from 0.
    pub index: usize,
    /// The `AS name`, lowercased as Docker does.
    pub name: Option<String>,
    /// The image reference as written: build args in it are expanded by the
    /// builder (with the global args only).
    pub base: String,
    /// The raw `--platform=` value.
    pub platform: Option<String>,
    /// The `FROM` instruction itself (kind [`InstructionKind::From`]).
    pub from: Instruction,
    /// The instructions after `FROM`.
    pub instructions: Vec<Instruction>,
}

/// One instruction with its source position and text.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    pub loc: Location,
    /// The instruction as Docker prints it in `Step N/M : <original>`: the
    /// physical lines joined after removing the escape-newline (whitespace
    /// before the escape and leading whitespace of continuation lines kept;
    /// comment and blank lines inside the continuation dropped), trimmed.
    ///
    /// For the instruction inside an `ONBUILD` this is the trigger expression
    /// Docker stores in the image config instead: the `ONBUILD` text without
    /// the keyword (not trimmed at the end), followed by any heredocs.
    pub original: String,
    pub kind: InstructionKind,
}

/// The two forms of `RUN`, `CMD`, `ENTRYPOINT` and `HEALTHCHECK CMD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellOrExec {
    /// Shell form: the text after the keyword and flags, unmodified. The
    /// builder runs it with the stage's `SHELL` (default `/bin/sh -c`).
    /// An instruction with no arguments at all (`CMD` alone) gives `Shell("")`.
    Shell(String),
    /// Exec (JSON array) form.
    Exec(Vec<String>),
}

/// A here-document attached to `RUN`, `COPY` or `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word with quotes removed; for `COPY`/`ADD` also the name
    /// of the file to create.
    pub name: String,
    /// The body lines, each with its line ending, without the terminator line.
    /// When `chomp` is set the leading tabs are already stripped (stripping is
    /// idempotent, so a builder that strips again does no harm).
    pub content: String,
    /// False when any part of the delimiter was quoted (`<<"EOF"`, `<<'EOF'`):
    /// the content is then used verbatim instead of being expanded.
    pub expand: bool,
    /// `<<-`: leading tabs stripped from the body lines and the terminator.
    pub chomp: bool,
}

/// The arguments of `COPY` and `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyArgs {
    /// Raw source words (heredoc sources are in `heredocs` instead).
    pub sources: Vec<String>,
    /// Raw destination word.
    pub dest: String,
    /// `--from=` (COPY only), raw.
    pub from: Option<String>,
    /// `--chown=`, raw.
    pub chown: Option<String>,
    /// `--chmod=`, raw.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `COPY <<EOF /dest`: files to create from inline content, in source order.
    pub heredocs: Vec<Heredoc>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Healthcheck {
    /// The test; `None` for `HEALTHCHECK NONE`. Docker stores the shell form
    /// as `["CMD-SHELL", text]` and the exec form as `["CMD", args...]`.
    pub test: Option<ShellOrExec>,
    /// `HEALTHCHECK NONE`: disable any inherited healthcheck.
    pub none: bool,
    /// `--interval`; `None` when absent or zero (zero means "inherit").
    pub interval: Option<Duration>,
    /// `--timeout`; `None` when absent or zero.
    pub timeout: Option<Duration>,
    /// `--start-period`; `None` when absent or zero.
    pub start_period: Option<Duration>,
    /// `--start-interval`; `None` when absent or zero.
    pub start_interval: Option<Duration>,
    /// `--retries`; `None` when absent.
    pub retries: Option<u32>,
}

/// What an instruction does, with its parsed arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum InstructionKind {
    /// `FROM`; the details are in [`Stage`].
    From,
    Run {
        cmd: ShellOrExec,
        /// Heredocs named on the line, in order (shell form only).
        heredocs: Vec<Heredoc>,
        /// Raw `--mount=` values, in order.
        mounts: Vec<String>,
        /// `--network=` (validated: `default`, `none` or `host`).
        network: Option<String>,
    },
    Cmd(ShellOrExec),
    Entrypoint(ShellOrExec),
    Copy(CopyArgs),
    Add(CopyArgs),
    /// Raw key/value pairs, quotes included: the builder expands both with
    /// [`crate::expand_word`], which also removes the quotes.
    Env(Vec<(String, String)>),
    /// Raw names and optional raw default values (expanded by the builder).
    Arg(Vec<(String, Option<String>)>),
    /// Raw path (the rest of the line).
    Workdir(String),
    /// Raw user (the rest of the line).
    User(String),
    /// Raw port words, sorted as Docker sorts them; the builder expands each
    /// with [`crate::expand_words`].
    Expose(Vec<String>),
    /// Raw key/value pairs, like `Env`.
    Label(Vec<(String, String)>),
    /// Raw volume words (JSON form or whitespace separated).
    Volume(Vec<String>),
    /// Raw signal word.
    StopSignal(String),
    Healthcheck(Healthcheck),
    /// The JSON array given to `SHELL`.
    Shell(Vec<String>),
    /// The trigger instruction; see [`Instruction::original`] for its text.
    Onbuild(Box<Instruction>),
    Maintainer(String),
}

impl InstructionKind {
    /// The instruction keyword in upper case (`RUN`, `COPY`, ...).
    pub fn keyword(&self) -> &'static str {
        match self {
            InstructionKind::From => "FROM",
            InstructionKind::Run { .. } => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Copy(_) => "COPY",
            InstructionKind::Add(_) => "ADD",
            InstructionKind::Env(_) => "ENV",
            InstructionKind::Arg(_) => "ARG",
            InstructionKind::Workdir(_) => "WORKDIR",
            InstructionKind::User(_) => "USER",
            InstructionKind::Expose(_) => "EXPOSE",
            InstructionKind::Label(_) => "LABEL",
            InstructionKind::Volume(_) => "VOLUME",
            InstructionKind::StopSignal(_) => "STOPSIGNAL",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
            InstructionKind::Shell(_) => "SHELL",
            InstructionKind::Onbuild(_) => "ONBUILD",
            InstructionKind::Maintainer(_) => "MAINTAINER",
        }
    }
}

impl Dockerfile {
    /// The `M` of Docker's classic `Step N/M` lines: the global `ARG`s, then
    /// every `FROM` and every instruction after it.
    pub fn step_count(&self) -> usize {
        self.global_args.len()
            + self
                .stages
                .iter()
                .map(|s| 1 + s.instructions.len())
                .sum::<usize>()
    }

    /// Every step in the order the classic builder prints them: the global
    /// `ARG`s, then each stage's `FROM` and instructions. Step `N` is
    /// `steps().nth(N - 1)`, printed as `Step N/M : {original}`.
    pub fn steps(&self) -> impl Iterator<Item = &Instruction> {
        self.global_args.iter().chain(
            self.stages
                .iter()
                .flat_map(|s| std::iter::once(&s.from).chain(&s.instructions)),
        )
    }

    /// The stage named `name` (compared case-insensitively, as Docker does).
    pub fn stage_by_name(&self, name: &str) -> Option<&Stage> {
        let name = name.to_lowercase();
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(name.as_str()))
    }
}
