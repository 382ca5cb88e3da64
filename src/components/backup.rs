//! Backups and the WAL archive with pgBackRest (issue #12).
//!
//! Each cloud has a repository: a host of its own, or a path on one of its
//! database hosts (small setups). Every database host runs pgBackRest's
//! TLS server (Debian's `pgbackrest.service`, as `postgres`) and lists every
//! repository, in the design's cloud order: the master pushes each WAL segment to
//! all of them (asynchronously), so each cloud holds the whole archive and
//! whichever cloud is primary archives to the same stanza. A replica is made
//! from its cloud's repository when it holds a backup (Patroni's
//! `create_replica_methods`), and every host fetches WAL it lacks from the
//! archive (`restore_command`): a standby cloud down past `wal_keep_size`
//! catches up without a new copy. Backups run on the repository host (the
//! only place pgBackRest runs them), from a standby where one is streaming.
//! Both ends authenticate with the cluster PKI's certificates; the
//! repositories are encrypted with the generated `backup_passphrase`.

use super::{tls, Component, FileSpec};
use crate::design::{Backup, Cloud, Design, Host, Repository};
use crate::shell::quote;

/// Debian's unit: `pgbackrest server` as `postgres`.
pub(crate) const SERVICE: &str = "pgbackrest";
/// Debian's path, which pgBackRest reads when `/etc/pgbackrest/` has none.
pub(crate) const CONFIG_PATH: &str = "/etc/pgbackrest.conf";

pub(crate) const CONFIG: FileSpec = FileSpec {
    component: Component::Backup,
    template: "pgbackrest.conf.j2",
    path: CONFIG_PATH,
    owner: "postgres",
    group: "postgres",
    // The repository host's holds the cipher passphrase.
    mode: 0o640,
    service: SERVICE,
    check: None,
};

/// PostgreSQL's `restore_command` on a database host: archive-get from the
/// cloud's repository, never a segment of an abandoned timeline branch.
pub(crate) const RESTORE_WAL: FileSpec = FileSpec {
    component: Component::Backup,
    template: "restore-wal.sh.j2",
    path: "/usr/local/lib/pgha/restore-wal",
    owner: "root",
    group: "root",
    mode: 0o755,
    service: "patroni",
    check: Some("sh -n"),
};

/// The backup a timer runs on a repository host (`%i`: full, diff, incr).
pub(crate) const BACKUP_UNIT: FileSpec = FileSpec {
    component: Component::Backup,
    template: "pgha-backup@.service.j2",
    path: "/etc/systemd/system/pgha-backup@.service",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: "pgha-backup@full",
    check: None,
};

pub(crate) const TIMER_FULL: FileSpec = timer("/etc/systemd/system/pgha-backup-full.timer", "pgha-backup-full.timer");
pub(crate) const TIMER_DIFF: FileSpec = timer("/etc/systemd/system/pgha-backup-diff.timer", "pgha-backup-diff.timer");
pub(crate) const TIMER_INCR: FileSpec = timer("/etc/systemd/system/pgha-backup-incr.timer", "pgha-backup-incr.timer");

/// A backup timer unit at `path`, named `unit`.
const fn timer(path: &'static str, unit: &'static str) -> FileSpec {
    FileSpec {
        component: Component::Backup,
        template: "pgha-backup.timer.j2",
        path,
        owner: "root",
        group: "root",
        mode: 0o644,
        service: unit,
        check: None,
    }
}

/// The backup metrics on a database host (with metrics on): what each
/// repository holds and how old a backup the schedule allows, written every
/// 5 minutes into the node exporter's textfile directory (host/backup_metrics.py).
pub(crate) const METRICS_SERVICE: &str = "pgha-backup-metrics";
pub(crate) const METRICS_TIMER_UNIT: &str = "pgha-backup-metrics.timer";

/// Its code, the same on every host; run by the timer, so a change needs no restart.
pub(crate) const METRICS_CODE: FileSpec = metrics_file(
    "backup_metrics.py",
    "/usr/local/lib/pgha/backup-metrics",
    0o755,
    Some("python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())'"),
);
/// Its settings: the stanza, the repositories' clouds, the schedules.
pub(crate) const METRICS_SETTINGS: FileSpec =
    metrics_file("backup-metrics.json.j2", "/etc/pgha/backup-metrics.json", 0o644, None);
pub(crate) const METRICS_UNIT: FileSpec = metrics_file(
    "pgha-backup-metrics.service.j2",
    "/etc/systemd/system/pgha-backup-metrics.service",
    0o644,
    None,
);
pub(crate) const METRICS_TIMER: FileSpec = FileSpec {
    service: METRICS_TIMER_UNIT,
    ..metrics_file(
        "pgha-backup-metrics.timer.j2",
        "/etc/systemd/system/pgha-backup-metrics.timer",
        0o644,
        None,
    )
};
pub(crate) const METRICS_FILES: [FileSpec; 4] = [METRICS_CODE, METRICS_SETTINGS, METRICS_UNIT, METRICS_TIMER];

