//! Healthchecks: docker's `HealthConfig` (image `Healthcheck`, `--health-*`
//! flags) and the `State.Health` a running container reports. The JSON
//! shapes are docker's, so an image config's `Healthcheck` reads as it is
//! and `inspect` writes them back unchanged.

use serde::{Deserialize, Serialize};

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// docker's `container.HealthConfig`. Durations are nanoseconds; zero
/// means "inherit" (from the image, then docker's defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `[]` inherit, `["NONE"]` disabled, `["CMD", args...]`,
    /// `["CMD-SHELL", command]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

impl HealthConfig {
    /// docker's `merge`: fields the user left unset come from the image.
    pub fn merge(user: Option<HealthConfig>, image: Option<&HealthConfig>) -> Option<HealthConfig> {
        let Some(image) = image else {
            return user;
        };
        let Some(mut u) = user else {
            return Some(image.clone());
        };
        if u.test.is_empty() {
            u.test = image.test.clone();
        }
        let pick = |a: &mut i64, b: i64| {
            if *a == 0 {
                *a = b;
            }
        };
        pick(&mut u.interval, image.interval);
        pick(&mut u.timeout, image.timeout);
        pick(&mut u.start_period, image.start_period);
        pick(&mut u.start_interval, image.start_interval);
        pick(&mut u.retries, image.retries);
        Some(u)
    }

    /// Whether this config runs probes (`CMD` or `CMD-SHELL` with a
    /// command; `NONE`, empty and unknown types do not).
    pub fn probes(&self) -> bool {
        match self.test.first().map(String::as_str) {
            Some("CMD") => self.test.len() > 1,
            Some("CMD-SHELL") => self.test.len() > 1,
            _ => false,
        }
    }
}

pub const STARTING: &str = "starting";
pub const HEALTHY: &str = "healthy";
pub const UNHEALTHY: &str = "unhealthy";

/// One probe's result (docker's `HealthcheckResult`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    /// RFC 3339 with nanoseconds.
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

/// docker's `State.Health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    pub failing_streak: i64,
    #[serde(default)]
    pub log: Vec<HealthResult>,
}
