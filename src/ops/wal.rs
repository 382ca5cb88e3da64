//! Where a host's WAL ends and what lies beyond a point: the facts that decide
//! whether promoting, rewinding or re-cloning would lose committed data.

use crate::fleet::{parse_lsn, Fleet};
use crate::shell::quote;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalPos {
    pub timeline: u32,
    /// Start of the last WAL record the host has (replayed, or on disk when stopped).
    pub lsn: u64,
    /// `primary`, `recovery` (a running replica) or `stopped`.
    pub mode: String,
}

/// The state of a standby's WAL receiver (`streaming` when it streams), or
/// `none` while it has none (connecting, or between attempts).
pub(crate) const RECEIVER_SQL: &str = "select coalesce((select status from pg_stat_wal_receiver), 'none')";

/// Ends the host's WAL receiver: PostgreSQL starts a new one, which connects
/// afresh. (An auxiliary process: pg_terminate_backend cannot signal it.)
pub(crate) const RESTART_RECEIVER_SCRIPT: &str = "pkill -TERM -u postgres -f '^postgres: (.+: )?walreceiver' || true";

/// Reads the WAL position of a host whose PostgreSQL may be running or stopped.
pub(crate) fn position_script(data_dir: &str, bin_dir: &str, port: u16) -> String {
    let (data_dir, bin_dir) = (quote(data_dir), quote(bin_dir));
    format!(
        r#"D={data_dir}; B={bin_dir}
q() {{ runuser -u postgres -- psql -p {port} -XAtq -c "$1" 2>/dev/null; }}
# A primary's timeline is in its current WAL file name (the checkpoint's may lag a promotion).
if out=$(q "select case when pg_is_in_recovery() then 'recovery ' || pg_last_wal_replay_lsn() || ' ' || coalesce((select received_tli from pg_stat_wal_receiver), (select timeline_id from pg_control_checkpoint())) else 'primary ' || pg_current_wal_lsn() || ' ' || ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end") && [ -n "$out" ]; then
  echo "$out" | tr '|' ' '
  exit 0
fi
[ -f "$D/PG_VERSION" ] || {{ echo "no data directory" >&2; exit 3; }}
# From the checkpoint record, not its REDO point: that record lies on the
# checkpoint's timeline, while the REDO point may be in an older timeline's file.
ckpt=$("$B/pg_controldata" "$D" | sed -n "s/^Latest checkpoint location: *//p")
tli=$("$B/pg_controldata" "$D" | sed -n "s/^Latest checkpoint's TimeLineID: *//p")
last=$(runuser -u postgres -- "$B/pg_waldump" -p "$D/pg_wal" -t "$tli" -s "$ckpt" 2>/dev/null | tail -1 | sed -n 's/.* lsn: \([0-9A-F/]*\),.*/\1/p')
echo "stopped ${{last:-$ckpt}} $tli"
"#
    )
}

pub(crate) fn parse_position(out: &str) -> anyhow::Result<WalPos> {
    let mut w = out.split_whitespace();
    let (mode, lsn, tli) = (w.next(), w.next(), w.next());
    match (mode, lsn, tli) {
        (Some(mode), Some(lsn), Some(tli)) => Ok(WalPos {
            timeline: tli.parse()?,
            lsn: parse_lsn(lsn)?,
            mode: mode.to_string(),
        }),
        _ => anyhow::bail!("cannot read the WAL position: {out:?}"),
    }
}

pub(crate) async fn position(fleet: &Fleet, host: &str) -> anyhow::Result<WalPos> {
    let p = &fleet.design.platform;
    let out = fleet
        .remote(host)?
        .check(
            "reading the WAL position",
            &position_script(&p.data_dir, &p.bin_dir, p.postgres_port),
        )
        .await?;
    parse_position(&out)
}

/// Committed transactions in a host's WAL after `from` on `timeline`: the
/// commits that exist nowhere else when `from` is where another copy ends.
/// One line per commit: its time, as the DBA will want to know what is at stake.
pub(crate) fn commits_after_script(data_dir: &str, bin_dir: &str, timeline: u32, from: u64) -> String {
    format!(
        "runuser -u postgres -- {} -p {} -t {timeline} -s {} 2>/dev/null | sed -n 's/.*desc: COMMIT \\([^;]*\\).*/\\1/p' || true",
        quote(&format!("{bin_dir}/pg_waldump")),
        quote(&format!("{data_dir}/pg_wal")),
        crate::fleet::format_lsn(from)
    )
}

/// The commits past a point, by their commit times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Commits(pub Vec<String>);

impl Commits {
    pub(crate) fn count(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Display for Commits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [] => write!(f, "no commit"),
            [one] => write!(f, "1 commit (at {one})"),
            [first, .., last] => write!(f, "{} commits (from {first} to {last})", self.0.len()),
        }
    }
}

pub(crate) async fn commits_after(fleet: &Fleet, host: &str, timeline: u32, from: u64) -> anyhow::Result<Commits> {
    let p = &fleet.design.platform;
    let out = fleet
        .remote(host)?
        .check(
            "reading WAL",
            &commits_after_script(&p.data_dir, &p.bin_dir, timeline, from),
        )
        .await?;
    Ok(Commits(
        out.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_parsed() {
        assert_eq!(
            parse_position("recovery 0/5000148 2\n").unwrap(),
            WalPos {
                timeline: 2,
                lsn: 0x5000148,
                mode: "recovery".into()
            }
        );
        assert_eq!(parse_position("stopped 0/3000028 1").unwrap().mode, "stopped");
        assert!(parse_position("no data directory").is_err());
    }

    #[test]
    fn scripts_quote_their_paths() {
        assert_eq!(
            commits_after_script("/var/lib/pg", "/usr/lib/postgresql/17/bin", 2, 0x5000000),
            "runuser -u postgres -- /usr/lib/postgresql/17/bin/pg_waldump -p /var/lib/pg/pg_wal -t 2 -s 0/5000000 2>/dev/null | sed -n 's/.*desc: COMMIT \\([^;]*\\).*/\\1/p' || true"
        );
        assert!(position_script("/var/lib/pg x", "/b", 5432).starts_with("D='/var/lib/pg x'; B=/b\n"));
    }

    #[test]
    fn commits_read_as_their_times() {
        assert_eq!(Commits(vec![]).to_string(), "no commit");
        assert_eq!(Commits(vec!["t1".into()]).to_string(), "1 commit (at t1)");
        let three = Commits(vec!["t1".into(), "t2".into(), "t3".into()]);
        assert_eq!(three.to_string(), "3 commits (from t1 to t3)");
    }
}
