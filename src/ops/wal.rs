//! Where a host's WAL ends and what lies beyond a point: the facts that decide
//! whether promoting, rewinding or re-cloning would lose committed data.
//!
//! "Could not tell" is never "nothing": every read of WAL goes through one
//! shell function that fails unless pg_waldump read up to where it was asked
//! to (or to the end of the WAL, where that is the question). A segment that
//! is missing, recycled away or unreadable is an error, never zero commits.

use crate::fleet::{parse_lsn, Fleet};
use crate::shell::quote;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalPos {
    pub timeline: u32,
    /// Start of the last WAL record the host has (replayed, or on disk when stopped).
    pub lsn: u64,
    /// `primary`, `recovery` (a running replica) or `stopped`.
    pub mode: String,
    /// Bytes per WAL segment, as the host's control file says (initdb's
    /// `--wal-segsize`): segment file names depend on it.
    pub segment: u64,
}

/// The state of a standby's WAL receiver (`streaming` when it streams), or
/// `none` while it has none (connecting, or between attempts).
pub(crate) const RECEIVER_SQL: &str = "select coalesce((select status from pg_stat_wal_receiver), 'none')";

/// How pg_waldump says it reached the end of the WAL (PostgreSQL 15 to 17):
/// the reader found no valid record where the WAL stops, as recovery does
/// at its end. Anything else (a file not found, not readable) is a failure.
const END_OF_WAL: &str = "invalid record length|incorrect prev-link|invalid magic number|unexpected pageaddr|\
invalid resource manager ID|invalid info bits|too long|no contrecord flag|invalid contrecord length|\
incorrect resource manager data checksum";

/// The shell function `waldump -p DIR ARGS...`: pg_waldump's records into
/// the file `$wd_out`, or a failure naming pg_waldump's error. The read may
/// stop at its `-e` or at the end of the WAL, nowhere else. The end of the
/// WAL is also a segment switch whose next file does not exist yet, with no
/// later file of that timeline (an idle server after `pg_switch_wal`).
/// (Debian 12's dash has no pipefail: the records go to a file, so the exit
/// status is pg_waldump's.)
fn waldump_fn(bin_dir: &str) -> String {
    format!(
        r#"cd / && wd_out=$(mktemp) && wd_err=$(mktemp) || exit 4
trap 'rm -f "$wd_out" "$wd_err"' EXIT
waldump() {{
  dir=$2
  runuser -u postgres -- {waldump} "$@" >"$wd_out" 2>"$wd_err" && return 0
  if grep -Eq '{END_OF_WAL}' "$wd_err"; then return 0; fi
  missing=$(sed -n 's/.*could not find file "\([0-9A-F]\{{24\}}\)".*/\1/p' "$wd_err" | head -n 1)
  if [ -n "$missing" ] && tail -n 1 "$wd_out" | grep -q 'desc: SWITCH' \
    && ! ls "$dir" | awk -v m="$missing" 'length($0) == 24 && substr($0, 1, 8) == substr(m, 1, 8) && $0 > m {{ f = 1 }} END {{ exit !f }}'; then
    return 0
  fi
  echo "pg_waldump could not read the WAL: $(tail -n 2 "$wd_err")" >&2
  return 1
}}
"#,
        waldump = quote(&format!("{bin_dir}/pg_waldump"))
    )
}

