//! Endpoints that stream: start (which hands a waiting attach its
//! stream), wait, attach and exec start (hijacked), logs and events.

use crate::error::{ApiError, ApiResult};
use crate::routes::{qbool, qint, query};
use crate::server::{read_json, AppState, ExecRecord, PendingAttach};
use crate::stdcopy;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_protocol::mux::{self, Kind};
use berth_protocol::{ContainerStatus, EventsOptions, ExecConfig, LogsOptions};
use bollard_stubs::models;
use bytes::Bytes;
use std::collections::BTreeMap;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

type StdStream = berth_host::platform::UnixStream;

fn to_tokio(s: StdStream) -> std::io::Result<tokio::net::UnixStream> {
    s.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(s)
}

/// Reads one engine mux frame; None at a clean end.
async fn read_mux<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<(Kind, Vec<u8>)>> {
    let mut h = [0u8; 8];
    match r.read_exact(&mut h).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let (kind, len) = mux::parse_header(h).map_err(std::io::Error::other)?;
    let mut p = vec![0u8; len];
    r.read_exact(&mut p).await?;
    Ok(Some((kind, p)))
}

fn mux_frame(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + payload.len());
    let _ = mux::write_frame(&mut v, kind, payload);
    v
}

fn running(s: ContainerStatus) -> bool {
    matches!(
        s,
        ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting
    )
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

// ---- start ----

pub(crate) async fn start(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let d = st.engine(move |e| Ok(e.container_inspect(&id)?)).await?;
    if running(d.summary.status) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let full = d.summary.id.clone();
    let mut waiting: Vec<PendingAttach> =
        st.0.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&full)
            .unwrap_or_default();
    waiting.retain(|p| !p.tx.is_closed());
    if waiting.is_empty() {
        st.engine(move |e| Ok(e.container_start(&full)?)).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    // The first waiting attach starts the container with its stream
    // attached, so no output is lost; others attach to it running.
    for (i, p) in waiting.into_iter().enumerate() {
        let (id, stdin) = (full.clone(), p.stdin);
        let s = st
            .engine_owned(move |e| Ok(e.attach(&id, stdin, i == 0, None)?))
            .await;
        match s {
            Ok(s) => {
                let _ = p.tx.send(s);
            }
            Err(e) if i == 0 => return Err(e),
            Err(_) => {}
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- wait ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Condition {
    NotRunning,
    NextExit,
    Removed,
}

pub(crate) async fn wait(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let q = query(q);
    let cond = match q.get("condition").map(String::as_str) {
        None | Some("") | Some("not-running") => Condition::NotRunning,
        Some("next-exit") => Condition::NextExit,
        Some("removed") => Condition::Removed,
        Some(c) => return Err(ApiError::bad_request(format!("invalid condition: \"{c}\""))),
    };
    // Subscribe first, then look: nothing that happens in between is
    // missed. The headers go out once the subscription stands (the
    // docker CLI starts the container only after that).
    let since = now_nanos();
    let d = {
        let id = id.clone();
        st.engine(move |e| Ok(e.container_inspect(&id)?)).await?
    };
    let full = d.summary.id.clone();
    let already = !running(d.summary.status);
    let initial = d.summary.exit_code.unwrap_or(0);
    let body_now = |code: i32| {
        Json(models::ContainerWaitResponse {
            status_code: code as i64,
            error: None,
        })
        .into_response()
    };
    if cond == Condition::NotRunning && already {
        return Ok(body_now(initial));
    }
    let mut filters = BTreeMap::new();
    filters.insert("container".to_string(), vec![full.clone()]);
    filters.insert("type".to_string(), vec!["container".to_string()]);
    let events = st
        .engine_owned(move |e| {
            Ok(e.events(EventsOptions {
                since: Some(since),
                until: None,
                filters,
            })?)
        })
        .await?;
    let events = to_tokio(events).map_err(ApiError::internal)?;
    let st = st.clone();
    let result = async move {
        let mut lines = tokio::io::BufReader::new(events).lines();
        let mut code = if already { initial } else { 0 };
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(ev) = serde_json::from_str::<berth_protocol::Event>(&line) else {
                continue;
            };
            if ev.actor.id != full {
                continue;
            }
            match ev.action.as_str() {
                "die" => {
                    code = ev
                        .actor
                        .attributes
                        .get("exitCode")
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                    if cond != Condition::Removed {
                        break;
                    }
                }
                "destroy" => break,
                _ => {}
            }
        }
        // The engine sends `die` as the process goes, a moment before its
        // record says so: answer once a `rm` that follows would find the
        // container stopped (as dockerd), or it is gone.
        if cond != Condition::Removed {
            for _ in 0..500 {
                let id = full.clone();
                match st.engine(move |e| Ok(e.container_inspect(&id)?)).await {
                    Ok(d) if d.summary.status == ContainerStatus::Running => {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await
                    }
                    _ => break,
                }
            }
        }
        let body = models::ContainerWaitResponse {
            status_code: code as i64,
            error: None,
        };
        let mut v = serde_json::to_vec(&body).unwrap_or_default();
        v.push(b'\n');
        Ok::<_, std::io::Error>(Bytes::from(v))
    };
    let stream = futures_util::stream::once(result);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

// ---- attach and exec start (hijacked) ----

/// What a hijacked stream relays.
#[derive(Clone, Copy)]
struct Relay {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

/// Relays between the client's hijacked connection and the engine's mux
/// stream until the process exits or either side goes away; `on_exit`
/// hears the exit code before the client's side is closed.
async fn relay<C>(
    client: C,
    engine: StdStream,
    r: Relay,
    mut resize: mpsc::UnboundedReceiver<(u16, u16)>,
    on_exit: impl FnOnce(i32) + Send,
) where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let Ok(engine) = to_tokio(engine) else {
        return;
    };
    let (mut er, mut ew) = engine.into_split();
    let (mut cr, mut cw) = tokio::io::split(client);
    let output = async {
        loop {
            let frame = match read_mux(&mut er).await {
                Ok(Some(f)) => f,
                _ => break,
            };
            let out = match frame {
                (Kind::Stdout, d) if r.stdout => Some((stdcopy::STDOUT, d)),
                (Kind::Stderr, d) if r.stderr => Some((stdcopy::STDERR, d)),
                (Kind::Exit, p) => {
                    on_exit(mux::parse_exit(&p).unwrap_or(255));
                    break;
                }
                (Kind::Error, p) => Some((stdcopy::STDERR, p)),
                _ => None,
            };
            if let Some((stream, d)) = out {
                let bytes = if r.tty { d } else { stdcopy::frame(stream, &d) };
                if cw.write_all(&bytes).await.is_err() || cw.flush().await.is_err() {
                    return;
                }
            }
        }
        let _ = cw.shutdown().await;
    };
    let input = async {
        let mut buf = vec![0u8; 32 * 1024];
        let mut stdin_open = r.stdin;
        loop {
            tokio::select! {
                n = cr.read(&mut buf), if stdin_open => match n {
                    Ok(0) => {
                        stdin_open = false;
                        if ew.write_all(&mux_frame(Kind::StdinEof, &[])).await.is_err() {
                            return;
                        }
                    }
                    Ok(n) => {
                        if ew.write_all(&mux_frame(Kind::Stdin, &buf[..n])).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                Some((h, w)) = resize.recv() => {
                    let _ = ew.write_all(&mux_frame(Kind::Resize, &mux::resize_payload(h, w))).await;
                }
                else => std::future::pending::<()>().await,
            }
        }
    };
    tokio::select! {
        _ = output => {}
        _ = input => {}
    }
}

/// The 101 answer of a hijack.
fn upgraded_response(tty: bool) -> Response {
    let mut r = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if tty {
            "application/vnd.docker.raw-stream"
        } else {
            "application/vnd.docker.multiplexed-stream"
        }),
    );
    r
}

fn needs_upgrade(req: &Request) -> ApiResult<()> {
    let up = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if up.eq_ignore_ascii_case("tcp") {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "this endpoint hijacks the connection: send Connection: Upgrade and Upgrade: tcp",
        ))
    }
}

/// Registers a resize channel for the container's relay.
fn resize_channel(st: &AppState, key: &str) -> mpsc::UnboundedReceiver<(u16, u16)> {
    let (tx, rx) = mpsc::unbounded_channel();
    st.0.resizers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.to_string(), tx);
    rx
}

/// `POST /exec/{id}/resize`: sent to the exec's relay while it runs.
pub(crate) async fn exec_resize(
    State(st): State<AppState>,
    Path(exec_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let q = query(q);
    let (Some(h), Some(w)) = (qint(&q, "h")?, qint(&q, "w")?) else {
        return Err(ApiError::bad_request("h and w are required"));
    };
    if !st
        .0
        .execs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&exec_id)
    {
        return Err(ApiError::not_found(format!(
            "No such exec instance: {exec_id}"
        )));
    }
    let size = (
        h.clamp(0, u16::MAX as i64) as u16,
        w.clamp(0, u16::MAX as i64) as u16,
    );
    if let Some(tx) =
        st.0.resizers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&format!("exec:{exec_id}"))
    {
        let _ = tx.send(size);
    }
    Ok(StatusCode::OK.into_response())
}

