//! The comparison report: its model (the JSON `docs/compare.schema.json`
//! describes), the terminal table and the self-contained HTML page.

use super::probe::{HostFacts, Isolation};
use super::{Options, PlacementKind};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The `schema` value of this report layout; bumped on incompatible
/// changes.
pub const SCHEMA: &str = "berth-compare/1";

/// What a metric is, for the table, the page and the schema's docs.
pub struct MetricDef {
    pub id: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    /// Whether a smaller value is better (time, memory) or a larger one
    /// (throughput).
    pub lower_is_better: bool,
    /// What the row means for the user.
    pub meaning: &'static str,
}

/// Every metric, in report order.
pub const METRICS: [MetricDef; 14] = [
    MetricDef { id: "engine_ready_ms", label: "engine ready", unit: "ms", lower_is_better: true,
        meaning: "connecting to the placement's engine: starts the native agent or boots the machine VM when not running yet" },
    MetricDef { id: "startup_cold_ms", label: "startup, cold", unit: "ms", lower_is_better: true,
        meaning: "first container of the image in this run: request to first output (an own VM boots from its snapshot)" },
    MetricDef { id: "startup_warm_ms", label: "startup, warm", unit: "ms", lower_is_better: true,
        meaning: "each further container: what a short-lived job or a test waits before it does anything" },
    MetricDef { id: "teardown_ms", label: "teardown", unit: "ms", lower_is_better: true,
        meaning: "from exit until the container (and its VM) is gone" },
    MetricDef { id: "exec_ms", label: "exec latency", unit: "ms", lower_is_better: true,
        meaning: "running `true` in a running container: the cost of every docker exec / health check" },
    MetricDef { id: "syscall_ns", label: "syscall", unit: "ns", lower_is_better: true,
        meaning: "one read or write of one byte: what every system call pays in that kernel" },
    MetricDef { id: "fork_exec_us", label: "fork+exec", unit: "µs", lower_is_better: true,
        meaning: "starting one small program: shell scripts, builds and test suites pay this again and again" },
    MetricDef { id: "cpu_loop_ns", label: "CPU loop", unit: "ns", lower_is_better: true,
        meaning: "one iteration of a shell arithmetic loop: pure CPU work, no kernel" },
    MetricDef { id: "page_fault_ns", label: "page fault", unit: "ns", lower_is_better: true,
        meaning: "touching one fresh 4 KiB page (fault + fill): programs that allocate memory pay this" },
    MetricDef { id: "fs_write_mib_s", label: "rootfs write", unit: "MiB/s", lower_is_better: false,
        meaning: "sequential writes with fsync to the container's root file system" },
    MetricDef { id: "bind_write_mib_s", label: "bind-mount write", unit: "MiB/s", lower_is_better: false,
        meaning: "the same writes to a host folder bind-mounted with -v: source trees and build outputs shared with the host (virtio-fs in the machine VM)" },
    MetricDef { id: "net_published_mib_s", label: "published port", unit: "MiB/s", lower_is_better: false,
        meaning: "TCP from a container to the host through -p 127.0.0.1::PORT: what a dev server or database you reach on localhost gets" },
    MetricDef { id: "memory_first_mib", label: "memory, 1 container", unit: "MiB", lower_is_better: true,
        meaning: "PSS of every host process one idle container needs (agent, shim, VMM with the guest RAM it touched)" },
    MetricDef { id: "memory_additional_mib", label: "memory, each further", unit: "MiB", lower_is_better: true,
        meaning: "what each further idle container adds on the host: how many fit in your RAM" },
];

/// The definition of metric `id`.
pub fn def(id: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.id == id)
}

