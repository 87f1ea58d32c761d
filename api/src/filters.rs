//! docker's `filters` query parameter: a JSON object of keys to values,
//! either as a map (`{"status":{"running":true}}`, what clients send
//! today) or as a list (`{"status":["running"]}`, older clients).

use std::collections::BTreeMap;

/// Filter keys and their values (values of one key are ORed, keys ANDed).
pub type Filters = BTreeMap<String, Vec<String>>;

/// Whether the values of one key match: docker ANDs `label` values (each
/// label must be there) and ORs the values of every other key.
pub fn key_matches(key: &str, vals: &[String], mut m: impl FnMut(&String) -> bool) -> bool {
    if key == "label" {
        vals.iter().all(m)
    } else {
        vals.iter().any(&mut m)
    }
}

/// Parses the parameter; an empty one is no filter. The error is docker's
/// wording for a malformed one.
pub fn parse(raw: &str) -> Result<Filters, String> {
    let mut out = Filters::new();
    if raw.trim().is_empty() {
        return Ok(out);
    }
    let v: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("invalid filter: {e}"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| "invalid filter: not a JSON object".to_string())?;
    for (k, vals) in obj {
        let list = match vals {
            serde_json::Value::Object(m) => m
                .iter()
                .filter(|(_, on)| on.as_bool().unwrap_or(false))
                .map(|(s, _)| s.clone())
                .collect(),
            serde_json::Value::Array(a) => a
                .iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("invalid filter '{k}': values must be strings"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(format!("invalid filter '{k}'")),
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}

/// Refuses keys outside `allowed`, as dockerd: "invalid filter 'x'".
pub fn check_keys(f: &Filters, allowed: &[&str]) -> Result<(), String> {
    match f.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("invalid filter '{k}'")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_and_list_forms() {
        let f = parse(
            r#"{"status":{"running":true,"exited":true,"paused":false},"name":{"web":true}}"#,
        )
        .unwrap();
        assert_eq!(f["status"], vec!["exited", "running"]);
        assert_eq!(f["name"], vec!["web"]);
        let f = parse(r#"{"label":["a=b","c"]}"#).unwrap();
        assert_eq!(f["label"], vec!["a=b", "c"]);
        assert!(parse("").unwrap().is_empty());
        assert!(parse("  ").unwrap().is_empty());
    }

    #[test]
    fn hostile_filters_are_errors() {
        assert!(parse("{").is_err());
        assert!(parse("[1]").is_err());
        assert!(parse(r#"{"a":1}"#).is_err());
        assert!(parse(r#"{"a":[1]}"#).is_err());
        let f = parse(r#"{"bogus":["x"]}"#).unwrap();
        assert_eq!(
            check_keys(&f, &["status"]).unwrap_err(),
            "invalid filter 'bogus'"
        );
    }

    #[test]
    fn labels_are_anded_other_keys_ored() {
        let vals = vec!["a=1".to_string(), "b=2".to_string()];
        let have = ["a=1"];
        assert!(!key_matches("label", &vals, |v| have.contains(&v.as_str())));
        assert!(key_matches("name", &vals, |v| have.contains(&v.as_str())));
        let have = ["a=1", "b=2"];
        assert!(key_matches("label", &vals, |v| have.contains(&v.as_str())));
    }
}
