//! Restart policies (`--restart`): a background thread of the agent that
//! starts containers again after they exit, with docker's rules — `always`
//! and `unless-stopped` restart on any exit, `on-failure[:N]` on a non-zero
//! code up to N times; a container stopped by the user stays stopped. The
//! delay doubles from 100 ms per restart (capped at 1 min) and resets once
//! a run lasted 10 s. Runs after an agent restart too, and after a machine
//! reboot (containers that were running are then "dead").

use super::decide;
use super::files::restart_count;
use super::files::STOPPED;
use super::Engine;
use berth_protocol::ContainerStatus;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Starts the policy thread.
pub fn spawn(engine: Arc<Engine>) {
    // A daemon restart re-arms `always` even for containers the user
    // stopped, as docker does.
    engine.containers.policy_hint.store(true, Ordering::Relaxed);
    for r in engine.containers.records() {
        if r.config.restart.name == "always" {
            let _ = std::fs::remove_file(engine.layout().container(&r.id).join(STOPPED));
        }
    }
    let handle = std::thread::spawn(move || loop {
        // Idle (no file system access at all) until some container has a
        // policy: in an emulated guest even a cheap periodic scan is work,
        // and so is waking up every second to look at the hint.
        if !engine.containers.policy_hint.load(Ordering::Relaxed) {
            // `wake` unparks it when a policy is set.
            std::thread::park_timeout(Duration::from_secs(60));
            continue;
        }
        if !tick(&engine) {
            engine
                .containers
                .policy_hint
                .store(false, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(1000));
    });
    super::containers::set_policy_thread(handle.thread().clone());
}

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// One pass; returns whether any container has a restart policy.
fn tick(engine: &Engine) -> bool {
    let c = &engine.containers;
    let mut any = false;
    for r in c.records() {
        let policy = &r.config.restart;
        if policy.name.is_empty() || policy.name == "no" || r.config.auto_remove {
            continue;
        }
        any = true;
        let dir = engine.layout().container(&r.id);
        // Checked again under the gate right before the start.
        if dir.join(STOPPED).exists() {
            continue;
        }
        let (status, run, exit) = c.status(&r.id);
        let count = restart_count(&dir);
        let ms = |t: &str| parse_time(t).map(|t| t.timestamp_millis());
        let started = run.as_ref().and_then(|s| ms(&s.started_at));
        let finished = exit.as_ref().and_then(|e| ms(&e.finished_at));
        let now = chrono::Utc::now().timestamp_millis();
        let decision =
            decide::restart(policy, status, exit.as_ref(), count, started, finished, now);
        if decision != decide::Restart::Now {
            continue;
        }
        let _gate = c.policy_gate.lock().unwrap_or_else(|e| e.into_inner());
        if dir.join(STOPPED).exists() || c.status(&r.id).0 != status {
            continue; // the user stopped it (or started it) meanwhile
        }
        // Replaced by a rename, as every file a listing reads: that changes
        // the directory, which is how the listing cache sees it
        // (`record_cache`).
        let _ = crate::layout::write_atomic_unsynced(
            &dir.join(super::files::RESTARTS),
            format!("{}\n", count + 1).as_bytes(),
        );
        // After a reboot say so (once per container), so that a restart
        // that does not come back can be told from one never tried.
        let after_reboot = status == ContainerStatus::Dead;
        if after_reboot {
            log::info!(
                "restarting {} after a reboot (--restart {})",
                &r.id[..12],
                policy.name
            );
        }
        let t = std::time::Instant::now();
        match c.start(&r.id, false) {
            Err(e) => log::warn!("restarting {}: {e}", &r.id[..12]),
            Ok(_) if after_reboot => log::info!(
                "restarted {} in {:.1} s",
                &r.id[..12],
                t.elapsed().as_secs_f64()
            ),
            Ok(_) => {}
        }
    }
    any
}
