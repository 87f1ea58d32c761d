//! Image loading in native placement: archives from real tools (skopeo,
//! umoci, docker), layer semantics compared with `umoci unpack`, hostile
//! archives, and crash safety of the store.
// Drives the Linux builds of berth and berth-agent (native placement, KVM).
#![cfg(target_os = "linux")]

use berth_tests::{default_image, have, skip, Berth, DEFAULT_IMAGE};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::sh;

/// The config digest (image id) of the manifest named `tag` in an OCI layout.
fn config_digest_of(layout: &Path, tag: &str) -> String {
    let blob = |d: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(&d[7..])).unwrap())
            .unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap();
    blob(m["digest"].as_str().unwrap())["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn default_image_loads_and_lists() {
    let b = Berth::new().with_default_image();
    let out = b.run(&["images"]).ok().stdout;
    assert!(
        out.starts_with("REPOSITORY      TAG       IMAGE ID"),
        "{out}"
    );
    assert!(out.contains("berth/busybox   latest"), "{out}");
    let json = b.run(&["images", "--format", "json"]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(v["Repository"], "berth/busybox");
    // Go templates, as docker's CLI takes them.
    let t = b
        .run(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .ok()
        .stdout;
    assert_eq!(t, "berth/busybox:latest\n");
    let t = b
        .run(&["images", "--format", "table {{.Repository}}\t{{.ID}}"])
        .ok()
        .stdout;
    assert!(t.starts_with("REPOSITORY      IMAGE ID\n"), "{t}");
    // docker prints the creation time as Go prints a time.Time.
    let t = b.run(&["images", "--format", "{{.CreatedAt}}"]).ok().stdout;
    let t = t.trim_end();
    assert!(
        t.len() == 29 && t.ends_with(" +0000 UTC") && t.as_bytes()[10] == b' ',
        "{t:?}"
    );
    let bad = b.run(&["images", "--format", "{{.Nope}}"]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("can't evaluate field Nope"),
        "{}",
        bad.stderr
    );
    // image inspect -f, as docker's.
    let id = b
        .run(&["image", "inspect", "-f", "{{.Id}}", "berth/busybox"])
        .ok()
        .stdout;
    let whole = b.run(&["image", "inspect", "berth/busybox"]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&whole).unwrap();
    assert_eq!(Some(id.trim()), v[0]["Id"].as_str(), "{whole}");
    let missing = b.run(&["image", "inspect", "--format", "{{.Id}}", "no/such"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("No such image: no/such"),
        "{}",
        missing.stderr
    );
    // Loading again is idempotent.
    let o = b
        .run(&["load", "-i", default_image().to_str().unwrap()])
        .ok();
    assert_eq!(o.stdout, "Loaded image: berth/busybox:latest\n");
    assert_eq!(b.run(&["images", "-q"]).ok().stdout.lines().count(), 1);
    // Loading from stdin works too.
    let data = std::fs::read(default_image()).unwrap();
    let o = b.run_stdin(&["load"], &data).ok();
    assert_eq!(o.stdout, "Loaded image: berth/busybox:latest\n");
}

#[test]
fn skopeo_docker_archive_and_oci_archive_load_and_run() {
    if !have("skopeo") {
        return skip("skopeo not installed");
    }
    let b = Berth::new();
    let dir = tempfile::tempdir().unwrap();
    let src = default_image();
    let d = dir.path();
    sh(&format!(
        "skopeo copy -q oci-archive:{} docker-archive:{}/d.tar:example.com/skopeo/docker:v1",
        src.display(),
        d.display()
    ));
    sh(&format!(
        "skopeo copy -q oci-archive:{} oci-archive:{}/o.tar:example.com/skopeo/oci:v2",
        src.display(),
        d.display()
    ));
    let o = b
        .run(&["load", "-i", &format!("{}/d.tar", d.display())])
        .ok();
    assert_eq!(o.stdout, "Loaded image: example.com/skopeo/docker:v1\n");
    let o = b
        .run(&["load", "-i", &format!("{}/o.tar", d.display())])
        .ok();
    assert_eq!(o.stdout, "Loaded image: example.com/skopeo/oci:v2\n");
    for img in ["example.com/skopeo/docker:v1", "example.com/skopeo/oci:v2"] {
        let o = b.run(&["run", "--rm", img, "echo", "hi"]).ok();
        assert_eq!(o.stdout, "hi\n");
    }
    // A gzip-compressed archive on stdin, as `docker load` accepts.
    sh(&format!(
        "gzip -c {}/d.tar > {}/d.tar.gz",
        d.display(),
        d.display()
    ));
    let gz = std::fs::read(d.join("d.tar.gz")).unwrap();
    b.run_stdin(&["load"], &gz).ok();
}

/// Builds a three-layer OCI image with umoci: files, a hardlink and
/// symlinks; then deletions (whiteouts); then a hand-made layer with an
/// opaque directory. Returns (layout dir, ref).
fn umoci_multilayer(d: &Path) -> PathBuf {
    let layout = d.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    sh(&format!(
        "tar -C {} -xf {}",
        layout.display(),
        default_image().display()
    ));
    let l = layout.display();
    let b1 = d.join("b1");
    sh(&format!("umoci unpack --image {l}:latest {}", b1.display()));
    let r = b1.join("rootfs");
    sh(&format!(
        "cd {r} && mkdir -p data/keep data/opq data/gone && echo one > data/keep/file && ln data/keep/file data/keep/hard && \
         ln -s keep/file data/rel-link && ln -s /data/keep data/abs-link && echo old > data/opq/old && echo x > data/gone/x && \
         echo bye > data/remove-me && chmod 640 data/keep/file && chmod 1777 data/opq && chown 12:34 data/keep/hard",
        r = r.display()
    ));
    sh(&format!("umoci repack --image {l}:l1 {}", b1.display()));
    let b2 = d.join("b2");
    sh(&format!("umoci unpack --image {l}:l1 {}", b2.display()));
    let r2 = b2.join("rootfs");
    sh(&format!(
        "cd {r} && rm data/remove-me && rm -r data/gone && echo two >> data/keep/file",
        r = r2.display()
    ));
    sh(&format!("umoci repack --image {l}:l2 {}", b2.display()));
    // Layer 3: an opaque directory replaces data/opq's contents.
    let mut t = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8], kind: tar::EntryType, mode: u32| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        t.append_data(&mut h, name, data).unwrap();
    };
    add("data/opq/", b"", tar::EntryType::Directory, 0o755);
    add("data/opq/.wh..wh..opq", b"", tar::EntryType::Regular, 0o644);
    add("data/opq/new", b"fresh\n", tar::EntryType::Regular, 0o600);
    let layer = d.join("l3.tar");
    std::fs::write(&layer, t.into_inner().unwrap()).unwrap();
    sh(&format!(
        "umoci raw add-layer --image {l}:l2 --tag l3 {}",
        layer.display()
    ));
    layout
}

// Directory link counts are left out: overlayfs reports 1 for merged dirs.
const TREE_CMD: &str = "find data | sort | while read f; do if [ -L \"$f\" ]; then echo \"$f L $(readlink \"$f\")\"; elif [ -d \"$f\" ]; then stat -c '%n %F %a %u:%g' \"$f\"; else stat -c '%n %F %a %u:%g %h %s' \"$f\"; fi; done; cat data/keep/file data/opq/new";

#[test]
fn multilayer_tree_matches_umoci_unpack() {
    if !have("umoci") || !Path::new("/bin/busybox").exists() {
        return skip("umoci or busybox-static not installed");
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = umoci_multilayer(dir.path());
    let b3 = dir.path().join("b3");
    sh(&format!(
        "umoci unpack --image {}:l3 {}",
        layout.display(),
        b3.display()
    ));
    let expected = sh(&format!(
        "cd {}/rootfs && /bin/busybox sh -c '{}'",
        b3.display(),
        TREE_CMD.replace('\'', "'\\''")
    ));
    assert!(
        expected.contains("data/keep/hard regular file 640 12:34 2"),
        "{expected}"
    );
    assert!(
        !expected.contains("data/gone")
            && !expected.contains("remove-me")
            && !expected.contains("data/opq/old"),
        "{expected}"
    );
    let archive = dir.path().join("multi.tar");
    sh(&format!(
        "tar -C {} -cf {} .",
        layout.display(),
        archive.display()
    ));
    let b = Berth::new();
    b.run(&["load", "-i", archive.to_str().unwrap()]).ok();
    let id = config_digest_of(&layout, "l3");
    let got = b
        .run(&["run", "--rm", "-w", "/", &id, "sh", "-c", TREE_CMD])
        .ok()
        .stdout;
    assert_eq!(got, expected);
}

/// A docker-save archive with one hand-made layer.
fn docker_archive_with_layer(path: &Path, layer: &[u8], tag: &str) {
    let diff_id = hex::encode(Sha256::digest(layer));
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}}}}"#
    );
    let cfg_hex = hex::encode(Sha256::digest(config.as_bytes()));
    let manifest = format!(
        r#"[{{"Config":"{cfg_hex}.json","RepoTags":["{tag}"],"Layers":["{diff_id}/layer.tar"]}}]"#
    );
    let mut t = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        t.append_data(&mut h, name, data).unwrap();
    };
    add(&format!("{diff_id}/layer.tar"), layer);
    add(&format!("{cfg_hex}.json"), config.as_bytes());
    add("manifest.json", manifest.as_bytes());
    std::fs::write(path, t.into_inner().unwrap()).unwrap();
}

