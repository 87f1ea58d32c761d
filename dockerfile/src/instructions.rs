//! Turning one split instruction line into a typed [`InstructionKind`], with
//! the argument rules and error messages of buildkit's
//! `parser/line_parsers.go` and `instructions/parse.go`.

use crate::ast::{
    CopyArgs, Healthcheck, Heredoc, Instruction, InstructionKind, Location, ShellOrExec,
};
use crate::duration::parse_go_duration;
use crate::flags::{FlagKind, Flags};
use crate::heredoc::{parse_heredoc_word, HeredocSpec};
use crate::json::{self, JsonArgs};
use crate::words::{parse_name_val, parse_words, split_command, split_whitespace, SplitLine};
use std::time::Duration;

/// A heredoc with its body as read from the file.
#[derive(Debug, Clone)]
pub(crate) struct RawHeredoc {
    pub spec: HeredocSpec,
    /// Body lines with their line endings, tabs not stripped.
    pub content: String,
}

impl RawHeredoc {
    fn to_heredoc(&self) -> Heredoc {
        Heredoc {
            name: self.spec.name.clone(),
            content: if self.spec.chomp {
                chomp(&self.content)
            } else {
                self.content.clone()
            },
            expand: self.spec.expand,
            chomp: self.spec.chomp,
        }
    }
}

/// Removes leading tabs from every line (`<<-`).
fn chomp(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

/// What `FROM` adds beyond its instruction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FromParts {
    pub base: String,
    pub name: Option<String>,
    pub platform: Option<String>,
}

/// Whether heredoc bodies follow this line: `RUN`, `COPY` and `ADD` (also
/// as an `ONBUILD` trigger) in shell form.
pub(crate) fn takes_heredocs(split: &SplitLine, escape: char) -> bool {
    let direct = |s: &SplitLine| {
        matches!(s.cmd.to_lowercase().as_str(), "run" | "copy" | "add")
            && !matches!(json::parse_array(&s.args), JsonArgs::Strings(_))
    };
    if split.cmd.to_lowercase() == "onbuild" {
        return direct(&split_command(&split.args, escape));
    }
    direct(split)
}

/// Arguments the way Docker's line parsers produce them.
struct Args {
    list: Vec<String>,
    json: bool,
}

/// `parseMaybeJSON`: a JSON array, or the whole text as one argument.
fn maybe_json(rest: &str) -> Result<Args, String> {
    if rest.is_empty() {
        return Ok(Args {
            list: Vec::new(),
            json: false,
        });
    }
    match json::parse_array(rest) {
        JsonArgs::Strings(list) => Ok(Args { list, json: true }),
        JsonArgs::NotStrings => Err(json::NOT_STRINGS_ERROR.to_string()),
        JsonArgs::NotJson => Ok(Args {
            list: vec![rest.to_string()],
            json: false,
        }),
    }
}

/// `parseMaybeJSONToList`: a JSON array, or whitespace-separated words.
fn maybe_json_to_list(rest: &str) -> Result<Args, String> {
    match json::parse_array(rest) {
        JsonArgs::Strings(list) => Ok(Args { list, json: true }),
        JsonArgs::NotStrings => Err(json::NOT_STRINGS_ERROR.to_string()),
        JsonArgs::NotJson => Ok(Args {
            list: split_whitespace(rest),
            json: false,
        }),
    }
}

fn shell_or_exec(args: Args) -> ShellOrExec {
    if args.json {
        ShellOrExec::Exec(args.list)
    } else {
        ShellOrExec::Shell(args.list.join(" "))
    }
}

fn at_least_one(keyword: &str) -> String {
    format!("{keyword} requires at least one argument")
}

fn exactly_one(keyword: &str) -> String {
    format!("{keyword} requires exactly one argument")
}

const NO_FLAGS: &[(&str, FlagKind)] = &[];

