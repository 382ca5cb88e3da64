//! A virtual IP per cloud (issue 27, part 3): vip-manager on the cloud's
//! database hosts holds the address on the host whose Patroni leads the
//! cloud (its master, or a standby cloud's standby leader).
//!
//! Debian's vip-manager (1.0.2) reads etcd's v2 API only, where Patroni's
//! leader key (v3) is not: the cloud's etcd serves v2 too, and a small loop
//! on every host (host/vip_leader.py) names the host in a v2 key while its
//! Patroni leads and runs PostgreSQL. vip-manager watches that key.

use super::{Component, FileSpec};

pub(crate) const PACKAGE: &str = "vip-manager";
/// Debian's own unit: enabled by the package with an empty configuration;
/// pgha runs its own and keeps this one off.
pub(crate) const DEBIAN_SERVICE: &str = "vip-manager";
pub(crate) const MANAGER_SERVICE: &str = "pgha-vip-manager";
pub(crate) const LEADER_SERVICE: &str = "pgha-vip-leader";

pub(crate) const MANAGER_CONFIG: FileSpec = FileSpec {
    component: Component::Vip,
    template: "vip-manager.yml.j2",
    path: "/etc/pgha/vip-manager.yml",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: MANAGER_SERVICE,
    check: None,
};

pub(crate) const MANAGER_UNIT: FileSpec = FileSpec {
    component: Component::Vip,
    template: "vip-manager.service.j2",
    path: "/etc/systemd/system/pgha-vip-manager.service",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: MANAGER_SERVICE,
    check: None,
};

/// The loop's code, the same on every host (host/vip_leader.py).
pub(crate) const LEADER: FileSpec = FileSpec {
    component: Component::Vip,
    template: "vip_leader.py",
    path: "/usr/local/lib/pgha/vip-leader",
    owner: "root",
    group: "root",
    mode: 0o755,
    service: LEADER_SERVICE,
    check: Some("python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())'"),
};

pub(crate) const LEADER_SETTINGS: FileSpec = FileSpec {
    component: Component::Vip,
    template: "vip-leader.json.j2",
    path: "/etc/pgha/vip-leader.json",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: LEADER_SERVICE,
    check: None,
};

pub(crate) const LEADER_UNIT: FileSpec = FileSpec {
    component: Component::Vip,
    template: "vip-leader.service.j2",
    path: "/etc/systemd/system/pgha-vip-leader.service",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: LEADER_SERVICE,
    check: None,
};

/// Every file of a host of a cloud with a virtual IP.
pub(crate) const FILES: [FileSpec; 5] = [LEADER, LEADER_SETTINGS, LEADER_UNIT, MANAGER_CONFIG, MANAGER_UNIT];

/// The v2 key that names the cloud's leader.
pub(crate) fn key(cluster: &str, cloud: &str) -> String {
    format!("/pgha-vip/{cluster}/{cloud}")
}

/// `vip ADDRESS` for each of the design's virtual IPs this host holds.
pub(crate) fn held_script(design: &crate::design::Design) -> String {
    design
        .clouds
        .iter()
        .filter_map(|c| c.vip.as_ref())
        .map(|v| {
            format!(
                "ip -o addr show to {a} 2>/dev/null | grep -q . && echo vip {a}\n",
                a = crate::shell::quote(&v.address)
            )
        })
        .collect()
}

/// `iface NAME` for each network interface of the host (no process started).
pub(crate) const INTERFACES_SCRIPT: &str = "for i in /sys/class/net/*; do echo \"iface ${i##*/}\"; done\n";

/// Does any cloud of `design` have a virtual IP?
pub(crate) fn any(design: &crate::design::Design) -> bool {
    design.clouds.iter().any(|c| c.vip.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cloud_has_its_key_and_the_probe_names_what_a_host_holds() {
        let d = crate::testkit::example("three-sites.yaml");
        assert!(any(&d));
        assert_eq!(key("pgha-demo", "dc1"), "/pgha-vip/pgha-demo/dc1");
        let script = held_script(&d);
        assert_eq!(
            script,
            "ip -o addr show to 10.77.0.100 2>/dev/null | grep -q . && echo vip 10.77.0.100\n"
        );
        crate::shell::assert_parses_cleanly(&script);
        assert!(!any(&crate::testkit::example("two-clouds.yaml")));
        assert_eq!(held_script(&crate::testkit::example("two-clouds.yaml")), "");
    }
}
