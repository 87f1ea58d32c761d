//! `berth completion SHELL`: scripts generated from the CLI's clap
//! definitions, loaded into a real bash and asked to complete.
// Drives the Linux build of berth.
#![cfg(target_os = "linux")]

use berth_tests::{berth_bin, have, skip, Berth};
use std::process::Command;

#[test]
fn bash_loads_the_script_and_completes_verbs_and_flags() {
    if !have("bash") {
        skip("bash not installed");
        return;
    }
    let bin = berth_bin();
    let complete = |words: &str, cword: usize| -> String {
        let script = format!(
            "source <({bin} completion bash) || exit 9; complete -p berth || exit 8; \
             COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; \
             _berth berth \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            bin = bin.display()
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let verbs = complete("berth imp", 1);
    assert!(
        verbs.contains("complete -o bashdefault -o default -o nosort -F _berth berth"),
        "{verbs}"
    );
    assert!(verbs.lines().any(|l| l == "import"), "{verbs}");
    assert!(!verbs.lines().any(|l| l == "run"), "{verbs}");
    let flags = complete("berth import --", 2);
    for f in ["--change", "--message", "--platform"] {
        assert!(flags.lines().any(|l| l == f), "{f}: {flags}");
    }
    let shells = complete("berth completion ''", 2);
    for s in ["bash", "zsh", "fish", "powershell"] {
        assert!(shells.lines().any(|l| l == s), "{s}: {shells}");
    }
}

#[test]
fn other_shells_and_an_unknown_one() {
    let b = Berth::new();
    for (shell, marker) in [
        ("zsh", "#compdef berth"),
        ("fish", "complete -c berth"),
        (
            "powershell",
            "Register-ArgumentCompleter -Native -CommandName 'berth'",
        ),
    ] {
        let out = b.run(&["completion", shell]).ok();
        assert!(
            out.stdout.contains(marker),
            "{shell}: {}",
            &out.stdout[..200.min(out.stdout.len())]
        );
        assert!(out.stdout.contains("import"), "{shell}");
    }
    let bad = b.run(&["completion", "tcsh"]);
    assert_ne!(bad.code, 0);
    assert!(bad.stdout.is_empty());
    assert!(
        bad.stderr.contains("invalid value 'tcsh'")
            && bad.stderr.contains("bash, elvish, fish, powershell, zsh"),
        "{}",
        bad.stderr
    );
    let missing = b.run(&["completion"]);
    assert_ne!(missing.code, 0);
}
