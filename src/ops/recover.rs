//! `pgha recover-node HOST`: bring a failed node back as a replica of the
//! current master's lineage, never silently keeping or dropping data.
//!
//! Timeline numbers alone cannot prove a node is an ancestor of the master:
//! two clouds promoted from the same point both call their new timeline N
//! (HAZARDS #2). So the node's WAL is compared with the master's byte by
//! byte where their histories claim to agree, and the commits it holds past
//! the point where they part are counted before anything is thrown away.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use super::lineage::Verdict;
use crate::components::systemd::{self, Verb};
use crate::components::{etcd, patroni};
use crate::design::{Cloud, Design, Host};
use crate::engine;
use crate::engine::report::Recorder;
use crate::error::Usage;
use crate::fleet::{Fleet, Reach};
use crate::shell::quote;
use crate::ui;
use crate::wait::{poll, poll_for};

pub(crate) struct Options {
    pub yes: bool,
    pub force: bool,
    pub reclone: bool,
    pub dry_run: bool,
}

pub(crate) async fn run(design: &Design, host_name: &str, opts: &Options, output: ui::Output) -> anyhow::Result<()> {
    let (cloud, host) = match design.find_host(host_name) {
        Some((Some(c), h)) => (c, h),
        Some((None, _)) => bail!(Usage(format!(
            "{host_name} is a GLB host: it has no database to recover"
        ))),
        None => bail!(Usage(format!("no database host named `{host_name}` in the design"))),
    };
    let fleet = Fleet::connect(design, Reach::NO_GLB).await?;
    let result = run_on(&fleet, cloud, host, opts, output).await;
    fleet.close().await;
    result
}

/// The recovery on a connected fleet, run by the engine.
pub(crate) async fn run_on(
    fleet: &Fleet,
    cloud: &Cloud,
    host: &Host,
    opts: &Options,
    output: ui::Output,
) -> anyhow::Result<()> {
    let flags = engine::Flags::new(opts.yes, opts.dry_run, output);
    let mut cmd = Recover {
        fleet,
        cloud,
        host,
        opts,
        output,
        master: String::new(),
        verdict: None,
        reclone: false,
    };
    engine::run(fleet, &mut cmd, flags).await
}

struct Recover<'a> {
    fleet: &'a Fleet,
    cloud: &'a Cloud,
    host: &'a Host,
    opts: &'a Options,
    output: ui::Output,
    /// The primary cloud's master, which the node is compared with.
    master: String,
    /// What the comparison found (step 3), for the rejoin (step 4).
    verdict: Option<Verdict>,
    /// The rejoin copied afresh.
    reclone: bool,
}

enum Step {
    StopPatroni,
    RepairEtcd,
    Compare,
    Rejoin,
    WaitStreaming,
}

