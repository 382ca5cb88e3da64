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
use serde::Serialize;

use super::engine;
use super::report::Recorder;
use super::wal::{self, WalPos};
use crate::components::systemd::{self, Verb};
use crate::components::{etcd, patroni};
use crate::design::{Cloud, Design, Host};
use crate::error::Usage;
use crate::fleet::{format_lsn, Fleet};
use crate::shell::quote;
use crate::ui;
use crate::wait::{poll, poll_for};

pub(crate) struct Options {
    pub yes: bool,
    pub force: bool,
    pub reclone: bool,
    pub dry_run: bool,
}

/// What the WAL comparison found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Verdict {
    /// No data directory: a fresh copy is all there is to do.
    Empty,
    /// Everything the node has, the master's lineage has too.
    Contained,
    /// The node went on past the master's fork point, but only with records
    /// that carry no commit: pg_rewind (Patroni's fast path) can cut them off.
    Rewindable,
    /// Diverged without unique commits, but on a timeline number the master
    /// also uses: Patroni cannot see it, so the node is copied afresh.
    Reclone,
    /// History says contained, but the master no longer has that WAL to
    /// compare: the node is copied afresh and its old data kept aside on disk.
    Unprovable,
    /// The node holds commits nowhere else (or they cannot be ruled out).
    UniqueCommits(String),
}

/// `(parent timeline, switch point)` lines of a `.history` file.
pub(crate) fn parse_history(text: &str) -> Vec<(u32, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let tli = w.next()?.parse().ok()?;
            let lsn = crate::fleet::parse_lsn(w.next()?).ok()?;
            Some((tli, lsn))
        })
        .collect()
}

/// Where the node's lineage leaves the master's, from the two histories:
/// `Ok(None)` when the node's position lies inside the master's lineage
/// (subject to the byte check), `Ok(Some(lsn))` the fork point on the node's
/// timeline, `Err` when the histories disagree before the node's timeline.
pub(crate) fn fork_point(
    node: &WalPos,
    node_history: &[(u32, u64)],
    master_tli: u32,
    master_history: &[(u32, u64)],
    master_lsn: u64,
) -> Result<Option<u64>, String> {
    if node_history.len() > master_history.len() || node_history != &master_history[..node_history.len()] {
        return Err(format!("timeline histories disagree before timeline {}", node.timeline));
    }
    // The end of the node's timeline in the master's lineage.
    let end = if node.timeline == master_tli {
        master_lsn
    } else if node.timeline < master_tli {
        match master_history.get(node_history.len()) {
            Some((tli, switch)) if *tli == node.timeline => *switch,
            _ => return Err(format!("timeline {} is not in the master's lineage", node.timeline)),
        }
    } else {
        return Err(format!(
            "the node is on timeline {}, ahead of the master's {master_tli}",
            node.timeline
        ));
    };
    Ok(if node.lsn < end { None } else { Some(end) })
}

