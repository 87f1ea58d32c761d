//! Targets for image archives (`docker save`, OCI layout) and the layer
//! unpacker.

use std::io::Read;
use std::path::Path;

/// Reads at most `cap` bytes of `r`.
fn drain(r: impl Read, cap: u64) {
    let _ = std::io::copy(&mut r.take(cap), &mut std::io::sink());
}

/// `berth load`: the input is the archive. Opens it, lists its images and
/// reads every blob they name.
pub fn fuzz_archive(data: &[u8]) {
    use berth_host::archive::Archive;
    let path = crate::scratch_root().join("archive.tar");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(mut ar) = Archive::open(&path) else {
        return;
    };
    let Ok(images) = ar.images() else {
        return;
    };
    for img in images.iter().take(8) {
        if let Ok(r) = ar.blob_reader(&img.config) {
            drain(r, 1 << 20);
        }
        for l in img.layers.iter().take(8) {
            if let Ok(r) = ar.blob_reader(l) {
                drain(r, 1 << 20);
            }
        }
        if let Some(d) = &img.manifest_digest {
            let _ = ar.read_oci_blob(d);
        }
    }
}

/// Every path under `dir`, relative to it.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            }
        }
    }
    out
}

/// The agent's layer unpacker: the input is a layer (gzip or plain tar),
/// applied to `<scratch>/root`. Whatever the layer holds, nothing may
/// appear next to `root` (an escape through `..`, an absolute path, a
/// symlink or a hard link).
pub fn fuzz_unpack(data: &[u8]) {
    use crate::unpack::{apply_layer, decompress};
    let Ok(dir) = tempfile::Builder::new()
        .prefix("unpack-")
        .tempdir_in(crate::scratch_root())
    else {
        return;
    };
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    if std::fs::create_dir(&root).is_err() || std::fs::create_dir(&outside).is_err() {
        return;
    }
    // A symlink a hostile layer might try to follow out of the root.
    let _ = std::os::unix::fs::symlink(&outside, root.join("link"));
    if let Ok(r) = decompress(data) {
        let _ = apply_layer(r, &root);
    }
    let mut beside = listing(dir.path());
    beside.retain(|p| !p.starts_with("root"));
    assert_eq!(beside, ["outside"], "the layer wrote outside its root");
    // Make everything removable again (the layer may drop permissions).
    for p in listing(&root) {
        let p = root.join(p);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
        }
    }
    let _ = std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755));
}
