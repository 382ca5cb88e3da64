//! A node's lineage against the master's: whether everything it holds is
//! in the master's history, proven by the timeline histories and then the
//! WAL records themselves (timeline numbers alone cannot tell: two clouds
//! promoted from one point both call their new timeline N, HAZARDS #2), and
//! the commits it holds past the point where they part. recover-node and
//! failover judge by it.

use anyhow::bail;
use serde::Serialize;

use super::wal::{self, WalPos};
use crate::design::Host;
use crate::fleet::{format_lsn, Fleet};
use crate::shell::quote;
use crate::ui;

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

/// A host's timeline history file for `tli` (empty when absent).
pub(crate) fn history_script(data_dir: &str, tli: u32) -> String {
    format!(
        "cat {} 2>/dev/null || true",
        quote(&format!("{data_dir}/pg_wal/{tli:08X}.history"))
    )
}

impl Fleet {
    /// The node's WAL against the master's: see the module comment.
    pub(crate) async fn compare(&self, host: &Host, master: &str) -> anyhow::Result<Verdict> {
        let Some(node) = wal::position_if_any(self, &host.name).await? else {
            return Ok(Verdict::Empty);
        };
        let m = wal::position(self, master).await?;
        let node_history = self.read_history(&host.name, node.timeline).await?;
        let master_history = self.read_history(master, m.timeline).await?;
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
        let same = self
            .same_wal(&host.name, master, &node, start_of_node_tli, upto)
            .await?;
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
        let commits = wal::commits_after(self, &host.name, node.timeline, from).await?;
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

    /// A host's `.history` for `tli` (timeline 1 has none).
    pub(crate) async fn read_history(&self, host: &str, tli: u32) -> anyhow::Result<Vec<(u32, u64)>> {
        if tli <= 1 {
            return Ok(Vec::new());
        }
        let script = history_script(&self.design.platform.data_dir, tli);
        Ok(parse_history(
            &self.remote(host)?.check("reading timeline history", &script).await?,
        ))
    }

    /// Do both hosts hold the same WAL records on timeline `tli` from `from` up
    /// to `upto`? Records, not raw bytes: page padding and recycled tails differ
    /// between copies of one history, while two histories born apart differ in
    /// their records (transaction ids, LSNs, back-pointers). WAL the master no
    /// longer has proves nothing: `None`.
    async fn same_wal(
        &self,
        node: &str,
        master: &str,
        pos: &WalPos,
        from: u64,
        upto: u64,
    ) -> anyhow::Result<Option<bool>> {
        let p = &self.design.platform;
        // Start inside the tip's segment: that is enough, and older files may be gone.
        let start = from.max(upto - upto % pos.segment);
        if start >= upto {
            return Ok(Some(true));
        }
        let script = wal::records_hash_script(&p.data_dir, &p.bin_dir, pos.timeline, start, upto, pos.segment);
        // A read that fails on either host is an error (the script says so),
        // never a hash of nothing that matches the other's nothing.
        let a = self.remote(node)?.check("reading WAL records", &script).await?;
        let b = self.remote(master)?.check("reading WAL records", &script).await?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_script_is_exact() {
        assert_eq!(
            history_script("/d", 2),
            "cat /d/pg_wal/00000002.history 2>/dev/null || true"
        );
    }

    fn pos(timeline: u32, lsn: u64) -> WalPos {
        WalPos {
            timeline,
            lsn,
            mode: "stopped".into(),
            segment: 16 << 20,
        }
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
