//! `pgha restore --to TIME | --latest | --backup LABEL`: the whole cluster
//! back to a point in time, from pgBackRest's backups and WAL archive.
//!
//! Every Patroni stops, every cloud's Patroni cluster is forgotten in its
//! etcd (pgha's lock stays), and every data directory is moved aside (kept
//! until the DBA removes it). The primary cloud's first host is restored from
//! its cloud's repository and recovers to the target as a plain PostgreSQL
//! server, which promotes itself there; pgha clears the recovery settings,
//! stops it and starts Patroni on it, which adopts the data as a new cluster.
//! A full backup into every repository follows (the new timeline: replicas
//! restored from an older backup could not follow it), then the primary
//! cloud's replicas and every standby cloud start and copy from it.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::components::backup::{self, Target};
use crate::components::patroni;
use crate::components::systemd::{self, Verb};
use crate::design::{Cloud, Design, Host};
use crate::engine;
use crate::engine::report::Recorder;
use crate::error::Usage;
use crate::fleet::{Fleet, Reach};
use crate::secrets::Secrets;
use crate::ui;
use crate::wait::poll_for;

use super::whole::{on_hosts, site_services_script, start_leader, wait_healthy};

pub(crate) struct Options {
    pub target: Target,
    pub yes: bool,
    pub dry_run: bool,
}

pub(crate) async fn run(design: &Design, opts: &Options, output: ui::Output) -> anyhow::Result<()> {
    if design.backup.is_none() {
        bail!(Usage(format!(
            "{}: backups are off (no `backup:` section): there is nothing to restore from",
            design.path.display()
        )));
    }
    let primary = design
        .primary_clouds()
        .next()
        .ok_or_else(|| Usage("no cloud is primary: make one primary first, then restore into it".into()))?;
    let fleet = Fleet::connect(design, Reach::ALL).await?;
    let result = run_on(&fleet, &primary.name, opts, output).await;
    fleet.close().await;
    result
}

/// The steps, as the plan shows them.
fn plan(d: &Design, primary: &Cloud, target: &Target, aside: &str) -> Vec<String> {
    let leader = &primary.hosts[0].name;
    let others: Vec<&str> = d
        .clouds_in_order()
        .iter()
        .flat_map(|c| c.hosts.iter().map(|h| h.name.as_str()))
        .filter(|h| h != leader)
        .collect();
    let repo = d
        .backup
        .as_ref()
        .and_then(|b| b.repository(&primary.name))
        .map_or("-", |r| r.host.name.as_str());
    let standby: Vec<&str> = d
        .clouds_in_order()
        .iter()
        .filter(|c| !c.is_primary())
        .map(|c| c.name.as_str())
        .collect();
    vec![
        format!(
            "stop Patroni and PostgreSQL on every host ({}), standby clouds first{}",
            d.clouds.iter().map(|c| c.hosts.len()).sum::<usize>(),
            if d.site.is_some() { ", and the site agents" } else { "" }
        ),
        "forget each cloud's Patroni cluster in its etcd (leader, members, configuration; the data stays on disk), \
         and write every host's Patroni configuration for its cloud's role now (a secondary cloud bootstraps as a \
         standby cluster)"
            .into(),
        format!(
            "move every host's data directory {} aside to {}{aside}",
            d.platform.data_dir, d.platform.data_dir
        ),
        format!(
            "restore {leader} from {}'s repository on {repo} to {}",
            primary.name,
            target.describe()
        ),
        format!(
            "recover {leader} to the target as plain PostgreSQL, which promotes itself there; clear the recovery settings"
        ),
        format!(
            "start Patroni on {leader}: it takes cluster {} as its master{}",
            d.platform.name,
            if d.site.is_some() {
                format!(
                    " ({} takes the site lease first; the site agents start again)",
                    primary.name
                )
            } else {
                String::new()
            }
        ),
        "take a full backup of the new timeline into every repository, from the master".into(),
        format!(
            "start Patroni on {}: {}'s replicas restore from its repository, {} copy from {}",
            others.join(", "),
            primary.name,
            if standby.is_empty() {
                "no standby cloud to".to_string()
            } else {
                format!("the standby leaders of {}", standby.join(", "))
            },
            primary.name
        ),
        format!("wait until every cloud is healthy again and the GLB reaches {leader}"),
    ]
}