pub(crate) async fn resize(st: &AppState, id: &str, h: i64, w: i64) -> ApiResult<()> {
    let (h, w) = (
        h.clamp(0, u16::MAX as i64) as u16,
        w.clamp(0, u16::MAX as i64) as u16,
    );
    let key = {
        let id = id.to_string();
        st.engine(move |e| Ok(e.container_inspect(&id)?))
            .await?
            .summary
            .id
    };
    let map = st.0.resizers.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = map.get(&key) {
        let _ = tx.send((h, w));
    }
    Ok(())
}

pub(crate) async fn attach(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    mut req: Request,
) -> ApiResult<Response> {
    let q = query(q);
    needs_upgrade(&req)?;
    let d = st.engine(move |e| Ok(e.container_inspect(&id)?)).await?;
    let full = d.summary.id.clone();
    let r = Relay {
        stdin: qbool(&q, "stdin"),
        stdout: qbool(&q, "stdout"),
        stderr: qbool(&q, "stderr"),
        tty: d.config.tty,
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut waiting = None;
    let started_at = d.summary.started_at.clone();
    let source = if running(d.summary.status) {
        let id = full.clone();
        let s = st
            .engine_owned(move |e| Ok(e.attach(&id, r.stdin, false, None)?))
            .await?;
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(s);
        rx
    } else {
        // docker's CLI attaches before it starts: the start hands over
        // the stream.
        let (tx, rx) = oneshot::channel();
        let token = NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        st.0.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(full.clone())
            .or_default()
            .push(PendingAttach {
                token,
                stdin: r.stdin,
                tx,
            });
        waiting = Some(token);
        rx
    };
    let resize = resize_channel(&st, &full);
    let st2 = st.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let engine = match waiting {
            None => source.await.ok(),
            Some(token) => started_elsewhere(&st2, &full, token, r.stdin, source, started_at).await,
        };
        if let Some(engine) = engine {
            let io = hyper_util::rt::TokioIo::new(upgraded);
            relay(io, engine, r, resize, |_| {}).await;
        }
        st2.0
            .resizers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&full);
    });
    Ok(upgraded_response(r.tty))
}

