//! `berth machine start|stop|status|logs`.

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
    /// Power the machine VM off cleanly
    Stop,
    /// Show whether the machine VM runs
    Status {
        #[arg(long)]
        format: Option<String>,
    },
    /// Print the guest's serial console log
    Logs,
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
            if *timings {
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
        MachineCommand::Status { format } => {
            let pid = m.vmm_pid();
            if format.as_deref() == Some("json") {
                println!(
                    "{}",
                    json!({"Running": pid.is_some(), "Pid": pid, "Timings": m.timings()})
                );
            } else {
                match pid {
                    Some(p) => println!("running (pid {p})"),
                    None => println!("stopped"),
                }
            }
            Ok(if pid.is_some() { 0 } else { 1 })
        }
        MachineCommand::Logs => {
            print!(
                "{}",
                std::fs::read_to_string(m.serial_log()).unwrap_or_default()
            );
            Ok(0)
        }
    }
}
