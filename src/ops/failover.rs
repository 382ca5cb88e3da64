//! `pgha failover --to HOST [--accept-data-loss]`: a master for a cloud that
//! has none and that Patroni will not give one by itself, typically because
//! its only running replica is behind the newest timeline (check_timeline
//! refuses it: promoting it forks history and drops what the newer masters
//! committed). The commits at stake are counted first, the way recover-node
//! counts them, and the failover is refused unless the operator accepts them.

use std::time::Duration;

use anyhow::{bail, Context};

use super::lineage::Verdict;
use super::wal;
use crate::components::patroni;
use crate::design::{Cloud, Design, Host};
use crate::engine;
use crate::engine::report::Recorder;
use crate::error::Usage;
use crate::fleet::{Fleet, Reach};
use crate::ui;
use crate::wait::poll;

pub(crate) struct Options {
    pub to: String,
    pub accept_data_loss: bool,
    pub yes: bool,
    pub dry_run: bool,
}

pub(crate) async fn run(design: &Design, opts: &Options, output: ui::Output) -> anyhow::Result<()> {
    let cloud = match design.find_host(&opts.to) {
        Some((Some(c), _)) if c.is_primary() => c,
        Some((Some(c), _)) => bail!(Usage(format!(
            "{} is in {}, a secondary cloud: its standby leader is elected by Patroni without a timeline check; \
             `pgha recover-node` repairs its hosts",
            opts.to, c.name
        ))),
        Some((None, _)) => bail!(Usage(format!("{} is a GLB host: it has no database", opts.to))),
        None => bail!(Usage(format!("no database host named `{}` in the design", opts.to))),
    };
    let fleet = Fleet::connect(design, Reach::NO_GLB).await?;
    let result = run_on(&fleet, cloud, opts, output).await;
    fleet.close().await;
    result
}

/// What the other hosts of the cloud hold that the candidate does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AtStake {
    /// Everything it has, the candidate has too (or it has no data).
    Nothing,
    /// Commits only it holds (recover-node's words for them).
    Commits(String),
    /// Neither proven contained nor counted: unreachable, or its WAL is gone.
    Unknown(String),
}

/// One host's verdict as what a failover to the candidate would lose.
pub(crate) fn at_stake(verdict: &Verdict) -> AtStake {
    match verdict {
        Verdict::Empty | Verdict::Contained | Verdict::Rewindable | Verdict::Reclone => AtStake::Nothing,
        Verdict::UniqueCommits(what) => AtStake::Commits(what.clone()),
        Verdict::Unprovable => AtStake::Unknown(
            "its WAL cannot be compared with the candidate's any more: commits of its own cannot be ruled out".into(),
        ),
    }
}

/// The losses to name, one line per host that has any (or may).
pub(crate) fn losses(stakes: &[(String, AtStake)]) -> Vec<String> {
    stakes
        .iter()
        .filter_map(|(host, s)| match s {
            AtStake::Nothing => None,
            AtStake::Commits(what) => Some(format!("{host} holds {what}")),
            AtStake::Unknown(why) => Some(format!("{host}: {why}")),
        })
        .collect()
}

/// What `host` holds that `candidate` lacks. A host on a newer timeline
/// whose history contains the candidate's position (a later master) holds
/// everything it committed on its own timeline; else recover-node's
/// comparison decides.
async fn weigh(fleet: &Fleet, host: &Host, candidate: &Candidate) -> anyhow::Result<AtStake> {
    let Some(node) = wal::position_if_any(fleet, &host.name).await? else {
        return Ok(AtStake::Nothing);
    };
    let cand = &candidate.position;
    if node.timeline > cand.timeline {
        let nh = fleet.read_history(&host.name, node.timeline).await?;
        if let Some(start) = later_master_start(&nh, &candidate.history, cand.timeline, cand.lsn) {
            let commits = wal::commits_after(fleet, &host.name, node.timeline, start).await?;
            let between = node.timeline - cand.timeline - 1;
            return Ok(match (commits.count(), between) {
                (0, 0) => AtStake::Nothing,
                (_, 0) => AtStake::Commits(format!(
                    "{commits} on timeline {}, made since it was promoted at {}",
                    node.timeline,
                    crate::fleet::format_lsn(start)
                )),
                _ => AtStake::Commits(format!(
                    "{commits} on timeline {}, and whatever timelines {} to {} committed before it",
                    node.timeline,
                    cand.timeline + 1,
                    node.timeline - 1
                )),
            });
        }
    }
    Ok(at_stake(&fleet.compare(host, &candidate.name).await?))
}

/// The failover's candidate as read once: its WAL position and history.
struct Candidate {
    name: String,
    position: wal::WalPos,
    history: Vec<(u32, u64)>,
}

/// Where the host's timeline begins, when its history `nh` runs through the
/// candidate's (`ch`, timeline `tli`, position `lsn`): it became master
/// later on the candidate's own lineage. `None` otherwise (another lineage).
pub(crate) fn later_master_start(nh: &[(u32, u64)], ch: &[(u32, u64)], tli: u32, lsn: u64) -> Option<u64> {
    let through = nh.len() > ch.len()
        && nh[..ch.len()] == *ch
        && nh.get(ch.len()).is_some_and(|(t, switch)| *t == tli && lsn <= *switch);
    through.then(|| nh.last().map_or(0, |(_, start)| *start))
}