/// Builds the instruction for `split`. `line` is the joined line as read
/// (Docker's `Node.Original`).
pub(crate) fn build(
    split: &SplitLine,
    line: &str,
    heredocs: &[RawHeredoc],
    loc: Location,
    escape: char,
) -> Result<(InstructionKind, Option<FromParts>), String> {
    let rest = split.args.as_str();
    let flags = |spec: &[(&'static str, FlagKind)]| Flags::parse(&split.flags, spec);
    let kind = match split.cmd.to_lowercase().as_str() {
        "from" => return build_from(split).map(|p| (InstructionKind::From, Some(p))),
        "run" => {
            let args = maybe_json(rest)?;
            let f = flags(&[("mount", FlagKind::Strings), ("network", FlagKind::String)])?;
            let network = f.string("network");
            if let Some(n) = &network {
                if !matches!(n.as_str(), "default" | "none" | "host") {
                    return Err(format!("invalid network mode {n:?}"));
                }
            }
            if args.list.is_empty() && !args.json {
                return Err(at_least_one("RUN"));
            }
            InstructionKind::Run {
                cmd: shell_or_exec(args),
                heredocs: heredocs.iter().map(RawHeredoc::to_heredoc).collect(),
                mounts: f.strings("mount"),
                network,
            }
        }
        "cmd" => {
            let args = maybe_json(rest)?;
            flags(NO_FLAGS)?;
            InstructionKind::Cmd(shell_or_exec(args))
        }
        "entrypoint" => {
            let args = maybe_json(rest)?;
            flags(NO_FLAGS)?;
            InstructionKind::Entrypoint(shell_or_exec(args))
        }
        "shell" => {
            let args = maybe_json(rest)?;
            flags(NO_FLAGS)?;
            if args.list.is_empty() {
                return Err(at_least_one("SHELL"));
            }
            if !args.json {
                return Err("SHELL requires the arguments to be in JSON form".to_string());
            }
            InstructionKind::Shell(args.list)
        }
        "copy" => InstructionKind::Copy(build_copy(split, heredocs, "COPY")?),
        "add" => InstructionKind::Add(build_copy(split, heredocs, "ADD")?),
        "env" => {
            let pairs = parse_name_val(rest, "ENV", escape)?;
            flags(NO_FLAGS)?;
            InstructionKind::Env(key_values(pairs, "ENV")?)
        }
        "label" => {
            let pairs = parse_name_val(rest, "LABEL", escape)?;
            flags(NO_FLAGS)?;
            InstructionKind::Label(key_values(pairs, "LABEL")?)
        }
        "arg" => {
            // Docker does not check ARG's flags.
            let words = parse_words(rest, escape);
            if words.is_empty() {
                return Err(at_least_one("ARG"));
            }
            let mut out = Vec::new();
            for w in words {
                match w.split_once('=') {
                    Some(("", _)) => return Err("ARG names can not be blank".to_string()),
                    Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
                    None => out.push((w, None)),
                }
            }
            InstructionKind::Arg(out)
        }
        "workdir" => InstructionKind::Workdir(single(rest, "WORKDIR", Some(split))?),
        "user" => InstructionKind::User(single(rest, "USER", Some(split))?),
        "maintainer" => InstructionKind::Maintainer(single(rest, "MAINTAINER", Some(split))?),
        "stopsignal" => InstructionKind::StopSignal(single(rest, "STOPSIGNAL", None)?),
        "expose" => {
            let mut ports = split_whitespace(rest);
            if ports.is_empty() {
                return Err(at_least_one("EXPOSE"));
            }
            flags(NO_FLAGS)?;
            ports.sort();
            InstructionKind::Expose(ports)
        }
        "volume" => {
            let args = maybe_json_to_list(rest)?;
            if args.list.is_empty() {
                return Err(at_least_one("VOLUME"));
            }
            flags(NO_FLAGS)?;
            let mut volumes = Vec::new();
            for v in args.list {
                let v = v.trim();
                if v.is_empty() {
                    return Err("VOLUME specified can not be an empty string".to_string());
                }
                volumes.push(v.to_string());
            }
            InstructionKind::Volume(volumes)
        }
        "healthcheck" => InstructionKind::Healthcheck(build_healthcheck(split)?),
        "onbuild" => {
            let trigger = build_onbuild(split, line, heredocs, loc, escape)?;
            InstructionKind::Onbuild(Box::new(trigger))
        }
        _ => return Err(format!("unknown instruction: {}", split.cmd)),
    };
    Ok((kind, None))
}

/// `parseString` instructions: the whole rest is the one argument.
fn single(rest: &str, keyword: &str, check_flags: Option<&SplitLine>) -> Result<String, String> {
    if rest.is_empty() {
        return Err(exactly_one(keyword));
    }
    if let Some(split) = check_flags {
        Flags::parse(&split.flags, NO_FLAGS)?;
    }
    Ok(rest.to_string())
}

fn key_values(
    pairs: Vec<(String, String)>,
    keyword: &str,
) -> Result<Vec<(String, String)>, String> {
    if pairs.is_empty() {
        return Err(at_least_one(keyword));
    }
    if pairs.iter().any(|(k, _)| k.is_empty()) {
        return Err(format!("{keyword} names can not be blank"));
    }
    Ok(pairs)
}

fn is_valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn build_from(split: &SplitLine) -> Result<FromParts, String> {
    let args = split_whitespace(&split.args);
    let name = match args.as_slice() {
        [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
            let lower = name.to_lowercase();
            if !is_valid_stage_name(&lower) {
                return Err(format!(
                    "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                ));
            }
            Some(lower)
        }
        [_] => None,
        _ => return Err("FROM requires either one or three arguments".to_string()),
    };
    let f = Flags::parse(&split.flags, &[("platform", FlagKind::String)])?;
    Ok(FromParts {
        base: args[0].clone(),
        name,
        platform: f.string("platform"),
    })
}

fn build_copy(
    split: &SplitLine,
    heredocs: &[RawHeredoc],
    keyword: &str,
) -> Result<CopyArgs, String> {
    let args = maybe_json_to_list(&split.args)?;
    if args.list.len() < 2 {
        return Err(format!(
            "{keyword} requires at least two arguments, but only one was provided. Destination could not be determined"
        ));
    }
    let spec: &[(&str, FlagKind)] = if keyword == "COPY" {
        &[
            ("from", FlagKind::String),
            ("chown", FlagKind::String),
            ("chmod", FlagKind::String),
            ("link", FlagKind::Bool),
            ("exclude", FlagKind::Unsupported),
            ("parents", FlagKind::Unsupported),
        ]
    } else {
        &[
            ("chown", FlagKind::String),
            ("chmod", FlagKind::String),
            ("link", FlagKind::Bool),
            ("keep-git-dir", FlagKind::Unsupported),
            ("checksum", FlagKind::Unsupported),
            ("unpack", FlagKind::Unsupported),
            ("exclude", FlagKind::Unsupported),
        ]
    };
    let f = Flags::parse(&split.flags, spec)?;
    let (dest, srcs) = args.list.split_last().expect("at least two arguments");
    if parse_heredoc_word(dest).ok().flatten().is_some() {
        return Err(format!(
            "{keyword} cannot accept a heredoc as a destination"
        ));
    }
    let mut sources = Vec::new();
    let mut docs = Vec::new();
    for src in srcs {
        match parse_heredoc_word(src).ok().flatten() {
            Some(spec) => {
                // The body is the one read for that name (the last one when
                // a name repeats); quoting and `-` come from this word.
                let content = heredocs
                    .iter()
                    .rev()
                    .find(|h| h.spec.name == spec.name)
                    .map(|h| h.content.clone())
                    .unwrap_or_default();
                docs.push(RawHeredoc { spec, content }.to_heredoc());
            }
            None => sources.push(src.clone()),
        }
    }
    Ok(CopyArgs {
        sources,
        dest: dest.clone(),
        from: f.string("from"),
        chown: f.string("chown"),
        chmod: f.string("chmod"),
        link: f.bool("link"),
        heredocs: docs,
    })
}

/// A `HEALTHCHECK` duration option: `None` when absent or zero.
fn interval(f: &Flags, name: &str) -> Result<Option<Duration>, String> {
    let Some(s) = f.string(name).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let ns = parse_go_duration(&s)?;
    if ns == 0 {
        return Ok(None);
    }
    if ns < 1_000_000 {
        return Err(format!("Interval {name:?} cannot be less than 1ms"));
    }
    Ok(Some(Duration::from_nanos(ns as u64)))
}

/// Go's `strconv.ParseInt(s, 10, 32)` for `--retries`.
fn parse_retries(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseInt: parsing {s:?}: invalid syntax"));
    }
    match s.parse::<i32>() {
        Ok(v) => Ok(i64::from(v)),
        Err(_) => Err(format!(
            "strconv.ParseInt: parsing {s:?}: value out of range"
        )),
    }
}

fn build_healthcheck(split: &SplitLine) -> Result<Healthcheck, String> {
    // `parseHealthConfig`: the type word, then the command in either form.
    let rest = split.args.as_str();
    let (typ, cmd_text) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim_start()),
        None => (rest, ""),
    };
    if typ.is_empty() {
        return Err(at_least_one("HEALTHCHECK"));
    }
    let cmd = maybe_json(cmd_text)?;
    let typ = typ.to_uppercase();
    if typ == "NONE" {
        // Docker ignores flags here.
        if !cmd.list.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".to_string());
        }
        return Ok(Healthcheck {
            test: None,
            none: true,
            ..Healthcheck::default()
        });
    }
    let f = Flags::parse(
        &split.flags,
        &[
            ("interval", FlagKind::String),
            ("timeout", FlagKind::String),
            ("start-period", FlagKind::String),
            ("start-interval", FlagKind::String),
            ("retries", FlagKind::String),
        ],
    )?;
    if typ != "CMD" {
        return Err(format!("Unknown type {typ:?} in HEALTHCHECK (try CMD)"));
    }
    if cmd.list.is_empty() {
        return Err("Missing command after HEALTHCHECK CMD".to_string());
    }
    let test = shell_or_exec(cmd);
    let retries = match f.string("retries").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            let n = parse_retries(&s)?;
            if n < 0 {
                return Err(format!("--retries cannot be negative ({n})"));
            }
            Some(n as u32)
        }
    };
    Ok(Healthcheck {
        test: Some(test),
        none: false,
        interval: interval(&f, "interval")?,
        timeout: interval(&f, "timeout")?,
        start_period: interval(&f, "start-period")?,
        start_interval: interval(&f, "start-interval")?,
        retries,
    })
}

