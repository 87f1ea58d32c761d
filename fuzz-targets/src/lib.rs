//! The bodies of berth's fuzz targets: every parser of untrusted input
//! (images, registries, Dockerfiles, compose files, Engine API clients,
//! guests) driven with arbitrary bytes.
//!
//! Each `fuzz_*` function takes one input and must neither panic nor hang;
//! where a parser makes a promise that can be checked cheaply (a layer stays
//! inside its directory, a reference prints back to itself) the function
//! asserts it. The cargo-fuzz crate in `fuzz/` calls these functions from
//! libFuzzer (nightly); `tests/replay.rs` runs every corpus and regression
//! input through them on the stable toolchain, so `cargo test --workspace`
//! keeps the crashes that were fixed fixed.
#![cfg(target_os = "linux")]

pub mod archive;
pub mod text;
pub mod virtio;

/// The guest agent's layer unpacker, compiled here from its source: the
/// agent is a binary crate, and this is the code that applies every image
/// layer as root.
#[path = "../../guest-agent/src/store/unpack.rs"]
#[allow(dead_code)]
pub mod unpack;

/// One fuzz target: its name (the `fuzz/fuzz_targets/<name>.rs` binary and
/// the `fuzz/corpus/<name>/` directory) and its body.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order `scripts/fuzz.sh` lists them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "dockerfile",
        run: text::fuzz_dockerfile,
    },
    Target {
        name: "dockerignore",
        run: text::fuzz_dockerignore,
    },
    Target {
        name: "reference",
        run: text::fuzz_reference,
    },
    Target {
        name: "manifest",
        run: text::fuzz_manifest,
    },
    Target {
        name: "archive",
        run: archive::fuzz_archive,
    },
    Target {
        name: "unpack",
        run: archive::fuzz_unpack,
    },
    Target {
        name: "protocol_frame",
        run: text::fuzz_protocol_frame,
    },
    Target {
        name: "mux",
        run: text::fuzz_mux,
    },
    Target {
        name: "snapshot",
        run: text::fuzz_snapshot,
    },
    Target {
        name: "compose",
        run: text::fuzz_compose,
    },
    Target {
        name: "api_create",
        run: text::fuzz_api_create,
    },
    Target {
        name: "api_filters",
        run: text::fuzz_api_filters,
    },
    Target {
        name: "host_args",
        run: text::fuzz_host_args,
    },
    Target {
        name: "virtio_blk",
        run: virtio::fuzz_virtio_blk,
    },
    Target {
        name: "virtio_vsock",
        run: virtio::fuzz_virtio_vsock,
    },
    Target {
        name: "virtio_rng",
        run: virtio::fuzz_virtio_rng,
    },
    Target {
        name: "virtio_balloon",
        run: virtio::fuzz_virtio_balloon,
    },
    Target {
        name: "virtio_fs",
        run: virtio::fuzz_virtio_fs,
    },
    Target {
        name: "virtio_net",
        run: virtio::fuzz_virtio_net,
    },
];

/// A scratch directory for this process (removed by nobody: fuzzing runs
/// leave one small directory in the temporary directory per process).
pub(crate) fn scratch_root() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("berth-fuzz-")
            .tempdir()
            .expect("scratch directory")
            .keep()
    })
}