/// Where the backup metrics are written (the node exporter's textfile).
pub(crate) const METRICS_TEXTFILE: &str = "/var/lib/prometheus/node-exporter/pgha-backup.prom";

/// Prints `backup_metrics` once the backup metrics' file is written.
pub(crate) fn metrics_written_script() -> String {
    format!("test -s {} && echo backup_metrics\n", quote(METRICS_TEXTFILE))
}

const fn metrics_file(template: &'static str, path: &'static str, mode: u32, check: Option<&'static str>) -> FileSpec {
    super::timer_job_file(METRICS_SERVICE, template, path, mode, check)
}

/// The TLS files pgBackRest reads (the key is the `postgres` user's copy).
pub(crate) const TLS_FILES: [FileSpec; 3] = [tls::TRUST, tls::CERT, tls::POSTGRES_KEY];

/// A repository host's files, in the order they are written.
pub(crate) const REPOSITORY_FILES: [FileSpec; 4] = [tls::TRUST, tls::CERT, tls::POSTGRES_KEY, CONFIG];

/// Every file a repository host may have, timers not scheduled included
/// (the facts say whether one must be removed).
pub(crate) fn repository_fact_files() -> Vec<FileSpec> {
    let mut files = REPOSITORY_FILES.to_vec();
    files.push(BACKUP_UNIT);
    files.extend(Kind::ALL.map(Kind::timer));
    files
}

/// A backup type and its timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Full,
    Diff,
    Incr,
}

impl Kind {
    pub(crate) const ALL: [Kind; 3] = [Kind::Full, Kind::Diff, Kind::Incr];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Diff => "diff",
            Kind::Incr => "incr",
        }
    }

    pub(crate) fn timer(self) -> FileSpec {
        match self {
            Kind::Full => TIMER_FULL,
            Kind::Diff => TIMER_DIFF,
            Kind::Incr => TIMER_INCR,
        }
    }

    /// The design's schedule for this type, if it has one.
    pub(crate) fn schedule(self, b: &Backup) -> Option<&str> {
        match self {
            Kind::Full => b.schedule_full.as_deref(),
            Kind::Diff => b.schedule_diff.as_deref(),
            Kind::Incr => b.schedule_incr.as_deref(),
        }
    }
}

/// The packages of a repository host.
pub(crate) fn repository_packages() -> Vec<String> {
    vec!["pgbackrest".into()]
}

/// The stanza: the cluster's name.
pub(crate) fn stanza(design: &Design) -> &str {
    &design.platform.name
}

/// `pgbackrest` as `postgres` with the stanza, then `args`.
fn pgbackrest(design: &Design, args: &str) -> String {
    format!(
        "runuser -u postgres -- pgbackrest --stanza={} {args}",
        quote(stanza(design))
    )
}

/// The same on `repo`'s repository host, which serves only its own index.
fn on_repository(design: &Design, repo: &Repository, args: &str) -> String {
    pgbackrest(design, &format!("--repo={} {args}", repo_index(design, &repo.cloud)))
}

/// Patroni's `archive_command`: asynchronous, so a slow or unreachable
/// repository does not hold the master's WAL writer.
pub(crate) fn archive_command(design: &Design) -> String {
    format!("pgbackrest --stanza={} archive-push %p", stanza(design))
}

/// PostgreSQL's `restore_command`: [`RESTORE_WAL`], which runs
/// [`archive_get`] unless the segment belongs to an abandoned timeline branch.
pub(crate) fn restore_command() -> String {
    format!("{} %f \"%p\"", RESTORE_WAL.path)
}

/// The archive-get of `cloud`'s hosts: WAL from the cloud's own repository
/// only. Every repository holds the whole archive (the master pushes each
/// segment to all of them), while archive-get without `--repo` asks every
/// listed repository in turn, so a promotion would wait on the repository a
/// lost data center took with it (seen: 90 s and more). A cloud whose own
/// repository is down still streams from its upstream.
pub(crate) fn archive_get(design: &Design, cloud: &str) -> String {
    format!(
        "pgbackrest --stanza={} --repo={} archive-get",
        quote(stanza(design)),
        repo_index(design, cloud)
    )
}

/// pgBackRest's index of `cloud`'s repository: its place in the design's
/// cloud order, the same on every host (0: none).
pub(crate) fn repo_index(design: &Design, cloud: &str) -> usize {
    design
        .backup
        .as_ref()
        .and_then(|b| b.repositories.iter().position(|r| r.cloud == cloud))
        .map_or(0, |i| i + 1)
}

/// Patroni's replica method: restore the newest backup of `cloud`'s own
/// repository over what is there (`--delta`), as a standby; Patroni then
/// points it at its upstream. Without a backup there it fails, and Patroni
/// copies from the upstream instead.
pub(crate) fn replica_command(design: &Design, cloud: &str) -> String {
    format!(
        "/usr/bin/pgbackrest --stanza={} --repo={} --delta --type=standby restore",
        stanza(design),
        repo_index(design, cloud)
    )
}

