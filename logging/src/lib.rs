//! berth's logging: every crate writes diagnostics through the [`log`]
//! facade (`log::debug!`, `log::info!`, …) and every binary (`berth`,
//! `berth-vmm`, `berth-agent`) installs this one logger at start.
//!
//! - Quiet by default: only warnings and errors ([`DEFAULT`]).
//! - `BERTH_LOG=error|warn|info|debug|trace` ([`ENV`]) raises or lowers the
//!   level; `berth --log-level LEVEL` overrides it. An unknown value is a
//!   warning, never a crash: the default level applies.
//! - Dependencies that log through `log` too (fuse-backend-rs, rustls)
//!   are silent at `warn` and `error`, show up to their `info` lines at
//!   `info` and `debug`, and everything at `trace`.
//! - Lines go to stderr as `berth[LEVEL] target: message`, one `write` per
//!   line (no timestamps, no extra system calls: the VMM's threads log under
//!   a seccomp filter that allows `write` and little else).
//!
//! User-facing output (errors before exit, docker's warnings, progress) is
//! not logging: the commands print it themselves.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

pub use log::LevelFilter;

/// The environment variable holding the level. Read here and nowhere else.
pub const ENV: &str = "BERTH_LOG";

/// The level when neither [`ENV`] nor a flag says otherwise.
pub const DEFAULT: LevelFilter = LevelFilter::Warn;

/// The level names accepted, least to most verbose.
pub const NAMES: &[&str] = &["error", "warn", "info", "debug", "trace"];

/// A level name that is none of [`NAMES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLevel(pub String);

impl std::fmt::Display for BadLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown log level {:?} (expected one of {})",
            self.0,
            NAMES.join(", ")
        )
    }
}

impl std::error::Error for BadLevel {}

/// Parses a level name: one of [`NAMES`], any case, surrounding blanks
/// ignored.
pub fn parse_level(s: &str) -> Result<LevelFilter, BadLevel> {
    let t = s.trim();
    let level = match t.to_ascii_lowercase().as_str() {
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => return Err(BadLevel(s.to_string())),
    };
    Ok(level)
}

/// The lowercase name [`parse_level`] reads back (`off` for `Off`).
pub fn level_name(level: LevelFilter) -> &'static str {
    match level {
        LevelFilter::Off => "off",
        LevelFilter::Error => "error",
        LevelFilter::Warn => "warn",
        LevelFilter::Info => "info",
        LevelFilter::Debug => "debug",
        LevelFilter::Trace => "trace",
    }
}

/// The level a program runs at: the flag's if given, else [`ENV`]'s value
/// (unset or empty: [`DEFAULT`]). A bad [`ENV`] value yields [`DEFAULT`]
/// and the error, for a warning.
pub fn choose(flag: Option<LevelFilter>, env: Option<&str>) -> (LevelFilter, Option<BadLevel>) {
    if let Some(l) = flag {
        return (l, None);
    }
    match env.map(str::trim).filter(|v| !v.is_empty()) {
        None => (DEFAULT, None),
        Some(v) => match parse_level(v) {
            Ok(l) => (l, None),
            Err(e) => (DEFAULT, Some(e)),
        },
    }
}

/// Writes the one line a record becomes.
fn write_line(out: &mut impl std::fmt::Write, record: &log::Record<'_>) -> std::fmt::Result {
    writeln!(
        out,
        "berth[{}] {}: {}",
        record.level(),
        record.target(),
        record.args()
    )
}

/// A line assembled on the stack (no allocation: the VMM logs from
/// threads under a seccomp filter), written with one `write` when it fits;
/// a longer line is written in pieces as the buffer fills.
struct LineBuf<W: Write> {
    buf: [u8; 1024],
    len: usize,
    out: W,
}

impl<W: Write> LineBuf<W> {
    fn flush_buf(&mut self) {
        let _ = self.out.write_all(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl<W: Write> std::fmt::Write for LineBuf<W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let mut b = s.as_bytes();
        while !b.is_empty() {
            if self.len == self.buf.len() {
                self.flush_buf();
            }
            let n = b.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
            self.len += n;
            b = &b[n..];
        }
        Ok(())
    }
}

fn emit(out: impl Write, record: &log::Record<'_>) {
    let mut line = LineBuf {
        buf: [0; 1024],
        len: 0,
        out,
    };
    let _ = write_line(&mut line, record);
    line.flush_buf();
}

/// Whether a record passes at `max`: berth's own crates (targets
/// `berth…`) log at `max`. Dependencies that log too (fuse-backend-rs,
/// rustls, …) are silent below `info` (rustls warns of every TLS alert it
/// sends, which berth reports as its own error), show up to `info` at
/// `info` and `debug` (no line per FUSE request), and everything at
/// `trace`.
fn passes(level: log::Level, target: &str, max: LevelFilter) -> bool {
    let max = if target.starts_with("berth") || max == LevelFilter::Trace {
        max
    } else if max < LevelFilter::Info {
        LevelFilter::Off
    } else {
        LevelFilter::Info
    };
    level <= max
}

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        passes(metadata.level(), metadata.target(), log::max_level())
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            emit(std::io::stderr().lock(), record);
        }
    }

    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;