static NEXT_TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A waiting attach's stream: the one a `start` through this server
/// hands over, or, when something else started the container (the
/// berth CLI, a restart policy), one attached to it running.
async fn started_elsewhere(
    st: &AppState,
    id: &str,
    token: u64,
    stdin: bool,
    mut source: oneshot::Receiver<StdStream>,
    started_at: Option<String>,
) -> Option<StdStream> {
    loop {
        tokio::select! {
            s = &mut source => return s.ok(),
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
        }
        let key = id.to_string();
        let Ok(d) = st.engine(move |e| Ok(e.container_inspect(&key)?)).await else {
            // Removed while waiting.
            return None;
        };
        let ran = d.summary.started_at != started_at;
        if !running(d.summary.status) && !ran {
            continue;
        }
        let mine = {
            let mut map = st.0.pending.lock().unwrap_or_else(|e| e.into_inner());
            let list = map.entry(id.to_string()).or_default();
            let before = list.len();
            list.retain(|p| p.token != token);
            let mine = list.len() != before;
            if list.is_empty() {
                map.remove(id);
            }
            mine
        };
        if !mine {
            // A start here took it: its stream is on the way.
            return source.await.ok();
        }
        if !running(d.summary.status) {
            // It ran and stopped between two looks: the attach ends, as
            // docker's does when its container stops.
            return None;
        }
        let key = id.to_string();
        return st
            .engine_owned(move |e| Ok(e.attach(&key, stdin, false, None)?))
            .await
            .ok();
    }
}

