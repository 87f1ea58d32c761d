//! `berth build`: runs a Dockerfile against the engine, step by step, the
//! way docker's classic builder does.
//!
//! The CLI drives the build; the engine does the work through ordinary
//! requests:
//! - `RUN` creates a container from the current image, runs it attached,
//!   and turns its filesystem changes into a new image (`ImageDerive`).
//! - `COPY`/`ADD` make a tar of the sources here (context files honouring
//!   `.dockerignore`, another stage's files, a local archive or a URL) and
//!   extract it into a fresh container (`CopyTo` in build mode), whose
//!   changes become the new image.
//! - Config-only instructions (`ENV`, `CMD`, `LABEL`, ...) derive an image
//!   with the same layers and a new config (`empty_layer` history).
//!
//! Every step's image is remembered under a cache key: the parent image,
//! the instruction as evaluated, the build arguments it sees and, for
//! `COPY`/`ADD`, a checksum of the sources' names, modes, owners and
//! contents. A later build with the same key reuses the image (`---> Using
//! cache`).

pub mod context;

use crate::client::ClientError;
use crate::engine::Engine;
use anyhow::{anyhow, bail, Context as _, Result};
use berth_dockerfile::{
    CopyArgs, Dockerfile, Healthcheck, Heredoc, Instruction, InstructionKind, ShellOrExec, Stage,
};
use berth_protocol::mux::{self, Kind};
use berth_protocol::reference::Reference;
use berth_protocol::{ContainerConfig, DeriveOptions, ErrorKind};
use context::{clean_abs, BuildContext, LayerTar, Ownership};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};

/// Build arguments docker predefines: usable without an `ARG` line, and
/// never warned about.
const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The default `SHELL`.
fn default_shell() -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into()]
}

/// What the user asked for.
pub struct BuildOptions {
    pub build_args: BTreeMap<String, String>,
    /// `--label`: set on the image as by a `LABEL` step docker adds at
    /// the end of the Dockerfile (its last stage).
    pub labels: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    pub quiet: bool,
}

