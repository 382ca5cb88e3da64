//! `pgha upgrade postgres VERSION`: every cloud's PostgreSQL to a new major
//! version, by PostgreSQL's documented procedure for a primary and its
//! standbys. `pg_upgrade --check` runs on every host while the cluster
//! serves. Then every cloud is paused, the site agents stop, the master
//! stops cleanly (its WAL senders hand the shutdown checkpoint to every
//! standby, the standby clouds' through their HAProxy), each standby stops
//! once it replayed it, and Patroni stops everywhere. pg_upgrade runs on the
//! master (hard links: nothing copied); each standby whose last checkpoint
//! is the master's gets what pg_upgrade changed by rsync, the others are
//! copied in full by Patroni later. Patroni's state in each cloud's etcd is
//! forgotten and its configuration written for the new version; the master
//! starts on it (the point of no return), the stanza is upgraded, the
//! standbys start, a full backup is taken, statistics are rebuilt.
//!
//! Each database host records the upgrade in [`major::MARKER`] from the
//! first stop; a run killed anywhere is finished by the next from there.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use super::whole::{healthy_leaders, on_hosts, site_services_script, start_leader, wait_healthy};
use crate::components::major::{self, Dirs, Facts};
use crate::components::systemd::{self, Verb};
use crate::components::{backup, packages, patroni};
use crate::design::{Cloud, Design, Host, VersionSource};
use crate::engine;
use crate::engine::report::Recorder;
use crate::error::Usage;
use crate::fleet::{parse_lsn, Fleet, Reach};
use crate::render::RenderedFile;
use crate::secrets::Secrets;
use crate::ui;
use crate::wait::poll;

pub(crate) struct Options {
    pub version: u32,
    pub yes: bool,
    pub dry_run: bool,
}

/// How long a standby may take to replay the master's last checkpoint.
const REPLAY_DEADLINE: Duration = Duration::from_secs(60);

pub(crate) async fn run(design: &Design, opts: &Options, output: ui::Output) -> anyhow::Result<()> {
    let to = opts.version;
    if design.platform.version_source == VersionSource::Design && design.platform.postgres_version != to {
        bail!(Usage(format!(
            "{} names platform.postgres_version: {}, and the upgrade is to {to}\n  hint: set `postgres_version: \
             {to}` under platform there (or remove it), then upgrade: the design says what the cluster runs after",
            design.path.display(),
            design.platform.postgres_version
        )));
    }
    if design.clouds.iter().all(|c| c.hosts.is_empty()) {
        bail!(Usage("the design has no database host".into()));
    }
    // Half-way, hosts are configured for either version: read as given.
    let fleet = Fleet::connect_resolving(design, Reach::ALL, false).await?;
    let flags = engine::Flags::new(opts.yes, opts.dry_run, output);
    let mut cmd = MajorUpgrade {
        fleet: &fleet,
        to,
        state: None,
    };
    let result = engine::run(&fleet, &mut cmd, flags).await;
    fleet.close().await;
    result
}

/// How a standby gets the new cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Method {
    /// rsync of what pg_upgrade changed, from the master (its position is
    /// the master's).
    Rsync,
    /// rsync, when its position at the stop is the master's (not known
    /// before the stop).
    RsyncIfMatched,
    /// Copied in full by Patroni from its upstream after the start; why.
    Full(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// The new server's package (and rsync) on hosts that lack it.
    Install(Vec<String>),
    /// `pg_upgrade --check` on every database host, the cluster serving.
    Check,
    /// Every cloud paused, the master stopped, each standby once it replayed
    /// the master's shutdown checkpoint, Patroni everywhere.
    Stop,
    /// pg_upgrade on the master.
    Upgrade,
    /// The new cluster to one standby.
    Copy { host: String, method: Method },
    /// Each cloud's Patroni state forgotten, every file that names the
    /// version written for the new one.
    Configure,
    /// The point of no return: the master starts on the new version.
    StartMaster,
    /// pgBackRest's stanza to the new version, in every repository.
    Stanza,
    /// Patroni starts on the standbys that have the new cluster.
    StartCopied,
    /// A full backup of the new version into every repository.
    Backup,
    /// Patroni starts on the standbys without it: they copy it in full.
    StartRest,
    /// Every cloud led and whole, the GLB on the master.
    Wait,
    /// The planner's statistics, rebuilt.
    Analyze,
    /// Every host's record of the upgrade removed.
    Finish,
}

/// What the plan saw, which the steps use.
struct State {
    old: Design,
    new: Design,
    dirs: Dirs,
    from: u32,
    master: String,
    locale: String,
}

struct MajorUpgrade<'a> {
    fleet: &'a Fleet,
    to: u32,
    state: Option<State>,
}

/// The standbys' methods as the hosts' records show them: a standby whose
/// last checkpoint, shut down in recovery, is the master's at its stop,
/// gets rsync; one stopped elsewhere (or never seen) a full copy. Before
/// the stop nothing is known yet.
pub(crate) fn method(master: &Facts, standby: &Facts) -> Method {
    if standby.mark("copying").is_some() || standby.mark("copied").is_some() {
        return Method::Rsync;
    }
    let Some(at) = master.mark("checkpoint") else {
        return Method::RsyncIfMatched;
    };
    match (standby.old_state.as_deref(), standby.old_checkpoint.as_deref()) {
        (Some("shut down in recovery"), Some(c)) if c == at => Method::Rsync,
        (Some(state), Some(c)) => Method::Full(format!("stopped at {c} ({state}), the master at {at}")),
        _ => Method::Full("its old cluster's control file cannot be read".into()),
    }
}

