//! The engine's decisions as pure functions of what a container's files
//! say ([`RunState`], [`ExitState`], the restart count) and of what the
//! caller found alive: the container's status, the exit code `ps` shows,
//! and whether a restart policy restarts it now. The callers
//! (`super::containers`, `super::restart`) do the I/O.

use super::record::{ExitState, RunState};
use berth_protocol::{ContainerStatus, RestartPolicy};

/// What the caller found about a recorded run's shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// The run is from this boot of the kernel.
    pub same_boot: bool,
    /// Its shim process still exists.
    pub shim_alive: bool,
    /// The container's paused marker is there.
    pub paused: bool,
}

/// A container's status from its run and exit records; `live` is asked
/// only when the records leave it open (a run without its exit).
pub fn status(
    run: Option<&RunState>,
    exit: Option<&ExitState>,
    live: impl FnOnce(&RunState) -> Liveness,
) -> ContainerStatus {
    match (run, exit) {
        (_, Some(e)) if e.started_at.is_none() => ContainerStatus::Created,
        (Some(r), Some(e)) if e.started_at.as_deref() == Some(r.started_at.as_str()) => {
            ContainerStatus::Exited
        }
        (Some(r), _) => {
            let l = live(r);
            if l.same_boot && l.shim_alive {
                if l.paused {
                    ContainerStatus::Paused
                } else {
                    ContainerStatus::Running
                }
            } else {
                ContainerStatus::Dead
            }
        }
        (None, _) => ContainerStatus::Created,
    }
}

/// The status and exit code a listing shows: a dead container (its shim
/// gone without an exit record) is shown exited with 255.
pub fn shown(status: ContainerStatus, exit: Option<&ExitState>) -> (ContainerStatus, Option<i32>) {
    match status {
        ContainerStatus::Exited | ContainerStatus::Created => (status, exit.map(|e| e.code)),
        ContainerStatus::Dead => (ContainerStatus::Exited, Some(255)),
        ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting => {
            (status, None)
        }
    }
}

/// What a restart policy says about a container now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Not a candidate: no policy, still running, or the policy is done.
    No,
    /// A candidate whose back-off delay has not passed yet.
    Later,
    /// Restart it now.
    Now,
}