/// A build failure with the exit code docker would return.
#[derive(Debug)]
pub struct BuildError {
    pub message: String,
    pub code: i32,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BuildError {}

/// How to reach the engine (a fresh connection per stream request).
pub type Connector<'a> = &'a dyn Fn() -> Result<Engine>;

/// Pulls an image that `FROM`/`COPY --from` names and the engine lacks
/// (the front end's pull, with its progress output); the exit code.
pub type Puller<'a> = &'a dyn Fn(&str) -> Result<i32>;

/// The state of the stage being built.
struct StageState {
    /// Current image id; `None` before the first step of `FROM scratch`.
    image: Option<String>,
    /// The image config's `config` object.
    config: Value,
    /// Build arguments declared in this stage, with their values.
    args: BTreeMap<String, String>,
    shell: Vec<String>,
    /// `CMD` was set in this stage (so `ENTRYPOINT` keeps it).
    cmd_set: bool,
    author: Option<String>,
}

impl StageState {
    fn env(&self) -> Vec<String> {
        self.config["Env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn env_value(&self, name: &str) -> Option<String> {
        self.env().iter().rev().find_map(|e| {
            e.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    /// Variable lookup for substitution: `ENV` wins over `ARG`.
    fn lookup(&self, name: &str) -> Option<String> {
        self.env_value(name)
            .or_else(|| self.args.get(name).cloned())
    }

    /// `KEY=VALUE` of the build arguments a `RUN` sees (those not shadowed
    /// by `ENV`).
    fn arg_env(&self) -> Vec<String> {
        let env = self.env();
        self.args
            .iter()
            .filter(|(k, _)| !env.iter().any(|e| e.split('=').next() == Some(k.as_str())))
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    fn workdir(&self) -> String {
        self.config["WorkingDir"]
            .as_str()
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_string()
    }
}

/// One build.
pub struct Builder<'a> {
    connect: Connector<'a>,
    pull: Puller<'a>,
    ctl: Engine,
    ctx: BuildContext,
    opts: BuildOptions,
    escape: char,
    /// Global `ARG`s (before the first `FROM`) with their values.
    global_args: BTreeMap<String, String>,
    /// Build arguments some `ARG` consumed.
    used_args: HashSet<String>,
    /// Final image of each stage built, by index.
    stage_images: HashMap<usize, String>,
    /// Images resolved for `FROM`/`COPY --from` references.
    image_refs: HashMap<String, String>,
    step: usize,
    total: usize,
    /// Where the build's output goes: stdout unless [`Builder::set_output`].
    out: Box<dyn Write + 'a>,
}

fn short_id(id: &str) -> &str {
    let h = id.trim_start_matches("sha256:");
    &h[..12.min(h.len())]
}

fn api(e: ClientError) -> anyhow::Error {
    anyhow!("{e}")
}

/// Parses `--chmod` (octal).
fn parse_chmod(s: &str) -> Result<u32> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| anyhow!("invalid chmod parameter: {s:?} (want an octal mode such as 755)"))
}

impl<'a> Builder<'a> {
    pub fn new(
        connect: Connector<'a>,
        pull: Puller<'a>,
        ctx: BuildContext,
        opts: BuildOptions,
    ) -> Result<Self> {
        let ctl = connect()?;
        Ok(Builder {
            connect,
            pull,
            ctl,
            ctx,
            opts,
            escape: '\\',
            global_args: BTreeMap::new(),
            used_args: HashSet::new(),
            stage_images: HashMap::new(),
            image_refs: HashMap::new(),
            step: 0,
            total: 0,
            out: Box::new(std::io::stdout()),
        })
    }

    /// Sends the build's output (steps, the step containers' output) to
    /// `out` instead of stdout; the Engine API streams it as JSON.
    pub fn set_output(&mut self, out: Box<dyn Write + 'a>) {
        self.out = out;
    }

    fn say(&mut self, line: &str) {
        if !self.opts.quiet {
            let _ = writeln!(self.out, "{line}");
            let _ = self.out.flush();
        }
    }

    fn print_step(&mut self, ins: &Instruction) {
        self.step += 1;
        let line = format!("Step {}/{} : {}", self.step, self.total, ins.original);
        self.say(&line);
    }

    /// Expands `word` with the stage's variables.
    fn expand(&self, st: &StageState, word: &str) -> Result<String> {
        berth_dockerfile::expand_word(word, self.escape, &|n| st.lookup(n))
            .map_err(|e| anyhow!("{e}"))
    }

    fn expand_words(&self, st: &StageState, word: &str) -> Result<Vec<String>> {
        berth_dockerfile::expand_words(word, self.escape, &|n| st.lookup(n))
            .map_err(|e| anyhow!("{e}"))
    }

    fn expand_global(&self, word: &str) -> Result<String> {
        let g = &self.global_args;
        berth_dockerfile::expand_word(word, self.escape, &|n| g.get(n).cloned())
            .map_err(|e| anyhow!("{e}"))
    }

    /// Runs the build; returns the final image id.
    pub fn build(&mut self, df: &Dockerfile) -> Result<String> {
        self.escape = df.escape;
        if df.stages.is_empty() {
            bail!("the Dockerfile has no FROM instruction");
        }
        // Global ARGs: their values are visible to FROM lines (and to
        // stages that declare them again without a value).
        for ins in &df.global_args {
            if let InstructionKind::Arg(list) = &ins.kind {
                for (k, default) in list {
                    let v = match self.opts.build_args.get(k) {
                        Some(v) => Some(v.clone()),
                        None => match default {
                            Some(d) => Some(self.expand_global(d)?),
                            None => None,
                        },
                    };
                    self.used_args.insert(k.clone());
                    if let Some(v) = v {
                        self.global_args.insert(k.clone(), v);
                    }
                }
            }
        }
        let target = match &self.opts.target {
            None => df.stages.len() - 1,
            Some(t) => {
                let t = t.to_ascii_lowercase();
                df.stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(t.as_str()))
                    .ok_or_else(|| anyhow!("failed to reach build target {t} in Dockerfile"))?
            }
        };
        let needed = self.needed_stages(df, target)?;
        self.total = df.global_args.len()
            + df.stages
                .iter()
                .filter(|s| needed.contains(&s.index))
                .map(|s| 1 + s.instructions.len())
                .sum::<usize>();
        for ins in &df.global_args {
            self.print_step(ins);
        }
        let mut last = String::new();
        for stage in df.stages.iter().filter(|s| needed.contains(&s.index)) {
            last = self.build_stage(df, stage)?;
            self.stage_images.insert(stage.index, last.clone());
            if stage.index == target {
                break;
            }
        }
        let unused: Vec<&String> = self
            .opts
            .build_args
            .keys()
            .filter(|k| !self.used_args.contains(*k) && !PREDEFINED_ARGS.contains(&k.as_str()))
            .collect();
        if !unused.is_empty() {
            let list: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            self.say(&format!(
                "[Warning] One or more build-args [{}] were not consumed",
                list.join(" ")
            ));
        }
        Ok(last)
    }

    /// The stage a `FROM`/`--from` word names, if it is one.
    fn stage_ref(df: &Dockerfile, word: &str, before: usize) -> Option<usize> {
        let w = word.to_ascii_lowercase();
        if let Some(s) = df.stages[..before.min(df.stages.len())]
            .iter()
            .find(|s| s.name.as_deref() == Some(w.as_str()))
        {
            return Some(s.index);
        }
        w.parse::<usize>().ok().filter(|i| *i < before)
    }

    /// The stages `target` depends on (itself included).
    fn needed_stages(&self, df: &Dockerfile, target: usize) -> Result<HashSet<usize>> {
        let mut need = HashSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if !need.insert(i) {
                continue;
            }
            let s = &df.stages[i];
            let base = self.expand_global(&s.base)?;
            if let Some(d) = Self::stage_ref(df, &base, i) {
                todo.push(d);
            }
            for ins in &s.instructions {
                if let InstructionKind::Copy(c) | InstructionKind::Add(c) = &ins.kind {
                    if let Some(from) = &c.from {
                        let from = self.expand_global(from)?;
                        if let Some(d) = Self::stage_ref(df, &from, i) {
                            todo.push(d);
                        }
                    }
                }
            }
        }
        Ok(need)
    }

    /// Finds an image locally, pulling it when missing (or with `--pull`).
    fn resolve_image(&mut self, name: &str) -> Result<String> {
        if let Some(id) = self.image_refs.get(name) {
            return Ok(id.clone());
        }
        let r = Reference::parse(name)
            .map_err(|e| anyhow!("invalid reference format: {name:?}: {e}"))?;
        let full = r.to_string();
        let local = match self.ctl.image_inspect(&full) {
            Ok(i) => Some(i.id),
            Err(ClientError::Unexpected(_)) => None,
            Err(e) if e.kind() == Some(ErrorKind::NotFound) => None,
            Err(e) => return Err(api(e)),
        };
        let id = match local {
            Some(id) if !self.opts.pull || r.digest.is_some() => id,
            _ => {
                let code = (self.pull)(name).with_context(|| format!("pulling {name}"))?;
                if code != 0 {
                    bail!("pull access denied or image not found: {name}");
                }
                self.ctl.image_inspect(&full)?.id
            }
        };
        self.image_refs.insert(name.to_string(), id.clone());
        Ok(id)
    }