fn new_exec_id() -> String {
    use std::io::Read;
    let mut b = [0u8; 32];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = now_nanos().to_be_bytes();
        b[..8].copy_from_slice(&t);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) async fn exec_create(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let b: models::ExecConfig = read_json(body)
        .await?
        .ok_or_else(|| ApiError::bad_request("exec config cannot be empty"))?;
    let cmd = b.cmd.unwrap_or_default();
    if cmd.is_empty() {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    let d = st.engine(move |e| Ok(e.container_inspect(&id)?)).await?;
    if d.summary.status != ContainerStatus::Running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Container {} is not running", d.summary.id),
        ));
    }
    let exec_id = new_exec_id();
    let rec = ExecRecord {
        container: d.summary.id,
        config: ExecConfig {
            cmd,
            env: b.env.unwrap_or_default(),
            workdir: b.working_dir.filter(|w| !w.is_empty()),
            user: b.user.filter(|u| !u.is_empty()),
            tty: b.tty.unwrap_or(false),
            stdin: b.attach_stdin.unwrap_or(false),
        },
        running: false,
        exit_code: None,
    };
    st.0.execs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(exec_id.clone(), rec);
    // bollard's IdResponse spells the key `ID`; dockerd (and the Python
    // SDK, which matches keys exactly) use `Id`.
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "Id": exec_id })),
    )
        .into_response())
}

#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct ExecStartBody {
    detach: bool,
}

pub(crate) async fn exec_start(
    State(st): State<AppState>,
    Path(exec_id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let (mut parts, body) = req.into_parts();
    let b: ExecStartBody = read_json(body).await?.unwrap_or_default();
    let rec =
        st.0.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&exec_id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {exec_id}")))?;
    if rec.running || rec.exit_code.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Exec {exec_id} has already run"),
        ));
    }
    let set = {
        let st = st.clone();
        let exec_id = exec_id.clone();
        move |running: bool, code: Option<i32>| {
            if let Some(r) =
                st.0.execs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(&exec_id)
            {
                r.running = running;
                r.exit_code = code;
            }
        }
    };
    let (container, cfg) = (rec.container.clone(), rec.config.clone());
    if b.detach {
        st.engine(move |e| Ok(e.exec_detached(&container, cfg, None)?))
            .await?;
        set(true, None);
        return Ok(StatusCode::OK.into_response());
    }
    let upgrade = parts
        .headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"tcp"));
    if !upgrade {
        return Err(ApiError::bad_request(
            "exec start without Detach hijacks the connection: send Connection: Upgrade and Upgrade: tcp",
        ));
    }
    let r = Relay {
        stdin: cfg.stdin,
        stdout: true,
        stderr: true,
        tty: cfg.tty,
    };
    let on_upgrade = parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| ApiError::bad_request("this connection cannot be hijacked"))?;
    // A process that cannot start (no such command, not executable) is
    // dockerd's answer after the hijack: its error as output, then exit
    // code 126 (docker exec's code for every start failure).
    let started = st
        .engine_owned(move |e| Ok(e.exec(&container, cfg, None)))
        .await?;
    let stream = match started {
        Ok(s) => s,
        Err(e) if exec_start_failure(&e) => {
            set(false, Some(126));
            let text = format!("{e}\r\n").into_bytes();
            tokio::spawn(async move {
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                let mut io = hyper_util::rt::TokioIo::new(upgraded);
                let bytes = if r.tty {
                    text
                } else {
                    stdcopy::frame(stdcopy::STDOUT, &text)
                };
                let _ = io.write_all(&bytes).await;
                let _ = io.shutdown().await;
            });
            return Ok(upgraded_response(r.tty));
        }
        Err(e) => return Err(e.into()),
    };
    set(true, None);
    let key = format!("exec:{exec_id}");
    let resize = resize_channel(&st, &key);
    let st2 = st.clone();
    tokio::spawn(async move {
        let done = set.clone();
        let Ok(upgraded) = on_upgrade.await else {
            done(false, Some(255));
            return;
        };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let mut code = None;
        relay(io, stream, r, resize, |c| {
            set(false, Some(c));
            code = Some(c);
        })
        .await;
        if code.is_none() {
            done(false, Some(255));
        }
        st2.0
            .resizers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    });
    Ok(upgraded_response(r.tty))
}

