//! Replays every fuzz corpus input (`fuzz/corpus/<target>/`) and every
//! crash regression input (`fuzz/regressions/<target>/`) through its
//! target on the stable toolchain: a parser change that panics on an input
//! the fuzzer once kept, or on a crash that was fixed, fails here.
#![cfg(target_os = "linux")]

use berth_fuzz_targets::TARGETS;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn replay(name: &str) -> usize {
    let t = TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no target {name}"));
    let mut n = 0;
    for kind in ["corpus", "regressions"] {
        for p in inputs(&fuzz_dir().join(kind).join(name)) {
            let data = std::fs::read(&p).unwrap();
            let r = std::panic::catch_unwind(|| (t.run)(&data));
            assert!(r.is_ok(), "{name}: {} panicked", p.display());
            n += 1;
        }
    }
    n
}

/// Every target has a fuzz binary and a non-empty seed corpus, and no
/// corpus directory is left without its target.
#[test]
fn every_target_has_a_binary_and_seeds() {
    for t in TARGETS {
        let bin = fuzz_dir()
            .join("fuzz_targets")
            .join(format!("{}.rs", t.name));
        assert!(bin.is_file(), "{} has no {}", t.name, bin.display());
        assert!(
            !inputs(&fuzz_dir().join("corpus").join(t.name)).is_empty(),
            "{} has no seed corpus",
            t.name
        );
    }
    for kind in ["corpus", "regressions"] {
        for e in std::fs::read_dir(fuzz_dir().join(kind)).unwrap().flatten() {
            if !e.path().is_dir() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                TARGETS.iter().any(|t| t.name == name),
                "fuzz/{kind}/{name} has no target"
            );
        }
    }
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let n = replay(stringify!($name));
                assert!(n > 0, "no inputs for {}", stringify!($name));
            }
        )*
    };
}

replay_tests!(
    dockerfile,
    dockerignore,
    reference,
    manifest,
    archive,
    unpack,
    protocol_frame,
    mux,
    snapshot,
    compose,
    api_create,
    api_filters,
    host_args,
    virtio_blk,
    virtio_vsock,
    virtio_rng,
    virtio_balloon,
    virtio_fs,
    virtio_net,
);