    fn build_stage(&mut self, df: &Dockerfile, stage: &Stage) -> Result<String> {
        self.print_step(&stage.from);
        let base = self.expand_global(&stage.base)?;
        if base.is_empty() {
            bail!("base name ({}) should not be blank", stage.base);
        }
        let mut st = StageState {
            image: None,
            config: json!({}),
            args: BTreeMap::new(),
            shell: default_shell(),
            cmd_set: false,
            author: None,
        };
        let mut triggers = Vec::new();
        if base.eq_ignore_ascii_case("scratch") {
            self.say(" ---> ");
        } else {
            let id = match Self::stage_ref(df, &base, stage.index) {
                Some(i) => self
                    .stage_images
                    .get(&i)
                    .cloned()
                    .ok_or_else(|| anyhow!("stage {i} was not built"))?,
                None => self.resolve_image(&base)?,
            };
            let img = self.ctl.image_inspect(&id)?;
            st.config = img.config.get("config").cloned().unwrap_or(json!({}));
            if !st.config.is_object() {
                st.config = json!({});
            }
            if let Some(sh) = st.config["Shell"].as_array() {
                let sh: Vec<String> = sh
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect();
                if !sh.is_empty() {
                    st.shell = sh;
                }
            }
            if let Some(t) = st.config["OnBuild"].as_array() {
                triggers = t
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect();
            }
            st.image = Some(id.clone());
            self.say(&format!(" ---> {}", short_id(&id)));
        }
        if !triggers.is_empty() {
            self.say(&format!("# Executing {} build trigger", triggers.len()));
            st.config["OnBuild"] = Value::Null;
            for t in &triggers {
                let parsed =
                    berth_dockerfile::parse("ONBUILD trigger", &format!("FROM scratch\n{t}\n"))
                        .map_err(|e| anyhow!("{e}"))?;
                for ins in &parsed.stages[0].instructions {
                    self.run_instruction(df, stage, &mut st, ins, false)?;
                }
            }
        }
        for ins in &stage.instructions {
            self.print_step(ins);
            self.run_instruction(df, stage, &mut st, ins, true)?;
        }
        match st.image {
            Some(id) => Ok(id),
            // `FROM scratch` alone: an empty image.
            None => {
                let id = self.derive(&mut st, "", None, None, false)?;
                Ok(id)
            }
        }
    }

    /// Derives the image for a step (or reuses the cached one) and makes
    /// it current.
    fn derive(
        &mut self,
        st: &mut StageState,
        created_by: &str,
        container: Option<String>,
        cache_key: Option<String>,
        skip_empty_layer: bool,
    ) -> Result<String> {
        let summary = self.ctl.image_derive(DeriveOptions {
            parent: st.image.clone(),
            container,
            config: st.config.clone(),
            created_by: created_by.to_string(),
            comment: None,
            author: st.author.clone(),
            skip_empty_layer,
            tags: Vec::new(),
            cache_key,
        })?;
        st.image = Some(summary.id.clone());
        Ok(summary.id)
    }

    /// The cache key of a step.
    fn cache_key(&self, st: &StageState, what: &Value) -> String {
        let k = json!({
            "v": 1,
            "parent": st.image.clone().unwrap_or_else(|| "scratch".into()),
            "config": st.config,
            "args": st.arg_env(),
            "step": what,
        });
        hex::encode(Sha256::digest(k.to_string().as_bytes()))
    }

    /// Looks the step up in the cache; on a hit makes it current.
    fn cached(&mut self, st: &mut StageState, key: &str) -> Result<bool> {
        if self.opts.no_cache {
            return Ok(false);
        }
        match self.ctl.build_cache_get(key) {
            Ok(i) => {
                self.say(" ---> Using cache");
                self.say(&format!(" ---> {}", short_id(&i.id)));
                st.image = Some(i.id);
                st.config = i.config.get("config").cloned().unwrap_or(json!({}));
                Ok(true)
            }
            Err(ClientError::Unexpected(_)) => Ok(false),
            Err(e) if e.kind() == Some(ErrorKind::NotFound) => Ok(false),
            Err(e) => Err(api(e)),
        }
    }

    /// A config-only step: new config, same layers.
    fn config_step(
        &mut self,
        st: &mut StageState,
        ins: &Instruction,
        what: Value,
        print: bool,
    ) -> Result<()> {
        let key = self.cache_key(st, &what);
        // The config change is applied by the caller before; the key
        // includes the new config, so a changed value never hits.
        if self.cached(st, &key)? {
            return Ok(());
        }
        let created_by = format!("/bin/sh -c #(nop)  {}", ins.original);
        let id = self.derive(st, &created_by, None, Some(key), false)?;
        if print {
            self.say(&format!(" ---> {}", short_id(&id)));
        }
        Ok(())
    }