/// Whether an exec's error is its process failing to start (dockerd
/// reports those in the hijacked stream, not as an HTTP error).
fn exec_start_failure(e: &berth_host::client::ClientError) -> bool {
    matches!(
        e.kind(),
        Some(berth_protocol::ErrorKind::CommandNotFound)
            | Some(berth_protocol::ErrorKind::CommandNotExecutable)
    )
}

pub(crate) async fn exec_inspect(
    State(st): State<AppState>,
    Path(exec_id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let rec =
        st.0.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&exec_id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {exec_id}")))?;
    let (entry, args) = rec
        .config
        .cmd
        .split_first()
        .map(|(a, b)| (a.clone(), b.to_vec()))
        .unwrap_or_default();
    Ok(Json(serde_json::json!({
        "ID": exec_id, "Running": rec.running, "ExitCode": rec.exit_code,
        "ProcessConfig": {"tty": rec.config.tty, "entrypoint": entry, "arguments": args,
                          "privileged": false, "user": rec.config.user.clone().unwrap_or_default()},
        "OpenStdin": rec.config.stdin, "OpenStderr": true, "OpenStdout": true,
        "CanRemove": false, "ContainerID": rec.container, "DetachKeys": "", "Pid": 0
    })))
}

// ---- logs and events ----

/// docker's time parameters: unix seconds with an optional fraction; 0
/// or empty is none.
pub(crate) fn unix_nanos(v: Option<&String>) -> ApiResult<Option<i64>> {
    let Some(v) = v.map(|v| v.trim()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let bad = || ApiError::bad_request(format!("invalid timestamp: {v:?}"));
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let nanos: i64 = format!("{frac:0<9}").parse().map_err(|_| bad())?;
    let total = secs
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(nanos))
        .ok_or_else(bad)?;
    Ok((total != 0).then_some(total))
}

/// Streams chunks read from `s` as a body.
fn body_of(s: tokio::net::UnixStream) -> Body {
    let stream = futures_util::stream::unfold(s, |mut s| async move {
        let mut buf = vec![0u8; 16 * 1024];
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), s))
            }
        }
    });
    Body::from_stream(stream)
}

