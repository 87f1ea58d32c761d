//! The conformance cases in `tests/cases/` (built by docker and berth in
//! `tests/tests/docker_build_parity.rs`) must parse, and the parser must see
//! in them what docker sees.

use berth_dockerfile::{ignore::Matcher, parse, Dockerfile, InstructionKind as K, ShellOrExec};
use std::path::{Path, PathBuf};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases")
}

fn case(name: &str) -> Dockerfile {
    let path = cases_dir().join(format!("{name}.Dockerfile"));
    let text = std::fs::read_to_string(&path).unwrap();
    parse(&format!("{name}.Dockerfile"), &text).unwrap_or_else(|e| panic!("{e}"))
}

/// `Step N/M : ...` lines as docker's classic builder prints them.
fn steps(d: &Dockerfile) -> Vec<String> {
    let total = d.step_count();
    d.steps()
        .enumerate()
        .map(|(i, ins)| format!("Step {}/{total} : {}", i + 1, ins.original))
        .collect()
}

#[test]
fn every_case_parses() {
    let mut n = 0;
    for e in std::fs::read_dir(cases_dir()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        if let Some(stem) = name.strip_suffix(".Dockerfile") {
            let d = case(stem);
            assert!(!d.stages.is_empty());
            n += 1;
        }
    }
    assert!(n >= 12, "only {n} cases");
}

#[test]
fn continuations_case() {
    let d = case("continuations");
    assert_eq!(
        steps(&d),
        vec![
            "Step 1/7 : FROM berth/busybox:latest",
            "Step 2/7 : RUN echo one     two     three > /cont.txt",
            "Step 3/7 : RUN echo a     b > /trailing-ws.txt",
            "Step 4/7 : ENV A=1     B=2     C=3",
            "Step 5/7 : LABEL multi=\"line one line two\"",
            "Step 6/7 : RUN set -e;     test \"$(cat /cont.txt)\" = \"one two three\";     test \"$(cat /trailing-ws.txt)\" = \"a b\";     test \"$A$B$C\" = \"123\"",
            "Step 7/7 : CMD echo hello     world",
        ]
    );
}

#[test]
fn escape_backtick_case() {
    let d = case("escape_backtick");
    assert_eq!(d.escape, '`');
    let s = &d.stages[0].instructions;
    assert_eq!(
        s[0].kind,
        K::Env(vec![
            ("WINPATH".into(), "C:\\Users\\app".into()),
            ("SECOND".into(), "x`$y".into())
        ])
    );
    assert_eq!(s[3].kind, K::Workdir("/data/sub".into()));
    assert_eq!(
        s[5].kind,
        K::Cmd(ShellOrExec::Exec(vec!["C:\\not\\a\\path".into()]))
    );
    let none = |_: &str| None;
    assert_eq!(
        berth_dockerfile::expand_word("x`$y", '`', &none).unwrap(),
        "x$y"
    );
    assert_eq!(
        berth_dockerfile::expand_word("\"a``b\"", '`', &none).unwrap(),
        "a`b"
    );
}

#[test]
fn crlf_bom_case() {
    let d = case("crlf_bom");
    assert_eq!(
        steps(&d)[1..3],
        [
            "Step 2/5 : RUN echo crlf     joined > /crlf.txt".to_string(),
            "Step 3/5 : ENV A=1     B=2".to_string()
        ]
    );
}

#[test]
fn onbuild_case_keeps_docker_trigger_text() {
    let d = case("onbuild_health");
    let triggers: Vec<String> = d.stages[0]
        .instructions
        .iter()
        .filter_map(|i| match &i.kind {
            K::Onbuild(t) => Some(t.original.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        triggers,
        vec![
            "RUN echo triggered > /onbuild.txt",
            "COPY . /app/  ",
            "ENV FROM_TRIGGER=1"
        ]
    );
}

#[test]
fn multistage_case() {
    let d = case("multistage");
    assert_eq!(d.global_args.len(), 1);
    let names: Vec<_> = d.stages.iter().map(|s| s.name.clone()).collect();
    assert_eq!(
        names,
        vec![Some("builder".into()), Some("second".into()), None]
    );
    assert_eq!(d.step_count(), 13);
    assert_eq!(steps(&d)[0], "Step 1/13 : ARG GREETING=hello");
    assert_eq!(
        steps(&d)[1],
        "Step 2/13 : FROM berth/busybox:latest AS Builder"
    );
}

/// Docker's context walk: an excluded directory is skipped unless an
/// exception may re-include something below it; then the daemon drops
/// `.dockerignore` and `Dockerfile` if the ignore file excludes them.
fn docker_context(root: &Path, m: &Matcher) -> Vec<String> {
    fn walk(root: &Path, rel: &str, m: &Matcher, out: &mut Vec<String>) {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().to_string();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let is_dir = e.file_type().unwrap().is_dir();
            if m.excluded(&path) {
                if is_dir && m.may_reinclude_under(&path) {
                    walk(root, &path, m, out);
                }
                continue;
            }
            out.push(path.clone());
            if is_dir {
                walk(root, &path, m, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, "", m, &mut out);
    out.retain(|p| !((p == ".dockerignore" || p == "Dockerfile") && m.excluded(p)));
    out
}

#[test]
fn dockerignore_case() {
    let ctx = cases_dir().join("dockerignore.ctx");
    let m = Matcher::parse(&std::fs::read_to_string(ctx.join(".dockerignore")).unwrap()).unwrap();
    assert!(m.excluded("Dockerfile"));
    let got = docker_context(&ctx, &m);
    assert_eq!(
        got,
        vec![
            ".hidden",
            "README.md",
            "build/keep",
            "build/keep/me.txt",
            "keep.txt",
            "logs",
            "other",
            "other/secret",
            "src",
            "src/deep",
            "src/deep/y.c",
            "src/main.c",
        ]
    );
}
