//! Backups: the repositories, the schedule and retention.

use super::*;

/// Where a repository lives on its host unless the design says.
pub(super) const DEFAULT_REPOSITORY_PATH: &str = "/var/lib/pgbackrest";

/// Is one of two directories inside the other (or the same)?
pub(super) fn overlaps(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
    a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
}

/// Backups: a repository for every cloud, retention and schedule.
pub(super) fn build_backup(
    cx: &mut Checker,
    root: &Node,
    base: &Path,
    raw: RawBackup,
    ssh: &Ssh,
    clouds: &[Cloud],
    data_dir: Option<&str>,
) -> Option<Backup> {
    if raw.enabled == Some(false) {
        return None;
    }
    let mut repositories = Vec::new();
    let raw_repos = raw.repositories.unwrap_or_default();
    for (i, mut rr) in raw_repos.into_iter().enumerate() {
        let here = format!("backup.repositories[{i}]");
        let cloud = repository_cloud(cx, root, &here, rr.cloud.take(), clouds);
        let path = repository_path(cx, root, &here, rr.path.take(), data_dir);
        let of_cloud = cloud.as_deref().and_then(|c| clouds.iter().find(|x| x.name == c));
        let (host, on_database_host) = repository_host(cx, root, base, &here, rr, ssh, of_cloud);
        if let (Some(cloud), Some(host)) = (cloud, host) {
            if repositories.iter().any(|r: &Repository| r.cloud == cloud) {
                cx.error(
                    root,
                    &format!("{here}.cloud"),
                    format!("cloud `{cloud}` has a repository already"),
                    "one repository per cloud",
                );
            }
            repositories.push(Repository {
                cloud,
                host,
                path,
                on_database_host,
            });
        }
    }
    for c in clouds {
        if !repositories.iter().any(|r| r.cloud == c.name) {
            cx.error(
                root,
                "backup.repositories",
                format!("cloud `{}` has no repository", c.name),
                "every cloud needs its own repository (its replicas are made from it, and it keeps \
                 a copy of the WAL archive if another data center is lost): add one with `cloud`, `name` and `address`, \
                 or with `cloud` and `host` (one of its database hosts), or `enabled: false`",
            );
        }
    }
    // The design's cloud order: repository N is pgBackRest's repoN everywhere.
    repositories.sort_by_key(|r| clouds.iter().position(|c| c.name == r.cloud));
    let schedule = raw.schedule.unwrap_or_default();
    let mut calendar = |field: &str, value: Option<String>, default: Option<&str>| -> Option<String> {
        match value.as_deref() {
            None => default.map(str::to_string),
            Some("off") => None,
            Some(v) if shape::calendar(v) => Some(v.to_string()),
            Some(v) => {
                cx.error(
                    root,
                    field,
                    format!("`{}` is not a calendar expression pgha accepts", v.escape_debug()),
                    "a systemd OnCalendar= expression such as `Sun *-*-* 01:00:00` or `daily` \
                     (letters, digits, space and * . , : / ~ -), or `off`",
                );
                None
            }
        }
    };
    let backup = Backup {
        repositories,
        retention_full: raw.retention_full.unwrap_or(2),
        retention_diff: raw.retention_diff.unwrap_or(6),
        schedule_full: calendar("backup.schedule.full", schedule.full, Some("Sun *-*-* 01:00:00")),
        schedule_diff: calendar("backup.schedule.diff", schedule.diff, Some("Mon..Sat *-*-* 01:00:00")),
        schedule_incr: calendar("backup.schedule.incr", schedule.incr, None),
        archive_queue_max: raw.archive_queue_max.unwrap_or(4 << 30),
        io_timeout: raw.io_timeout.unwrap_or(15),
        port: raw.port.unwrap_or(8432),
    };
    check_settings(cx, root, &backup);
    Some(backup)
}

/// The cloud a repository serves: one of the design's.
fn repository_cloud(
    cx: &mut Checker,
    root: &Node,
    here: &str,
    raw: Option<String>,
    clouds: &[Cloud],
) -> Option<String> {
    match raw {
        Some(c) if clouds.iter().any(|x| x.name == c) => Some(c),
        Some(c) => {
            let names: Vec<&str> = clouds.iter().map(|c| c.name.as_str()).collect();
            cx.error(
                root,
                &format!("{here}.cloud"),
                format!("no cloud named `{c}`"),
                format!("name one of the design's clouds: {}", names.join(", ")),
            );
            None
        }
        None => {
            cx.error(root, here, "this repository names no cloud", "add `cloud: dc1`");
            None
        }
    }
}