/// Creates the repository's directory (so a path of the design's own
/// exists, owned by `postgres`) and the stanza (or checks it, if it
/// exists): pgBackRest finds the master among the hosts it lists. (No
/// `--repo`: the command takes none, and the host defines its own
/// repository only for it.)
pub(crate) fn stanza_create_script(design: &Design, repo: &Repository) -> String {
    format!(
        "set -e\ninstall -d -m 0750 -o postgres -g postgres {}\n{} >&2\n",
        quote(&repo.path),
        pgbackrest(design, "stanza-create")
    )
}

/// Moves the stanza to the cluster's new major version and system
/// identifier (after pg_upgrade, the new master running): the archive and
/// backups of the old one stay, under their own history entry. Run on a
/// repository host: it defines its own repository only (the command takes
/// no `--repo`).
pub(crate) fn stanza_upgrade_script(design: &Design) -> String {
    format!("set -e\n{} >&2\n", pgbackrest(design, "stanza-upgrade"))
}

/// pgBackRest's exit code when WAL was not archived within
/// `archive-timeout` (ArchiveTimeoutError, [082]).
pub(crate) const ARCHIVE_TIMEOUT_EXIT: i32 = 82;

/// Where pgBackRest copies a backup's files from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The first running standby in the repository's host order, or the
    /// master when none runs (`backup-standby=prefer`, the configuration's).
    Standby,
    /// The master only.
    Master,
}

/// Runs a backup of `kind` on a repository host.
pub(crate) fn backup_script(design: &Design, repo: &Repository, kind: Kind, from: Source) -> String {
    let standby = match from {
        Source::Standby => "",
        Source::Master => "--backup-standby=n ",
    };
    format!(
        "set -e\n{} >&2\n",
        on_repository(design, repo, &format!("{standby}--type={} backup", kind.as_str()))
    )
}

/// The database hosts in the repository's `pgN` order: a repository on a
/// database host is its own `pg1`, then its cloud's hosts, then the other
/// clouds' in the design's order.
pub(crate) fn source_order<'a>(design: &'a Design, repo: &Repository) -> Vec<&'a Host> {
    let mut clouds: Vec<&Cloud> = design.clouds.iter().collect();
    clouds.sort_by_key(|c| c.name != repo.cloud);
    let mut hosts: Vec<&Host> = clouds.iter().flat_map(|c| &c.hosts).collect();
    hosts.sort_by_key(|h| !(repo.on_database_host && h.name == repo.host.name));
    hosts
}

/// The standby pgBackRest would copy a backup from, as Patroni sees the
/// hosts: it takes the first in recovery it can reach, and if that one only
/// replays the archive the backup fails after `archive-timeout` waiting for
/// it to reach the backup's start (seen right after a flip).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StandbyPick {
    /// This standby streams: the backup may come from it.
    Streams(String),
    /// No standby runs: pgBackRest takes the master (`prefer`).
    NoStandby,
    /// This one would be taken and does not stream (its Patroni state).
    Behind(String, String),
    /// Patroni does not show this host: whether pgBackRest takes it is unknown.
    Unknown(String),
}

impl StandbyPick {
    /// The backup may copy from where pgBackRest's configuration says.
    pub(crate) fn settled(&self) -> bool {
        matches!(self, StandbyPick::Streams(_) | StandbyPick::NoStandby)
    }

    pub(crate) fn source(&self) -> Source {
        if self.settled() {
            Source::Standby
        } else {
            Source::Master
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            StandbyPick::Streams(h) => format!("files from {h}, a streaming standby"),
            StandbyPick::NoStandby => "files from the master (no standby runs)".into(),
            StandbyPick::Behind(h, state) => {
                format!("files from the master: {h}, the standby pgBackRest would take, does not stream ({state})")
            }
            StandbyPick::Unknown(h) => {
                format!("files from the master: Patroni does not show {h}, which pgBackRest might take")
            }
        }
    }
}

/// Walks `order` as pgBackRest does; `members` holds every member Patroni
/// shows, of every cloud that answered.
pub(crate) fn standby_pick(order: &[&Host], members: &[super::patroni::Member]) -> StandbyPick {
    for h in order {
        let Some(m) = members.iter().find(|m| m.name == h.name) else {
            return StandbyPick::Unknown(h.name.clone());
        };
        if m.is_leader() || matches!(m.state.as_str(), "stopped" | "crashed" | "start failed") {
            continue;
        }
        return if m.state == "streaming" {
            StandbyPick::Streams(h.name.clone())
        } else {
            StandbyPick::Behind(h.name.clone(), m.state.clone())
        };
    }
    StandbyPick::NoStandby
}