/// The steps left, from the hosts' records: all of them before the first
/// stop; after it, from the step that did not finish.
pub(crate) fn order(design: &Design, master: &str, facts: &BTreeMap<String, Facts>, install: Vec<String>) -> Vec<Step> {
    let m = facts.get(master).cloned().unwrap_or_default();
    let begun = m.mark("master").is_some();
    if !begun && facts.values().any(|f| f.mark("master").is_some()) {
        // The master's record is written first and removed last: without
        // it, the others' are what a finished upgrade left.
        return vec![Step::Finish];
    }
    let started = m.mark("started").is_some();
    let upgraded = m.mark("upgraded").is_some();
    let mut steps = Vec::new();
    if !begun {
        if !install.is_empty() {
            steps.push(Step::Install(install));
        }
        steps.push(Step::Check);
    }
    if !started {
        if !upgraded && m.mark("stopped").is_none() {
            steps.push(Step::Stop);
        }
        if !upgraded {
            steps.push(Step::Upgrade);
        }
        for h in design.clouds_in_order().iter().flat_map(|c| &c.hosts) {
            if h.name == master {
                continue;
            }
            let f = facts.get(&h.name).cloned().unwrap_or_default();
            if f.mark("copied").is_some() {
                continue;
            }
            steps.push(Step::Copy {
                host: h.name.clone(),
                method: method(&m, &f),
            });
        }
        steps.push(Step::Configure);
    }
    // The copied standbys start with the master: the new cluster has
    // copies before anything else can fail.
    steps.extend([Step::StartMaster, Step::StartCopied]);
    if design.backup.is_some() {
        steps.push(Step::Stanza);
    }
    steps.push(Step::Analyze);
    if design.backup.is_some() && m.mark("backed_up").is_none() {
        steps.push(Step::Backup);
    }
    steps.extend([Step::StartRest, Step::Wait, Step::Finish]);
    steps
}

