//! `import`: a filesystem tarball (plain, gzip, bzip2 or xz, as docker
//! takes them) becomes a one-layer image, with `--change` instructions
//! applied to an empty configuration, as docker's `import` does.
//!
//! The tarball is untrusted. Here it is only decompressed, hashed and
//! checked for the header shapes that could exhaust memory (a GNU long
//! name or PAX header is read whole, so each is capped at Go's 1 MiB);
//! what it would do to a filesystem (`..`, absolute paths, links out of
//! the layer, device nodes) is refused or contained by the engine's layer
//! unpacker, the one every pulled and loaded layer goes through, before
//! the image is recorded.

use crate::image_cache::ImageCache;
use crate::placement::Isolation;
use anyhow::{anyhow, bail, Context, Result};
use berth_dockerfile::{InstructionKind, ShellOrExec};
use berth_protocol::reference::Reference;
use berth_protocol::{ImageCommit, ImageOrigin, LayerRef};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};

/// The media type of an uncompressed layer.
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Go's `archive/tar` cap on a GNU long name/link or PAX header.
const MAX_SPECIAL_HEADER: u64 = 1 << 20;

/// The instructions docker's `import --change` (and `commit --change`) takes.
const CHANGE_COMMANDS: &[&str] = &[
    "cmd",
    "entrypoint",
    "env",
    "expose",
    "healthcheck",
    "label",
    "onbuild",
    "user",
    "volume",
    "workdir",
];

/// What the caller asks of an import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Where the tarball came from, as docker names it in the default
    /// comment: `-` (a file or stdin, sent as a body) or the URL.
    pub source: String,
    /// The history comment; `Imported from SOURCE` when empty.
    pub message: Option<String>,
    /// Dockerfile instructions applied to the image's configuration.
    pub changes: Vec<String>,
    /// The name to give the image (`REPOSITORY[:TAG]`).
    pub reference: Option<String>,
    /// `os[/arch[/variant]]`; this host's platform when absent.
    pub platform: Option<String>,
}

/// The image's `config` object: `changes` applied to an empty one, with
/// docker's error for an instruction it does not take.
pub fn config_from_changes(changes: &[String]) -> Result<Value> {
    // docker's empty container configuration, as its import stores it.
    let mut cfg = json!({
        "Hostname": "", "Domainname": "", "User": "",
        "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
        "Tty": false, "OpenStdin": false, "StdinOnce": false,
        "Env": null, "Cmd": null, "Image": "", "Volumes": null, "WorkingDir": "",
        "Entrypoint": null, "OnBuild": null, "Labels": null,
    });
    for ch in changes {
        let text = ch.trim();
        if text.is_empty() {
            continue;
        }
        let word = text
            .split(char::is_whitespace)
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if !CHANGE_COMMANDS.contains(&word.as_str()) {
            bail!("{word} is not a valid change command");
        }
        let df = berth_dockerfile::parse("change", &format!("FROM scratch\n{text}\n"))
            .map_err(|e| anyhow!("{}", e.message))?;
        let Some(ins) = df.stages.first().and_then(|s| s.instructions.first()) else {
            continue;
        };
        apply(&mut cfg, &ins.kind)?;
    }
    Ok(cfg)
}

