//! `pgha switchover [--to HOST]`: a planned master change inside the primary
//! cloud. Patroni demotes the master cleanly (its last WAL reaches the
//! replicas before it stops), so no committed transaction is lost.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use super::Fleet;
use crate::components::patroni;
use crate::deploy::{confirm, poll};
use crate::design::Design;
use crate::error::Usage;
use crate::ui;

pub async fn run(design: &Design, to: Option<&str>, yes: bool) -> anyhow::Result<()> {
    let cloud = design
        .primary_clouds()
        .next()
        .ok_or_else(|| Usage("no cloud is primary: nothing to switch over".into()))?;
    if let Some(t) = to {
        if !cloud.hosts.iter().any(|h| h.name == t) {
            bail!(Usage(format!(
                "--to {t}: not a host of the primary cloud {}",
                cloud.name
            )));
        }
    }
    let fleet = Fleet::connect(design, false).await;
    let result = async {
        let members = fleet.cluster_view(cloud).await?;
        let leader = members.iter().find(|m| m.is_leader()).ok_or_else(|| anyhow!("{} has no master to switch from", cloud.name))?;
        if to == Some(leader.name.as_str()) {
            bail!(Usage(format!("{} is already the master", leader.name)));
        }
        let candidate = match to {
            Some(t) => members.iter().find(|m| m.name == t && m.is_healthy()).ok_or_else(|| anyhow!("{t} is not a running replica"))?,
            None => members
                .iter()
                .filter(|m| !m.is_leader() && m.is_healthy())
                .min_by_key(|m| m.lag.as_ref().and_then(|l| l.as_u64()).unwrap_or(u64::MAX))
                .ok_or_else(|| anyhow!("no running replica in {} to switch to", cloud.name))?,
        };
        ui::print(&format!(
            "Plan (2 steps):\n1. switch the master of {} from {} to {} (Patroni demotes {} cleanly first)\n2. wait until {} is master and HAProxy routes to it",
            cloud.name, leader.name, candidate.name, leader.name, candidate.name
        ))?;
        confirm("Switch over?", yes)?;
        let script = patroni::switchover_script(&design.platform.name, &leader.name, &candidate.name);
        fleet.remote(&leader.name)?.check("switching over", &script).await?;
        let started = std::time::Instant::now();
        poll(Duration::from_secs(60), || async {
            let members = fleet.cluster_view(cloud).await?;
            Ok(members.iter().any(|m| m.name == candidate.name && m.is_leader() && m.is_healthy()))
        })
        .await
        .with_context(|| format!("{} did not become master", candidate.name))?;
        eprintln!("{} is master ({:.1} s)", candidate.name, started.elapsed().as_secs_f64());
        Ok(())
    }
    .await;
    fleet.close().await;
    result
}
