//! Output formatting in docker's style: tables, human sizes and durations.

use chrono::{DateTime, Timelike, Utc};

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
    human_size_precision(bytes, 3)
}

/// Docker's `units.HumanSize` (`HumanSizeWithPrecision(size, 4)`), as the
/// prune verbs print the space reclaimed.
pub fn human_size4(bytes: u64) -> String {
    human_size_precision(bytes, 4)
}

/// `%.{precision}g` of the size in decimal units.
fn human_size_precision(bytes: u64, precision: usize) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let int_digits = if v >= 100.0 {
        3
    } else if v >= 10.0 {
        2
    } else {
        1
    };
    let digits = precision.saturating_sub(int_digits);
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

/// An RFC 3339 time as Go's `time.Time.String` prints it (docker's
/// `CreatedAt` columns): `2026-12-05 19:45:47.123456789 +0000 UTC`. A
/// time in UTC is named `UTC`, another offset is printed twice, as Go
/// does for a zone without a name.
pub fn go_time(ts: &str) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(ts) else {
        return ts.to_string();
    };
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    let offset = t.format("%z").to_string();
    if t.offset().local_minus_utc() == 0 {
        format!("{s} {offset} UTC")
    } else {
        format!("{s} {offset} {offset}")
    }
}

/// [`go_time`] to the second: how docker prints a time it keeps as Unix
/// seconds (`images` and `ps` `CreatedAt`: `2026-12-05 19:45:47 +0000 UTC`).
pub fn go_time_secs(ts: &str) -> String {
    match DateTime::parse_from_rfc3339(ts) {
        Ok(t) => go_time(&t.with_nanosecond(0).unwrap_or(t).to_rfc3339()),
        Err(_) => ts.to_string(),
    }
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

pub use berth_host::ports::natural_less;

/// One piece of a [`Template`].
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    /// `{{.Field}}` or `{{.Method "arg"}}`, with the byte offset of its `.`.
    Field(String, Option<String>, usize),
    /// `{{json .}}` (None) or `{{json .Field}}`.
    Json(Option<String>, usize),
    /// `{{range .Field}}…{{end}}`: the body once for each element of a
    /// list (or value of a map, in key order), that element being `.`.
    Range(String, Vec<Part>, usize),
    /// `{{index .Field "key" 0}}`, or `{{(index .Field 0).Sub.Field}}`
    /// with the path after the parentheses (empty without them or none).
    Index(String, Vec<IndexKey>, String, usize),
}

/// One key of `{{index}}`: a map key or a list position.
#[derive(Debug, Clone, PartialEq)]
enum IndexKey {
    Name(String),
    Position(usize),
}

/// A list command's `--format`, defaults applied: `json` (each item's
/// JSON: `None`) or a Go template; the error is docker's wording.
pub fn list_template(format: &str) -> Result<Option<Template>, String> {
    match format {
        "json" => Ok(None),
        f => Template::parse(f)
            .map(Some)
            .map_err(|e| format!("template parsing error: {e}")),
    }
}

/// A list item's field read from its `{{json .}}` object, for items whose
/// fields are all there as text: a key the object lacks is `None` (Go's
/// error for a field the formatter's type has not), and so is a field
/// given an argument when `strict`.
pub fn json_row_field(
    row: &serde_json::Value,
    field: &str,
    arg: Option<&str>,
    strict: bool,
) -> Option<TemplateValue> {
    if strict && arg.is_some() {
        return None;
    }
    match json_field(row, field) {
        TemplateValue::Missing => None,
        v => Some(v),
    }
}

/// How [`Template::render_list`] finds a field of one list item: the item,
/// its `{{json .}}` value, the field's name and its argument.
pub type ListLookup<'a, T> =
    dyn Fn(&T, &serde_json::Value, &str, Option<&str>) -> Option<TemplateValue> + 'a;