/// Name, type, data and link target of a hand-made tar entry.
type RawEntry = (String, tar::EntryType, Vec<u8>, Option<String>);

/// A raw tar entry, bypassing the tar crate's own path sanitising.
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    {
        let g = h.as_gnu_mut().unwrap();
        g.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            g.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

#[test]
fn hostile_layers_are_refused_and_the_store_is_unchanged() {
    let b = Berth::new().with_default_image();
    let before = b.run(&["images"]).ok().stdout;
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let cases: Vec<(&str, Vec<RawEntry>, &str)> = vec![
        (
            "dotdot",
            vec![(
                "../../../../../../escape".into(),
                tar::EntryType::Regular,
                b"x".to_vec(),
                None,
            )],
            "escapes the layer root",
        ),
        (
            "absolute",
            vec![(
                format!("{}/abs", outside.display()),
                tar::EntryType::Regular,
                b"x".to_vec(),
                None,
            )],
            "absolute path",
        ),
        (
            "symlink",
            vec![
                (
                    "evil".into(),
                    tar::EntryType::Symlink,
                    vec![],
                    Some(outside.display().to_string()),
                ),
                (
                    "evil/planted".into(),
                    tar::EntryType::Regular,
                    b"x".to_vec(),
                    None,
                ),
            ],
            "passes through symlink",
        ),
        (
            "hardlink",
            vec![(
                "link".into(),
                tar::EntryType::Link,
                vec![],
                Some("../../../../etc/passwd".into()),
            )],
            "escapes the layer root",
        ),
    ];
    for (name, entries, msg) in cases {
        let mut layer = Vec::new();
        for (n, k, d, l) in &entries {
            raw_entry(&mut layer, n, *k, d, l.as_deref());
        }
        layer.extend_from_slice(&[0u8; 1024]);
        let path = dir.path().join(format!("{name}.tar"));
        docker_archive_with_layer(&path, &layer, &format!("hostile/{name}:latest"));
        let o = b.run(&["load", "-i", path.to_str().unwrap()]);
        assert_ne!(o.code, 0, "{name} loaded");
        assert!(o.stderr.contains(msg), "{name}: {}", o.stderr);
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "{name} wrote outside the store"
        );
        assert_eq!(
            b.run(&["images"]).ok().stdout,
            before,
            "{name} changed the image list"
        );
    }
    assert!(!Path::new("/escape").exists());
    // Nothing half-unpacked is left in the store.
    let tmp = b.native_root().join("tmp");
    assert_eq!(
        std::fs::read_dir(tmp)
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("snap"))
            .count(),
        0
    );
}

