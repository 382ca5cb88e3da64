//! The global load balancer: forwards clients to the primary cloud's HAProxy
//! instances. Either HAProxy hosts pgha configures, or an external command.

use anyhow::{bail, Context};

use super::{Component, FileSpec};
use crate::design::Design;

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

/// Runs an external GLB's command for the design's primary cloud, with
/// PGHA_PRIMARY_CLOUD and PGHA_TARGETS (`address:port,...`) set, and records it.
pub async fn run_external(d: &Design, command: &str) -> anyhow::Result<()> {
    let primary = d.primary_clouds().next();
    let targets: Vec<String> = primary
        .map(|c| {
            c.hosts
                .iter()
                .map(|h| format!("{}:{}", h.address, d.haproxy.port))
                .collect()
        })
        .unwrap_or_default();
    let out = tokio::process::Command::new("sh")
        .args(["-c", command])
        .env("PGHA_PRIMARY_CLOUD", primary.map_or("", |c| c.name.as_str()))
        .env("PGHA_TARGETS", targets.join(","))
        .output()
        .await
        .context("cannot run the external GLB command")?;
    if !out.status.success() {
        bail!(
            "the external GLB command failed: {}",
            crate::remote::last_lines(&String::from_utf8_lossy(&out.stderr), 8)
        );
    }
    crate::deploy::state::record_glb(d, primary.map(|c| c.name.as_str()))
}