pub(crate) async fn run_on(fleet: &Fleet, primary: &str, opts: &Options, output: ui::Output) -> anyhow::Result<()> {
    let d = &fleet.design;
    let primary = d.cloud(primary).expect("the primary cloud is in the design");
    let unreachable: Vec<&str> = d
        .clouds
        .iter()
        .flat_map(|c| &c.hosts)
        .chain(d.repository_hosts())
        .filter(|h| !fleet.reachable(&h.name))
        .map(|h| h.name.as_str())
        .collect();
    if !unreachable.is_empty() {
        bail!(
            "{} unreachable over SSH: a restore replaces every host's data, so every host must answer \
             (nothing was changed)",
            unreachable.join(", ")
        );
    }
    let flags = engine::Flags::new(opts.yes, opts.dry_run, output);
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let aside = format!(".pgha-restore-{stamp}");
    let mut cmd = Restore {
        fleet,
        primary,
        opts,
        texts: plan(d, primary, &opts.target, &aside),
        aside,
    };
    engine::run(fleet, &mut cmd, flags).await
}

struct Restore<'a> {
    fleet: &'a Fleet,
    primary: &'a Cloud,
    opts: &'a Options,
    /// The suffix every old data directory is moved aside to.
    aside: String,
    /// The plan's words for each step, in [`STEPS`]' order.
    texts: Vec<String>,
}

/// The restore's steps, in the order [`plan`] words them.
#[derive(Debug, Clone, Copy)]
enum Step {
    StopAll,
    Forget,
    SetAside,
    Restore,
    RecoverAlone,
    StartLeader,
    Backup,
    StartOthers,
    WaitHealthy,
}

const STEPS: [Step; 9] = [
    Step::StopAll,
    Step::Forget,
    Step::SetAside,
    Step::Restore,
    Step::RecoverAlone,
    Step::StartLeader,
    Step::Backup,
    Step::StartOthers,
    Step::WaitHealthy,
];

impl engine::Command for Restore<'_> {
    type Step = Step;

    fn name(&self) -> String {
        "restore".into()
    }

    fn lock_clouds(&self) -> Vec<&Cloud> {
        self.fleet.design.clouds.iter().collect()
    }

    async fn plan(&mut self) -> anyhow::Result<Vec<Step>> {
        Ok(STEPS.to_vec())
    }

    fn describe(&self, step: &Step) -> String {
        self.texts[*step as usize].clone()
    }

    fn question(&self) -> String {
        "Restore the whole cluster? Every host stops, and writes after the target are set aside".into()
    }

    async fn run(&mut self, step: &Step, _: &Recorder) -> anyhow::Result<()> {
        let (fleet, primary) = (self.fleet, self.primary);
        let d = &fleet.design;
        let leader = &primary.hosts[0];
        let order = d.clouds_in_order();
        let all: Vec<&Host> = order.iter().flat_map(|c| &c.hosts).collect();
        match step {
            Step::StopAll => stop_all(fleet).await,
            Step::Forget => forget(fleet).await,
            Step::SetAside => {
                on_hosts(
                    fleet,
                    all.iter().copied(),
                    "moving the data directory aside",
                    &set_aside_script(&d.platform.data_dir, &self.aside),
                )
                .await
            }
            Step::Restore => fleet
                .remote(&leader.name)?
                .check_within(
                    "restoring with pgBackRest",
                    &backup::restore_script(d, &primary.name, &self.opts.target),
                    crate::remote::LONG_DEADLINE,
                )
                .await
                .map(|_| ()),
            Step::RecoverAlone => recover_alone(fleet, leader).await,
            Step::StartLeader => start_leader(fleet, primary, &leader.name).await,
            Step::Backup => {
                for r in d.backup.iter().flat_map(|b| &b.repositories) {
                    fleet
                        .remote(&r.host.name)?
                        .check_within(
                            "taking a full backup",
                            &backup::backup_script(d, r, backup::Kind::Full, backup::Source::Master),
                            crate::remote::LONG_DEADLINE,
                        )
                        .await
                        .with_context(|| format!("{}: the backup after the restore failed", r.host.name))?;
                }
                Ok(())
            }
            Step::StartOthers => {
                let rest = all.iter().copied().filter(|h| h.name != leader.name);
                on_hosts(
                    fleet,
                    rest,
                    "starting Patroni",
                    &systemd::unit_script(Verb::Start, "patroni"),
                )
                .await
            }
            Step::WaitHealthy => wait_healthy(fleet, primary).await,
        }
    }
}