/// The small subset of docker's Go `--format` templates berth renders:
/// text, `{{.Field}}` (a dotted path into JSON items), `{{.Label "key"}}`,
/// `{{json .}}`, `{{json .Field}}`, `{{range .Field}}…{{end}}`,
/// `{{index .Field "key"}}`, `{{(index .Field 0).Sub}}`, a `table ` prefix (a header row, columns as
/// docker's tabwriter lays them out) and `\t`, `\n` escapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub table: bool,
    parts: Vec<Part>,
}

/// A value a template field names: text, or JSON printed the way Go's
/// `text/template` prints the value it came from.
pub enum TemplateValue {
    Text(String),
    Json(serde_json::Value),
    /// A key a JSON object lacks (docker's raw-JSON fallback): Go prints
    /// `<no value>`, and `json` prints `null`.
    Missing,
}

/// The value at a dotted `path` in a JSON item (`.` itself when empty).
pub fn json_field(v: &serde_json::Value, path: &str) -> TemplateValue {
    let mut v = v;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        match v.get(part) {
            Some(x) => v = x,
            None => return TemplateValue::Missing,
        }
    }
    match v {
        serde_json::Value::String(s) => TemplateValue::Text(s.clone()),
        other => TemplateValue::Json(other.clone()),
    }
}