/// Whether [`init`] was given a level (a flag, or a valid [`ENV`]).
static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Installs the logger (once per process; later calls only set the level)
/// at the level [`choose`] picks from `flag` and [`ENV`]. Returns the level.
pub fn init(flag: Option<LevelFilter>) -> LevelFilter {
    let env = std::env::var(ENV).ok();
    let (level, bad) = choose(flag, env.as_deref());
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
    let given = flag.is_some() || env.as_deref().is_some_and(|v| !v.trim().is_empty());
    REQUESTED.store(given && bad.is_none(), Ordering::Relaxed);
    if let Some(e) = bad {
        log::warn!("ignoring {ENV}: {e}");
    }
    level
}

/// Whether this process runs at a level someone asked for (`--log-level`
/// or a valid [`ENV`]) rather than the default: then the programs it
/// starts are told the level too (a guest through its kernel command line).
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Sets [`ENV`] to `level` in this process's environment, so that the
/// programs it starts (the VMM, a native agent) log at the same level.
/// Call it before any thread starts.
pub fn export(level: LevelFilter) {
    export_name(level_name(level));
}

/// Sets [`ENV`] to `name` as given (a level name from elsewhere, e.g. a
/// guest's kernel command line; [`init`] then checks it). Call it before
/// any thread starts.
pub fn export_name(name: &str) {
    std::env::set_var(ENV, name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names_parse() {
        assert_eq!(parse_level("error"), Ok(LevelFilter::Error));
        assert_eq!(parse_level("warn"), Ok(LevelFilter::Warn));
        assert_eq!(parse_level("info"), Ok(LevelFilter::Info));
        assert_eq!(parse_level("debug"), Ok(LevelFilter::Debug));
        assert_eq!(parse_level("trace"), Ok(LevelFilter::Trace));
        assert_eq!(parse_level(" DEBUG\n"), Ok(LevelFilter::Debug));
        for n in NAMES {
            assert_eq!(level_name(parse_level(n).unwrap()), *n);
        }
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "bogus", "warning", "debug,info", "3", "off", "débug"] {
            let e = parse_level(bad).unwrap_err();
            assert_eq!(e, BadLevel(bad.to_string()));
            assert!(e.to_string().contains("expected one of error, warn"), "{e}");
        }
    }

    #[test]
    fn the_flag_wins_then_the_variable_then_the_default() {
        assert_eq!(choose(None, None), (LevelFilter::Warn, None));
        assert_eq!(choose(None, Some("")), (LevelFilter::Warn, None));
        assert_eq!(choose(None, Some("  ")), (LevelFilter::Warn, None));
        assert_eq!(choose(None, Some("info")), (LevelFilter::Info, None));
        assert_eq!(
            choose(Some(LevelFilter::Error), Some("trace")),
            (LevelFilter::Error, None)
        );
        // A flag makes a bad variable irrelevant: no warning.
        assert_eq!(
            choose(Some(LevelFilter::Debug), Some("bogus")),
            (LevelFilter::Debug, None)
        );
        assert_eq!(
            choose(None, Some("bogus")),
            (LevelFilter::Warn, Some(BadLevel("bogus".into())))
        );
    }

    #[test]
    fn dependencies_need_trace_for_their_debug_lines() {
        use log::Level::*;
        let (d, i, t) = (LevelFilter::Debug, LevelFilter::Info, LevelFilter::Trace);
        assert!(passes(Debug, "berth_host::machine", d));
        assert!(passes(Debug, "berth", d));
        assert!(!passes(Trace, "berth_vmm", d));
        assert!(!passes(Debug, "fuse_backend_rs::api", d));
        assert!(passes(Info, "fuse_backend_rs::api", d));
        assert!(passes(Debug, "fuse_backend_rs::api", t));
        assert!(passes(Trace, "fuse_backend_rs::api", t));
        assert!(!passes(Info, "berth_agent", LevelFilter::Warn));
        assert!(passes(Warn, "berth_agent", LevelFilter::Warn));
        // Quiet by default: a dependency's warnings and errors too.
        assert!(!passes(Warn, "rustls", LevelFilter::Warn));
        assert!(!passes(Error, "rustls", LevelFilter::Error));
        assert!(passes(Warn, "rustls", i));
        assert!(passes(Info, "rustls", i));
        assert!(!passes(Debug, "rustls", i));
    }

    #[test]
    fn a_record_is_one_prefixed_line() {
        let args = format_args!("took {} s", 3);
        let rec = log::Record::builder()
            .level(log::Level::Debug)
            .target("berth_host::machine")
            .args(args)
            .build();
        let mut out = Vec::new();
        emit(&mut out, &rec);
        assert_eq!(out, b"berth[DEBUG] berth_host::machine: took 3 s\n");
    }

    #[test]
    fn a_long_record_is_written_whole() {
        let long = "x".repeat(3000);
        let args = format_args!("{long}");
        let rec = log::Record::builder()
            .level(log::Level::Warn)
            .target("t")
            .args(args)
            .build();
        let mut out = Vec::new();
        emit(&mut out, &rec);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("berth[WARN] t: {long}\n")
        );
    }
}
