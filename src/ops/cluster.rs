//! What every command asks of the cluster besides its own steps: whether a
//! cloud is paused (said before a plan), and whether a cloud serves clients
//! through HAProxy and the GLB; what the backup repositories hold.

use std::time::Duration;

use anyhow::Context;

use serde::Serialize;

use crate::components::backup::{self, RepoInfo};
use crate::components::{haproxy, patroni};
use crate::design::{Cloud, Design};
use crate::fleet::Fleet;
use crate::ui;
use crate::wait::poll;

impl Fleet {
    /// Every repository's `pgbackrest info`; an unreachable one says so in its status.
    pub(crate) async fn read_repositories(&self) -> Vec<RepoReport> {
        let design = &self.design;
        let Some(b) = &design.backup else { return Vec::new() };
        let reads = b.repositories.iter().map(|r| {
            let script = backup::info_script(design, r);
            async move {
                let info = match self.remote(&r.host.name) {
                    Ok(remote) => match remote.check("reading pgbackrest info", &script).await {
                        Ok(out) => backup::parse_info(&out, backup::stanza(design)).unwrap_or_else(|e| RepoInfo {
                            status: format!("{e:#}"),
                            ..RepoInfo::default()
                        }),
                        Err(e) => RepoInfo {
                            status: format!("{e:#}"),
                            ..RepoInfo::default()
                        },
                    },
                    Err(_) => RepoInfo {
                        status: "unreachable over SSH".into(),
                        ..RepoInfo::default()
                    },
                };
                RepoReport {
                    cloud: r.cloud.clone(),
                    host: r.host.name.clone(),
                    info,
                }
            }
        });
        futures::future::join_all(reads).await
    }

    /// A line on stderr for each of `clouds` that is paused: changing commands
    /// say so before their plan (a paused cloud does not fail over by itself).
    pub(crate) async fn warn_if_paused(&self, clouds: &[&Cloud]) {
        let views = futures::future::join_all(clouds.iter().map(|c| self.cluster_state(c))).await;
        for (c, view) in clouds.iter().zip(views) {
            if let Ok(view) = view {
                warn_paused(&view, c);
            }
        }
    }

    /// Waits until `cloud` has a healthy master, its HAProxy instances route to
    /// it alone, and the GLB forwards to this cloud's HAProxy instances only.
    pub(crate) async fn wait_serving(&self, d: &Design, cloud: &Cloud) -> anyhow::Result<()> {
        let proxy = haproxy::primary_proxy(&d.platform.name);
        poll(Duration::from_secs(90), || async {
            let members = self.cluster_view(cloud).await?;
            let Some(leader) = members.iter().find(|m| m.is_leader() && m.is_healthy()) else {
                return Ok(false);
            };
            for h in &cloud.hosts {
                let Some(r) = self.remotes.get(&h.name) else {
                    continue;
                };
                let csv = r
                    .check(
                        "reading HAProxy stats",
                        &haproxy::stats_script(&d.haproxy.stats_address, d.haproxy.stats_port),
                    )
                    .await?;
                let up: Vec<String> = haproxy::up_servers(&csv, &proxy);
                if up != [leader.name.clone()] {
                    return Ok(false);
                }
            }
            if let Some(g) = &d.glb {
                let glb_proxy = haproxy::glb_proxy(&d.platform.name);
                for h in d.glb_hosts() {
                    let Some(r) = self.remotes.get(&h.name) else {
                        continue;
                    };
                    let csv = r
                        .check(
                            "reading GLB stats",
                            &haproxy::stats_script(&g.stats_address, g.stats_port),
                        )
                        .await?;
                    let up: Vec<String> = haproxy::up_servers(&csv, &glb_proxy);
                    if up.is_empty() || !up.iter().all(|u| cloud.hosts.iter().any(|h| &h.name == u)) {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        })
        .await
        .with_context(|| format!("{} is not serving through HAProxy", cloud.name))
    }
}

/// A paused cloud said so, from a view the command read anyway.
pub(crate) fn warn_paused(view: &patroni::ClusterView, cloud: &Cloud) {
    if view.paused {
        ui::progress::note(patroni::paused_warning(&cloud.name).to_string());
    }
}

/// One repository in `backup list` and `status`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RepoReport {
    pub cloud: String,
    pub host: String,
    /// pgBackRest's `info` of the stanza, or why it could not be read.
    #[serde(flatten)]
    pub info: RepoInfo,
}