impl Template {
    /// Parses `format` (docker's `table`/`json` keywords are the caller's).
    pub fn parse(format: &str) -> Result<Template, String> {
        let (table, body) = match format.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                (true, rest.trim_start())
            }
            _ => (false, format),
        };
        let prefix = format.len() - body.len();
        // The parts being read, and each enclosing `range` (its field,
        // offset and the parts before it).
        let mut parts = Vec::new();
        let mut open: Vec<(String, usize, Vec<Part>)> = Vec::new();
        let mut rest = body;
        let mut offset = prefix;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(unescape(&rest[..start])));
            }
            let Some(len) = rest[start..].find("}}") else {
                return Err("template: :1: unclosed action".into());
            };
            let inner = &rest[start + 2..start + len];
            let lead = inner.len() - inner.trim_start().len();
            let at = offset + start + 2 + lead;
            let inner = inner.trim();
            let words: Vec<&str> = inner.split_whitespace().collect();
            let field = |w: &str| -> Result<Option<String>, String> {
                match w {
                    "." => Ok(None),
                    f if f.starts_with('.') && f.len() > 1 => Ok(Some(f[1..].to_string())),
                    _ => Err(format!("template: :1: function \"{w}\" not defined")),
                }
            };
            let quoted = |w: &str| w.len() >= 2 && w.starts_with('"') && w.ends_with('"');
            let unsupported = || format!("template: :1: unsupported action {{{{{inner}}}}}");
            let index_keys = |keys: &[&str]| {
                keys.iter()
                    .map(|k| match k.parse::<usize>() {
                        Ok(n) => Ok(IndexKey::Position(n)),
                        Err(_) if quoted(k) => Ok(IndexKey::Name(k[1..k.len() - 1].into())),
                        Err(_) => Err(unsupported()),
                    })
                    .collect::<Result<Vec<_>, String>>()
            };
            // `(index .Field keys…)` then a field path: Go's parenthesised
            // pipeline as the receiver of a field chain.
            if let Some(paren) = inner.strip_prefix('(') {
                let close = paren.rfind(')').ok_or_else(unsupported)?;
                let tail = &paren[close + 1..];
                let words: Vec<&str> = paren[..close].split_whitespace().collect();
                let tail_ok = tail.is_empty()
                    || (tail.len() > 1
                        && tail.starts_with('.')
                        && !tail.contains(char::is_whitespace)
                        && !tail[1..].split('.').any(str::is_empty));
                match words.as_slice() {
                    ["index", f, keys @ ..] if !keys.is_empty() && tail_ok => {
                        let keys = index_keys(keys)?;
                        let tail = tail.strip_prefix('.').unwrap_or_default().to_string();
                        // Go places the error of `index` at the word.
                        let at = at + 1 + paren.len() - paren.trim_start().len();
                        parts.push(Part::Index(field(f)?.unwrap_or_default(), keys, tail, at));
                    }
                    _ => return Err(unsupported()),
                }
                offset += start + len + 2;
                rest = &rest[start + len + 2..];
                continue;
            }
            match words.as_slice() {
                ["json", f] => {
                    let jat = at + inner.find(f).unwrap_or(0);
                    parts.push(Part::Json(field(f)?, jat));
                }
                ["range", f] => {
                    let path = field(f)?.unwrap_or_default();
                    open.push((path, at, std::mem::take(&mut parts)));
                }
                ["end"] => {
                    let Some((path, rat, outer)) = open.pop() else {
                        return Err("template: :1: unexpected {{end}}".into());
                    };
                    let body = std::mem::replace(&mut parts, outer);
                    parts.push(Part::Range(path, body, rat));
                }
                ["index", f, keys @ ..] if !keys.is_empty() => {
                    let keys = index_keys(keys)?;
                    parts.push(Part::Index(
                        field(f)?.unwrap_or_default(),
                        keys,
                        String::new(),
                        at,
                    ));
                }
                [f] if f.starts_with('.') => {
                    parts.push(Part::Field(field(f)?.unwrap_or_default(), None, at))
                }
                [f, arg] if f.starts_with('.') && quoted(arg) => parts.push(Part::Field(
                    field(f)?.unwrap_or_default(),
                    Some(arg[1..arg.len() - 1].to_string()),
                    at,
                )),
                _ => return Err(unsupported()),
            }
            offset += start + len + 2;
            rest = &rest[start + len + 2..];
        }
        if !open.is_empty() {
            return Err("template: :1: unexpected EOF".into());
        }
        if !rest.is_empty() {
            parts.push(Part::Text(unescape(rest)));
        }
        Ok(Template { table, parts })
    }

    /// The header row of a `table` template: each field's header, from
    /// `header` (docker's upper-case names), the text between them kept.
    pub fn header(&self, header: &dyn Fn(&str) -> String) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Field(f, _, _) | Part::Index(f, _, _, _) => header(f),
                Part::Json(Some(f), _) => header(f),
                Part::Json(None, _) | Part::Range(..) => String::new(),
            })
            .collect()
    }

    /// Renders a list the way docker prints one: a `table` template gets
    /// the header row (from `header`) and tabwriter columns, any other
    /// template one line per item. Each item comes with its `{{json .}}`
    /// value; `lookup(item, whole, field, arg)` is as in [`Template::render`].
    /// Every line ends in a newline.
    pub fn render_list<T>(
        &self,
        items: &[(T, serde_json::Value)],
        header: &dyn Fn(&str) -> String,
        type_name: &str,
        lookup: &ListLookup<'_, T>,
    ) -> Result<String, String> {
        let mut lines = Vec::with_capacity(items.len() + 1);
        if self.table {
            lines.push(self.header(header));
        }
        for (item, whole) in items {
            lines.push(self.render(&|f, arg| lookup(item, whole, f, arg), whole, type_name)?);
        }
        Ok(if self.table {
            tab_lines(&lines)
        } else {
            lines.iter().map(|l| format!("{l}\n")).collect()
        })
    }

    /// Renders one item; `lookup(field, arg)` gives a field's value, `None`
    /// for a field the item has not (an error, named as Go names it with
    /// `type_name`). `whole` is `{{json .}}`.
    pub fn render(
        &self,
        lookup: &dyn Fn(&str, Option<&str>) -> Option<TemplateValue>,
        whole: &serde_json::Value,
        type_name: &str,
    ) -> Result<String, String> {
        let mut out = String::new();
        render_parts(&self.parts, lookup, whole, type_name, &mut out)?;
        Ok(out)
    }
}

