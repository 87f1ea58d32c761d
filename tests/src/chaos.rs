//! What the chaos tests (native_chaos, vm_chaos) share: a seeded generator
//! (so that a printed seed replays a run's trials) and the store check
//! after each trial.

/// splitmix64: a small seeded generator, so a seed replays a trial.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `BERTH_CHAOS_SEED`, or the clock's nanoseconds when it is unset.
pub fn seed_from_env() -> u64 {
    std::env::var("BERTH_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// A trial count from the environment variable `var`, else `default`.
pub fn trials_from_env(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// `berth system check --format json` with `extra` flags: its output and
/// the parsed report.
pub fn system_check(b: &crate::Berth, extra: &[&str]) -> (crate::Out, serde_json::Value) {
    let mut args = vec!["system", "check", "--format", "json"];
    args.extend_from_slice(extra);
    let o = b.run(&args);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "system check printed no JSON ({e}): {} {}",
            o.stdout, o.stderr
        )
    });
    (o, v)
}

/// After a trial: `system check` finds nothing corrupt or inconsistent
/// (debris is allowed, and printed), exits 1 when it finds anything and 0
/// when clean; `--repair` then clears the debris and a second check is
/// clean. Returns how many debris findings there were.
pub fn check_store(b: &crate::Berth, what: &str) -> usize {
    let (o, v) = system_check(b, &[]);
    let findings = v["Findings"].as_array().cloned().unwrap_or_default();
    let bad: Vec<&serde_json::Value> = findings.iter().filter(|f| f["kind"] != "debris").collect();
    assert!(
        bad.is_empty(),
        "{what}: system check found damage: {}\n{}",
        serde_json::to_string_pretty(&bad).unwrap(),
        o.stderr
    );
    for f in &findings {
        println!(
            "  debris: {}: {}",
            f["path"].as_str().unwrap_or(""),
            f["why"].as_str().unwrap_or("")
        );
    }
    if findings.is_empty() {
        assert_eq!(
            o.code, 0,
            "{what}: clean but exit {}: {} {}",
            o.code, o.stdout, o.stderr
        );
    } else {
        assert_eq!(
            o.code, 1,
            "{what}: findings but exit {}: {}",
            o.code, o.stdout
        );
        let (o, v) = system_check(b, &["--repair"]);
        assert_eq!(o.code, 0, "{what}: repair did not clear the debris: {v}");
        let (o, v) = system_check(b, &[]);
        assert_eq!(o.code, 0, "{what}: not clean after the repair: {v}");
    }
    findings.len()
}