impl MajorUpgrade<'_> {
    fn state(&self) -> anyhow::Result<&State> {
        self.state
            .as_ref()
            .ok_or_else(|| anyhow!("the upgrade was not planned"))
    }

    fn db_hosts(&self) -> Vec<&Host> {
        self.fleet
            .design
            .clouds_in_order()
            .into_iter()
            .flat_map(|c| &c.hosts)
            .collect()
    }

    /// Every database host's facts, read at once (hosts that cannot be read
    /// are named).
    async fn read(&self, dirs: &Dirs) -> anyhow::Result<BTreeMap<String, Facts>> {
        let script = major::facts_script(dirs);
        let read = futures::future::join_all(self.db_hosts().into_iter().map(|h| {
            let script = &script;
            async move {
                let out = match self.fleet.remote(&h.name) {
                    Ok(r) => r.check("reading the host's PostgreSQL", script).await,
                    Err(e) => Err(e),
                };
                (h.name.clone(), out.map(|o| major::parse_facts(&o)))
            }
        }))
        .await;
        let mut facts = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, f) in read {
            match f {
                Ok(f) => {
                    facts.insert(name, f);
                }
                Err(e) => problems.push(format!("{name}: {e:#}")),
            }
        }
        if !problems.is_empty() {
            bail!(
                "every database host must answer before a major upgrade (nothing was changed): {}",
                problems.join("; ")
            );
        }
        Ok(facts)
    }

    /// What the cluster runs and where the upgrade stands; refuses before
    /// any change what pg_upgrade's procedure cannot take.
    async fn see(&mut self) -> anyhow::Result<Vec<Step>> {
        let fleet = self.fleet;
        let d = &fleet.design;
        let to = self.to;
        let missing: Vec<String> = d
            .clouds
            .iter()
            .flat_map(|c| &c.hosts)
            .chain(d.repository_hosts())
            .filter(|h| !fleet.reachable(&h.name))
            .map(|h| h.name.clone())
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} unreachable over SSH: a major upgrade stops and changes every database host, so every one \
                 (and every repository) must answer (nothing was changed)",
                missing.join(", ")
            );
        }
        // The version each host is configured for, read with either design's
        // paths (the facts name both).
        let probe = Dirs::new(&d.with_major(to), &d.with_major(to));
        let first = self.read(&probe).await?;
        let begun: Vec<(&String, &Facts)> = first.iter().filter(|(_, f)| f.mark("master").is_some()).collect();
        let (from, master, locale) = if let Some((_, f)) = begun.first() {
            let from: u32 = f.mark("from").and_then(|v| v.parse().ok()).unwrap_or(0);
            let under_way: u32 = f.mark("to").and_then(|v| v.parse().ok()).unwrap_or(0);
            if under_way != to {
                bail!(Usage(format!(
                    "an upgrade to PostgreSQL {under_way} is under way on the hosts: finish it with `pgha upgrade \
                     postgres {under_way}`"
                )));
            }
            let mut master = f.mark("master").unwrap_or_default().to_string();
            if d.find_host(&master).is_none() {
                bail!(
                    "the upgrade under way names {master} as its master, which is not in the design\n  hint: put \
                     the design back as it was for the upgrade, then run it again"
                );
            }
            // Before the master stopped, Patroni may have moved it (a run
            // killed early, then a failover): the stop takes the one now.
            if first.get(&master).is_some_and(|m| m.mark("checkpoint").is_none()) {
                if let Some(p) = d.primary_clouds().next() {
                    if let Ok(Some(now)) = fleet.master(p).await {
                        master = now;
                    }
                }
            }
            let locale = f.mark("locale").unwrap_or("C").to_string();
            ui::progress::note(format!(
                "an upgrade from PostgreSQL {from} to {to} was interrupted; this run finishes it (master: {master})"
            ));
            (from, master, locale)
        } else {
            let majors: BTreeSet<u32> = first.values().filter_map(|f| f.configured).collect();
            let from = match majors.iter().copied().collect::<Vec<_>>().as_slice() {
                [v] => *v,
                [] => bail!(Usage(
                    "no database host has Patroni configured: deploy the cluster first".into()
                )),
                _ => bail!(
                    "the hosts' Patroni runs different PostgreSQL versions ({majors:?}) and no upgrade is under way: \
                     `pgha status` shows which host runs what"
                ),
            };
            if from == to {
                ui::progress::note(format!("every host runs PostgreSQL {to} already"));
                return Ok(Vec::new());
            }
            if from > to {
                bail!(Usage(format!(
                    "the cluster runs PostgreSQL {from}: pg_upgrade moves to a newer major only, not to {to}"
                )));
            }
            let (old, new) = (d.with_major(from), d.with_major(to));
            if old.platform.data_dir == new.platform.data_dir {
                bail!(Usage(format!(
                    "{} names platform.data_dir {}: the old and the new cluster need a directory each\n  hint: \
                     remove data_dir from the design (each version then has /var/lib/postgresql/VERSION/pgha), or \
                     name one with the version in it",
                    d.path.display(),
                    old.platform.data_dir
                )));
            }
            healthy_leaders(fleet, &BTreeSet::new(), "major upgrade").await?;
            let primary = d
                .primary_clouds()
                .next()
                .ok_or_else(|| Usage("no cloud is primary: make one primary first".into()))?;
            let master = fleet
                .master(primary)
                .await?
                .ok_or_else(|| anyhow!("{} has no master now: nothing was changed", primary.name))?;
            let locale = fleet.psql(&master, major::LOCALE_SQL).await?;
            if !major::valid_locale(&locale) {
                bail!("the cluster's locale `{locale}` is not one pgha passes to initdb (nothing was changed)");
            }
            (from, master, locale)
        };
        let (old, new) = (d.with_major(from), d.with_major(to));
        if old.platform.data_dir == new.platform.data_dir {
            // A design changed half-way: every later step would act on one
            // directory as on two.
            bail!(Usage(format!(
                "{} names one data directory ({}) for PostgreSQL {from} and {to}: put the design back as it was \
                 for the upgrade",
                d.path.display(),
                old.platform.data_dir
            )));
        }
        let dirs = Dirs::new(&old, &new);
        let facts = self.read(&dirs).await?;
        if begun.is_empty() {
            let spaces: Vec<&str> = facts
                .iter()
                .filter(|(_, f)| f.tablespaces > 0)
                .map(|(h, _)| h.as_str())
                .collect();
            if !spaces.is_empty() {
                bail!(Usage(format!(
                    "{} have tablespaces: pgha upgrades clusters with their data in the data directory only \
                     (nothing was changed)",
                    spaces.join(", ")
                )));
            }
        }
        let install: Vec<String> = facts
            .iter()
            .filter(|(_, f)| !f.new_bin || !f.rsync)
            .map(|(h, _)| h.clone())
            .collect();
        let steps = order(d, &master, &facts, install);
        self.state = Some(State {
            old,
            new,
            dirs,
            from,
            master,
            locale,
        });
        Ok(steps)
    }

    fn describe(&self, step: &Step) -> String {
        let Some(s) = &self.state else {
            return format!("{step:?}");
        };
        let (from, to, master) = (s.from, self.to, &s.master);
        let d = &self.fleet.design;
        match step {
            Step::Install(hosts) => format!(
                "install {} on {} from their apt sources (no service starts, no cluster is created)",
                major::packages(to).join(" and "),
                hosts.join(", ")
            ),
            Step::Check => format!(
                "run `pg_upgrade --check` from {from} to {to} on every database host while the cluster serves \
                 (a scratch cluster, removed after): a failure stops here, nothing of the cluster changed"
            ),
            Step::Stop => {
                let (agents, master_agent) = if d.site.is_some() {
                    (
                        "stop the site agents but the master's, ",
                        " after a checkpoint and its site agent's stop (its site gate open until then: every cloud \
                         receives its last WAL)",
                    )
                } else {
                    ("", "")
                };
                format!(
                    "writes stop: {agents}pause every cloud, stop {master}'s PostgreSQL {from} cleanly{master_agent}, \
                     then each standby once it replayed that shutdown checkpoint, then Patroni everywhere (the old \
                     cluster can still start again)"
                )
            }
            Step::Upgrade => format!(
                "pg_upgrade on {master}: {} into {} by hard links (by copy if another file system), after an initdb \
                 like the old cluster's",
                s.dirs.old_data, s.dirs.new_data
            ),
            Step::Copy { host, method } => match method {
                Method::Rsync => format!(
                    "{host}: rsync from {master} of what pg_upgrade changed (its last checkpoint is the master's: \
                     PostgreSQL's method for standbys, no full copy)"
                ),
                Method::RsyncIfMatched => format!(
                    "{host}: rsync from {master} of what pg_upgrade changed if its last checkpoint at the stop is the \
                     master's (PostgreSQL's method for standbys), else a full copy by Patroni after the start"
                ),
                Method::Full(why) => format!(
                    "{host}: no rsync ({why}): its new data directory stays empty, Patroni copies it in full after \
                     the start"
                ),
            },
            Step::Configure => format!(
                "forget each cloud's Patroni cluster in its etcd (the new system identifier) and write every file \
                 that names the version for PostgreSQL {to} (Patroni, pgBackRest, the site agent and fence)"
            ),
            Step::StartMaster => format!(
                "POINT OF NO RETURN: start Patroni on {master} with PostgreSQL {to}{}; writes resume. Until here \
                 PostgreSQL {from} can start again (see the README)",
                if d.site.is_some() {
                    " (its cloud takes the site lease first)"
                } else {
                    ""
                }
            ),
            Step::Stanza => "upgrade pgBackRest's stanza to the new version in every repository".into(),
            Step::StartCopied => "start Patroni on every standby that has the new cluster".into(),
            Step::Backup => format!(
                "take a full backup of PostgreSQL {to} into every repository (point-in-time recovery starts there)"
            ),
            Step::StartRest => "start Patroni on any standby without the new cluster: it copies it in full from \
                                its upstream"
                .into(),
            Step::Wait => "wait until every cloud is led and whole and the GLB reaches the master".into(),
            Step::Analyze => format!(
                "rebuild the planner's statistics on {master} (vacuumdb --analyze-in-stages; pg_upgrade does not \
                 carry them)"
            ),
            Step::Finish => format!(
                "remove every host's record of the upgrade and the copy's SSH key; the old data directories ({}) \
                 stay until the DBA removes them",
                s.dirs.old_data
            ),
        }
    }

    /// Facts of one host, fresh.
    async fn facts(&self, host: &str) -> anyhow::Result<Facts> {
        let s = self.state()?;
        let out = self
            .fleet
            .remote(host)?
            .check("reading the host's PostgreSQL", &major::facts_script(&s.dirs))
            .await?;
        Ok(major::parse_facts(&out))
    }

    async fn mark(&self, hosts: &[&Host], pairs: &[(&str, &str)]) -> anyhow::Result<()> {
        on_hosts(
            self.fleet,
            hosts.iter().copied(),
            "recording the upgrade",
            &major::mark_script(pairs),
        )
        .await
    }

    async fn install(&self, hosts: &[String]) -> anyhow::Result<()> {
        let script = packages::install_script(&major::packages(self.to));
        let runs = hosts.iter().map(|h| {
            let script = &script;
            async move {
                self.fleet
                    .remote(h)?
                    .check_within("installing the new server", script, Duration::from_secs(900))
                    .await
                    .with_context(|| format!("{h}: nothing of the cluster was changed"))
            }
        });
        futures::future::try_join_all(runs).await.map(|_| ())
    }

    async fn check(&self, rec: &Recorder) -> anyhow::Result<()> {
        let s = self.state()?;
        let script = major::check_script(&s.dirs, &s.locale);
        let hosts = self.db_hosts();
        let runs = hosts.iter().map(|h| {
            let script = &script;
            async move {
                let r = self.fleet.remote(&h.name)?;
                r.check_within("pg_upgrade --check", script, Duration::from_secs(600))
                    .await
                    .map_err(|e| anyhow!("{}: {e:#}", h.name))
            }
        });
        let results = futures::future::join_all(runs).await;
        let failed: Vec<String> = results
            .into_iter()
            .filter_map(Result::err)
            .map(|e| e.to_string())
            .collect();
        if !failed.is_empty() {
            bail!(
                "pg_upgrade --check failed (nothing of the cluster was changed):\n  {}",
                failed.join("\n  ")
            );
        }
        rec.note(&format!("pg_upgrade --check passed on {} hosts", hosts.len()));
        Ok(())
    }

    async fn stop(&self, rec: &Recorder) -> anyhow::Result<()> {
        let fleet = self.fleet;
        let d = &fleet.design;
        let s = self.state()?;
        let hosts = self.db_hosts();
        let (from, to) = (s.from.to_string(), self.to.to_string());
        // Recorded first: from here a killed run is finished by the next.
        // The master's record first (and gone last): it is the one that
        // says an upgrade is under way.
        let record = [
            ("from", from.as_str()),
            ("to", to.as_str()),
            ("master", s.master.as_str()),
            ("locale", s.locale.as_str()),
        ];
        let (master_host, others): (Vec<&Host>, Vec<&Host>) = hosts.iter().partition(|h| h.name == s.master);
        self.mark(&master_host, &record).await?;
        self.mark(&others, &record).await?;
        // Patroni starts nowhere by itself from here (a reboot, an
        // operator): each host is let go at its turn to start.
        on_hosts(
            fleet,
            hosts.iter().copied(),
            "holding Patroni",
            &major::hold_script(self.to),
        )
        .await?;
        // The site agents and fences stop, the master's last, just before
        // its server: its agent's renewals keep its site gate open, and so
        // the route of every other cloud's standby leader, through the
        // pause. A clean stop waits for each connected standby to flush the
        // shutdown checkpoint; a route closed before (the gate shuts TTL/3 s
        // after the last renewal) left that cloud short of the master's last
        // WAL, copied in full (seen in CI: a slow pause and stop). With the
        // master's agent alone running no cloud can take the lease (a
        // takeover is a standby leader's agent's). Its fence must not run
        // into the stop: it would stop the server at once (unclean) when
        // the renewals end, which they do as the server stops.
        let stop_site = |on: Vec<_>| async move {
            if d.site.is_none() {
                return Ok(());
            }
            on_hosts(
                fleet,
                on,
                "stopping the site agent and fence",
                &site_services_script(false),
            )
            .await
        };
        stop_site(others.clone()).await?;
        // Paused, Patroni neither fails over nor restarts a stopped server,
        // and leaves PostgreSQL running when it stops itself.
        for c in d.clouds_in_order() {
            if fleet.cluster_state(c).await.is_ok_and(|v| v.paused) {
                continue;
            }
            if let Err(e) = fleet.set_paused(c, true).await {
                // A run killed after Patroni stopped finds no Patroni to ask.
                let running = self.patroni_running(c).await;
                if running {
                    return Err(e.context(format!("pausing {}", c.name)));
                }
            }
        }
        // A checkpoint first, so the shutdown checkpoint writes little: as
        // soon as the server refuses connections Patroni's /primary fails
        // and HAProxy closes the routes (about 2 s), so a long shutdown
        // checkpoint could leave another cloud without it too. A failure
        // (a killed run's master is stopped already) leaves it to the stop.
        let _ = fleet.psql(&s.master, "CHECKPOINT").await;
        stop_site(master_host.clone()).await?;
        let master = fleet.remote(&s.master)?;
        master
            .check_within(
                "stopping the master's PostgreSQL",
                &major::stop_script(&s.dirs.old_bin, &s.dirs.old_data),
                Duration::from_secs(360),
            )
            .await?;
        let m = self.facts(&s.master).await?;
        let checkpoint = match (
            m.mark("checkpoint"),
            m.old_state.as_deref(),
            m.old_checkpoint.as_deref(),
        ) {
            // Recorded by a killed run: the standbys were judged by it.
            (Some(c), _, _) => c.to_string(),
            (None, Some("shut down"), Some(c)) => c.to_string(),
            (None, state, _) => bail!(
                "{}'s PostgreSQL {} did not shut down cleanly ({}): pg_upgrade needs a clean shutdown\n  hint: `pgha \
                 upgrade postgres {}` again stops it again",
                s.master,
                s.from,
                state.unwrap_or("unknown"),
                self.to
            ),
        };
        self.mark(&[self.host(&s.master)?], &[("checkpoint", &checkpoint)])
            .await?;
        let at = parse_lsn(&checkpoint)?;
        // Each running standby replays the master's last record (its
        // shutdown checkpoint) before it stops: then its files are the
        // master's. One a killed run stopped already is judged by its
        // control file below.
        let standbys: Vec<&Host> = hosts.iter().copied().filter(|h| h.name != s.master).collect();
        let waits = standbys.iter().map(|h| async move {
            poll(REPLAY_DEADLINE, || async {
                let lsn = fleet.psql(&h.name, "select pg_last_wal_replay_lsn()").await;
                let replayed = lsn
                    .as_ref()
                    .ok()
                    .and_then(|l| parse_lsn(l).ok())
                    .is_some_and(|l| l > at);
                // Not running (any more): nothing to wait for.
                Ok(replayed || (lsn.is_err() && !self.facts(&h.name).await.is_ok_and(|f| f.old_running)))
            })
            .await
        });
        futures::future::join_all(waits).await;
        on_hosts(
            fleet,
            standbys.iter().copied(),
            "stopping PostgreSQL",
            &major::stop_script(&s.dirs.old_bin, &s.dirs.old_data),
        )
        .await?;
        on_hosts(
            fleet,
            hosts.iter().copied(),
            "stopping Patroni",
            &systemd::unit_script(Verb::Stop, "patroni"),
        )
        .await?;
        // Which standby stopped where: the copies follow from it.
        let master = self.facts(&s.master).await?;
        let mut elsewhere = Vec::new();
        for h in &standbys {
            if let Method::Full(why) = method(&master, &self.facts(&h.name).await?) {
                elsewhere.push(format!("{} ({why})", h.name));
            }
        }
        if !elsewhere.is_empty() {
            rec.note(&format!(
                "not at the master's shutdown checkpoint {checkpoint}, to be copied in full after the start: {}",
                elsewhere.join(", ")
            ));
        }
        self.mark(&[self.host(&s.master)?], &[("stopped", "yes")]).await
    }

    fn host(&self, name: &str) -> anyhow::Result<&Host> {
        self.fleet
            .design
            .find_host(name)
            .map(|(_, h)| h)
            .ok_or_else(|| anyhow!("{name} is not in the design"))
    }

    async fn patroni_running(&self, c: &Cloud) -> bool {
        for h in &c.hosts {
            if let Ok(r) = self.fleet.remote(&h.name) {
                if r.check("asking systemd", "systemctl is-active --quiet patroni")
                    .await
                    .is_ok()
                {
                    return true;
                }
            }
        }
        false
    }

    async fn upgrade(&self, rec: &Recorder) -> anyhow::Result<()> {
        let s = self.state()?;
        let out = self
            .fleet
            .remote(&s.master)?
            .check_within(
                "pg_upgrade",
                &major::upgrade_script(&s.dirs, &s.locale),
                crate::remote::LONG_DEADLINE,
            )
            .await
            .with_context(|| {
                format!(
                    "pg_upgrade on {} failed: PostgreSQL {} is intact, and `pgha upgrade postgres {}` tries again",
                    s.master, s.from, self.to
                )
            })?;
        let field = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or("?")
                .trim()
                .to_string()
        };
        rec.note(&format!(
            "{}: pg_upgrade {} took {} s (its data directory: {})",
            s.master,
            field("mode "),
            field("took "),
            field("size ").parse().map_or("?".to_string(), ui::bytes)
        ));
        if let Some(sql) = out.lines().find_map(|l| l.strip_prefix("extensions ")) {
            rec.note(&format!(
                "pg_upgrade wrote the extension updates it found to {sql} on {}: run it with psql on the master \
                 once the upgrade is done",
                s.master
            ));
        }
        self.mark(&[self.host(&s.master)?], &[("upgraded", "yes")]).await
    }

    async fn copy(&self, host: &str, rec: &Recorder) -> anyhow::Result<()> {
        let fleet = self.fleet;
        let s = self.state()?;
        let target = self.host(host)?;
        let master = self.facts(&s.master).await?;
        if master.mark("started").is_some() {
            bail!(
                "{} runs the new cluster already: {host} is copied in full by Patroni",
                s.master
            );
        }
        let now = self.facts(host).await?;
        let r = fleet.remote(host)?;
        match method(&master, &now) {
            Method::Rsync => {}
            other => {
                let why = match other {
                    Method::Full(why) => why,
                    _ => "the master's position is not recorded".to_string(),
                };
                r.check(
                    "clearing the new data directory",
                    &format!("rm -rf {}", crate::shell::quote(&s.dirs.new_data)),
                )
                .await?;
                rec.note(&format!("{host}: copied in full after the start ({why})"));
                return Ok(());
            }
        }
        let key = fleet
            .remote(&s.master)?
            .check("making the copy's SSH key", &major::key_script())
            .await?;
        let key = major::public_key(key.trim()).ok_or_else(|| anyhow!("{}: no SSH public key made", s.master))?;
        let host_key = r.check("reading the host's SSH key", &major::host_key_script()).await?;
        let host_key = major::public_key(host_key.trim())
            .ok_or_else(|| anyhow!("{host} has no ed25519 SSH host key in /etc/ssh"))?;
        let master_address = &self.host(&s.master)?.address;
        r.check(
            "letting the master's key in",
            &major::receive_script(&s.dirs, &key, master_address),
        )
        .await?;
        self.mark(&[target], &[("copying", "yes")]).await?;
        let copied = fleet
            .remote(&s.master)?
            .check_within(
                "copying with rsync",
                &major::sync_script(&s.dirs, &target.address, target.ssh.port, &host_key),
                crate::remote::LONG_DEADLINE,
            )
            .await;
        let out = match copied {
            Ok(out) => out,
            Err(e) => {
                // The cluster does not wait on one host's copy: Patroni
                // copies it in full after the start.
                r.check("clearing the new data directory", &major::abandon_copy_script(&s.dirs))
                    .await?;
                rec.note(&format!(
                    "{host}: copied in full after the start: rsync from {} failed ({e:#}); its sshd must let \
                     `postgres` log in with a key from {master_address}",
                    s.master
                ));
                return Ok(());
            }
        };
        let (sent, size) = major::parse_stats(&out);
        rec.note(&format!(
            "{host}: rsync sent {} of {} in the two data directories",
            sent.map_or("?".to_string(), ui::bytes),
            size.map_or("?".to_string(), ui::bytes)
        ));
        self.mark(&[target], &[("copied", "yes")]).await
    }

    async fn configure(&self) -> anyhow::Result<()> {
        let fleet = self.fleet;
        let d = &fleet.design;
        let s = self.state()?;
        if self.facts(&s.master).await?.mark("started").is_some() {
            return Ok(());
        }
        let secrets = Secrets::load(&d.secrets_file)?
            .ok_or_else(|| anyhow!("no secrets file {}: deploy first", d.secrets_file.display()))?;
        let renderer = fleet.renderer().await?;
        // Rendered first, written on every host at once: the cluster is
        // down meanwhile.
        let mut writes = Vec::new();
        for c in d.clouds_in_order() {
            for h in &c.hosts {
                let old = renderer.db_host(&s.old, c, h, None, &secrets)?;
                let new = renderer.db_host(&s.new, c, h, None, &secrets)?;
                writes.push((h.name.as_str(), old, new, true));
            }
        }
        for r in d
            .backup
            .iter()
            .flat_map(|b| &b.repositories)
            .filter(|r| !r.on_database_host)
        {
            let old = renderer.repository_host(&s.old, r, &secrets)?;
            let new = renderer.repository_host(&s.new, r, &secrets)?;
            writes.push((r.host.name.as_str(), old, new, false));
        }
        let runs = writes.iter().map(|(host, old, new, patroni)| async move {
            self.write_changed(host, old, new, *patroni)
                .await
                .with_context(|| host.to_string())
        });
        futures::future::try_join_all(runs).await?;
        for c in d.clouds_in_order() {
            let script = patroni::forget_cluster_script(d.etcd.client_port, &d.platform.name);
            crate::fleet::on_first_answering(&fleet.remotes, c, "forgetting the Patroni cluster", &script).await?;
        }
        Ok(())
    }

    /// Writes the files of `new` whose content the version changed (and
    /// Patroni's, for its cloud's role now); pgBackRest's server reads its
    /// configuration again.
    async fn write_changed(
        &self,
        host: &str,
        old: &[RenderedFile],
        new: &[RenderedFile],
        patroni: bool,
    ) -> anyhow::Result<()> {
        let r = self.fleet.remote(host)?;
        for f in new {
            let same = old.iter().any(|o| o.spec.path == f.spec.path && o.content == f.content);
            if !same || (patroni && f.spec.path == patroni::CONFIG.path) {
                r.install_file(f).await?;
            }
        }
        r.check(
            "restarting pgBackRest's server",
            "systemctl try-restart pgbackrest.service 2>&1 || true",
        )
        .await?;
        Ok(())
    }

    fn primary(&self) -> anyhow::Result<&Cloud> {
        self.fleet
            .design
            .primary_clouds()
            .next()
            .ok_or_else(|| anyhow!("no cloud is primary"))
    }

    async fn start_master(&self) -> anyhow::Result<()> {
        let s = self.state()?;
        let primary = self.primary()?;
        if self.fleet.master(primary).await.ok().flatten().as_deref() == Some(s.master.as_str()) {
            // A run killed after the start: the site's services may not run.
            if self.fleet.design.site.is_some() {
                let script = format!(
                    "if ! systemctl is-active --quiet {}; then\n{}\nfi",
                    crate::components::site::AGENT_SERVICE,
                    site_services_script(true)
                );
                on_hosts(
                    self.fleet,
                    self.db_hosts(),
                    "starting the site agent and fence",
                    &script,
                )
                .await?;
            }
            return Ok(());
        }
        // Recorded before: from the start on, the old cluster is gone for
        // good and no standby may be given it by rsync.
        self.mark(&[self.host(&s.master)?], &[("started", "yes")]).await?;
        self.fleet
            .remote(&s.master)?
            .check("letting Patroni start", &major::unhold_script())
            .await?;
        start_leader(self.fleet, primary, &s.master).await
    }

    async fn start(&self, copied: bool) -> anyhow::Result<()> {
        let s = self.state()?;
        let mut hosts = Vec::new();
        for h in self.db_hosts().into_iter().filter(|h| h.name != s.master) {
            if self.facts(&h.name).await?.mark("copied").is_some() == copied {
                hosts.push(h);
            }
        }
        let script = format!(
            "{}\n{}",
            major::unhold_script(),
            systemd::unit_script(Verb::Start, "patroni")
        );
        on_hosts(self.fleet, hosts, "starting Patroni", &script).await
    }

    async fn repositories(
        &self,
        what: &str,
        script: impl Fn(&crate::design::Repository) -> String,
    ) -> anyhow::Result<()> {
        let d = &self.fleet.design;
        for r in d.backup.iter().flat_map(|b| &b.repositories) {
            self.fleet
                .remote(&r.host.name)?
                .check_within(what, &script(r), crate::remote::LONG_DEADLINE)
                .await
                .with_context(|| format!("{}: {what} failed", r.host.name))?;
        }
        Ok(())
    }
}