/// Renders `parts` for one item (see [`Template::render`]).
fn render_parts(
    parts: &[Part],
    lookup: &dyn Fn(&str, Option<&str>) -> Option<TemplateValue>,
    whole: &serde_json::Value,
    type_name: &str,
    out: &mut String,
) -> Result<(), String> {
    use serde_json::Value;
    let missing = |f: &str, at: usize| {
        format!(
            "template: :1:{at}: executing \"\" at <.{f}>: can't evaluate field {f} in type {type_name}"
        )
    };
    // A field's value; `.` is the whole item.
    let value = |f: &str, at: usize| -> Result<TemplateValue, String> {
        if f.is_empty() {
            return Ok(json_field(whole, ""));
        }
        lookup(f, None).ok_or_else(|| missing(f, at))
    };
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(t),
            Part::Field(f, arg, at) => match lookup(f, arg.as_deref()) {
                Some(TemplateValue::Text(t)) => out.push_str(&t),
                Some(TemplateValue::Json(v)) => out.push_str(&go_value(&v)),
                Some(TemplateValue::Missing) => out.push_str("<no value>"),
                None if f.is_empty() => out.push_str(&go_value(whole)),
                None => return Err(missing(f, *at)),
            },
            Part::Json(None, _) => out.push_str(&whole.to_string()),
            Part::Json(Some(f), at) => match lookup(f, None) {
                Some(TemplateValue::Text(t)) => out.push_str(&Value::String(t).to_string()),
                Some(TemplateValue::Json(v)) => out.push_str(&v.to_string()),
                Some(TemplateValue::Missing) => out.push_str("null"),
                None => return Err(missing(f, *at)),
            },
            Part::Range(f, body, at) => {
                let items: Vec<Value> = match value(f, *at)? {
                    TemplateValue::Json(Value::Array(a)) => a,
                    TemplateValue::Json(Value::Object(m)) => {
                        m.into_iter().map(|(_, v)| v).collect()
                    }
                    TemplateValue::Json(Value::Null) | TemplateValue::Missing => Vec::new(),
                    _ => {
                        return Err(format!(
                        "template: :1:{at}: executing \"\" at <.{f}>: range can't iterate over {}",
                        match value(f, *at)? {
                            TemplateValue::Text(t) => t,
                            TemplateValue::Json(v) => go_value(&v),
                            TemplateValue::Missing => String::new(),
                        }
                    ))
                    }
                };
                for item in &items {
                    let inner =
                        |f: &str, arg: Option<&str>| arg.is_none().then(|| json_field(item, f));
                    render_parts(body, &inner, item, type_name, out)?;
                }
            }
            Part::Index(f, keys, tail, at) => {
                let mut v = match value(f, *at)? {
                    TemplateValue::Text(t) => Value::String(t),
                    TemplateValue::Json(v) => v,
                    TemplateValue::Missing => Value::Null,
                };
                let mut found = true;
                // Whether the last map indexed holds only strings: docker's
                // typed `map[string]string` (labels, options), whose
                // missing key is Go's zero value "", not `<no value>`.
                let mut strings_map = false;
                for k in keys {
                    strings_map =
                        matches!(&v, Value::Object(m) if m.values().all(Value::is_string));
                    let next = match (k, &v) {
                        (IndexKey::Name(n), Value::Object(m)) => m.get(n).cloned(),
                        (IndexKey::Position(i), Value::Array(a)) => match a.get(*i) {
                            Some(x) => Some(x.clone()),
                            None => {
                                return Err(format!(
                                    "template: :1:{at}: executing \"\" at <index .{f} {}>: error calling index: index out of range: {i}",
                                    keys.iter().map(|k| match k {
                                        IndexKey::Name(n) => format!("{n:?}"),
                                        IndexKey::Position(i) => i.to_string(),
                                    }).collect::<Vec<_>>().join(" ")
                                ))
                            }
                        },
                        _ => None,
                    };
                    match next {
                        Some(x) => v = x,
                        None => {
                            found = false;
                            break;
                        }
                    }
                }
                // A key a map lacks gives Go's zero value: printed as
                // `<no value>`, a nil receiver for a field after it.
                if !found && strings_map && tail.is_empty() {
                    continue;
                }
                let v = if found { Some(v) } else { None };
                match field_chain(v, tail, *at)? {
                    None => out.push_str("<no value>"),
                    Some(Value::String(s)) => out.push_str(&s),
                    Some(v) => out.push_str(&go_value(&v)),
                }
            }
        }
    }
    Ok(())
}