#[test]
fn corrupt_archives_are_refused() {
    let b = Berth::new();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("junk.tar");
    std::fs::write(&p, b"this is not a tar archive at all").unwrap();
    let o = b.run(&["load", "-i", p.to_str().unwrap()]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("invalid archive") || o.stderr.contains("not a tar"),
        "{}",
        o.stderr
    );
    // A diff_id that does not match the layer.
    let mut layer = Vec::new();
    raw_entry(&mut layer, "f", tar::EntryType::Regular, b"data", None);
    layer.extend_from_slice(&[0u8; 1024]);
    let good = dir.path().join("good.tar");
    docker_archive_with_layer(&good, &layer, "x/y:z");
    let text = std::fs::read(&good).unwrap();
    let mut layer2 = layer.clone();
    layer2[600] ^= 1; // flip a data byte: the layer no longer matches its diff_id
    let bad = dir.path().join("bad.tar");
    let mut data = text.clone();
    let pos = data
        .windows(layer.len())
        .position(|w| w == &layer[..])
        .unwrap();
    data[pos..pos + layer.len()].copy_from_slice(&layer2);
    std::fs::write(&bad, data).unwrap();
    let o = b.run(&["load", "-i", bad.to_str().unwrap()]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("does not match the config's diff_id"),
        "{}",
        o.stderr
    );
    assert_eq!(b.run(&["images", "-q"]).ok().stdout, "");
    b.run(&["load", "-i", good.to_str().unwrap()]).ok();
    assert_eq!(b.run(&["images", "-q"]).ok().stdout.lines().count(), 1);
}