impl engine::Command for Recover<'_> {
    type Step = Step;

    fn name(&self) -> String {
        format!("recover-node {}", self.host.name)
    }

    fn lock_clouds(&self) -> Vec<&Cloud> {
        let mut clouds: Vec<&Cloud> = self.fleet.design.primary_clouds().collect();
        clouds.push(self.cloud);
        clouds
    }

    async fn plan(&mut self) -> anyhow::Result<Vec<Step>> {
        let (fleet, cloud, host, opts) = (self.fleet, self.cloud, self.host, self.opts);
        fleet.warn_if_paused(&[cloud]).await;
        fleet
            .remote(&host.name)
            .context("the node must be reachable to recover it")?;
        let members = fleet.cluster_view(cloud).await.unwrap_or_default();
        let me = members.iter().find(|m| m.name == host.name);
        if let Some(m) = me.filter(|m| (m.is_leader() || m.is_standby_leader()) && m.is_healthy()) {
            if !opts.force {
                bail!(Usage(format!(
                    "{} is the current {} of {}: recovering it would stop it; use `pgha switchover` first, or \
                     --accept-data-loss",
                    host.name, m.role, cloud.name
                )));
            }
        }
        if let Some(m) = me.filter(|m| !m.is_leader() && !m.is_standby_leader() && m.is_healthy()) {
            if !opts.reclone {
                ui::progress::note(format!(
                    "{} is already a healthy {} of {} ({}): nothing to do",
                    host.name, m.role, cloud.name, m.state
                ));
                return Ok(Vec::new());
            }
        }
        let primary = fleet
            .design
            .primary_clouds()
            .next()
            .ok_or_else(|| anyhow!("no cloud is primary: make one primary before recovering nodes"))?;
        let pmembers = fleet.cluster_view(primary).await?;
        self.master = pmembers
            .iter()
            .find(|m| m.is_leader() && m.is_healthy() && m.name != host.name)
            .ok_or_else(|| anyhow!("{} has no running master to follow", primary.name))?
            .name
            .clone();
        Ok(vec![
            Step::StopPatroni,
            Step::RepairEtcd,
            Step::Compare,
            Step::Rejoin,
            Step::WaitStreaming,
        ])
    }

    fn describe(&self, step: &Step) -> String {
        let name = &self.host.name;
        match step {
            Step::StopPatroni => format!("stop Patroni on {name}"),
            Step::RepairEtcd => format!(
                "repair {name}'s etcd membership in {} if it is unhealthy",
                self.cloud.name
            ),
            Step::Compare => format!(
                "compare {name}'s WAL with the master {}'s (timeline history, bytes, commits past the fork)",
                self.master
            ),
            Step::Rejoin => format!(
                "rejoin: fast path (Patroni, pg_rewind when needed) or a fresh copy{}",
                if self.opts.reclone { " (--reclone)" } else { "" }
            ),
            Step::WaitStreaming => format!("wait until {name} streams and show its lag"),
        }
    }

    fn question(&self) -> String {
        "Recover this node?".into()
    }

    async fn run(&mut self, step: &Step, rec: &Recorder) -> anyhow::Result<()> {
        let (fleet, cloud, host) = (self.fleet, self.cloud, self.host);
        match step {
            Step::StopPatroni => fleet
                .remote(&host.name)?
                .check("stopping Patroni", &systemd::unit_script(Verb::Stop, "patroni"))
                .await
                .map(|_| ()),
            Step::RepairEtcd => repair_etcd(fleet, cloud, host).await,
            Step::Compare => {
                let verdict = fleet.compare(host, &self.master).await?;
                rec.note(&format!("verdict: {verdict:?}"));
                self.verdict = Some(verdict);
                Ok(())
            }
            Step::Rejoin => {
                let verdict = self.verdict.as_ref().expect("the comparison ran first");
                self.reclone = rejoin(fleet, cloud, host, self.opts, verdict).await?;
                Ok(())
            }
            Step::WaitStreaming => {
                let started = std::time::Instant::now();
                let m = wait_streaming(fleet, cloud, host, Duration::from_secs(900)).await?;
                let lag = m
                    .lag
                    .as_ref()
                    .and_then(|l| l.as_u64())
                    .map_or("unknown".into(), |l| format!("{l} bytes"));
                let text = format!(
                    "{} is a {} of {} again ({}, timeline {}, lag {lag}) after {:.1} s via {}",
                    host.name,
                    m.role,
                    cloud.name,
                    m.state,
                    m.timeline.unwrap_or_default(),
                    started.elapsed().as_secs_f64(),
                    if self.reclone { "a fresh copy" } else { "the fast path" }
                );
                match self.output {
                    ui::Output::Text => ui::print(&text),
                    ui::Output::Json => {
                        rec.note(&text);
                        Ok(())
                    }
                }
            }
        }
    }
}

/// Step 4: the fast path or a fresh copy, as the verdict allows; says
/// whether it copied afresh.
async fn rejoin(fleet: &Fleet, cloud: &Cloud, host: &Host, opts: &Options, verdict: &Verdict) -> anyhow::Result<bool> {
    let r = fleet.remote(&host.name)?;
    let reclone = match verdict {
        Verdict::UniqueCommits(why) if !opts.force => {
            // Leave Patroni stopped: starting it could rewind the commits away.
            bail!(
                "{} holds data that exists nowhere else ({why}); it was left stopped.\n  \
                 hint: copy what you need from it, then run again with --accept-data-loss to discard it (the data directory is kept aside)",
                host.name
            )
        }
        Verdict::UniqueCommits(_) | Verdict::Unprovable => true,
        Verdict::Empty | Verdict::Reclone => true,
        Verdict::Contained | Verdict::Rewindable => opts.reclone,
    };
    let keep_aside = matches!(verdict, Verdict::UniqueCommits(_) | Verdict::Unprovable);
    // Compared and decided: a hold from a failover that accepted its
    // commits' loss ends here.
    r.check("lifting the failover's hold", patroni::UNHOLD_SCRIPT).await?;
    if reclone {
        fresh_copy(fleet, cloud, host, keep_aside).await?;
        return Ok(true);
    }
    r.check("starting Patroni", &systemd::unit_script(Verb::Start, "patroni"))
        .await?;
    if let Err(e) = wait_streaming(fleet, cloud, host, Duration::from_secs(60)).await {
        ui::progress::note(format!(
            "the fast path did not converge ({e:#}); falling back to a fresh copy"
        ));
        fresh_copy(fleet, cloud, host, false).await?;
        return Ok(true);
    }
    Ok(false)
}

/// Waits until the node is a member in Patroni's view *and* its WAL receiver
/// streams: Patroni 3.0 says `running` of a replica stuck waiting for WAL.
async fn wait_streaming(fleet: &Fleet, cloud: &Cloud, host: &Host, limit: Duration) -> anyhow::Result<patroni::Member> {
    poll_for(limit, || async {
        let members = fleet.cluster_view(cloud).await?;
        let Some(m) = members
            .into_iter()
            .find(|m| m.name == host.name && !m.is_leader() && m.is_healthy())
        else {
            return Ok(None);
        };
        let receiver = fleet
            .psql(&host.name, "select status from pg_stat_wal_receiver")
            .await
            .unwrap_or_default();
        Ok((receiver == "streaming").then_some(m))
    })
    .await
    .with_context(|| format!("{} did not start streaming", host.name))
}

