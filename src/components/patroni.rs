//! Patroni, the governor: elects the master inside the primary cloud and runs
//! each secondary cloud as a standby cluster that can never accept writes.

use super::{Component, FileSpec};

pub const CONFIG: FileSpec = FileSpec {
    component: Component::Governor,
    template: "patroni.yml.j2",
    path: "/etc/patroni/config.yml",
    owner: "postgres",
    group: "postgres",
    // Holds the passwords.
    mode: 0o600,
    service: "patroni",
};
