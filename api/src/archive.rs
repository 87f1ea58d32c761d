//! `docker cp` over the API: `GET`, `HEAD` and `PUT`
//! `/containers/{id}/archive`, over the engine's tar streams
//! (`copy_from`, `copy_to`).
//!
//! The engine's tar names its top entry after the path's base name; a
//! path ending in `/.` gets its entries under `.` instead (the directory's
//! contents, as dockerd sends them). The stat header
//! (`X-Docker-Container-Path-Stat`) is made from the first entry.

use crate::error::{ApiError, ApiResult};
use crate::routes::query;
use crate::server::AppState;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_protocol::frame::read_frame;
use berth_protocol::{ErrorKind, ResponseEnvelope};
use bytes::Bytes;
use futures_util::StreamExt;
use std::io::Write;
use std::path::{Component, PathBuf};
use tokio::io::AsyncWriteExt;

type StdStream = berth_host::platform::UnixStream;

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

/// docker's `ContainerPathStat`; `mode` is Go's `os.FileMode`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct PathStat {
    name: String,
    size: i64,
    mode: u32,
    mtime: String,
    #[serde(rename = "linkTarget")]
    link_target: String,
}

/// Go's `os.FileMode` for a tar entry: the permission bits, and the type
/// and special bits where Go keeps them.
fn go_mode(h: &tar::Header) -> u32 {
    let raw = h.mode().unwrap_or(0);
    let mut m = raw & 0o777;
    if raw & 0o4000 != 0 {
        m |= 1 << 23;
    }
    if raw & 0o2000 != 0 {
        m |= 1 << 22;
    }
    if raw & 0o1000 != 0 {
        m |= 1 << 20;
    }
    m | match h.entry_type() {
        tar::EntryType::Directory => 1 << 31,
        tar::EntryType::Symlink => 1 << 27,
        tar::EntryType::Char => (1 << 26) | (1 << 21),
        tar::EntryType::Block => 1 << 26,
        tar::EntryType::Fifo => 1 << 25,
        _ => 0,
    }
}

fn stat_of(path: &str, h: &tar::Header, link: Option<&std::path::Path>) -> PathStat {
    let name = std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| if path.ends_with('.') { "." } else { "/" }.into());
    let mtime = h
        .mtime()
        .ok()
        .and_then(|t| chrono::DateTime::from_timestamp(t as i64, 0))
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    PathStat {
        name,
        size: h.size().unwrap_or(0) as i64,
        mode: go_mode(h),
        mtime,
        link_target: link.map(|l| l.display().to_string()).unwrap_or_default(),
    }
}

fn stat_header(s: &PathStat) -> ApiResult<HeaderValue> {
    use base64::Engine as _;
    let json = serde_json::to_vec(s).map_err(ApiError::internal)?;
    HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(json))
        .map_err(ApiError::internal)
}

fn path_param(q: &crate::routes::Query) -> ApiResult<String> {
    q.get("path")
        .filter(|p| !p.is_empty())
        .cloned()
        .ok_or_else(|| ApiError::bad_request("Bad parameter: path cannot be empty"))
}

/// A missing container or path, as dockerd words it.
fn map_missing(e: ApiError, id: &str, path: &str) -> ApiError {
    if e.status == StatusCode::NOT_FOUND && !e.message.starts_with("No such container") {
        ApiError::not_found(format!("Could not find the file {path} in container {id}"))
    } else {
        e
    }
}

/// The engine's tar stream of `path`.
async fn open(st: &AppState, id: &str, path: &str) -> ApiResult<StdStream> {
    let (i, p) = (id.to_string(), path.to_string());
    st.engine_owned(move |e| Ok(e.copy_from(&i, &p)?))
        .await
        .map_err(|e| map_missing(e, id, path))
}

/// The stat of `path` from the first entry of its tar (the rest is
/// dropped: the engine stops at the closed stream).
async fn stat(st: &AppState, id: &str, path: &str) -> ApiResult<PathStat> {
    if std::path::Path::new(path)
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::CurDir))
    {
        // The root is a directory (the engine tars no entry for it); the
        // container must exist.
        let i = id.to_string();
        st.engine(move |e| Ok(e.container_inspect(&i)?)).await?;
        return Ok(PathStat {
            name: "/".into(),
            size: 4096,
            mode: (1 << 31) | 0o755,
            mtime: chrono::DateTime::<chrono::Utc>::default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            link_target: String::new(),
        });
    }
    let s = open(st, id, path).await?;
    let p = path.to_string();
    tokio::task::spawn_blocking(move || {
        let mut ar = tar::Archive::new(s);
        let mut entries = ar.entries().map_err(ApiError::internal)?;
        let e = entries
            .next()
            .ok_or_else(|| ApiError::internal("the engine sent an empty archive"))?
            .map_err(ApiError::internal)?;
        let link = e.link_name().ok().flatten().map(|l| l.into_owned());
        Ok(stat_of(&p, e.header(), link.as_deref()))
    })
    .await
    .map_err(ApiError::internal)?
}