/// Wipes (or keeps aside) the data directory and lets Patroni copy it afresh:
/// from its cloud's (standby) leader, or, when the cloud has none running,
/// as a new standby leader cloned from the primary cloud.
async fn fresh_copy(fleet: &Fleet, cloud: &Cloud, host: &Host, keep_aside: bool) -> anyhow::Result<()> {
    let d = &fleet.design;
    let data = &d.platform.data_dir;
    let r = fleet.remote(&host.name)?;
    let members = fleet.cluster_view(cloud).await.unwrap_or_default();
    let led = members
        .iter()
        .any(|m| m.name != host.name && (m.is_leader() || m.is_standby_leader()) && m.is_healthy());
    if !led && cloud.is_primary() {
        bail!("{} has no running master to copy {} from", cloud.name, host.name);
    }
    r.check(
        "removing the old data directory",
        &discard_data_script(data, keep_aside),
    )
    .await?;
    if !led {
        // Patroni only bootstraps a standby leader while the cluster has no
        // `initialize` key; with every member's data gone it would wait forever.
        let key = format!("{}{}/initialize", patroni::NAMESPACE, d.platform.name);
        r.check(
            "letting Patroni bootstrap a standby leader",
            &etcd::del_script(d.etcd.client_port, &key),
        )
        .await?;
    }
    r.check("starting Patroni", &systemd::unit_script(Verb::Start, "patroni"))
        .await?;
    Ok(())
}

/// Restarts the node's etcd member when unhealthy; if that is not enough,
/// removes and re-adds it (its etcd data is rebuilt from the others).
async fn repair_etcd(fleet: &Fleet, cloud: &Cloud, host: &Host) -> anyhow::Result<()> {
    let d = &fleet.design;
    let port = d.etcd.client_port;
    let r = fleet.remote(&host.name)?;
    let healthy = || async { r.check("etcd health", &etcd::health_script(port)).await.map(|_| true) };
    if healthy().await.is_ok() {
        return Ok(());
    }
    ui::progress::note(format!("etcd on {} is unhealthy: restarting it", host.name));
    r.check("restarting etcd", &systemd::unit_script(Verb::Restart, "etcd"))
        .await?;
    if poll(Duration::from_secs(30), healthy).await.is_ok() {
        return Ok(());
    }
    let peer = etcd::peer_url(&host.address, d.etcd.peer_port);
    let other = cloud
        .hosts
        .iter()
        .filter(|h| h.name != host.name)
        .find_map(|h| fleet.remotes.get(&h.name))
        .ok_or_else(|| anyhow!("no other member of {} is reachable to repair etcd", cloud.name))?;
    let list = other
        .check("listing etcd members", &etcd::member_list_script(port))
        .await?;
    let id = list
        .lines()
        .find(|l| l.contains(&peer))
        .and_then(|l| l.split(',').next())
        .map(str::trim);
    ui::progress::note(format!("re-adding {}'s etcd member", host.name));
    if let Some(id) = id {
        other
            .check("removing the broken etcd member", &etcd::member_remove_script(port, id))
            .await?;
    }
    other
        .check(
            "adding the etcd member",
            &etcd::member_add_script(port, &host.name, &peer),
        )
        .await?;
    let datadir = etcd::data_dir(&d.platform.name);
    r.check("rejoining etcd", &etcd::rejoin_script(&datadir)).await?;
    poll(Duration::from_secs(60), healthy)
        .await
        .context("etcd did not become healthy after re-adding the member")?;
    // Back to the canonical file: etcd ignores the initial-cluster settings now.
    r.check("restoring the etcd config", &etcd::restore_state_new_script())
        .await?;
    Ok(())
}

/// Stops Patroni and removes the data directory, or keeps it aside as
/// `<data_dir>.pgha-discarded-<unix time>` when it may hold commits.
pub(crate) fn discard_data_script(data_dir: &str, keep_aside: bool) -> String {
    let d = quote(data_dir);
    if keep_aside {
        let aside = quote(&format!("{data_dir}.pgha-discarded-"));
        format!(
            "systemctl stop patroni && a={aside}$(date +%s) && mv {d} \"$a\" && echo \"kept the old data in $a\" >&2"
        )
    } else {
        format!("systemctl stop patroni && rm -rf {d}")
    }
}

#[cfg(test)]
#[path = "recover_tests.rs"]
mod runner_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_exact() {
        assert_eq!(discard_data_script("/d", false), "systemctl stop patroni && rm -rf /d");
        assert_eq!(
            discard_data_script("/d", true),
            "systemctl stop patroni && a=/d.pgha-discarded-$(date +%s) && mv /d \"$a\" && echo \"kept the old data in $a\" >&2"
        );
        // issue 8: `rm -rf {data}` ran whatever data_dir held.
        assert_eq!(
            discard_data_script("/var/lib/pg;touch${IFS}x;", false),
            "systemctl stop patroni && rm -rf '/var/lib/pg;touch${IFS}x;'"
        );
    }
}
