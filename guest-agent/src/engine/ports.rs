//! A container's exposed ports, decided at create from its image and
//! configuration (a pure function; `containers` stores the result in the
//! record, `net` publishes them when the container starts).

use super::Error;

/// A container's exposed ports: the image's, `--expose` and every `-p`
/// container port, normalised to `PORT/PROTO` and sorted like docker.
pub fn exposed_ports(
    image: Vec<String>,
    cfg: &berth_protocol::ContainerConfig,
) -> Result<Vec<String>, Error> {
    let mut out: Vec<(u16, String)> = Vec::new();
    let mut add = |spec: &str| -> Result<(), Error> {
        let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
        let proto = berth_protocol::PortProto::parse(proto)
            .ok_or_else(|| Error::invalid(format!("invalid proto: {proto}")))?;
        let (a, b) = port.split_once('-').unwrap_or((port, port));
        let bad = || Error::invalid(format!("invalid port: {spec}"));
        let a: u16 = a.parse().map_err(|_| bad())?;
        let b: u16 = b.parse().map_err(|_| bad())?;
        if a == 0 || b < a || b - a > 4096 {
            return Err(bad());
        }
        for p in a..=b {
            let k = (p, format!("{p}/{}", proto.as_str()));
            if !out.contains(&k) {
                out.push(k);
            }
        }
        Ok(())
    };
    for p in &image {
        add(p)?;
    }
    for p in &cfg.expose {
        add(p)?;
    }
    for b in &cfg.ports {
        add(&format!("{}/{}", b.container_port, b.proto.as_str()))?;
    }
    out.sort();
    Ok(out.into_iter().map(|(_, s)| s).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_protocol::ContainerConfig;

    fn cfg(expose: &[&str]) -> ContainerConfig {
        ContainerConfig {
            expose: expose.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn normalised_deduplicated_and_sorted() {
        let got = exposed_ports(
            vec!["8080".into(), "53/udp".into()],
            &cfg(&["80/tcp", "8080/tcp"]),
        );
        assert_eq!(got.unwrap(), ["53/udp", "80/tcp", "8080/tcp"]);
        let got = exposed_ports(Vec::new(), &cfg(&["7000-7002"]));
        assert_eq!(got.unwrap(), ["7000/tcp", "7001/tcp", "7002/tcp"]);
    }

    #[test]
    fn hostile_specs_are_invalid_arguments() {
        for (spec, msg) in [
            ("0", "invalid port: 0"),
            ("70000", "invalid port: 70000"),
            ("9-1", "invalid port: 9-1"),
            ("1-9000", "invalid port: 1-9000"),
            ("80/sctpx", "invalid proto: sctpx"),
            ("", "invalid port: "),
        ] {
            let e = exposed_ports(Vec::new(), &cfg(&[spec])).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{spec}: {e:?}");
            assert_eq!(e.to_string(), msg, "{spec}");
        }
    }
}