/// `HEAD /containers/{id}/archive?path=`.
pub(crate) async fn head(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let path = path_param(&query(q))?;
    let s = stat(&st, &id, &path).await?;
    let mut r = StatusCode::OK.into_response();
    r.headers_mut().insert(STAT_HEADER, stat_header(&s)?);
    Ok(r)
}

/// Writes into a bounded channel in chunks (the response body).
/// A blocking writer that sends what it gets as body chunks; a gone reader
/// is a broken pipe.
pub(crate) struct ChannelWriter(pub(crate) tokio::sync::mpsc::Sender<Bytes>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `rel` with its first component replaced by `.` (a `/.` path's
/// contents).
fn rebased(rel: &std::path::Path) -> PathBuf {
    let mut c = rel.components();
    c.next();
    let rest = c.as_path();
    if rest.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        PathBuf::from(".").join(rest)
    }
}

fn clean(p: &std::path::Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Appends an entry named exactly `name` (tar's `set_path` drops `./`,
/// which docker's CLI needs to see on a `/.` copy): a GNU long-name
/// record first when it does not fit the header.
fn append_named<W: Write>(
    b: &mut tar::Builder<W>,
    h: &mut tar::Header,
    name: &std::path::Path,
    data: &mut dyn std::io::Read,
) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = name.as_os_str().as_bytes().to_vec();
    if h.entry_type() == tar::EntryType::Directory && !bytes.ends_with(b"/") {
        bytes.push(b'/');
    }
    if let Some(u) = h.as_ustar_mut() {
        u.prefix = [0; 155];
    }
    let field = &mut h.as_old_mut().name;
    if bytes.len() >= field.len() {
        let mut long = tar::Header::new_gnu();
        long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        long.set_entry_type(tar::EntryType::GNULongName);
        long.set_mode(0o644);
        long.set_size(bytes.len() as u64 + 1);
        long.set_cksum();
        let mut with_nul = bytes.clone();
        with_nul.push(0);
        b.append(&long, &with_nul[..])?;
        bytes.truncate(field.len() - 1);
    }
    *field = [0; 100];
    field[..bytes.len()].copy_from_slice(&bytes);
    h.set_cksum();
    b.append(h, data)
}

/// Copies the engine's tar to `out`, renaming entries under `.` when
/// `contents`; the first entry's stat goes to `first`.
fn relay_tar(
    engine: StdStream,
    out: impl Write,
    path: &str,
    contents: bool,
    first: tokio::sync::oneshot::Sender<ApiResult<PathStat>>,
) -> std::io::Result<()> {
    let mut first = Some(first);
    let fail = |first: &mut Option<tokio::sync::oneshot::Sender<_>>, m: String| {
        if let Some(f) = first.take() {
            let _ = f.send(Err(ApiError::internal(m)));
        }
    };
    let mut ar = tar::Archive::new(engine);
    let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(64 * 1024, out));
    let entries = match ar.entries() {
        Ok(e) => e,
        Err(e) => {
            fail(&mut first, e.to_string());
            return Err(e);
        }
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                fail(&mut first, e.to_string());
                return Err(e);
            }
        };
        let raw = entry.path()?.into_owned();
        let link = entry.link_name()?.map(|l| l.into_owned());
        if let Some(f) = first.take() {
            let _ = f.send(Ok(stat_of(path, entry.header(), link.as_deref())));
        }
        let Some(rel) = clean(&raw) else {
            return Err(std::io::Error::other("refusing an archive entry"));
        };
        let name = if contents { rebased(&rel) } else { rel };
        let mut h = entry.header().clone();
        if let (tar::EntryType::Link, Some(l)) = (h.entry_type(), &link) {
            match clean(l) {
                Some(l) if contents => h.set_link_name(rebased(&l))?,
                Some(_) => {}
                None => continue,
            }
        }
        append_named(&mut b, &mut h, &name, &mut entry)?;
    }
    if let Some(f) = first.take() {
        let _ = f.send(Err(ApiError::internal("the engine sent an empty archive")));
    }
    b.into_inner()?.flush()
}

