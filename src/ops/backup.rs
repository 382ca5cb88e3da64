//! `pgha backup [--type full|diff|incr] [--cloud NAME]`, `pgha backup list`
//! and `pgha backup check`: pgBackRest runs the backups, on each cloud's
//! repository host (see `components::backup`); pgha picks the hosts,
//! plans, asks, and reads pgBackRest's own JSON back.

use anyhow::bail;
use serde::Serialize;

use crate::components::backup::{self, Kind};
use crate::design::{Design, Repository};
use crate::engine;
use crate::engine::report::Recorder;
use crate::error::Usage;
use crate::fleet::{Fleet, Reach};
use crate::ui;

pub(crate) struct Options {
    pub kind: Kind,
    /// Only this cloud's repository (default: every cloud's).
    pub cloud: Option<String>,
    pub yes: bool,
    pub dry_run: bool,
}

/// The design's repositories, or a usage error when backups are off.
fn repositories(design: &Design) -> anyhow::Result<&[Repository]> {
    match &design.backup {
        Some(b) => Ok(&b.repositories),
        None => bail!(Usage(format!(
            "{}: backups are off (no `backup:` section)\n  hint: add `backup:` with a repository host per cloud, then `pgha deploy`",
            design.path.display()
        ))),
    }
}

/// Which repositories a backup goes to.
fn chosen<'a>(design: &'a Design, cloud: Option<&str>) -> anyhow::Result<Vec<&'a Repository>> {
    let all = repositories(design)?;
    match cloud {
        None => Ok(all.iter().collect()),
        Some(c) => match all.iter().find(|r| r.cloud == c) {
            Some(r) => Ok(vec![r]),
            None => {
                let names: Vec<&str> = all.iter().map(|r| r.cloud.as_str()).collect();
                bail!(Usage(format!(
                    "--cloud {c}: no such cloud (clouds: {})",
                    names.join(", ")
                )))
            }
        },
    }
}

pub(crate) async fn take(design: &Design, opts: &Options, output: ui::Output) -> anyhow::Result<()> {
    chosen(design, opts.cloud.as_deref())?;
    let fleet = Fleet::connect(design, Reach::NO_GLB).await?;
    let result = take_on(&fleet, opts, output).await;
    fleet.close().await;
    result
}

/// The backup on a connected fleet, run by the engine: under the cluster
/// lock (no backup while a flip or a deploy changes the cluster under it),
/// one step per repository.
pub(crate) async fn take_on(fleet: &Fleet, opts: &Options, output: ui::Output) -> anyhow::Result<()> {
    let repos = chosen(&fleet.design, opts.cloud.as_deref())?;
    let flags = engine::Flags::new(opts.yes, opts.dry_run, output);
    engine::run(
        fleet,
        &mut Take {
            fleet,
            repos,
            kind: opts.kind,
        },
        flags,
    )
    .await
}

struct Take<'a> {
    fleet: &'a Fleet,
    repos: Vec<&'a Repository>,
    kind: Kind,
}

impl<'a> engine::Command for Take<'a> {
    type Step = &'a Repository;

    fn name(&self) -> String {
        "backup".into()
    }

    fn lock_clouds(&self) -> Vec<&crate::design::Cloud> {
        self.fleet.design.clouds.iter().collect()
    }

    async fn plan(&mut self) -> anyhow::Result<Vec<&'a Repository>> {
        Ok(self.repos.clone())
    }

    fn describe(&self, r: &&'a Repository) -> String {
        format!(
            "take a {} backup of {} into {}'s repository on {} (from a standby where one streams)",
            self.kind.as_str(),
            backup::stanza(&self.fleet.design),
            r.cloud,
            r.host.name
        )
    }

    fn question(&self) -> String {
        "Take the backup?".into()
    }

    async fn run(&mut self, r: &&'a Repository, rec: &Recorder) -> anyhow::Result<()> {
        let remote = self.fleet.remote(&r.host.name)?;
        let pick = standby_pick(self.fleet, r).await;
        rec.note(&pick.describe());
        remote
            .check_within(
                "taking the backup",
                &backup::backup_script(&self.fleet.design, r, self.kind, pick.source()),
                crate::remote::LONG_DEADLINE,
            )
            .await
            .map(|_| ())
    }
}