/// Step 1: every host's Patroni stops (and the site's agents and fences).
async fn stop_all(fleet: &Fleet) -> anyhow::Result<()> {
    let d = &fleet.design;
    let order = d.clouds_in_order();
    if d.site.is_some() {
        on_hosts(
            fleet,
            order.iter().flat_map(|c| &c.hosts),
            "stopping the site agent and fence",
            &site_services_script(false),
        )
        .await?;
    }
    // Standby clouds, then the primary's replicas, then its master: no
    // replica is left following a master that stopped first.
    let script = stop_all_script(d);
    for c in order.iter().rev() {
        let (firsts, rest) = c.hosts.split_at(1);
        on_hosts(fleet, rest, "stopping Patroni and PostgreSQL", &script).await?;
        on_hosts(fleet, firsts, "stopping Patroni and PostgreSQL", &script).await?;
    }
    Ok(())
}

/// Stops Patroni, then a PostgreSQL still running outside it: the server
/// a restore interrupted after step 5 left promoted on its own. Left
/// running, it would take writes beside the next attempt's master, which
/// could not even start on its port (seen in the kill-at-every-call test).
pub(crate) fn stop_all_script(d: &Design) -> String {
    format!(
        "{}
if {}; then {}; fi",
        stop("patroni"),
        backup::pg_ctl_script(d, "status"),
        backup::pg_ctl_script(d, "stop")
    )
}

/// Step 2: each cloud's Patroni cluster forgotten in its etcd, and every
/// host's Patroni configuration written for its cloud's role now.
async fn forget(fleet: &Fleet) -> anyhow::Result<()> {
    let d = &fleet.design;
    // A cloud flipped since the last deploy still has the old role in its
    // file, and Patroni bootstraps from the file: a former primary would
    // initialise a cluster of its own.
    let secrets = Secrets::load(&d.secrets_file)?
        .ok_or_else(|| anyhow!("no secrets file {}: deploy first", d.secrets_file.display()))?;
    let renderer = fleet.renderer().await?;
    for c in &d.clouds_in_order() {
        for h in &c.hosts {
            let files = renderer.db_host(d, c, h, None, &secrets)?;
            fleet
                .remote(&h.name)?
                .install_file(crate::render::pick(&files, &patroni::CONFIG))
                .await?;
        }
        let script = patroni::forget_cluster_script(d.etcd.client_port, &d.platform.name);
        crate::fleet::on_first_answering(&fleet.remotes, c, "forgetting the Patroni cluster", &script).await?;
    }
    Ok(())
}

fn stop(unit: &str) -> String {
    systemd::unit_script(Verb::Stop, unit)
}

/// Moves the data directory aside (when there is one).
pub(crate) fn set_aside_script(data_dir: &str, suffix: &str) -> String {
    let d = crate::shell::quote(data_dir);
    let a = crate::shell::quote(&format!("{data_dir}{suffix}"));
    format!("if [ -e {d} ]; then mv {d} {a}; echo \"kept the old data in \"{a} >&2; fi")
}

/// How the restored server's lone recovery ended.
enum Recovery {
    Promoted,
    /// It stopped first: its log says why.
    Stopped(String),
}

