//! `pgha upgrade release`: every host from Debian 12 to Debian 13, one at a
//! time, in the order the mixed versions allow (docs/upgrade-debian12-to-13.md):
//! the secondary clouds' replicas, then their standby leaders; the primary
//! cloud's replicas, a switchover to one of them (never a failover while
//! Patroni 3.0 and 4.0 are mixed), its repository, then the old master; the
//! witness and the GLB last. PostgreSQL keeps its major version. The plan
//! is read from the hosts, so a run interrupted anywhere is finished by
//! running it again: moved hosts are skipped, a host left half-way is
//! finished.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::components::systemd::{self, Verb};
use crate::components::{self, patroni, upgrade};
use crate::design::{Cloud, Design};
use crate::engine;
use crate::engine::report::Recorder;
use crate::fleet::{Fleet, Reach};
use crate::release::{Release, DEBIAN12, DEBIAN13};
use crate::ui;
use crate::wait::poll;

use super::whole::{etcd_down, healthy_leaders};

pub(crate) struct Options {
    pub yes: bool,
    pub dry_run: bool,
}

/// The release every host leaves, and the one it moves to.
const FROM: Release = DEBIAN12;
const TO: Release = DEBIAN13;

/// How long one host's package upgrade may take.
const UPGRADE_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// How long a database host's member may take to run again.
const MEMBER_DEADLINE: Duration = Duration::from_secs(300);

pub(crate) async fn release(design: &Design, opts: &Options, output: ui::Output) -> anyhow::Result<()> {
    let fleet = Fleet::connect(design, Reach::ALL).await?;
    let flags = engine::Flags::new(opts.yes, opts.dry_run, output);
    let result = engine::run(&fleet, &mut ReleaseUpgrade { fleet: &fleet }, flags).await;
    fleet.close().await;
    result
}

/// What a host is to the upgrade: which services it has and how it is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A database host that does not lead its cloud: Patroni stops, its
    /// cloud goes on.
    Replica,
    /// A secondary cloud's standby leader: stopped, another member of the
    /// cloud takes over replicating from the primary cloud.
    StandbyLeader,
    /// The primary cloud's master before the switchover.
    OldMaster,
    Repository,
    Witness,
    Glb,
}

impl Role {
    fn is_database(self) -> bool {
        matches!(self, Role::Replica | Role::StandbyLeader | Role::OldMaster)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Moves one host to the new release, services held, then back.
    Host {
        host: String,
        cloud: Option<String>,
        role: Role,
    },
    /// Patroni hands `cloud`'s master from `from` to `to`, a moved replica.
    Switchover { cloud: String, from: String, to: String },
    /// Reads, on the master, which databases' collations the new C library
    /// versions differently: their text indexes may need a REINDEX.
    Collations,
}

/// What the plan needs of the cluster as it is.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Hosts not yet moved, or moved without their services checked.
    pub todo: BTreeSet<String>,
    /// Each cloud's leader now: its master, or its standby leader.
    pub leaders: BTreeMap<String, String>,
}