pub(crate) async fn logs(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let q = query(q);
    let (stdout, stderr) = (qbool(&q, "stdout"), qbool(&q, "stderr"));
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let tail = match q.get("tail").map(String::as_str) {
        None | Some("") | Some("all") => None,
        Some(_) => qint(&q, "tail")?.filter(|t| *t >= 0).map(|t| t as u64),
    };
    let (since, until) = (unix_nanos(q.get("since"))?, unix_nanos(q.get("until"))?);
    let (follow, timestamps) = (qbool(&q, "follow"), qbool(&q, "timestamps"));
    let (tty, stream) = st
        .engine_owned(move |mut e| {
            let d = e.container_inspect(&id)?;
            let s = e.logs(LogsOptions {
                id: d.summary.id.clone(),
                follow,
                tail,
                since,
                until,
                timestamps,
            })?;
            Ok((d.config.tty, s))
        })
        .await?;
    let s = to_tokio(stream).map_err(ApiError::internal)?;
    let frames = futures_util::stream::unfold(s, move |mut s| async move {
        loop {
            match read_mux(&mut s).await {
                Ok(Some((Kind::Stdout, d))) if stdout => {
                    let b = if tty {
                        d
                    } else {
                        stdcopy::frame(stdcopy::STDOUT, &d)
                    };
                    return Some((Ok::<_, std::io::Error>(Bytes::from(b)), s));
                }
                Ok(Some((Kind::Stderr, d))) if stderr => {
                    let b = if tty {
                        d
                    } else {
                        stdcopy::frame(stdcopy::STDERR, &d)
                    };
                    return Some((Ok(Bytes::from(b)), s));
                }
                Ok(Some((Kind::Exit, _))) | Ok(None) | Err(_) => return None,
                Ok(Some(_)) => {}
            }
        }
    });
    let ct = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Ok(([(header::CONTENT_TYPE, ct)], Body::from_stream(frames)).into_response())
}

pub(crate) async fn events(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let q = query(q);
    let filters = crate::filters::parse(q.get("filters").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let (since, until) = (unix_nanos(q.get("since"))?, unix_nanos(q.get("until"))?);
    let s = st
        .engine_owned(move |e| {
            Ok(e.events(EventsOptions {
                since,
                until,
                filters,
            })?)
        })
        .await?;
    let s = to_tokio(s).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body_of(s)).into_response())
}

// ---- stats ----

/// docker's stats object for a sample and the one before it.
fn stats_json(
    s: &berth_protocol::StatsSample,
    pre: Option<&berth_protocol::StatsSample>,
    read: &str,
    preread: &str,
) -> serde_json::Value {
    let cpu = |x: Option<&berth_protocol::StatsSample>| {
        let x = x.cloned().unwrap_or_default();
        serde_json::json!({
            "cpu_usage": {"total_usage": x.cpu_usage_ns, "usage_in_kernelmode": 0,
                          "usage_in_usermode": x.cpu_usage_ns},
            "system_cpu_usage": x.system_ns, "online_cpus": x.online_cpus,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
        })
    };
    // dockerd has every blkio list on cgroup v1 (empty ones as []), only
    // the bytes on v2 (null when empty), and no `networks` key for a
    // container without interfaces of its own.
    let rows: Vec<serde_json::Value> = s
        .blkio_service_bytes
        .iter()
        .map(|b| serde_json::json!({"major": b.major, "minor": b.minor, "op": b.op, "value": b.value}))
        .collect();
    let other = s.cgroup_v1.then(Vec::<serde_json::Value>::new);
    let blkio = (s.cgroup_v1 || !rows.is_empty()).then_some(rows);
    let mut v = serde_json::json!({
        "read": read, "preread": preread,
        "name": format!("/{}", s.name), "id": s.id,
        "pids_stats": {"current": s.pids},
        "blkio_stats": {"io_service_bytes_recursive": blkio, "io_serviced_recursive": other,
                        "io_queue_recursive": other, "io_service_time_recursive": other,
                        "io_wait_time_recursive": other, "io_merged_recursive": other,
                        "io_time_recursive": other, "sectors_recursive": other},
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": cpu(Some(s)), "precpu_stats": cpu(pre),
        "memory_stats": {"usage": s.memory_usage, "limit": s.memory_limit, "stats": {}},
    });
    if !s.networks.is_empty() {
        let nets: serde_json::Map<String, serde_json::Value> = s
            .networks
            .iter()
            .map(|i| {
                let counters = serde_json::json!({
                    "rx_bytes": i.rx_bytes, "rx_packets": i.rx_packets,
                    "rx_errors": i.rx_errors, "rx_dropped": i.rx_dropped,
                    "tx_bytes": i.tx_bytes, "tx_packets": i.tx_packets,
                    "tx_errors": i.tx_errors, "tx_dropped": i.tx_dropped,
                });
                (i.name.clone(), counters)
            })
            .collect();
        v["networks"] = serde_json::Value::Object(nets);
    }
    v
}

