use super::*;
use std::collections::HashMap;

/// Input, variables, expected output.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn word(input: &str, vars: &HashMap<String, String>) -> Result<String, String> {
    let lookup = |k: &str| vars.get(k).cloned();
    Lexer::new('\\').process_word(input, &lookup)
}

fn words(input: &str, vars: &HashMap<String, String>) -> Result<Vec<String>, String> {
    let lookup = |k: &str| vars.get(k).cloned();
    Lexer::new('\\').process_words(input, &lookup)
}

/// Expected results of Docker's ProcessWord (`None` = error), with
/// PWD=/home, SHELL=bash, NULL set to empty.
#[test]
fn process_word_matches_docker() {
    let vars = env(&[
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("NULL", ""),
        ("K", "한국어"),
    ]);
    let cases: &[(&str, Option<&str>)] = &[
        ("hello", Some("hello")),
        ("he'll'o", Some("hello")),
        ("he'llo", None),
        ("he\\'llo", Some("he'llo")),
        ("he\\\\'llo", None),
        ("abc\\tdef", Some("abctdef")),
        ("\"abc\\tdef\"", Some("abc\\tdef")),
        ("\"abc\\\\tdef\"", Some("abc\\tdef")),
        ("'abc\\tdef'", Some("abc\\tdef")),
        ("hello\\", Some("hello")),
        ("hello\\\\", Some("hello\\")),
        ("\"hello", None),
        ("\"hello\\\"", None),
        ("\"hel'lo\"", Some("hel'lo")),
        ("'hello", None),
        ("'hello\\'", Some("hello\\")),
        ("\"''\"", Some("''")),
        ("$.", Some("$.")),
        ("he$1x", Some("hex")),
        ("he$.x", Some("he$.x")),
        ("he$pwd.", Some("he.")),
        ("he$PWD", Some("he/home")),
        ("he\\$PWD", Some("he$PWD")),
        ("he\\\\$PWD", Some("he\\/home")),
        ("\"he\\$PWD\"", Some("he$PWD")),
        ("\"he\\\\$PWD\"", Some("he\\/home")),
        ("\\${}", Some("${}")),
        ("he\\${}xx", Some("he${}xx")),
        ("${}", None),
        ("he${}xx", None),
        ("he${hi}xx", Some("hexx")),
        ("he${PWD}", Some("he/home")),
        ("he${.}", None),
        ("he${XXX:-000}xx", Some("he000xx")),
        ("he${PWD:-000}xx", Some("he/homexx")),
        ("he${XXX:-$PWD}xx", Some("he/homexx")),
        ("he${XXX:-${PWD:-yyy}}xx", Some("he/homexx")),
        ("he${XXX:-${YYY:-yyy}}xx", Some("heyyyxx")),
        ("he${XXX:YYY}", None),
        ("he${XXX?}", None),
        ("he${XXX:?}", None),
        ("he${PWD?}", Some("he/home")),
        ("he${NULL?}", Some("he")),
        ("he${NULL:?}", None),
        ("he${XXX:+${PWD}}xx", Some("hexx")),
        ("he${PWD:+${SHELL}}xx", Some("hebashxx")),
        ("he${PWD:+000}xx", Some("he000xx")),
        ("'he${XX}'", Some("he${XX}")),
        ("\"he'$PWD'\"", Some("he'/home'")),
        ("'\\$PWD'", Some("\\$PWD")),
        ("'\"hello\"'", Some("\"hello\"")),
        ("he${PWD", None),
        ("he${PWD:=000}xx", None),
        ("he${PWD:+${PWD}:}xx", Some("he/home:xx")),
        ("he${XXX:-\\$PWD:}xx", Some("he$PWD:xx")),
        ("he${XXX:-\\${PWD}z}xx", Some("he${PWDz}xx")),
        ("안'녕'하세요", Some("안녕하세요")),
        ("안녕\\'하세요", Some("안녕'하세요")),
        ("안녕$K", Some("안녕한국어")),
        ("${{aaa}", None),
        ("${aaa}}", Some("}")),
        ("${aaa:-bbb}}", Some("bbb}")),
        ("${aaa:-bbb", None),
        ("${aaa:-bbb ${foo}", None),
        ("${aaa:-bbb {foo}", Some("bbb {foo")),
        ("${:}", None),
        ("${:-bbb}", None),
        ("$1", Some("")),
        ("${1:-bbb}", Some("bbb")),
        ("$999aaa", Some("aaa")),
        ("${001:-bbb}aaa", Some("bbbaaa")),
        ("$@@@", Some("@@")),
        ("${@:+bbb}aaa", Some("aaa")),
        ("${#:-bbb}", Some("bbb")),
        ("$$", Some("")),
        ("${!:-bbb}", Some("bbb")),
        ("$0", Some("")),
    ];
    for (input, want) in cases {
        let got = word(input, &vars);
        match want {
            Some(w) => assert_eq!(got.as_deref(), Ok(*w), "input {input:?}"),
            None => assert!(got.is_err(), "input {input:?} gave {got:?}"),
        }
    }
}