/// `pgbackrest info` as JSON, on a repository host.
pub(crate) fn info_script(design: &Design, repo: &Repository) -> String {
    format!("{}\n", on_repository(design, repo, "--output=json info"))
}

/// `pgbackrest check`: the archive works end to end (a WAL switch on the
/// master reaches this repository) and the configuration is right. (It
/// takes no `--repo`: the repository host has its own only.)
/// The master's archiver in one row (read by [`parse_archiver`]):
/// the last archived segment and its age, the failures, and whether the
/// last failure came after the last success (archiving is failing now).
pub(crate) const ARCHIVER_SQL: &str = "SELECT coalesce(last_archived_wal, ''), \
     coalesce(extract(epoch FROM now() - last_archived_time)::bigint, -1), failed_count, coalesce(last_failed_wal, ''), \
     coalesce(last_failed_time > coalesce(last_archived_time, 'epoch'), false) FROM pg_stat_archiver";

/// The master's archiver, as `pgha status` shows it and a no-op deploy reads it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct Archiving {
    pub host: String,
    pub last_archived_wal: Option<String>,
    pub last_archived_age_s: Option<i64>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    /// The last attempt failed: the WAL waits on the master (pgBackRest
    /// drops it past `backup.archive_queue_max`, keeping the master writable).
    pub failing: bool,
}

/// One [`ARCHIVER_SQL`] row as `psql -At` prints it.
pub(crate) fn parse_archiver(host: &str, row: &str) -> Option<Archiving> {
    let f: Vec<&str> = row.trim().split('|').collect();
    let [wal, age, failed, failed_wal, failing] = f.as_slice() else {
        return None;
    };
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Some(Archiving {
        host: host.to_string(),
        last_archived_wal: some(wal),
        last_archived_age_s: age.parse().ok().filter(|a| *a >= 0),
        failed_count: failed.parse().unwrap_or(0),
        last_failed_wal: some(failed_wal),
        failing: *failing == "t",
    })
}

pub(crate) fn check_script(design: &Design) -> String {
    format!("set -e\n{} >&2\n", pgbackrest(design, "check"))
}

/// A recovery target time, checked and written the one way PostgreSQL and
/// pgBackRest both read: `YYYY-MM-DD HH:MM:SS[.ffffff]+HH:MM`. Accepts ISO
/// 8601 (`T` or a space, fractional seconds, `Z` or an offset); refuses a
/// date that does not exist and a time without an offset (which the hosts
/// would read in their own time zone).
pub(crate) fn recovery_time(text: &str) -> Result<String, String> {
    let t = text.trim();
    if !t.is_ascii() {
        return Err("it holds a character that is not ASCII".into());
    }
    let num = |s: &str, what: &str| -> Result<u32, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`{}` is not a {what}", s.escape_debug()));
        }
        s.parse().map_err(|_| format!("`{s}` is not a {what}"))
    };
    let (date, rest) = t
        .split_at_checked(10)
        .ok_or_else(|| "it is too short for a date and a time".to_string())?;
    let mut d = date.split('-');
    let (y, m, day) = match (d.next(), d.next(), d.next(), d.next()) {
        (Some(y), Some(m), Some(day), None) if y.len() == 4 && m.len() == 2 && day.len() == 2 => {
            (num(y, "year")?, num(m, "month")?, num(day, "day")?)
        }
        _ => return Err(format!("`{}` is not a date (YYYY-MM-DD)", date.escape_debug())),
    };
    // pgBackRest picks the backup for a target time only after 1970.
    if y < 1970 {
        return Err(format!("{y} is before 1970"));
    }
    let month = time::Month::try_from(u8::try_from(m).unwrap_or(0)).map_err(|_| format!("there is no month {m}"))?;
    let date = time::Date::from_calendar_date(y as i32, month, day as u8)
        .map_err(|_| format!("{y:04}-{m:02}-{day:02} does not exist"))?;
    let rest = rest
        .strip_prefix(['T', ' '])
        .ok_or_else(|| "the date and the time are separated by `T` or a space".to_string())?;
    let (clock, offset) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => rest.split_at(i),
        None => {
            return Err(
                "it has no offset (`Z`, `+00`, `+05:30`): the hosts would read it in their own time zone".into(),
            )
        }
    };
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, f)) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => (hms, f),
        Some(_) => return Err("fractional seconds are 1 to 9 digits".into()),
        None => (clock, ""),
    };
    let mut c = hms.split(':');
    let (h, mi, sec) = match (c.next(), c.next(), c.next(), c.next()) {
        (Some(h), Some(mi), Some(sec), None) if h.len() == 2 && mi.len() == 2 && sec.len() == 2 => {
            (num(h, "hour")?, num(mi, "minute")?, num(sec, "second")?)
        }
        _ => return Err(format!("`{}` is not a time of day (HH:MM:SS)", hms.escape_debug())),
    };
    time::Time::from_hms(h as u8, mi as u8, sec as u8).map_err(|_| format!("{hms} is not a time of day"))?;
    let (oh, om) = match offset {
        "Z" | "z" => (0, 0),
        o => {
            let digits = &o[1..];
            let (hh, mm) = match digits.len() {
                2 => (digits, "00"),
                4 => digits.split_at(2),
                5 if &digits[2..3] == ":" => (&digits[..2], &digits[3..]),
                _ => {
                    return Err(format!(
                        "`{}` is not an offset (`Z`, `+HH`, `+HH:MM`)",
                        o.escape_debug()
                    ))
                }
            };
            let (hh, mm) = (num(hh, "offset")?, num(mm, "offset")?);
            let sign = if o.starts_with('-') { -1 } else { 1 };
            // The offsets pgBackRest accepts (it refuses the target later,
            // after the cluster was stopped, otherwise): -12:00 to +14:00,
            // in quarter hours.
            let minutes = sign * (hh * 60 + mm) as i32;
            if !(-12 * 60..=14 * 60).contains(&minutes) || mm % 15 != 0 {
                return Err(format!(
                    "`{}` is not an offset pgBackRest takes (-12:00 to +14:00, in quarter hours)",
                    o.escape_debug()
                ));
            }
            ((sign * hh as i32) as i8, (sign * mm as i32) as i8)
        }
    };
    time::UtcOffset::from_hms(oh, om, 0).map_err(|_| format!("`{}` is not an offset", offset.escape_debug()))?;
    // PostgreSQL keeps microseconds.
    let micro = if fraction.is_empty() {
        String::new()
    } else {
        format!(".{}", &fraction[..fraction.len().min(6)])
    };
    let sign = if oh < 0 || om < 0 { '-' } else { '+' };
    Ok(format!(
        "{date} {h:02}:{mi:02}:{sec:02}{micro}{sign}{:02}:{:02}",
        oh.unsigned_abs(),
        om.unsigned_abs()
    ))
}

