#![cfg(target_os = "linux")]
//! `berth build` in the placement chosen by BERTH_TEST_ISOLATION (native by
//! default): the tutorial examples, the layer cache, multi-stage builds,
//! hostile contexts and Dockerfiles.
// Drives the Linux builds of berth and berth-agent.

use berth_tests::{Berth, Out, DEFAULT_IMAGE};
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(p, text).unwrap();
}

fn build(b: &Berth, ctx: &Path, extra: &[&str]) -> Out {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    b.run(&args)
}

fn config(b: &Berth, image: &str) -> serde_json::Value {
    let out = b.run(&["image", "inspect", image]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["Config"].clone()
}

/// Lines of the build output that say whether a step used the cache,
/// one per step after FROM: true = cached.
fn cache_pattern(out: &str) -> Vec<bool> {
    let mut steps = Vec::new();
    let mut lines = out.lines().peekable();
    while let Some(l) = lines.next() {
        if l.starts_with("Step ") && !l.contains(" : FROM ") {
            let mut cached = false;
            while let Some(n) = lines.peek() {
                if n.starts_with("Step ") || n.starts_with("Successfully") {
                    break;
                }
                if *n == " ---> Using cache" {
                    cached = true;
                }
                lines.next();
            }
            steps.push(cached);
        }
    }
    steps
}

#[test]
fn hello_world_web_page_builds_and_runs() {
    let b = Berth::new().with_default_image();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        &format!(
            "# A php-style hello world: a page and a server command.\n\
             FROM {DEFAULT_IMAGE}\n\
             COPY src/ /var/www/html/\n\
             EXPOSE 80\n\
             CMD [\"cat\", \"/var/www/html/index.php\"]\n"
        ),
    );
    write(
        ctx.path(),
        "src/index.php",
        "<?php echo 'Hello, World!'; ?>\n",
    );
    let out = build(&b, ctx.path(), &["-t", "hello-php"]).ok();
    assert!(out.stdout.contains("Step 1/4 : FROM"), "{}", out.stdout);
    assert!(
        out.stdout.contains("Step 2/4 : COPY src/ /var/www/html/"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Successfully built "), "{}", out.stdout);
    assert!(
        out.stdout.contains("Successfully tagged hello-php:latest"),
        "{}",
        out.stdout
    );
    let run = b.run(&["run", "--rm", "hello-php"]).ok();
    assert_eq!(run.stdout, "<?php echo 'Hello, World!'; ?>\n");
    let c = config(&b, "hello-php");
    assert_eq!(
        c["Cmd"],
        serde_json::json!(["cat", "/var/www/html/index.php"])
    );
    assert!(c["ExposedPorts"]["80/tcp"].is_object(), "{c}");
    // The build's history is visible.
    let hist = b
        .run(&["image", "history", "--no-trunc", "hello-php"])
        .ok()
        .stdout;
    assert!(hist.contains("EXPOSE 80"), "{hist}");
    assert!(hist.contains("COPY"), "{hist}");
    // A built image exists only in the engine: save copies its blobs out,
    // and the archive loads and runs in another installation.
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("hello.tar");
    b.run(&["save", "-o", tar.to_str().unwrap(), "hello-php"])
        .ok();
    let other = Berth::new();
    other.run(&["load", "-i", tar.to_str().unwrap()]).ok();
    let run = other.run(&["run", "--rm", "hello-php"]).ok();
    assert_eq!(run.stdout, "<?php echo 'Hello, World!'; ?>\n");
    // Intermediate images are listed only with -a.
    let plain = b.run(&["images", "-q"]).ok().stdout.lines().count();
    let all = b.run(&["images", "-a", "-q"]).ok().stdout.lines().count();
    assert!(all > plain, "images -a {all} vs images {plain}");
}

#[test]
fn multi_stage_build_ends_in_scratch_with_a_static_binary() {
    let b = Berth::new().with_default_image();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        &format!(
            "FROM {DEFAULT_IMAGE} AS build\n\
             RUN mkdir /out && cp /bin/busybox /out/busybox && echo built > /out/stamp\n\
             FROM {DEFAULT_IMAGE} AS unused\n\
             RUN exit 42\n\
             FROM scratch\n\
             COPY --from=build /out/busybox /busybox\n\
             COPY --from=0 /out/stamp /\n\
             ENTRYPOINT [\"/busybox\", \"echo\"]\n\
             CMD [\"hi from scratch\"]\n"
        ),
    );
    let out = build(&b, ctx.path(), &["-t", "tiny:1"]).ok();
    assert!(
        !out.stdout.contains("exit 42"),
        "unused stage built:\n{}",
        out.stdout
    );
    let run = b.run(&["run", "--rm", "tiny:1"]).ok();
    assert_eq!(run.stdout, "hi from scratch\n");
    let ls = b
        .run(&[
            "run",
            "--rm",
            "--entrypoint",
            "/busybox",
            "tiny:1",
            "ls",
            "/",
        ])
        .ok()
        .stdout;
    let mut names: Vec<&str> = ls.split_whitespace().collect();
    names.sort();
    // Only the copied files (and the engine's mount points).
    assert!(
        names.contains(&"busybox") && names.contains(&"stamp"),
        "{ls}"
    );
    assert!(!names.contains(&"bin"), "{ls}");
    // --target builds only up to that stage.
    let out = build(&b, ctx.path(), &["--target", "build", "-t", "stage1"]).ok();
    assert!(out.stdout.contains("Step 2/2 : RUN"), "{}", out.stdout);
    let run = b.run(&["run", "--rm", "stage1", "cat", "/out/stamp"]).ok();
    assert_eq!(run.stdout, "built\n");
}

#[test]
fn cache_reuses_unchanged_steps_and_invalidates_from_a_changed_copy() {
    let b = Berth::new().with_default_image();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        &format!(
            "FROM {DEFAULT_IMAGE}\n\
             ENV GREETING=hello\n\
             COPY a.txt /a.txt\n\
             RUN cat /a.txt > /first\n\
             COPY b.txt /b.txt\n\
             RUN cat /a.txt /b.txt > /both\n\
             CMD cat /both\n"
        ),
    );
    write(ctx.path(), "a.txt", "A1\n");
    write(ctx.path(), "b.txt", "B1\n");
    let first = build(&b, ctx.path(), &["-t", "cached"]).ok();
    assert_eq!(
        cache_pattern(&first.stdout),
        vec![false; 6],
        "{}",
        first.stdout
    );
    let id1 = b.run(&["images", "-q", "cached"]).ok().stdout;

    // Unchanged: every step from the cache, same image.
    let again = build(&b, ctx.path(), &["-t", "cached"]).ok();
    assert_eq!(
        cache_pattern(&again.stdout),
        vec![true; 6],
        "{}",
        again.stdout
    );
    assert_eq!(b.run(&["images", "-q", "cached"]).ok().stdout, id1);

    // `image prune` keeps intermediate images: they are the cache.
    b.run(&["image", "prune", "-f"]).ok();
    let pruned = build(&b, ctx.path(), &["-t", "cached"]).ok();
    assert_eq!(
        cache_pattern(&pruned.stdout),
        vec![true; 6],
        "{}",
        pruned.stdout
    );

    // A new mtime alone changes nothing.
    let f = std::fs::File::options()
        .write(true)
        .open(ctx.path().join("b.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    let touched = build(&b, ctx.path(), &[]).ok();
    assert_eq!(
        cache_pattern(&touched.stdout),
        vec![true; 6],
        "{}",
        touched.stdout
    );

    // New content of the second COPY's source: that step and later rerun.
    write(ctx.path(), "b.txt", "B2\n");
    let changed = build(&b, ctx.path(), &["-t", "cached"]).ok();
    assert_eq!(
        cache_pattern(&changed.stdout),
        vec![true, true, true, false, false, false],
        "{}",
        changed.stdout
    );
    let run = b.run(&["run", "--rm", "cached"]).ok();
    assert_eq!(run.stdout, "A1\nB2\n");

    // --no-cache reruns everything.
    let nc = build(&b, ctx.path(), &["--no-cache"]).ok();
    assert_eq!(cache_pattern(&nc.stdout), vec![false; 6], "{}", nc.stdout);

    // -q prints only the id.
    let q = build(&b, ctx.path(), &["-q"]).ok();
    let line = q.stdout.trim();
    assert!(
        line.starts_with("sha256:") && line.len() == 71,
        "{:?}",
        q.stdout
    );
}

#[test]
fn args_env_workdir_user_and_copy_options() {
    let b = Berth::new().with_default_image();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        &format!(
            "ARG BASE={DEFAULT_IMAGE}\n\
             FROM $BASE\n\
             ARG VERSION=1.0\n\
             ARG FROM_CLI\n\
             ENV APP_HOME=/srv/app \\\n    APP_VERSION=${{VERSION}}\n\
             WORKDIR $APP_HOME\n\
             WORKDIR sub\n\
             LABEL org.example.version=$APP_VERSION \"quoted key\"=\"a b\"\n\
             COPY --chown=1:1 --chmod=640 conf.txt ./\n\
             ADD layer.tar.gz /opt/\n\
             RUN echo \"v=$VERSION cli=$FROM_CLI pwd=$(pwd)\" > /built && stat -c '%u:%g %a' conf.txt >> /built && cat /opt/pkg/readme >> /built\n\
             USER daemon\n\
             STOPSIGNAL SIGINT\n\
             CMD [\"cat\", \"/built\"]\n"
        ),
    );
    write(ctx.path(), "conf.txt", "conf\n");
    // A gzip tar for ADD to unpack.
    let tgz = std::fs::File::create(ctx.path().join("layer.tar.gz")).unwrap();
    let mut t = tar::Builder::new(flate2::write::GzEncoder::new(
        tgz,
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(7);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, "pkg/readme", &b"readme\n"[..])
        .unwrap();
    t.into_inner().unwrap().finish().unwrap();

    let out = build(
        &b,
        ctx.path(),
        &[
            "-t",
            "opts",
            "--build-arg",
            "FROM_CLI=yes",
            "--build-arg",
            "NOBODY=1",
        ],
    )
    .ok();
    assert!(
        out.stdout
            .contains("[Warning] One or more build-args [NOBODY] were not consumed"),
        "{}",
        out.stdout
    );
    let c = config(&b, "opts");
    assert_eq!(c["WorkingDir"], "/srv/app/sub");
    assert_eq!(c["User"], "daemon");
    assert_eq!(c["StopSignal"], "SIGINT");
    assert_eq!(c["Labels"]["org.example.version"], "1.0");
    assert_eq!(c["Labels"]["quoted key"], "a b");
    let env: Vec<String> = serde_json::from_value(c["Env"].clone()).unwrap();
    assert!(env.contains(&"APP_VERSION=1.0".to_string()), "{env:?}");
    assert!(env.contains(&"APP_HOME=/srv/app".to_string()), "{env:?}");
    // ARG values are not kept in the image.
    assert!(!env.iter().any(|e| e.starts_with("VERSION=")), "{env:?}");
    let run = b.run(&["run", "--rm", "opts"]).ok();
    assert_eq!(
        run.stdout,
        "v=1.0 cli=yes pwd=/srv/app/sub\n1:1 640\nreadme\n"
    );
}

#[test]
fn dockerignore_and_errors() {
    let b = Berth::new().with_default_image();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        ".dockerignore",
        "secrets\n**/*.log\n!**/keep.log\n",
    );
    write(ctx.path(), "secrets/key", "k");
    write(ctx.path(), "app/a.log", "log");
    write(ctx.path(), "app/keep.log", "keep");
    write(ctx.path(), "app/main.txt", "main");
    write(
        ctx.path(),
        "Dockerfile",
        &format!("FROM {DEFAULT_IMAGE}\nCOPY . /ctx/\nCMD find /ctx -type f\n"),
    );
    build(&b, ctx.path(), &["-t", "ign"]).ok();
    let files = b.run(&["run", "--rm", "ign"]).ok().stdout;
    let mut files: Vec<&str> = files.lines().collect();
    files.sort();
    assert_eq!(
        files,
        vec![
            "/ctx/.dockerignore",
            "/ctx/Dockerfile",
            "/ctx/app/keep.log",
            "/ctx/app/main.txt"
        ]
    );

    let err_case = |dockerfile: &str, want: &str, code: i32| {
        write(ctx.path(), "Dockerfile", dockerfile);
        // Tagged, so that a failed build that still tagged an image shows
        // in `images` below.
        let out = build(&b, ctx.path(), &["-t", "failed-build:latest"]);
        assert_eq!(out.code, code, "{dockerfile}\n{}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(want),
            "{dockerfile}: want {want:?} in\n{}",
            out.stderr
        );
    };
    let from = format!("FROM {DEFAULT_IMAGE}\n");
    err_case(
        &format!("{from}COPY secrets/key /\n"),
        "file not found in build context or excluded by .dockerignore",
        1,
    );
    err_case(
        &format!("{from}COPY ../../etc/passwd /\n"),
        "outside the build context",
        1,
    );
    err_case(&format!("{from}COPY nothere /\n"), "file not found", 1);
    err_case(
        &format!("{from}RUN exit 3\n"),
        "The command '/bin/sh -c exit 3' returned a non-zero code: 3",
        3,
    );
    err_case(&format!("{from}\nBOGUS x\n"), "3", 1);
    err_case(&format!("{from}COPY --chmod=999 app /x\n"), "chmod", 1);
    err_case(
        &format!("{from}COPY app/main.txt app/keep.log /x\n"),
        "must be a directory and end with a /",
        1,
    );
    err_case("RUN true\n", "no build stage", 1);
    err_case(&format!("{from}EXPOSE http\n"), "invalid containerPort", 1);
    err_case(
        &format!("FROM {DEFAULT_IMAGE}\nUSER 1000\nCOPY --chown=nosuch app/main.txt /x\n"),
        "unable to find user nosuch",
        1,
    );

    // A hostile archive for ADD: entries climbing out are refused, nothing
    // lands outside the destination.
    let mut raw = Vec::new();
    {
        let mut t = tar::Builder::new(&mut raw);
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.as_old_mut().name[..16].copy_from_slice(b"../../etc/pwned\0");
        h.set_cksum();
        t.append(&h, &b"evil"[..]).unwrap();
        t.finish().unwrap();
    }
    std::fs::write(ctx.path().join("evil.tar"), &raw).unwrap();
    err_case(&format!("{from}ADD evil.tar /opt/\n"), "climbs out", 1);
    // Missing Dockerfile and context.
    let out = b.run(&[
        "build",
        "-f",
        "/nonexistent/Dockerfile",
        ctx.path().to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("Dockerfile"), "{}", out.stderr);
    let out = b.run(&["build", "/nonexistent-context"]);
    assert_eq!(out.code, 1);
    let out = b.run(&["build", "-t", "Bad:Name", ctx.path().to_str().unwrap()]);
    assert_eq!(out.code, 125, "{}", out.stderr);
    assert!(
        out.stderr.contains("invalid reference format"),
        "{}",
        out.stderr
    );
    // No image was left tagged by the failures (all were built with -t).
    let imgs = b.run(&["images", "--format", "json"]).ok().stdout;
    assert!(
        imgs.contains(DEFAULT_IMAGE) && !imgs.contains("failed-build"),
        "{imgs}"
    );
    assert!(!imgs.contains("pwned"), "{imgs}");
}

#[test]
fn heredocs_run_as_scripts() {
    let b = Berth::new().with_default_image();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        &format!(
            "# syntax=docker/dockerfile:1\n\
             FROM {DEFAULT_IMAGE}\n\
             RUN <<EOF\n\
             echo one > /h1\n\
             echo two >> /h1\n\
             EOF\n\
             RUN cat > /h2 <<'END'\n\
             $NOT_EXPANDED\n\
             END\n\
             COPY <<EOF /h3\n\
             copied\n\
             EOF\n\
             CMD cat /h1 /h2 /h3\n"
        ),
    );
    build(&b, ctx.path(), &["-t", "heredoc"]).ok();
    let run = b.run(&["run", "--rm", "heredoc"]).ok();
    assert_eq!(run.stdout, "one\ntwo\n$NOT_EXPANDED\ncopied\n");
}