pub(crate) async fn run_on(fleet: &Fleet, cloud: &Cloud, opts: &Options, output: ui::Output) -> anyhow::Result<()> {
    let flags = engine::Flags::new(opts.yes, opts.dry_run, output);
    let mut cmd = Failover {
        fleet,
        cloud,
        to: &opts.to,
        accept_data_loss: opts.accept_data_loss,
        held: Vec::new(),
        lost: Vec::new(),
    };
    engine::run(fleet, &mut cmd, flags).await
}

struct Failover<'a> {
    fleet: &'a Fleet,
    cloud: &'a Cloud,
    to: &'a str,
    accept_data_loss: bool,
    /// Hosts that hold what the candidate lacks, and they are held first.
    held: Vec<String>,
    /// What the failover loses, in words.
    lost: Vec<String>,
}

enum Step {
    /// Patroni held on these hosts before the promotion.
    Hold(Vec<String>),
    /// Patroni promotes the candidate (of this timeline).
    Promote {
        timeline: String,
    },
    WaitForMaster,
}

impl engine::Command for Failover<'_> {
    type Step = Step;

    fn name(&self) -> String {
        format!("failover --to {}", self.to)
    }

    fn lock_clouds(&self) -> Vec<&Cloud> {
        vec![self.cloud]
    }

    async fn plan(&mut self) -> anyhow::Result<Vec<Step>> {
        let (fleet, cloud, to) = (self.fleet, self.cloud, self.to);
        let view = fleet.cluster_state(cloud).await?;
        super::cluster::warn_paused(&view, cloud);
        let members = view.members;
        if let Some(leader) = members.iter().find(|m| m.is_leader() && m.is_healthy()) {
            bail!(Usage(format!(
                "{} has a master, {}: `pgha switchover --to {to}` changes it without losing anything",
                cloud.name, leader.name
            )));
        }
        let candidate = members.iter().find(|m| m.name == to && m.is_healthy()).ok_or_else(|| {
            Usage(format!(
                "{to} is not a running member of {} (Patroni must run there to promote it); members: {}",
                cloud.name,
                members
                    .iter()
                    .map(|m| format!("{} {}", m.name, m.state))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        // What each other host holds past the candidate, compared as
        // recover-node compares a node with the master.
        let position = wal::position(fleet, to).await?;
        let read = Candidate {
            name: to.to_string(),
            history: fleet.read_history(to, position.timeline).await?,
            position,
        };
        let mut stakes = Vec::new();
        for h in cloud.hosts.iter().filter(|h| h.name != to) {
            let stake = if fleet.remotes.contains_key(&h.name) {
                match weigh(fleet, h, &read).await {
                    Ok(s) => s,
                    Err(e) => AtStake::Unknown(format!("its WAL could not be read ({e:#})")),
                }
            } else {
                AtStake::Unknown("unreachable: what it holds cannot be counted".into())
            };
            stakes.push((h.name.clone(), stake));
        }
        self.lost = losses(&stakes);
        // Hosts that hold what the new master lacks: their WAL has left its
        // lineage, and a timeline number may now mean two histories, which
        // Patroni would stream across without a rewind. They are held before
        // the promotion (a running one could follow the new master first),
        // and their Patroni stays stopped until recover-node compares them.
        self.held = stakes
            .into_iter()
            .filter(|(h, s)| *s != AtStake::Nothing && fleet.remotes.contains_key(h))
            .map(|(h, _)| h)
            .collect();
        let mut steps = Vec::new();
        if !self.held.is_empty() {
            steps.push(Step::Hold(self.held.clone()));
        }
        steps.push(Step::Promote {
            timeline: candidate.timeline.map_or("?".into(), |t| t.to_string()),
        });
        steps.push(Step::WaitForMaster);
        Ok(steps)
    }

    fn describe(&self, step: &Step) -> String {
        let to = self.to;
        match step {
            Step::Hold(hosts) => format!(
                "hold Patroni on {} until `pgha recover-node` brings each back (the fence refuses to start it)",
                hosts.join(", ")
            ),
            Step::Promote { timeline } => format!(
                "fail {} over to {to} (timeline {timeline}): Patroni promotes it although it may be behind{}",
                self.cloud.name,
                if self.lost.is_empty() {
                    String::new()
                } else {
                    format!("; lost: {}", self.lost.join("; "))
                }
            ),
            Step::WaitForMaster => format!("wait until {to} is the master of {}", self.cloud.name),
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        if !self.lost.is_empty() && !self.accept_data_loss {
            bail!(Usage(format!(
                "a failover to {} would lose what the newest masters committed:\n  {}\n  hint: start Patroni on a \
                 host that holds them (Patroni then elects it), or accept the loss with --accept-data-loss; \
                 afterwards `pgha recover-node HOST` keeps a host's own commits aside on disk before copying it \
                 afresh",
                self.to,
                self.lost.join("\n  ")
            )));
        }
        Ok(())
    }

    fn question(&self) -> String {
        format!("Fail {} over to {}?", self.cloud.name, self.to)
    }

    async fn run(&mut self, step: &Step, _: &Recorder) -> anyhow::Result<()> {
        let (fleet, to) = (self.fleet, self.to);
        match step {
            Step::Hold(hosts) => {
                let note = format!(
                    "this host holds commits the master {to} lacks (`pgha failover --to {to} --accept-data-loss`)"
                );
                let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
                hold_all(fleet, &hosts, &note).await
            }
            Step::Promote { .. } => {
                let done = fleet
                    .remote(to)?
                    .check(
                        "failing over",
                        &patroni::failover_script(&fleet.design.platform.name, to),
                    )
                    .await
                    .map(|_| ());
                if self.held.is_empty() {
                    return done;
                }
                done.with_context(|| {
                    format!(
                        "the failover did not run; {} stay held until `pgha recover-node` brings each back",
                        self.held.join(", ")
                    )
                })
            }
            Step::WaitForMaster => poll(Duration::from_secs(60), || async {
                Ok(fleet.master(self.cloud).await?.as_deref() == Some(to))
            })
            .await
            .with_context(|| format!("{to} did not become master")),
        }
    }
}

/// Holds every host of `held`, or none: when one hold cannot be written,
/// those written are lifted again (Patroni started where it ran before),
/// the failing host's hold file is removed, and the failover stops before
/// any promotion.
async fn hold_all(fleet: &Fleet, held: &[&str], note: &str) -> anyhow::Result<()> {
    let mut done: Vec<(&str, bool)> = Vec::new();
    for h in held {
        let out = fleet
            .remote(h)?
            .run_with_input(&patroni::hold_script(), Some(note.as_bytes()))
            .await;
        let failed = match out {
            Ok(o) if o.success() => {
                done.push((h, o.stdout.contains("was-running")));
                continue;
            }
            Ok(o) => crate::shell::last_lines(&o.stderr, 4),
            Err(e) => format!("{e:#}"),
        };
        let mut undone = Vec::new();
        for (d, was_running) in &done {
            let lifted = fleet
                .remote(d)?
                .check("lifting the hold", &patroni::release_hold_script(*was_running))
                .await;
            undone.push(match lifted {
                Ok(_) if *was_running => format!("{d}: hold lifted, Patroni started again"),
                Ok(_) => format!("{d}: hold lifted (its Patroni was stopped before, and stays so)"),
                Err(e) => format!("{d}: still held ({e:#}); `pgha recover-node {d}` lifts it"),
            });
        }
        // Whatever of its own hold got written goes too; its Patroni is
        // left as the failed call left it.
        let own = fleet
            .remote(h)?
            .check("removing the hold", patroni::UNHOLD_SCRIPT)
            .await;
        undone.push(match own {
            Ok(_) => format!("{h}: no hold left; check that its Patroni runs as before (`pgha status`)"),
            Err(e) => format!("{h}: may still be held ({e:#}); `pgha recover-node {h}` lifts it"),
        });
        bail!(
            "{h}: the hold could not be written ({failed}); nothing was promoted\n  {}",
            undone.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_master_on_the_candidates_lineage_is_found() {
        // The candidate stopped on timeline 1 at 0x400; the host was
        // promoted at 0x500 (timeline 2), then again at 0x900 (timeline 3).
        assert_eq!(later_master_start(&[(1, 0x500)], &[], 1, 0x400), Some(0x500));
        assert_eq!(
            later_master_start(&[(1, 0x500), (2, 0x900)], &[], 1, 0x400),
            Some(0x900)
        );
        // The candidate went past the switch on its own timeline: another lineage.
        assert_eq!(later_master_start(&[(1, 0x500)], &[], 1, 0x600), None);
        // Histories that disagree.
        assert_eq!(
            later_master_start(&[(1, 0x500), (2, 0x900)], &[(1, 0x480)], 2, 0x600),
            None
        );
        assert_eq!(
            later_master_start(&[(1, 0x500), (2, 0x900)], &[(1, 0x500)], 2, 0x600),
            Some(0x900)
        );
    }

    #[test]
    fn only_commits_and_the_unknown_are_named_as_lost() {
        let stakes = [
            ("a1".to_string(), at_stake(&Verdict::Contained)),
            (
                "a2".to_string(),
                at_stake(&Verdict::UniqueCommits("1 commit (at 12:00)".into())),
            ),
            ("a3".to_string(), at_stake(&Verdict::Unprovable)),
            ("a4".to_string(), at_stake(&Verdict::Rewindable)),
            (
                "a5".to_string(),
                AtStake::Unknown("unreachable: what it holds cannot be counted".into()),
            ),
        ];
        let lost = losses(&stakes);
        assert_eq!(lost.len(), 3, "{lost:?}");
        assert_eq!(lost[0], "a2 holds 1 commit (at 12:00)");
        assert!(lost[1].starts_with("a3: its WAL cannot be compared"));
        assert!(lost[2].starts_with("a5: unreachable"));
    }
}

#[cfg(test)]
#[path = "failover_tests.rs"]
mod runner_tests;