fn env_lookup(cfg: &Value, name: &str) -> Option<String> {
    cfg["Env"].as_array()?.iter().rev().find_map(|e| {
        let (k, v) = e.as_str()?.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn expand(cfg: &Value, word: &str) -> Result<String> {
    berth_dockerfile::expand_word(word, '\\', &|n| env_lookup(cfg, n)).map_err(|e| anyhow!("{e}"))
}

fn argv(c: &ShellOrExec) -> Vec<String> {
    match c {
        ShellOrExec::Exec(a) => a.clone(),
        ShellOrExec::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
    }
}

fn apply(cfg: &mut Value, kind: &InstructionKind) -> Result<()> {
    match kind {
        InstructionKind::Cmd(c) => cfg["Cmd"] = json!(argv(c)),
        InstructionKind::Entrypoint(c) => cfg["Entrypoint"] = json!(argv(c)),
        InstructionKind::Env(list) => {
            let mut pairs = Vec::new();
            for (k, v) in list {
                pairs.push((expand(cfg, k)?, expand(cfg, v)?));
            }
            let mut env: Vec<String> = cfg["Env"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            for (k, v) in pairs {
                let kv = format!("{k}={v}");
                match env
                    .iter_mut()
                    .find(|e| e.split('=').next() == Some(k.as_str()))
                {
                    Some(e) => *e = kv,
                    None => env.push(kv),
                }
            }
            cfg["Env"] = json!(env);
        }
        InstructionKind::Label(list) => {
            if !cfg["Labels"].is_object() {
                cfg["Labels"] = json!({});
            }
            for (k, v) in list {
                let (k, v) = (expand(cfg, k)?, expand(cfg, v)?);
                cfg["Labels"][k] = json!(v);
            }
        }
        InstructionKind::Expose(ports) => {
            if !cfg["ExposedPorts"].is_object() {
                cfg["ExposedPorts"] = json!({});
            }
            for p in ports {
                let words = berth_dockerfile::expand_words(p, '\\', &|n| env_lookup(cfg, n))
                    .map_err(|e| anyhow!("{e}"))?;
                for w in words {
                    for port in crate::build::expand_port(&w)? {
                        cfg["ExposedPorts"][port] = json!({});
                    }
                }
            }
        }
        InstructionKind::Volume(vols) => {
            if !cfg["Volumes"].is_object() {
                cfg["Volumes"] = json!({});
            }
            for v in vols {
                let w = expand(cfg, v)?;
                if w.trim().is_empty() {
                    bail!("VOLUME specified can not be an empty string");
                }
                cfg["Volumes"][w] = json!({});
            }
        }
        InstructionKind::User(u) => cfg["User"] = json!(expand(cfg, u)?),
        InstructionKind::Workdir(w) => {
            let w = expand(cfg, w)?;
            let base = cfg["WorkingDir"].as_str().unwrap_or("/").to_string();
            let path = if w.starts_with('/') {
                w
            } else {
                format!("{base}/{w}")
            };
            cfg["WorkingDir"] = json!(crate::build::context::clean_abs(&path));
        }
        InstructionKind::Onbuild(inner) => {
            let mut list: Vec<Value> = cfg["OnBuild"].as_array().cloned().unwrap_or_default();
            list.push(json!(inner.original));
            cfg["OnBuild"] = json!(list);
        }
        InstructionKind::Healthcheck(h) => {
            cfg["Healthcheck"] = crate::build::healthcheck_config(h);
        }
        other => bail!(
            "{} is not a valid change command",
            other.keyword().to_ascii_lowercase()
        ),
    }
    Ok(())
}

/// `(os, architecture, variant)` of `--platform`, docker's errors for a
/// bad one; this host's when absent.
pub fn parse_platform(p: Option<&str>) -> Result<(String, String, Option<String>)> {
    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let Some(p) = p.filter(|p| !p.is_empty()) else {
        return Ok(("linux".into(), host_arch.into(), None));
    };
    let lower = p.to_ascii_lowercase();
    let parts: Vec<&str> = lower.split('/').collect();
    const OSES: &[&str] = &[
        "linux",
        "windows",
        "darwin",
        "freebsd",
        "netbsd",
        "openbsd",
        "solaris",
        "illumos",
        "android",
        "ios",
        "aix",
        "plan9",
        "dragonfly",
        "js",
        "wasip1",
    ];
    const ARCHES: &[&str] = &[
        "amd64", "arm64", "arm", "386", "ppc64le", "ppc64", "s390x", "riscv64", "mips64le",
        "mips64", "mipsle", "mips", "loong64", "wasm",
    ];
    let unknown = || anyhow!("{p:?}: unknown operating system or architecture: invalid argument");
    let (os, arch, variant) = match parts.as_slice() {
        [one] if OSES.contains(one) => (one.to_string(), host_arch.to_string(), None),
        [one] => {
            let arch = match *one {
                "x86_64" | "x86-64" => "amd64",
                "aarch64" => "arm64",
                a if ARCHES.contains(&a) => a,
                _ => return Err(unknown()),
            };
            ("linux".to_string(), arch.to_string(), None)
        }
        [os, arch] | [os, arch, _] => {
            let arch = match *arch {
                "x86_64" | "x86-64" => "amd64",
                "aarch64" => "arm64",
                a if ARCHES.contains(&a) => a,
                _ => return Err(unknown()),
            };
            if !OSES.contains(os) {
                return Err(unknown());
            }
            let variant = parts.get(2).map(|v| v.to_string());
            (os.to_string(), arch.to_string(), variant)
        }
        _ => return Err(unknown()),
    };
    if os != "linux" {
        bail!("operating system is not supported");
    }
    Ok((os, arch, variant))
}

/// A writer that hashes and counts what passes through.
struct Hashing<W: Write> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `src`, decompressed by its magic bytes (gzip, bzip2, xz or none,
/// as docker's import takes them), to `out`.
pub fn decompress_to(src: &mut dyn Read, out: &mut dyn Write) -> Result<()> {
    let mut head = [0u8; 6];
    let mut got = 0;
    while got < head.len() {
        let n = src.read(&mut head[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let mut chained = std::io::Cursor::new(head[..got].to_vec()).chain(src);
    let h = &head[..got];
    if h.starts_with(&[0x1f, 0x8b]) {
        let mut d = flate2::read::MultiGzDecoder::new(chained);
        std::io::copy(&mut d, out).context("decompressing gzip")?;
    } else if h.starts_with(b"BZh") {
        let mut d = bzip2::read::MultiBzDecoder::new(chained);
        std::io::copy(&mut d, out).context("decompressing bzip2")?;
    } else if h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        let mut r = std::io::BufReader::new(chained);
        lzma_rs::xz_decompress(&mut r, &mut { out })
            .map_err(|e| anyhow!("decompressing xz: {e}"))?;
    } else if h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        bail!("unsupported compression format zstd");
    } else {
        std::io::copy(&mut chained, out).context("reading the tarball")?;
    }
    Ok(())
}

/// Parses a tar header's numeric field (octal, or GNU base-256).
fn tar_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = (field[0] & 0x3f) as u64;
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(v);
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ' || *b == 0)
        .take_while(|b| *b != b' ' && *b != 0)
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    let s = std::str::from_utf8(&s).ok()?;
    u64::from_str_radix(s, 8).ok()
}

/// Walks the tar headers of `f` (a whole uncompressed archive) and refuses
/// what Go's `archive/tar` refuses and what would make a reader allocate
/// without bound: a bad checksum, a long-name or PAX header over 1 MiB.
/// Returns the number of entries. An empty file is an empty archive.
pub fn check_tar(f: &mut std::fs::File) -> Result<usize> {
    let total = f.metadata()?.len();
    let mut pos = 0u64;
    let mut entries = 0usize;
    let mut block = [0u8; 512];
    loop {
        if pos + 512 > total {
            if pos == total && entries == 0 {
                return Ok(0);
            }
            if pos >= total {
                return Ok(entries);
            }
            bail!("archive/tar: unexpected EOF in a tar header");
        }
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut block)?;
        if block.iter().all(|b| *b == 0) {
            return Ok(entries);
        }
        let want = tar_number(&block[148..156])
            .ok_or_else(|| anyhow!("archive/tar: invalid tar header"))?;
        let sum: u64 = block
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    *b as u64
                }
            })
            .sum();
        if sum != want {
            bail!("archive/tar: invalid tar header");
        }
        let size = tar_number(&block[124..136])
            .ok_or_else(|| anyhow!("archive/tar: invalid tar header"))?;
        let kind = block[156];
        if matches!(kind, b'L' | b'K' | b'x' | b'g' | b'X') && size > MAX_SPECIAL_HEADER {
            bail!(
                "archive/tar: header field too long ({size} bytes in a {} header)",
                kind as char
            );
        }
        // Entries that carry no data whatever their size field says.
        let data = match kind {
            b'1' | b'2' | b'3' | b'4' | b'5' | b'6' => 0,
            _ => size,
        };
        let next = pos
            .checked_add(512)
            .and_then(|p| p.checked_add(data.div_ceil(512).checked_mul(512)?))
            .ok_or_else(|| anyhow!("archive/tar: invalid tar header"))?;
        if next > total {
            bail!(
                "unexpected EOF: entry {} runs past the end of the archive",
                entries + 1
            );
        }
        pos = next;
        entries += 1;
    }
}

/// Whether docker's `import` takes `source` as a URL rather than a file.
pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Opens `url` for reading, docker's error for a failed GET.
pub fn open_url(url: &str) -> Result<(Box<dyn Read + Send>, Option<u64>)> {
    let host = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(url)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("");
    let agent = crate::registry::client::http_agent(host)?;
    match agent.get(url).call() {
        Ok(r) => {
            let len = r.header("Content-Length").and_then(|l| l.parse().ok());
            Ok((Box::new(r.into_reader()), len))
        }
        Err(ureq::Error::Status(code, r)) => {
            let status = format!("{code} {}", r.status_text());
            let mut body = String::new();
            let _ = r.into_reader().take(4096).read_to_string(&mut body);
            let body: String = body.trim().chars().filter(|c| !c.is_control()).collect();
            bail!("failed to GET {url} with status {status}: {body}")
        }
        Err(e) => bail!("Get {url:?}: {e}"),
    }
}

/// Imports the tarball read from `src` as a new image and returns it.
/// The layer lands in the host cache, and in the engine where the
/// placement has one (which unpacks and checks it before recording).
pub fn import(iso: Isolation, src: &mut dyn Read, o: &ImportOptions) -> Result<ImageCommit> {
    let tags = match &o.reference {
        Some(r) => vec![Reference::parse(r)?.to_string()],
        None => Vec::new(),
    };
    let (os, arch, variant) = parse_platform(o.platform.as_deref())?;
    let run_config = config_from_changes(&o.changes)?;
    let cache = ImageCache::open()?;
    let tmp = cache
        .dir()
        .join("blobs/sha256")
        .join(format!("import.tmp-{}", std::process::id()));
    let result = (|| -> Result<ImageCommit> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&tmp)?;
        let mut w = Hashing {
            inner: std::io::BufWriter::new(&file),
            hash: Sha256::new(),
            len: 0,
        };
        decompress_to(src, &mut w)?;
        w.flush()?;
        let (hash, size) = (w.hash.clone(), w.len);
        drop(w);
        let mut file = file;
        check_tar(&mut file)?;
        file.sync_all()?;
        let diff_id = format!("sha256:{}", hex::encode(hash.finalize()));
        if cache.has_blob(&diff_id) {
            let _ = std::fs::remove_file(&tmp);
        } else {
            cache.adopt(&tmp, &diff_id)?;
        }
        let comment = match o.message.as_deref().filter(|m| !m.is_empty()) {
            Some(m) => m.to_string(),
            None => format!("Imported from {}", o.source),
        };
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let mut config = json!({
            "architecture": arch,
            "comment": comment,
            "config": run_config,
            "created": now,
            "history": [{"created": now, "comment": comment}],
            "os": os,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        });
        if let Some(v) = variant {
            config["variant"] = json!(v);
        }
        let bytes = serde_json::to_vec(&config)?;
        let config_digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        cache.put_blob(&config_digest, bytes.len() as u64, &mut bytes.as_slice())?;
        let commit = ImageCommit {
            config_digest,
            layers: vec![LayerRef {
                digest: diff_id,
                media_type: LAYER_TAR.into(),
                size,
            }],
            tags,
            manifest_digest: None,
            origin: None,
        };
        if iso.has_engine() {
            cache.upload(&commit.with_origin(ImageOrigin::Import), &|| iso.connect())?;
        }
        cache.record(&commit)?;
        Ok(commit)
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(c: &[&str]) -> Result<Value> {
        config_from_changes(&c.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn changes_as_docker_applies_them() {
        let c = changes(&[
            "ENV A=1 B=2",
            "ENV C=$A",
            "CMD [\"sh\"]",
            "entrypoint top -b",
            "EXPOSE 80 53/udp",
            "LABEL a=b \"c d\"=e",
            "USER nobody",
            "WORKDIR rel",
            "VOLUME /data",
            "ONBUILD RUN x",
            "HEALTHCHECK CMD true",
        ])
        .unwrap();
        assert_eq!(c["Env"], json!(["A=1", "B=2", "C=1"]));
        assert_eq!(c["Cmd"], json!(["sh"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "top -b"]));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["Labels"], json!({"a": "b", "c d": "e"}));
        assert_eq!(c["User"], "nobody");
        assert_eq!(c["WorkingDir"], "/rel");
        assert_eq!(c["Volumes"], json!({"/data": {}}));
        assert_eq!(c["OnBuild"], json!(["RUN x"]));
        assert_eq!(c["Healthcheck"]["Test"], json!(["CMD-SHELL", "true"]));
    }

    #[test]
    fn changes_docker_refuses() {
        for (c, msg) in [
            ("RUN true", "run is not a valid change command"),
            ("FROM x", "from is not a valid change command"),
            ("STOPSIGNAL 9", "stopsignal is not a valid change command"),
            ("bogus x", "bogus is not a valid change command"),
        ] {
            let e = changes(&[c]).unwrap_err().to_string();
            assert_eq!(e, msg);
        }
        assert!(changes(&["ENV"]).is_err());
    }

    #[test]
    fn platforms() {
        assert_eq!(
            parse_platform(Some("linux/arm64/v8")).unwrap(),
            ("linux".into(), "arm64".into(), Some("v8".into()))
        );
        assert_eq!(
            parse_platform(Some("windows/amd64"))
                .unwrap_err()
                .to_string(),
            "operating system is not supported"
        );
        assert_eq!(
            parse_platform(Some("bogus")).unwrap_err().to_string(),
            "\"bogus\": unknown operating system or architecture: invalid argument"
        );
    }

    fn tar_of(build: impl FnOnce(&mut tar::Builder<&mut Vec<u8>>)) -> Vec<u8> {
        let mut v = Vec::new();
        {
            let mut b = tar::Builder::new(&mut v);
            build(&mut b);
            b.finish().unwrap();
        }
        v
    }

    fn check(data: &[u8]) -> Result<usize> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        check_tar(&mut f)
    }

    #[test]
    fn tar_checks() {
        let good = tar_of(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_mode(0o644);
            b.append_data(&mut h, "etc/hello", &b"hi\n"[..]).unwrap();
        });
        assert_eq!(check(&good).unwrap(), 1);
        assert_eq!(check(&[]).unwrap(), 0);
        assert!(check(b"garbage\n").is_err());
        // Truncated in the middle of the data.
        assert!(check(&good[..600]).is_err());
        // A corrupted checksum.
        let mut bad = good.clone();
        bad[0] = b'x';
        assert!(check(&bad).is_err());
        // A GNU long-name header claiming 2 GiB.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(2 << 30);
        h.set_cksum();
        let mut huge = h.as_bytes().to_vec();
        huge.extend_from_slice(&[0u8; 1024]);
        let e = check(&huge).unwrap_err().to_string();
        assert!(e.contains("header field too long"), "{e}");
    }

    #[test]
    fn decompression_by_magic() {
        let data = tar_of(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_size(2);
            h.set_mode(0o644);
            b.append_data(&mut h, "a", &b"ok"[..]).unwrap();
        });
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&data).unwrap();
        let bz = bz.finish().unwrap();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &data[..], &mut xz).unwrap();
        for input in [&data, &gz, &bz, &xz] {
            let mut out = Vec::new();
            decompress_to(&mut &input[..], &mut out).unwrap();
            assert_eq!(out, data);
        }
        let zstd = [0x28, 0xb5, 0x2f, 0xfd, 0, 0];
        assert!(decompress_to(&mut &zstd[..], &mut Vec::new()).is_err());
        // A truncated gzip stream is an error, not a short layer.
        assert!(decompress_to(&mut &gz[..gz.len() / 2], &mut Vec::new()).is_err());
    }
}
