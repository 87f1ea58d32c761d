//! `docs/environment.md` lists exactly the `BERTH_*` environment variables
//! the sources read: Rust string literals (`"BERTH_X"`) and shell uses
//! (`$BERTH_X`, `${BERTH_X…}`, `BERTH_X=` at the start of a word).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Directories never scanned: build output, vendored code, fuzz corpora.
const SKIP: &[&str] = &[
    "target",
    "third_party",
    "corpus",
    "regressions",
    ".git",
    "out",
    "docs",
];

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if !SKIP.contains(&name.as_str()) {
                walk(&p, out);
            }
        } else if ft.is_file()
            // This file's examples are not variables.
            && name != "docs_env.rs"
            && (name.ends_with(".rs") || name.ends_with(".sh") || name == "run")
        {
            out.push(p);
        }
    }
}

fn name_at(s: &str) -> Option<&str> {
    let end = s
        .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .unwrap_or(s.len());
    let n = &s[..end];
    (n.len() > "BERTH_".len()).then_some(n)
}

/// The variables one file reads.
fn names_in(path: &Path, text: &str, out: &mut BTreeSet<String>) {
    let rust = path.extension().is_some_and(|e| e == "rs");
    for (i, _) in text.match_indices("BERTH_") {
        let Some(n) = name_at(&text[i..]) else {
            continue;
        };
        let before = text[..i].chars().next_back();
        let after = text[i + n.len()..].chars().next();
        let used = if rust {
            before == Some('"') && after == Some('"')
        } else {
            matches!(before, Some('$') | Some('{'))
                || (after == Some('=')
                    && before.is_none_or(|c| c.is_whitespace() || c == ';' || c == '('))
        };
        if used {
            out.insert(n.to_string());
        }
    }
}

#[test]
fn environment_doc_matches_the_sources() {
    let root = repo();
    let mut files = Vec::new();
    for d in [
        "host-cli",
        "host-core",
        "guest-agent",
        "vmm",
        "api",
        "protocol",
        "dockerfile",
        "compose",
        "tests",
        "scripts",
        "benches",
        "images",
        "kernel-config",
        ".ci",
        "fuzz",
        "logging",
    ] {
        walk(&root.join(d), &mut files);
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut used = BTreeSet::new();
    for f in &files {
        if let Ok(t) = std::fs::read_to_string(f) {
            names_in(f, &t, &mut used);
        }
    }

    let doc = std::fs::read_to_string(root.join("docs/environment.md")).unwrap();
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("BERTH_"))
        .map(str::to_string)
        .collect();
    assert!(
        documented.len() >= 20,
        "doc table parse found {documented:?}"
    );

    let undocumented: Vec<_> = used.difference(&documented).collect();
    let unused: Vec<_> = documented.difference(&used).collect();
    assert!(
        undocumented.is_empty() && unused.is_empty(),
        "docs/environment.md is out of date:\n  read but not listed: {undocumented:?}\n  listed but never read: {unused:?}"
    );
}

#[test]
fn the_scanner_finds_what_it_should() {
    let mut s = BTreeSet::new();
    names_in(
        Path::new("a.rs"),
        r#"std::env::var("BERTH_A"); const T: &str = BERTH_TYPE; "BERTH_B_2" x"#,
        &mut s,
    );
    names_in(
        Path::new("a.sh"),
        "echo $BERTH_C ${BERTH_D:-1}\nBERTH_E=1 cmd\nexport BERTH_F=2\nXBERTH_G=1\n# BERTH_H is a word",
        &mut s,
    );
    let want: BTreeSet<String> = [
        "BERTH_A",
        "BERTH_B_2",
        "BERTH_C",
        "BERTH_D",
        "BERTH_E",
        "BERTH_F",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(s, want);
}
