//! `--init`: the agent binary, bind-mounted at `/sbin/docker-init`, runs as
//! the container's PID 1. It starts the real command, forwards signals to
//! it, reaps every orphaned zombie and exits with the command's status —
//! what `tini` does for docker.

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{execvp, fork, ForkResult, Pid};
use std::ffi::CString;

/// Runs `args` (everything after `--`) as a child; never returns.
pub fn run(args: &[String]) -> ! {
    let args: Vec<&String> = match args.iter().position(|a| a == "--") {
        Some(i) => args[i + 1..].iter().collect(),
        None => args.iter().collect(),
    };
    let Ok(cargs) = args
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
    else {
        eprintln!("docker-init: argument contains a NUL byte");
        std::process::exit(127)
    };
    if cargs.is_empty() {
        eprintln!("docker-init: no command given");
        std::process::exit(127);
    }
    let all = SigSet::all();
    let mut old = SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), Some(&mut old));
    // SAFETY: the child only restores its signal mask and execs.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
            let err = execvp(&cargs[0], &cargs).unwrap_err();
            eprintln!("docker-init: exec {}: {err}", args[0]);
            std::process::exit(if err == nix::errno::Errno::ENOENT {
                127
            } else {
                126
            })
        }
        Ok(ForkResult::Parent { child }) => supervise(child, &all),
        Err(e) => {
            eprintln!("docker-init: fork: {e}");
            std::process::exit(125)
        }
    }
}

fn supervise(child: Pid, set: &SigSet) -> ! {
    loop {
        let sig = set.wait().unwrap_or(Signal::SIGCHLD);
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == child => std::process::exit(code),
                Ok(WaitStatus::Signaled(p, s, _)) if p == child => {
                    std::process::exit(128 + s as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}
