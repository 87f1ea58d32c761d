//! Comparing berth's output with docker's: what may differ (ids, the
//! program name, docker's runtime layers) is masked, the rest must match.

use crate::Out;

/// Masks container ids (12 or 64 hex digits), which differ by nature.
pub fn mask_ids(s: &str) -> String {
    mask_hex_words(s, |n| n == 12 || n == 64)
}

/// Replaces each word of hex digits whose length `is_id` accepts with
/// `<id>`; words are runs of ASCII letters and digits.
pub fn mask_hex_words(s: &str, is_id: impl Fn(usize) -> bool) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |w: &mut String, out: &mut String| {
        if is_id(w.len()) && w.chars().all(|c| c.is_ascii_hexdigit()) {
            out.push_str("<id>");
        } else {
            out.push_str(w);
        }
        w.clear();
    };
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// What docker's daemon puts around a process start error: its
/// containerd and runc layers, which berth does not have.
const RUNTIME_CHAIN: &str = "failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: ";

/// stderr with the program name made the same, and docker's runtime
/// layers taken off start errors.
pub fn norm_err(s: &str) -> String {
    let s: String = s
        .lines()
        // docker's CLI sometimes logs a race of its own after a failed
        // start: noise, not output.
        .filter(|l| {
            !(l.starts_with("time=\"")
                && l.ends_with("msg=\"error waiting for container: context canceled\""))
        })
        .map(|l| {
            let l = l
                .strip_prefix("docker: ")
                .map_or(l.to_string(), |r| format!("berth: {r}"));
            let l = match l.find(RUNTIME_CHAIN) {
                Some(i) => {
                    let rest = &l[i + RUNTIME_CHAIN.len()..];
                    let rest = rest
                        .strip_suffix(": unknown.")
                        .map_or(rest.to_string(), |r| format!("{r}."));
                    format!("{}{rest}", &l[..i])
                }
                None => l,
            };
            l.replace("'docker ", "'berth ")
        })
        .map(|l| l + "\n")
        .collect();
    mask_ids(&s)
}

/// The differences between docker's and berth's outputs, empty when equal.
pub fn differences(d: &Out, b: &Out) -> Vec<String> {
    let mut diffs = Vec::new();
    if d.code != b.code {
        diffs.push(format!("exit code: docker {} berth {}", d.code, b.code));
    }
    if mask_ids(&d.stdout) != mask_ids(&b.stdout) {
        diffs.push(format!(
            "stdout:\n  docker: {:?}\n  berth:  {:?}",
            d.stdout, b.stdout
        ));
    }
    if norm_err(&d.stderr) != norm_err(&b.stderr) {
        diffs.push(format!(
            "stderr:\n  docker: {:?}\n  berth:  {:?}",
            d.stderr, b.stderr
        ));
    }
    diffs
}
