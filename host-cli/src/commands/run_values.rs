//! Flag values and error wording shared by `run`/`create` and the
//! modules of their flags (`run_namespaces`, `run_resources`) and the
//! own-VM keeper: a leaf, so none of them needs `run` itself.

use crate::client::ClientError;
use crate::EXIT_ENGINE;
use berth_protocol::ErrorKind;

/// Go's `strconv.ParseInt(s, 0, 64)` (pflag's int flags): a sign, then
/// `0x`/`0o`/`0b`/`0` prefixes pick the base, `_` may separate digits
/// after a prefix.
pub(crate) fn go_parse_int(s: &str) -> Result<i64, &'static str> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string(), true)
    } else {
        (10, lower.clone(), false)
    };
    let clean: String = if prefixed {
        if digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
            return Err("invalid syntax");
        }
        digits.replace('_', "")
    } else {
        digits
    };
    if clean.is_empty() || !clean.chars().all(|c| c.is_digit(radix)) {
        return Err("invalid syntax");
    }
    let v = u64::from_str_radix(&clean, radix).map_err(|_| "value out of range")?;
    if neg {
        if v > 1 << 63 {
            return Err("value out of range");
        }
        Ok((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).map_err(|_| "value out of range")
    }
}

pub use berth_host::limits::parse_bytes;

/// Docker's exit codes for failures before the command ran.
pub(crate) fn error_code(e: &ClientError) -> i32 {
    match e.kind() {
        Some(ErrorKind::CommandNotFound) => 127,
        Some(ErrorKind::CommandNotExecutable) => 126,
        _ => EXIT_ENGINE,
    }
}

/// docker's CLI ends a daemon error with one period.
pub(crate) fn sentence(e: &ClientError) -> String {
    format!("{}.", e.to_string().trim_end_matches('.'))
}
