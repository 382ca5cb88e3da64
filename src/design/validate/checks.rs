//! Checks across sections: every host once, no two services on one port.

use super::*;

/// Host names and addresses identify a host in every command: no two alike.
pub(super) fn check_unique_hosts(
    cx: &mut Checker,
    root: &Node,
    clouds: &[Cloud],
    glb: Option<&Option<Glb>>,
    site: Option<&Site>,
    backup: Option<&Backup>,
) {
    let mut names: HashMap<&str, String> = HashMap::new();
    let mut addresses: HashMap<&str, String> = HashMap::new();
    let glb_hosts = match glb {
        Some(Some(Glb {
            kind: GlbKind::Haproxy { hosts },
            ..
        })) => hosts.as_slice(),
        _ => &[],
    };
    let located = clouds
        .iter()
        .enumerate()
        .flat_map(|(ci, c)| {
            c.hosts
                .iter()
                .enumerate()
                .map(move |(hi, h)| (format!("clouds[{ci}].hosts[{hi}]"), h))
        })
        .chain(
            glb_hosts
                .iter()
                .enumerate()
                .map(|(i, h)| (format!("glb.hosts[{i}]"), h)),
        )
        .chain(
            site.and_then(|s| s.witness.as_ref())
                .map(|h| ("witness".to_string(), h)),
        )
        .chain(backup.iter().flat_map(|b| {
            b.repositories
                .iter()
                .enumerate()
                // One on a database host is that host, listed already.
                .filter(|(_, r)| !r.on_database_host)
                .map(|(i, r)| (format!("backup.repositories[{i}]"), &r.host))
        }));
    for (at, host) in located {
        if let Some(first) = names.insert(&host.name, at.clone()) {
            cx.error(
                root,
                &format!("{at}.name"),
                format!("host name `{}` is used twice (also {first})", host.name),
                "host names identify hosts in every command: make them unique",
            );
        }
        if let Some(first) = addresses.insert(&host.address, at.clone()) {
            cx.error(
                root,
                &format!("{at}.address"),
                format!("address `{}` is used twice (also {first})", host.address),
                "every compute needs its own address",
            );
        }
    }
    // A virtual IP is nobody's own address, and each cloud has its own.
    let hosts: Vec<(String, String)> = addresses.iter().map(|(a, at)| (a.to_string(), at.clone())).collect();
    for (i, c) in clouds.iter().enumerate() {
        let Some(vip) = &c.vip else { continue };
        if let Some(first) = addresses.insert(&vip.address, format!("clouds[{i}].vip")) {
            cx.error(
                root,
                &format!("clouds[{i}].vip.address"),
                format!("the virtual IP `{}` is also {first}'s address", vip.address),
                "a virtual IP must be an unused address on the cloud's network",
            );
            continue;
        }
        // vip-manager 1.0.2 finds its address in `ip addr`'s text: one that
        // begins another host address (10.0.1.10 in 10.0.1.100) looks held.
        if let Some((a, at)) = hosts.iter().find(|(a, _)| a.starts_with(&vip.address)) {
            cx.error(
                root,
                &format!("clouds[{i}].vip.address"),
                format!("the virtual IP `{}` begins {at}'s address `{a}`", vip.address),
                "Debian's vip-manager would take it for held where that address is: choose another",
            );
        }
    }
}

/// Every port one host listens on must be distinct.
#[allow(clippy::too_many_arguments)]
pub(super) fn check_ports(
    cx: &mut Checker,
    root: &Node,
    platform: &Option<Platform>,
    etcd: &Etcd,
    governor: &Governor,
    haproxy: &Haproxy,
    exporter: Option<&Exporter>,
    pgbouncer: Option<&Pgbouncer>,
    clouds: &[Cloud],
    glb: Option<&Option<Glb>>,
    site: Option<&Site>,
    backup: Option<&Backup>,
) {
    let Some(platform) = platform else { return };
    let mut db_ports = vec![
        ("platform.postgres_port", platform.postgres_port),
        ("components.etcd.client_port", etcd.client_port),
        ("components.etcd.peer_port", etcd.peer_port),
        ("components.governor.rest_port", governor.rest_port),
        ("components.haproxy.port", haproxy.port),
        ("components.haproxy.stats_port", haproxy.stats_port),
        ("components.haproxy.read_only_port", haproxy.read_only_port),
        ("components.haproxy.local_read_port", haproxy.local_read_port),
    ];
    if let Some(s) = site {
        db_ports.extend([
            ("site.client_port", s.client_port),
            ("site.peer_port", s.peer_port),
            ("site.gate_port", s.gate_port),
        ]);
    }
    if let Some(b) = backup {
        db_ports.push(("backup.port", b.port));
    }
    if let Some(e) = exporter {
        db_ports.extend([
            ("components.exporter.port", e.port),
            ("components.exporter.gateway_port", e.gateway_port),
            ("components.exporter.etcd_metrics_port", e.etcd_metrics_port),
            ("components.exporter.node_port", e.node_port),
        ]);
        if site.is_some() {
            db_ports.push(("components.exporter.site_metrics_port", e.site_metrics_port));
        }
    }
    if let Some(p) = pgbouncer {
        db_ports.push(("components.pgbouncer.port", p.port));
    }
    let glb_ports = match glb {
        Some(Some(g)) => {
            let mut ports = vec![
                ("glb.port", g.port),
                ("glb.stats_port", g.stats_port),
                ("glb.read_only_port", g.read_only_port),
            ];
            if pgbouncer.is_some() {
                ports.push(("glb.pooled_port", g.pooled_port));
            }
            ports
        }
        _ => Vec::new(),
    };
    for (field, port) in db_ports.iter().chain(&glb_ports) {
        if *port == 0 {
            cx.error(root, field, "port 0 is not a port", "use a port from 1 to 65535");
        }
    }
    let mut by_address: BTreeMap<&str, Vec<(&str, u16)>> = BTreeMap::new();
    for host in clouds.iter().flat_map(|c| &c.hosts) {
        by_address
            .entry(&host.address)
            .or_default()
            .extend(db_ports.iter().copied());
    }
    if let Some(Some(g)) = glb {
        if let GlbKind::Haproxy { hosts } = &g.kind {
            for host in hosts {
                by_address.entry(&host.address).or_default().extend([
                    ("glb.port", g.port),
                    ("glb.stats_port", g.stats_port),
                    ("glb.read_only_port", g.read_only_port),
                ]);
            }
        }
    }
    // Report each colliding pair once, not once per host.
    let mut reported = Vec::new();
    for ports in by_address.values() {
        for (i, (field_a, a)) in ports.iter().enumerate() {
            for (field_b, b) in &ports[i + 1..] {
                if a == b && field_a != field_b && !reported.contains(&(*field_a, *field_b)) {
                    reported.push((*field_a, *field_b));
                    if (*field_a, *field_b) == ("platform.postgres_port", "components.haproxy.port") {
                        continue; // reported with its own message
                    }
                    // Point at the one the user wrote; defaults have no line.
                    let (here, other) = if root.lookup(field_b).is_some() || root.lookup(field_a).is_none() {
                        (field_b, field_a)
                    } else {
                        (field_a, field_b)
                    };
                    cx.error(
                        root,
                        here,
                        format!("port {b} of `{here}` collides with `{other}` on the same host"),
                        "every component on a host needs its own port",
                    );
                }
            }
        }
    }
}
