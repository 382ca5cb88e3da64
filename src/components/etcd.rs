//! etcd: one cluster per cloud, so losing a cloud never costs another its quorum
//! (../HAZARDS #3: a 3+3 stretched cluster loses quorum with either cloud).

use super::{Component, FileSpec};

pub const CONFIG: FileSpec = FileSpec {
    component: Component::Etcd,
    template: "etcd.env.j2",
    path: "/etc/default/etcd",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: "etcd",
};

/// pgha's own data directory: the package's default member in
/// /var/lib/etcd/default belongs to a one-member cluster and must not be reused.
pub fn data_dir(cluster: &str) -> String {
    format!("/var/lib/etcd/pgha-{cluster}")
}
