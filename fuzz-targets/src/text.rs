//! Targets for text and JSON parsers: Dockerfiles, `.dockerignore`, image
//! references, manifests, agent frames, the snapshot state file, compose
//! files and Engine API request bodies.

use std::io::Cursor;
use std::path::Path;

/// Variables every expansion sees: set, empty, and with shell metacharacters.
fn lookup(name: &str) -> Option<String> {
    match name {
        "A" => Some("a".into()),
        "EMPTY" => Some(String::new()),
        "PATH" => Some("/usr/bin:/bin".into()),
        "X" => Some("$A ${B} *?[a] \\".into()),
        _ => None,
    }
}

/// The Dockerfile parser, then the builder's word expansion over every
/// instruction, stage base and heredoc.
pub fn fuzz_dockerfile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(df) = berth_dockerfile::parse("Dockerfile", text) {
        let esc = df.escape;
        for st in &df.stages {
            let _ = berth_dockerfile::expand_word(&st.base, esc, &lookup);
            for ins in &st.instructions {
                let _ = berth_dockerfile::expand_word(&ins.original, esc, &lookup);
                let _ = berth_dockerfile::expand_words(&ins.original, esc, &lookup);
                if let berth_dockerfile::InstructionKind::Copy(c) = &ins.kind {
                    for h in &c.heredocs {
                        let _ = berth_dockerfile::expand_heredoc(&h.content, &lookup);
                    }
                }
            }
        }
        for a in &df.global_args {
            let _ = berth_dockerfile::expand_word(&a.original, esc, &lookup);
        }
    }
    // The lexer on its own, with both escape characters.
    let _ = berth_dockerfile::expand_word(text, '\\', &lookup);
    let _ = berth_dockerfile::expand_words(text, '`', &lookup);
    let _ = berth_dockerfile::expand_heredoc(text, &lookup);
    let _ = berth_dockerfile::parse_go_duration(text);
}

/// `.dockerignore`: the whole input is the file, each of its lines is also
/// a path to match.
pub fn fuzz_dockerignore(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(m) = berth_dockerfile::ignore::Matcher::parse(text) else {
        return;
    };
    let _ = m.patterns();
    let _ = m.has_exceptions();
    for line in text.lines().take(64) {
        let _ = m.excluded(line);
        let _ = m.may_reinclude_under(line);
    }
    for p in ["a", "a/b/c", ".git", "Dockerfile", "x/../y", ""] {
        let _ = m.excluded(p);
    }
}

/// Image references (protocol's parser, used by host and agent), platform
/// strings, and registry auth challenges. A parsed reference must print
/// as a reference that parses back to the same one.
pub fn fuzz_reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = berth_protocol::reference::Reference::parse(text) {
        let shown = r.to_string();
        let again = berth_protocol::reference::Reference::parse(&shown)
            .unwrap_or_else(|e| panic!("{text:?} printed as {shown:?}, which does not parse: {e}"));
        assert_eq!(again.to_string(), shown, "reference of {text:?}");
        let _ = r.repository();
        let _ = r.familiar();
    }
    let _ = berth_host::registry::manifest::Platform::parse(text);
    let _ = berth_host::registry::auth::parse_challenges(text);
}

const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    Some("application/json; charset=utf-8"),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
    Some(""),
];

/// Manifests and indexes as a registry sends them (the first byte picks the
/// Content-Type), then the platform choice and the synthesized manifest.
pub fn fuzz_manifest(data: &[u8]) {
    use berth_host::registry::manifest::{self, Fetched, Platform};
    let Some((&ct, body)) = data.split_first() else {
        return;
    };
    let ct = CONTENT_TYPES[usize::from(ct) % CONTENT_TYPES.len()];
    match manifest::parse(body, ct) {
        Ok(Fetched::Index(list)) => {
            let _ = manifest::select(&list, &Platform::host());
            if let Ok(p) = Platform::parse("linux/arm64/v8") {
                let _ = manifest::select(&list, &p);
            }
        }
        Ok(Fetched::Image(m)) => {
            let (_, bytes) = manifest::synthesize(&m.config, &m.layers);
            let _ = manifest::sha256_digest(&bytes);
        }
        Err(_) => {}
    }
}