fn rfc3339_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `GET /containers/{id}/stats`: one sample a second while `stream`
/// (the default); with `stream=false` one object whose `precpu_stats`
/// is a sample a second earlier (none with `one-shot`). A container
/// that is not running gives one zeroed object, as dockerd.
pub(crate) async fn stats(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let q = query(q);
    let stream = !q.contains_key("stream") || qbool(&q, "stream");
    let one_shot = qbool(&q, "one-shot");
    let d = st.engine(move |e| Ok(e.container_inspect(&id)?)).await?;
    let full = d.summary.id.clone();
    let sample = {
        let st = st.clone();
        move || {
            let st = st.clone();
            let id = full.clone();
            async move { st.engine(move |e| Ok(e.container_stats(&id)?)).await }
        }
    };
    if d.summary.status != ContainerStatus::Running {
        let zero = berth_protocol::StatsSample {
            id: d.summary.id.clone(),
            name: d.summary.name.clone(),
            ..Default::default()
        };
        let mut v = serde_json::to_vec(&stats_json(&zero, None, ZERO_TIME, ZERO_TIME))
            .map_err(ApiError::internal)?;
        v.push(b'\n');
        return Ok(([(header::CONTENT_TYPE, "application/json")], v).into_response());
    }
    let first = sample().await?;
    let first_at = rfc3339_now();
    if !stream {
        let v = if one_shot {
            stats_json(&first, None, &first_at, ZERO_TIME)
        } else {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let second = sample().await?;
            stats_json(&second, Some(&first), &rfc3339_now(), &first_at)
        };
        let mut v = serde_json::to_vec(&v).map_err(ApiError::internal)?;
        v.push(b'\n');
        return Ok(([(header::CONTENT_TYPE, "application/json")], v).into_response());
    }
    // Streamed: the first object has no previous sample; each next one
    // a second later, until the client goes or the container stops.
    let state = (
        Some(first),
        first_at,
        None::<(berth_protocol::StatsSample, String)>,
    );
    let body = futures_util::stream::unfold(state, move |(next, at, prev)| {
        let sample = sample.clone();
        async move {
            let (cur, cur_at) = match next {
                Some(s) => (s, at),
                None => {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    let s = sample().await.ok()?;
                    (s, rfc3339_now())
                }
            };
            let v = match &prev {
                Some((p, pat)) => stats_json(&cur, Some(p), &cur_at, pat),
                None => stats_json(&cur, None, &cur_at, ZERO_TIME),
            };
            let mut b = serde_json::to_vec(&v).ok()?;
            b.push(b'\n');
            Some((
                Ok::<_, std::io::Error>(Bytes::from(b)),
                (None, String::new(), Some((cur, cur_at))),
            ))
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times_as_docker_sends_them() {
        assert_eq!(unix_nanos(None).unwrap(), None);
        assert_eq!(unix_nanos(Some(&"0".into())).unwrap(), None);
        assert_eq!(
            unix_nanos(Some(&"12.5".into())).unwrap(),
            Some(12_500_000_000)
        );
        assert_eq!(
            unix_nanos(Some(&"1700000000.000000001".into())).unwrap(),
            Some(1_700_000_000_000_000_001)
        );
        assert!(unix_nanos(Some(&"x".into())).is_err());
        assert!(unix_nanos(Some(&"1.1234567890".into())).is_err());
        assert!(unix_nanos(Some(&"99999999999999999".into())).is_err());
    }

    #[tokio::test]
    async fn mux_frames_are_read_back() {
        let mut buf = mux_frame(Kind::Stdout, b"hi");
        buf.extend(mux_frame(Kind::Exit, &3i32.to_be_bytes()));
        let mut r = &buf[..];
        assert_eq!(
            read_mux(&mut r).await.unwrap(),
            Some((Kind::Stdout, b"hi".to_vec()))
        );
        let (k, p) = read_mux(&mut r).await.unwrap().unwrap();
        assert_eq!((k, mux::parse_exit(&p)), (Kind::Exit, Some(3)));
        assert_eq!(read_mux(&mut r).await.unwrap(), None);
    }
}
