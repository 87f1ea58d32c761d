//! `run`/`create`'s namespace and lifecycle flags: `--ipc`, `--pid`,
//! `--uts`, `--cgroupns`, `--stop-timeout`, `--cidfile`, `--platform`,
//! `--pull`, `--log-driver`, and `run`'s `-a/--attach`.
//!
//! The CLI checks what docker's CLI checks (with its words); what docker's
//! daemon checks (`--ipc` values, log drivers) the engine checks.

use berth_host::args::ArgError;
use berth_protocol::ContainerConfig;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The flags, flattened at the end of `create`'s.
#[derive(clap::Args, Debug, Default)]
pub struct NamespaceArgs {
    /// IPC mode to use (none, private, shareable, host, container:ID)
    #[arg(long)]
    ipc: Option<String>,
    /// PID namespace to use (host, container:ID)
    #[arg(long)]
    pid: Option<String>,
    /// UTS namespace to use (host)
    #[arg(long)]
    uts: Option<String>,
    /// Cgroup namespace to use (host|private)
    #[arg(long)]
    cgroupns: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long, allow_hyphen_values = true)]
    stop_timeout: Option<String>,
    /// Write the container ID to the file
    #[arg(long)]
    cidfile: Option<String>,
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    platform: Option<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long)]
    pull: Option<String>,
    /// Logging driver for the container (json-file, local, none)
    #[arg(long)]
    log_driver: Option<String>,
}

/// `--pull` (docker's default: `missing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    Missing,
    Never,
}

impl NamespaceArgs {
    /// docker's CLI checks (`cli/command/container/opts.go` order), then
    /// the fields into `cfg`.
    pub fn apply(&self, cfg: &mut ContainerConfig) -> Result<(), ArgError> {
        if let Some(s) = &self.stop_timeout {
            let t = super::run_values::go_parse_int(s).map_err(|why| ArgError::Flag {
                flag: "--stop-timeout",
                value: s.clone(),
                reason: format!("strconv.ParseInt: parsing {s:?}: {why}"),
            })?;
            cfg.stop_timeout = Some(t);
        }
        self.pull_policy()?;
        self.platform()?;
        let empty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let pid = empty(&self.pid);
        if let Some(p) = &pid {
            if !(p == "host" || p.strip_prefix("container:").is_some_and(|c| !c.is_empty())) {
                return Err(ArgError::Other("--pid: invalid PID mode".into()));
            }
        }
        let uts = empty(&self.uts);
        if uts.as_deref().is_some_and(|u| u != "host") {
            return Err(ArgError::Other("--uts: invalid UTS mode".into()));
        }
        let cgroupns = empty(&self.cgroupns);
        if cgroupns
            .as_deref()
            .is_some_and(|c| c != "host" && c != "private")
        {
            return Err(ArgError::Other("--cgroupns: invalid CGROUP mode".into()));
        }
        let driver = empty(&self.log_driver);
        cfg.ipc_mode = empty(&self.ipc);
        cfg.pid_mode = pid;
        cfg.uts_mode = uts;
        cfg.cgroupns_mode = cgroupns;
        cfg.log_driver = driver;
        cfg.container_id_file = empty(&self.cidfile);
        Ok(())
    }