/// Starts the restored server without Patroni, waits until it has
/// recovered to the target and promoted itself, and clears the recovery
/// settings pgBackRest wrote (they would bind it again as a replica later).
/// It keeps running: Patroni adopts a running server as its master
/// (Patroni's documented way to take over existing data).
async fn recover_alone(fleet: &Fleet, leader: &Host) -> anyhow::Result<()> {
    let d = &fleet.design;
    let r = fleet.remote(&leader.name)?;
    r.check("starting the restored PostgreSQL", &backup::pg_ctl_script(d, "start"))
        .await?;
    // A server that stops (the target lies past the archive's end, a
    // segment is missing) ends the wait at once with its log.
    let ended = poll_for(Duration::from_secs(1800), || async {
        if r.check("checking the server", &backup::pg_ctl_script(d, "status"))
            .await
            .is_err()
        {
            let log = r
                .check("reading its log", &backup::restore_log_script())
                .await
                .unwrap_or_default();
            return Ok(Some(Recovery::Stopped(log)));
        }
        let promoted = fleet
            .psql(&leader.name, "SELECT pg_is_in_recovery()")
            .await
            .is_ok_and(|v| v == "f");
        Ok(promoted.then_some(Recovery::Promoted))
    })
    .await
    .with_context(|| format!("{} did not finish recovery", leader.name));
    if let Ok(Recovery::Stopped(log)) = &ended {
        bail!(
            "the restored server on {} stopped before it reached the target (nothing was started; the old data \
             directories are kept aside):\n{log}\n  hint: a time after the archive's last transaction cannot be \
             reached: `pgha backup list` shows the archive's range; `--latest` replays all of it",
            leader.name
        );
    }
    let promoted = ended.map(|_| ());
    if let Err(e) = promoted {
        // pg_ctl waits up to 300 s itself.
        let _ = r
            .check_within(
                "stopping it",
                &backup::pg_ctl_script(d, "stop"),
                Duration::from_secs(360),
            )
            .await;
        return Err(e);
    }
    fleet.psql(&leader.name, backup::RESET_RECOVERY_SQL).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The restore's order against a fake fleet: the cluster lock before the
    //! plan and the question, a design edited meanwhile refused before any
    //! host is touched (issue 24: it confirmed first, and its check of the
    //! design compared against a digest taken after the plan).
    use super::*;
    use crate::testkit::{with_backups, Sim};

    fn opts(yes: bool) -> Options {
        Options {
            target: Target::Latest,
            yes,
            dry_run: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_lock_comes_before_the_question_and_a_refusal_touches_nothing() {
        let sim = Sim::new(&with_backups());
        let design = sim.design();
        let e = run_on(&sim.fleet(&design), "dc1", &opts(false), ui::Output::Json)
            .await
            .unwrap_err();
        assert!(e.downcast_ref::<Usage>().is_some(), "{e:#}");
        assert_eq!(sim.events(), ["dc1-pg1: lock", "dc1-pg1: unlock"]);
        assert!(sim.world().journal.is_empty(), "a refusal is not journaled");
    }

    #[tokio::test(start_paused = true)]
    async fn a_design_changed_after_the_plan_is_refused_before_any_host_stops() {
        let sim = Sim::new(&with_backups());
        let design = sim.design();
        sim.edit_design();
        let e = run_on(&sim.fleet(&design), "dc1", &opts(true), ui::Output::Json)
            .await
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("changed while this command was planning"),
            "{e:#}"
        );
        assert_eq!(sim.events(), ["dc1-pg1: lock", "dc1-pg1: unlock"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dry_run_prints_the_plan_and_changes_nothing() {
        let sim = Sim::new(&with_backups());
        let design = sim.design();
        let dry = Options {
            dry_run: true,
            ..opts(false)
        };
        run_on(&sim.fleet(&design), "dc1", &dry, ui::Output::Json)
            .await
            .unwrap();
        assert_eq!(sim.events(), ["dc1-pg1: lock", "dc1-pg1: unlock"]);
    }

    #[test]
    fn stopping_every_host_stops_a_server_left_outside_patroni() {
        let sim = Sim::new(&with_backups());
        assert_eq!(
            stop_all_script(&sim.design()),
            "systemctl stop patroni\n\
             if runuser -u postgres -- /usr/lib/postgresql/17/bin/pg_ctl -D /var/lib/postgresql/17/pgha status >/dev/null; \
             then runuser -u postgres -- /usr/lib/postgresql/17/bin/pg_ctl -D /var/lib/postgresql/17/pgha -m fast -w -t 300 stop; fi"
        );
    }

    /// The end of every restore: one master, dc1-pg1, on a new timeline;
    /// every host up with data on that timeline, every cloud led again.
    fn assert_restored(sim: &Sim, at: &str) {
        let w = sim.world();
        assert_eq!(w.writable_masters(), ["dc1-pg1"], "{at}");
        assert!(w.most_masters <= 1, "two writable masters at some point ({at})");
        let timeline = w.hosts["dc1-pg1"].timeline;
        assert!(timeline > 1, "a new timeline ({at})");
        for (name, h) in w.hosts.iter().filter(|(_, h)| h.cloud.is_some()) {
            assert!(h.up && h.data && !h.plain, "{name} runs under Patroni ({at})");
            assert_eq!(h.timeline, timeline, "{name}'s timeline ({at})");
        }
        for (name, c) in &w.clouds {
            assert!(c.leader.is_some(), "{name} is led ({at})");
        }
        assert!(w.lock.is_none(), "the lock is released ({at})");
    }

    #[tokio::test(start_paused = true)]
    async fn a_restore_brings_every_cloud_back_on_a_new_timeline() {
        for design in [with_backups(), crate::testkit::default_lab()] {
            let sim = Sim::new(&design);
            let design = sim.design();
            run_on(&sim.fleet(&design), "dc1", &opts(true), ui::Output::Json)
                .await
                .unwrap();
            assert_restored(&sim, "one run");
            assert_eq!(sim.world().journal.len(), 1, "journaled once");
        }
    }

    /// Issue 24: kill -9 at every host call of a restore, before the host
    /// gets the command and after it applied it; then the same command
    /// again. Each time: never two writable masters, and in the end the
    /// cluster restored and whole.
    #[tokio::test(start_paused = true)]
    async fn a_restore_killed_at_any_call_finishes_when_run_again() {
        killed_at_any_call(&with_backups()).await;
    }

    /// The same with the site lease (the default lab): its own test, so
    /// that the two run side by side (each is seconds of CPU).
    #[tokio::test(start_paused = true)]
    async fn a_restore_with_the_site_lease_killed_at_any_call_finishes_when_run_again() {
        killed_at_any_call(&crate::testkit::default_lab()).await;
    }

    async fn killed_at_any_call(text: &str) {
        let calls = {
            let sim = Sim::new(text);
            let design = sim.design();
            run_on(&sim.fleet(&design), "dc1", &opts(true), ui::Output::Json)
                .await
                .unwrap();
            let n = sim.world().calls;
            n
        };
        assert!(calls > 20, "a restore makes {calls} calls");
        for at in 0..calls {
            for when in [crate::testkit::CrashWhen::Before, crate::testkit::CrashWhen::After] {
                let sim = Sim::new(text);
                sim.world().crash = Some((at, when));
                let design = sim.design();
                let _ = run_on(&sim.fleet(&design), "dc1", &opts(true), ui::Output::Json).await;
                {
                    let mut w = sim.world();
                    w.crash = None;
                    // The killed run's lease expires.
                    w.lock = None;
                }
                let design = sim.design();
                run_on(&sim.fleet(&design), "dc1", &opts(true), ui::Output::Json)
                    .await
                    .unwrap_or_else(|e| panic!("run again after a kill at call {at} ({when:?}): {e:#}"));
                assert_restored(&sim, &format!("killed at call {at} ({when:?})"));
            }
        }
    }
}
