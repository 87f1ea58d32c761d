//! Fuzz-style robustness tests: random and token-soup input through every
//! entry point must return (Ok or Err) without panicking. Deterministic, so
//! a failure reproduces; the seed is in the assertion message.

use berth_dockerfile::{expand_heredoc, expand_word, expand_words, ignore::Matcher, parse};

/// xorshift64*: small, deterministic, good enough for input generation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Fragments that reach the interesting corners of the grammar.
const TOKENS: &[&str] = &[
    "FROM ",
    "RUN ",
    "CMD ",
    "ENTRYPOINT ",
    "COPY ",
    "ADD ",
    "ENV ",
    "ARG ",
    "LABEL ",
    "WORKDIR ",
    "USER ",
    "EXPOSE ",
    "VOLUME ",
    "SHELL ",
    "HEALTHCHECK ",
    "ONBUILD ",
    "STOPSIGNAL ",
    "MAINTAINER ",
    "NONE ",
    "CMD ",
    "AS ",
    "as x ",
    "scratch",
    "busybox",
    "\n",
    "\r\n",
    "\\\n",
    "`\n",
    "\\",
    "`",
    " ",
    "\t",
    "#",
    "# escape=`\n",
    "# syntax=x\n",
    "<<",
    "<<-",
    "EOF",
    "\nEOF\n",
    "'",
    "\"",
    "[",
    "]",
    ",",
    "[\"a\", \"b\"]",
    "{",
    "}",
    "$",
    "${",
    "${a:-",
    "${a/",
    "${a#",
    ":",
    "-",
    "+",
    "?",
    "%",
    "/",
    "=",
    "--",
    "--from=",
    "--chown=",
    "--mount=",
    "--network=",
    "--interval=",
    "--retries=",
    "--link",
    "--platform=",
    "1m30s",
    "\u{feff}",
    "\u{a0}",
    "é",
    "\u{0}",
    "**",
    "*",
    "!",
    "..",
    "./",
];

fn token_soup(rng: &mut Rng, max: usize) -> String {
    let n = rng.below(max);
    let mut s = String::new();
    for _ in 0..n {
        s.push_str(TOKENS[rng.below(TOKENS.len())]);
        if rng.below(4) == 0 {
            s.push(char::from(b'a' + rng.below(26) as u8));
        }
    }
    s
}

fn random_bytes(rng: &mut Rng, max: usize) -> String {
    let n = rng.below(max);
    let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Iterations per test: `BERTH_FUZZ_ITERS` scales a longer local run.
fn iterations(default: usize) -> usize {
    std::env::var("BERTH_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn lookup(name: &str) -> Option<String> {
    match name.len() % 3 {
        0 => None,
        1 => Some(String::new()),
        _ => Some(format!("v {name} *")),
    }
}

fn exercise(input: &str) {
    let _ = parse("fuzz", input);
    let _ = parse("fuzz", &format!("FROM a\n{input}"));
    for escape in ['\\', '`'] {
        let _ = expand_word(input, escape, &lookup);
        let _ = expand_words(input, escape, &lookup);
    }
    let _ = expand_heredoc(input, &lookup);
    if let Ok(m) = Matcher::parse(input) {
        for path in ["a", "a/b", "node_modules/x/y", "é/**", ""] {
            let _ = m.excluded(path);
            let _ = m.may_reinclude_under(path);
        }
        for line in input.lines().take(8) {
            let _ = m.excluded(line);
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..iterations(3_000) {
        let input = random_bytes(&mut rng, 300);
        let r = std::panic::catch_unwind(|| exercise(&input));
        assert!(r.is_ok(), "iteration {i}: input {input:?}");
    }
}

#[test]
fn token_soup_never_panics() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for i in 0..iterations(4_000) {
        let input = token_soup(&mut rng, 60);
        let r = std::panic::catch_unwind(|| exercise(&input));
        assert!(r.is_ok(), "iteration {i}: input {input:?}");
    }
}

#[test]
fn parsed_files_are_consistent() {
    // Whatever parses has stages in order and 1-based locations.
    let mut rng = Rng(42);
    let mut parsed = 0;
    for _ in 0..iterations(4_000) {
        let input = format!("FROM a\n{}", token_soup(&mut rng, 30));
        if let Ok(d) = parse("fuzz", &input) {
            parsed += 1;
            for (i, s) in d.stages.iter().enumerate() {
                assert_eq!(s.index, i);
                assert!(s.from.loc.line >= 1 && s.from.loc.column >= 1);
                for ins in &s.instructions {
                    assert!(ins.loc.line >= s.from.loc.line, "{input:?}");
                    assert!(!ins.original.is_empty());
                }
            }
        }
    }
    assert!(
        parsed > 100,
        "only {parsed} inputs parsed: the generator is too hostile"
    );
}
