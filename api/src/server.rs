//! The listener, the per-request version prefix and common headers, and
//! the shared state the handlers use.

use crate::error::{ApiError, ApiResult};
use crate::version;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use berth_host::engine::Engine;
use berth_host::placement::Isolation;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

/// Largest JSON request body read (docker's own cap for most endpoints
/// is far above anything a client sends in one).
pub const MAX_JSON_BODY: usize = 1 << 20;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{path}: {source}")]
    Socket {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is in use by a running server")]
    InUse { path: String },
    #[error("{0}")]
    Runtime(std::io::Error),
}

/// Where and for which placement to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub socket: PathBuf,
    pub isolation: Isolation,
}

/// The default socket: `$BERTH_HOME/docker.sock`.
pub fn default_socket() -> PathBuf {
    berth_host::paths::state_dir().join("docker.sock")
}

/// An attach that waits for its container to start (docker's CLI
/// attaches before it starts): the start hands it the engine's stream.
pub(crate) struct PendingAttach {
    /// Tells this waiting attach from others on the same container.
    pub token: u64,
    pub stdin: bool,
    pub tx: tokio::sync::oneshot::Sender<berth_host::platform::UnixStream>,
}

/// An exec made by `POST /containers/{id}/exec`.
#[derive(Debug, Clone)]
pub(crate) struct ExecRecord {
    pub container: String,
    pub config: berth_protocol::ExecConfig,
    pub running: bool,
    pub exit_code: Option<i32>,
}

/// Idle engine connections kept for later requests, at most.
const IDLE_ENGINES: usize = 8;

pub(crate) struct Inner {
    pub iso: Isolation,
    /// Engine connections a request finished with, for the next ones: a
    /// connection costs a connect and the protocol handshake (and, for
    /// the native agent, a check of its binary).
    idle: Mutex<Vec<Engine>>,
    pub pending: Mutex<HashMap<String, Vec<PendingAttach>>>,
    pub execs: Mutex<HashMap<String, ExecRecord>>,
    /// Resize requests for the relays this server runs, by container id.
    pub resizers: Mutex<HashMap<String, tokio::sync::mpsc::UnboundedSender<(u16, u16)>>>,
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState(pub Arc<Inner>);

impl AppState {
    pub fn new(iso: Isolation) -> AppState {
        AppState(Arc::new(Inner {
            iso,
            idle: Mutex::new(Vec::new()),
            pending: Mutex::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
            resizers: Mutex::new(HashMap::new()),
        }))
    }

    pub fn iso(&self) -> Isolation {
        self.0.iso
    }

    /// An engine connection: an idle one that is still open (one whose
    /// engine exited or restarted is dropped), else a new one.
    fn take_engine(&self) -> ApiResult<Engine> {
        loop {
            let idle = self.0.idle.lock().ok().and_then(|mut v| v.pop());
            match idle {
                Some(e) if e.idle_open() => return Ok(e),
                Some(_) => continue,
                None => return Ok(self.0.iso.connect()?),
            }
        }
    }

    /// Keeps a connection a request finished with for the next one.
    fn keep_engine(&self, e: Engine) {
        if let Ok(mut idle) = self.0.idle.lock() {
            if idle.len() < IDLE_ENGINES {
                idle.push(e);
            }
        }
    }

    /// Runs `f` on an engine connection off the async threads. The
    /// connection is kept for later requests when `f` succeeds; after an
    /// error it is closed (whatever failed, its stream may be mid-answer).
    pub async fn engine<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Engine) -> ApiResult<T> + Send + 'static,
    {
        let st = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut e = st.take_engine()?;
            let r = f(&mut e);
            if r.is_ok() {
                st.keep_engine(e);
            }
            r
        })
        .await
        .map_err(ApiError::internal)?
    }

    /// As [`AppState::engine`] for a short request whose answer is the
    /// whole reply (a listing): on the multi-threaded runtime `f` runs on
    /// this worker thread ([`tokio::task::block_in_place`]; the runtime
    /// moves the worker's other tasks away), which saves the two thread
    /// hand-offs of `spawn_blocking` per request. Those are most of the
    /// server's latency on a busy machine (issue 22's list benchmark).
    pub async fn engine_inline<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Engine) -> ApiResult<T> + Send + 'static,
    {
        if tokio::runtime::Handle::current().runtime_flavor()
            != tokio::runtime::RuntimeFlavor::MultiThread
        {
            return self.engine(f).await;
        }
        tokio::task::block_in_place(|| {
            let mut e = self.take_engine()?;
            let r = f(&mut e);
            if r.is_ok() {
                self.keep_engine(e);
            }
            r
        })
    }

    /// As [`AppState::engine`], for the verbs that turn the connection
    /// into a stream (it is not kept).
    pub async fn engine_owned<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Engine) -> ApiResult<T> + Send + 'static,
    {
        let st = self.clone();
        tokio::task::spawn_blocking(move || f(st.take_engine()?))
            .await
            .map_err(ApiError::internal)?
    }
}

/// Reads a JSON body of at most [`MAX_JSON_BODY`] bytes; None when it is
/// empty. Too large: 413; not JSON of the expected shape: 400.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(body: Body) -> ApiResult<Option<T>> {
    let bytes = read_body(body, MAX_JSON_BODY).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// Reads a body of at most `limit` bytes.
pub(crate) async fn read_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the limit of {limit} bytes"),
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "reading the request body: {e}"
        ))),
    }
}