/// Go's `(?i)^\s*ONBUILD\s*` removal.
fn strip_onbuild_keyword(line: &str) -> &str {
    let is_go_space = |c: char| matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ');
    let s = line.trim_start_matches(is_go_space);
    match s.get(..7) {
        Some(kw) if kw.eq_ignore_ascii_case("onbuild") => s[7..].trim_start_matches(is_go_space),
        _ => line,
    }
}

fn build_onbuild(
    split: &SplitLine,
    line: &str,
    heredocs: &[RawHeredoc],
    loc: Location,
    escape: char,
) -> Result<Instruction, String> {
    if split.args.is_empty() {
        return Err(at_least_one("ONBUILD"));
    }
    let child = split_command(&split.args, escape);
    Flags::parse(&split.flags, NO_FLAGS)?;
    let trigger = child.cmd.to_uppercase();
    match trigger.as_str() {
        "ONBUILD" => return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_string()),
        "MAINTAINER" | "FROM" => {
            return Err(format!("{trigger} isn't allowed as an ONBUILD trigger"))
        }
        _ => {}
    }
    // The expression Docker stores in the image config.
    let mut original = strip_onbuild_keyword(line).to_string();
    for h in heredocs {
        original.push('\n');
        original.push_str(&h.content);
        original.push_str(&h.spec.name);
    }
    let (kind, _) = build(&child, &split.args, heredocs, loc, escape)?;
    Ok(Instruction {
        loc,
        original,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chomp_strips_leading_tabs_per_line() {
        assert_eq!(
            chomp("\thello\n\t\tworld\n  x\t\n"),
            "hello\nworld\n  x\t\n"
        );
        assert_eq!(chomp("\tno newline"), "no newline");
    }

    #[test]
    fn stage_names() {
        for ok in ["a", "build", "a-b_c.d", "x1"] {
            assert!(is_valid_stage_name(ok), "{ok}");
        }
        for bad in ["", "1a", "-a", "a/b", "a b", "é"] {
            assert!(!is_valid_stage_name(bad), "{bad}");
        }
    }

    #[test]
    fn onbuild_keyword_removal() {
        assert_eq!(strip_onbuild_keyword("ONBUILD RUN x  "), "RUN x  ");
        assert_eq!(strip_onbuild_keyword("onbuild\tCOPY . /"), "COPY . /");
    }

    #[test]
    fn retries() {
        assert_eq!(parse_retries("3"), Ok(3));
        assert_eq!(parse_retries("+3"), Ok(3));
        assert_eq!(parse_retries("-1"), Ok(-1));
        assert!(parse_retries("x").is_err());
        assert!(parse_retries("99999999999")
            .unwrap_err()
            .contains("out of range"));
    }
}