/// What `pgha restore` recovers to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "value")]
pub(crate) enum Target {
    /// A point in time (`YYYY-MM-DD HH:MM:SS[.ffffff][+TZ]`).
    Time(String),
    /// The end of the archive.
    Latest,
    /// A backup, recovered only to the point it is consistent.
    Backup(String),
}

impl Target {
    /// Checks the shape of what reaches pgBackRest's command line.
    pub(crate) fn checked(self) -> Result<Target, String> {
        match &self {
            Target::Time(t) => match recovery_time(t) {
                Ok(normal) => Ok(Target::Time(normal)),
                Err(why) => Err(format!(
                    "--to `{}` is not a time pgha can recover to: {why}; write a date, a time and an offset, \
                     e.g. `2026-11-29 06:30:00+00` or `2026-11-29T06:30:00.5Z` (ISO 8601, as `date -u -Iseconds` prints)",
                    t.escape_debug()
                )),
            },
            Target::Backup(label) => {
                let ok = (16..=40).contains(&label.len())
                    && label.chars().all(|c| c.is_ascii_digit() || "-_FDI".contains(c));
                if ok {
                    Ok(self)
                } else {
                    Err(format!(
                        "--backup `{label}` is not a backup label: `pgha backup list` shows them (e.g. 20261129-063000F)"
                    ))
                }
            }
            Target::Latest => Ok(self),
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Target::Time(t) => format!("the state at {t}"),
            Target::Latest => "the last archived transaction".into(),
            Target::Backup(l) => format!("backup {l} (to the point it is consistent)"),
        }
    }

    /// pgBackRest's options for this target; the restored server promotes
    /// itself when it gets there.
    fn options(&self) -> String {
        match self {
            Target::Time(t) => format!("--type=time --target={} --target-action=promote", quote(t)),
            Target::Latest => "--type=default".into(),
            Target::Backup(l) => format!("--set={} --type=immediate --target-action=promote", quote(l)),
        }
    }
}

/// Restores the stanza into an empty data directory (created 0700) from
/// `cloud`'s repository. The copy of the standby signal a backup taken from
/// a standby carries is dropped: the restored server recovers to the target
/// and promotes.
pub(crate) fn restore_script(design: &Design, cloud: &str, target: &Target) -> String {
    let data = quote(&design.platform.data_dir);
    // The recovery's restore_command reads this cloud's repository only,
    // as Patroni's does (pgBackRest would write one that asks them all).
    let restore = pgbackrest(
        design,
        &format!(
            "--repo={} {} {} restore",
            repo_index(design, cloud),
            target.options(),
            quote(&format!("--recovery-option=restore_command={}", restore_command()))
        ),
    );
    format!("set -e\ninstall -d -m 0700 -o postgres -g postgres {data}\n{restore}\nrm -f {data}/standby.signal\n")
}

