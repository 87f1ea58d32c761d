//! Parsing behaviour checked against what Docker's parser produces for the
//! same input (buildkit's parser test files and observed behaviour).

use berth_dockerfile::{
    parse, CopyArgs, Dockerfile, Healthcheck, Heredoc, Instruction, InstructionKind as K, Location,
    ShellOrExec,
};
use std::time::Duration;

fn ok(text: &str) -> Dockerfile {
    match parse("Dockerfile", text) {
        Ok(d) => d,
        Err(e) => panic!("unexpected error: {e}\n--- input:\n{text}"),
    }
}

fn err(text: &str) -> String {
    match parse("Dockerfile", text) {
        Ok(d) => panic!("expected an error, got {d:#?}"),
        Err(e) => e.to_string(),
    }
}

/// All instructions of the first stage.
fn body(text: &str) -> Vec<Instruction> {
    ok(text).stages.remove(0).instructions
}

fn kinds(text: &str) -> Vec<K> {
    body(text).into_iter().map(|i| i.kind).collect()
}

fn originals(text: &str) -> Vec<String> {
    body(text).into_iter().map(|i| i.original).collect()
}

fn shell(s: &str) -> ShellOrExec {
    ShellOrExec::Shell(s.to_string())
}

fn exec(v: &[&str]) -> ShellOrExec {
    ShellOrExec::Exec(v.iter().map(|s| s.to_string()).collect())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn run(cmd: ShellOrExec) -> K {
    K::Run {
        cmd,
        heredocs: vec![],
        mounts: vec![],
        network: None,
    }
}

fn heredoc(name: &str, content: &str, expand: bool, chomp: bool) -> Heredoc {
    Heredoc {
        name: name.into(),
        content: content.into(),
        expand,
        chomp,
    }
}

// ---------------------------------------------------------------- structure

#[test]
fn stages_and_global_args() {
    let d = ok(
        "ARG A=1\nARG B\nFROM busybox AS Build\nRUN true\nFROM scratch\nCOPY --from=build /a /b\n",
    );
    assert_eq!(d.escape, '\\');
    assert_eq!(d.syntax, None);
    assert_eq!(d.global_args.len(), 2);
    assert_eq!(
        d.global_args[0].kind,
        K::Arg(vec![("A".into(), Some("1".into()))])
    );
    assert_eq!(d.global_args[1].kind, K::Arg(vec![("B".into(), None)]));
    assert_eq!(d.stages.len(), 2);
    let s0 = &d.stages[0];
    assert_eq!(
        (s0.index, s0.name.as_deref(), s0.base.as_str()),
        (0, Some("build"), "busybox")
    );
    assert_eq!(s0.from.kind, K::From);
    assert_eq!(s0.from.original, "FROM busybox AS Build");
    assert_eq!(s0.from.loc, Location { line: 3, column: 1 });
    assert_eq!(s0.instructions.len(), 1);
    let s1 = &d.stages[1];
    assert_eq!(
        (s1.index, s1.name.as_deref(), s1.base.as_str()),
        (1, None, "scratch")
    );
    assert_eq!(d.step_count(), 6);
    let steps: Vec<&str> = d.steps().map(|i| i.original.as_str()).collect();
    assert_eq!(
        steps,
        vec![
            "ARG A=1",
            "ARG B",
            "FROM busybox AS Build",
            "RUN true",
            "FROM scratch",
            "COPY --from=build /a /b"
        ]
    );
    assert_eq!(d.stage_by_name("BUILD").map(|s| s.index), Some(0));
}

#[test]
fn from_forms() {
    let d = ok("FROM --platform=$BUILDPLATFORM golang:1.22 as builder\nFROM ${BASE:-busybox}\n");
    assert_eq!(d.stages[0].platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(d.stages[0].base, "golang:1.22");
    assert_eq!(d.stages[0].name.as_deref(), Some("builder"));
    assert_eq!(d.stages[1].base, "${BASE:-busybox}");
    assert_eq!(d.stages[1].platform, None);
}

#[test]
fn from_errors() {
    assert!(err("FROM\n").contains("FROM requires either one or three arguments"));
    assert!(err("FROM a AS\n").contains("FROM requires either one or three arguments"));
    assert!(err("FROM a b c d\n").contains("FROM requires either one or three arguments"));
    assert!(err("FROM a AS 1x\n").contains("invalid name for build stage: \"1x\""));
    assert!(err("FROM a AS b/c\n").contains("invalid name for build stage"));
    assert!(err("FROM a --platform=x\n").contains("FROM requires either one or three arguments"));
    assert!(err("FROM --bogus=1 a\n").contains("unknown flag: --bogus"));
    assert_eq!(
        err("FROM a AS x\nFROM b AS X\n"),
        "Dockerfile:2:1: duplicate stage name \"x\""
    );
}

#[test]
fn instructions_before_from() {
    assert_eq!(
        err("RUN x\nFROM a\n"),
        "Dockerfile:1:1: no build stage in current context"
    );
    assert_eq!(
        err("ARG x\n"),
        "Dockerfile:1:1: dockerfile contains no stages to build"
    );
    assert_eq!(err(""), "Dockerfile:1:1: file with no instructions");
    assert_eq!(
        err("# only\n\n# comments\n"),
        "Dockerfile:3:1: file with no instructions"
    );
}

#[test]
fn unknown_instruction() {
    assert_eq!(
        err("FROM a\n\n  FOO bar\n"),
        "Dockerfile:3:3: unknown instruction: FOO"
    );
    assert!(err("FROM a\nRUNN x\n").contains("unknown instruction: RUNN"));
}

#[test]
fn keywords_are_case_insensitive() {
    let d = ok("from a As B\nrun echo\nCmd [\"x\"]\nwOrKdIr /x\n");
    assert_eq!(d.stages[0].name.as_deref(), Some("b"));
    assert_eq!(
        d.stages[0]
            .instructions
            .iter()
            .map(|i| i.kind.clone())
            .collect::<Vec<_>>(),
        vec![
            run(shell("echo")),
            K::Cmd(exec(&["x"])),
            K::Workdir("/x".into())
        ]
    );
    assert_eq!(d.stages[0].instructions[0].original, "run echo");
}

// ------------------------------------------------------ lines and directives

#[test]
fn continuation_joining_like_docker() {
    // buildkit testfiles/continueIndent
    let text = "FROM ubuntu:14.04\n\nRUN echo hello\\\n  world\\\n  goodnight  \\\n  moon\\\n  light\\\nning\nRUN echo hello  \\\n  world\nRUN echo hello  \\\nworld\nRUN echo hello \\\ngoodbye\\\nfrog\nRUN echo hello  \\  \nworld\nRUN echo hi \\\n \\\n world \\\n\\\n good\\\n\\\nnight\nRUN echo goodbye\\\nfrog\nRUN echo good\\\nbye\\\nfrog\n\nRUN echo hello \\\n# this is a comment\n\n# this is a comment with a blank line surrounding it\n\nthis is some more useful stuff\n";
    let want = [
        "echo hello  world  goodnight    moon  lightning",
        "echo hello    world",
        "echo hello  world",
        "echo hello goodbyefrog",
        "echo hello  world",
        "echo hi   world  goodnight",
        "echo goodbyefrog",
        "echo goodbyefrog",
        "echo hello this is some more useful stuff",
    ];
    let got = kinds(text);
    assert_eq!(got, want.iter().map(|s| run(shell(s))).collect::<Vec<_>>());
    let orig = originals(text);
    assert_eq!(
        orig[0],
        "RUN echo hello  world  goodnight    moon  lightning"
    );
    assert_eq!(orig[8], "RUN echo hello this is some more useful stuff");
}

#[test]
fn locations_point_at_the_keyword() {
    let d = ok("# c\nFROM a\n\n   RUN a \\\n  b\n\tENV x=1\n");
    let locs: Vec<_> = d.stages[0].instructions.iter().map(|i| i.loc).collect();
    assert_eq!(
        locs,
        vec![
            Location { line: 4, column: 4 },
            Location { line: 6, column: 2 }
        ]
    );
}

#[test]
fn trailing_backslashes() {
    // buildkit testfiles/trailing-backslash
    let text = "FROM hello-world\n\nENV A path\nENV B another\\\\path\nENV C trailing\\\\backslash\\\\\nENV D This should not be appended to C\nENV E hello\\\n\\\nworld\nENV F hello\\\n \\\nworld\nENV G hello \\\n\\\nworld\n";
    assert_eq!(
        kinds(text),
        vec![
            K::Env(pairs(&[("A", "path")])),
            K::Env(pairs(&[("B", "another\\\\path")])),
            K::Env(pairs(&[("C", "trailing\\\\backslash\\\\")])),
            K::Env(pairs(&[("D", "This should not be appended to C")])),
            K::Env(pairs(&[("E", "helloworld")])),
            K::Env(pairs(&[("F", "hello world")])),
            K::Env(pairs(&[("G", "hello world")])),
        ]
    );
}

#[test]
fn continuation_at_eof_and_crlf() {
    assert_eq!(
        kinds("FROM alpine:3.5\n\nRUN something \\"),
        vec![run(shell("something"))]
    );
    let d = ok("FROM a\r\nRUN echo a \\\r\n  b\r\nENV X=1\r\n");
    assert_eq!(d.stages[0].instructions[0].kind, run(shell("echo a   b")));
    assert_eq!(d.stages[0].instructions[0].original, "RUN echo a   b");
    assert_eq!(
        d.stages[0].instructions[1].kind,
        K::Env(pairs(&[("X", "1")]))
    );
}

#[test]
fn bom_is_ignored() {
    let d = ok("\u{feff}# escape=`\nFROM a\nRUN x `\n y\n");
    assert_eq!(d.escape, '`');
    assert_eq!(d.stages[0].instructions[0].kind, run(shell("x  y")));
}

#[test]
fn escape_directive() {
    // buildkit testfiles/escape, escape-nonewline, escape-after-comment
    let d = ok("#escape = `\n\nFROM image\nLABEL maintainer foo@bar.com\nENV GOPATH `\n\\go");
    assert_eq!(d.escape, '`');
    assert_eq!(
        d.stages[0].instructions[1].kind,
        K::Env(pairs(&[("GOPATH", "\\go")]))
    );
    let d = ok("# escape = `\n# There is no white space line after the directives.\nFROM image\nENV GOPATH `\n\\go\n");
    assert_eq!(
        d.stages[0].instructions[0].kind,
        K::Env(pairs(&[("GOPATH", "\\go")]))
    );
    let d = ok("# Comment here.\n# escape = `\n\nFROM image\nENV GOPATH \\\n\\go");
    assert_eq!(d.escape, '\\');
    assert_eq!(
        d.stages[0].instructions[0].kind,
        K::Env(pairs(&[("GOPATH", "\\go")]))
    );
    // Windows-style paths with a backtick escape.
    let d = ok("# escape=`\nFROM a\nCOPY testfile.txt c:\\\nRUN dir c:\\windows `\n  && echo x\n");
    assert_eq!(
        d.stages[0].instructions[1].kind,
        run(shell("dir c:\\windows   && echo x"))
    );
    match &d.stages[0].instructions[0].kind {
        K::Copy(c) => assert_eq!(c.dest, "c:\\"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn syntax_and_escape_directives_together() {
    let d = ok("# syntax = docker/dockerfile\n# escape = `\n\nFROM `\n    image\n");
    assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile"));
    assert_eq!(d.stages[0].base, "image");
}

#[test]
fn directive_errors() {
    assert_eq!(
        err("# escape=`\n# escape=\\\nFROM a\n"),
        "Dockerfile:2:1: only one escape parser directive can be used"
    );
    assert!(err("# escape=x\nFROM a\n").contains("invalid escape token 'x'"));
    // After the directives, a repeated one is just a comment.
    ok("# escape=`\nFROM a\n# escape=\\\n");
}

#[test]
fn comments_only_at_line_start() {
    assert_eq!(
        kinds("FROM a\n  # indented comment\nRUN echo # not a comment\n"),
        vec![run(shell("echo # not a comment"))]
    );
}

// --------------------------------------------------------- forms and flags

#[test]
fn json_vs_shell_forms() {
    let text = "FROM a\nCMD []\nCMD [\"\"]\nCMD [\"a\"]\nCMD [ \"a\", \"b\" ]\nCMD\t[\t\"a\",\t\"b\"\t]\t\nCMD ['echo','single quotes are invalid JSON']\nCMD [\"echo\", \"unterminated\"\nENTRYPOINT [ \"/usr/bin/redis-server\" ]\nENTRYPOINT echo $HOME\nCMD\nRUN [\"ls\", \"-la\"]\nRUN echo '1234' && \\\n    echo \"456\"\n";
    assert_eq!(
        kinds(text),
        vec![
            K::Cmd(exec(&[])),
            K::Cmd(exec(&[""])),
            K::Cmd(exec(&["a"])),
            K::Cmd(exec(&["a", "b"])),
            K::Cmd(exec(&["a", "b"])),
            K::Cmd(shell("['echo','single quotes are invalid JSON']")),
            K::Cmd(shell("[\"echo\", \"unterminated\"")),
            K::Entrypoint(exec(&["/usr/bin/redis-server"])),
            K::Entrypoint(shell("echo $HOME")),
            K::Cmd(shell("")),
            run(exec(&["ls", "-la"])),
            run(shell("echo '1234' &&     echo \"456\"")),
        ]
    );
}

#[test]
fn json_with_non_strings_is_an_error() {
    assert!(err("FROM a\nCMD [ \"echo\", [ \"nested json\" ] ]\n")
        .contains("arrays must be comprised of strings only"));
    assert!(err("FROM a\nRUN [1]\n").contains("arrays must be comprised of strings only"));
}

#[test]
fn run_flags() {
    let k = kinds("FROM a\nRUN --mount=type=cache,target=/root/.cache --mount=type=tmpfs,target=/t --network=none make\n");
    assert_eq!(
        k[0],
        K::Run {
            cmd: shell("make"),
            heredocs: vec![],
            mounts: strings(&["type=cache,target=/root/.cache", "type=tmpfs,target=/t"]),
            network: Some("none".into()),
        }
    );
    assert!(err("FROM a\nRUN --network=bridge x\n").contains("invalid network mode \"bridge\""));
    assert_eq!(
        err("FROM a\nRUN --bogus x\n"),
        "Dockerfile:2:1: unknown flag: --bogus"
    );
    assert!(err("FROM a\nRUN --network=host --network=none x\n")
        .contains("duplicate flag specified: --network"));
    assert!(err("FROM a\nRUN\n").contains("RUN requires at least one argument"));
    assert!(err("FROM a\nRUN --network=none\n").contains("RUN requires at least one argument"));
}

#[test]
fn copy_and_add() {
    let text = "FROM a\nCOPY foo /tmp/\nCOPY --from=builder --chown=1:2 --chmod=755 --link a b /dst/\nCOPY [\"test file\", \"/tmp\"]\nADD\t\t[ \"test file\", \"/tmp/test file\" ]\nADD --chown=me . /\nCOPY \"a b\" /x\nCOPY -- --weird /x\n";
    let k = kinds(text);
    let c = |sources: &[&str], dest: &str| CopyArgs {
        sources: strings(sources),
        dest: dest.into(),
        from: None,
        chown: None,
        chmod: None,
        link: false,
        heredocs: vec![],
    };
    assert_eq!(k[0], K::Copy(c(&["foo"], "/tmp/")));
    assert_eq!(
        k[1],
        K::Copy(CopyArgs {
            from: Some("builder".into()),
            chown: Some("1:2".into()),
            chmod: Some("755".into()),
            link: true,
            ..c(&["a", "b"], "/dst/")
        })
    );
    assert_eq!(k[2], K::Copy(c(&["test file"], "/tmp")));
    assert_eq!(k[3], K::Add(c(&["test file"], "/tmp/test file")));
    assert_eq!(
        k[4],
        K::Add(CopyArgs {
            chown: Some("me".into()),
            ..c(&["."], "/")
        })
    );
    // Shell-form words are split on whitespace only; the quotes reach the
    // builder's expansion (where docker rejects them).
    assert_eq!(k[5], K::Copy(c(&["\"a", "b\""], "/x")));
    assert_eq!(k[6], K::Copy(c(&["--weird"], "/x")));
}

#[test]
fn copy_errors() {
    assert_eq!(
        err("FROM a\nCOPY onlyone\n"),
        "Dockerfile:2:1: COPY requires at least two arguments, but only one was provided. Destination could not be determined"
    );
    assert!(err("FROM a\nADD\n").contains("ADD requires at least two arguments"));
    assert_eq!(
        err("FROM a\nCOPY --bogus a b\n"),
        "Dockerfile:2:1: unknown flag: --bogus"
    );
    assert!(err("FROM a\nADD --from=x a b\n").contains("unknown flag: --from"));
    assert!(err("FROM a\nCOPY --from a b\n").contains("missing a value on flag: --from"));
    assert!(err("FROM a\nCOPY --link=maybe a b\n")
        .contains("expecting boolean value for flag --link, not: maybe"));
    assert!(err("FROM a\nCOPY --parents a b\n").contains("unsupported flag: --parents"));
}

#[test]
fn env_forms() {
    // buildkit testfiles/env
    let text = "FROM ubuntu\nENV name value\nENV name=value\nENV name=value name2=value2\nENV name=\"value value1\"\nENV name=value\\ value2\nENV name=\"value'quote space'value2\"\nENV name='value\"double quote\"value2'\nENV name=value\\ value2 name2=value2\\ value3\nENV name=\"a\\\"b\"\nENV name='a\\'b'\nENV name=\"''\"\nENV name=value \\\n    name1=value1 \\\n    name2=\"value2a \\\n           value2b\" \\\n    name3=\"value3a\\n\\\"value3b\\\"\" \\\n\tname4=\"value4a\\\\nvalue4b\" \\\n";
    assert_eq!(
        kinds(text),
        vec![
            K::Env(pairs(&[("name", "value")])),
            K::Env(pairs(&[("name", "value")])),
            K::Env(pairs(&[("name", "value"), ("name2", "value2")])),
            K::Env(pairs(&[("name", "\"value value1\"")])),
            K::Env(pairs(&[("name", "value\\ value2")])),
            K::Env(pairs(&[("name", "\"value'quote space'value2\"")])),
            K::Env(pairs(&[("name", "'value\"double quote\"value2'")])),
            K::Env(pairs(&[
                ("name", "value\\ value2"),
                ("name2", "value2\\ value3")
            ])),
            K::Env(pairs(&[("name", "\"a\\\"b\"")])),
            K::Env(pairs(&[("name", "'a\\'b'")])),
            K::Env(pairs(&[("name", "\"''\"")])),
            K::Env(pairs(&[
                ("name", "value"),
                ("name1", "value1"),
                ("name2", "\"value2a            value2b\""),
                ("name3", "\"value3a\\n\\\"value3b\\\"\""),
                ("name4", "\"value4a\\\\nvalue4b\""),
            ])),
        ]
    );
}

#[test]
fn env_values_expand_like_docker() {
    // What the builder gets after expanding the raw values.
    let d = ok("FROM a\nENV A=\"x y\" B=a\\ b C='$HOME' D=\"$HOME\"\n");
    let K::Env(env) = &d.stages[0].instructions[0].kind else {
        panic!()
    };
    let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
    let got: Vec<String> = env
        .iter()
        .map(|(_, v)| berth_dockerfile::expand_word(v, d.escape, &lookup).unwrap())
        .collect();
    assert_eq!(got, strings(&["x y", "a b", "$HOME", "/root"]));
}

#[test]
fn env_and_label_errors() {
    assert_eq!(
        err("FROM busybox\n\nENV PATH\n"),
        "Dockerfile:3:1: ENV must have two arguments"
    );
    assert!(err("FROM a\nENV\n").contains("ENV requires at least one argument"));
    assert!(err("FROM a\nENV =x\n").contains("ENV names can not be blank"));
    assert!(err("FROM a\nENV a=b c\n").contains("can't find = in \"c\""));
    assert!(err("FROM a\nLABEL\n").contains("LABEL requires at least one argument"));
    assert!(err("FROM a\nLABEL x\n").contains("LABEL must have two arguments"));
    assert!(err("FROM a\nENV --x=1 a=b\n").contains("unknown flag: --x"));
}

#[test]
fn labels() {
    let k = kinds("FROM a\nLABEL maintainer James Turnbull \"james@example.com\"\nLABEL \"com.example.vendor\"=\"ACME Inc\" version=1.0 description=\"multi \\\nline\"\n");
    assert_eq!(
        k[0],
        K::Label(pairs(&[(
            "maintainer",
            "James Turnbull \"james@example.com\""
        )]))
    );
    assert_eq!(
        k[1],
        K::Label(pairs(&[
            ("\"com.example.vendor\"", "\"ACME Inc\""),
            ("version", "1.0"),
            ("description", "\"multi line\"")
        ]))
    );
}

#[test]
fn args() {
    // buildkit testfiles/args
    let d = ok("ARG foo bar=baz\nFROM ubuntu\nARG abc=\"123 456\" def\nARG empty=\n");
    assert_eq!(
        d.global_args[0].kind,
        K::Arg(vec![
            ("foo".into(), None),
            ("bar".into(), Some("baz".into()))
        ])
    );
    assert_eq!(
        d.stages[0].instructions[0].kind,
        K::Arg(vec![
            ("abc".into(), Some("\"123 456\"".into())),
            ("def".into(), None)
        ])
    );
    assert_eq!(
        d.stages[0].instructions[1].kind,
        K::Arg(vec![("empty".into(), Some(String::new()))])
    );
    assert!(err("FROM a\nARG\n").contains("ARG requires at least one argument"));
    assert!(err("FROM a\nARG =x\n").contains("ARG names can not be blank"));
}

#[test]
fn single_argument_instructions() {
    let k = kinds("FROM a\nWORKDIR /a b\nUSER docker:root\nSTOPSIGNAL SIGKILL\nMAINTAINER docker <docker@docker.io>\nWORKDIR $HOME/x\n");
    assert_eq!(
        k,
        vec![
            K::Workdir("/a b".into()),
            K::User("docker:root".into()),
            K::StopSignal("SIGKILL".into()),
            K::Maintainer("docker <docker@docker.io>".into()),
            K::Workdir("$HOME/x".into()),
        ]
    );
    assert!(err("FROM a\nWORKDIR\n").contains("WORKDIR requires exactly one argument"));
    assert!(err("FROM a\nUSER\n").contains("USER requires exactly one argument"));
    assert!(err("FROM a\nSTOPSIGNAL\n").contains("STOPSIGNAL requires exactly one argument"));
    assert!(err("FROM a\nMAINTAINER\n").contains("MAINTAINER requires exactly one argument"));
    assert!(err("FROM a\nWORKDIR --x=1 /a\n").contains("unknown flag: --x"));
}

#[test]
fn expose_and_volume() {
    let k = kinds("FROM a\nEXPOSE 9000 5000 6000\nEXPOSE 80/tcp ${PORTS}\nVOLUME [\"/test\", \"/test2\"]\nVOLUME /opt/a /opt/b\nVOLUME /test3\n");
    assert_eq!(
        k,
        vec![
            K::Expose(strings(&["5000", "6000", "9000"])),
            K::Expose(strings(&["${PORTS}", "80/tcp"])),
            K::Volume(strings(&["/test", "/test2"])),
            K::Volume(strings(&["/opt/a", "/opt/b"])),
            K::Volume(strings(&["/test3"])),
        ]
    );
    assert!(err("FROM a\nEXPOSE\n").contains("EXPOSE requires at least one argument"));
    assert!(err("FROM a\nVOLUME\n").contains("VOLUME requires at least one argument"));
    assert!(err("FROM a\nVOLUME []\n").contains("VOLUME requires at least one argument"));
    assert!(err("FROM a\nVOLUME [\" \"]\n").contains("VOLUME specified can not be an empty string"));
}

#[test]
fn shell_instruction() {
    assert_eq!(
        kinds("FROM a\nSHELL [\"/bin/sh\", \"-ec\"]\n"),
        vec![K::Shell(strings(&["/bin/sh", "-ec"]))]
    );
    assert!(err("FROM a\nSHELL /bin/sh -c\n")
        .contains("SHELL requires the arguments to be in JSON form"));
    assert!(err("FROM a\nSHELL []\n").contains("SHELL requires at least one argument"));
}

#[test]
fn healthchecks() {
    let text = "FROM debian\nHEALTHCHECK --interval=5s --timeout=3s --retries=3 \\\n  CMD /app/check.sh --quiet\nHEALTHCHECK   CMD   a b\nHEALTHCHECK --timeout=3s CMD [\"foo\"]\nHEALTHCHECK NONE\nHEALTHCHECK --start-period=1m30s --interval=0s --retries=0 cmd [\"foo\"]\nHEALTHCHECK --start-interval=2s CMD true\n";
    let k = kinds(text);
    assert_eq!(
        k[0],
        K::Healthcheck(Healthcheck {
            test: Some(shell("/app/check.sh --quiet")),
            none: false,
            interval: Some(Duration::from_secs(5)),
            timeout: Some(Duration::from_secs(3)),
            start_period: None,
            start_interval: None,
            retries: Some(3),
        })
    );
    assert_eq!(
        k[1],
        K::Healthcheck(Healthcheck {
            test: Some(shell("a b")),
            ..Healthcheck::default()
        })
    );
    assert_eq!(
        k[2],
        K::Healthcheck(Healthcheck {
            test: Some(exec(&["foo"])),
            timeout: Some(Duration::from_secs(3)),
            ..Healthcheck::default()
        })
    );
    assert_eq!(
        k[3],
        K::Healthcheck(Healthcheck {
            none: true,
            ..Healthcheck::default()
        })
    );
    assert_eq!(
        k[4],
        K::Healthcheck(Healthcheck {
            test: Some(exec(&["foo"])),
            start_period: Some(Duration::from_secs(90)),
            retries: Some(0),
            ..Healthcheck::default()
        })
    );
    assert_eq!(
        k[5],
        K::Healthcheck(Healthcheck {
            test: Some(shell("true")),
            start_interval: Some(Duration::from_secs(2)),
            ..Healthcheck::default()
        })
    );
}

#[test]
fn healthcheck_errors() {
    for (line, msg) in [
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        (
            "HEALTHCHECK CONNECT TCP 7000",
            "Unknown type \"CONNECT\" in HEALTHCHECK (try CMD)",
        ),
        ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        (
            "HEALTHCHECK --interval=1 CMD x",
            "time: missing unit in duration \"1\"",
        ),
        (
            "HEALTHCHECK --interval=1us CMD x",
            "Interval \"interval\" cannot be less than 1ms",
        ),
        (
            "HEALTHCHECK --timeout=-1s CMD x",
            "Interval \"timeout\" cannot be less than 1ms",
        ),
        (
            "HEALTHCHECK --retries=-1 CMD x",
            "--retries cannot be negative (-1)",
        ),
        ("HEALTHCHECK --retries=x CMD x", "invalid syntax"),
        ("HEALTHCHECK --bogus=1 CMD x", "unknown flag: --bogus"),
    ] {
        let e = err(&format!("FROM a\n{line}\n"));
        assert!(e.contains(msg), "{line}: {e}");
    }
    // Docker does not look at flags of HEALTHCHECK NONE.
    ok("FROM a\nHEALTHCHECK --bogus NONE\n");
}

#[test]
fn onbuild() {
    let text = "FROM a\nONBUILD RUN [\"echo\", \"test\"]\nONBUILD RUN echo test  \nonbuild COPY --chown=1 . /\n";
    let b = body(text);
    let trigger = |i: &Instruction| match &i.kind {
        K::Onbuild(t) => (**t).clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(trigger(&b[0]).kind, run(exec(&["echo", "test"])));
    assert_eq!(trigger(&b[0]).original, "RUN [\"echo\", \"test\"]");
    assert_eq!(trigger(&b[1]).kind, run(shell("echo test")));
    assert_eq!(trigger(&b[1]).original, "RUN echo test  ");
    assert_eq!(b[1].original, "ONBUILD RUN echo test");
    match trigger(&b[2]).kind {
        K::Copy(c) => assert_eq!(c.chown.as_deref(), Some("1")),
        other => panic!("{other:?}"),
    }
    assert!(err("FROM a\nONBUILD\n").contains("ONBUILD requires at least one argument"));
    assert!(err("FROM a\nONBUILD ONBUILD RUN x\n")
        .contains("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"));
    assert!(err("FROM a\nONBUILD FROM x\n").contains("FROM isn't allowed as an ONBUILD trigger"));
    assert!(err("FROM a\nONBUILD maintainer x\n")
        .contains("MAINTAINER isn't allowed as an ONBUILD trigger"));
    assert!(err("FROM a\nONBUILD BOGUS x\n").contains("unknown instruction: BOGUS"));
}

// ---------------------------------------------------------------- heredocs

fn run_heredocs(i: &Instruction) -> (ShellOrExec, Vec<Heredoc>) {
    match &i.kind {
        K::Run { cmd, heredocs, .. } => (cmd.clone(), heredocs.clone()),
        other => panic!("not RUN: {other:?}"),
    }
}

#[test]
fn run_heredocs_like_buildkit() {
    let text = "FROM alpine:3.6\n\nRUN <<EMPTY\nEMPTY\n\nRUN <<INDENT\n\tfoo\n\tbar\nINDENT\n\nRUN <<-UNINDENT\n\tbaz\n\tquux\n\tUNINDENT\n\nRUN <<-'NOEXPAND'\n\tdon't expand $NAME\nNOEXPAND\n\nRUN <<COMMENT\n# internal comment\necho foo bar # trailing comment\nCOMMENT\n\nRUN --mount=type=cache,target=/foo <<MOUNT\necho hello\nMOUNT\n\nRUN <<COMPLEX python3\nprint('hello world')\nCOMPLEX\n\nRUN <<eo'f'\necho foo\neof\n\nRUN <<'one two'\necho bar\none two\n\nRUN <<  EOF  > foo\nEOF\nRUN \"<<NOHEREDOC\"\nRUN [\"<<EOF\"]\n";
    let b = body(text);
    let h: Vec<_> = b.iter().map(run_heredocs).collect();
    assert_eq!(
        h[0],
        (shell("<<EMPTY"), vec![heredoc("EMPTY", "", true, false)])
    );
    assert_eq!(
        h[1],
        (
            shell("<<INDENT"),
            vec![heredoc("INDENT", "\tfoo\n\tbar\n", true, false)]
        )
    );
    assert_eq!(
        h[2],
        (
            shell("<<-UNINDENT"),
            vec![heredoc("UNINDENT", "baz\nquux\n", true, true)]
        )
    );
    assert_eq!(
        h[3],
        (
            shell("<<-'NOEXPAND'"),
            vec![heredoc("NOEXPAND", "don't expand $NAME\n", false, true)]
        )
    );
    assert_eq!(
        h[4].1,
        vec![heredoc(
            "COMMENT",
            "# internal comment\necho foo bar # trailing comment\n",
            true,
            false
        )]
    );
    assert_eq!(h[5].1, vec![heredoc("MOUNT", "echo hello\n", true, false)]);
    assert_eq!(
        h[6],
        (
            shell("<<COMPLEX python3"),
            vec![heredoc("COMPLEX", "print('hello world')\n", true, false)]
        )
    );
    assert_eq!(h[7].1, vec![heredoc("eof", "echo foo\n", false, false)]);
    assert_eq!(h[8].1, vec![heredoc("one two", "echo bar\n", false, false)]);
    assert_eq!(
        h[9],
        (
            shell("<<  EOF  > foo"),
            vec![heredoc("EOF", "", true, false)]
        )
    );
    assert_eq!(h[10], (shell("\"<<NOHEREDOC\""), vec![]));
    assert_eq!(h[11], (exec(&["<<EOF"]), vec![]));
    assert_eq!(b[6].original, "RUN <<COMPLEX python3");
    assert_eq!(b[10].loc.line, 43);
}

#[test]
fn multiple_heredocs_and_python() {
    let b = body("FROM a\nRUN python3 <<EOF\nprint(1)\nEOF\nRUN cat <<A <<B > out\na\nA\nb\nB\n");
    assert_eq!(
        run_heredocs(&b[0]),
        (
            shell("python3 <<EOF"),
            vec![heredoc("EOF", "print(1)\n", true, false)]
        )
    );
    assert_eq!(
        run_heredocs(&b[1]),
        (
            shell("cat <<A <<B > out"),
            vec![
                heredoc("A", "a\n", true, false),
                heredoc("B", "b\n", true, false)
            ]
        )
    );
}

#[test]
fn heredoc_bodies_are_raw() {
    // No continuation, comment or directive processing inside the body.
    let b = body("FROM a\nRUN <<EOF\nline \\\n# comment\n\n  EOF\nEOF\nRUN after\n");
    assert_eq!(
        run_heredocs(&b[0]).1,
        vec![heredoc("EOF", "line \\\n# comment\n\n  EOF\n", true, false)]
    );
    assert_eq!(b[1].kind, run(shell("after")));
    // CRLF bodies keep their line endings; terminators match without them.
    let b = body("FROM a\r\nRUN <<EOF\r\nx\r\nEOF\r\n");
    assert_eq!(
        run_heredocs(&b[0]).1,
        vec![heredoc("EOF", "x\r\n", true, false)]
    );
}

#[test]
fn copy_heredocs() {
    let text = "FROM a\nCOPY <<FILE1 <<FILE2 /dest\ncontent 1\nFILE1\ncontent 2\nFILE2\nCOPY <<EOF /quotes\n\"foo\"\n'bar'\nEOF\nCOPY <<X <<Y /dest\nY\nX\nX\nY\nCOPY --chmod=644 real <<-'file.txt' /dest/\n\thello $x\n\tfile.txt\n";
    let k = kinds(text);
    let docs = |k: &K| match k {
        K::Copy(c) => (c.sources.clone(), c.heredocs.clone()),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        docs(&k[0]),
        (
            vec![],
            vec![
                heredoc("FILE1", "content 1\n", true, false),
                heredoc("FILE2", "content 2\n", true, false)
            ]
        )
    );
    assert_eq!(
        docs(&k[1]).1,
        vec![heredoc("EOF", "\"foo\"\n'bar'\n", true, false)]
    );
    assert_eq!(
        docs(&k[2]).1,
        vec![
            heredoc("X", "Y\n", true, false),
            heredoc("Y", "X\n", true, false)
        ]
    );
    assert_eq!(
        docs(&k[3]),
        (
            strings(&["real"]),
            vec![heredoc("file.txt", "hello $x\n", false, true)]
        )
    );
    assert!(err("FROM a\nCOPY a <<EOF\nx\nEOF\n")
        .contains("COPY cannot accept a heredoc as a destination"));
}

#[test]
fn heredoc_errors_and_non_heredoc_instructions() {
    assert_eq!(
        err("FROM a\nRUN <<EOF\nnever ends\n"),
        "Dockerfile:2:1: unterminated heredoc"
    );
    // Only RUN, COPY and ADD take heredocs: the next line is an instruction.
    assert!(err("FROM a\nUSER <<INVALID\nINVALID\n").contains("unknown instruction: INVALID"));
}

#[test]
fn onbuild_heredoc() {
    let b = body("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n");
    let K::Onbuild(t) = &b[0].kind else { panic!() };
    assert_eq!(t.original, "RUN <<EOF\necho hi\nEOF");
    assert_eq!(
        run_heredocs(t).1,
        vec![heredoc("EOF", "echo hi\n", true, false)]
    );
}

// ---------------------------------------------------------- hostile input

#[test]
fn one_megabyte_line() {
    let big = "x".repeat(1 << 20);
    let d = ok(&format!(
        "FROM a\nRUN echo {big}\nENV K={big}\nLABEL {big}=v\n"
    ));
    let b = &d.stages[0].instructions;
    assert_eq!(b[0].kind, run(shell(&format!("echo {big}"))));
    assert_eq!(b[1].kind, K::Env(vec![("K".into(), big.clone())]));
    let mut long_cont = String::from("FROM a\nRUN a");
    for _ in 0..20_000 {
        long_cont.push_str(" \\\n b");
    }
    ok(&long_cont);
    // Many heredoc markers on one line with no bodies.
    let many = format!("FROM a\nRUN {}\n", "<<E ".repeat(10_000));
    assert!(err(&many).contains("unterminated heredoc"));
}

#[test]
fn odd_characters() {
    ok("FROM a\nRUN echo \u{0}\u{7f}\u{200b}é\nENV \u{e9}=\u{1F600}\n");
    // Leading Unicode whitespace is trimmed, but only ASCII blanks separate
    // the keyword from its arguments.
    assert_eq!(kinds("FROM a\n\u{a0}RUN x\n"), vec![run(shell("x"))]);
    assert!(err("FROM a\nRUN\u{a0}x\n").contains("unknown instruction: RUN\u{a0}x"));
    ok("FROM a\nLABEL a=\"unterminated\n");
}
