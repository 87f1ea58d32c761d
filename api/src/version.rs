//! API version negotiation as dockerd does it: every route may carry a
//! `/vX.Y` prefix; a version above the newest one served is refused, one
//! below the oldest too.

/// The newest API version served (the `Api-Version` header).
pub const MAX_VERSION: Version = Version(1, 47);
/// The oldest API version accepted (dockerd's minimum for old clients).
pub const MIN_VERSION: Version = Version(1, 24);

/// An API version `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// Why a version prefix was refused; the text is dockerd's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("client version {0} is too new. Maximum supported API version is {MAX_VERSION}")]
    TooNew(String),
    #[error("client version {0} is too old. Minimum supported API version is {MIN_VERSION}, please upgrade your client to a newer version")]
    TooOld(String),
}

/// Splits a request path into its version (None without a prefix) and
/// the route below it. A first segment that is not `v` followed by
/// digits and dots is no version (the route then matches as it is).
pub fn split(path: &str) -> Result<(Option<Version>, &str), VersionError> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok((None, path));
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let text = &rest[..end];
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Ok((None, path));
    }
    let route = if end == rest.len() { "/" } else { &rest[end..] };
    let mut parts = text.split('.');
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().map_or(Some(0), |p| p.parse::<u32>().ok());
    let (Some(major), Some(minor), None) = (major, minor, parts.next()) else {
        // Digits and dots, but not a version (`1..2`, `1.2.3`): as
        // dockerd, compared as text it is neither too old nor too new.
        return Ok((None, route));
    };
    let v = Version(major, minor);
    if v > MAX_VERSION {
        return Err(VersionError::TooNew(text.to_string()));
    }
    if v < MIN_VERSION {
        return Err(VersionError::TooOld(text.to_string()));
    }
    Ok((Some(v), route))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_split_and_checked() {
        assert_eq!(
            split("/v1.41/containers/json"),
            Ok((Some(Version(1, 41)), "/containers/json"))
        );
        assert_eq!(split("/v1.47/_ping"), Ok((Some(Version(1, 47)), "/_ping")));
        assert_eq!(split("/_ping"), Ok((None, "/_ping")));
        assert_eq!(split("/volumes"), Ok((None, "/volumes")));
        assert_eq!(split("/v1.24"), Ok((Some(Version(1, 24)), "/")));
        assert_eq!(split("/vx/_ping"), Ok((None, "/vx/_ping")));
        assert_eq!(split("/v/_ping"), Ok((None, "/v/_ping")));
        let e = split("/v1.99/version").unwrap_err();
        assert_eq!(
            e.to_string(),
            "client version 1.99 is too new. Maximum supported API version is 1.47"
        );
        assert_eq!(
            split("/v2/info").unwrap_err(),
            VersionError::TooNew("2".into())
        );
        assert!(matches!(split("/v1.12/info"), Err(VersionError::TooOld(_))));
        // Huge numbers do not overflow into a small version.
        assert!(split("/v99999999999.1/info").is_ok_and(|(v, _)| v.is_none()));
    }

    #[test]
    fn the_cli_names_the_versions_served() {
        assert_eq!(
            MAX_VERSION.to_string(),
            berth_host::docker_info::API_VERSION
        );
        assert_eq!(
            MIN_VERSION.to_string(),
            berth_host::docker_info::MIN_API_VERSION
        );
    }
}
