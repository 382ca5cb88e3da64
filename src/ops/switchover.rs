//! `pgha switchover [--to HOST]`: a planned master change inside the primary
//! cloud. Patroni demotes the master cleanly (its last WAL reaches the
//! replicas before it stops), so no committed transaction is lost.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::components::patroni;
use crate::design::{Cloud, Design};
use crate::engine;
use crate::engine::report::Recorder;
use crate::error::Usage;
use crate::fleet::{Fleet, Reach};
use crate::ui;
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
    // Patroni switches over inside the cloud: no GLB, no repository, no other site.
    let reach = Reach {
        glb: false,
        repositories: false,
        sites: false,
    };
    let fleet = Fleet::connect(design, reach).await?;
    let result = run_on(&fleet, cloud, opts, output).await;
    fleet.close().await;
    result
}

/// The switchover on a connected fleet, run by the engine.
pub(crate) async fn run_on(fleet: &Fleet, cloud: &Cloud, opts: &Options, output: ui::Output) -> anyhow::Result<()> {
    let flags = engine::Flags::new(opts.yes, opts.dry_run, output);
    let mut cmd = Switchover {
        fleet,
        cloud,
        to: opts.to.as_deref(),
    };
    engine::run(fleet, &mut cmd, flags).await
}

struct Switchover<'a> {
    fleet: &'a Fleet,
    cloud: &'a Cloud,
    to: Option<&'a str>,
}

/// The switchover's two steps.
enum Step {
    /// Patroni demotes `from` cleanly, then promotes `to`.
    Switch {
        from: String,
        to: String,
    },
    WaitFor(String),
}

impl engine::Command for Switchover<'_> {
    type Step = Step;

    fn name(&self) -> String {
        "switchover".into()
    }

    fn lock_clouds(&self) -> Vec<&Cloud> {
        vec![self.cloud]
    }

    async fn plan(&mut self) -> anyhow::Result<Vec<Step>> {
        let cloud = self.cloud;
        let view = self.fleet.cluster_state(cloud).await?;
        super::cluster::warn_paused(&view, cloud);
        let members = view.members;
        let leader = members
            .iter()
            .find(|m| m.is_leader())
            .ok_or_else(|| anyhow!("{} has no master to switch from", cloud.name))?;
        if self.to == Some(leader.name.as_str()) {
            bail!(Usage(format!("{} is already the master", leader.name)));
        }
        let candidate = match self.to {
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
        Ok(vec![
            Step::Switch {
                from: leader.name.clone(),
                to: candidate.name.clone(),
            },
            Step::WaitFor(candidate.name.clone()),
        ])
    }

    fn describe(&self, step: &Step) -> String {
        match step {
            Step::Switch { from, to } => format!(
                "switch the master of {} from {from} to {to} (Patroni demotes {from} cleanly first)",
                self.cloud.name
            ),
            Step::WaitFor(to) => format!("wait until {to} is master"),
        }
    }

    fn question(&self) -> String {
        "Switch over?".into()
    }

    async fn run(&mut self, step: &Step, _: &Recorder) -> anyhow::Result<()> {
        let fleet = self.fleet;
        match step {
            Step::Switch { from, to } => {
                let script = patroni::switchover_script(fleet.design.governor.rest_port, from, to);
                fleet.remote(from)?.check("switching over", &script).await.map(|_| ())
            }
            Step::WaitFor(to) => poll(Duration::from_secs(60), || async {
                Ok(fleet.master(self.cloud).await?.as_ref() == Some(to))
            })
            .await
            .with_context(|| format!("{to} did not become master")),
        }
    }
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