    /// `--log-opt` against `--log-driver` (docker checks json-file's in
    /// the daemon, as `run`'s own loop does; these come first).
    pub fn check_log_opts(&self, log_opts: &[String]) -> Result<(), ArgError> {
        match self.log_driver.as_deref() {
            Some("none") if !log_opts.is_empty() => Err(ArgError::Other(
                "invalid logging opts for driver none".into(),
            )),
            Some("local") => {
                for o in log_opts {
                    if let Some((k, _)) = o.split_once('=') {
                        if !matches!(k, "max-size" | "max-file" | "compress") {
                            return Err(ArgError::Daemon(format!(
                                "unknown log opt '{k}' for log driver local"
                            )));
                        }
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `--pull`: docker's CLI (23+) refuses other values with these words.
    pub fn pull_policy(&self) -> Result<PullPolicy, ArgError> {
        match self.pull.as_deref() {
            None | Some("missing") => Ok(PullPolicy::Missing),
            Some("always") => Ok(PullPolicy::Always),
            Some("never") => Ok(PullPolicy::Never),
            Some(p) => Err(ArgError::Other(format!(
                "invalid pull option: '{p}': must be one of \"always\", \"missing\" or \"never\""
            ))),
        }
    }

    /// `--platform`, checked as docker's CLI parses it; what a pull asks for.
    pub fn platform(&self) -> Result<Option<String>, ArgError> {
        let Some(p) = self.platform.as_deref().filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let known = |os: &str| matches!(os, "linux" | "windows" | "darwin" | "freebsd");
        let parts: Vec<&str> = p.split('/').collect();
        let parsed = match parts.as_slice() {
            // docker accepts a bare OS (`linux`): this host's architecture.
            [os] if known(&os.to_ascii_lowercase()) => {
                Some(berth_host::registry::manifest::Platform {
                    os: os.to_ascii_lowercase(),
                    ..berth_host::registry::manifest::Platform::host()
                })
            }
            _ => berth_host::registry::manifest::Platform::parse(p)
                .ok()
                .filter(|x| known(&x.os)),
        };
        match parsed {
            Some(x) => Ok(Some(x.to_string())),
            None => Err(ArgError::Other(format!(
                "error parsing specified platform: {p:?}: unknown operating system or architecture: invalid argument"
            ))),
        }
    }

    pub fn cidfile(&self) -> Option<&str> {
        self.cidfile.as_deref().filter(|c| !c.is_empty())
    }
}

/// `--cidfile`: made (new) before the container, filled with its ID once
/// created, removed again when the create fails (docker's `cidFile`).
pub struct CidFile {
    path: PathBuf,
    file: Option<std::fs::File>,
    written: bool,
}

impl CidFile {
    /// Creates the file; an existing one is refused as docker refuses it.
    /// The error is the message and docker's exit code.
    pub fn create(path: &str) -> Result<CidFile, (String, i32)> {
        if Path::new(path).exists() {
            return Err((
                format!("container ID file found, make sure the other container isn't running or delete {path}"),
                crate::EXIT_ENGINE,
            ));
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| {
                (
                    format!(
                        "failed to create the container ID file: open {path}: {}",
                        crate::fmt::io_error(&e)
                    ),
                    // docker's CLI exits 127 here.
                    127,
                )
            })?;
        Ok(CidFile {
            path: path.into(),
            file: Some(file),
            written: false,
        })
    }

    /// Writes the ID.
    pub fn write(&mut self, id: &str) -> Result<(), String> {
        if let Some(mut f) = self.file.take() {
            f.write_all(id.as_bytes())
                .map_err(|e| format!("failed to write the container ID to the file: {e}"))?;
            self.written = true;
        }
        Ok(())
    }
}

impl Drop for CidFile {
    fn drop(&mut self) {
        if !self.written {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `-a/--attach` on `run`: which of stdin/stdout/stderr (docker's
/// `validateAttach`: any case; the error names the flag).
pub fn attach_streams(list: &[String]) -> Result<Option<[bool; 3]>, ArgError> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut set = [false; 3];
    for s in list {
        match s.to_ascii_lowercase().as_str() {
            "stdin" => set[0] = true,
            "stdout" => set[1] = true,
            "stderr" => set[2] = true,
            _ => {
                return Err(ArgError::Flag {
                    flag: "-a, --attach",
                    value: s.clone(),
                    reason: "valid streams are STDIN, STDOUT and STDERR".into(),
                })
            }
        }
    }
    Ok(Some(set))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(f: impl FnOnce(&mut NamespaceArgs)) -> Result<ContainerConfig, ArgError> {
        let mut a = NamespaceArgs::default();
        f(&mut a);
        let mut cfg = ContainerConfig::default();
        a.apply(&mut cfg).map(|()| cfg)
    }

    fn err(f: impl FnOnce(&mut NamespaceArgs)) -> String {
        args(f).unwrap_err().to_string()
    }

    #[test]
    fn modes_checked_as_dockers_cli() {
        assert_eq!(
            err(|a| a.pid = Some("foo".into())),
            "--pid: invalid PID mode"
        );
        assert_eq!(
            err(|a| a.pid = Some("container:".into())),
            "--pid: invalid PID mode"
        );
        assert_eq!(
            err(|a| a.uts = Some("container:x".into())),
            "--uts: invalid UTS mode"
        );
        assert_eq!(
            err(|a| a.cgroupns = Some("foo".into())),
            "--cgroupns: invalid CGROUP mode"
        );
        let c = args(|a| {
            a.pid = Some("container:web".into());
            a.uts = Some("host".into());
            a.cgroupns = Some("private".into());
            a.ipc = Some("shareable".into());
            a.stop_timeout = Some("0x10".into());
        })
        .unwrap();
        assert_eq!(c.pid_mode.as_deref(), Some("container:web"));
        assert_eq!(c.uts_mode.as_deref(), Some("host"));
        assert_eq!(c.cgroupns_mode.as_deref(), Some("private"));
        assert_eq!(c.ipc_mode.as_deref(), Some("shareable"));
        assert_eq!(c.stop_timeout, Some(16));
    }

    #[test]
    fn stop_timeout_pull_platform_and_attach() {
        assert_eq!(
            err(|a| a.stop_timeout = Some("x".into())),
            "invalid argument \"x\" for \"--stop-timeout\" flag: strconv.ParseInt: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            args(|a| a.stop_timeout = Some("-1".into()))
                .unwrap()
                .stop_timeout,
            Some(-1)
        );
        assert!(err(|a| a.pull = Some("sometimes".into())).starts_with("invalid pull option"));
        assert_eq!(
            err(|a| a.platform = Some("foo".into())),
            "error parsing specified platform: \"foo\": unknown operating system or architecture: invalid argument"
        );
        let a = NamespaceArgs {
            platform: Some("linux".into()),
            ..Default::default()
        };
        assert!(a.platform().unwrap().unwrap().starts_with("linux/"));
        let a = NamespaceArgs {
            platform: Some("linux/arm64/v8".into()),
            ..Default::default()
        };
        assert_eq!(a.platform().unwrap().as_deref(), Some("linux/arm64/v8"));
        assert_eq!(
            attach_streams(&["STDOUT".into(), "stderr".into()]).unwrap(),
            Some([false, true, true])
        );
        assert_eq!(
            attach_streams(&["out".into()]).unwrap_err().to_string(),
            "invalid argument \"out\" for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"
        );
    }

    #[test]
    fn log_driver_opts() {
        let mut a = NamespaceArgs {
            log_driver: Some("none".into()),
            ..Default::default()
        };
        assert_eq!(
            a.check_log_opts(&["max-size=1m".into()])
                .unwrap_err()
                .to_string(),
            "invalid logging opts for driver none"
        );
        a.check_log_opts(&[]).unwrap();
        a.log_driver = Some("local".into());
        assert_eq!(
            a.check_log_opts(&["foo=1".into()]).unwrap_err().to_string(),
            "Error response from daemon: unknown log opt 'foo' for log driver local"
        );
        a.check_log_opts(&["max-size=1m".into()]).unwrap();
        let mut cfg = ContainerConfig::default();
        a.apply(&mut cfg).unwrap();
        assert_eq!(cfg.log_driver.as_deref(), Some("local"));
    }

    #[test]
    fn cidfile_refuses_an_existing_file_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cid");
        let ps = p.to_str().unwrap();
        {
            let _c = CidFile::create(ps).unwrap();
            assert!(p.exists());
        }
        assert!(!p.exists(), "an unwritten cidfile is removed");
        let mut c = CidFile::create(ps).unwrap();
        c.write("abc").unwrap();
        drop(c);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "abc");
        let (m, code) = CidFile::create(ps).err().unwrap();
        assert!(m.starts_with("container ID file found"), "{m}");
        assert_eq!(code, crate::EXIT_ENGINE);
        let bad = dir.path().join("no/cid");
        let (m, code) = CidFile::create(bad.to_str().unwrap()).err().unwrap();
        assert!(m.contains("no such file or directory"), "{m}");
        assert_eq!(code, 127);
    }
}
