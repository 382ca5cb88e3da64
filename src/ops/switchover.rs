//! `pgha switchover [--to HOST]`: a planned master change inside the primary
//! cloud. Patroni demotes the master cleanly (its last WAL reaches the
//! replicas before it stops), so no committed transaction is lost.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use super::report::{numbered, Recorder};
use crate::components::patroni;
use crate::design::{Cloud, Design};
use crate::error::Usage;
use crate::fleet::Fleet;
use crate::ui;
use crate::ui::confirm;
use crate::wait::poll;

pub(crate) struct Options {
    pub to: Option<String>,
    pub yes: bool,
    pub dry_run: bool,
}

pub(crate) async fn run(design: &Design, opts: &Options, output: ui::Output) -> anyhow::Result<()> {
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
    let fleet = Fleet::connect(design, false).await?;
    let result = run_on(&fleet, cloud, opts, output).await;
    fleet.close().await;
    result
}

/// The switchover on a connected fleet: locks, plan, confirmation, steps.
pub(crate) async fn run_on(fleet: &Fleet, cloud: &Cloud, opts: &Options, output: ui::Output) -> anyhow::Result<()> {
    let design = &fleet.design;
    let to = opts.to.as_deref();
    let session = crate::lock::Session::begin(design, "switchover", None)?;
    let lock = session.cluster(design, &[cloud], &fleet.remotes).await?;
    let result = async {
        let view = fleet.cluster_state(cloud).await?;
        super::pause::warn(&view, cloud);
        let members = view.members;
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
                Ok(fleet.master(cloud).await?.as_ref() == Some(&candidate.name))
            })
            .await
            .with_context(|| format!("{} did not become master", candidate.name));
            result = rec.finish(waited);
        }
        crate::journal::record(&fleet.design, &fleet.remotes, &session.holder, &steps, &result).await;
        rec.print(output, "switchover", false, &steps)?;
        result
    }
    .await;
    lock.release().await;
    result
}

#[cfg(test)]
mod runner_tests {
    use super::*;
    use crate::testkit::{Sim, THREE_CLOUDS};

    async fn switchover(sim: &Sim, to: Option<&str>) -> anyhow::Result<()> {
        let design = sim.design();
        let fleet = sim.fleet(&design);
        let cloud = design.primary_clouds().next().unwrap();
        let opts = Options {
            to: to.map(str::to_string),
            yes: true,
            dry_run: false,
        };
        run_on(&fleet, cloud, &opts, ui::Output::Json).await
    }

    #[tokio::test(start_paused = true)]
    async fn switches_to_the_named_replica_and_waits_for_it() {
        let sim = Sim::new(THREE_CLOUDS);
        switchover(&sim, Some("dc1-pg3")).await.unwrap();
        assert_eq!(sim.world().writable_masters(), ["dc1-pg3"]);
        assert!(sim.events().contains(&"dc1-pg1: switch over to dc1-pg3".to_string()));
        assert!(sim.world().most_masters <= 1);
    }

    #[tokio::test(start_paused = true)]
    async fn refuses_a_stopped_candidate_and_the_current_master() {
        let sim = Sim::new(THREE_CLOUDS);
        let e = switchover(&sim, Some("dc1-pg1")).await.unwrap_err();
        assert!(e.downcast_ref::<Usage>().is_some(), "{e:#}");
        sim.world().hosts.get_mut("dc1-pg2").unwrap().up = false;
        let e = switchover(&sim, Some("dc1-pg2")).await.unwrap_err();
        assert!(e.to_string().contains("not a running replica"), "{e}");
        assert_eq!(sim.world().writable_masters(), ["dc1-pg1"]);
        assert!(sim.world().lock.is_none());
    }
}
