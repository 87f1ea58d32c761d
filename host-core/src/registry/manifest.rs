//! Manifests, image indexes and descriptors as registries serve them (Docker
//! schema2 and OCI), parsed as untrusted input: sizes are capped, digests and
//! media types validated, and only the fields berth needs are kept.

use super::RegistryError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Every manifest type berth understands, for `Accept`. Without the OCI
/// types a registry may 404 on OCI manifests; without schema2 it may
/// down-convert to schema1.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Registries cap manifests at 4 MiB; so does berth.
pub const MAX_MANIFEST: u64 = 4 * 1024 * 1024;
/// Image configs are JSON documents; anything larger is hostile.
pub const MAX_CONFIG: u64 = 16 * 1024 * 1024;
const MAX_LAYERS: usize = 256;
const MAX_INDEX_ENTRIES: usize = 1024;

/// Layer media types berth can unpack.
const LAYER_TYPES: &[&str] = &[
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
];

/// Whether `d` is a well-formed `sha256:<64 lowercase hex>` digest.
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

/// Platform of an index entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, RegistryError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            return Err(RegistryError::Invalid(format!(
                "invalid platform {s:?} (expected os/arch[/variant], e.g. linux/amd64)"
            )));
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: normalise_arch(&parts[1].to_ascii_lowercase()),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }

    /// This host's platform.
    pub fn host() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: crate::archive::oci_arch().into(),
            variant: None,
        }
    }

    /// Whether an image of this platform serves a request for `other`
    /// (a variant is compared only when `other` names one).
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && normalise_arch(&self.architecture) == other.architecture
            && (other.variant.is_none() || self.variant == other.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn normalise_arch(a: &str) -> String {
    match a {
        "x86_64" | "x86-64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        other => other.into(),
    }
}

/// A manifest or an index: what one manifest GET returned.
#[derive(Debug, Clone)]
pub enum Fetched {
    Index(Vec<Descriptor>),
    Image(ImageManifest),
}

/// A single-platform image manifest.
#[derive(Debug, Clone)]
pub struct ImageManifest {
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

fn invalid(s: impl Into<String>) -> RegistryError {
    RegistryError::Invalid(s.into())
}

fn check_descriptor(d: &Descriptor, what: &str) -> Result<(), RegistryError> {
    if !valid_digest(&d.digest) {
        return Err(invalid(format!(
            "{what} has an invalid digest {:?}",
            d.digest
        )));
    }
    if d.media_type.len() > 255
        || !d
            .media_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"./+-_".contains(&b))
    {
        return Err(invalid(format!("{what} has an invalid media type")));
    }
    Ok(())
}

/// Parses a manifest body. `content_type` is the response's Content-Type;
/// the body's own `mediaType` wins when present.
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Fetched, RegistryError> {
    if body.len() as u64 > MAX_MANIFEST {
        return Err(invalid("manifest is larger than 4 MiB"));
    }
    let raw: Raw = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    let header_type = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| !c.is_empty() && c != "application/json");
    let media_type = raw.media_type.clone().or(header_type).unwrap_or_default();
    if raw.schema_version == Some(1)
        || media_type.starts_with("application/vnd.docker.distribution.manifest.v1")
    {
        return Err(RegistryError::Unsupported(
            "Docker schema1 manifests are not supported (the registry converted or stored a legacy image)".into(),
        ));
    }
    if raw.schema_version != Some(2) {
        return Err(invalid(format!(
            "unsupported manifest schemaVersion {:?}",
            raw.schema_version
        )));
    }
    if let Some(list) = raw.manifests {
        if !(media_type.is_empty() || media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST)
        {
            return Err(invalid(format!("index with media type {media_type:?}")));
        }
        if list.len() > MAX_INDEX_ENTRIES {
            return Err(invalid("index has too many entries"));
        }
        for d in &list {
            check_descriptor(d, "index entry")?;
            if d.size > MAX_MANIFEST {
                return Err(invalid(format!("index entry {} is too large", d.digest)));
            }
        }
        return Ok(Fetched::Index(list));
    }
    let config = raw
        .config
        .ok_or_else(|| invalid("manifest has no config"))?;
    let layers = raw.layers.unwrap_or_default();
    let media_type = match media_type.as_str() {
        "" => OCI_MANIFEST.to_string(),
        DOCKER_MANIFEST | OCI_MANIFEST => media_type,
        other => {
            return Err(RegistryError::Unsupported(format!(
                "manifest media type {other:?}"
            )))
        }
    };
    check_descriptor(&config, "config")?;
    if config.size > MAX_CONFIG {
        return Err(invalid(format!(
            "image config is {} bytes; the limit is {MAX_CONFIG}",
            config.size
        )));
    }
    if !config.media_type.is_empty()
        && config.media_type != DOCKER_CONFIG
        && config.media_type != OCI_CONFIG
    {
        return Err(RegistryError::Unsupported(format!(
            "config media type {:?} (not a container image)",
            config.media_type
        )));
    }
    if layers.len() > MAX_LAYERS {
        return Err(invalid(format!("manifest has {} layers", layers.len())));
    }
    for l in &layers {
        check_descriptor(l, "layer")?;
        if l.media_type.contains("zstd") {
            return Err(RegistryError::Unsupported(format!(
                "zstd-compressed layer {}",
                l.digest
            )));
        }
        if !LAYER_TYPES.contains(&l.media_type.as_str()) {
            return Err(RegistryError::Unsupported(format!(
                "layer {} has media type {:?}",
                l.digest, l.media_type
            )));
        }
        if l.urls.is_some() {
            return Err(RegistryError::Unsupported(format!(
                "foreign layer {} (fetched from external URLs)",
                l.digest
            )));
        }
    }
    Ok(Fetched::Image(ImageManifest {
        media_type,
        config,
        layers,
    }))
}