/// The restart decision (docker's rules): `always` and `unless-stopped`
/// restart after any exit, `on-failure[:N]` after a non-zero one up to N
/// restarts; a container that died with an earlier boot counts as exit
/// 255, a restart that failed to start is retried. The delay doubles from
/// 100 ms per restart (at most 1 min) and is 100 ms again after a run of
/// 10 s or more. Times are milliseconds since the epoch; `None` where a
/// record has none (or it does not parse). The caller checks the policy
/// name is set, auto-remove, and the user's stop.
#[allow(clippy::too_many_arguments)]
pub fn restart(
    policy: &RestartPolicy,
    status: ContainerStatus,
    exit: Option<&ExitState>,
    count: u32,
    started_ms: Option<i64>,
    finished_ms: Option<i64>,
    now_ms: i64,
) -> Restart {
    let code = match (status, exit) {
        (ContainerStatus::Exited, Some(e)) if e.started_at.is_some() => e.code,
        (ContainerStatus::Dead, _) => 255,
        (ContainerStatus::Created, Some(e)) if e.error.is_some() && count > 0 => e.code,
        _ => return Restart::No,
    };
    if policy.name == "on-failure"
        && (code == 0 || (policy.maximum_retry_count > 0 && count >= policy.maximum_retry_count))
    {
        return Restart::No;
    }
    // A dead container has no exit record: count from its start, so the
    // delay does elapse.
    let finished = finished_ms.or(started_ms).unwrap_or(i64::MIN);
    let ran_long = started_ms.is_some_and(|s| finished.saturating_sub(s) >= 10_000);
    let delay_ms = if ran_long {
        100
    } else {
        (100i64 << count.min(10)).min(60_000)
    };
    if now_ms.saturating_sub(finished) < delay_ms {
        Restart::Later
    } else {
        Restart::Now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(started: &str) -> RunState {
        RunState {
            pid: 10,
            shim_pid: 9,
            started_at: started.into(),
            boot_id: "b".into(),
        }
    }

    fn exit(code: i32, started: Option<&str>, error: Option<&str>) -> ExitState {
        ExitState {
            code,
            finished_at: "t1".into(),
            started_at: started.map(Into::into),
            error: error.map(Into::into),
        }
    }

    const ALIVE: Liveness = Liveness {
        same_boot: true,
        shim_alive: true,
        paused: false,
    };

    fn never(_: &RunState) -> Liveness {
        panic!("liveness asked although the records decide")
    }

    #[test]
    fn status_from_records() {
        assert_eq!(status(None, None, never), ContainerStatus::Created);
        // Exit before the start (the start failed): created.
        let failed = exit(127, None, Some("not found"));
        assert_eq!(
            status(Some(&run("t0")), Some(&failed), never),
            ContainerStatus::Created
        );
        // The exit of this very run: exited.
        let done = exit(3, Some("t0"), None);
        assert_eq!(
            status(Some(&run("t0")), Some(&done), never),
            ContainerStatus::Exited
        );
        assert_eq!(status(None, Some(&done), never), ContainerStatus::Created);
    }

    #[test]
    fn status_of_a_run_without_its_exit_asks_liveness() {
        // An exit of an earlier run does not end the current one.
        let earlier = exit(0, Some("t-1"), None);
        let r = run("t0");
        assert_eq!(
            status(Some(&r), Some(&earlier), |_| ALIVE),
            ContainerStatus::Running
        );
        let paused = Liveness {
            paused: true,
            ..ALIVE
        };
        assert_eq!(status(Some(&r), None, |_| paused), ContainerStatus::Paused);
        let other_boot = Liveness {
            same_boot: false,
            ..ALIVE
        };
        assert_eq!(
            status(Some(&r), None, |_| other_boot),
            ContainerStatus::Dead
        );
        let gone = Liveness {
            shim_alive: false,
            paused: true,
            ..ALIVE
        };
        assert_eq!(status(Some(&r), None, |_| gone), ContainerStatus::Dead);
    }

    #[test]
    fn shown_status_and_code() {
        let e = exit(3, Some("t0"), None);
        assert_eq!(
            shown(ContainerStatus::Exited, Some(&e)),
            (ContainerStatus::Exited, Some(3))
        );
        assert_eq!(
            shown(ContainerStatus::Created, None),
            (ContainerStatus::Created, None)
        );
        assert_eq!(
            shown(ContainerStatus::Dead, Some(&e)),
            (ContainerStatus::Exited, Some(255))
        );
        assert_eq!(
            shown(ContainerStatus::Running, Some(&e)),
            (ContainerStatus::Running, None)
        );
    }

    fn policy(name: &str, max: u32) -> RestartPolicy {
        RestartPolicy {
            name: name.into(),
            maximum_retry_count: max,
        }
    }

    #[test]
    fn restart_policies() {
        let ok = exit(0, Some("t0"), None);
        let bad = exit(1, Some("t0"), None);
        let at = |p: &RestartPolicy, e: &ExitState, count| {
            restart(
                p,
                ContainerStatus::Exited,
                Some(e),
                count,
                Some(0),
                Some(1_000),
                1_000_000,
            )
        };
        assert_eq!(at(&policy("always", 0), &ok, 0), Restart::Now);
        assert_eq!(at(&policy("unless-stopped", 0), &ok, 5), Restart::Now);
        assert_eq!(at(&policy("on-failure", 0), &ok, 0), Restart::No);
        assert_eq!(at(&policy("on-failure", 0), &bad, 50), Restart::Now);
        assert_eq!(at(&policy("on-failure", 2), &bad, 1), Restart::Now);
        assert_eq!(at(&policy("on-failure", 2), &bad, 2), Restart::No);
        // Running, or created and never tried: not a candidate.
        let p = policy("always", 0);
        assert_eq!(
            restart(&p, ContainerStatus::Running, None, 0, Some(0), None, 9),
            Restart::No
        );
        assert_eq!(
            restart(&p, ContainerStatus::Created, None, 0, None, None, 9),
            Restart::No
        );
        // A failed restart is tried again; a failed first start is not.
        let failed = exit(127, None, Some("no such file"));
        let c = ContainerStatus::Created;
        assert_eq!(
            restart(&p, c, Some(&failed), 1, None, Some(0), 1_000_000),
            Restart::Now
        );
        assert_eq!(
            restart(&p, c, Some(&failed), 0, None, Some(0), 1_000_000),
            Restart::No
        );
        // Dead (an earlier boot): exit 255, timed from its start.
        let f = policy("on-failure", 0);
        let d = ContainerStatus::Dead;
        assert_eq!(restart(&f, d, None, 0, Some(0), None, 99), Restart::Later);
        assert_eq!(restart(&f, d, None, 0, Some(0), None, 100), Restart::Now);
    }

    #[test]
    fn restart_back_off_doubles_and_resets_after_a_long_run() {
        let p = policy("always", 0);
        let e = exit(0, Some("t0"), None);
        let ex = ContainerStatus::Exited;
        // Short run (1 s): 100 ms << count, capped at 60 s.
        let after = |count, waited| {
            restart(
                &p,
                ex,
                Some(&e),
                count,
                Some(0),
                Some(1_000),
                1_000i64 + waited,
            )
        };
        assert_eq!(after(0, 99), Restart::Later);
        assert_eq!(after(0, 100), Restart::Now);
        assert_eq!(after(3, 799), Restart::Later);
        assert_eq!(after(3, 800), Restart::Now);
        assert_eq!(after(20, 59_999), Restart::Later);
        assert_eq!(after(20, 60_000), Restart::Now);
        // A run of 10 s resets the delay to 100 ms.
        let long = restart(&p, ex, Some(&e), 20, Some(0), Some(10_000), 10_100);
        assert_eq!(long, Restart::Now);
        let short = restart(&p, ex, Some(&e), 20, Some(0), Some(9_999), 10_099);
        assert_eq!(short, Restart::Later);
    }
}
