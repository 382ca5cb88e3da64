//! The global load balancer: forwards clients to the primary cloud's HAProxy
//! instances. Either HAProxy hosts pgha configures, or an external command.

use super::{Component, FileSpec};

pub const CONFIG: FileSpec = FileSpec {
    component: Component::Glb,
    template: "glb.cfg.j2",
    path: "/etc/haproxy/haproxy.cfg",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: "haproxy",
    check: Some("haproxy -c -q -f"),
};
