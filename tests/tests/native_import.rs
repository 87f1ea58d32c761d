//! `berth import` in native placement: tarballs plain and compressed, from
//! a file, stdin and a loopback HTTP server, `--change`/`--message`, and
//! hostile tarballs that must leave no image behind.
// Drives the Linux builds of berth and berth-agent (native placement).
#![cfg(target_os = "linux")]

use berth_tests::{Berth, DEFAULT_IMAGE};
use std::io::{Read, Write};
use std::path::Path;

/// A container of the default image, exported: a whole busybox rootfs.
fn exported(b: &Berth, dir: &Path) -> std::path::PathBuf {
    b.run(&["create", "--name", "src", DEFAULT_IMAGE, "true"])
        .ok();
    let out = dir.join("rootfs.tar");
    b.run(&["export", "-o", out.to_str().unwrap(), "src"]).ok();
    b.run(&["rm", "src"]).ok();
    out
}

fn image_count(b: &Berth) -> usize {
    b.run(&["images", "-q", "-a"]).ok().stdout.lines().count()
}

#[test]
fn import_runs_with_changes_and_message() {
    let b = Berth::new().with_default_image();
    let d = tempfile::tempdir().unwrap();
    let tar = exported(&b, d.path());
    let out = b
        .run(&[
            "import",
            "-c",
            "ENV GREETING=hello",
            "-c",
            "CMD [\"sh\", \"-c\", \"echo $GREETING from $(pwd)\"]",
            "-c",
            "WORKDIR /tmp",
            "-c",
            "LABEL origin=import",
            "-m",
            "my message",
            tar.to_str().unwrap(),
            "imported:v1",
        ])
        .ok();
    let id = out.stdout.trim();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "{:?}",
        out.stdout
    );
    let run = b.run(&["run", "--rm", "imported:v1"]).ok();
    assert_eq!(run.stdout, "hello from /tmp\n");
    let v = b.inspect("imported:v1");
    assert_eq!(v["Id"], id);
    assert_eq!(v["Comment"], "my message");
    assert_eq!(v["Config"]["Labels"]["origin"], "import");
    assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    let hist = b.run(&["history", "imported:v1"]).ok().stdout;
    assert_eq!(hist.lines().count(), 2, "{hist}");
    assert!(
        hist.lines().nth(1).unwrap().ends_with("my message"),
        "{hist}"
    );

    // From stdin, gzip-compressed, untagged: docker's default comment.
    let raw = std::fs::read(&tar).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let out = b
        .run_stdin(
            &["image", "import", "-", "fromstdin"],
            &gz.finish().unwrap(),
        )
        .ok();
    let v = b.inspect("fromstdin");
    assert_eq!(v["Id"], out.stdout.trim());
    assert_eq!(v["Comment"], "Imported from -");
    // The same filesystem gives the same layer.
    assert_eq!(
        v["RootFS"]["Layers"],
        b.inspect("imported:v1")["RootFS"]["Layers"]
    );
    let run = b.run(&["run", "--rm", "fromstdin", "cat", "/etc/hostname"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// A one-shot HTTP server on loopback that serves `body` once (or a 404
/// for any other path).
fn serve_once(body: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/rootfs.tar", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        for _ in 0..2 {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            if line.starts_with("GET /rootfs.tar ") {
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(&body);
            } else {
                let _ = s.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot here\n",
                );
            }
        }
    });
    (url, h)
}

