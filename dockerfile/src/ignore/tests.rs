use super::*;

fn m(text: &str) -> Matcher {
    Matcher::parse(text).unwrap()
}

#[test]
fn clean_like_go() {
    for (input, want) in [
        ("", "."),
        (".", "."),
        ("a/b/", "a/b"),
        ("a//b", "a/b"),
        ("./a", "a"),
        ("a/../b", "b"),
        ("a/..", "."),
        ("../a", "../a"),
        ("/../a", "/a"),
        ("/", "/"),
        ("a/./b/../../c", "c"),
    ] {
        assert_eq!(clean_path(input), want, "{input}");
    }
}

#[test]
fn reading_the_file() {
    let matcher = m("\u{feff}# comment\n\n  node_modules  \n/build/\n!/build/keep\n  # not a comment\nfoo/../bar\r\n");
    assert_eq!(
        matcher.patterns(),
        vec![
            "node_modules",
            "build",
            "!build/keep",
            "# not a comment",
            "bar"
        ]
    );
    assert!(matcher.has_exceptions());
    assert_eq!(
        Matcher::parse("!").unwrap_err(),
        "illegal exclusion pattern: \"!\""
    );
    assert_eq!(
        Matcher::parse("!  ").unwrap_err(),
        "illegal exclusion pattern: \"!\""
    );
    for bad in ["a[", "[]a]", "[-a]", "[a-]", "a\\", "[^]"] {
        assert!(Matcher::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn parent_directories_exclude_children() {
    let matcher = m("build\n");
    assert!(matcher.excluded("build"));
    assert!(matcher.excluded("build/a"));
    assert!(matcher.excluded("build/a/b/c"));
    assert!(!matcher.excluded("builds"));
    assert!(!matcher.excluded("src/build"));
    assert!(!matcher.excluded("."));
}

#[test]
fn exceptions_reinclude() {
    let matcher = m("*.md\n!README.md\n");
    assert!(matcher.excluded("CHANGELOG.md"));
    assert!(!matcher.excluded("README.md"));
    assert!(!matcher.excluded("docs/x.md"), "* does not cross /");

    let matcher = m("build\n!build/keep\n");
    assert!(matcher.excluded("build/other"));
    assert!(!matcher.excluded("build/keep"));
    assert!(!matcher.excluded("build/keep/inner"));
    assert!(matcher.excluded("build"));
    assert!(matcher.may_reinclude_under("build"));
    assert!(!matcher.may_reinclude_under("src"));

    // A later pattern excludes again.
    let matcher = m("a\n!a/b\na/b/c\n");
    assert!(!matcher.excluded("a/b"));
    assert!(matcher.excluded("a/b/c"));
    assert!(!matcher.excluded("a/b/d"));
}

#[test]
fn reinclude_heuristic_is_textual() {
    let matcher = m("dir\n!**/keep\n!dir/sub/file\n");
    assert!(matcher.may_reinclude_under("dir"));
    assert!(matcher.may_reinclude_under("dir/sub"));
    assert!(!matcher.may_reinclude_under("dir/other"));
    let matcher = m("*\n!*/keep\n");
    assert!(!matcher.may_reinclude_under("a"));
    let matcher = m("*\n");
    assert!(!matcher.may_reinclude_under("a"));
}

#[test]
fn double_star() {
    let matcher = m("**/node_modules\n");
    assert!(matcher.excluded("node_modules"));
    assert!(matcher.excluded("a/node_modules"));
    assert!(matcher.excluded("a/b/node_modules/x"));
    assert!(!matcher.excluded("a/xnode_modules"));

    let matcher = m("**/*.go\n");
    assert!(matcher.excluded("a.go"));
    assert!(matcher.excluded("x/y/a.go"));
    assert!(!matcher.excluded("a.gox"));

    let matcher = m("a/**/b\n");
    assert!(matcher.excluded("a/b"));
    assert!(matcher.excluded("a/x/b"));
    assert!(matcher.excluded("a/x/y/b/z"));
    assert!(!matcher.excluded("a/xb"));

    let matcher = m("dir/**\n");
    assert!(matcher.excluded("dir/a"));
    assert!(matcher.excluded("dir/a/b"));
    assert!(!matcher.excluded("dir"));

    // Docker quirk: a leading `**` followed by literal text is a suffix test.
    let matcher = m("**foo\n");
    assert!(matcher.excluded("xfoo"));
    assert!(matcher.excluded("a/bfoo"));

    let matcher = m("**\n!keep\n");
    assert!(matcher.excluded("anything/at/all"));
    assert!(!matcher.excluded("keep"));
}

#[test]
fn wildcards_and_classes() {
    let matcher = m("?.txt\n[a-c]*.log\n[^x]y\nlit\\*\n");
    assert!(matcher.excluded("a.txt"));
    assert!(!matcher.excluded("ab.txt"));
    assert!(matcher.excluded("b1.log"));
    assert!(!matcher.excluded("d1.log"));
    assert!(matcher.excluded("zy"));
    assert!(!matcher.excluded("xy"));
    assert!(matcher.excluded("lit*"));
    assert!(!matcher.excluded("litx"));
    let matcher = m("a.b\nfile(1)+$\n");
    assert!(matcher.excluded("a.b"));
    assert!(!matcher.excluded("axb"));
    assert!(matcher.excluded("file(1)+$"));
}

#[test]
fn dockerfile_style_excludes() {
    let matcher = m("*\n!Dockerfile\n!src\nsrc/**/*.tmp\n");
    assert!(matcher.excluded("other"));
    assert!(!matcher.excluded("Dockerfile"));
    assert!(!matcher.excluded("src/main.c"));
    assert!(matcher.excluded("src/a/b.tmp"));
    assert!(matcher.excluded("src/b.tmp"));
}