/// One measured number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metric {
    pub id: String,
    pub unit: String,
    /// The median of `samples`; None when the measurement failed.
    pub value: Option<f64>,
    pub samples: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Metric {
    fn new(id: &str) -> Metric {
        Metric {
            id: id.to_string(),
            unit: def(id).map(|d| d.unit).unwrap_or("").to_string(),
            value: None,
            samples: Vec::new(),
            detail: None,
            error: None,
        }
    }

    /// A single measured value.
    pub fn value(id: &str, v: f64) -> Metric {
        Metric::from_samples(id, Ok(vec![v]))
    }

    /// A failed measurement.
    pub fn failed(id: &str, why: &str) -> Metric {
        let mut m = Metric::new(id);
        m.error = Some(why.to_string());
        m
    }

    /// The median of the samples, or the error.
    pub fn from_samples(id: &str, r: anyhow::Result<Vec<f64>>) -> Metric {
        match r {
            Ok(s) if !s.is_empty() => {
                let mut m = Metric::new(id);
                m.value = Some(median(&s));
                m.samples = s;
                m
            }
            Ok(_) => Metric::failed(id, "no samples"),
            Err(e) => Metric::failed(id, &format!("{e:#}")),
        }
    }
}

/// The median (mean of the middle two for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// One placement's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlacementReport {
    pub name: String,
    pub description: String,
    /// Whether the placement could run containers here at all.
    pub available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub isolation: Option<Isolation>,
    pub metrics: Vec<Metric>,
    pub notes: Vec<String>,
}