#[test]
fn import_from_a_url() {
    let b = Berth::new().with_default_image();
    let d = tempfile::tempdir().unwrap();
    let tar = exported(&b, d.path());
    let raw = std::fs::read(&tar).unwrap();
    let mut bz = Vec::new();
    {
        // xz over HTTP: docker decompresses whatever the body is.
        let mut r = &raw[..];
        lzma_compress(&mut r, &mut bz);
    }
    let (url, h) = serve_once(bz);
    let out = b.run(&["import", &url, "web:latest"]).ok();
    assert!(
        out.stdout.starts_with(&format!("Downloading from {url}\n")),
        "{}",
        out.stdout
    );
    let id = out.stdout.lines().last().unwrap();
    let v = b.inspect("web");
    assert_eq!(v["Id"], id);
    assert_eq!(v["Comment"], format!("Imported from {url}"));
    let run = b.run(&["run", "--rm", "web", "echo", "ok"]).ok();
    assert_eq!(run.stdout, "ok\n");
    // A 404 is docker's error, and no image.
    let before = image_count(&b);
    let missing = url.replace("rootfs.tar", "nope.tar");
    let bad = b.run(&["import", &missing]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr
            .contains(&format!("failed to GET {missing} with status 404")),
        "{}",
        bad.stderr
    );
    assert_eq!(image_count(&b), before);
    h.join().unwrap();
}

/// xz compression through the system's `xz`, so the test checks berth's
/// decoder against an independent encoder.
fn lzma_compress(input: &mut &[u8], out: &mut Vec<u8>) {
    let mut c = std::process::Command::new("xz")
        .args(["-c", "-z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("xz");
    let mut stdin = c.stdin.take().unwrap();
    let data = input.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    c.stdout.take().unwrap().read_to_end(out).unwrap();
    w.join().unwrap();
    assert!(c.wait().unwrap().success());
}

fn raw_entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

#[test]
fn hostile_tarballs_are_refused_and_leave_no_image() {
    let b = Berth::new().with_default_image();
    let before = image_count(&b);
    let end = |mut v: Vec<u8>| {
        v.extend_from_slice(&[0u8; 1024]);
        v
    };
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut v = Vec::new();
    raw_entry(&mut v, "../../escape", tar::EntryType::Regular, b"x", None);
    cases.push(("..", end(v)));
    let mut v = Vec::new();
    raw_entry(&mut v, "/abs", tar::EntryType::Regular, b"x", None);
    cases.push(("absolute", end(v)));
    let mut v = Vec::new();
    raw_entry(&mut v, "link", tar::EntryType::Symlink, b"", Some("/etc"));
    raw_entry(&mut v, "link/passwd", tar::EntryType::Regular, b"x", None);
    cases.push(("through a symlink", end(v)));
    let mut v = Vec::new();
    raw_entry(
        &mut v,
        "hard",
        tar::EntryType::Link,
        b"",
        Some("/etc/shadow"),
    );
    cases.push(("hard link out", end(v)));
    // A GNU long name claiming 1 GiB: refused before anything reads it.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(1 << 30);
    h.set_cksum();
    cases.push(("huge long name", end(h.as_bytes().to_vec())));
    cases.push(("not a tar", b"this is not a tarball\n".repeat(100)));
    let mut v = Vec::new();
    raw_entry(&mut v, "file", tar::EntryType::Regular, &[7u8; 4096], None);
    v.truncate(1500);
    cases.push(("truncated", v));
    for (what, data) in cases {
        let out = b.run_stdin(&["import", "-", &format!("bad:{}", what.len())], &data);
        assert_eq!(out.code, 1, "{what}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.starts_with("Error response from daemon: "),
            "{what}: {}",
            out.stderr
        );
        assert_eq!(image_count(&b), before, "{what} left an image");
    }
    // Device nodes are a layer's business, as docker's: a FIFO imports.
    let mut v = Vec::new();
    raw_entry(&mut v, "fifo", tar::EntryType::Fifo, b"", None);
    let ok = b.run_stdin(&["import", "-", "fifo"], &end(v));
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    // Bad arguments: docker's errors.
    let bad = b.run(&["import", "-c", "RUN true", "-"]);
    assert_eq!(
        bad.stderr,
        "Error response from daemon: run is not a valid change command\n"
    );
    let bad = b.run(&["import", "/no/such/file.tar"]);
    assert_eq!(bad.code, 1);
    assert_eq!(
        bad.stderr,
        "open /no/such/file.tar: no such file or directory\n"
    );
}
