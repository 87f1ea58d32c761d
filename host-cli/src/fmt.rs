//! Output formatting in docker's style: tables, human sizes and durations.

use chrono::{DateTime, Utc};

/// Renders rows like docker's tabwriter (min width 10, padding 3).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let n = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < n {
                let w = (widths[i] + 3).max(10);
                s.push_str(&" ".repeat(w - c.chars().count()));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(|s| s.as_str()).collect());
    }
    out
}

/// Docker's `HumanSizeWithPrecision(size, 3)` (decimal units).
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    // %.3g: three significant digits.
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s2 = format!("{v:.digits$}");
    let trimmed = if s2.contains('.') {
        s2.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s2
    };
    format!("{trimmed}{}", units[i])
}

/// Docker's `units.BytesSize` (binary units, `%.4g`), as `stats` shows.
pub fn binary_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    let int_digits = if v >= 1.0 {
        v.log10().floor() as i32 + 1
    } else {
        1
    };
    let decimals = (4 - int_digits).max(0) as usize;
    let s = format!("{v:.decimals$}");
    let trimmed = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{trimmed}{}", units[i])
}

/// Docker's `units.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let m = s / 60;
    let h = s / 3600;
    if s < 1 {
        "Less than a second".into()
    } else if s == 1 {
        "1 second".into()
    } else if s < 60 {
        format!("{s} seconds")
    } else if m == 1 {
        "About a minute".into()
    } else if m < 60 {
        format!("{m} minutes")
    } else if h == 1 {
        "About an hour".into()
    } else if h < 48 {
        format!("{h} hours")
    } else if h < 24 * 7 * 2 {
        format!("{} days", h / 24)
    } else if h < 24 * 30 * 2 {
        format!("{} weeks", h / 24 / 7)
    } else if h < 24 * 365 * 2 {
        format!("{} months", h / 24 / 30)
    } else {
        format!("{} years", h / 24 / 365)
    }
}

/// Seconds since an RFC 3339 timestamp.
pub fn since(ts: &str) -> Option<i64> {
    let t: DateTime<Utc> = DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc);
    Some((Utc::now() - t).num_seconds())
}

/// `"5 minutes ago"`, or `"N/A"`.
pub fn ago(ts: Option<&str>) -> String {
    ts.and_then(since)
        .map(|s| format!("{} ago", human_duration(s)))
        .unwrap_or_else(|| "N/A".into())
}

/// Docker's ps COMMAND column: quoted, truncated to 20 characters with `…`.
pub fn command_column(cmd: &str, trunc: bool) -> String {
    let c: String = if trunc && cmd.chars().count() > 20 {
        cmd.chars().take(19).collect::<String>() + "…"
    } else {
        cmd.to_string()
    };
    format!("\"{c}\"")
}

/// An I/O error worded as Go (and so docker) words it: the C library's
/// text with a lowercase first letter, without Rust's "(os error N)".
pub fn io_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut c = text.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_sizes() {
        assert_eq!(binary_size(64 << 20), "64MiB");
        assert_eq!(binary_size(2_048_000), "1.953MiB");
        assert_eq!(binary_size(639_488), "624.5KiB");
        assert_eq!(binary_size(512), "512B");
    }

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(12_345), "12.3kB");
        assert_eq!(human_size(1_000_000), "1MB");
    }

    #[test]
    fn durations_like_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
    }

    #[test]
    fn table_pads_like_tabwriter() {
        let t = table(&["A", "BB"], &[vec!["x".into(), "y".into()]]);
        assert_eq!(t, "A         BB\nx         y\n");
    }

    #[test]
    fn io_errors_worded_as_go() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(super::io_error(&e), "no such file or directory");
    }
}
