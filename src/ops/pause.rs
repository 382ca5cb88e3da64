//! `pgha pause [--cloud NAME]` / `pgha resume [--cloud NAME]`: Patroni's
//! maintenance mode, per cloud. Paused, Patroni neither fails over nor
//! restarts PostgreSQL: the DBA may stop a host's Patroni or work on
//! PostgreSQL without a failover. `status` shows it, and every changing
//! command warns while a cloud is paused.

use anyhow::{bail, Context};

use crate::design::{Cloud, Design};
use crate::engine;
use crate::engine::report::Recorder;
use crate::error::Usage;
use crate::fleet::{Fleet, Reach};
use crate::ui;

pub(crate) struct Options {
    pub cloud: Option<String>,
    pub yes: bool,
    pub dry_run: bool,
}

/// The command's name: `pause` or `resume`.
fn verb(pause: bool) -> &'static str {
    if pause {
        "pause"
    } else {
        "resume"
    }
}

pub(crate) async fn run(design: &Design, opts: &Options, pause: bool, output: ui::Output) -> anyhow::Result<()> {
    let clouds: Vec<&Cloud> = match &opts.cloud {
        Some(name) => vec![design.cloud(name).ok_or_else(|| {
            let names: Vec<&str> = design.clouds.iter().map(|c| c.name.as_str()).collect();
            Usage(format!(
                "--cloud {name}: no such cloud (the design has {})",
                names.join(", ")
            ))
        })?],
        None => design.clouds_in_order(),
    };
    let fleet = Fleet::connect(design, Reach::NO_GLB).await?;
    let result = run_on(&fleet, &clouds, pause, opts, output).await;
    fleet.close().await;
    result
}

/// On a connected fleet: the cluster lock, the clouds' state, the plan,
/// the confirmation, then each cloud until Patroni reports the change.
pub(crate) async fn run_on(
    fleet: &Fleet,
    clouds: &[&Cloud],
    pause: bool,
    opts: &Options,
    output: ui::Output,
) -> anyhow::Result<()> {
    let flags = engine::Flags::new(opts.yes, opts.dry_run, output);
    engine::run(fleet, &mut Switch { fleet, clouds, pause }, flags).await
}

/// Pausing or resuming some clouds, as the engine runs it.
struct Switch<'a> {
    fleet: &'a Fleet,
    clouds: &'a [&'a Cloud],
    pause: bool,
}

impl<'a> engine::Command for Switch<'a> {
    type Step = &'a Cloud;

    fn name(&self) -> String {
        verb(self.pause).to_string()
    }

    /// Where every command takes it: the primary cloud's etcd first.
    fn lock_clouds(&self) -> Vec<&Cloud> {
        let mut clouds: Vec<&Cloud> = self.fleet.design.primary_clouds().collect();
        clouds.extend(self.clouds.iter().copied());
        clouds
    }

    async fn plan(&mut self) -> anyhow::Result<Vec<&'a Cloud>> {
        let pause = self.pause;
        let mut todo = Vec::new();
        for c in self.clouds {
            let view = self
                .fleet
                .cluster_state(c)
                .await
                .with_context(|| format!("reading whether {} is paused", c.name))?;
            if view.paused == pause {
                ui::progress::note(format!(
                    "{} is {} already",
                    c.name,
                    if pause { "paused" } else { "not paused" }
                ));
            } else {
                todo.push(*c);
            }
        }
        if !pause {
            refuse_orphan_primaries(self.fleet, &todo).await?;
        }
        Ok(todo)
    }

    fn describe(&self, c: &&'a Cloud) -> String {
        if self.pause {
            format!(
                "pause {}: Patroni stops failing over and leaves PostgreSQL as it is (maintenance mode) until \
                 `pgha resume`",
                c.name
            )
        } else {
            format!(
                "resume {}: Patroni fails over and restarts PostgreSQL again; a cloud without a running master \
                 elects one",
                c.name
            )
        }
    }

    fn question(&self) -> String {
        if self.pause { "Pause?" } else { "Resume?" }.to_string()
    }

    async fn run(&mut self, c: &&'a Cloud, _: &Recorder) -> anyhow::Result<()> {
        self.fleet.set_paused(c, self.pause).await
    }
}

/// Prints `orphan` where Patroni is stopped while PostgreSQL runs as a
/// primary: paused, Patroni leaves PostgreSQL running when it stops
/// (Debian's unit kills only Patroni's own process).
pub(crate) fn orphan_script(postgres_port: u16) -> String {
    format!(
        "systemctl is-active --quiet patroni && exit 0\nr=$(\n{}\n)\n[ \"$r\" = f ] && echo orphan\nexit 0\n",
        crate::fleet::psql_script(postgres_port, "select pg_is_in_recovery()")
    )
}