/// The steps, in the only order the mixed versions allow; an error when
/// the design leaves none (a primary cloud of one database host).
pub(crate) fn order(d: &Design, seen: &Seen) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let host = |steps: &mut Vec<Step>, name: &str, cloud: Option<&str>, role: Role| {
        if seen.todo.contains(name) {
            steps.push(Step::Host {
                host: name.to_string(),
                cloud: cloud.map(str::to_string),
                role,
            });
        }
    };
    let repository = |steps: &mut Vec<Step>, c: &Cloud| {
        if let Some(r) = d.backup.as_ref().and_then(|b| b.repository(&c.name)) {
            if !r.on_database_host {
                host(steps, &r.host.name, None, Role::Repository);
            }
        }
    };
    let (primary, secondary): (Vec<&Cloud>, Vec<&Cloud>) = d.clouds.iter().partition(|c| c.is_primary());
    for c in secondary {
        let leader = seen.leaders.get(&c.name);
        for h in c.hosts.iter().filter(|h| Some(&h.name) != leader) {
            host(&mut steps, &h.name, Some(&c.name), Role::Replica);
        }
        if let Some(l) = leader {
            host(&mut steps, l, Some(&c.name), Role::StandbyLeader);
        }
        repository(&mut steps, c);
    }
    for c in primary {
        let leader = seen.leaders.get(&c.name);
        let replicas: Vec<&str> = c
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .filter(|h| Some(*h) != leader.map(String::as_str))
            .collect();
        for h in &replicas {
            host(&mut steps, h, Some(&c.name), Role::Replica);
        }
        let old_master = leader.filter(|l| seen.todo.contains(*l));
        if let Some(l) = old_master {
            let Some(to) = replicas.first() else {
                return Err(format!(
                    "{} has one database host, {l}: upgrading it stops the cluster's only master, and pgha \
                     upgrades without downtime only\n  hint: add a host to {} in the design and deploy, then \
                     upgrade",
                    c.name, c.name
                ));
            };
            steps.push(Step::Switchover {
                cloud: c.name.clone(),
                from: l.clone(),
                to: to.to_string(),
            });
        }
        repository(&mut steps, c);
        if let Some(l) = old_master {
            host(&mut steps, l, Some(&c.name), Role::OldMaster);
        }
    }
    if let Some(w) = d.witness() {
        host(&mut steps, &w.name, None, Role::Witness);
    }
    for g in d.glb_hosts() {
        host(&mut steps, &g.name, None, Role::Glb);
    }
    if !steps.is_empty() {
        steps.push(Step::Collations);
    }
    Ok(steps)
}

/// `13` of Debian 13.
fn number(r: Release) -> &'static str {
    r.os.trim_start_matches("debian ")
}

/// The step as the plan shows it.
pub(crate) fn describe(step: &Step) -> String {
    match step {
        Step::Collations => "compare each database's collation version with the new C library's, on the master \
                             (reported, not changed: a REINDEX is the DBA's call)"
            .to_string(),
        Step::Switchover { cloud, from, to } => format!(
            "switch the master of {cloud} over from {from} to {to} (or to the synchronous standby then), on Debian \
             {} already (Patroni demotes {from} cleanly first: no committed write is lost; writes pause for seconds)",
            number(TO)
        ),
        Step::Host { host, cloud, role } => {
            let cloud = cloud.as_deref().unwrap_or_default();
            let (what, held) = match role {
                Role::Replica => (
                    format!("replica of {cloud}"),
                    "Patroni and PostgreSQL stop, then start again and must stream",
                ),
                Role::StandbyLeader => (
                    format!("standby leader of {cloud}"),
                    "Patroni stops: another member of the cloud, if it has one, replicates from the primary cloud \
                     meanwhile",
                ),
                Role::OldMaster => (
                    format!("the old master of {cloud}"),
                    "Patroni and PostgreSQL stop, then start again as a replica",
                ),
                Role::Repository => (
                    "backup repository".to_string(),
                    "pgBackRest's server restarts on the new version",
                ),
                Role::Witness => (
                    "the witness".to_string(),
                    "its site etcd member restarts and must be healthy",
                ),
                Role::Glb => (
                    "the GLB".to_string(),
                    "HAProxy keeps its clients: a reload runs the new version",
                ),
            };
            format!(
                "move {host} ({what}) from {} to {}: apt sources, full upgrade keeping pgha's files; {held}{}",
                FROM.codename,
                TO.codename,
                if role.is_database() {
                    "; etcd and HAProxy restart on the new versions (PostgreSQL stays at its major)".to_string()
                } else {
                    String::new()
                }
            )
        }
    }
}

/// The databases whose recorded collation version is not the C library's
/// now, each with both versions.
const COLLATIONS_SQL: &str = "select coalesce(string_agg(format('%s (%s, now %s)', datname, datcollversion, \
     pg_database_collation_actual_version(oid)), ', '), '') from pg_database where datallowconn and datcollversion \
     is distinct from pg_database_collation_actual_version(oid)";

/// The release upgrade, as the engine runs it.
struct ReleaseUpgrade<'a> {
    fleet: &'a Fleet,
}