/// The standby pgBackRest would take for `repo`'s backup, given up to
/// [`STANDBY_WAIT`] to stream (a cloud that just followed a flip restarts
/// its WAL receivers); a cloud Patroni does not answer for leaves its hosts
/// unknown.
async fn standby_pick(fleet: &Fleet, repo: &Repository) -> backup::StandbyPick {
    let design = &fleet.design;
    let order = backup::source_order(design, repo);
    let seen = crate::wait::poll_seen(
        STANDBY_WAIT,
        || async {
            let views = futures::future::join_all(design.clouds.iter().map(|c| fleet.cluster_view(c))).await;
            let members: Vec<_> = views.into_iter().filter_map(Result::ok).flatten().collect();
            Ok(backup::standby_pick(&order, &members))
        },
        backup::StandbyPick::settled,
    )
    .await;
    // Until a look answers, the first host pgBackRest would try is unknown.
    seen.last
        .unwrap_or_else(|| backup::StandbyPick::Unknown(order.first().map_or_else(String::new, |h| h.name.clone())))
}

/// How long a backup waits for the standby it would copy from to stream.
const STANDBY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

pub(crate) async fn list(design: &Design, output: ui::Output) -> anyhow::Result<()> {
    repositories(design)?;
    let fleet = Fleet::connect(design, Reach::NO_GLB).await?;
    let repos = fleet.read_repositories().await;
    fleet.close().await;
    match output {
        ui::Output::Json => ui::print_json(&repos)?,
        ui::Output::Text => ui::print(&list_table(&repos))?,
    }
    if repos.iter().any(|r| r.info.status != "ok") {
        bail!("a repository is not healthy (see its status)");
    }
    Ok(())
}