impl PlacementReport {
    pub fn new(kind: PlacementKind) -> PlacementReport {
        PlacementReport {
            name: kind.name().to_string(),
            description: kind.describe().to_string(),
            available: false,
            error: None,
            isolation: None,
            metrics: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn push(&mut self, m: Metric) {
        self.metrics.retain(|x| x.id != m.id);
        self.metrics.push(m);
    }

    pub fn metric(&self, id: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.id == id)
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub berth_version: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub image: String,
    pub rounds: u32,
    pub workloads: Vec<String>,
    pub host: HostFacts,
    pub placements: Vec<PlacementReport>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(
        opts: &Options,
        host: HostFacts,
        placements: Vec<PlacementReport>,
        notes: Vec<String>,
    ) -> Report {
        Report {
            schema: SCHEMA.to_string(),
            berth_version: env!("CARGO_PKG_VERSION").to_string(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            image: opts.image.clone(),
            rounds: opts.rounds,
            workloads: opts
                .workloads
                .iter()
                .map(|w| w.name().to_string())
                .collect(),
            host,
            placements,
            notes,
        }
    }

    /// The metric ids any placement reported, in [`METRICS`] order.
    fn metric_ids(&self) -> Vec<&'static MetricDef> {
        METRICS
            .iter()
            .filter(|d| self.placements.iter().any(|p| p.metric(d.id).is_some()))
            .collect()
    }

    /// The value of `id` in `placement`, when measured.
    pub fn value(&self, placement: &str, id: &str) -> Option<f64> {
        self.placements
            .iter()
            .find(|p| p.name == placement)?
            .metric(id)?
            .value
    }

    /// One line comparing the placements on metric `d`, relative to the
    /// first placement that has a value (native when measured).
    fn comparison(&self, d: &MetricDef) -> String {
        let vals: Vec<(&str, f64)> = self
            .placements
            .iter()
            .filter_map(|p| Some((p.name.as_str(), p.metric(d.id)?.value?)))
            .filter(|(_, v)| v.is_finite() && *v > 0.0)
            .collect();
        let Some(&(base_name, base)) = vals.first() else {
            return String::new();
        };
        let parts: Vec<String> = vals[1..]
            .iter()
            .map(|(n, v)| {
                let ratio = if d.lower_is_better {
                    v / base
                } else {
                    base / v
                };
                if ratio >= 1.05 {
                    format!("{n} {} worse than {base_name}", times(ratio))
                } else if ratio <= 1.0 / 1.05 {
                    format!("{n} {} better than {base_name}", times(1.0 / ratio))
                } else {
                    format!("{n} about the same as {base_name}")
                }
            })
            .collect();
        parts.join("; ")
    }

    /// The aligned terminal table, one explanation line under each row.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "berth compare: {} ({} round(s))",
            self.image, self.rounds
        );
        let _ = writeln!(
            out,
            "host: kernel {}, {} x {}",
            self.host.kernel, self.host.cpus, self.host.cpu_model
        );
        let _ = writeln!(out, "virtualization: {}", self.host.virtualization.summary);
        out.push('\n');
        let mut rows: Vec<(String, Vec<String>, String)> = Vec::new();
        for d in self.metric_ids() {
            let cells = self
                .placements
                .iter()
                .map(|p| match p.metric(d.id) {
                    Some(Metric { value: Some(v), .. }) => format!("{} {}", number(*v), d.unit),
                    Some(Metric { error: Some(_), .. }) => "failed".into(),
                    _ => "-".into(),
                })
                .collect();
            let cmp = self.comparison(d);
            let meaning = if cmp.is_empty() {
                d.meaning.to_string()
            } else {
                format!("{cmp}. {}", d.meaning)
            };
            rows.push((d.label.to_string(), cells, meaning));
        }
        for (label, f) in ISOLATION_ROWS {
            let cells = self
                .placements
                .iter()
                .map(|p| {
                    p.isolation
                        .as_ref()
                        .map(|i| f(i, &self.host))
                        .unwrap_or_else(|| "-".into())
                })
                .collect();
            rows.push((label.0.to_string(), cells, label.1.to_string()));
        }
        let header: Vec<String> = self.placements.iter().map(|p| p.name.clone()).collect();
        let w0 = rows
            .iter()
            .map(|r| r.0.chars().count())
            .max()
            .unwrap_or(0)
            .max(6);
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r.1[i].chars().count())
                    .chain([header[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |out: &mut String, first: &str, cells: &[String]| {
            let _ = write!(out, "{first:<w0$}");
            for (c, w) in cells.iter().zip(&widths) {
                let _ = write!(out, "  {c:>w$}");
            }
            out.push('\n');
        };
        line(&mut out, "", &header);
        for (label, cells, meaning) in &rows {
            line(&mut out, label, cells);
            let _ = writeln!(out, "  ↳ {meaning}");
        }
        for p in &self.placements {
            if let Some(e) = &p.error {
                let _ = writeln!(out, "\n{}: {e}", p.name);
            }
            for m in p
                .metrics
                .iter()
                .filter_map(|m| Some((m.id.as_str(), m.error.as_ref()?)))
            {
                let _ = writeln!(out, "{}: {} failed: {}", p.name, m.0, m.1);
            }
            for n in &p.notes {
                let _ = writeln!(out, "{}: {n}", p.name);
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }

    /// A self-contained HTML page: inline CSS and SVG, no scripts, nothing
    /// loaded from anywhere.
    pub fn html(&self) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>berth compare: {img}</title><style>{CSS}</style></head><body>\n\
             <h1>berth compare: {img}</h1>\n<p class=\"virt\">{virt}</p>\n\
             <p>Host kernel <code>{kernel}</code>, {cpus} × {cpu}; {rounds} round(s); report made {created} by berth {ver}.</p>\n",
            img = esc(&self.image),
            virt = esc(&self.host.virtualization.summary),
            kernel = esc(&self.host.kernel),
            cpus = self.host.cpus,
            cpu = esc(&self.host.cpu_model),
            rounds = self.rounds,
            created = esc(&self.created),
            ver = esc(&self.berth_version),
        );
        h.push_str("<h2>Placements</h2>\n<ul>");
        for p in &self.placements {
            let _ = write!(h, "<li><b>{}</b>: {}", esc(&p.name), esc(&p.description));
            if let Some(e) = &p.error {
                let _ = write!(h, " <span class=\"err\">({})</span>", esc(e));
            }
            h.push_str("</li>");
        }
        h.push_str("</ul>\n<h2>Measurements</h2>\n");
        for d in self.metric_ids() {
            let _ = writeln!(
                h,
                "<section><h3>{} <small>({}, {})</small></h3>",
                esc(d.label),
                esc(d.unit),
                if d.lower_is_better {
                    "lower is better"
                } else {
                    "higher is better"
                }
            );
            h.push_str(&self.bars(d));
            let cmp = self.comparison(d);
            if !cmp.is_empty() {
                let _ = write!(h, "<p class=\"cmp\">{}.</p>", esc(&cmp));
            }
            let _ = writeln!(h, "<p class=\"meaning\">{}</p></section>", esc(d.meaning));
        }
        h.push_str(
            "<h2>Isolation, as probed from inside each container</h2>\n<table><tr><th></th>",
        );
        for p in &self.placements {
            let _ = write!(h, "<th>{}</th>", esc(&p.name));
        }
        h.push_str("<th>what it means</th></tr>\n");
        for (label, f) in ISOLATION_ROWS {
            let _ = write!(h, "<tr><th>{}</th>", esc(label.0));
            for p in &self.placements {
                let v = p
                    .isolation
                    .as_ref()
                    .map(|i| f(i, &self.host))
                    .unwrap_or_else(|| "-".into());
                let _ = write!(h, "<td>{}</td>", esc(&v));
            }
            let _ = writeln!(h, "<td class=\"meaning\">{}</td></tr>", esc(label.1));
        }
        h.push_str("</table>\n");
        let mut notes: Vec<String> = self.notes.clone();
        for p in &self.placements {
            notes.extend(p.notes.iter().map(|n| format!("{}: {n}", p.name)));
            notes.extend(p.metrics.iter().filter_map(|m| {
                Some(format!(
                    "{}: {} failed: {}",
                    p.name,
                    m.id,
                    m.error.as_ref()?
                ))
            }));
        }
        if !notes.is_empty() {
            h.push_str("<h2>Notes</h2><ul>");
            for n in notes {
                let _ = write!(h, "<li>{}</li>", esc(&n));
            }
            h.push_str("</ul>");
        }
        h.push_str("</body></html>\n");
        h
    }

    /// Horizontal bars, one per placement, scaled to the largest value.
    fn bars(&self, d: &MetricDef) -> String {
        let vals: Vec<(&str, Option<f64>)> = self
            .placements
            .iter()
            .map(|p| (p.name.as_str(), p.metric(d.id).and_then(|m| m.value)))
            .collect();
        let max = vals
            .iter()
            .filter_map(|v| v.1)
            .filter(|v| v.is_finite())
            .fold(0.0_f64, f64::max);
        let row = 26;
        let height = row * vals.len() + 4;
        let mut s = format!(
            "<svg width=\"640\" height=\"{height}\" \
             viewBox=\"0 0 640 {height}\" role=\"img\" aria-label=\"{}\">",
            esc(d.label)
        );
        for (i, (name, v)) in vals.iter().enumerate() {
            let y = i * row + 2;
            let _ = write!(
                s,
                "<text x=\"0\" y=\"{}\" class=\"lbl\">{}</text>",
                y + 17,
                esc(name)
            );
            match v {
                Some(v) if v.is_finite() && max > 0.0 => {
                    let w = ((v / max) * 400.0).max(1.0);
                    let _ = write!(
                        s,
                        "<rect x=\"70\" y=\"{y}\" width=\"{w:.1}\" height=\"20\" class=\"bar {name}\"/>\
                         <text x=\"{:.1}\" y=\"{}\" class=\"val\">{} {}</text>",
                        70.0 + w + 6.0,
                        y + 15,
                        number(*v),
                        esc(d.unit),
                        name = esc(name)
                    );
                }
                _ => {
                    let _ = write!(
                        s,
                        "<text x=\"70\" y=\"{}\" class=\"val\">not measured</text>",
                        y + 15
                    );
                }
            }
        }
        s.push_str("</svg>\n");
        s
    }
}

type IsoRow = (
    (&'static str, &'static str),
    fn(&Isolation, &HostFacts) -> String,
);

/// The isolation rows: label, what it means, and the cell.
const ISOLATION_ROWS: [IsoRow; 12] = [
    (
        ("kernel", "whose kernel the container's system calls reach: a bug there is the host's problem, or only this VM's"),
        |i, _| {
            format!(
                "{} ({})",
                i.kernel,
                if i.own_kernel { "own" } else { "host's" }
            )
        },
    ),
    (
        ("host boot id", "whether the container reads the host's boot id: the same kernel instance as the host"),
        |i, _| if i.sees_host_boot_id { "visible".into() } else { "not visible".into() },
    ),
    (
        ("processes seen", "processes visible from inside (the probe's own included); the host has far more"),
        |i, h| format!("{} (host {})", i.processes_visible, h.processes),
    ),
    (
        ("cpu model", "what /proc/cpuinfo shows: the host's CPU, or the one the VMM presents"),
        |i, _| format!("{} × {}", i.cpus, i.cpu_model),
    ),
    (
        ("mounts / devices", "mount table lines and /dev entries the container sees"),
        |i, _| format!("{} / {}", i.mounts, i.devices),
    ),
    (
        ("seccomp", "seccomp mode (2 = filter) of the container's processes: which syscalls reach the kernel"),
        |i, _| match i.seccomp.as_str() {
            "2" => format!("filter ({})", i.seccomp_filters),
            "1" => "strict".into(),
            "0" => "off".into(),
            other => other.to_string(),
        },
    ),
    (
        ("syscalls allowed", "system call numbers the live seccomp filters let through to the host's kernel, of all the arch has: the container's own on the host's kernel, the VMM's threads' (their union) behind a VM"),
        |i, _| syscalls_cell(i),
    ),
    (
        ("capabilities", "effective capabilities in that kernel (docker's default set is 14)"),
        |i, _| format!("{} ({})", i.capabilities, i.cap_eff),
    ),
    (
        ("namespaces shared", "namespaces the container shares with the host (none of its own kernel's can be)"),
        |i, _| {
            if i.own_kernel {
                "n/a (own kernel)".into()
            } else if i.shared_namespaces.is_empty() {
                "none".into()
            } else {
                i.shared_namespaces.join(",")
            }
        },
    ),
    (
        ("VMM surface", "virtio devices the guest kernel reaches, and whether the host-side VMM runs under seccomp"),
        |i, _| match i.vmm_seccomp {
            None => "no VMM".into(),
            Some(s) => format!(
                "{} virtio, VMM seccomp {}",
                i.virtio_devices,
                if s { "on" } else { "off" }
            ),
        },
    ),
    (
        ("VMM exits", "the exits the guest can cause in the host-side VMM, as the running VMM's binary reports them (berth-vmm --describe): those handed to its device models are its attack surface"),
        |i, _| exits_cell(i),
    ),
    (
        ("guest kernel panic", "--destructive: a panic forced from a privileged container, with a witness container in another VM; what it took down"),
        |i, _| match &i.panic_trial {
            None => "not run (needs --destructive)".into(),
            Some(t) if t.contained() => {
                "only its own VM (the witness and the host carried on)".into()
            }
            Some(t) if !t.ran => t.note.clone().unwrap_or_default(),
            Some(t) => format!(
                "not shown: panic {}, VM ended {}, witness unaffected {}, host unaffected {}{}",
                yes_no(t.panic_seen),
                yes_no(t.vm_ended),
                yes_no(t.witness_unaffected),
                yes_no(t.host_unaffected),
                t.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
            ),
        },
    ),
];

/// The `VMM exits` cell: the exits grouped by what the VMM does.
fn exits_cell(i: &Isolation) -> String {
    if i.vmm_exits.is_empty() {
        return match i.vmm_seccomp {
            None => "no VMM".into(),
            Some(_) => match i.syscalls_notes.iter().find(|n| n.contains("exits")) {
                Some(n) => format!("not read: {n}"),
                None => "not read".into(),
            },
        };
    }
    let mut parts = Vec::new();
    for (h, label) in [
        ("device", "to devices"),
        ("end", "end the VM"),
        ("fail", "fail the VM"),
        ("resume", "resume"),
    ] {
        let kinds: Vec<&str> = i
            .vmm_exits
            .iter()
            .filter(|e| e.handling == h)
            .map(|e| e.kind.as_str())
            .collect();
        if !kinds.is_empty() {
            parts.push(format!("{label}: {}", kinds.join(", ")));
        }
    }
    parts.join("; ")
}

/// The `syscalls allowed` cell.
fn syscalls_cell(i: &Isolation) -> String {
    let by_args = |n: u32| {
        if n > 0 {
            format!(" ({n} by arguments)")
        } else {
            String::new()
        }
    };
    if let Some(c) = &i.syscalls {
        return if c.filters == 0 {
            format!("all {} (no filter)", c.total)
        } else {
            format!("{} / {}{}", c.allowed, c.total, by_args(c.arg_dependent))
        };
    }
    if let Some(v) = &i.vmm_syscalls {
        let c = &v.count;
        return if c.filters == 0 {
            format!("VMM: all {} (no filter)", c.total)
        } else {
            format!(
                "VMM: {} / {}{} over {} threads",
                c.allowed,
                c.total,
                by_args(c.arg_dependent),
                v.threads
            )
        };
    }
    match i.syscalls_notes.iter().find(|n| !n.contains("exits")) {
        Some(n) => format!("not read: {n}"),
        None => "not read".into(),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222;background:#fff}\
h3 small{font-weight:normal;color:#666}.virt{background:#fff4d6;border-left:4px solid #e0a800;padding:.5rem}\
.meaning{color:#555}.cmp{margin:.2rem 0}.err{color:#b00}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}\
svg .lbl,svg .val{font-size:13px;fill:#222}.bar{fill:#4a7fb5}.bar.shared{fill:#d08c2e}.bar.vm{fill:#7a4ab5}.bar.docker{fill:#2e9d5b}";

/// `x` times, as words.
fn times(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}x")
    } else {
        format!("{r:.1}x")
    }
}

/// A value with about three significant digits.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// HTML text escaping.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::probe::PanicTrial;

    fn sample() -> Report {
        let mut native = PlacementReport::new(PlacementKind::Native);
        native.available = true;
        native.push(Metric::value("startup_warm_ms", 100.0));
        native.push(Metric::failed("exec_ms", "boom <b>"));
        let mut vm = PlacementReport::new(PlacementKind::Vm);
        vm.available = true;
        vm.push(Metric::value("startup_warm_ms", 2000.0));
        vm.isolation = Some(Isolation {
            kernel: "<script>alert(1)</script>".into(),
            own_kernel: true,
            ..Default::default()
        });
        let opts = Options {
            image: "img\"&".into(),
            ..Default::default()
        };
        Report::new(&opts, HostFacts::default(), vec![native, vm], vec![])
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn table_explains_every_row_and_compares() {
        let t = sample().table();
        assert!(t.contains("startup, warm"), "{t}");
        assert!(t.contains("vm 20x worse than native"), "{t}");
        assert!(t.contains("exec_ms failed: boom"), "{t}");
        let rows = t.lines().filter(|l| l.starts_with("startup, warm")).count();
        let meanings = t.lines().filter(|l| l.starts_with("  ↳")).count();
        assert_eq!(rows, 1);
        assert!(meanings >= 2);
    }

    #[test]
    fn html_escapes_what_containers_said() {
        let h = sample().html();
        assert!(!h.contains("<script"), "probe values are escaped");
        assert!(h.contains("&lt;script&gt;"));
        assert!(!h.contains("http"), "no address of any kind");
        assert!(!h.contains("src="), "nothing is loaded");
        assert!(h.contains("<svg"));
    }

    #[test]
    fn the_panic_row_says_what_was_taken_down() {
        let mut r = sample();
        let cell = |r: &Report| {
            let t = r.table();
            t.lines()
                .find(|l| l.starts_with("guest kernel panic"))
                .map(str::to_string)
                .unwrap_or_else(|| panic!("no panic row: {t}"))
        };
        assert!(cell(&r).contains("needs --destructive"), "{}", cell(&r));
        let contained = PanicTrial {
            ran: true,
            note: None,
            panic_seen: true,
            vm_ended: true,
            witness_unaffected: true,
            host_unaffected: true,
        };
        assert!(contained.contained());
        r.placements[1].isolation.as_mut().unwrap().panic_trial = Some(contained.clone());
        assert!(cell(&r).contains("only its own VM"), "{}", cell(&r));
        // Any missing piece of evidence is not "contained", and says which.
        let witness_lost = PanicTrial {
            witness_unaffected: false,
            note: Some("boom".into()),
            ..contained
        };
        assert!(!witness_lost.contained());
        r.placements[1].isolation.as_mut().unwrap().panic_trial = Some(witness_lost);
        let c = cell(&r);
        assert!(
            c.contains("witness unaffected no") && c.contains("(boom)"),
            "{c}"
        );
        assert!(!PanicTrial::not_run("x").contained());
    }

    #[test]
    fn json_round_trips() {
        let r = sample();
        let s = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&s).unwrap();
        assert_eq!(back.placements.len(), 2);
        assert_eq!(back.value("vm", "startup_warm_ms"), Some(2000.0));
    }
}