pub(crate) async fn run(design: &Design, host_name: &str, opts: &Options, output: ui::Output) -> anyhow::Result<()> {
    let (cloud, host) = match design.find_host(host_name) {
        Some((Some(c), h)) => (c, h),
        Some((None, _)) => bail!(Usage(format!(
            "{host_name} is a GLB host: it has no database to recover"
        ))),
        None => bail!(Usage(format!("no database host named `{host_name}` in the design"))),
    };
    let fleet = Fleet::connect(design, false).await?;
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
        super::pause::warn_if_paused(fleet, &[cloud]).await;
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
                let verdict = compare(fleet, host, &self.master).await?;
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

/// The node's WAL against the master's: see the module comment.
pub(crate) async fn compare(fleet: &Fleet, host: &Host, master: &str) -> anyhow::Result<Verdict> {
    let Some(node) = wal::position_if_any(fleet, &host.name).await? else {
        return Ok(Verdict::Empty);
    };
    let m = wal::position(fleet, master).await?;
    let node_history = read_history(fleet, &host.name, node.timeline).await?;
    let master_history = read_history(fleet, master, m.timeline).await?;
    let start_of_node_tli = node_history.last().map_or(0, |(_, lsn)| *lsn);
    let fork = match fork_point(&node, &node_history, m.timeline, &master_history, m.lsn) {
        Err(why) => {
            return Ok(Verdict::UniqueCommits(format!(
                "{why}; its commits cannot be ruled out"
            )))
        }
        Ok(f) => f,
    };
    // Same timeline number, same history: prove the bytes are the same too.
    let upto = fork.unwrap_or(node.lsn);
    let same = same_wal(fleet, &host.name, master, &node, start_of_node_tli, upto).await?;
    if same == Some(false) {
        ui::progress::note(format!(
            "{}'s timeline {} and the master's share a number, not their records (between {} and {})",
            host.name,
            node.timeline,
            format_lsn(start_of_node_tli),
            format_lsn(upto)
        ));
    }
    let from = match commits_count_from(fork, same, start_of_node_tli) {
        Ok(from) => from,
        Err(verdict) => return Ok(verdict),
    };
    let commits = wal::commits_after(fleet, &host.name, node.timeline, from).await?;
    if commits.count() > 0 {
        return Ok(Verdict::UniqueCommits(format!(
            "{commits} on timeline {} after {}, up to {}",
            node.timeline,
            format_lsn(from),
            format_lsn(node.lsn)
        )));
    }
    Ok(without_commits(same, node.timeline < m.timeline))
}

/// From where the node's commits are its own, given the fork point on its
/// timeline (if it went past the master's lineage) and whether its WAL up to
/// there matched the master's (`None`: the master no longer has it). `Err`
/// when no commit can be at stake.
fn commits_count_from(fork: Option<u64>, same: Option<bool>, start_of_tli: u64) -> Result<u64, Verdict> {
    match (fork, same) {
        (None, Some(true)) => Err(Verdict::Contained),
        // Nothing to compare with, and nothing past the master's lineage.
        (None, None) => Err(Verdict::Unprovable),
        // Past the fork the node's commits are its own, compared or not.
        (Some(f), Some(true) | None) => Ok(f),
        // Same number, different content: the timeline was born twice.
        (_, Some(false)) => Ok(start_of_tli),
    }
}

/// The verdict when no commit of the node's own was found.
fn without_commits(same: Option<bool>, older_timeline: bool) -> Verdict {
    match same {
        None => Verdict::Unprovable,
        // pg_rewind only sees a divergence across timeline numbers.
        Some(true) if older_timeline => Verdict::Rewindable,
        _ => Verdict::Reclone,
    }
}

/// A host's `.history` for `tli` (timeline 1 has none).
pub(crate) async fn read_history(fleet: &Fleet, host: &str, tli: u32) -> anyhow::Result<Vec<(u32, u64)>> {
    if tli <= 1 {
        return Ok(Vec::new());
    }
    let script = history_script(&fleet.design.platform.data_dir, tli);
    Ok(parse_history(
        &fleet.remote(host)?.check("reading timeline history", &script).await?,
    ))
}

/// Do both hosts hold the same WAL records on timeline `tli` from `from` up
/// to `upto`? Records, not raw bytes: page padding and recycled tails differ
/// between copies of one history, while two histories born apart differ in
/// their records (transaction ids, LSNs, back-pointers). WAL the master no
/// longer has proves nothing: `None`.
async fn same_wal(
    fleet: &Fleet,
    node: &str,
    master: &str,
    pos: &WalPos,
    from: u64,
    upto: u64,
) -> anyhow::Result<Option<bool>> {
    let p = &fleet.design.platform;
    // Start inside the tip's segment: that is enough, and older files may be gone.
    let start = from.max(upto - upto % pos.segment);
    if start >= upto {
        return Ok(Some(true));
    }
    let script = wal::records_hash_script(&p.data_dir, &p.bin_dir, pos.timeline, start, upto, pos.segment);
    // A read that fails on either host is an error (the script says so),
    // never a hash of nothing that matches the other's nothing.
    let a = fleet.remote(node)?.check("reading WAL records", &script).await?;
    let b = fleet.remote(master)?.check("reading WAL records", &script).await?;
    let (a, b) = (a.trim(), b.trim());
    for (host, h) in [(node, a), (master, b)] {
        if h != "missing" && !(h.len() == 64 && h.bytes().all(|c| c.is_ascii_hexdigit())) {
            bail!("{host}: hashing WAL records gave {h:?}, not a hash");
        }
    }
    if a == "missing" || b == "missing" {
        return Ok(None);
    }
    Ok(Some(a == b))
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

/// A host's timeline history file for `tli` (empty when absent).
pub(crate) fn history_script(data_dir: &str, tli: u32) -> String {
    format!(
        "cat {} 2>/dev/null || true",
        quote(&format!("{data_dir}/pg_wal/{tli:08X}.history"))
    )
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

    fn pos(timeline: u32, lsn: u64) -> WalPos {
        WalPos {
            timeline,
            lsn,
            mode: "stopped".into(),
            segment: 16 << 20,
        }
    }

    #[test]
    fn scripts_are_exact() {
        assert_eq!(
            history_script("/d", 2),
            "cat /d/pg_wal/00000002.history 2>/dev/null || true"
        );
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

    #[test]
    fn history_files_are_parsed() {
        assert_eq!(
            parse_history("1\t0/502D978\tno recovery target specified\n\n2\t0/6000000\tx\n"),
            [(1, 0x502D978), (2, 0x6000000)]
        );
    }

    #[test]
    fn an_old_replica_behind_the_switch_is_contained() {
        // Master on timeline 3 (1 -> 2 at 0x500, 2 -> 3 at 0x900); node stopped on 2 at 0x800.
        let master = [(1, 0x500), (2, 0x900)];
        assert_eq!(fork_point(&pos(2, 0x800), &[(1, 0x500)], 3, &master, 0x2000), Ok(None));
    }

    #[test]
    fn an_old_master_past_the_switch_forks_there() {
        let master = [(1, 0x500), (2, 0x900)];
        assert_eq!(
            fork_point(&pos(2, 0x950), &[(1, 0x500)], 3, &master, 0x2000),
            Ok(Some(0x900))
        );
    }

    #[test]
    fn a_timeline_born_twice_looks_contained_by_history_alone() {
        // HAZARDS #2: both clouds promoted at 0x500 to "timeline 2". The
        // histories agree and the LSN is below the master's: only the byte
        // comparison in `compare` can tell them apart.
        assert_eq!(
            fork_point(&pos(2, 0x700), &[(1, 0x500)], 2, &[(1, 0x500)], 0x800),
            Ok(None)
        );
    }

    #[test]
    fn commits_are_counted_from_where_the_node_leaves_the_lineage() {
        assert_eq!(commits_count_from(None, Some(true), 0x500), Err(Verdict::Contained));
        assert_eq!(commits_count_from(None, None, 0x500), Err(Verdict::Unprovable));
        assert_eq!(commits_count_from(Some(0x900), Some(true), 0x500), Ok(0x900));
        // The master recycled the shared part: still only what lies past the fork.
        assert_eq!(commits_count_from(Some(0x900), None, 0x500), Ok(0x900));
        // Born twice: nothing on this timeline is shared.
        assert_eq!(commits_count_from(None, Some(false), 0x500), Ok(0x500));
        assert_eq!(commits_count_from(Some(0x900), Some(false), 0x500), Ok(0x500));
    }

    #[test]
    fn without_commits_only_a_proven_older_timeline_is_rewound() {
        assert_eq!(without_commits(Some(true), true), Verdict::Rewindable);
        assert_eq!(without_commits(Some(true), false), Verdict::Reclone);
        assert_eq!(without_commits(Some(false), true), Verdict::Reclone);
        assert_eq!(without_commits(None, true), Verdict::Unprovable);
    }

    #[test]
    fn disagreeing_histories_are_not_provable() {
        assert!(fork_point(&pos(2, 0x700), &[(1, 0x400)], 3, &[(1, 0x500), (2, 0x900)], 0x2000).is_err());
        assert!(fork_point(
            &pos(4, 0x700),
            &[(1, 0x500), (2, 0x600), (3, 0x650)],
            3,
            &[(1, 0x500), (2, 0x600)],
            0x2000
        )
        .is_err());
    }
}
