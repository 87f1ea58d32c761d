//! `events`: the engine's event stream, printed as docker's CLI prints it.

use crate::commands::connect;
use crate::fmt::{Template, TemplateValue};
use crate::placement::Isolation;
use anyhow::Result;
use berth_protocol::{ErrorKind, Event, EventsOptions};
use chrono::{Local, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};

#[derive(clap::Args)]
pub struct EventsArgs {
    /// Show all events created since timestamp
    #[arg(long)]
    since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    until: Option<String>,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template ('json' prints each event as JSON)
    #[arg(long)]
    format: Option<String>,
}

pub fn events(iso: Isolation, a: &EventsArgs) -> Result<i32> {
    let mut filters: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &a.filter {
        let Some((k, v)) = f.split_once('=') else {
            eprintln!("invalid argument \"{f}\" for \"-f, --filter\" flag: bad format of filter (expected name=value)");
            return Ok(125);
        };
        filters
            .entry(k.trim().to_lowercase())
            .or_default()
            .push(v.trim().to_string());
    }
    let template = match a.format.as_deref() {
        None | Some("") => None,
        Some("json") => Some(Template::parse("{{json .}}").expect("static template")),
        // docker's CLI tries the template on an empty event first.
        Some(f) => match Template::parse(f).and_then(|t| {
            let empty = serde_json::to_value(Event::default()).unwrap_or_default();
            t.render(&|f, _| field(&empty, f), &empty, MESSAGE_TYPE)
                .map(|_| t)
        }) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("Error parsing format: {e}");
                return Ok(64);
            }
        },
    };
    let now = chrono::Utc::now();
    let time = |o: &Option<String>| o.as_deref().map(|s| docker_timestamp(s, now)).transpose();
    let (since, until) = match (time(&a.since), time(&a.until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    let stream = match connect(iso)?.events(EventsOptions {
        since,
        until,
        filters,
    }) {
        Ok(s) => s,
        Err(e) => {
            if e.kind() == Some(ErrorKind::NotFound) {
                eprintln!("Error: {e}");
            } else {
                eprintln!("Error response from daemon: {e}");
            }
            return Ok(1);
        }
    };
    let mut out = std::io::stdout();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let Ok(ev) = serde_json::from_str::<Event>(&line) else {
            continue;
        };
        let text = match &template {
            None => pretty(&ev),
            Some(t) => {
                let whole = serde_json::to_value(&ev).unwrap_or_default();
                match t.render(&|f, _| field(&whole, f), &whole, MESSAGE_TYPE) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("{e}");
                        return Ok(1);
                    }
                }
            }
        };
        if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
            return Ok(0);
        }
    }
    Ok(0)
}

/// The Go type docker's templates run on, as its errors name it.
const MESSAGE_TYPE: &str = "*events.Message";

/// docker's `prettyPrintEvent`: local time with nanoseconds, type, action,
/// actor id and the attributes sorted by key.
pub fn pretty(ev: &Event) -> String {
    let mut s = String::new();
    if ev.time_nano != 0 || ev.time != 0 {
        let n = if ev.time_nano != 0 {
            ev.time_nano
        } else {
            ev.time * 1_000_000_000
        };
        s.push_str(&local_time(n));
        s.push(' ');
    }
    s.push_str(&format!("{} {} {}", ev.kind, ev.action, ev.actor.id));
    if !ev.actor.attributes.is_empty() {
        let attrs: Vec<String> = ev
            .actor
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        s.push_str(&format!(" ({})", attrs.join(", ")));
    }
    s
}

/// Go's `RFC3339NanoFixed` (`2006-01-02T15:04:05.000000000Z07:00`) in the
/// local zone.
fn local_time(nanos: i64) -> String {
    let t = Local.timestamp_nanos(nanos);
    let zone = if t.offset().local_minus_utc() == 0 {
        "Z".to_string()
    } else {
        t.format("%:z").to_string()
    };
    format!("{}{zone}", t.format("%Y-%m-%dT%H:%M:%S%.9f"))
}