/// `backup list` as a table: one row per backup, a row per repository
/// without one.
pub(crate) fn list_table(repos: &[super::cluster::RepoReport]) -> String {
    let mut t = ui::table(&[
        "Cloud",
        "Repository",
        "Label",
        "Type",
        "Start (UTC)",
        "Took",
        "Size",
        "In repo",
        "WAL",
    ]);
    for r in repos {
        if r.info.backups.is_empty() {
            t.add_row(vec![
                r.cloud.clone(),
                r.host.clone(),
                format!("({})", r.info.status),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for b in &r.info.backups {
            t.add_row(vec![
                r.cloud.clone(),
                r.host.clone(),
                b.label.clone(),
                b.kind.clone(),
                ui::utc(b.start),
                format!("{} s", b.stop - b.start),
                ui::bytes(b.size),
                ui::bytes(b.repo_size),
                format!("{}..{}", b.wal_start, b.wal_stop),
            ]);
        }
    }
    let mut out = t.to_string();
    for r in repos {
        if let (Some(min), Some(max)) = (&r.info.wal_min, &r.info.wal_max) {
            out.push_str(&format!("\n{} archive: WAL {min} to {max}", r.host));
        }
    }
    out
}

/// One repository's `pgbackrest check`.
#[derive(Debug, Serialize)]
struct CheckResult {
    cloud: String,
    host: String,
    ok: bool,
    detail: String,
}

pub(crate) async fn check(design: &Design, output: ui::Output) -> anyhow::Result<()> {
    let repos = repositories(design)?;
    let fleet = Fleet::connect(design, Reach::NO_GLB).await?;
    // One at a time: two checks switching WAL on the master together can
    // leave one waiting for a segment that is never filled (seen: "WAL
    // segment ... was not archived before the 60000ms timeout").
    let script = backup::check_script(design);
    let mut results = Vec::new();
    for r in repos {
        let ran = match fleet.remote(&r.host.name) {
            Ok(remote) => remote.check("pgbackrest check", &script).await,
            Err(e) => Err(e),
        };
        results.push(CheckResult {
            cloud: r.cloud.clone(),
            host: r.host.name.clone(),
            ok: ran.is_ok(),
            detail: match ran {
                Ok(_) => "the archive reaches this repository; the configuration is consistent".into(),
                Err(e) => format!("{e:#}"),
            },
        });
    }
    fleet.close().await;
    match output {
        ui::Output::Json => ui::print_json(&results)?,
        ui::Output::Text => {
            let mut t = ui::table(&["Cloud", "Repository", "Check", "Detail"]);
            for r in &results {
                t.add_row(vec![
                    r.cloud.clone(),
                    r.host.clone(),
                    if r.ok { "ok" } else { "FAILED" }.to_string(),
                    r.detail.clone(),
                ]);
            }
            ui::print(&t.to_string())?;
        }
    }
    if let Some(bad) = results.iter().find(|r| !r.ok) {
        bail!("{}: pgbackrest check failed", bad.host);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! `pgha backup` against a fake fleet with a repository in each cloud.
    use super::*;
    use crate::testkit::{with_backups, Sim};

    fn opts(yes: bool) -> Options {
        Options {
            kind: Kind::Full,
            cloud: None,
            yes,
            dry_run: false,
        }
    }

    async fn backup(sim: &Sim, opts: &Options) -> anyhow::Result<()> {
        let design = sim.design();
        take_on(&sim.fleet(&design), opts, ui::Output::Json).await
    }

    fn at(events: &[String], what: &str) -> usize {
        events
            .iter()
            .position(|e| e == what)
            .unwrap_or_else(|| panic!("{what} in {events:#?}"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_backup_runs_under_the_cluster_lock_one_step_per_repository() {
        let sim = Sim::new(&with_backups());
        backup(&sim, &opts(true)).await.unwrap();
        let e = sim.events();
        let lock = at(&e, "dc1-pg1: lock");
        let dc1 = at(&e, "dc1-pg3: backup full into dc1");
        let dc2 = at(&e, "dc2-pg3: backup full into dc2");
        let unlock = at(&e, "dc1-pg1: unlock");
        assert!(lock < dc1 && dc1 < dc2 && dc2 < unlock, "{e:#?}");
        assert_eq!(sim.world().journal.len(), 1, "the journal has the backup");
        assert!(sim.world().lock.is_none());
    }

    /// Issue 24: the lock comes before the question (it used to come after),
    /// so what the DBA confirms is what runs.
    #[tokio::test(start_paused = true)]
    async fn the_lock_is_taken_before_the_question_and_released_on_a_refusal() {
        let sim = Sim::new(&with_backups());
        // No terminal and no --yes: refused.
        let e = backup(&sim, &opts(false)).await.unwrap_err();
        assert!(e.downcast_ref::<Usage>().is_some(), "{e:#}");
        assert_eq!(sim.events(), ["dc1-pg1: lock", "dc1-pg1: unlock"]);
    }

    /// Issue 24: a design edited between the plan and the confirmation is
    /// refused before any backup (backup never checked it).
    #[tokio::test(start_paused = true)]
    async fn a_design_changed_after_the_plan_is_refused() {
        let sim = Sim::new(&with_backups());
        let design = sim.design();
        sim.edit_design();
        let e = take_on(&sim.fleet(&design), &opts(true), ui::Output::Json)
            .await
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("changed while this command was planning"),
            "{e:#}"
        );
        let events = sim.events();
        assert!(!events.iter().any(|x| x.contains("backup")), "{events:#?}");
        assert!(sim.world().lock.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_backup_stops_the_run_and_is_journaled() {
        let sim = Sim::new(&with_backups());
        sim.world().hosts.get_mut("dc1-pg3").unwrap().backup_fails = true;
        let e = backup(&sim, &opts(true)).await.unwrap_err();
        assert!(format!("{e:#}").contains("[082]"), "{e:#}");
        let events = sim.events();
        assert!(!events.iter().any(|x| x.contains("into dc2")), "{events:#?}");
        let w = sim.world();
        assert_eq!(w.journal.len(), 1);
        assert!(w.journal[0].contains("082"), "{:?}", w.journal);
        assert!(w.lock.is_none());
    }
}