impl engine::Command for MajorUpgrade<'_> {
    type Step = Step;

    fn name(&self) -> String {
        "upgrade postgres".into()
    }

    fn lock_clouds(&self) -> Vec<&Cloud> {
        self.fleet.design.clouds_in_order()
    }

    async fn plan(&mut self) -> anyhow::Result<Vec<Step>> {
        self.see().await
    }

    fn describe(&self, step: &Step) -> String {
        MajorUpgrade::describe(self, step)
    }

    fn title(&self) -> String {
        match &self.state {
            Some(s) => format!(
                "Plan for `upgrade postgres {}`: PostgreSQL {} to {} on every host of every cloud; no writes from \
                 the master's stop until it runs {}",
                self.to, s.from, self.to, self.to
            ),
            None => format!("Plan for `upgrade postgres {}`", self.to),
        }
    }

    fn question(&self) -> String {
        "Upgrade PostgreSQL? Writes stop for the upgrade of the master".into()
    }

    async fn run(&mut self, step: &Step, rec: &Recorder) -> anyhow::Result<()> {
        match step {
            Step::Install(hosts) => self.install(hosts).await,
            Step::Check => self.check(rec).await,
            Step::Stop => self.stop(rec).await,
            Step::Upgrade => self.upgrade(rec).await,
            Step::Copy { host, .. } => self.copy(host, rec).await,
            Step::Configure => self.configure().await,
            Step::StartMaster => self.start_master().await,
            Step::Stanza => {
                let new = &self.state()?.new;
                self.repositories("pgBackRest's stanza-upgrade", |_| backup::stanza_upgrade_script(new))
                    .await
            }
            Step::StartCopied => self.start(true).await,
            Step::Backup => {
                let s = self.state()?;
                let new = &s.new;
                self.repositories("the full backup after the upgrade", |r| {
                    backup::backup_script(new, r, backup::Kind::Full, backup::Source::Master)
                })
                .await?;
                self.mark(&[self.host(&s.master)?], &[("backed_up", "yes")]).await
            }
            Step::StartRest => self.start(false).await,
            Step::Wait => wait_healthy(self.fleet, self.primary()?).await,
            Step::Analyze => {
                let s = self.state()?;
                self.fleet
                    .remote(&s.master)?
                    .check_within(
                        "rebuilding the planner's statistics",
                        &major::analyze_script(&s.dirs),
                        crate::remote::LONG_DEADLINE,
                    )
                    .await
                    .map(|_| ())
            }
            Step::Finish => {
                let s = self.state()?;
                let (master, others): (Vec<&Host>, Vec<&Host>) =
                    self.db_hosts().into_iter().partition(|h| h.name == s.master);
                on_hosts(self.fleet, others, "ending the upgrade", &major::finish_script()).await?;
                on_hosts(self.fleet, master, "ending the upgrade", &major::finish_script()).await?;
                rec.note(&format!(
                    "PostgreSQL {} runs on every host; the old data directories stay ({} on each database host): \
                     remove them once satisfied",
                    self.to, s.dirs.old_data
                ));
                Ok(())
            }
        }
    }

    fn again(&self) -> Option<&'static str> {
        Some("finish the upgrade from the step that did not finish")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn design() -> Design {
        crate::design::load_str_mode(
            crate::testkit::THREE_CLOUDS,
            std::path::Path::new("d.yaml"),
            crate::design::Mode::AllowNoPrimary,
        )
        .unwrap()
        .design
    }

    /// A host, its record's lines, and its old control file (state, last checkpoint).
    type Seen<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<(&'a str, &'a str)>);

    fn facts(pairs: &[Seen]) -> BTreeMap<String, Facts> {
        pairs
            .iter()
            .map(|(h, marks, control)| {
                let mut f = Facts {
                    marker: marks.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                    ..Facts::default()
                };
                if let Some((state, at)) = control {
                    f.old_state = Some(state.to_string());
                    f.old_checkpoint = Some(at.to_string());
                }
                (h.to_string(), f)
            })
            .collect()
    }

    fn names(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::Copy { host, method } => format!("copy {host} {method:?}"),
                Step::Install(h) => format!("install {}", h.join(",")),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_first_run_checks_stops_upgrades_copies_and_starts_the_master_first() {
        let d = design();
        let steps = order(&d, "dc1-pg1", &BTreeMap::new(), vec!["dc2-pg1".into()]);
        let n = names(&steps);
        assert_eq!(n[..4], ["install dc2-pg1", "Check", "Stop", "Upgrade"]);
        assert!(n.contains(&"copy dc1-pg2 RsyncIfMatched".to_string()), "{n:?}");
        assert!(!n.iter().any(|s| s.starts_with("copy dc1-pg1")), "{n:?}");
        let at = |s: &str| n.iter().position(|x| x == s).unwrap_or_else(|| panic!("{s} in {n:?}"));
        assert!(at("Configure") < at("StartMaster") && at("StartMaster") < at("StartCopied"));
        assert!(at("StartCopied") < at("StartRest") && at("Wait") < at("Finish"));
    }

    #[test]
    fn a_run_again_goes_on_from_the_hosts_records() {
        let d = design();
        let begun: &[(&str, &str)] = &[("master", "dc1-pg1"), ("checkpoint", "0/5000028"), ("upgraded", "yes")];
        let f = facts(&[
            ("dc1-pg1", begun, None),
            ("dc1-pg2", &[("master", "dc1-pg1"), ("copied", "yes")], None),
            (
                "dc1-pg3",
                &[("master", "dc1-pg1")],
                Some(("shut down in recovery", "0/5000028")),
            ),
            (
                "dc2-pg1",
                &[("master", "dc1-pg1")],
                Some(("shut down in recovery", "0/4000100")),
            ),
        ]);
        let n = names(&order(&d, "dc1-pg1", &f, Vec::new()));
        assert!(
            !n.contains(&"Stop".to_string()) && !n.contains(&"Check".to_string()),
            "{n:?}"
        );
        assert!(
            !n.iter().any(|s| s.starts_with("copy dc1-pg2")),
            "copied already: {n:?}"
        );
        assert!(n.contains(&"copy dc1-pg3 Rsync".to_string()), "{n:?}");
        assert!(
            n.iter()
                .any(|s| s.starts_with("copy dc2-pg1 Full(\"stopped at 0/4000100")),
            "{n:?}"
        );
        // Stopped, and killed in pg_upgrade (its control file renamed): no
        // stop again, pg_upgrade again (it undoes the half-run first).
        let stopped = facts(&[("dc1-pg1", &[("master", "dc1-pg1"), ("stopped", "yes")], None)]);
        let n = names(&order(&d, "dc1-pg1", &stopped, Vec::new()));
        assert_eq!(n[0], "Upgrade", "{n:?}");
        // After the point of no return: nothing is copied or forgotten again.
        let mut started = f.clone();
        started
            .get_mut("dc1-pg1")
            .unwrap()
            .marker
            .insert("started".into(), "yes".into());
        let n = names(&order(&d, "dc1-pg1", &started, Vec::new()));
        assert_eq!(n[0], "StartMaster");
        assert!(!n.iter().any(|s| s.starts_with("copy") || s == "Configure"), "{n:?}");
    }

    #[test]
    fn the_masters_record_says_whether_an_upgrade_is_under_way() {
        let d = design();
        // Written first, removed last: the others' alone are a finished
        // upgrade's leftovers, never a reason to stop the cluster again.
        let f = facts(&[("dc1-pg1", &[], None), ("dc2-pg1", &[("master", "dc1-pg1")], None)]);
        assert_eq!(names(&order(&d, "dc1-pg1", &f, Vec::new())), ["Finish"]);
    }

    #[test]
    fn a_standby_that_stopped_elsewhere_is_copied_in_full() {
        let master = facts(&[("m", &[("checkpoint", "0/5000028")], None)])
            .remove("m")
            .unwrap();
        let at = |state: &str, lsn: &str| {
            let f = facts(&[("s", &[], Some((state, lsn)))]).remove("s").unwrap();
            method(&master, &f)
        };
        assert_eq!(at("shut down in recovery", "0/5000028"), Method::Rsync);
        assert!(matches!(at("shut down in recovery", "0/4000028"), Method::Full(_)));
        assert!(matches!(at("in archive recovery", "0/5000028"), Method::Full(_)));
        assert_eq!(method(&Facts::default(), &Facts::default()), Method::RsyncIfMatched);
    }
}