#[test]
fn process_words_matches_docker() {
    let vars = env(&[
        ("hi", "hi"),
        ("space", "abc  def"),
        ("leading", "  ab c"),
        ("trailing", "ab c   "),
    ]);
    let cases: &[(&str, Option<&[&str]>)] = &[
        ("hello", Some(&["hello"])),
        ("hello${hi}bye", Some(&["hellohibye"])),
        ("hello${space}bye", Some(&["helloabc", "defbye"])),
        ("hello\"${space}\"bye", Some(&["helloabc  defbye"])),
        ("hello \"${space}\"bye", Some(&["hello", "abc  defbye"])),
        ("hello${leading}def", Some(&["hello", "ab", "cdef"])),
        ("hello\"${leading}\" def", Some(&["hello  ab c", "def"])),
        ("hello${trailing}", Some(&["helloab", "c"])),
        ("hello${trailing}d", Some(&["helloab", "c", "d"])),
        ("hello\"${trailing}\"d", Some(&["helloab c   d"])),
        ("hello\" there  \"", Some(&["hello there  "])),
        ("hello there     ", Some(&["hello", "there"])),
        ("hello\\ there", Some(&["hello there"])),
        ("hello\" there", None),
        ("hello\\\" there", Some(&["hello\"", "there"])),
        ("hello\"\\\\there\"", Some(&["hello\\there"])),
        ("hello'\\\\there'", Some(&["hello\\\\there"])),
        ("hello'$there'", Some(&["hello$there"])),
        ("a \"\" b", Some(&["a", "b"])),
        ("${unset:-80 443}", Some(&["80", "443"])),
        ("abc${unset:-d}", Some(&["abcd"])),
        ("cat <<  EOF", Some(&["cat", "<<  EOF"])),
    ];
    for (input, want) in cases {
        let got = words(input, &vars);
        match want {
            Some(w) => {
                let w: Vec<String> = w.iter().map(|s| s.to_string()).collect();
                assert_eq!(got, Ok(w), "input {input:?}")
            }
            None => assert!(got.is_err(), "input {input:?} gave {got:?}"),
        }
    }
}

#[test]
fn unset_vs_empty_modifiers() {
    let vars = env(&[("FOO", "xxx"), ("BAR", "")]);
    let ok = |i: &str| word(i, &vars).unwrap();
    assert_eq!(ok("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}"), "xxx  ccc");
    assert_eq!(ok("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}"), "xxx bbb ccc");
    assert_eq!(ok("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}"), "aaa bbb ");
    assert_eq!(ok("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}"), "aaa  ");
    assert_eq!(ok("${FOO?aaa}"), "xxx");
    assert_eq!(ok("${BAR?bbb}"), "");
    let e = word("${BAZ?custom message}", &vars).unwrap_err();
    assert!(e.contains("BAZ: custom message"), "{e}");
    let e = word("${BAR:?}", &vars).unwrap_err();
    assert!(e.contains("BAR: is not allowed to be empty"), "{e}");
    assert!(word("${FOO=aaa}", &vars).is_err());
    assert!(word("${FOO:#x}", &vars).is_err());
    assert!(word("${FOO:%%}", &vars).is_err());
}