/// Where the repository lives: on one of its cloud's database hosts
/// (`host`), or on a host of its own (`name`, `address`, `ssh`). The
/// second of the pair: on a database host.
fn repository_host(
    cx: &mut Checker,
    root: &Node,
    base: &Path,
    here: &str,
    rr: RawRepository,
    ssh: &Ssh,
    of_cloud: Option<&Cloud>,
) -> (Option<Host>, bool) {
    match rr.host {
        // On one of the cloud's database hosts: nothing else to describe.
        Some(name) => {
            if rr.name.is_some() || rr.address.is_some() || rr.ssh.is_some() {
                cx.error(
                    root,
                    &format!("{here}.host"),
                    "this repository is both on a database host (`host`) and on a host of its own (`name`, `address`)",
                    "keep `host` for a repository on a database host (small setups), or `name` and `address` \
                     for a repository host",
                );
            }
            match of_cloud.map(|c| (c, c.hosts.iter().find(|h| h.name == name))) {
                Some((_, Some(h))) => (Some(h.clone()), true),
                Some((c, None)) => {
                    let names: Vec<&str> = c.hosts.iter().map(|h| h.name.as_str()).collect();
                    cx.error(
                        root,
                        &format!("{here}.host"),
                        format!("`{}` is not a database host of cloud `{}`", name.escape_debug(), c.name),
                        format!("name one of its hosts: {}", names.join(", ")),
                    );
                    (None, true)
                }
                None => (None, true),
            }
        }
        None => {
            let before = cx.problems.len();
            let raw_host = RawHost {
                name: rr.name,
                address: rr.address,
                ssh: rr.ssh,
            };
            let mut hosts = build_hosts(cx, root, base, vec![raw_host], ssh, "backup.repositories");
            // One host per entry: its fields are `backup.repositories[i].*`.
            for p in &mut cx.problems[before..] {
                if let Some(rest) = p.field.strip_prefix("backup.repositories[0]") {
                    p.field = format!("{here}{rest}");
                }
            }
            (hosts.pop(), false)
        }
    }
}

/// The repository's directory: plain, absolute, outside the data directory.
fn repository_path(cx: &mut Checker, root: &Node, here: &str, raw: Option<String>, data_dir: Option<&str>) -> String {
    let path = raw.unwrap_or_else(|| DEFAULT_REPOSITORY_PATH.to_string());
    if !shape::abs_path(&path) || path == "/" {
        cx.error(
            root,
            &format!("{here}.path"),
            format!("`{}` is not a plain absolute path", path.escape_debug()),
            "the repository's directory, e.g. /var/lib/pgbackrest (letters, digits and / . _ -)",
        );
    } else if let Some(data_dir) = data_dir.filter(|d| overlaps(&path, d)) {
        cx.error(
            root,
            &format!("{here}.path"),
            format!("`{path}` overlaps the data directory {data_dir}"),
            "a restore moves the data directory aside: keep the repository out of it, e.g. /var/lib/pgbackrest",
        );
    }
    path
}

/// The numbers' ranges: pgBackRest's timeout, the retention, the queue.
fn check_settings(cx: &mut Checker, root: &Node, backup: &Backup) {
    if !(3..=600).contains(&backup.io_timeout) {
        cx.error(
            root,
            "backup.io_timeout",
            format!("{} s is out of range (3 to 600)", backup.io_timeout),
            "seconds without progress before a pgBackRest call to an unreachable repository or host fails \
             (default 15): short, so a lost data center is reported, never waited on",
        );
    }
    for (field, value) in [
        ("backup.retention_full", backup.retention_full),
        ("backup.retention_diff", backup.retention_diff),
    ] {
        if !(1..=999).contains(&value) {
            cx.error(
                root,
                field,
                format!("{value} is out of range (1 to 999)"),
                "how many backups of this type to keep: older ones expire, with the WAL only they needed",
            );
        }
    }
    if backup.archive_queue_max < 64 << 20 {
        cx.error(
            root,
            "backup.archive_queue_max",
            format!("{} bytes is less than 64 MiB", backup.archive_queue_max),
            "the WAL (in bytes) that may wait for an unreachable repository before pgBackRest drops it \
             to keep the master writable (default 4 GiB)",
        );
    }
}