/// `GET /containers/{id}/archive?path=`: a tar of the path, its stat in
/// the header.
pub(crate) async fn get(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let path = path_param(&query(q))?;
    let engine = open(&st, &id, &path).await?;
    let contents = path.ends_with("/.");
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let (stat_tx, stat_rx) = tokio::sync::oneshot::channel();
    let p = path.clone();
    tokio::task::spawn_blocking(move || {
        let _ = relay_tar(engine, ChannelWriter(tx), &p, contents, stat_tx);
    });
    let s = stat_rx
        .await
        .map_err(|_| ApiError::internal("the engine's archive ended early"))??;
    let body = tokio_stream_of(rx);
    let mut r = (
        [(header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(body),
    )
        .into_response();
    r.headers_mut().insert(STAT_HEADER, stat_header(&s)?);
    Ok(r)
}

pub(crate) fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok)))
}

/// `PUT /containers/{id}/archive?path=`: extracts the body (a tar) into
/// the directory `path`, which must exist.
pub(crate) async fn put(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> ApiResult<Response> {
    let path = path_param(&query(q))?;
    let s = stat(&st, &id, &path).await?;
    if s.mode & (1 << 31) == 0 {
        return Err(ApiError::bad_request("extraction point is not a directory"));
    }
    let (i, p) = (id.clone(), path.clone());
    let engine = st
        .engine_owned(move |e| Ok(e.copy_to(&i, &p, false)?))
        .await
        .map_err(|e| map_missing(e, &id, &path))?;
    engine.set_nonblocking(true).map_err(ApiError::internal)?;
    let mut w = tokio::net::UnixStream::from_std(engine).map_err(ApiError::internal)?;
    let mut frames = body.into_data_stream();
    let mut sent = Ok(());
    while let Some(chunk) = frames.next().await {
        match chunk {
            Ok(c) => {
                if let Err(e) = w.write_all(&c).await {
                    // The engine stopped reading (a refused entry): its
                    // answer says why.
                    sent = Err(ApiError::internal(e));
                    break;
                }
            }
            Err(e) => {
                // The client went away mid-upload: stop; what was written
                // stays (as with dockerd).
                return Err(ApiError::bad_request(format!("reading the archive: {e}")));
            }
        }
    }
    let _ = w.shutdown().await;
    let conn = w.into_std().map_err(ApiError::internal)?;
    conn.set_nonblocking(false).map_err(ApiError::internal)?;
    let reply = tokio::task::spawn_blocking(move || {
        let mut r = conn;
        read_frame::<_, ResponseEnvelope>(&mut r)
    })
    .await
    .map_err(ApiError::internal)?;
    match reply {
        Ok(env) => match env.result {
            Ok(_) => Ok(StatusCode::OK.into_response()),
            Err(e) => Err(ApiError::new(
                match e.kind {
                    ErrorKind::NotFound => StatusCode::NOT_FOUND,
                    ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
                    ErrorKind::Conflict => StatusCode::CONFLICT,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                },
                e.message,
            )),
        },
        Err(e) => Err(sent.err().unwrap_or_else(|| ApiError::internal(e))),
    }
}

/// `GET /containers/{id}/export`: the container's whole filesystem as one
/// tar (`docker export`), streamed from the engine's copy of `/`.
pub(crate) async fn export(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let mut engine = open(&st, &id, "/").await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::task::spawn_blocking(move || {
        // A client that goes away ends the copy (broken pipe).
        let _ = std::io::copy(&mut engine, &mut ChannelWriter(tx));
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(tokio_stream_of(rx)),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_file_modes_and_rebasing() {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        assert_eq!(go_mode(&h), (1 << 31) | 0o755);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o4644);
        assert_eq!(go_mode(&h), (1 << 23) | 0o644);
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        assert_eq!(go_mode(&h), (1 << 27) | 0o777);
        assert_eq!(
            rebased(std::path::Path::new("dir/a/b")),
            PathBuf::from("./a/b")
        );
        assert_eq!(rebased(std::path::Path::new("dir")), PathBuf::from("."));
        assert_eq!(clean(std::path::Path::new("../x")), None);
        assert_eq!(clean(std::path::Path::new("/x")), None);
        let s = stat_of("/etc/hostname", &h, Some(std::path::Path::new("/x")));
        assert_eq!(
            (s.name.as_str(), s.link_target.as_str()),
            ("hostname", "/x")
        );
    }
}