#[test]
fn pattern_removal() {
    let cases: &[Case] = &[
        (
            "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
            &[("FOO", "()[]{}^$.*?|\\x")],
            "x",
        ),
        ("${FOO%%\\**}", &[("FOO", "xx**")], "xx"),
        ("${FOO#*x*y}", &[("FOO", "xxyy")], "y"),
        ("${FOO#*}", &[("FOO", "xxyy")], "xxyy"),
        ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], "xyy"),
        ("${FOO#}", &[("FOO", "xxyy")], "xxyy"),
        ("${FOO##*x}", &[("FOO", "xxyy")], "yy"),
        ("${FOO#?\\?}", &[("FOO", "???y")], "?y"),
        ("${ABC:-.}${FOO%x}${ABC:-.}", &[("FOO", "xxyy")], ".xxyy."),
        ("${FOO%%\\**\\*}", &[("FOO", "a***yy*")], "a"),
        ("${FOO%y*}", &[("FOO", "xxyy")], "xxy"),
        ("${FOO%%y*}", &[("FOO", "xxyy")], "xx"),
        ("${FOO%.*}", &[("FOO", "file.tar.gz")], "file.tar"),
        ("${FOO%%.*}", &[("FOO", "file.tar.gz")], "file"),
        ("${FOO##*/}", &[("FOO", "/a/b/c")], "c"),
    ];
    for (input, vars, want) in cases {
        assert_eq!(
            word(input, &env(vars)).as_deref(),
            Ok(*want),
            "input {input:?}"
        );
    }
}

#[test]
fn pattern_replacement() {
    let cases: &[Case] = &[
        (
            "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
            &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
            "/foo.*/*.txt - /foo..*.txt",
        ),
        (
            "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
            &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
            "/tmp/bar.txt - /bar.txt",
        ),
        (
            "${FOO/$NEEDLE/$R} - ${FOO//$NEEDLE/$R}",
            &[("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("R", "/")],
            "/foo/b/c.txt - /foo/c.txt",
        ),
        (
            "${FOO/$NEEDLE/$R}",
            &[
                ("FOO", "http://google.de"),
                ("NEEDLE", "http://"),
                ("R", "https://"),
            ],
            "https://google.de",
        ),
        (
            "${FOO//\\//\\/}",
            &[("FOO", "/tmp/foo.txt")],
            "\\/tmp\\/foo.txt",
        ),
        ("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")], "wwxxyy"),
        ("${FOO///}", &[("FOO", "xxyy")], "xxyy"),
        ("${FOO///}", &[], ""),
    ];
    for (input, vars, want) in cases {
        assert_eq!(
            word(input, &env(vars)).as_deref(),
            Ok(*want),
            "input {input:?}"
        );
    }
    assert!(word("${FOO//ww}", &env(&[("FOO", "xxyy")])).is_err());
    assert!(word("${FOO//}", &env(&[("FOO", "xxyy")])).is_err());
}

#[test]
fn backtick_escape() {
    let vars = env(&[("A", "x")]);
    let lookup = |k: &str| vars.get(k).cloned();
    let lex = Lexer::new('`');
    assert_eq!(lex.process_word("a`$A\\b", &lookup).unwrap(), "a$A\\b");
    assert_eq!(
        lex.process_word("\"c:\\dir `\"q`\"\"", &lookup).unwrap(),
        "c:\\dir \"q\""
    );
}

#[test]
fn skip_unset_keeps_references() {
    let lookup = |_: &str| None;
    let lex = Lexer {
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    assert_eq!(
        lex.process_word("$A ${B} ${C:-x} ${D/a/b}", &lookup)
            .unwrap(),
        "$A ${B} ${C:-x} ${D/a/b}"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "${a:-".repeat(10_000);
    assert!(word(&deep, &HashMap::new()).is_err());
    let ok = format!("{}x{}", "${a:-".repeat(10), "}".repeat(10));
    assert_eq!(word(&ok, &HashMap::new()).unwrap(), "x");
}

#[test]
fn huge_values_expand_quickly() {
    let big = "ab".repeat(500_000);
    let vars = env(&[("V", &big)]);
    assert_eq!(word("${V//a/}", &vars).unwrap().len(), 500_000);
    assert_eq!(word("${V%%b*}", &vars).unwrap(), "a");
    assert_eq!(word("${V#*b}", &vars).unwrap().len(), big.len() - 2);
    assert_eq!(word("${V/x*y/z}", &vars).unwrap().len(), big.len());
}

#[test]
fn heredoc_expansion_keeps_quotes() {
    let vars = env(&[("NAME", "me")]);
    let lookup = |k: &str| vars.get(k).cloned();
    let lex = Lexer {
        skip_process_quotes: true,
        ..Lexer::new('\\')
    };
    assert_eq!(
        lex.process_word("\"$NAME\" '$NAME' \\$NAME ${NAME:-x}\nnext\n", &lookup)
            .unwrap(),
        "\"me\" 'me' $NAME me\nnext\n"
    );
}