/// Follows a field path (`Sub.Field`, may be empty) from `v` as Go's
/// `text/template` does on the JSON behind it (maps of `interface{}`):
/// `None` is a key a map lacks (printed `<no value>`); a field of that or
/// of null is Go's nil-pointer error, a field of anything but a map its
/// can't-evaluate error.
fn field_chain(
    mut v: Option<serde_json::Value>,
    path: &str,
    at: usize,
) -> Result<Option<serde_json::Value>, String> {
    use serde_json::Value;
    for name in path.split('.').filter(|p| !p.is_empty()) {
        let error =
            |what: String| format!("template: :1:{at}: executing \"\" at <.{name}>: {what}");
        v = match v {
            Some(Value::Object(mut m)) => m.remove(name),
            None | Some(Value::Null) => {
                return Err(error(format!(
                    "nil pointer evaluating interface {{}}.{name}"
                )))
            }
            Some(other) => {
                let type_name = match other {
                    Value::Bool(_) => "bool",
                    Value::Number(_) => "float64",
                    Value::String(_) => "string",
                    _ => "[]interface {}",
                };
                return Err(error(format!(
                    "can't evaluate field {name} in type {type_name}"
                )));
            }
        };
    }
    Ok(v)
}

/// docker's CLI turns the two characters `\t` and `\n` in a format into a
/// tab and a newline.
fn unescape(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

/// A JSON value as Go's `text/template` prints the Go value behind it:
/// maps as `map[k:v]`, lists as `[a b]`, nil as `map[]`/`<nil>`.
fn go_value(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_value(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Value::Array(a) => format!("[{}]", a.iter().map(go_value).collect::<Vec<_>>().join(" ")),
        other => other.to_string(),
    }
}

/// Lays out tab-separated lines as docker's tabwriter does (min width 10,
/// padding 3); a cell is padded only when a tab follows it.
pub fn tab_lines(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut s = String::new();
        for (i, c) in r.iter().enumerate() {
            s.push_str(c);
            if i + 1 < r.len() {
                let w = (widths[i] + 3).max(10);
                s.push_str(&" ".repeat(w - c.chars().count()));
            }
        }
        out.push_str(&s);
        out.push('\n');
    }
    out
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
    fn sizes_like_units_human_size() {
        assert_eq!(human_size4(0), "0B");
        assert_eq!(human_size4(12_345), "12.35kB");
        assert_eq!(human_size4(1_234_567), "1.235MB");
        assert_eq!(human_size4(4_096), "4.096kB");
        assert_eq!(human_size4(100_000), "100kB");
    }

    #[test]
    fn natural_order() {
        let mut v = vec![
            "542a", "96b4", "1bc6", "a9b0", "3950e", "lv1", "lv10", "lv2", "860d",
        ];
        v.sort_by(|a, b| {
            if natural_less(a, b) {
                std::cmp::Ordering::Less
            } else if natural_less(b, a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        assert_eq!(
            v,
            ["1bc6", "96b4", "542a", "860d", "3950e", "a9b0", "lv1", "lv2", "lv10"]
        );
        assert!(natural_less("a01", "a001"));
        assert!(natural_less("ab", "abc"));
    }

    #[test]
    fn templates() {
        let t = Template::parse("x {{.Name}}\\t{{ .Label \"a\" }} {{json .}} {{json .Labels}}")
            .unwrap();
        assert!(!t.table);
        let lookup = |f: &str, arg: Option<&str>| match (f, arg) {
            ("Name", None) => Some(TemplateValue::Text("n".into())),
            ("Label", Some("a")) => Some(TemplateValue::Text("b".into())),
            ("Labels", None) => Some(TemplateValue::Json(serde_json::json!({"a": "b"}))),
            _ => None,
        };
        let whole = serde_json::json!({"Name": "n"});
        assert_eq!(
            t.render(&lookup, &whole, "T").unwrap(),
            "x n\tb {\"Name\":\"n\"} {\"a\":\"b\"}"
        );
        let t = Template::parse("x {{.Foo}}").unwrap();
        assert_eq!(
            t.render(&lookup, &whole, "*formatter.volumeContext").unwrap_err(),
            "template: :1:4: executing \"\" at <.Foo>: can't evaluate field Foo in type *formatter.volumeContext"
        );
        let t = Template::parse("table {{.Name}}\\t{{.Driver}}").unwrap();
        assert!(t.table);
        assert_eq!(t.header(&|f| f.to_uppercase()), "NAME\tDRIVER");
        assert!(Template::parse("{{").is_err());
        assert_eq!(
            go_value(&serde_json::json!({"k": "", "a": null})),
            "map[a:<nil> k:]"
        );
    }

    #[test]
    fn range_and_index() {
        let whole = serde_json::json!({
            "Networks": {"b": {"IPAddress": "10.0.0.3"}, "a": {"IPAddress": "10.0.0.2"}},
            "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]},
            "List": ["x", "y"],
            "Labels": {"a": "b"},
            "None": null
        });
        let lookup = |f: &str, a: Option<&str>| a.is_none().then(|| json_field(&whole, f));
        let render = |t: &str| Template::parse(t).unwrap().render(&lookup, &whole, "T");
        assert_eq!(
            render("{{range .Networks}}{{.IPAddress}} {{end}}").unwrap(),
            "10.0.0.2 10.0.0.3 "
        );
        assert_eq!(render("{{range .List}}[{{.}}]{{end}}").unwrap(), "[x][y]");
        assert_eq!(render("{{range .None}}x{{end}}-").unwrap(), "-");
        assert_eq!(
            Template::parse("{{range $p := .List}}{{end}}").unwrap_err(),
            "template: :1: unsupported action {{range $p := .List}}"
        );
        assert_eq!(
            render("{{index .Ports \"80/tcp\" 0 \"HostPort\"}}").unwrap(),
            "8080"
        );
        assert_eq!(render("{{index .Ports \"81/tcp\"}}").unwrap(), "<no value>");
        // A map of strings is docker's map[string]string: "" for a key
        // it lacks.
        assert_eq!(render("{{index .Labels \"nope\"}}|").unwrap(), "|");
        assert!(render("{{index .List 5}}")
            .unwrap_err()
            .contains("index out of range: 5"));
        assert_eq!(
            Template::parse("{{range .List}}").unwrap_err(),
            "template: :1: unexpected EOF"
        );
        assert_eq!(
            Template::parse("{{end}}").unwrap_err(),
            "template: :1: unexpected {{end}}"
        );
        assert_eq!(
            render("{{range .Networks}}{{range .}}{{.}}{{end}};{{end}}").unwrap(),
            "10.0.0.2;10.0.0.3;"
        );
    }

    #[test]
    fn parenthesised_index_then_fields() {
        let whole = serde_json::json!({
            "IPAM": {"Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]},
            "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]},
            "Networks": {"bridge": {"IPAMConfig": null, "Aliases": ["a", "b"]}},
            "Empty": []
        });
        let lookup = |f: &str, a: Option<&str>| a.is_none().then(|| json_field(&whole, f));
        let render = |t: &str| Template::parse(t).unwrap().render(&lookup, &whole, "T");
        assert_eq!(
            render("{{(index .IPAM.Config 0).Gateway}}").unwrap(),
            "172.17.0.1"
        );
        assert_eq!(
            render("gw={{ (index .IPAM.Config 0).Gateway }}/{{(index .IPAM.Config 0).Subnet}}")
                .unwrap(),
            "gw=172.17.0.1/172.17.0.0/16"
        );
        assert_eq!(
            render("{{(index .Ports \"80/tcp\" 0).HostPort}}").unwrap(),
            "8080"
        );
        assert_eq!(
            render("{{(index .Networks \"bridge\").Aliases}}").unwrap(),
            "[a b]"
        );
        // No path after the parentheses: the element itself.
        assert_eq!(
            render("{{(index .IPAM.Config 0)}}").unwrap(),
            "map[Gateway:172.17.0.1 Subnet:172.17.0.0/16]"
        );
        // A key the element lacks: Go's <no value>.
        assert_eq!(
            render("{{(index .IPAM.Config 0).Nope}}").unwrap(),
            "<no value>"
        );
        // Go's errors: past the end, a field of a missing key or of
        // null, a field of a string.
        assert_eq!(
            render("{{(index .Empty 0).Gateway}}").unwrap_err(),
            "template: :1:3: executing \"\" at <index .Empty 0>: error calling index: index out of range: 0"
        );
        assert_eq!(
            render("x{{index .Ports \"80/tcp\" 3}}").unwrap_err(),
            "template: :1:3: executing \"\" at <index .Ports \"80/tcp\" 3>: error calling index: index out of range: 3"
        );
        assert!(render("{{(index .Ports \"81/tcp\").X}}")
            .unwrap_err()
            .ends_with("nil pointer evaluating interface {}.X"));
        assert!(
            render("{{(index .Networks \"bridge\").IPAMConfig.IPv4Address}}")
                .unwrap_err()
                .ends_with("nil pointer evaluating interface {}.IPv4Address")
        );
        assert!(render("{{(index .IPAM.Config 0).Gateway.X}}")
            .unwrap_err()
            .ends_with("can't evaluate field X in type string"));
        // The same inside a range.
        assert_eq!(
            render("{{range .IPAM.Config}}{{.Gateway}}{{end}}").unwrap(),
            "172.17.0.1"
        );
        for bad in [
            "{{(index .IPAM.Config 0}}",
            "{{(index .IPAM.Config 0).}}",
            "{{(index .IPAM.Config 0).A..B}}",
            "{{(index .IPAM.Config 0) .A}}",
            "{{(index .IPAM.Config).A}}",
            "{{(json .IPAM).A}}",
            "{{(index .IPAM.Config x).A}}",
        ] {
            assert_eq!(
                Template::parse(bad).unwrap_err(),
                format!("template: :1: unsupported action {bad}"),
                "{bad}"
            );
        }
    }

    #[test]
    fn tab_layout() {
        let out = tab_lines(&["VOLUME NAME\tLABELS".into(), "plain\t".into()]);
        assert_eq!(out, "VOLUME NAME   LABELS\nplain         \n");
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
    fn go_times_to_the_second() {
        assert_eq!(
            go_time_secs("2026-12-05T19:45:47.120Z"),
            "2026-12-05 19:45:47 +0000 UTC"
        );
        assert_eq!(go_time_secs(""), "");
    }

    #[test]
    fn go_times() {
        assert_eq!(
            go_time("2026-12-05T19:45:47.120Z"),
            "2026-12-05 19:45:47.12 +0000 UTC"
        );
        assert_eq!(
            go_time("2026-12-05T19:45:47+02:00"),
            "2026-12-05 19:45:47 +0200 +0200"
        );
        assert_eq!(go_time("bogus"), "bogus");
    }

    #[test]
    fn io_errors_worded_as_go() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(super::io_error(&e), "no such file or directory");
    }
}