/// Agent protocol frames (length-prefixed JSON) as either side reads
/// them: requests and hellos on the agent, responses on the host; and the
/// same bytes as datagram frames.
pub fn fuzz_protocol_frame(data: &[u8]) {
    use berth_protocol::frame::read_frame;
    use berth_protocol::{Hello, HelloReply, Request, RequestEnvelope, Response, ResponseEnvelope};
    let mut c = Cursor::new(data);
    for _ in 0..16 {
        if read_frame::<_, RequestEnvelope>(&mut c).is_err() {
            break;
        }
    }
    let mut c = Cursor::new(data);
    for _ in 0..16 {
        if read_frame::<_, ResponseEnvelope>(&mut c).is_err() {
            break;
        }
    }
    let _ = read_frame::<_, Hello>(&mut Cursor::new(data));
    let _ = read_frame::<_, HelloReply>(&mut Cursor::new(data));
    let _ = serde_json::from_slice::<Request>(data);
    let _ = serde_json::from_slice::<Response>(data);
    // Datagram frames (a UDP port's flow, read by the host forwarder and
    // by the agent): never above the limit, never more than was sent.
    use berth_protocol::datagram::{read_datagram, HEADER, MAX_DATAGRAM};
    let mut c = Cursor::new(data);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut used = 0;
    while let Ok(Some(n)) = read_datagram(&mut c, &mut buf) {
        assert!(n <= MAX_DATAGRAM);
        used += HEADER + n;
        assert!(used <= data.len());
    }
}

/// The stdio multiplexer's frames and its control payloads.
pub fn fuzz_mux(data: &[u8]) {
    use berth_protocol::mux;
    let mut c = Cursor::new(data);
    for _ in 0..256 {
        match mux::read_frame(&mut c) {
            Ok(Some((kind, payload))) => {
                assert!(payload.len() <= mux::MAX_MUX_PAYLOAD);
                let _ = kind;
                let _ = mux::parse_resize(&payload);
                let _ = mux::parse_exit(&payload);
            }
            _ => break,
        }
    }
    if let Ok(h) = <[u8; 8]>::try_from(data.get(..8).unwrap_or(&[])) {
        let _ = mux::parse_header(h);
    }
}

/// The VMM's snapshot state file: header, compatibility check, state
/// section (as JSON; the VMM's machine state type is private to it).
pub fn fuzz_snapshot(data: &[u8]) {
    use berth_vmm::snapshot;
    let Ok((header, state)) = snapshot::decode_header(data) else {
        return;
    };
    let host = snapshot::HostIdentity {
        vmm_version: snapshot::vmm_version(),
        hypervisor: "kvm".into(),
        arch: "x86_64".into(),
        tsc_khz: Some(2_000_000),
        kernel_sha256: None,
    };
    let _ = snapshot::check_compatible(&header, &host);
    let _ = snapshot::decode_state::<serde_json::Value>(state);
}

/// Compose files: the YAML loader, the `.env` parser, and the whole
/// project load (interpolation, merge, validation) of the input as
/// `compose.yaml`.
pub fn fuzz_compose(data: &[u8]) {
    let _ = berth_compose::yaml::load(Path::new("compose.yaml"), data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = berth_compose::interp::parse_env_file(text);
    }
    let dir = crate::scratch_root().join("compose");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let file = dir.join("compose.yaml");
    if std::fs::write(&file, data).is_err() {
        return;
    }
    let opts = berth_compose::LoadOptions {
        files: vec![file],
        project_name: Some("fuzz".into()),
        env: [("A".to_string(), "a".to_string())].into_iter().collect(),
        env_files: Vec::new(),
        profiles: vec!["debug".into()],
        working_dir: Some(dir),
    };
    if let Ok((p, _)) = berth_compose::Project::load(&opts) {
        let _ = p.services_in_dependency_order();
        let _ = p.active_services();
    }
}

/// The Engine API's container-create body, as the endpoint turns it into
/// berth's container config (binds, ports, restart policy …).
pub fn fuzz_api_create(data: &[u8]) {
    let _ = berth_api::fuzzing::container_create_body(data, Some("fuzz".into()));
}

/// The Engine API's `filters` query parameter.
pub fn fuzz_api_filters(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(f) = berth_api::filters::parse(text) {
        let _ = berth_api::filters::check_keys(&f, &["label", "name", "status"]);
    }
    let _ = berth_api::version::split(text);
}

/// Published ports, exposes, volumes and mounts as the API and the CLI
/// pass them to the host library.
pub fn fuzz_host_args(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = berth_host::ports::parse_port_range(text);
    let _ = berth_host::ports::parse_publish(text);
    let _ = berth_host::ports::parse_expose(text);
    let _ = berth_host::ports::parse_ip(text);
    let _ = berth_host::mounts::parse_volume(text, Path::new("/work"));
    let _ = berth_host::mounts::parse_mount(text, Path::new("/work"));
    let _ = berth_host::platform::parse_linux_signal(text);
}