/// Reads the WAL position of a host whose PostgreSQL may be running or
/// stopped: `MODE LSN TIMELINE SEGMENT_BYTES`.
pub(crate) fn position_script(data_dir: &str, bin_dir: &str, port: u16) -> String {
    let (qdata, qbin) = (quote(data_dir), quote(bin_dir));
    format!(
        r#"D={qdata}; B={qbin}
{waldump}q() {{ runuser -u postgres -- psql -p {port} -XAtq -c "$1" 2>/dev/null; }}
seg=$("$B/pg_controldata" "$D" 2>/dev/null | sed -n "s/^Bytes per WAL segment: *//p")
# A primary's timeline is in its current WAL file name (the checkpoint's may lag a promotion).
if out=$(q "select case when pg_is_in_recovery() then 'recovery ' || pg_last_wal_replay_lsn() || ' ' || coalesce((select received_tli from pg_stat_wal_receiver), (select timeline_id from pg_control_checkpoint())) else 'primary ' || pg_current_wal_lsn() || ' ' || ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end") && [ -n "$out" ]; then
  [ -n "$seg" ] || {{ echo "pg_controldata does not say the WAL segment size" >&2; exit 4; }}
  echo "$out $seg" | tr '|' ' '
  exit 0
fi
# No data directory: nothing to lose here, said as data (not an error).
[ -f "$D/PG_VERSION" ] || {{ echo empty; exit 0; }}
# A server that runs but does not answer is not a stopped one: its WAL may grow.
if runuser -u postgres -- "$B/pg_ctl" -D "$D" status >/dev/null 2>&1; then
  echo "PostgreSQL runs but does not answer psql: its position cannot be read" >&2; exit 4
fi
[ -n "$seg" ] || {{ echo "pg_controldata does not say the WAL segment size" >&2; exit 4; }}
# From the checkpoint record, not its REDO point: that record lies on the
# checkpoint's timeline, while the REDO point may be in an older timeline's file.
ckpt=$("$B/pg_controldata" "$D" | sed -n "s/^Latest checkpoint location: *//p")
tli=$("$B/pg_controldata" "$D" | sed -n "s/^Latest checkpoint's TimeLineID: *//p")
waldump -p "$D/pg_wal" -t "$tli" -s "$ckpt" || exit 4
last=$(tail -n 1 "$wd_out" | sed -n 's/.* lsn: \([0-9A-F/]*\),.*/\1/p')
[ -n "$last" ] || {{ echo "pg_waldump found no record at the checkpoint $ckpt" >&2; exit 4; }}
echo "stopped $last $tli $seg"
"#,
        waldump = waldump_fn(bin_dir)
    )
}

/// A position, or `None` for a host without a data directory (`empty`).
pub(crate) fn parse_position(out: &str) -> anyhow::Result<Option<WalPos>> {
    if out.trim() == "empty" {
        return Ok(None);
    }
    let mut w = out.split_whitespace();
    match (w.next(), w.next(), w.next(), w.next()) {
        (Some(mode), Some(lsn), Some(tli), Some(seg)) => {
            let segment: u64 = seg.parse()?;
            anyhow::ensure!(
                segment.is_power_of_two() && segment >= 1 << 20,
                "not a WAL segment size: {seg}"
            );
            Ok(Some(WalPos {
                timeline: tli.parse()?,
                lsn: parse_lsn(lsn)?,
                mode: mode.to_string(),
                segment,
            }))
        }
        _ => anyhow::bail!("cannot read the WAL position: {out:?}"),
    }
}