impl ReleaseUpgrade<'_> {
    /// Every host the design names: database hosts first.
    fn hosts(&self) -> Vec<String> {
        let d = &self.fleet.design;
        let db = d.clouds.iter().flat_map(|c| &c.hosts);
        let others = d.repository_hosts().chain(d.witness()).chain(d.glb_hosts().iter());
        db.chain(others).map(|h| h.name.clone()).collect()
    }

    /// What each host runs and whether it can move, read at once; refuses
    /// (naming every host and its cause) before any change.
    async fn read_hosts(&self) -> anyhow::Result<BTreeMap<String, upgrade::Reach>> {
        if !self.fleet.unreachable.is_empty() {
            let names: Vec<String> = self.fleet.unreachable.iter().map(|e| e.to_string()).collect();
            bail!(
                "every host must answer before a release upgrade (nothing was changed): {}",
                names.join("; ")
            );
        }
        let script = upgrade::reach_script(FROM, TO);
        let read = futures::future::join_all(self.hosts().into_iter().map(|name| {
            let script = &script;
            async move {
                let out = match self.fleet.remote(&name) {
                    Ok(r) => r
                        .check_within(
                            "reading the host's release and apt sources",
                            script,
                            Duration::from_secs(330),
                        )
                        .await
                        .map(|o| upgrade::parse_reach(&o)),
                    Err(e) => Err(e),
                };
                (name, out)
            }
        }))
        .await;
        let mut seen = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, reach) in read {
            match reach {
                Ok(r) => {
                    if let Some(p) = r.problem(FROM, TO) {
                        problems.push(format!("{name}: {p}"));
                    }
                    seen.insert(name, r);
                }
                Err(e) => problems.push(format!("{name}: {e:#}")),
            }
        }
        if !problems.is_empty() {
            bail!(
                "the release upgrade cannot start (nothing was changed):\n  {}\n  hint: every host's apt sources must \
                 reach Debian {}'s packages when `{}` is read as `{}` (its mirror's suites {} and {}-updates; \
                 security.debian.org's {}-security)",
                problems.join("\n  "),
                number(TO),
                FROM.codename,
                TO.codename,
                TO.codename,
                TO.codename,
                TO.codename
            );
        }
        Ok(seen)
    }

    async fn host(&self, host: &str, cloud: Option<&str>, role: Role, rec: &Recorder) -> anyhow::Result<()> {
        let fleet = self.fleet;
        let d = &fleet.design;
        let remote = fleet.remote(host)?;
        let cloud = cloud.and_then(|c| d.cloud(c));
        if let (Some(c), true) = (cloud, role.is_database()) {
            // Only a switchover may take a master's place while Patroni runs
            // two versions: a master is never stopped here, nor any host
            // while the primary cloud has no master (a failover under way).
            for p in d.primary_clouds() {
                match fleet.master(p).await? {
                    Some(m) if m == host => bail!(
                        "{host} is the master of {} now: it is upgraded after a switchover\n  hint: run `pgha \
                         upgrade release` again: its plan switches over first",
                        c.name
                    ),
                    Some(_) => {}
                    None => bail!(
                        "{} has no master now (a failover under way?): no host is stopped meanwhile\n  hint: \
                         `pgha status`, then `pgha upgrade release` again",
                        p.name
                    ),
                }
            }
        }
        // Every other etcd member healthy: this host's may be the one down.
        let down = etcd_down(fleet, &BTreeSet::from([host.to_string()])).await;
        if !down.is_empty() {
            bail!(
                "{host} is not stopped: {}\n  hint: bring that member back (`pgha status` shows etcd's health), \
                 then `pgha upgrade release` again",
                down.join("; ")
            );
        }
        // From here a run killed anywhere leaves the host marked: the next
        // one finishes it (Patroni stopped is then no refusal).
        remote
            .check("marking the host's upgrade begun", &upgrade::begin_script())
            .await?;
        if role.is_database() {
            // After a killed run's package upgrade, which may go on.
            let stop = upgrade::wait_for_earlier_script() + &systemd::unit_script(Verb::Stop, "patroni");
            remote.check_within("stopping Patroni", &stop, UPGRADE_DEADLINE).await?;
        }
        let started = Instant::now();
        let out = remote
            .check_within(
                "upgrading the host's packages",
                &upgrade::upgrade_script(FROM, TO),
                UPGRADE_DEADLINE,
            )
            .await?;
        let release = out
            .lines()
            .find_map(|l| l.strip_prefix("release "))
            .unwrap_or("?")
            .to_string();
        rec.note(&format!(
            "{host}: Debian {release}, packages upgraded in {:.0} s",
            started.elapsed().as_secs_f64()
        ));
        let site_port = d.site.as_ref().map_or(2479, |s| s.client_port);
        let files = match role {
            Role::Replica | Role::StandbyLeader | Role::OldMaster => components::db_host_files(d),
            Role::Glb => components::glb_host_files(d),
            Role::Witness => components::site::WITNESS_FILES.to_vec(),
            Role::Repository => components::backup::REPOSITORY_FILES.to_vec(),
        };
        remote
            .check_within(
                "restarting the services on the new versions",
                &upgrade::services_script(
                    &files,
                    role.is_database(),
                    role.is_database() || role == Role::Glb,
                    d.etcd.client_port,
                    site_port,
                ),
                Duration::from_secs(180),
            )
            .await?;
        if let (Some(c), true) = (cloud, role.is_database()) {
            remote
                .check("starting Patroni", &systemd::unit_script(Verb::Start, "patroni"))
                .await?;
            let bound = d.governor.maximum_lag_on_failover;
            poll(MEMBER_DEADLINE, || async {
                let members = fleet.cluster_view(c).await.unwrap_or_default();
                Ok(members.iter().any(|m| {
                    m.name == host
                        && m.is_healthy()
                        && (m.is_leader()
                            || m.state == "streaming"
                            || m.lag.as_ref().and_then(|l| l.as_u64()).is_some_and(|l| l <= bound))
                }))
            })
            .await
            .with_context(|| format!("{host}'s member does not run again on Debian {release}"))?;
        }
        if role == Role::Glb {
            let primary = d
                .primary_clouds()
                .next()
                .ok_or_else(|| anyhow!("no cloud is primary"))?;
            fleet.wait_serving(d, primary).await?;
        }
        // Moved, or this is no success (an apt that upgraded nothing).
        let now = remote
            .check("reading the host's release", &upgrade::reach_script(FROM, TO))
            .await
            .map(|o| upgrade::parse_reach(&o))?;
        if !now.packages_moved(TO) {
            bail!(
                "{host} does not run {}'s packages after its upgrade (Debian {} ({}), {:?})\n  hint: see \
                 /var/log/pgha-release-upgrade.log there, then `pgha upgrade release` again",
                TO.codename,
                now.version,
                now.codename,
                now.installed
            );
        }
        remote
            .check("ending the host's upgrade", &upgrade::finished_script())
            .await?;
        rec.note(&format!("{host}: back in {:.0} s", started.elapsed().as_secs_f64()));
        Ok(())
    }

    /// glibc 2.36 -> 2.41 under unchanged data: PostgreSQL warns at every
    /// connection to a database whose recorded collation version differs.
    async fn collations(&self, rec: &Recorder) -> anyhow::Result<()> {
        let fleet = self.fleet;
        let primary = fleet
            .design
            .primary_clouds()
            .next()
            .ok_or_else(|| anyhow!("no cloud is primary"))?;
        let master = fleet
            .master(primary)
            .await?
            .ok_or_else(|| anyhow!("{} has no master to ask", primary.name))?;
        let changed = fleet.psql(&master, COLLATIONS_SQL).await?;
        if changed.is_empty() {
            rec.note("every database's collation version is the C library's");
        } else {
            rec.note(&format!(
                "collation versions differ from the new C library's in: {changed}; indexes on text there may be out \
                 of order: REINDEX DATABASE each, then ALTER DATABASE ... REFRESH COLLATION VERSION"
            ));
        }
        Ok(())
    }

    async fn switchover(&self, cloud: &str, from: &str, to: &str) -> anyhow::Result<()> {
        let fleet = self.fleet;
        let d = &fleet.design;
        let c = d.cloud(cloud).ok_or_else(|| anyhow!("no cloud {cloud}"))?;
        if fleet.master(c).await?.as_deref() == Some(to) {
            return Ok(());
        }
        // Patroni switches only to the synchronous standby when there is
        // one; it may have moved since the plan (each replica restarted).
        let members = fleet.cluster_view(c).await?;
        let to = members
            .iter()
            .find(|m| m.role == "sync_standby" && m.is_healthy())
            .map_or(to, |m| m.name.as_str());
        let script = patroni::switchover_script(d.governor.rest_port, from, to);
        fleet.remote(from)?.check("switching over", &script).await?;
        poll(Duration::from_secs(90), || async {
            Ok(fleet.master(c).await?.as_deref() == Some(to))
        })
        .await
        .with_context(|| format!("{to} did not become the master of {cloud}"))?;
        fleet.wait_serving(d, c).await
    }
}