/// A template field of docker's `events.Message` (`.Type`, `.Actor.ID`,
/// `.Actor.Attributes.name`, …).
fn field(whole: &serde_json::Value, path: &str) -> Option<TemplateValue> {
    if path == "Actor" {
        // A Go struct prints as `{ID map[k:v …]}`.
        let a = &whole["Actor"];
        let attrs: Vec<String> = a["Attributes"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let id = a["ID"].as_str().unwrap_or_default();
        return Some(TemplateValue::Text(format!(
            "{{{id} map[{}]}}",
            attrs.join(" ")
        )));
    }
    let mut v = whole;
    for (i, part) in path.split('.').enumerate() {
        let key = match (i, part) {
            (0, "Status") => "status",
            (0, "ID") => "id",
            (0, "From") => "from",
            (0, "Scope") => "scope",
            (0, "Time") => "time",
            (0, "TimeNano") => "timeNano",
            (0, "Type" | "Action" | "Actor") => part,
            (0, _) => return None,
            _ => part,
        };
        v = match v.get(key) {
            Some(x) => x,
            // A missing map key prints as Go's `<no value>`; a legacy
            // field left out is empty.
            None if i > 0 && v.is_object() && path.starts_with("Actor.Attributes") => {
                return Some(TemplateValue::Text("<no value>".into()))
            }
            None if i == 0 => return Some(TemplateValue::Text(String::new())),
            None => return None,
        };
    }
    Some(match v {
        serde_json::Value::String(s) => TemplateValue::Text(s.clone()),
        other => TemplateValue::Json(other.clone()),
    })
}

/// Go's `time.ParseDuration`, in nanoseconds: the one parser the CLI uses
/// for durations (`berth_dockerfile::parse_go_duration`), without its error
/// text, which the callers here word themselves.
pub(crate) fn go_duration(s: &str) -> Option<i64> {
    berth_dockerfile::parse_go_duration(s).ok()
}

/// docker's `timetypes.GetTimestamp`: a Go duration before `now` (whole
/// seconds), an RFC 3339-like time (local when it names no zone), or unix
/// seconds with an optional fraction. Unix nanoseconds.
pub fn docker_timestamp(value: &str, now: chrono::DateTime<chrono::Utc>) -> Result<i64, String> {
    if value != "0" {
        if let Some(d) = go_duration(value) {
            let secs = (now.timestamp_nanos_opt().unwrap_or(0) - d).div_euclid(1_000_000_000);
            return Ok(secs * 1_000_000_000);
        }
    }
    let bad = || format!("failed to parse value as time or duration: {value:?}");
    let zoned = value.contains(['z', 'Z', '+']) || value.matches('-').count() == 3;
    let parsed: Option<i64> = if zoned {
        let v = value.replace('z', "Z");
        let fixed = if v.contains('T') {
            // Go accepts `2006-01-02T15Z07:00` and `…T15:04Z07:00` too.
            let (date, rest) = v.split_once('T').unwrap_or((&v, ""));
            let zone_at = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
            let (clock, zone) = rest.split_at(zone_at);
            let clock = match clock.matches(':').count() {
                0 => format!("{clock}:00:00"),
                1 => format!("{clock}:00"),
                _ => clock.to_string(),
            };
            format!("{date}T{clock}{zone}")
        } else {
            // dateWithZone: 2006-01-02Z07:00
            let zone_at = v[10.min(v.len())..]
                .find(['Z', '+', '-'])
                .map_or(v.len(), |i| i + 10);
            format!("{}T00:00:00{}", &v[..zone_at], &v[zone_at..])
        };
        chrono::DateTime::parse_from_rfc3339(&fixed)
            .ok()
            .and_then(|d| d.timestamp_nanos_opt())
    } else {
        let naive = if value.contains('.') || value.matches(':').count() == 2 {
            NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f").ok()
        } else if value.contains('T') {
            match value.matches(':').count() {
                0 => NaiveDateTime::parse_from_str(&format!("{value}:00:00"), "%Y-%m-%dT%H:%M:%S"),
                _ => NaiveDateTime::parse_from_str(&format!("{value}:00"), "%Y-%m-%dT%H:%M:%S"),
            }
            .ok()
        } else {
            NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        };
        naive.and_then(|n| match Local.from_local_datetime(&n) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.timestamp_nanos_opt(),
            LocalResult::None => None,
        })
    };
    if let Some(n) = parsed {
        return Ok(n);
    }
    if value.contains('-') {
        return Err(format!("parsing time {value:?}: invalid time"));
    }
    // Unix seconds, optionally with a fraction.
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let s: i64 = secs.parse().map_err(|_| bad())?;
    let mut n: i64 = 0;
    if value.contains('.') {
        let digits: i64 = frac.parse().map_err(|_| bad())?;
        let len = frac.len() as i32;
        n = (digits as f64 * 10f64.powi(9 - len)) as i64;
    }
    Ok(s * 1_000_000_000 + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_docker_parses_them() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-05T20:00:00.5Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let sec = 1_000_000_000i64;
        let base = now.timestamp();
        assert_eq!(docker_timestamp("10m", now), Ok((base - 600) * sec));
        assert_eq!(docker_timestamp("1h30m", now), Ok((base - 5400) * sec));
        assert_eq!(docker_timestamp("1.5s", now), Ok((base - 1) * sec));
        assert_eq!(docker_timestamp("-1h", now), Ok((base + 3600) * sec));
        assert_eq!(docker_timestamp("1700000000", now), Ok(1_700_000_000 * sec));
        assert_eq!(docker_timestamp("0", now), Ok(0));
        assert_eq!(
            docker_timestamp("1700000000.25", now),
            Ok(1_700_000_000 * sec + 250_000_000)
        );
        assert_eq!(
            docker_timestamp("2026-12-05T20:00:00Z", now),
            Ok(base * sec)
        );
        assert_eq!(
            docker_timestamp("2026-12-05T20:00:00.000000001Z", now),
            Ok(base * sec + 1)
        );
        assert_eq!(
            docker_timestamp("2026-12-05T21:00:00+01:00", now),
            Ok(base * sec)
        );
        assert_eq!(docker_timestamp("2026-12-05T20Z", now), Ok(base * sec));
        assert_eq!(docker_timestamp("2026-12-05T20:00Z", now), Ok(base * sec));
        assert!(docker_timestamp("2026-12-05", now).is_ok());
        assert!(docker_timestamp("2026-12-05T20:00:00", now).is_ok());
        assert_eq!(
            docker_timestamp("foo", now),
            Err("failed to parse value as time or duration: \"foo\"".into())
        );
        assert!(docker_timestamp("2026-13-05", now).is_err());
    }

    #[test]
    fn events_print_as_dockers_cli_prints_them() {
        let ev = Event {
            kind: "container".into(),
            action: "start".into(),
            actor: berth_protocol::EventActor {
                id: "abc".into(),
                attributes: BTreeMap::from([
                    ("name".to_string(), "web".to_string()),
                    ("image".to_string(), "busybox".to_string()),
                ]),
            },
            time: 1,
            time_nano: 1_000_000_007,
            ..Event::default()
        };
        let p = pretty(&ev);
        let (time, rest) = p.split_once(' ').unwrap();
        assert_eq!(rest, "container start abc (image=busybox, name=web)");
        assert!(time.contains(".000000007"), "{time}");
        let whole = serde_json::to_value(&ev).unwrap();
        let t = Template::parse(
            "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}} {{.TimeNano}}",
        )
        .unwrap();
        assert_eq!(
            t.render(&|f, _| field(&whole, f), &whole, MESSAGE_TYPE),
            Ok("container start abc web 1000000007".into())
        );
        let t = Template::parse("{{.Actor}}|{{.Actor.Attributes.nope}}|{{.Status}}").unwrap();
        assert_eq!(
            t.render(&|f, _| field(&whole, f), &whole, MESSAGE_TYPE),
            Ok("{abc map[image:busybox name:web]}|<no value>|".into())
        );
    }
}
