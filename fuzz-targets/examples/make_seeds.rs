//! Writes the binary seed inputs of the fuzz corpora (frames, snapshots,
//! archives, layers, virtio queues) to `fuzz/corpus/<target>/seed-*`:
//!
//!     cargo run -p berth-fuzz-targets --example make_seeds
//!
//! The text seeds (Dockerfiles, compose files, manifests, references …)
//! are copied from the parsers' test cases or written by hand.

#[cfg(target_os = "linux")]
fn main() {
    seeds::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {}

#[cfg(target_os = "linux")]
mod seeds {
    use berth_protocol::{frame, mux, Hello, Request, RequestEnvelope, Response, ResponseEnvelope};
    use std::io::Write;
    use std::path::{Path, PathBuf};

    fn corpus(target: &str) -> PathBuf {
        let d = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn save(target: &str, name: &str, data: &[u8]) {
        std::fs::write(corpus(target).join(format!("seed-{name}")), data).unwrap();
    }

    pub fn main() {
        frames();
        mux_frames();
        snapshot();
        layers();
        archives();
        virtio();
    }

    fn frames() {
        let hello = frame::encode(&Hello {
            version: berth_protocol::PROTOCOL_VERSION,
            client: "berth 0.1.0".into(),
        })
        .unwrap();
        save("protocol_frame", "hello", &hello);
        let reqs = [
            Request::Info,
            Request::ImageList,
            Request::BlobsPresent {
                digests: vec![format!("sha256:{}", "a".repeat(64))],
            },
            Request::PutBlob {
                digest: format!("sha256:{}", "b".repeat(64)),
                size: 10,
            },
            Request::ContainerStart { id: "abc".into() },
            Request::ContainerCreate(Box::new(berth_protocol::ContainerConfig {
                image: "busybox".into(),
                cmd: Some(vec!["sh".into(), "-c".into(), "echo hi".into()]),
                env: vec!["A=1".into()],
                ..Default::default()
            })),
        ];
        let mut all = Vec::new();
        for (i, r) in reqs.into_iter().enumerate() {
            let f = frame::encode(&RequestEnvelope {
                id: i as u64,
                request: r,
            })
            .unwrap();
            all.extend_from_slice(&f);
            save("protocol_frame", &format!("request{i}"), &f);
        }
        save("protocol_frame", "requests", &all);
        let resps = [
            Ok(Response::Ok),
            Ok(Response::Ready),
            Ok(Response::Exited { code: 137 }),
            Ok(Response::Created {
                id: "abc".into(),
                warnings: vec![],
            }),
            Err(berth_protocol::ApiError::new(
                berth_protocol::ErrorKind::NotFound,
                "no such container",
            )),
        ];
        for (i, r) in resps.into_iter().enumerate() {
            let f = frame::encode(&ResponseEnvelope {
                id: i as u64,
                result: r,
            })
            .unwrap();
            save("protocol_frame", &format!("response{i}"), &f);
        }
    }

    fn mux_frames() {
        let mut v = Vec::new();
        mux::write_frame(&mut v, mux::Kind::Stdout, b"hello\n").unwrap();
        mux::write_frame(&mut v, mux::Kind::Stderr, b"oops\n").unwrap();
        mux::write_frame(&mut v, mux::Kind::Resize, &mux::resize_payload(24, 80)).unwrap();
        mux::write_frame(&mut v, mux::Kind::Stdin, b"input").unwrap();
        mux::write_frame(&mut v, mux::Kind::StdinEof, b"").unwrap();
        mux::write_frame(&mut v, mux::Kind::Exit, &7i32.to_be_bytes()).unwrap();
        save("mux", "session", &v);
        let mut e = Vec::new();
        mux::write_frame(&mut e, mux::Kind::Error, b"no such container").unwrap();
        save("mux", "error", &e);
    }

    fn snapshot() {
        use berth_vmm::snapshot::{encode, vmm_version, Header};
        let header = Header {
            vmm_version: vmm_version(),
            hypervisor: "kvm".into(),
            arch: "x86_64".into(),
            kernel_sha256: "0".repeat(64),
            tsc_khz: 2_000_000,
            mem_size: 256 << 20,
            memory_regions: vec![(0, 256 << 20)],
            state_len: 0,
            state_sha256: String::new(),
            created_unix: 1_700_000_000,
        };
        let state = serde_json::json!({
            "cpus": 1,
            "vcpus": [{"regs": [1, 2, 3]}],
            "devices": [{"type": 2, "queues": [{"max_size": 256, "size": 256, "ready": true}]}],
        });
        save("snapshot", "state", &encode(header, &state).unwrap());
    }

    fn tar_entry(
        b: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: tar::EntryType,
        data: &[u8],
        link: Option<&str>,
    ) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        let raw = name.as_bytes();
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..raw.len()].copy_from_slice(raw);
        if let Some(l) = link {
            gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn layer(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (n, k, d, l) in entries {
            tar_entry(&mut b, n, *k, d, *l);
        }
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        g.write_all(data).unwrap();
        g.finish().unwrap()
    }

    fn layers() {
        use tar::EntryType as T;
        let base = layer(&[
            ("bin/", T::Directory, b"", None),
            ("bin/sh", T::Regular, b"#!ELF", None),
            ("bin/ls", T::Link, b"", Some("bin/sh")),
            ("etc/", T::Directory, b"", None),
            (
                "etc/passwd",
                T::Regular,
                b"root:x:0:0::/root:/bin/sh\n",
                None,
            ),
            ("lib", T::Symlink, b"", Some("usr/lib")),
            ("usr/lib/libc.so", T::Regular, b"lib", None),
            ("tmp/fifo", T::Fifo, b"", None),
        ]);
        save("unpack", "base", &base);
        save("unpack", "base-gz", &gzip(&base));
        let whiteouts = layer(&[
            ("etc/.wh.passwd", T::Regular, b"", None),
            ("var/.wh..wh..opq", T::Regular, b"", None),
            ("var/new", T::Regular, b"x", None),
        ]);
        save("unpack", "whiteouts", &whiteouts);
        let hostile = layer(&[
            ("../escape", T::Regular, b"x", None),
            ("/abs", T::Regular, b"x", None),
            ("link/through", T::Regular, b"x", None),
            ("hl", T::Link, b"", Some("../../etc/shadow")),
            ("s", T::Symlink, b"", Some("/")),
            ("s/etc/x", T::Regular, b"x", None),
        ]);
        save("unpack", "hostile", &hostile);
    }

    fn sha(data: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(data))
    }

    fn archives() {
        use tar::EntryType as T;
        let l = layer(&[("hello", T::Regular, b"hello\n", None)]);
        let lsha = sha(&l);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{lsha}")]},
        }))
        .unwrap();
        let csha = sha(&config);
        // docker save
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": format!("{csha}.json"),
            "RepoTags": ["hello:latest"],
            "Layers": [format!("{lsha}/layer.tar")],
        }]))
        .unwrap();
        let mut b = tar::Builder::new(Vec::new());
        tar_entry(&mut b, &format!("{csha}.json"), T::Regular, &config, None);
        tar_entry(&mut b, &format!("{lsha}/"), T::Directory, b"", None);
        tar_entry(&mut b, &format!("{lsha}/layer.tar"), T::Regular, &l, None);
        tar_entry(&mut b, "manifest.json", T::Regular, &manifest, None);
        save("archive", "docker-save", &b.into_inner().unwrap());
        // OCI layout
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{csha}"), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": format!("sha256:{lsha}"), "size": l.len()}],
        }))
        .unwrap();
        let msha = sha(&m);
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": format!("sha256:{msha}"), "size": m.len(),
                           "annotations": {"org.opencontainers.image.ref.name": "hello:1"}}],
        }))
        .unwrap();
        let mut b = tar::Builder::new(Vec::new());
        tar_entry(
            &mut b,
            "oci-layout",
            T::Regular,
            br#"{"imageLayoutVersion":"1.0.0"}"#,
            None,
        );
        tar_entry(&mut b, "index.json", T::Regular, &index, None);
        tar_entry(
            &mut b,
            &format!("blobs/sha256/{msha}"),
            T::Regular,
            &m,
            None,
        );
        tar_entry(
            &mut b,
            &format!("blobs/sha256/{csha}"),
            T::Regular,
            &config,
            None,
        );
        tar_entry(
            &mut b,
            &format!("blobs/sha256/{lsha}"),
            T::Regular,
            &l,
            None,
        );
        tar_entry(&mut b, "alias", T::Symlink, b"", Some("index.json"));
        save("archive", "oci", &b.into_inner().unwrap());
    }

    /// Guest memory for `fuzz::virtio`: queue `q` at `q * 0x400`, buffers
    /// from 0x1000.
    struct Mem {
        bytes: Vec<u8>,
        next_buf: usize,
        heads: Vec<u16>,
        next_desc: Vec<u16>,
    }

    const F_NEXT: u16 = 1;
    const F_WRITE: u16 = 2;

    impl Mem {
        fn new(queues: usize) -> Mem {
            Mem {
                bytes: vec![0; 0x1000],
                next_buf: 0x1000,
                heads: vec![0; queues],
                next_desc: vec![0; queues],
            }
        }

        fn buf(&mut self, data: &[u8], len: usize) -> u64 {
            let at = self.next_buf;
            self.next_buf += len.max(data.len()).div_ceil(16) * 16;
            self.bytes.resize(self.next_buf, 0);
            self.bytes[at..at + data.len()].copy_from_slice(data);
            at as u64
        }

        /// Adds a chain of (data, capacity, writable) buffers to queue `q`.
        fn chain(&mut self, q: usize, parts: &[(&[u8], usize, bool)]) {
            let head = self.next_desc[q];
            for (i, (data, cap, w)) in parts.iter().enumerate() {
                let addr = self.buf(data, *cap);
                let idx = self.next_desc[q];
                self.next_desc[q] += 1;
                let mut flags = if *w { F_WRITE } else { 0 };
                if i + 1 < parts.len() {
                    flags |= F_NEXT;
                }
                let d = q * 0x400 + usize::from(idx) * 16;
                self.bytes[d..d + 8].copy_from_slice(&addr.to_le_bytes());
                self.bytes[d + 8..d + 12]
                    .copy_from_slice(&(*cap.max(&data.len()) as u32).to_le_bytes());
                self.bytes[d + 12..d + 14].copy_from_slice(&flags.to_le_bytes());
                self.bytes[d + 14..d + 16].copy_from_slice(&(idx + 1).to_le_bytes());
            }
            let avail = q * 0x400 + 0x100;
            let n = self.heads[q];
            let slot = avail + 4 + usize::from(n) * 2;
            self.bytes[slot..slot + 2].copy_from_slice(&head.to_le_bytes());
            self.heads[q] += 1;
            self.bytes[avail + 2..avail + 4].copy_from_slice(&self.heads[q].to_le_bytes());
        }

        fn input(&self, flags: u8) -> Vec<u8> {
            let mut v = vec![flags];
            v.extend_from_slice(&self.bytes);
            v
        }
    }

    fn virtio() {
        // rng
        let mut m = Mem::new(1);
        m.chain(0, &[(b"", 64, true)]);
        m.chain(0, &[(b"", 16, true), (b"", 16, true)]);
        save("virtio_rng", "two", &m.input(0));
        save("virtio_rng", "two-event-idx", &m.input(1));

        // balloon: a free page report of two blocks (queue 2), an inflate
        // and a deflate request of 4 KiB page numbers (queues 0 and 1)
        let pfns: Vec<u8> = [1u32, 2, 3, 9]
            .iter()
            .flat_map(|p| p.to_le_bytes())
            .collect();
        let mut m = Mem::new(3);
        m.chain(2, &[(b"", 0x1000, true), (b"", 0x2000, true)]);
        m.chain(0, &[(&pfns, 16, false)]);
        m.chain(1, &[(&pfns[..4], 4, false)]);
        save("virtio_balloon", "report-inflate-deflate", &m.input(0));
        save(
            "virtio_balloon",
            "report-inflate-deflate-event-idx",
            &m.input(1),
        );

        // blk: header (type, reserved, sector), data, status
        let hdr = |t: u32, sector: u64| {
            let mut h = Vec::new();
            h.extend_from_slice(&t.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes());
            h.extend_from_slice(&sector.to_le_bytes());
            h
        };
        let mut m = Mem::new(1);
        m.chain(
            0,
            &[
                (&hdr(1, 2), 16, false),
                (&[0xab; 512], 512, false),
                (b"", 1, true),
            ],
        );
        m.chain(
            0,
            &[(&hdr(0, 2), 16, false), (b"", 512, true), (b"", 1, true)],
        );
        m.chain(0, &[(&hdr(4, 0), 16, false), (b"", 1, true)]);
        m.chain(
            0,
            &[(&hdr(8, 0), 16, false), (b"", 20, true), (b"", 1, true)],
        );
        m.chain(
            0,
            &[
                (&hdr(0, 1 << 40), 16, false),
                (b"", 512, true),
                (b"", 1, true),
            ],
        );
        save("virtio_blk", "rw-flush-id", &m.input(0));

        // vsock: rx 0, tx 1, event 2; header of 44 bytes
        let pkt = |op: u16, src_port: u32, dst_port: u32, payload: &[u8]| {
            let mut h = Vec::new();
            h.extend_from_slice(&3u64.to_le_bytes());
            h.extend_from_slice(&2u64.to_le_bytes());
            h.extend_from_slice(&src_port.to_le_bytes());
            h.extend_from_slice(&dst_port.to_le_bytes());
            h.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            h.extend_from_slice(&1u16.to_le_bytes());
            h.extend_from_slice(&op.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes());
            h.extend_from_slice(&65536u32.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes());
            h.extend_from_slice(payload);
            h
        };
        let mut m = Mem::new(3);
        for _ in 0..4 {
            m.chain(0, &[(b"", 44 + 256, true)]);
        }
        m.chain(1, &[(&pkt(1, 1024, 1024, b""), 0, false)]);
        m.chain(1, &[(&pkt(5, 1024, 1024, b"hello"), 0, false)]);
        m.chain(1, &[(&pkt(6, 1024, 1024, b""), 0, false)]);
        m.chain(1, &[(&pkt(4, 1024, 1024, b""), 0, false)]);
        m.chain(1, &[(&pkt(3, 1024, 1024, b""), 0, false)]);
        m.chain(2, &[(b"", 8, true)]);
        save("virtio_vsock", "connect-rw-rst", &m.input(0));

        // fs: hiprio 0, requests 1. fuse_in_header is 40 bytes.
        let fuse = |op: u32, unique: u64, node: u64, body: &[u8]| {
            let mut h = Vec::new();
            h.extend_from_slice(&(40 + body.len() as u32).to_le_bytes());
            h.extend_from_slice(&op.to_le_bytes());
            h.extend_from_slice(&unique.to_le_bytes());
            h.extend_from_slice(&node.to_le_bytes());
            h.extend_from_slice(&[0; 16]);
            h.extend_from_slice(body);
            h
        };
        let mut init = Vec::new();
        for v in [7u32, 31, 0x2_0000, 0] {
            init.extend_from_slice(&v.to_le_bytes());
        }
        init.extend_from_slice(&[0; 48]);
        let mut m = Mem::new(2);
        m.chain(1, &[(&fuse(26, 1, 0, &init), 0, false), (b"", 256, true)]);
        m.chain(
            1,
            &[(&fuse(1, 2, 1, b"file\0"), 0, false), (b"", 256, true)],
        );
        m.chain(1, &[(&fuse(3, 3, 1, &[0; 16]), 0, false), (b"", 256, true)]);
        m.chain(1, &[(&fuse(27, 4, 1, &[0; 8]), 0, false), (b"", 256, true)]);
        m.chain(
            1,
            &[(&fuse(1, 5, 1, b"../../etc\0"), 0, false), (b"", 256, true)],
        );
        save("virtio_fs", "init-lookup-getattr", &m.input(0));

        // net: rx 0, tx 1; 12-byte virtio-net header, then an ARP request
        // for the gateway.
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0xff; 6]);
        arp.extend_from_slice(&berth_vmm::net::GUEST_MAC);
        arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        arp.extend_from_slice(&berth_vmm::net::GUEST_MAC);
        arp.extend_from_slice(&berth_vmm::net::GUEST.octets());
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&berth_vmm::net::GATEWAY.octets());
        let mut m = Mem::new(2);
        for _ in 0..4 {
            m.chain(0, &[(b"", 1526, true)]);
        }
        m.chain(1, &[(&arp, 0, false)]);
        m.chain(1, &[(&arp[..12], 0, false), (&arp[12..], 0, false)]);
        save("virtio_net", "arp", &m.input(0));
    }
}