    /// Makes a container of the current image for a step (never started
    /// unless `RUN`).
    fn step_container(
        &mut self,
        st: &mut StageState,
        cmd: Vec<String>,
        env: Vec<String>,
        run: bool,
    ) -> Result<String> {
        if st.image.is_none() {
            // `FROM scratch`: an empty image to start from.
            self.derive(st, "", None, None, false)?;
        }
        let cfg = ContainerConfig {
            image: st.image.clone().unwrap_or_default(),
            cmd: Some(cmd),
            entrypoint: Some(Vec::new()),
            env,
            workdir: Some(st.workdir()),
            user: st.config["User"]
                .as_str()
                .filter(|u| !u.is_empty())
                .map(String::from),
            // Docker mounts an anonymous volume on each VOLUME path while a
            // RUN step runs: the mount point lands in the layer, what the
            // step writes there does not.
            tmpfs: if run {
                st.config["Volumes"]
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default()
            } else {
                Vec::new()
            },
            // A build step runs no healthcheck probes, as docker's.
            healthcheck: Some(berth_protocol::HealthConfig {
                test: vec!["NONE".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        Ok(self.ctl.container_create(cfg).map_err(api)?.id)
    }

    fn remove_container(&mut self, id: &str) {
        let _ = self.ctl.container_remove(id, true, true);
    }

    fn run_instruction(
        &mut self,
        df: &Dockerfile,
        stage: &Stage,
        st: &mut StageState,
        ins: &Instruction,
        print: bool,
    ) -> Result<()> {
        match &ins.kind {
            InstructionKind::From => bail!("FROM is not allowed here"),
            InstructionKind::Arg(list) => {
                for (k, default) in list {
                    self.used_args.insert(k.clone());
                    let v = match self.opts.build_args.get(k) {
                        Some(v) => Some(v.clone()),
                        None => match default {
                            Some(d) => Some(self.expand(st, d)?),
                            None => self.global_args.get(k).cloned(),
                        },
                    };
                    match v {
                        Some(v) => st.args.insert(k.clone(), v),
                        None => st.args.remove(k),
                    };
                }
                let what = json!(["ARG", ins.original]);
                self.config_step(st, ins, what, print)
            }
            InstructionKind::Env(list) => {
                // Every word is expanded with the variables from before
                // this instruction, as docker does.
                let mut pairs = Vec::new();
                for (k, v) in list {
                    pairs.push((self.expand(st, k)?, self.expand(st, v)?));
                }
                let mut env = st.env();
                for (k, v) in pairs {
                    // A variable set again keeps its place.
                    let kv = format!("{k}={v}");
                    match env
                        .iter_mut()
                        .find(|e| e.split('=').next() == Some(k.as_str()))
                    {
                        Some(e) => *e = kv,
                        None => env.push(kv),
                    }
                }
                st.config["Env"] = json!(env);
                let what = json!(["ENV"]);
                self.config_step(st, ins, what, print)
            }
            InstructionKind::Label(list) => {
                let mut pairs = Vec::new();
                for (k, v) in list {
                    pairs.push((self.expand(st, k)?, self.expand(st, v)?));
                }
                if !st.config["Labels"].is_object() {
                    st.config["Labels"] = json!({});
                }
                for (k, v) in pairs {
                    st.config["Labels"][k] = json!(v);
                }
                self.config_step(st, ins, json!(["LABEL"]), print)
            }
            InstructionKind::Maintainer(m) => {
                st.author = Some(m.clone());
                self.config_step(st, ins, json!(["MAINTAINER", m]), print)
            }
            InstructionKind::Expose(ports) => {
                if !st.config["ExposedPorts"].is_object() {
                    st.config["ExposedPorts"] = json!({});
                }
                for p in ports {
                    for w in self.expand_words(st, p)? {
                        for port in expand_port(&w)? {
                            st.config["ExposedPorts"][port] = json!({});
                        }
                    }
                }
                self.config_step(st, ins, json!(["EXPOSE"]), print)
            }
            InstructionKind::Volume(vols) => {
                if !st.config["Volumes"].is_object() {
                    st.config["Volumes"] = json!({});
                }
                let mut paths = Vec::new();
                for v in vols {
                    let w = self.expand(st, v)?;
                    if w.trim().is_empty() {
                        bail!("VOLUME specified can not be an empty string");
                    }
                    st.config["Volumes"][&w] = json!({});
                    paths.push(w);
                }
                let key = self.cache_key(st, &json!(["VOLUME", paths]));
                if self.cached(st, &key)? {
                    return Ok(());
                }
                // Docker's VOLUME step leaves the mount points in the image.
                let mut tar = LayerTar::new()?;
                for p in &paths {
                    let abs = clean_abs(&format!("{}/{p}", st.workdir()));
                    let abs = if p.starts_with('/') {
                        clean_abs(p)
                    } else {
                        abs
                    };
                    let mut upto = String::new();
                    for part in abs.split('/').filter(|x| !x.is_empty()) {
                        upto.push('/');
                        upto.push_str(part);
                        tar.dir(&upto, 0o755, Ownership::default(), now_secs())?;
                    }
                }
                let (f, _) = tar.finish()?;
                let created_by = format!("/bin/sh -c #(nop)  {}", ins.original);
                self.copy_step(st, f, key, &created_by, true, print)
            }
            InstructionKind::User(u) => {
                st.config["User"] = json!(self.expand(st, u)?);
                self.config_step(st, ins, json!(["USER"]), print)
            }
            InstructionKind::StopSignal(s) => {
                let s = self.expand(st, s)?;
                validate_signal(&s)?;
                st.config["StopSignal"] = json!(s);
                self.config_step(st, ins, json!(["STOPSIGNAL"]), print)
            }
            InstructionKind::Shell(sh) => {
                if sh.is_empty() {
                    bail!("SHELL requires at least one argument");
                }
                st.shell = sh.clone();
                st.config["Shell"] = json!(sh);
                self.config_step(st, ins, json!(["SHELL"]), print)
            }
            InstructionKind::Cmd(c) => {
                st.config["Cmd"] = json!(self.command(st, c));
                st.cmd_set = true;
                self.config_step(st, ins, json!(["CMD"]), print)
            }
            InstructionKind::Entrypoint(c) => {
                st.config["Entrypoint"] = json!(self.command(st, c));
                if !st.cmd_set {
                    st.config["Cmd"] = Value::Null;
                }
                self.config_step(st, ins, json!(["ENTRYPOINT"]), print)
            }
            InstructionKind::Healthcheck(h) => {
                st.config["Healthcheck"] = healthcheck_config(h);
                self.config_step(st, ins, json!(["HEALTHCHECK"]), print)
            }
            InstructionKind::Onbuild(inner) => {
                // The trigger as docker stores it (the parser keeps its text).
                let mut list: Vec<Value> =
                    st.config["OnBuild"].as_array().cloned().unwrap_or_default();
                list.push(json!(inner.original));
                st.config["OnBuild"] = json!(list);
                self.config_step(st, ins, json!(["ONBUILD"]), print)
            }
            InstructionKind::Workdir(w) => {
                let w = self.expand(st, w)?;
                let path = if w.starts_with('/') {
                    clean_abs(&w)
                } else {
                    clean_abs(&format!("{}/{w}", st.workdir()))
                };
                st.config["WorkingDir"] = json!(path);
                let key = self.cache_key(st, &json!(["WORKDIR", path]));
                if self.cached(st, &key)? {
                    return Ok(());
                }
                // Create the directory when the image lacks it.
                let mut tar = LayerTar::new()?;
                tar.dir(&path, 0o755, Ownership::default(), now_secs())?;
                let (f, _) = tar.finish()?;
                let created_by = format!("/bin/sh -c #(nop) WORKDIR {path}");
                self.copy_step(st, f, key, &created_by, true, print)
            }
            InstructionKind::Run { cmd, heredocs, .. } => {
                self.run_step(st, ins, cmd, heredocs, print)
            }
            InstructionKind::Copy(c) => self.copy_instruction(df, stage, st, c, false, print),
            InstructionKind::Add(c) => self.copy_instruction(df, stage, st, c, true, print),
        }
    }

    /// `CMD`/`ENTRYPOINT` argv: exec form as is, shell form through the
    /// stage's shell.
    fn command(&self, st: &StageState, c: &ShellOrExec) -> Vec<String> {
        match c {
            ShellOrExec::Exec(a) => a.clone(),
            ShellOrExec::Shell(s) => {
                let mut v = st.shell.clone();
                v.push(s.clone());
                v
            }
        }
    }

    fn run_step(
        &mut self,
        st: &mut StageState,
        ins: &Instruction,
        cmd: &ShellOrExec,
        heredocs: &[Heredoc],
        print: bool,
    ) -> Result<()> {
        let argv = match cmd {
            ShellOrExec::Exec(a) => {
                if a.is_empty() {
                    bail!("RUN requires at least one argument");
                }
                a.clone()
            }
            ShellOrExec::Shell(s) => {
                let script = heredoc_script(s, heredocs);
                let mut v = st.shell.clone();
                v.push(script);
                v
            }
        };
        let arg_env = st.arg_env();
        let mut created_by = argv.join(" ");
        if !arg_env.is_empty() {
            created_by = format!("|{} {} {created_by}", arg_env.len(), arg_env.join(" "));
        }
        let key = self.cache_key(st, &json!(["RUN", argv]));
        if self.cached(st, &key)? {
            return Ok(());
        }
        let cid = self.step_container(st, argv.clone(), arg_env, true)?;
        if print {
            self.say(&format!(" ---> Running in {}", short_id(&cid)));
        }
        let code = match self.attach_run(&cid) {
            Ok(c) => c,
            Err(e) => {
                self.remove_container(&cid);
                return Err(e);
            }
        };
        if code != 0 {
            self.remove_container(&cid);
            let shown = match cmd {
                ShellOrExec::Exec(a) => format!(
                    "[{}]",
                    a.iter()
                        .map(|s| format!("{s:?}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                ShellOrExec::Shell(_) => argv.join(" "),
            };
            let _ = ins;
            return Err(BuildError {
                message: format!("The command '{shown}' returned a non-zero code: {code}"),
                code,
            }
            .into());
        }
        let result = self.derive(st, &created_by, Some(cid.clone()), Some(key), false);
        if print {
            self.say(&format!(
                "Removing intermediate container {}",
                short_id(&cid)
            ));
        }
        self.remove_container(&cid);
        let id = result?;
        if print {
            self.say(&format!(" ---> {}", short_id(&id)));
        }
        Ok(())
    }

    /// Starts the step container attached; relays its output to stdout
    /// (docker's build output carries both streams); returns the exit code.
    fn attach_run(&mut self, cid: &str) -> Result<i32> {
        let conn = (self.connect)()?;
        let mut stream = conn.attach(cid, false, true, None).map_err(api)?;
        loop {
            match mux::read_frame(&mut stream) {
                Ok(Some((Kind::Stdout | Kind::Stderr, d))) => {
                    if !self.opts.quiet {
                        self.out.write_all(&d)?;
                        self.out.flush()?;
                    }
                }
                Ok(Some((Kind::Exit, p))) => return Ok(mux::parse_exit(&p).unwrap_or(255)),
                Ok(Some((Kind::Error, p))) => bail!("{}", String::from_utf8_lossy(&p)),
                Ok(Some(_)) => {}
                Ok(None) => bail!("the build step's stream ended before it exited"),
                Err(e) => bail!("{e}"),
            }
        }
    }

    /// Extracts `tar` into a container of the current image and derives
    /// the step's image from its changes.
    fn copy_step(
        &mut self,
        st: &mut StageState,
        mut tar: std::fs::File,
        key: String,
        created_by: &str,
        skip_empty_layer: bool,
        print: bool,
    ) -> Result<()> {
        let cid = self.step_container(st, vec!["/bin/sh".into()], Vec::new(), false)?;
        let result = (|| -> Result<String> {
            let conn = (self.connect)()?;
            let mut s = conn.copy_to(&cid, "/", true).map_err(api)?;
            if let Err(e) = std::io::copy(&mut tar, &mut s) {
                // The engine stops reading when it fails (a full disk, say)
                // and says why in its reply, which is still there to read.
                if let Ok(resp) =
                    berth_protocol::frame::read_frame::<_, berth_protocol::ResponseEnvelope>(&mut s)
                {
                    resp.result.map_err(|e| anyhow!("{e}"))?;
                }
                return Err(anyhow::Error::from(e).context("sending files to the engine"));
            }
            s.flush()?;
            s.shutdown(std::net::Shutdown::Write)?;
            let resp: berth_protocol::ResponseEnvelope =
                berth_protocol::frame::read_frame(&mut s).map_err(|e| anyhow!("{e}"))?;
            resp.result.map_err(|e| anyhow!("{e}"))?;
            self.derive(
                st,
                created_by,
                Some(cid.clone()),
                Some(key),
                skip_empty_layer,
            )
        })();
        self.remove_container(&cid);
        let id = result?;
        if print {
            self.say(&format!(" ---> {}", short_id(&id)));
        }
        Ok(())
    }

    /// Resolves `--chown` (numbers, or names from the image's
    /// `/etc/passwd` and `/etc/group`).
    fn ownership(
        &mut self,
        st: &mut StageState,
        chown: Option<&str>,
        chmod: Option<&str>,
    ) -> Result<Ownership> {
        let mut own = Ownership::default();
        if let Some(m) = chmod {
            own.mode = Some(parse_chmod(&self.expand(st, m)?)?);
        }
        let Some(spec) = chown else { return Ok(own) };
        let spec = self.expand(st, spec)?;
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u.to_string(), Some(g.to_string())),
            None => (spec.clone(), None),
        };
        let need_names = user.parse::<u64>().is_err()
            || group.as_deref().is_some_and(|g| g.parse::<u64>().is_err());
        let (passwd, groups) = if need_names {
            (
                self.image_file(st, "/etc/passwd")?,
                self.image_file(st, "/etc/group")?,
            )
        } else {
            (String::new(), String::new())
        };
        let lookup = |db: &str, name: &str, what: &str| -> Result<(u64, u64)> {
            if let Ok(n) = name.parse::<u64>() {
                return Ok((n, n));
            }
            db.lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 4 && f[0] == name)
                .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().unwrap_or(0))))
                .ok_or_else(|| {
                    anyhow!("unable to find {what} {name}: no matching entries in {what} file")
                })
        };
        let (uid, primary) = lookup(&passwd, &user, "user")?;
        own.uid = uid;
        own.gid = match group {
            Some(g) => lookup(&groups, &g, "group")?.0,
            None if user.parse::<u64>().is_ok() => uid,
            None => primary,
        };
        Ok(own)
    }

    /// Reads a small file of the current image (empty when missing).
    fn image_file(&mut self, st: &mut StageState, path: &str) -> Result<String> {
        if st.image.is_none() {
            return Ok(String::new());
        }
        let cid = self.step_container(st, vec!["/bin/sh".into()], Vec::new(), false)?;
        let result = self.read_container_file(&cid, path);
        self.remove_container(&cid);
        Ok(result.unwrap_or_default())
    }

    fn read_container_file(&mut self, cid: &str, path: &str) -> Result<String> {
        let conn = (self.connect)()?;
        let s = conn.copy_from(cid, path).map_err(api)?;
        let mut ar = tar::Archive::new(s);
        let mut text = String::new();
        if let Some(e) = ar.entries()?.next() {
            e?.take(4 << 20).read_to_string(&mut text)?;
        }
        Ok(text)
    }

    fn copy_instruction(
        &mut self,
        df: &Dockerfile,
        stage: &Stage,
        st: &mut StageState,
        c: &CopyArgs,
        add: bool,
        print: bool,
    ) -> Result<()> {
        let verb = if add { "ADD" } else { "COPY" };
        let fail = |e: anyhow::Error| anyhow!("{verb} failed: {e}");
        let own = self.ownership(st, c.chown.as_deref(), c.chmod.as_deref())?;
        let dest_raw = self.expand(st, &c.dest)?;
        let dest_is_dir_syntax =
            dest_raw.ends_with('/') || dest_raw.ends_with("/.") || dest_raw == ".";
        let dest = if dest_raw.starts_with('/') {
            clean_abs(&dest_raw)
        } else {
            clean_abs(&format!("{}/{dest_raw}", st.workdir()))
        };
        let mut sources = Vec::new();
        for s in &c.sources {
            sources.push(self.expand(st, s)?);
        }
        let mut tar = LayerTar::new()?;
        // Missing directories on the way to the destination are created
        // (0755) and owned like the copied files, as docker does; existing
        // ones are left alone by the engine.
        let dir_own = Ownership { mode: None, ..own };
        let mut upto = String::new();
        let parts: Vec<&str> = dest.split('/').filter(|p| !p.is_empty()).collect();
        let n = if dest_is_dir_syntax {
            parts.len()
        } else {
            parts.len().saturating_sub(1)
        };
        for p in &parts[..n] {
            upto.push('/');
            upto.push_str(p);
            tar.dir(&upto, 0o755, dir_own, now_secs())?;
        }
        let mut what = json!({
            "verb": verb, "dest": dest, "dir": dest_is_dir_syntax,
            "own": [own.uid, own.gid, own.mode],
        });
        if !c.heredocs.is_empty() {
            // COPY <<EOF /dest: the heredoc bodies are the files.
            for h in &c.heredocs {
                let content = if h.expand {
                    berth_dockerfile::expand_heredoc(&h.content, &|n| st.lookup(n))
                        .map_err(|e| anyhow!("{e}"))?
                } else {
                    h.content.clone()
                };
                let target = if dest_is_dir_syntax || c.heredocs.len() > 1 {
                    format!("{dest}/{}", h.name)
                } else {
                    dest.clone()
                };
                tar.file(
                    &target,
                    content.len() as u64,
                    0o644,
                    own,
                    now_secs(),
                    &mut content.as_bytes(),
                )?;
            }
        } else if let Some(from) = &c.from {
            let from = self.expand_global(from)?;
            let image = match Self::stage_ref(df, &from, stage.index) {
                Some(i) => self
                    .stage_images
                    .get(&i)
                    .cloned()
                    .ok_or_else(|| anyhow!("stage {i} was not built"))?,
                None => {
                    if from.eq_ignore_ascii_case(&stage.name.clone().unwrap_or_default()) {
                        bail!("{verb} --from={from}: a stage cannot copy from itself");
                    }
                    self.resolve_image(&from)?
                }
            };
            what["from"] = json!(image);
            what["sources"] = json!(sources);
            let multi = sources.len() > 1;
            if multi && !dest_is_dir_syntax {
                bail!("When using {verb} with more than one source file, the destination must be a directory and end with a /");
            }
            // A container of the source image (never started) to read from.
            let cfg = ContainerConfig {
                image: image.clone(),
                cmd: Some(vec!["/bin/sh".into()]),
                entrypoint: Some(Vec::new()),
                ..Default::default()
            };
            let src_cid = self.ctl.container_create(cfg).map_err(api)?.id;
            let r = (|| -> Result<()> {
                for s in &sources {
                    let path = clean_abs(s);
                    let conn = (self.connect)()?;
                    let stream = conn
                        .copy_from(&src_cid, &path)
                        .map_err(|e| fail(anyhow!("{e}")))?;
                    let top = path.rsplit('/').next().unwrap_or("").to_string();
                    // A directory's contents go below dest; a file lands on
                    // dest (or inside it).
                    let (is_dir, mut peek) = peek_tar_top(stream)?;
                    let target = if is_dir || !(dest_is_dir_syntax || multi) {
                        dest.clone()
                    } else {
                        format!("{dest}/{top}")
                    };
                    let top = if top.is_empty() { "." } else { top.as_str() };
                    context::reroot_archive(&mut tar, &mut peek, &target, Some(top), Some(own))?;
                }
                Ok(())
            })();
            self.remove_container(&src_cid);
            r.map_err(fail)?;
        } else {
            let mut resolved = Vec::new();
            for s in &sources {
                if add && (s.starts_with("http://") || s.starts_with("https://")) {
                    resolved.push((s.clone(), true));
                    continue;
                }
                for r in self.ctx.sources(s).map_err(fail)? {
                    resolved.push((r, false));
                }
            }
            let multi = resolved.len() > 1 || sources.iter().any(|s| s.contains(['*', '?', '[']));
            if resolved.len() > 1 && !dest_is_dir_syntax {
                bail!("When using {verb} with more than one source file, the destination must be a directory and end with a /");
            }
            let _ = multi;
            for (src, is_url) in &resolved {
                if *is_url {
                    self.add_url(&mut tar, src, &dest, dest_is_dir_syntax, own)
                        .map_err(fail)?;
                    continue;
                }
                if add {
                    let path = self.ctx.root().join(src);
                    if path.is_file() {
                        let mut head = vec![0u8; 512];
                        let n = std::fs::File::open(&path)
                            .and_then(|mut f| f.read(&mut head))
                            .unwrap_or(0);
                        head.truncate(n);
                        if let Some(kind) = context::archive_kind(&head) {
                            let f = std::fs::File::open(&path)?;
                            let mut r: Box<dyn Read> = if kind == "gzip" {
                                Box::new(flate2::read::GzDecoder::new(f))
                            } else {
                                Box::new(f)
                            };
                            context::reroot_archive(&mut tar, &mut r, &dest, None, None)
                                .map_err(|e| fail(anyhow!("extracting {src}: {e}")))?;
                            continue;
                        }
                    }
                }
                self.ctx
                    .add_source(
                        &mut tar,
                        src,
                        &dest,
                        dest_is_dir_syntax || resolved.len() > 1,
                        own,
                    )
                    .map_err(fail)?;
            }
        }
        let entries = tar.entries();
        let (f, sum) = tar.finish()?;
        what["sum"] = json!(sum);
        what["entries"] = json!(entries);
        let key = self.cache_key(st, &what);
        if self.cached(st, &key)? {
            return Ok(());
        }
        let created_by = format!(
            "/bin/sh -c #(nop) {verb} {} in {dest} ",
            if c.from.is_some() { "multi" } else { "file" }
        );
        let created_by = format!("{created_by}sum:{}", &sum[..16]);
        self.copy_step(st, f, key, &created_by, false, print)
    }

    /// `ADD <url>`: downloads into the tar (mode 0600, as docker does).
    fn add_url(
        &mut self,
        tar: &mut LayerTar,
        url: &str,
        dest: &str,
        dest_is_dir: bool,
        own: Ownership,
    ) -> Result<()> {
        let resp = ureq::get(url)
            .call()
            .map_err(|e| anyhow!("downloading {url}: {e}"))?;
        let mut body = Vec::new();
        resp.into_reader()
            .take(1 << 30)
            .read_to_end(&mut body)
            .with_context(|| format!("downloading {url}"))?;
        let name = url
            .split(['?', '#'])
            .next()
            .unwrap_or(url)
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("download")
            .to_string();
        let target = if dest_is_dir {
            format!("{dest}/{name}")
        } else {
            dest.to_string()
        };
        let mode = own.mode.unwrap_or(0o600);
        tar.file(
            &target,
            body.len() as u64,
            mode,
            own,
            now_secs(),
            &mut &body[..],
        )
    }
}

/// Reads the first tar header of `r`; returns whether that entry is a
/// directory and a reader that still yields the whole stream.
fn peek_tar_top<R: Read>(mut r: R) -> Result<(bool, impl Read)> {
    let mut head = vec![0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    head.truncate(n);
    let is_dir = n == 512 && head[156] == b'5';
    Ok((is_dir, std::io::Cursor::new(head).chain(r)))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The script a shell-form `RUN` with heredocs runs: a shell heredoc of the
/// same shape (`RUN <<EOF` alone runs the body as the script).
fn heredoc_script(cmd: &str, heredocs: &[Heredoc]) -> String {
    if heredocs.is_empty() {
        return cmd.to_string();
    }
    let bare = cmd.trim();
    if heredocs.len() == 1 && bare.starts_with("<<") && !bare.contains(char::is_whitespace) {
        return heredocs[0].content.clone();
    }
    let mut s = cmd.to_string();
    for h in heredocs {
        s.push('\n');
        s.push_str(&h.content);
        if !h.content.ends_with('\n') {
            s.push('\n');
        }
        s.push_str(&h.name);
    }
    s
}

/// `EXPOSE` words: `80`, `80/udp`, `8000-8002/tcp` (ranges expanded).
pub(crate) fn expand_port(w: &str) -> Result<Vec<String>> {
    let (ports, proto) = match w.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (w, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        bail!("invalid proto: {proto}");
    }
    let bad = || anyhow!("invalid containerPort: {ports}");
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if lo > hi || hi - lo > 1024 {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

fn validate_signal(s: &str) -> Result<()> {
    if s.parse::<u32>().is_ok_and(|n| (1..=64).contains(&n)) {
        return Ok(());
    }
    let name = s.trim_start_matches("SIG");
    const NAMES: &[&str] = &[
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
        "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];
    if NAMES.contains(&name.to_ascii_uppercase().as_str())
        || name.starts_with("RTMIN")
        || name.starts_with("RTMAX")
    {
        Ok(())
    } else {
        bail!("Invalid signal: {s}")
    }
}

/// Largest Dockerfile read.
pub const MAX_DOCKERFILE: u64 = 4 << 20;

/// A whole build: reads and parses `dockerfile`, builds it in the context
/// at `root`, tags the result with every name of `tags` (full references),
/// and returns the image id. `out` takes the build's output (stdout when
/// `None`).
pub fn build_and_tag<'a>(
    connect: Connector<'a>,
    pull: Puller<'a>,
    root: &std::path::Path,
    dockerfile: &std::path::Path,
    tags: &[String],
    opts: BuildOptions,
    out: Option<Box<dyn Write + 'a>>,
) -> Result<String> {
    let ctx = context::BuildContext::open(root)?;
    let mut text = String::new();
    std::fs::File::open(dockerfile)
        .map_err(|e| {
            anyhow!(
                "unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat {}: {}",
                dockerfile.display(),
                e.to_string().split(" (os error").next().unwrap_or("").to_lowercase()
            )
        })?
        .take(MAX_DOCKERFILE)
        .read_to_string(&mut text)
        .map_err(|e| anyhow!("reading {}: {e}", dockerfile.display()))?;
    let name = dockerfile
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "Dockerfile".into());
    let mut df = berth_dockerfile::parse(&name, &text)
        .map_err(|e| anyhow!("Error response from daemon: dockerfile parse error: {e}"))?;
    add_label_step(&mut df, &opts.labels);
    let mut b = Builder::new(connect, pull, ctx, opts)?;
    if let Some(out) = out {
        b.set_output(out);
    }
    let id = b.build(&df)?;
    let mut ctl = connect()?;
    for t in tags {
        ctl.image_tag(&id, t).map_err(api)?;
    }
    Ok(id)
}

/// `--label`s as docker's classic builder takes them: one `LABEL` step,
/// keys sorted, appended to the Dockerfile (so to its last stage, which
/// a `--target` of an earlier stage does not build).
fn add_label_step(df: &mut Dockerfile, labels: &BTreeMap<String, String>) {
    let Some(last) = df.stages.last_mut() else {
        return;
    };
    if labels.is_empty() {
        return;
    }
    let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k:?}='{v}'")).collect();
    last.instructions.push(Instruction {
        loc: last.instructions.last().map_or(last.from.loc, |i| i.loc),
        original: format!("LABEL {}", shown.join(" ")),
        kind: InstructionKind::Label(labels.clone().into_iter().collect()),
    });
}

/// The image config's `Healthcheck` for a HEALTHCHECK instruction, as
/// docker stores it (durations in nanoseconds, unset ones left out); for
/// `build` and for `import --change`.
pub(crate) fn healthcheck_config(h: &Healthcheck) -> Value {
    let mut hc = json!({});
    if h.none {
        hc["Test"] = json!(["NONE"]);
    } else if let Some(t) = &h.test {
        hc["Test"] = match t {
            ShellOrExec::Shell(s) => json!(["CMD-SHELL", s]),
            ShellOrExec::Exec(a) => {
                let mut v = vec!["CMD".to_string()];
                v.extend(a.iter().cloned());
                json!(v)
            }
        };
        for (key, d) in [
            ("Interval", &h.interval),
            ("Timeout", &h.timeout),
            ("StartPeriod", &h.start_period),
            ("StartInterval", &h.start_interval),
        ] {
            if let Some(d) = d {
                hc[key] = json!(d.as_nanos() as u64);
            }
        }
        if let Some(r) = h.retries {
            hc["Retries"] = json!(r);
        }
    }
    hc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_option_is_a_last_label_step() {
        let mut df =
            berth_dockerfile::parse("Dockerfile", "FROM a AS one\nFROM b\nRUN true\n").unwrap();
        add_label_step(&mut df, &BTreeMap::new());
        assert_eq!(df.stages[1].instructions.len(), 1);
        let labels: BTreeMap<String, String> = [("z", "2"), ("a b", "x y")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        add_label_step(&mut df, &labels);
        assert!(df.stages[0].instructions.is_empty());
        let ins = df.stages[1].instructions.last().unwrap();
        assert_eq!(ins.original, "LABEL \"a b\"='x y' \"z\"='2'");
        assert_eq!(
            ins.kind,
            InstructionKind::Label(vec![("a b".into(), "x y".into()), ("z".into(), "2".into())])
        );
    }

    #[test]
    fn ports() {
        assert_eq!(expand_port("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(expand_port("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(expand_port("8000-8002").unwrap().len(), 3);
        assert!(expand_port("http").is_err());
        assert!(expand_port("1-65535").is_err());
        assert!(expand_port("80/xyz").is_err());
    }

    #[test]
    fn heredoc_scripts() {
        let h = |n: &str, c: &str| Heredoc {
            name: n.into(),
            content: c.into(),
            expand: true,
            chomp: false,
        };
        assert_eq!(
            heredoc_script("<<EOF", &[h("EOF", "echo hi\n")]),
            "echo hi\n"
        );
        assert_eq!(
            heredoc_script("cat <<EOF > /x", &[h("EOF", "a\n")]),
            "cat <<EOF > /x\na\nEOF"
        );
    }

    #[test]
    fn signals() {
        assert!(validate_signal("SIGTERM").is_ok());
        assert!(validate_signal("9").is_ok());
        assert!(validate_signal("SIGNOPE").is_err());
    }
}