/// `pg_ctl ACTION` on the data directory as `postgres`: `start` (without
/// waiting, logging to [`RESTORE_LOG`]), `status` (exit 0 when running) or
/// `stop` (fast, waiting).
pub(crate) fn pg_ctl_script(design: &Design, action: &str) -> String {
    let pg_ctl = format!("{}/pg_ctl", design.platform.bin_dir);
    let base = format!(
        "runuser -u postgres -- {} -D {}",
        quote(&pg_ctl),
        quote(&design.platform.data_dir)
    );
    match action {
        // `-W` returns before the postmaster writes postmaster.pid: a
        // `status` asked at once said "no server running" of a server
        // that was starting (seen in CI: a restore judged dead, its log
        // still empty). The pid file is the postmaster's first act.
        "start" => format!(
            "{base} -l {RESTORE_LOG} -W start\nfor i in $(seq 100); do [ -f {pid} ] && exit 0; sleep 0.1; done\n\
             echo 'the restored PostgreSQL wrote no postmaster.pid within 10 s' >&2\ntail -n 30 {RESTORE_LOG} >&2\nexit 1",
            pid = quote(&format!("{}/postmaster.pid", design.platform.data_dir))
        ),
        "stop" => format!("{base} -m fast -w -t 300 stop"),
        _ => format!("{base} status >/dev/null"),
    }
}

/// Where the restored server logs while it recovers without Patroni.
pub(crate) const RESTORE_LOG: &str = "/var/log/postgresql/pgha-restore.log";

pub(crate) fn restore_log_script() -> String {
    format!("tail -n 30 {RESTORE_LOG}")
}

/// The recovery settings pgBackRest's restore wrote to postgresql.auto.conf:
/// once promoted the server no longer needs them, and left there they would
/// stop it at the same target when it is a replica one day.
pub(crate) const RESET_RECOVERY_SQL: &str = "ALTER SYSTEM RESET restore_command;
ALTER SYSTEM RESET recovery_target_time;
ALTER SYSTEM RESET recovery_target;
ALTER SYSTEM RESET recovery_target_action;
ALTER SYSTEM RESET recovery_target_timeline;";

/// One backup of `pgbackrest info`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct BackupInfo {
    pub label: String,
    pub kind: String,
    pub start: i64,
    pub stop: i64,
    /// Bytes of the database at backup time, and in the repository.
    pub size: u64,
    pub repo_size: u64,
    pub wal_start: String,
    pub wal_stop: String,
    pub error: bool,
}

/// What a repository holds for the stanza.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct RepoInfo {
    /// `ok`, or pgBackRest's message (no backup yet, missing stanza, ...).
    pub status: String,
    pub backups: Vec<BackupInfo>,
    /// The archive's oldest and newest WAL segment.
    pub wal_min: Option<String>,
    pub wal_max: Option<String>,
}

impl RepoInfo {
    /// The newest backup that completed without error.
    pub(crate) fn last_good(&self) -> Option<&BackupInfo> {
        self.backups.iter().filter(|b| !b.error).max_by_key(|b| b.stop)
    }
}