/// Streams a body of at most `limit` bytes into a new file at `path`;
/// returns its length. `what` names the body in a read error ("reading
/// {what}: …"), `subject` in the 413 ("{subject} exceeds the limit …").
pub(crate) async fn spool_body(
    body: Body,
    path: &std::path::Path,
    limit: u64,
    what: &str,
    subject: &str,
) -> ApiResult<u64> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::File::create(path)
        .await
        .map_err(ApiError::internal)?;
    let mut frames = body.into_data_stream();
    let mut total = 0u64;
    while let Some(chunk) = frames.next().await {
        let c = chunk.map_err(|e| ApiError::bad_request(format!("reading {what}: {e}")))?;
        total += c.len() as u64;
        if total > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{subject} exceeds the limit of {limit} bytes"),
            ));
        }
        f.write_all(&c).await.map_err(ApiError::internal)?;
    }
    f.flush().await.map_err(ApiError::internal)?;
    Ok(total)
}

/// The API version of a request (an extension every request carries).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientVersion(pub version::Version);

/// The headers dockerd puts on every response.
fn add_headers(r: &mut Response<Body>) {
    let h = r.headers_mut();
    h.insert(
        "Api-Version",
        HeaderValue::from_str(&version::MAX_VERSION.to_string()).expect("ascii"),
    );
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!(
            "Docker/berth-",
            env!("CARGO_PKG_VERSION"),
            " (linux)"
        )),
    );
}

/// Strips the version prefix (refusing versions out of range), routes,
/// and adds the common headers.
async fn handle(router: axum::Router, mut req: Request<hyper::body::Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    // The path only: a query can carry registry credentials or filters
    // a user would not want in a log.
    log::debug!("{} {path}", req.method());
    let mut resp = match version::split(&path) {
        Err(e) => ApiError::bad_request(e.to_string()).into_response_body(),
        Ok((v, route)) => {
            if v.is_some() {
                let pq = match req.uri().query() {
                    Some(q) => format!("{route}?{q}"),
                    None => route.to_string(),
                };
                match pq.parse() {
                    Ok(uri) => *req.uri_mut() = uri,
                    Err(_) => {
                        let mut r =
                            ApiError::bad_request("malformed request path").into_response_body();
                        add_headers(&mut r);
                        return r;
                    }
                }
            }
            // The version the client asked for (the newest when none):
            // a few endpoints answer older clients the older way.
            req.extensions_mut()
                .insert(ClientVersion(v.unwrap_or(version::MAX_VERSION)));
            let expect_continue = req
                .headers()
                .get(axum::http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
            let slot = crate::drain::Slot::default();
            let req = req.map(|b| Body::new(crate::drain::KeptBody::new(b, slot.clone())));
            let resp = match router.oneshot(req).await {
                Ok(r) => r,
                Err(e) => match e {},
            };
            // What the handler left of the body is read while the answer
            // goes out (see drain.rs); not under a protocol switch (attach,
            // exec), where the connection is the handler's.
            let rest = slot.lock().ok().and_then(|mut s| s.take());
            if let Some(rest) = rest {
                if resp.status() != StatusCode::SWITCHING_PROTOCOLS
                    && rest.worth_draining(expect_continue)
                {
                    tokio::spawn(rest.drain());
                }
            }
            resp
        }
    };
    add_headers(&mut resp);
    resp
}

impl ApiError {
    fn into_response_body(self) -> Response<Body> {
        axum::response::IntoResponse::into_response(self)
    }
}

/// Binds `path` (mode 0600; a stale socket nobody answers on is
/// replaced, a live one is refused).
pub fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener, ServeError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| ServeError::Socket {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if std::fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServeError::InUse {
                path: path.display().to_string(),
            });
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    // Created with no access for others: bind under a umask of 0177.
    // SAFETY: umask only changes this process's file creation mask; it is
    // restored right after the bind.
    let old = unsafe { libc::umask(0o177) };
    let l = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let l = l.map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(l)
}

/// Serves the Engine API on `opts.socket` until the process is stopped
/// (SIGINT/SIGTERM remove the socket and return).
pub fn serve(opts: &ServeOptions) -> Result<(), ServeError> {
    let listener = bind(&opts.socket)?;
    log::debug!("Engine API on {}", opts.socket.display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    // The accept loop runs as a task on a worker, not on this thread:
    // each connection's task then starts on the worker that accepted it
    // (no wake-up of another thread per connection).
    let iso = opts.isolation;
    let res = rt.block_on(async move {
        tokio::spawn(serve_listener(listener, iso))
            .await
            .unwrap_or_else(|e| Err(ServeError::Runtime(std::io::Error::other(e))))
    });
    let _ = std::fs::remove_file(&opts.socket);
    res
}

async fn serve_listener(
    listener: std::os::unix::net::UnixListener,
    iso: Isolation,
) -> Result<(), ServeError> {
    listener
        .set_nonblocking(true)
        .map_err(ServeError::Runtime)?;
    let listener = tokio::net::UnixListener::from_std(listener).map_err(ServeError::Runtime)?;
    let router = crate::routes::router(AppState::new(iso));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ServeError::Runtime)?;
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    log::warn!("accepting a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        };
        let router = router.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = hyper::service::service_fn(move |req| {
                let router = router.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(router, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .with_upgrades()
                .await;
        });
    }
}
