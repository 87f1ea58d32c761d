//! An archive written by the real `docker save` (Debian docker.io) loads and
//! runs. The test starts its own dockerd on a private socket and data root.
// Drives the Linux builds of berth and berth-agent (native placement, KVM).
#![cfg(target_os = "linux")]

use berth_tests::dockerd::Dockerd;
use berth_tests::{default_image, have, skip, Berth};
use std::process::Command;

#[test]
fn real_docker_save_archive_loads_and_runs() {
    if !have("dockerd") || !have("skopeo") {
        return skip("dockerd (docker.io) or skopeo not installed");
    }
    let dockerd = Dockerd::required();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let st = Command::new("skopeo")
        .args([
            "copy",
            "-q",
            &format!("oci-archive:{}", default_image().display()),
            &format!("docker-archive:{d}/in.tar:saved/by-docker:v1"),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let o = dockerd
        .docker(&["load", "-i", &format!("{d}/in.tar")])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = dockerd
        .docker(&[
            "save",
            "-o",
            &format!("{d}/saved.tar"),
            "saved/by-docker:v1",
        ])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let b = Berth::new();
    let o = b.run(&["load", "-i", &format!("{d}/saved.tar")]).ok();
    // What docker prints loading the same archive (into a daemon that had
    // removed the image first).
    let rmi = dockerd.docker(&["rmi", "saved/by-docker:v1"]).unwrap();
    assert!(
        rmi.status.success(),
        "{}",
        String::from_utf8_lossy(&rmi.stderr)
    );
    let dl = dockerd
        .docker(&["load", "-i", &format!("{d}/saved.tar")])
        .unwrap();
    assert_eq!(o.stdout, String::from_utf8_lossy(&dl.stdout));
    assert_eq!(o.stdout, "Loaded image: saved/by-docker:v1\n");
    let o = b
        .run(&[
            "run",
            "--rm",
            "saved/by-docker:v1",
            "sh",
            "-c",
            "echo from-docker-save",
        ])
        .ok();
    assert_eq!(o.stdout, "from-docker-save\n");
}
