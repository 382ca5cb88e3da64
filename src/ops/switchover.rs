//! `pgha switchover [--to HOST]`: a planned master change inside the primary
//! cloud. Patroni demotes the master cleanly (its last WAL reaches the
//! replicas before it stops), so no committed transaction is lost.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use super::report::{numbered, Recorder};
use super::Fleet;
use crate::components::patroni;
use crate::deploy::{confirm, poll, state};
use crate::design::Design;
use crate::error::Usage;
use crate::ui;

pub struct Options {
    pub to: Option<String>,
    pub yes: bool,
    pub dry_run: bool,
}

pub async fn run(design: &Design, opts: &Options, output: ui::Output) -> anyhow::Result<()> {
    let cloud = design
        .primary_clouds()
        .next()
        .ok_or_else(|| Usage("no cloud is primary: nothing to switch over".into()))?;
    let to = opts.to.as_deref();
    if let Some(t) = to {
        if !cloud.hosts.iter().any(|h| h.name == t) {
            bail!(Usage(format!(
                "--to {t}: not a host of the primary cloud {}",
                cloud.name
            )));
        }
    }
    let session = crate::lock::Session::begin(design, "switchover")?;
    state::refuse_unfinished_flip(design, None)?;
    let fleet = Fleet::connect(design, false).await;
    let lock = match session.cluster(design, &[cloud], &fleet.remotes).await {
        Ok(l) => l,
        Err(e) => {
            fleet.close().await;
            return Err(e);
        }
    };
    let result = async {
        let members = fleet.cluster_view(cloud).await?;
        let leader = members
            .iter()
            .find(|m| m.is_leader())
            .ok_or_else(|| anyhow!("{} has no master to switch from", cloud.name))?;
        if to == Some(leader.name.as_str()) {
            bail!(Usage(format!("{} is already the master", leader.name)));
        }
        let candidate = match to {
            Some(t) => members
                .iter()
                .find(|m| m.name == t && m.is_healthy())
                .ok_or_else(|| anyhow!("{t} is not a running replica"))?,
            None => members
                .iter()
                .filter(|m| !m.is_leader() && m.is_healthy())
                .min_by_key(|m| m.lag.as_ref().and_then(|l| l.as_u64()).unwrap_or(u64::MAX))
                .ok_or_else(|| anyhow!("no running replica in {} to switch to", cloud.name))?,
        };
        let steps = vec![
            format!(
                "switch the master of {} from {} to {} (Patroni demotes {} cleanly first)",
                cloud.name, leader.name, candidate.name, leader.name
            ),
            format!("wait until {} is master", candidate.name),
        ];
        if output == ui::Output::Text {
            ui::print(&numbered("Plan for `switchover`", &steps))?;
        }
        let mut rec = Recorder::default();
        if opts.dry_run {
            return rec.print(output, "switchover", true, &steps);
        }
        confirm("Switch over?", opts.yes)?;
        session.ensure_unchanged(design)?;
        let script = patroni::switchover_script(&design.platform.name, &leader.name, &candidate.name);
        rec.start(1, &steps[0]);
        let switched = fleet
            .remote(&leader.name)?
            .check("switching over", &script)
            .await
            .map(|_| ());
        let mut result = rec.finish(switched);
        if result.is_ok() {
            rec.start(2, &steps[1]);
            let waited = poll(Duration::from_secs(60), || async {
                let members = fleet.cluster_view(cloud).await?;
                Ok(members
                    .iter()
                    .any(|m| m.name == candidate.name && m.is_leader() && m.is_healthy()))
            })
            .await
            .with_context(|| format!("{} did not become master", candidate.name));
            result = rec.finish(waited);
        }
        rec.print(output, "switchover", false, &steps)?;
        result
    }
    .await;
    lock.release().await;
    fleet.close().await;
    result
}