/// Resuming a cloud whose master's Patroni was stopped while paused would
/// let Patroni promote a replica while that PostgreSQL still takes writes:
/// two masters. Refused, before any change, with the way out.
async fn refuse_orphan_primaries(fleet: &Fleet, clouds: &[&Cloud]) -> anyhow::Result<()> {
    let script = orphan_script(fleet.design.platform.postgres_port);
    for c in clouds {
        for h in &c.hosts {
            // A host that cannot be asked may be exactly that primary.
            let asked = match fleet.remote(&h.name) {
                Ok(r) => r.check("looking for a primary without Patroni", &script).await,
                Err(e) => Err(e),
            };
            let out = asked.map_err(|e| {
                Usage(format!(
                    "{}: cannot tell whether PostgreSQL runs there as a primary without Patroni ({e:#}); resumed, \
                     Patroni could promote another host of {} beside it (nothing was changed)\n  hint: bring {} \
                     back (or stop its PostgreSQL), then `pgha resume`",
                    h.name, c.name, h.name
                ))
            })?;
            if out.trim() == "orphan" {
                let p = &fleet.design.platform;
                bail!(
                    "{}: Patroni is stopped while its PostgreSQL runs as a primary; resumed, Patroni would promote \
                     another host of {} while this one still takes writes (nothing was changed)\n  hint: start \
                     Patroni on {} (it takes that server back as the master), or stop that PostgreSQL \
                     (`runuser -u postgres -- {}/pg_ctl -D {} -m fast stop`) so that a replica takes over, then \
                     `pgha resume`",
                    h.name,
                    c.name,
                    h.name,
                    p.bin_dir,
                    p.data_dir
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod runner_tests {
    use super::*;
    use crate::testkit::{Sim, THREE_CLOUDS};

    async fn toggle(sim: &Sim, cloud: Option<&str>, pause: bool) -> anyhow::Result<()> {
        let design = sim.design();
        let fleet = sim.fleet(&design);
        let clouds: Vec<&Cloud> = match cloud {
            Some(n) => vec![design.cloud(n).unwrap()],
            None => design.clouds_in_order(),
        };
        let opts = Options {
            cloud: cloud.map(str::to_string),
            yes: true,
            dry_run: false,
        };
        run_on(&fleet, &clouds, pause, &opts, ui::Output::Json).await
    }

    #[test]
    fn the_orphan_probe_is_one_valid_shell_script() {
        let script = orphan_script(5432);
        let out = std::process::Command::new("bash")
            .args(["-n", "-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(script.contains("PGHA_SQL\n)\n"), "{script}");
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_one_cloud_then_resumes_it_and_skips_what_is_done() {
        let sim = Sim::new(THREE_CLOUDS);
        toggle(&sim, Some("dc2"), true).await.unwrap();
        assert_eq!(sim.world().paused(), ["dc2"]);
        // Pausing everything touches only the clouds not paused yet.
        toggle(&sim, None, true).await.unwrap();
        assert_eq!(sim.world().paused(), ["dc1", "dc2", "dc3"]);
        let pauses = sim.events().iter().filter(|e| e.contains("pause patroni")).count();
        assert_eq!(pauses, 3, "{:?}", sim.events());
        toggle(&sim, None, false).await.unwrap();
        assert!(sim.world().paused().is_empty());
        assert!(sim.world().lock.is_none());
        // Each run that changed something is on pgha's journal, in order.
        let journal = sim.world().journal.clone();
        assert_eq!(journal.len(), 3, "{journal:?}");
        assert!(
            journal[0].contains(r#""command":"pause""#) && journal[0].contains("pause dc2"),
            "{journal:?}"
        );
        assert!(journal[2].contains(r#""command":"resume""#) && journal[2].contains(r#""outcome":"ok""#));
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_that_cannot_be_asked_is_never_taken_for_no_orphan() {
        let mut sim = Sim::new(THREE_CLOUDS);
        toggle(&sim, Some("dc2"), true).await.unwrap();
        sim.unreachable.push("dc2-pg3".into());
        let e = toggle(&sim, Some("dc2"), false).await.unwrap_err();
        assert!(e.downcast_ref::<Usage>().is_some(), "exit 2: {e:#}");
        assert!(
            format!("{e:#}").contains("dc2-pg3: cannot tell whether PostgreSQL runs there as a primary"),
            "{e:#}"
        );
        assert_eq!(sim.world().paused(), ["dc2"], "nothing was changed");
    }
}