/// Picks the entry of an index for `want`.
pub fn select(list: &[Descriptor], want: &Platform) -> Result<Descriptor, RegistryError> {
    let candidates: Vec<&Descriptor> = list
        .iter()
        .filter(|d| {
            d.media_type.is_empty()
                || d.media_type == OCI_MANIFEST
                || d.media_type == DOCKER_MANIFEST
        })
        .collect();
    candidates
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| p.matches(want)))
        .copied()
        .cloned()
        .ok_or_else(|| {
            let have: Vec<String> = candidates
                .iter()
                .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                .collect();
            RegistryError::NoPlatform {
                want: want.to_string(),
                have: have.join(", "),
            }
        })
}

/// A manifest for an image whose original manifest is not cached (loaded
/// from a docker-save archive): schema2 for Docker layer types, else OCI.
pub fn synthesize<'a>(config: &'a Descriptor, layers: &'a [Descriptor]) -> (String, Vec<u8>) {
    let docker = layers
        .iter()
        .all(|l| l.media_type.starts_with("application/vnd.docker."));
    let (mt, cfg_mt) = if docker {
        (DOCKER_MANIFEST, DOCKER_CONFIG)
    } else {
        (OCI_MANIFEST, OCI_CONFIG)
    };
    // docker's own serialisation (field order, three-space indent, no
    // final newline), so that an image berth pushes gets the digest docker
    // gives the same image.
    #[derive(serde::Serialize)]
    struct Desc<'a> {
        #[serde(rename = "mediaType")]
        media_type: &'a str,
        size: u64,
        digest: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        urls: Option<&'a Vec<String>>,
    }
    #[derive(serde::Serialize)]
    struct Manifest<'a> {
        #[serde(rename = "schemaVersion")]
        schema_version: u32,
        #[serde(rename = "mediaType")]
        media_type: &'a str,
        config: Desc<'a>,
        layers: Vec<Desc<'a>>,
    }
    let desc = |d: &'a Descriptor, media_type: &'a str| Desc {
        media_type,
        size: d.size,
        digest: &d.digest,
        urls: d.urls.as_ref(),
    };
    let m = Manifest {
        schema_version: 2,
        media_type: mt,
        config: desc(config, cfg_mt),
        layers: layers.iter().map(|l| desc(l, &l.media_type)).collect(),
    };
    let mut body = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut ser = serde_json::Serializer::with_formatter(&mut body, fmt);
    serde::Serialize::serialize(&m, &mut ser).expect("a manifest serialises");
    (mt.to_string(), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthesized_manifests_are_serialised_as_docker_does() {
        let desc = |mt: &str, c: char, size: u64| Descriptor {
            media_type: mt.into(),
            digest: format!("sha256:{}", c.to_string().repeat(64)),
            size,
            platform: None,
            urls: None,
        };
        let config = desc("", 'c', 1469);
        let layers = [desc(
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            'a',
            2811,
        )];
        let (mt, body) = synthesize(&config, &layers);
        assert_eq!(mt, DOCKER_MANIFEST);
        let want = format!(
            "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"{DOCKER_MANIFEST}\",\n   \"config\": {{\n      \"mediaType\": \"{DOCKER_CONFIG}\",\n      \"size\": 1469,\n      \"digest\": \"sha256:{c}\"\n   }},\n   \"layers\": [\n      {{\n         \"mediaType\": \"application/vnd.docker.image.rootfs.diff.tar.gzip\",\n         \"size\": 2811,\n         \"digest\": \"sha256:{a}\"\n      }}\n   ]\n}}",
            c = "c".repeat(64),
            a = "a".repeat(64)
        );
        assert_eq!(String::from_utf8(body).unwrap(), want);
    }

    const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn parses_schema2_and_oci() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{}","size":10}},"layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","digest":"{}","size":5}}]}}"#,
            d('a'),
            d('b')
        );
        let Fetched::Image(m) = parse(body.as_bytes(), None).unwrap() else {
            panic!()
        };
        assert_eq!(m.media_type, DOCKER_MANIFEST);
        assert_eq!(m.layers.len(), 1);
        let oci = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":10}},"layers":[]}}"#,
            d('a')
        );
        let Fetched::Image(m) = parse(oci.as_bytes(), Some(OCI_MANIFEST)).unwrap() else {
            panic!()
        };
        assert_eq!(m.media_type, OCI_MANIFEST);
    }

    #[test]
    fn refuses_hostile_manifests() {
        let cases = [
            "not json".to_string(),
            r#"{"schemaVersion":1,"fsLayers":[]}"#.to_string(),
            r#"{"schemaVersion":2,"config":{"digest":"sha256:../../etc","size":1}}"#.to_string(),
            format!(
                r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":99999999999}}}}"#,
                d('a')
            ),
            format!(
                r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":1}},"layers":[{{"mediaType":"text/html","digest":"{}","size":1}}]}}"#,
                d('a'),
                d('b')
            ),
            format!(
                r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":1}},"layers":[{{"mediaType":"{OCI_LAYER_GZIP}","digest":"{}","size":1,"urls":["http://x"]}}]}}"#,
                d('a'),
                d('b')
            ),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}","size":1e12}}]}}"#,
                d('a')
            ),
        ];
        for c in cases {
            assert!(parse(c.as_bytes(), None).is_err(), "{c} accepted");
        }
        assert!(parse(&vec![b' '; 5 * 1024 * 1024], None).is_err());
    }

    /// Mutated valid manifests and random bytes never panic the parser.
    #[test]
    fn survives_mutations() {
        let seed = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":5,"platform":{{"os":"linux","architecture":"amd64"}}}}],"config":{{"digest":"{}","size":1}},"layers":[{{"mediaType":"{OCI_LAYER_GZIP}","digest":"{}","size":5}}]}}"#,
            d('a'),
            d('b'),
            d('c')
        );
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..5000 {
            let mut b = seed.clone().into_bytes();
            for _ in 0..(next() % 8 + 1) {
                let i = (next() as usize) % b.len();
                match next() % 3 {
                    0 => b[i] = next() as u8,
                    1 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, b"{}[]\",:0-9e"[(next() % 11) as usize]),
                }
            }
            let _ = parse(&b, Some(OCI_MANIFEST));
            let _ = super::super::auth::parse_challenges(&String::from_utf8_lossy(&b));
        }
    }

    #[test]
    fn selects_platform() {
        let entry = |arch: &str, c| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: d(c),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: None,
            }),
            urls: None,
        };
        let list = vec![entry("arm64", 'a'), entry("amd64", 'b')];
        let amd = Platform::parse("linux/amd64").unwrap();
        assert_eq!(select(&list, &amd).unwrap().digest, d('b'));
        let arm = Platform::parse("linux/aarch64").unwrap();
        assert_eq!(select(&list, &arm).unwrap().digest, d('a'));
        let err = select(&list, &Platform::parse("linux/s390x").unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("linux/arm64, linux/amd64"),
            "{err}"
        );
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/../x").is_err());
    }
}