#[test]
fn killing_the_agent_during_load_leaves_no_half_image() {
    let b = Berth::new().with_default_image();
    let dir = tempfile::tempdir().unwrap();
    // A 96 MB layer of incompressible data.
    let mut layer = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut seed = 0x1234_5678_9abc_def0u64;
    for i in 0..96 {
        for c in chunk.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *c = seed as u8;
        }
        raw_entry(
            &mut layer,
            &format!("blob{i}"),
            tar::EntryType::Regular,
            &chunk,
            None,
        );
    }
    layer.extend_from_slice(&[0u8; 1024]);
    let path = dir.path().join("big.tar");
    docker_archive_with_layer(&path, &layer, "big/image:v1");
    let before = b.run(&["images"]).ok().stdout;
    let tmp = b.native_root().join("tmp");
    let mut child = b
        .command()
        .args(["load", "-q", "-i", path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the agent is unpacking (or at least receiving) the layer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let busy = std::fs::read_dir(&tmp)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("snap"))
            })
            .unwrap_or(false);
        if busy || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    b.kill_agent();
    let status = child.wait().unwrap();
    assert!(!status.success(), "load survived the agent's death");
    assert_eq!(
        b.run(&["images"]).ok().stdout,
        before,
        "a half image is visible"
    );
    let o = b.run(&["run", "--rm", "big/image:v1", "true"]);
    assert_eq!(o.code, 125);
    // The next load completes and the image works.
    b.run(&["load", "-i", path.to_str().unwrap()]).ok();
    let o = b.run(&[
        "run",
        "--rm",
        "-w",
        "/",
        "big/image:v1",
        "/bin/sh",
        "-c",
        "true",
    ]);
    // The image has no shell: 127 proves it ran the engine path on the new image.
    assert_eq!(o.code, 127, "{}", o.stderr);
    let o = b.run(&["images", "--format", "json"]).ok().stdout;
    assert!(o.contains("big/image"), "{o}");
}

