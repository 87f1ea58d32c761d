//! `berth machine start|stop|suspend|status|logs|counters|shares`.

use crate::machine::{Machine, MachineSpec};
use anyhow::Result;
use serde_json::json;

#[derive(clap::Subcommand)]
pub enum MachineCommand {
    /// Boot the machine VM (no-op when running)
    Start {
        /// Print the boot breakdown
        #[arg(long)]
        timings: bool,
        #[arg(long)]
        cpus: Option<u32>,
        /// Memory in MiB
        #[arg(long)]
        memory: Option<u32>,
    },
    /// Power the machine VM off cleanly (a suspended one: drop its
    /// snapshot)
    Stop,
    /// Save the running machine VM to a snapshot and end its VMM; the next
    /// command resumes it with the same containers, images and published
    /// ports (refused while a connection or mounted share is open)
    Suspend,
    /// Show whether the machine VM runs
    Status {
        #[arg(long)]
        format: Option<String>,
    },
    /// Print the guest's serial console log
    Logs,
    /// Print the guest kernel's work counters since boot (forks, context
    /// switches, interrupts, page faults, CPU ticks, disk writes and
    /// flushes) and the memory the VMM's balloon gave back to the host
    /// (vmm_balloon_*)
    Counters {
        /// Output format: table (default) or json
        #[arg(long)]
        format: Option<String>,
    },
    /// List, or set, the host folders the machine VM shares (bind mounts
    /// must lie in one); a change applies at the next machine start
    Shares {
        /// Share exactly these folders (none: share nothing)
        #[arg(long, num_args = 0.., value_name = "DIR")]
        set: Option<Vec<std::path::PathBuf>>,
        /// Back to the default: the home and the temp directory
        #[arg(long, conflicts_with = "set")]
        reset: bool,
        /// Output format: table (default) or json
        #[arg(long)]
        format: Option<String>,
    },
    /// Serve the machine's published ports on the host (started with the
    /// machine; runs until its VMM exits)
    #[command(hide = true)]
    PortForwarder,
}

pub fn run(cmd: &MachineCommand) -> Result<i32> {
    let m = Machine::default_machine();
    match cmd {
        MachineCommand::Start {
            timings,
            cpus,
            memory,
        } => {
            let mut spec = MachineSpec::default();
            if let Some(c) = cpus {
                spec.cpus = *c;
            }
            if let Some(mm) = memory {
                spec.mem_mib = *mm;
            }
            let t = m.start(spec, true)?;
            m.ensure_port_forwarder();
            if *timings && t.resumed {
                println!("launch → resumed agent ready: {} ms", t.agent_ready_ms);
            } else if *timings {
                println!("prepare (disks, spawn): {} ms", t.prepare_ms);
                if let Some(v) = t.vmm_setup_ms {
                    println!("VMM setup and kernel load: {v} ms");
                }
                if let Some(v) = t.kernel_to_init_ms {
                    println!("kernel → /init: {v} ms");
                }
                if let Some(v) = t.init_to_ready_ms {
                    println!("/init → agent ready: {v} ms");
                }
                println!("launch → agent ready: {} ms", t.agent_ready_ms);
            }
            Ok(0)
        }
        MachineCommand::Stop => {
            if !m.stop()? {
                eprintln!("machine is not running");
            }
            Ok(0)
        }
        MachineCommand::Suspend => {
            let t0 = std::time::Instant::now();
            if m.suspend()? {
                eprintln!(
                    "machine suspended ({} ms); the next command resumes it",
                    t0.elapsed().as_millis()
                );
            } else {
                eprintln!("machine is not running");
            }
            Ok(0)
        }
        MachineCommand::PortForwarder => {
            m.serve_ports()?;
            Ok(0)
        }
        MachineCommand::Shares { set, reset, format } => {
            shares(&m, set.as_deref(), *reset, format.as_deref())
        }
        MachineCommand::Status { format } => {
            let pid = m.vmm_pid();
            if format.as_deref() == Some("json") {
                println!(
                    "{}",
                    json!({"Running": pid.is_some(), "Pid": pid, "Suspended": m.is_suspended(), "Timings": m.timings()})
                );
            } else {
                match pid {
                    Some(p) => println!("running (pid {p})"),
                    None if m.is_suspended() => println!("suspended"),
                    None => println!("stopped"),
                }
            }
            Ok(if pid.is_some() { 0 } else { 1 })
        }
        MachineCommand::Counters { format } => counters(&m, format.as_deref()),
        MachineCommand::Logs => {
            print!(
                "{}",
                std::fs::read_to_string(m.serial_log()).unwrap_or_default()
            );
            Ok(0)
        }
    }
}

/// `machine counters`: the guest kernel's counters, from the agent, and the
/// VMM's balloon counters (`vmm_balloon_*`, from its stats file).
fn counters(m: &Machine, format: Option<&str>) -> Result<i32> {
    if !matches!(format, None | Some("table") | Some("json")) {
        eprintln!(
            "berth: unknown format {:?}: use table or json",
            format.unwrap_or("")
        );
        return Ok(crate::EXIT_ENGINE);
    }
    if m.vmm_pid().is_none() {
        eprintln!("berth: the machine is not running (berth machine start)");
        return Ok(1);
    }
    let mut counters = crate::engine::Engine::open(&m.endpoint())?.kernel_counters()?;
    // The host side: what the VMM's balloon gave back (vmm_balloon_*).
    counters.extend(m.balloon_counters());
    if format == Some("json") {
        println!("{}", serde_json::to_string(&counters)?);
    } else {
        let width = counters.keys().map(|k| k.len()).max().unwrap_or(0);
        for (k, v) in &counters {
            println!("{k:width$}  {v}");
        }
    }
    Ok(0)
}

/// `machine shares`: the setting, and what the running machine shares.
fn shares(
    m: &Machine,
    set: Option<&[std::path::PathBuf]>,
    reset: bool,
    format: Option<&str>,
) -> Result<i32> {
    if !matches!(format, None | Some("table") | Some("json")) {
        eprintln!(
            "berth: unknown format {:?}: use table or json",
            format.unwrap_or("")
        );
        return Ok(crate::EXIT_ENGINE);
    }
    let changed = set.is_some() || reset;
    if let Some(dirs) = set {
        let mut abs = Vec::new();
        for d in dirs {
            let p = std::path::absolute(d)?;
            if !p.is_dir() {
                eprintln!("berth: {} is not a directory", p.display());
                return Ok(crate::EXIT_ENGINE);
            }
            abs.push(p);
        }
        if let Err(e) = crate::shares::save(&abs) {
            eprintln!("berth: {e:#}");
            return Ok(crate::EXIT_ENGINE);
        }
    } else if reset {
        crate::shares::reset()?;
    }
    if changed && std::env::var_os(crate::shares::ENV).is_some() {
        eprintln!(
            "berth: note: {} is set and overrides the saved setting",
            crate::shares::ENV
        );
    }
    let configured = crate::shares::configured();
    let running = m.shares();
    if format == Some("json") {
        println!("{}", json!({"Configured": configured, "Running": running}));
        return Ok(0);
    }
    for p in &configured {
        println!("{}", p.display());
    }
    if let Some(r) = running {
        let now: Vec<std::path::PathBuf> = crate::shares::effective(&configured);
        if r != now {
            eprintln!(
                "berth: the running machine shares {}; stop it (`berth machine stop`) to apply the setting",
                if r.is_empty() {
                    "nothing".to_string()
                } else {
                    r.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                }
            );
        }
    }
    Ok(0)
}
