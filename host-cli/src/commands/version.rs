//! `berth version`: the client and the engine, in docker's shape, and
//! whether the engine runs the build this client would start.

use crate::commands::connect;
use crate::placement::AgentBuild;
use crate::placement::{self, Isolation};
use anyhow::Result;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct VersionArgs {
    /// Format output using a custom template: 'json', or a Go template
    #[arg(short, long)]
    format: Option<String>,
}

/// The client, with the keys of docker's `Client` (cli's `clientVersion`).
fn client() -> Value {
    let api = berth_host::docker_info::API_VERSION;
    json!({
        "Platform": {"Name": ""},
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": api,
        "DefaultAPIVersion": api,
        "GitCommit": "",
        "GoVersion": "",
        "Os": std::env::consts::OS,
        "Arch": go_arch(std::env::consts::ARCH),
        "BuildTime": "",
        "Context": "default",
        "Experimental": true,
    })
}

/// Docker names architectures as Go does.
fn go_arch(a: &str) -> &str {
    match a {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The engine's facts, or the reason it could not be asked.
fn server(iso: Isolation) -> Result<Value, String> {
    if !iso.has_engine() {
        // Each container's VM boots the agent next to this berth: never stale.
        let agent = placement::agent_binary().map_err(|e| format!("{e:#}"))?;
        return Ok(json!({
            "Version": env!("CARGO_PKG_VERSION"),
            "AgentVersion": env!("CARGO_PKG_VERSION"),
            "Placement": iso_name(iso),
            "Agent": agent.display().to_string(),
            "UpToDate": true,
        }));
    }
    let mut c = connect(iso).map_err(|e| format!("{e:#}"))?;
    let info = c.info().map_err(|e| e.to_string())?;
    // docker's `Server` (the API's /version), and berth's own facts.
    use berth_host::docker_info::{version_value, API_VERSION, MIN_API_VERSION};
    let mut v = version_value(&info, API_VERSION, MIN_API_VERSION);
    v["AgentVersion"] = json!(info.agent_version);
    v["Placement"] = json!(iso_name(iso));
    match iso.agent_build(&c) {
        AgentBuild::Native(agent) => {
            if let Some(a) = agent {
                v["Pid"] = json!(a.pid);
                v["Agent"] = json!(a.exe.display().to_string());
                v["UpToDate"] = json!(a.current);
                if !a.current {
                    v["Outdated"] = json!(format!(
                        "runs an older build than {}; it restarts on the first command after its containers stop",
                        a.expected.display()
                    ));
                }
            }
        }
        AgentBuild::Machine(outdated) => match outdated {
            Some((was, now)) => {
                v["UpToDate"] = json!(false);
                v["Outdated"] = json!(format!(
                        "the machine VM runs the berth-agent of {was}, not {now}; restart it with: berth machine stop"
                    ));
            }
            None => v["UpToDate"] = json!(true),
        },
    }
    Ok(v)
}

pub fn run(iso: Isolation, a: &VersionArgs) -> Result<i32> {
    let client = client();
    let server = server(iso);
    match a.format.as_deref() {
        Some("json") | Some("{{json .}}") => {
            let v = json!({
                "Client": client,
                "Server": server.as_ref().ok(),
            });
            println!("{v}");
        }
        Some(f) => {
            let v = json!({
                "Client": client,
                "Server": server.as_ref().ok(),
            });
            let code = crate::commands::system::print_template(f, &v, "types.VersionResponse")?;
            if code != 0 {
                return Ok(code);
            }
        }
        None => {
            let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
            println!("Client:");
            println!(" Version:           {}", s(&client, "Version"));
            println!(
                " OS/Arch:           {}/{}",
                s(&client, "Os"),
                s(&client, "Arch")
            );
            println!(" Isolation:         {}", iso_name(iso));
            if let Ok(v) = &server {
                println!();
                println!("Server: berth engine");
                println!(" Engine:");
                println!("  Version:          {}", s(v, "AgentVersion"));
                if v.get("KernelVersion").is_some() {
                    println!("  Kernel Version:   {}", s(v, "KernelVersion"));
                    println!("  OS/Arch:          {}/{}", s(v, "Os"), s(v, "Arch"));
                }
                println!("  Placement:        {}", s(v, "Placement"));
                if let Some(p) = v.get("Pid") {
                    println!("  Pid:              {p}");
                }
                if v.get("Agent").is_some() {
                    println!("  Agent:            {}", s(v, "Agent"));
                }
                match v.get("UpToDate").and_then(|u| u.as_bool()) {
                    Some(true) => println!("  Up to date:       yes"),
                    Some(false) => println!("  Up to date:       no: {}", s(v, "Outdated")),
                    None => {}
                }
            }
        }
    }
    // As docker: the client part is printed even when the engine is not
    // reachable, and the command then fails.
    match server {
        Ok(_) => Ok(0),
        Err(e) => {
            eprintln!("berth: cannot reach the {} engine: {e}", iso_name(iso));
            Ok(1)
        }
    }
}

/// The placement as `--isolation` spells it.
fn iso_name(iso: Isolation) -> String {
    use clap::ValueEnum;
    iso.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}