impl engine::Command for ReleaseUpgrade<'_> {
    type Step = Step;

    fn name(&self) -> String {
        "upgrade release".into()
    }

    fn lock_clouds(&self) -> Vec<&Cloud> {
        self.fleet.design.clouds_in_order()
    }

    async fn plan(&mut self) -> anyhow::Result<Vec<Step>> {
        let reach = self.read_hosts().await?;
        let todo: BTreeSet<String> = reach
            .iter()
            .filter(|(_, r)| !r.moved(TO))
            .map(|(h, _)| h.clone())
            .collect();
        let pending: BTreeSet<String> = reach
            .iter()
            .filter(|(_, r)| r.pending)
            .map(|(h, _)| h.clone())
            .collect();
        for h in &pending {
            ui::progress::note(format!("{h}: its upgrade was interrupted; this run finishes it"));
        }
        let leaders = if todo.is_empty() {
            BTreeMap::new()
        } else {
            healthy_leaders(self.fleet, &pending, "release upgrade").await?
        };
        order(&self.fleet.design, &Seen { todo, leaders }).map_err(|e| anyhow!(crate::error::Usage(e)))
    }

    fn describe(&self, step: &Step) -> String {
        describe(step)
    }

    fn title(&self) -> String {
        format!(
            "Plan for `upgrade release`: Debian {} ({}) to Debian {} ({}), one host at a time; a moved host does not \
             go back",
            number(FROM),
            FROM.codename,
            number(TO),
            TO.codename
        )
    }

    fn question(&self) -> String {
        "Upgrade these hosts?".into()
    }

    async fn run(&mut self, step: &Step, rec: &Recorder) -> anyhow::Result<()> {
        match step {
            Step::Host { host, cloud, role } => self.host(host, cloud.as_deref(), *role, rec).await,
            Step::Switchover { cloud, from, to } => self.switchover(cloud, from, to).await,
            Step::Collations => self.collations(rec).await,
        }
    }

    fn again(&self) -> Option<&'static str> {
        Some("finish the upgrade from the host that did not finish")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two clouds of [`crate::testkit::THREE_CLOUDS`] (its dc3 out), a
    /// witness and the GLB: the lab's sites.
    fn three_sites() -> String {
        let dc3 =
            "  - name: dc3\n    status: secondary\n    hosts: [{name: dc3-pg1, address: 10.0.3.1}, {name: dc3-pg2, \
                   address: 10.0.3.2}, {name: dc3-pg3, address: 10.0.3.3}]\n";
        let text = crate::testkit::THREE_CLOUDS.replace(dc3, "");
        assert_ne!(text, crate::testkit::THREE_CLOUDS);
        text.replace("site: {enabled: false}", "witness: {name: w, address: 10.0.0.9}")
    }

    fn design(text: &str) -> Design {
        crate::design::load_str_mode(
            text,
            std::path::Path::new("d.yaml"),
            crate::design::Mode::AllowNoPrimary,
        )
        .unwrap()
        .design
    }

    fn names(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::Host { host, role, .. } => format!("{host} {role:?}"),
                Step::Switchover { from, to, .. } => format!("switchover {from}>{to}"),
                Step::Collations => "collations".to_string(),
            })
            .collect()
    }

    fn seen(todo: &[&str], leaders: &[(&str, &str)]) -> Seen {
        Seen {
            todo: todo.iter().map(|s| s.to_string()).collect(),
            leaders: leaders.iter().map(|(c, l)| (c.to_string(), l.to_string())).collect(),
        }
    }

    const ALL: [&str; 8] = [
        "dc1-pg1", "dc1-pg2", "dc1-pg3", "dc2-pg1", "dc2-pg2", "dc2-pg3", "w", "glb1",
    ];
    const LEADERS: [(&str, &str); 2] = [("dc1", "dc1-pg2"), ("dc2", "dc2-pg1")];

    #[test]
    fn standby_clouds_first_then_replicas_a_switchover_and_the_old_master() {
        let d = design(&three_sites());
        let steps = order(&d, &seen(&ALL, &LEADERS)).unwrap();
        assert_eq!(
            names(&steps),
            [
                "dc2-pg2 Replica",
                "dc2-pg3 Replica",
                "dc2-pg1 StandbyLeader",
                "dc1-pg1 Replica",
                "dc1-pg3 Replica",
                "switchover dc1-pg2>dc1-pg1",
                "dc1-pg2 OldMaster",
                "w Witness",
                "glb1 Glb",
                "collations"
            ]
        );
        let text = describe(&steps[5]);
        assert!(
            text.contains("from dc1-pg2 to dc1-pg1") && text.contains("no committed write is lost"),
            "{text}"
        );
        assert!(describe(&steps[0]).contains("bookworm to trixie"));
    }

    #[test]
    fn a_run_again_does_only_what_is_left() {
        let d = design(&three_sites());
        // Interrupted after the switchover: dc1-pg1 leads, dc1-pg2 is left.
        let after = [("dc1", "dc1-pg1"), ("dc2", "dc2-pg3")];
        let steps = order(&d, &seen(&["dc1-pg2", "w", "glb1"], &after)).unwrap();
        assert_eq!(
            names(&steps),
            ["dc1-pg2 Replica", "w Witness", "glb1 Glb", "collations"]
        );
        // Interrupted before the switchover: the master is switched from.
        let steps = order(&d, &seen(&["dc1-pg2", "glb1"], &LEADERS)).unwrap();
        assert_eq!(
            names(&steps),
            [
                "switchover dc1-pg2>dc1-pg1",
                "dc1-pg2 OldMaster",
                "glb1 Glb",
                "collations"
            ]
        );
        assert!(order(&d, &seen(&[], &[])).unwrap().is_empty());
    }

    #[test]
    fn repositories_follow_their_cloud_and_a_lone_master_is_refused() {
        let repos = format!(
            "{}backup: {{repositories: [{{cloud: dc1, name: r1, address: 10.0.1.9}}, {{cloud: dc2, host: dc2-pg3}}]}}\n",
            three_sites()
        );
        let d = design(&repos);
        let mut todo = ALL.to_vec();
        todo.push("r1");
        let n = names(&order(&d, &seen(&todo, &LEADERS)).unwrap());
        let at = |s: &str| n.iter().position(|x| x == s).unwrap_or_else(|| panic!("{s} in {n:?}"));
        assert!(
            at("switchover dc1-pg2>dc1-pg1") < at("r1 Repository") && at("r1 Repository") < at("dc1-pg2 OldMaster")
        );
        // A repository on a database host moves with that host.
        assert_eq!(n.iter().filter(|x| x.starts_with("dc2-pg3")).count(), 1, "{n:?}");
        let lone = design(THREE_CLOUDS_LONE);
        let e = order(&lone, &seen(&["dc1-pg1"], &[("dc1", "dc1-pg1")])).unwrap_err();
        assert!(
            e.contains("dc1 has one database host, dc1-pg1") && e.contains("hint: "),
            "{e}"
        );
    }

    /// The primary cloud of one host.
    const THREE_CLOUDS_LONE: &str = "platform: {name: sim}
clouds:
  - {name: dc1, status: primary, hosts: [{name: dc1-pg1, address: 10.0.1.1}]}
  - {name: dc2, status: secondary, hosts: [{name: dc2-pg1, address: 10.0.2.1}]}
";
}