#[test]
fn images_survive_agent_restart_and_rmi_frees_them() {
    let b = Berth::new().with_default_image();
    b.run(&["tag", DEFAULT_IMAGE, "mine/copy:1"]).ok();
    b.kill_agent();
    let out = b.run(&["images"]).ok().stdout;
    assert!(
        out.contains("mine/copy") && out.contains("berth/busybox"),
        "{out}"
    );
    // The next command right after a SIGKILL (no waiting for the agent to
    // finish dying) must still reach a fresh agent.
    for _ in 0..5 {
        let pid = b.agent_pid().expect("agent running");
        // SAFETY: plain kill(2) of a process this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let out = b.run(&["images", "-q"]).ok().stdout;
        assert_eq!(out.lines().count(), 1, "{out}");
    }
    let id = b
        .run(&["run", "-d", DEFAULT_IMAGE, "sleep", "30"])
        .ok()
        .stdout
        .trim()
        .to_string();
    // Untagging one of two tags is fine even in use.
    let o = b.run(&["rmi", "mine/copy:1"]).ok();
    assert_eq!(o.stdout, "Untagged: mine/copy:1\n");
    let o = b.run(&["rmi", DEFAULT_IMAGE]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("being used by a container"),
        "{}",
        o.stderr
    );
    b.run(&["rm", "-f", &id]).ok();
    let o = b.run(&["rmi", DEFAULT_IMAGE]).ok();
    assert!(
        o.stdout.contains("Untagged: berth/busybox:latest")
            && o.stdout.contains("Deleted: sha256:"),
        "{}",
        o.stdout
    );
    assert_eq!(b.run(&["images", "-q"]).ok().stdout, "");
    assert_eq!(
        std::fs::read_dir(b.native_root().join("snapshots"))
            .unwrap()
            .count(),
        0
    );
    let o = b.run(&["rmi", "nope"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("No such image"), "{}", o.stderr);
}

#[test]
fn rmi_force_untags_an_image_in_use_and_shared_layers_survive() {
    let b = Berth::new().with_default_image();
    let id = b
        .run(&["run", "-d", DEFAULT_IMAGE, "sleep", "300"])
        .ok()
        .stdout
        .trim()
        .to_string();
    b.run(&["exec", &id, "sh", "-c", "echo kept > /marker"])
        .ok();
    // A second image on top of the default image's layer.
    b.run(&["commit", &id, "mine/child:1"]).ok();
    // Forced removal of an image a running container uses only untags it,
    // as docker does: the container and its layers stay.
    let o = b.run(&["rmi", "-f", DEFAULT_IMAGE]).ok();
    assert!(
        o.stdout.contains("Untagged: berth/busybox:latest") && !o.stdout.contains("Deleted:"),
        "{}",
        o.stdout
    );
    assert_eq!(
        b.run(&["exec", &id, "cat", "/marker"]).ok().stdout,
        "kept\n"
    );
    b.run(&["rm", "-f", &id]).ok();
    // With the container gone, pruning deletes the untagged image; the
    // layer it shares with mine/child stays, and mine/child still runs.
    b.run(&["image", "prune", "-f"]).ok();
    let images = b.run(&["images"]).ok().stdout;
    assert!(
        !images.contains("berth/busybox") && images.contains("mine/child"),
        "{images}"
    );
    let o = b
        .run(&[
            "run",
            "--rm",
            "mine/child:1",
            "sh",
            "-c",
            "cat /marker; ls /bin/busybox",
        ])
        .ok();
    assert_eq!(o.stdout, "kept\n/bin/busybox\n");
}

/// `berth-agent image-disk-tree` (the host's half of `--isolation vm`
/// image disks) unpacks an image from the host cache into the store layout
/// the guest links in: the config blob and each layer's snapshot with its
/// meta.json, nothing else (no layer blobs, records, tags or work dirs).
/// Bad input is refused with a message and a non-zero exit.
#[test]
fn image_disk_tree_holds_the_unpacked_layers_and_nothing_else() {
    if unsafe_not_root() {
        return skip("image disk trees keep file owners: needs root");
    }
    let b = Berth::new().with_default_image();
    let cache = b.home.path().join("cache");
    let records: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("images.json")).unwrap()).unwrap();
    let commit = records[0].clone();
    let config = commit["config_digest"].as_str().unwrap().to_string();
    let tree_of = |input: &[u8]| {
        let work = tempfile::tempdir().unwrap();
        let tree = work.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        let mut child = Command::new(berth_tests::agent_bin())
            .arg("image-disk-tree")
            .arg("--root")
            .arg(&tree)
            .arg("--blobs")
            .arg(cache.join("blobs/sha256"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
        let o = child.wait_with_output().unwrap();
        (work, tree, o)
    };

    let (_work, tree, o) = tree_of(&serde_json::to_vec(&commit).unwrap());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names = |p: PathBuf| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(tree.clone()), ["blobs", "snapshots"]);
    assert_eq!(names(tree.join("blobs/sha256")), [config[7..].to_string()]);
    let snaps = names(tree.join("snapshots"));
    assert_eq!(snaps.len(), commit["layers"].as_array().unwrap().len());
    let snap = tree.join("snapshots").join(&snaps[0]);
    assert!(snap.join("meta.json").is_file());
    let busybox = snap.join("fs/bin/busybox");
    assert!(busybox.is_file(), "{}", busybox.display());
    assert!(!busybox.is_symlink());

    // Hostile or broken input.
    let (_w, _t, o) = tree_of(b"{not json");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid image commit"));
    let mut missing = commit.clone();
    missing["layers"][0]["digest"] = format!("sha256:{}", "0".repeat(64)).into();
    let (_w, _t, o) = tree_of(&serde_json::to_vec(&missing).unwrap());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is not in the store"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut escape = commit.clone();
    escape["config_digest"] = "sha256:../../../etc/passwd".into();
    let (_w, t, o) = tree_of(&serde_json::to_vec(&escape).unwrap());
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid digest"));
    assert!(std::fs::read_dir(t.join("blobs/sha256"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true));
}

fn unsafe_not_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() != 0 }
}
