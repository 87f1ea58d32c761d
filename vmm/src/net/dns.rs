//! The host's DNS resolvers, where the gateway's DNS forwarder sends the
//! guest's queries.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Most resolvers taken from the host configuration.
const MAX_RESOLVERS: usize = 3;

/// The host's resolvers: `nameserver` lines of /etc/resolv.conf on Unix
/// (IPv4 and IPv6, port 53). Falls back to 127.0.0.53 (systemd-resolved)
/// when none are found. Windows and macOS hosts without resolv.conf get
/// the fallback as well, for now.
pub fn host_resolvers() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut v = parse_resolv_conf(&text);
    if v.is_empty() {
        v.push(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53)),
            53,
        ));
    }
    v
}

/// The `nameserver` addresses of a resolv.conf text (at most three, as
/// the C library reads).
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            // Drop an IPv6 zone (`fe80::1%eth0`): the scope cannot be kept.
            let addr = words.next()?.split('%').next()?;
            addr.parse::<IpAddr>().ok()
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .take(MAX_RESOLVERS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nameservers() {
        let v = parse_resolv_conf(
            "# comment\nsearch example.com\nnameserver 10.0.0.1\nnameserver  ::1\nnameserver bogus\nnameserver fe80::1%eth0\nnameserver 1.1.1.1\n",
        );
        assert_eq!(
            v,
            vec![
                "10.0.0.1:53".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap(),
            ]
        );
        assert!(parse_resolv_conf("").is_empty());
    }
}
