//! etcd: one cluster per cloud, so losing a cloud never costs another its quorum
//! (../HAZARDS #3: a 3+3 stretched cluster loses quorum with either cloud).

use super::{Component, FileSpec};
use crate::design::shape::url_host;
use crate::shell::quote;

pub const CONFIG: FileSpec = FileSpec {
    component: Component::Etcd,
    template: "etcd.env.j2",
    path: "/etc/default/etcd",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: "etcd",
    check: None,
};

/// pgha's own data directory: the package's default member in
/// /var/lib/etcd/default belongs to a one-member cluster and must not be reused.
pub fn data_dir(cluster: &str) -> String {
    format!("/var/lib/etcd/pgha-{cluster}")
}

/// The config without its ETCD_INITIAL_* lines, as `grep -v` prints it:
/// what matters to a member that already has its data.
pub fn core(content: &str) -> String {
    content
        .lines()
        .filter(|l| !l.starts_with("ETCD_INITIAL_"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn etcdctl(client_port: u16) -> String {
    format!("ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:{client_port} --command-timeout=3s")
}

/// Exits 0 when the local member is healthy (it has a leader and quorum).
pub fn health_script(client_port: u16) -> String {
    format!("{} endpoint health", etcdctl(client_port))
}

/// Lines `id, status, name, peer urls, client urls, learner`.
pub fn member_list_script(client_port: u16) -> String {
    format!("{} member list", etcdctl(client_port))
}

/// Adds a member to the running cluster: the only safe way to grow it.
pub fn member_add_script(client_port: u16, name: &str, peer_url: &str) -> String {
    format!(
        "{} member add {} {}",
        etcdctl(client_port),
        quote(name),
        quote(&format!("--peer-urls={peer_url}"))
    )
}

/// Removes a member by its hex id.
pub fn member_remove_script(client_port: u16, id: &str) -> String {
    format!("{} member remove {}", etcdctl(client_port), quote(id))
}

/// Deletes one key.
pub fn del_script(client_port: u16, key: &str) -> String {
    format!("{} del {}", etcdctl(client_port), quote(key))
}

/// A member's peer URL (an IPv6 address in brackets).
pub fn peer_url(address: &str, peer_port: u16) -> String {
    format!("http://{}:{peer_port}", url_host(address))
}

/// Throws the local member's data away and starts it as a member joining the
/// running cluster (after `member add`).
pub fn rejoin_script(data_dir: &str) -> String {
    format!(
        "systemctl stop etcd; rm -rf {}; sed -i 's/^ETCD_INITIAL_CLUSTER_STATE=.*/ETCD_INITIAL_CLUSTER_STATE=\"existing\"/' {}; systemctl start --no-block etcd",
        quote(data_dir),
        quote(CONFIG.path)
    )
}

/// Back to the canonical config once the member has joined (etcd ignores the
/// initial-cluster settings from then on).
pub fn restore_state_new_script() -> String {
    format!(
        "sed -i 's/^ETCD_INITIAL_CLUSTER_STATE=.*/ETCD_INITIAL_CLUSTER_STATE=\"new\"/' {}",
        quote(CONFIG.path)
    )
}

/// Member names from `member list` output (an unstarted member has no name yet:
/// it is identified by its peer URL instead).
pub fn parse_members(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split(',').map(str::trim).collect();
            (cols.len() >= 4).then(|| (cols[2].to_string(), cols[3].to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_exact() {
        assert_eq!(
            member_add_script(2379, "dc1-pg4", "http://10.0.0.4:2380"),
            "ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 --command-timeout=3s member add dc1-pg4 --peer-urls=http://10.0.0.4:2380"
        );
        assert_eq!(
            member_add_script(2379, "x;y", &peer_url("fd00::4", 2380)),
            "ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 --command-timeout=3s member add 'x;y' '--peer-urls=http://[fd00::4]:2380'"
        );
        assert_eq!(
            member_remove_script(2379, "8e9e05c52164694d"),
            "ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 --command-timeout=3s member remove 8e9e05c52164694d"
        );
        assert_eq!(
            del_script(2379, "/pgha/c/initialize"),
            "ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 --command-timeout=3s del /pgha/c/initialize"
        );
        assert_eq!(
            rejoin_script("/var/lib/etcd/pgha-c"),
            "systemctl stop etcd; rm -rf /var/lib/etcd/pgha-c; sed -i 's/^ETCD_INITIAL_CLUSTER_STATE=.*/ETCD_INITIAL_CLUSTER_STATE=\"existing\"/' /etc/default/etcd; systemctl start --no-block etcd"
        );
        assert_eq!(
            health_script(2379),
            "ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 --command-timeout=3s endpoint health"
        );
    }

    #[test]
    fn member_list_is_parsed() {
        let out = "8e9e05c52164694d, started, dc1-pg1, http://10.0.0.1:2380, http://10.0.0.1:2379, false\n\
                   91bc3c398fb3c146, unstarted, , http://10.0.0.4:2380, , false\n";
        assert_eq!(
            parse_members(out),
            [
                ("dc1-pg1".to_string(), "http://10.0.0.1:2380".to_string()),
                (String::new(), "http://10.0.0.4:2380".to_string())
            ]
        );
    }
}