/// `host`'s WAL position; `None` when it has no data directory (nothing
/// there to lose). A position that cannot be read is an error, never `None`.
pub(crate) async fn position_if_any(fleet: &Fleet, host: &str) -> anyhow::Result<Option<WalPos>> {
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

/// `host`'s WAL position, which must exist.
pub(crate) async fn position(fleet: &Fleet, host: &str) -> anyhow::Result<WalPos> {
    position_if_any(fleet, host)
        .await?
        .ok_or_else(|| anyhow::anyhow!("{host} has no data directory"))
}

/// Committed transactions in a host's WAL after `from` on `timeline`: the
/// commits that exist nowhere else when `from` is where another copy ends.
/// One line per commit: its time, as the DBA will want to know what is at
/// stake. Fails when the WAL from `from` cannot be read to its end.
pub(crate) fn commits_after_script(data_dir: &str, bin_dir: &str, timeline: u32, from: u64) -> String {
    format!(
        "{}waldump -p {} -t {timeline} -s {} || exit 4\nsed -n 's/.*desc: COMMIT \\([^;]*\\).*/\\1/p' \"$wd_out\"\n",
        waldump_fn(bin_dir),
        quote(&format!("{data_dir}/pg_wal")),
        crate::fleet::format_lsn(from)
    )
}

/// The name of the WAL segment file holding `lsn` on `timeline`, for
/// segments of `segment` bytes.
pub(crate) fn segment_name(timeline: u32, lsn: u64, segment: u64) -> String {
    let per_id = 0x1_0000_0000 / segment;
    let seg = lsn / segment;
    format!("{timeline:08X}{:08X}{:08X}", seg / per_id, seg % per_id)
}

/// A hash of the WAL records on `tli` that start at or after `start` and
/// before `upto` (both in one segment), or `missing` when the segment
/// holding `start` is gone (the master no longer has it: nothing to compare
/// with). Any other failure to read them is an error: two failed reads must
/// never hash equal.
///
/// pg_waldump reads on past `upto` (to the end of the next segment, or of
/// the WAL) and the records are cut by their LSN: with `-e upto` it fails
/// to find a first record whenever the one at `upto` is the first to start
/// in the segment (seen on the lab: "could not find a valid record").
pub(crate) fn records_hash_script(
    data_dir: &str,
    bin_dir: &str,
    tli: u32,
    start: u64,
    upto: u64,
    segment: u64,
) -> String {
    format!(
        "[ -f {seg} ] || {{ echo missing; exit 0; }}\n{}waldump -p {wal} -t {tli} -s {s} -e {e} || exit 4\n\
awk -v upto={up} 'match($0, /lsn: [0-9A-F]+\\/[0-9A-F]+/) {{ split(substr($0, RSTART + 5, RLENGTH - 5), p, \"/\"); \
if ((\"x\" sprintf(\"%8s/%8s\", p[1], p[2])) < (\"x\" upto)) print }}' \"$wd_out\" > \"$wd_err\" || exit 4\n\
h=$(sha256sum < \"$wd_err\" | cut -d' ' -f1)\n\
[ ${{#h}} -eq 64 ] || {{ echo 'cannot hash the WAL records' >&2; exit 4; }}\n\
echo \"$h\"\n",
        waldump_fn(bin_dir),
        seg = quote(&format!("{data_dir}/pg_wal/{}", segment_name(tli, start, segment))),
        wal = quote(&format!("{data_dir}/pg_wal")),
        s = crate::fleet::format_lsn(start),
        e = crate::fleet::format_lsn(start - start % segment + 2 * segment),
        up = quote(&lsn_key(upto)),
    )
}

/// An LSN as pg_waldump prints it (`%X/%08X`), the high part right-aligned
/// in 8 characters: such keys order as the LSNs do.
fn lsn_key(lsn: u64) -> String {
    format!("{:>8}/{:08X}", format!("{:X}", lsn >> 32), lsn & 0xFFFF_FFFF)
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
            parse_position("recovery 0/5000148 2 16777216\n").unwrap(),
            Some(WalPos {
                timeline: 2,
                lsn: 0x5000148,
                mode: "recovery".into(),
                segment: 16 << 20,
            })
        );
        assert_eq!(
            parse_position("stopped 0/3000028 1 1048576")
                .unwrap()
                .map(|p| p.segment),
            Some(1 << 20)
        );
        assert!(parse_position("no data directory").is_err());
        assert!(parse_position("empty\n").unwrap().is_none());
        // Without the segment size nothing is assumed.
        assert!(parse_position("stopped 0/3000028 1").is_err());
        assert!(parse_position("stopped 0/3000028 1 1000").is_err());
    }

    #[test]
    fn scripts_quote_their_paths() {
        let s = commits_after_script("/var/lib/pg x", "/usr/lib/postgresql/17/bin", 2, 0x5000000);
        assert!(
            s.contains("runuser -u postgres -- /usr/lib/postgresql/17/bin/pg_waldump \"$@\""),
            "{s}"
        );
        assert!(
            s.ends_with("waldump -p '/var/lib/pg x/pg_wal' -t 2 -s 0/5000000 || exit 4\nsed -n 's/.*desc: COMMIT \\([^;]*\\).*/\\1/p' \"$wd_out\"\n"),
            "{s}"
        );
        assert!(position_script("/var/lib/pg x", "/b", 5432).starts_with("D='/var/lib/pg x'; B=/b\n"));
        let h = records_hash_script("/d", "/b", 2, 0x5000000, 0x5000100, 16 << 20);
        assert!(
            h.starts_with("[ -f /d/pg_wal/000000020000000000000005 ] || { echo missing; exit 0; }\n"),
            "{h}"
        );
        assert!(
            h.contains("waldump -p /d/pg_wal -t 2 -s 0/5000000 -e 0/7000000 || exit 4\n"),
            "{h}"
        );
        assert!(h.contains("awk -v upto='       0/05000100' "), "{h}");
        assert_eq!(lsn_key(0x1_0000_0028), "       1/00000028");
        assert!(lsn_key(0xF_FFFF_FFFF) < lsn_key(0x10_0000_0000));
    }

    #[test]
    fn segment_names_follow_the_segment_size() {
        assert_eq!(segment_name(1, 0x0500_0028, 16 << 20), "000000010000000000000005");
        assert_eq!(
            segment_name(3, (1 << 32) + 0x0100_0000, 16 << 20),
            "000000030000000100000001"
        );
        // 1 MiB segments: 4096 per 4 GiB.
        assert_eq!(segment_name(1, 0x0050_0028, 1 << 20), "000000010000000000000005");
        assert_eq!(
            segment_name(2, (1 << 32) + 0x0030_0000, 1 << 20),
            "000000020000000100000003"
        );
    }

    #[test]
    fn commits_read_as_their_times() {
        assert_eq!(Commits(vec![]).to_string(), "no commit");
        assert_eq!(Commits(vec!["t1".into()]).to_string(), "1 commit (at t1)");
        let three = Commits(vec!["t1".into(), "t2".into(), "t3".into()]);
        assert_eq!(three.to_string(), "3 commits (from t1 to t3)");
    }

    /// The scripts against real WAL (Debian's PostgreSQL 15, which
    /// `.ci/setup` installs; run as root, as on a host): a cluster of 1 MiB
    /// segments, commits across several of them, then one segment removed.
    #[test]
    fn real_wal_reads_fail_closed() {
        const BIN: &str = "/usr/lib/postgresql/15/bin";
        assert!(
            std::path::Path::new(BIN).join("pg_waldump").exists(),
            "PostgreSQL 15 is not installed: run .ci/setup"
        );
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().display().to_string();
        let data = format!("{dir}/data");
        let sh = |script: &str| {
            // From root's home, as over SSH: PostgreSQL 15's psql, run as
            // postgres, warns there that it cannot change directory.
            let mut child = std::process::Command::new("sh")
                .arg("-s")
                .current_dir("/root")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
            (out.status.code(), text(&out.stdout), text(&out.stderr))
        };
        let psql = format!("runuser -u postgres -- {BIN}/psql -h {dir} -p 5499 -XAtq -d postgres -c");
        let (code, from, err) = sh(&format!(
            "set -e\nchown postgres {dir}\n[ -d /var/run/postgresql ] || install -d -o postgres -g postgres /var/run/postgresql\nrunuser -u postgres -- {BIN}/initdb -D {data} --wal-segsize=1 -A trust >/dev/null\n\
             runuser -u postgres -- {BIN}/pg_ctl -D {data} -o \"-p 5499 -k {dir},/var/run/postgresql -c listen_addresses='' -c wal_keep_size=64MB\" -w -l {dir}/log start >/dev/null\n\
             {psql} 'create table t (i int)'\n{psql} 'select pg_current_wal_lsn()'\n\
             for i in 1 2 3 4 5; do {psql} \"insert into t values ($i)\"; {psql} 'select pg_switch_wal()' >/dev/null; done\n\
             {psql} 'insert into t values (6)'\n"
        ));
        assert_eq!(code, Some(0), "{err}");
        let from = parse_lsn(&from).unwrap();

        // Running: psql's answers, whatever it warns on stderr.
        let role = crate::fleet::server_role_script(5499, &data, BIN);
        assert_eq!(sh(&role), (Some(0), "f".into(), String::new()));
        let (code, out, err) = sh(&position_script(&data, BIN, 5499));
        assert_eq!(code, Some(0), "{err}");
        assert!(out.starts_with("primary ") && out.ends_with(" 1 1048576"), "{out}");
        let (code, _, err) = sh(&format!(
            "runuser -u postgres -- {BIN}/pg_ctl -D {data} -m fast -w stop >/dev/null"
        ));
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(sh(&role), (Some(0), "down".into(), String::new()));

        // Stopped: the position from the WAL on disk, the segment size from the control file.
        let (code, out, err) = sh(&position_script(&data, BIN, 5499));
        assert_eq!(code, Some(0), "{err}");
        let pos = parse_position(&out).unwrap().unwrap();
        assert_eq!(
            (pos.mode.as_str(), pos.timeline, pos.segment),
            ("stopped", 1, 1 << 20),
            "{out}"
        );
        assert!(pos.lsn > from + 4 * (1 << 20), "{out}");

        let (code, out, err) = sh(&commits_after_script(&data, BIN, 1, from));
        assert_eq!(code, Some(0), "{err}");
        assert!(out.lines().count() >= 6, "six commits at least: {out}");
        // The tip's segment: its records before the last, hashed.
        let start = pos.lsn - pos.lsn % pos.segment;
        let hash = records_hash_script(&data, BIN, 1, start, pos.lsn, pos.segment);
        let (code, whole, err) = sh(&hash);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(whole.len(), 64, "{whole}");
        // Up to the first record that starts in the segment: no record to
        // hash, and no failure (`-e` there made pg_waldump find none).
        let (_, first_lsn, _) = sh(&format!(
            "runuser -u postgres -- {BIN}/pg_waldump -p {data}/pg_wal -t 1 -s {} 2>/dev/null | head -n 1 | sed -n 's/.* lsn: \\([0-9A-F/]*\\),.*/\\1/p'",
            crate::fleet::format_lsn(start)
        ));
        let first_lsn = parse_lsn(&first_lsn).unwrap();
        let (code, none, err) = sh(&records_hash_script(&data, BIN, 1, start, first_lsn, pos.segment));
        assert_eq!(code, Some(0), "{err}");
        assert_ne!(none, whole);

        // A segment in the middle is gone: neither zero commits nor a hash.
        let middle = format!("{data}/pg_wal/{}", segment_name(1, from + 2 * (1 << 20), 1 << 20));
        std::fs::remove_file(&middle).unwrap();
        let (code, out, err) = sh(&commits_after_script(&data, BIN, 1, from));
        assert_ne!(code, Some(0), "read past a missing segment: {out}");
        assert!(err.contains("pg_waldump could not read the WAL"), "{err}");
        let (code, _, err) = sh(&position_script(&data, BIN, 5499));
        assert_eq!(code, Some(0), "the checkpoint's segment is there: {err}");
        // The tip's segment unreadable (its first page zeroed): no hash.
        let tip = format!("{data}/pg_wal/{}", segment_name(1, start, 1 << 20));
        let bytes = std::fs::read(&tip).unwrap();
        std::fs::write(&tip, [vec![0u8; 8192], bytes[8192..].to_vec()].concat()).unwrap();
        let (code, out, err) = sh(&hash);
        assert_ne!(code, Some(0), "hashed an unreadable segment: {out}");
        assert!(err.contains("pg_waldump could not read the WAL"), "{err}");
        // The tip's segment gone: the other copy has nothing to compare.
        std::fs::remove_file(&tip).unwrap();
        let (code, out, _) = sh(&hash);
        assert_eq!((code, out.as_str()), (Some(0), "missing"));
    }
}
