//! HAProxy on every database host: its port leads to the read-write master.

use super::{Component, FileSpec};

pub const CONFIG: FileSpec = FileSpec {
    component: Component::Haproxy,
    template: "haproxy.cfg.j2",
    path: "/etc/haproxy/haproxy.cfg",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: "haproxy",
};