/// Parses `pgbackrest --output=json info` for `stanza`.
pub(crate) fn parse_info(json: &str, stanza: &str) -> anyhow::Result<RepoInfo> {
    let v: serde_json::Value =
        serde_json::from_str(json.trim()).map_err(|e| anyhow::anyhow!("pgbackrest info is not JSON: {e}"))?;
    let Some(s) = v
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"].as_str() == Some(stanza)))
    else {
        return Ok(RepoInfo {
            status: "no stanza".into(),
            ..RepoInfo::default()
        });
    };
    let status = match s["status"]["code"].as_i64() {
        Some(0) => "ok".to_string(),
        _ => s["status"]["message"].as_str().unwrap_or("unknown").to_string(),
    };
    let backups = s["backup"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| BackupInfo {
                    label: b["label"].as_str().unwrap_or_default().to_string(),
                    kind: b["type"].as_str().unwrap_or_default().to_string(),
                    start: b["timestamp"]["start"].as_i64().unwrap_or(0),
                    stop: b["timestamp"]["stop"].as_i64().unwrap_or(0),
                    size: b["info"]["size"].as_u64().unwrap_or(0),
                    repo_size: b["info"]["repository"]["delta"].as_u64().unwrap_or(0),
                    wal_start: b["archive"]["start"].as_str().unwrap_or_default().to_string(),
                    wal_stop: b["archive"]["stop"].as_str().unwrap_or_default().to_string(),
                    error: b["error"].as_bool().unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default();
    let archives = s["archive"].as_array();
    let wal = |key: &str, pick: fn(Vec<String>) -> Option<String>| {
        archives.and_then(|a| pick(a.iter().filter_map(|x| x[key].as_str().map(str::to_string)).collect()))
    };
    Ok(RepoInfo {
        status,
        backups,
        wal_min: wal("min", |v| v.into_iter().min()),
        wal_max: wal("max", |v| v.into_iter().max()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archiver_row_says_whether_archiving_fails() {
        let a = parse_archiver("a1", "000000010000000000000009|12|3|00000001000000000000000A|t\n").unwrap();
        assert!(a.failing);
        assert_eq!(a.failed_count, 3);
        assert_eq!(a.last_archived_age_s, Some(12));
        let fresh = parse_archiver("a1", "|-1|0||f").unwrap();
        assert_eq!(
            (fresh.last_archived_wal, fresh.last_archived_age_s, fresh.failing),
            (None, None, false)
        );
        assert!(parse_archiver("a1", "garbage").is_none());
    }

    const INFO: &str = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"17-1","max":"000000010000000000000007","min":"000000010000000000000001"}],
      "backup":[{"archive":{"start":"000000010000000000000003","stop":"000000010000000000000003"},
        "error":false,"info":{"delta":31500000,"repository":{"delta":4100000,"size":4100000},"size":31500000},
        "label":"20261129-063000F","timestamp":{"start":1795933800,"stop":1795933806},"type":"full"},
        {"archive":{"start":"000000010000000000000006","stop":"000000010000000000000006"},
        "error":false,"info":{"delta":8192,"repository":{"delta":900,"size":4100900},"size":31500000},
        "label":"20261129-063000F_20261129-064000D","timestamp":{"start":1795934400,"stop":1795934402},"type":"diff"}],
      "name":"pgha-lab","status":{"code":0,"message":"ok"}}]"#;

    /// A restore in CI was judged dead 0.1 s after `pg_ctl -W start`, its
    /// log empty: the start now returns once the postmaster runs.
    #[test]
    fn the_restored_server_is_started_before_anyone_asks_about_it() {
        let d = crate::testkit::example("two-clouds.yaml");
        let start = pg_ctl_script(&d, "start");
        crate::shell::assert_parses_cleanly(&start);
        let pid = format!("[ -f {}/postmaster.pid ] && exit 0", d.platform.data_dir);
        assert!(start.contains(&pid), "{start}");
        assert!(start.ends_with("exit 1"), "{start}");
    }

    #[test]
    fn restore_targets_are_checked_before_any_shell_sees_them() {
        assert!(Target::Time("2026-11-29 06:30:00.123+00".into()).checked().is_ok());
        assert!(Target::Time("now'; rm -rf /".into()).checked().is_err());
        assert!(Target::Backup("20261129-063000F_20261129-064000D".into())
            .checked()
            .is_ok());
        assert!(Target::Backup("../../x".into()).checked().is_err());
    }

    #[test]
    fn recovery_times_are_iso_8601_with_an_offset_and_exist() {
        let ok = [
            ("2026-11-29 06:30:00+00", "2026-11-29 06:30:00+00:00"),
            ("2026-12-02T03:17:46.900192Z", "2026-12-02 03:17:46.900192+00:00"),
            ("2026-12-02T03:17:46+01:00", "2026-12-02 03:17:46+01:00"),
            ("2026-12-02 03:17:46.123456789-0530", "2026-12-02 03:17:46.123456-05:30"),
            ("2024-02-29 00:00:00Z", "2024-02-29 00:00:00+00:00"),
        ];
        for (given, normal) in ok {
            assert_eq!(recovery_time(given).as_deref(), Ok(normal), "{given}");
            assert_eq!(
                Target::Time(given.into()).checked(),
                Ok(Target::Time(normal.into())),
                "{given}"
            );
        }
        for (given, why) in [
            ("2026-02-30 00:00:00+00", "does not exist"),
            ("2026-02-30T00:00:00", "does not exist"),
            ("2026-11-30 12:00:00", "no offset"),
            ("2026-11-30T12:00:00", "no offset"),
            ("2026-13-01 00:00:00Z", "no month 13"),
            ("2026-11-30 24:00:00Z", "not a time of day"),
            ("2026-11-30 12:00:00+25", "not an offset"),
            ("2026-11-30 12:00:00+15:00", "not an offset"),
            ("2026-11-30 12:00:00-12:30", "not an offset"),
            ("2026-11-30 12:00:00+05:20", "not an offset"),
            ("1969-12-31 23:59:59Z", "before 1970"),
            ("2026-11-30 12:00:00+0é00", "not ASCII"),
            ("2026-11-30 12:00Z", "not a time of day"),
            ("2026-11-30_12:00:00Z", "separated by"),
            ("2026-11-30 12:00:00.Z", "fractional"),
            ("2026-11-30 12:00:00+00'; rm -rf /", "not an offset"),
            ("yesterday", "too short"),
        ] {
            let e = recovery_time(given).unwrap_err();
            assert!(e.contains(why), "{given}: {e}");
            assert!(Target::Time(given.into()).checked().is_err());
        }
    }

    #[test]
    fn info_gives_each_backup_and_the_archive_range() {
        let i = parse_info(INFO, "pgha-lab").unwrap();
        assert_eq!(i.status, "ok");
        assert_eq!(i.backups.len(), 2);
        assert_eq!(i.backups[0].kind, "full");
        assert_eq!(i.backups[0].repo_size, 4_100_000);
        assert_eq!(i.last_good().unwrap().label, "20261129-063000F_20261129-064000D");
        assert_eq!(i.wal_min.as_deref(), Some("000000010000000000000001"));
        assert_eq!(i.wal_max.as_deref(), Some("000000010000000000000007"));
    }

    #[test]
    fn a_missing_stanza_or_no_backup_is_said_plainly() {
        assert_eq!(parse_info("[]", "pgha-lab").unwrap().status, "no stanza");
        let none = r#"[{"name":"pgha-lab","status":{"code":2,"message":"no valid backups"},"backup":[],"archive":[]}]"#;
        let i = parse_info(none, "pgha-lab").unwrap();
        assert_eq!(i.status, "no valid backups");
        assert!(i.last_good().is_none());
        assert!(parse_info("not json", "x").is_err());
    }

    fn member(name: &str, role: &str, state: &str) -> crate::components::patroni::Member {
        serde_json::from_value(serde_json::json!({"name": name, "role": role, "state": state})).unwrap()
    }

    #[test]
    fn the_standby_is_the_one_pgbackrest_takes_and_must_stream() {
        let d = crate::testkit::example("three-sites.yaml");
        let dc2 = &d.backup.as_ref().unwrap().repositories[1];
        let order = source_order(&d, dc2);
        let names: Vec<&str> = order.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(&names[..2], ["dc2-pg1", "dc2-pg2"], "{names:?}");
        let everyone = |dc2_pg1: &str, dc2_pg2: &str| {
            let mut m: Vec<_> = d
                .clouds
                .iter()
                .flat_map(|c| &c.hosts)
                .map(|h| member(&h.name, "replica", "streaming"))
                .collect();
            m.retain(|x| !x.name.starts_with("dc2-pg"));
            m.push(member("dc2-pg1", "standby_leader", dc2_pg1));
            m.push(member("dc2-pg2", "replica", dc2_pg2));
            m
        };
        let pick = standby_pick(&order, &everyone("streaming", "streaming"));
        assert_eq!(pick, StandbyPick::Streams("dc2-pg1".into()));
        assert_eq!(pick.source(), Source::Standby);
        // The first one replays the archive: pgBackRest would still take it.
        let pick = standby_pick(&order, &everyone("in archive recovery", "streaming"));
        assert_eq!(
            pick,
            StandbyPick::Behind("dc2-pg1".into(), "in archive recovery".into())
        );
        assert_eq!(pick.source(), Source::Master);
        // A stopped one is skipped, as pgBackRest skips it.
        let pick = standby_pick(&order, &everyone("stopped", "streaming"));
        assert_eq!(pick, StandbyPick::Streams("dc2-pg2".into()));
        // A host Patroni does not show: could not tell, so the master.
        let mut partial = everyone("streaming", "streaming");
        partial.retain(|m| m.name != "dc2-pg1");
        assert_eq!(standby_pick(&order, &partial).source(), Source::Master);
        // Leaders are not standbys; none running means the master (prefer).
        let leaders: Vec<_> = order.iter().map(|h| member(&h.name, "leader", "running")).collect();
        assert_eq!(standby_pick(&order, &leaders), StandbyPick::NoStandby);
        assert_eq!(
            backup_script(&d, dc2, Kind::Full, Source::Master),
            "set -e\nrunuser -u postgres -- pgbackrest --stanza=pgha-demo --repo=2 --backup-standby=n --type=full backup >&2\n"
        );
    }

    #[test]
    fn commands_run_as_postgres_with_the_stanza_quoted() {
        let d = crate::testkit::example("three-sites.yaml");
        let dc2 = &d.backup.as_ref().unwrap().repositories[1];
        assert_eq!(
            backup_script(&d, dc2, Kind::Diff, Source::Standby),
            "set -e\nrunuser -u postgres -- pgbackrest --stanza=pgha-demo --repo=2 --type=diff backup >&2\n"
        );
        assert!(archive_command(&d).ends_with("archive-push %p"));
        assert_eq!(
            replica_command(&d, "dc2"),
            "/usr/bin/pgbackrest --stanza=pgha-demo --repo=2 --delta --type=standby restore"
        );
        let pitr = restore_script(&d, "dc1", &Target::Time("2026-11-29 06:30:00+00".into()));
        assert!(
            pitr.contains(
                "--repo=1 --type=time --target='2026-11-29 06:30:00+00' --target-action=promote \
                 '--recovery-option=restore_command=/usr/local/lib/pgha/restore-wal %f \"%p\"' restore"
            ),
            "{pitr}"
        );
        assert!(restore_script(&d, "dc2", &Target::Backup("20261129-063000F".into()))
            .contains("--repo=2 --set=20261129-063000F --type=immediate --target-action=promote"));
        assert_eq!(
            archive_get(&d, "dc2"),
            "pgbackrest --stanza=pgha-demo --repo=2 archive-get"
        );
    }
}
