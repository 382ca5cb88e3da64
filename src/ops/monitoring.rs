//! `pgha monitoring`: what a Prometheus needs to watch the cluster without
//! pgha running. Scrape configuration with file-based targets (every
//! database host, every component, labelled by cluster, cloud, host and
//! role), alert rules with the design's bounds, and the metrics CA's client
//! certificate, in one directory to copy to the Prometheus host.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::design::shape::url_host;
use crate::design::Design;

/// Seconds between scrapes, and between rule evaluations.
const SCRAPE_INTERVAL: u32 = 15;

/// One scrape job: a component on every host that runs it.
#[derive(Debug, Serialize)]
struct Job {
    name: &'static str,
    path: &'static str,
    what: &'static str,
}

/// A file `pgha monitoring` writes, relative to its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Generated {
    pub(crate) path: PathBuf,
    pub content: String,
    /// 0600 for the client key, 0644 for the rest.
    pub mode: u32,
}

/// The metrics CA's client certificate and key, and the cluster's trust
/// bundle (what the targets' certificates are checked against).
pub(crate) struct ClientTls {
    pub trust: String,
    pub cert: String,
    pub key: String,
}

const POSTGRES: Job = Job {
    name: "pgha-postgres",
    path: "/metrics",
    what: "PostgreSQL (prometheus-postgres-exporter), every database host",
};
const ETCD: Job = Job {
    name: "pgha-etcd",
    path: "/etcd/metrics",
    what: "each cloud's etcd member, through HAProxy's metrics gateway",
};
const SITE_ETCD: Job = Job {
    name: "pgha-site-etcd",
    path: "/site-etcd/metrics",
    what: "the site members of the clouds (the lease's etcd), through HAProxy's metrics gateway",
};
const SITE: Job = Job {
    name: "pgha-site",
    path: "/site/metrics",
    what: "the site lease on every database host (its site gate), through HAProxy's metrics gateway",
};
const NODE: Job = Job {
    name: "pgha-node",
    path: "/node/metrics",
    what: "the database hosts' filesystems, memory and load, and pgha's certificates (the node exporter), through HAProxy's metrics gateway",
};
const PATRONI: Job = Job {
    name: "pgha-patroni",
    path: "/patroni/metrics",
    what: "Patroni, through HAProxy's metrics gateway",
};
const HAPROXY: Job = Job {
    name: "pgha-haproxy",
    path: "/haproxy/metrics",
    what: "the database hosts' HAProxy",
};

/// Every file for `design`, or why there is nothing to watch.
pub(crate) fn files(design: &Design, tls: &ClientTls) -> anyhow::Result<Vec<Generated>> {
    let Some(exporter) = &design.exporter else {
        return Err(crate::error::Usage(
            "metrics are off (components.exporter.enabled: false): no host serves any; turn them on and deploy first"
                .to_string(),
        )
        .into());
    };
    let mut jobs = vec![POSTGRES, ETCD, PATRONI, HAPROXY, NODE];
    if design.site.is_some() {
        jobs.insert(2, SITE_ETCD);
        jobs.insert(3, SITE);
    }
    let cluster = &design.platform.name;
    let config = minijinja::Environment::new().render_str(
        include_str!("../../templates/prometheus.yml.j2"),
        minijinja::context! { cluster, jobs, scrape_interval => SCRAPE_INTERVAL },
    )?;
    let mut out = vec![
        generated("prometheus.yml", config + "\n", 0o644),
        generated("rules/pgha.rules.yml", rules(design), 0o644),
        generated("dashboards/pgha.json", super::dashboard::dashboard(design), 0o644),
        generated("tls/trust.crt", tls.trust.clone(), 0o644),
        generated("tls/prometheus.crt", tls.cert.clone(), 0o644),
        generated("tls/prometheus.key", tls.key.clone(), 0o600),
    ];
    for job in &jobs {
        let port = if job.name == POSTGRES.name {
            exporter.port
        } else {
            exporter.gateway_port
        };
        let groups: Vec<serde_json::Value> = design
            .clouds
            .iter()
            .flat_map(|c| c.hosts.iter().map(move |h| (c, h)))
            .filter(|(_, h)| job.name != SITE_ETCD.name || design.is_site_member(&h.name))
            .map(|(c, h)| {
                serde_json::json!({
                    "targets": [format!("{}:{port}", url_host(&h.address))],
                    "labels": {"cluster": cluster, "cloud": c.name, "host": h.name, "role": "database"},
                })
            })
            .collect();
        out.push(generated(
            &format!("targets/{}.json", job.name),
            serde_json::to_string_pretty(&groups)? + "\n",
            0o644,
        ));
    }
    Ok(out)
}

fn generated(path: &str, content: String, mode: u32) -> Generated {
    Generated {
        path: PathBuf::from(path),
        content,
        mode,
    }
}

/// One alerting rule.
struct Rule {
    alert: &'static str,
    expr: String,
    for_: &'static str,
    severity: &'static str,
    summary: &'static str,
    description: String,
}

/// The alert rules for `design`, each expression limited to its cluster.
pub(crate) fn rules(design: &Design) -> String {
    let c = format!("cluster={}", json(&design.platform.name));
    let in_cloud = design.haproxy.replica_max_lag;
    let between = design.site.as_ref().map_or(in_cloud, |s| s.maximum_lag);
    let mut rules = vec![
        Rule {
            alert: "PghaTwoWritableHosts",
            expr: format!(
                "count by (cluster) (patroni_primary{{{c}}} == 1 and on (cluster, host) patroni_postgres_running{{{c}}} == 1) > 1"
            ),
            // Each host's sample is up to a scrape old: a switchover's old
            // master may still read primary while the new one already does.
            for_: "45s",
            severity: "critical",
            summary: "{{ $value }} hosts of cluster {{ $labels.cluster }} take writes",
            description: "More than one PostgreSQL runs as a primary: writes may diverge. Run `pgha status` \
                          (exit 4 names the hosts); the site fence should stop all but the lease holder's within its bound."
                .to_string(),
        },
        Rule {
            alert: "PghaCloudWithoutLeader",
            // Every member says whether its cloud's leader key is held, so a
            // leader that cannot be scraped does not look like none.
            expr: format!("max by (cluster, cloud) (patroni_cluster_unlocked{{{c}}}) == 1"),
            for_: "1m",
            severity: "critical",
            summary: "cloud {{ $labels.cloud }} of {{ $labels.cluster }} has no leader",
            description: "No member of the cloud is its master or standby leader: in the primary cloud writes stop, \
                          in a secondary one nothing replicates. `pgha status`, then `pgha recover-node` or `pgha failover`."
                .to_string(),
        },
        Rule {
            alert: "PghaReplicaLagging",
            // A running replica against its own cloud's leader: the master's
            // position, or in a standby cloud what its leader replayed, a
            // scrape earlier (targets are scraped at different moments: the
            // leader's newer sample would count the WAL written between).
            expr: format!(
                "max by (cluster, cloud) (patroni_xlog_location{{{c}}} offset {SCRAPE_INTERVAL}s * patroni_primary{{{c}}} offset {SCRAPE_INTERVAL}s \
                 + patroni_xlog_replayed_location{{{c}}} offset {SCRAPE_INTERVAL}s * patroni_standby_leader{{{c}}} offset {SCRAPE_INTERVAL}s) \
                 - on (cluster, cloud) group_right () (patroni_xlog_replayed_location{{{c}}} and on (cluster, host) patroni_replica{{{c}}} == 1 \
                 and on (cluster, host) patroni_postgres_running{{{c}}} == 1) > {in_cloud}"
            ),
            for_: "2m",
            severity: "warning",
            summary: "{{ $labels.host }} is {{ $value | humanize1024 }}B behind its cloud's leader",
            description: format!(
                "A replica lags its cloud's leader by more than {in_cloud} bytes (components.haproxy.replica_max_lag): \
                 HAProxy leaves it out of the read-only pool."
            ),
        },
        Rule {
            alert: "PghaStandbyCloudLagging",
            expr: format!(
                "max by (cluster) (patroni_xlog_location{{{c}}} offset {SCRAPE_INTERVAL}s * patroni_primary{{{c}}} offset {SCRAPE_INTERVAL}s) \
                 - on (cluster) group_right () (patroni_xlog_replayed_location{{{c}}} and on (cluster, host) patroni_standby_leader{{{c}}} == 1) \
                 > {between}"
            ),
            for_: "2m",
            severity: "warning",
            summary: "cloud {{ $labels.cloud }} is {{ $value | humanize1024 }}B behind the master",
            description: format!(
                "A secondary cloud's standby leader lags the master by more than {between} bytes{}: a failover to that \
                 cloud would lose those writes, and it may not take the lease by itself.",
                if design.site.is_some() { " (site.maximum_lag)" } else { "" }
            ),
        },
        Rule {
            alert: "PghaPostgresDown",
            expr: format!("patroni_postgres_running{{{c}}} == 0"),
            for_: "1m",
            severity: "warning",
            summary: "PostgreSQL is not running on {{ $labels.host }}",
            description: "Patroni runs but its PostgreSQL does not (stopped, crashed, or fenced). `pgha status`; \
                          `pgha recover-node` brings a failed node back."
                .to_string(),
        },
        Rule {
            alert: "PghaEtcdWithoutLeader",
            expr: format!("etcd_server_has_leader{{{c}}} == 0"),
            for_: "30s",
            severity: "critical",
            summary: "etcd on {{ $labels.host }} ({{ $labels.job }}) sees no leader",
            description: "This etcd member has no leader: its cluster lost quorum or the member is cut off. \
                          Patroni's failsafe keeps a master that reaches every member; the lease is not renewed without quorum."
                .to_string(),
        },
        Rule {
            alert: "PghaNoWriteRoute",
            expr: format!("haproxy_backend_active_servers{{{c}, proxy={}}} == 0", json(&format!("{}-primary", design.platform.name))),
            for_: "1m",
            severity: "critical",
            summary: "HAProxy on {{ $labels.host }} has no master to send writes to",
            description: "No server of the read-write listen passes its checks (Patroni's /primary and, with the \
                          site lease, the site gate): clients of this host's port get no master."
                .to_string(),
        },
        Rule {
            alert: "PghaFilesystemFilling",
            // Not /boot, nor files a container's runtime binds in (its host's disk).
            expr: format!(
                "node_filesystem_avail_bytes{{{c}, {FS}}} / node_filesystem_size_bytes{{{c}, {FS}}} < 0.10 \
                 and on (cluster, host, mountpoint) node_filesystem_readonly{{{c}}} == 0"
            ),
            for_: "5m",
            severity: "critical",
            summary: "{{ $labels.mountpoint }} on {{ $labels.host }} has {{ $value | humanizePercentage }} left",
            description: "A filesystem of a database host (the data directory's, pg_wal's or another) is over 90% full: \
                          PostgreSQL stops when pg_wal cannot grow. Archiving failing keeps WAL there; a lagging \
                          replica or an old replication slot too."
                .to_string(),
        },
        Rule {
            alert: "PghaFilesystemFullIn4h",
            // Not a mostly empty one a base backup or a WAL burst fills fast.
            expr: format!(
                "predict_linear(node_filesystem_avail_bytes{{{c}, {FS}}}[1h], 4 * 3600) < 0 \
                 and on (cluster, host, mountpoint) node_filesystem_avail_bytes{{{c}, {FS}}} \
                 / node_filesystem_size_bytes{{{c}, {FS}}} < 0.4 \
                 and on (cluster, host, mountpoint) node_filesystem_readonly{{{c}}} == 0"
            ),
            for_: "15m",
            severity: "warning",
            summary: "{{ $labels.mountpoint }} on {{ $labels.host }} fills up within 4 hours at the last hour's rate",
            description: "At the last hour's rate this filesystem of a database host is full within 4 hours.".to_string(),
        },
        Rule {
            alert: "PghaCertificateExpiring",
            expr: format!("pgha_certificate_expiry_timestamp_seconds{{{c}}} - time() < 30 * 86400"),
            for_: "0s",
            severity: "warning",
            summary: "{{ $labels.certificate }} certificate on {{ $labels.host }} \
                      {{ if lt $value -1e9 }}could not be read{{ else }}expires in {{ $value | humanizeDuration }}{{ end }}",
            description: "A certificate pgha installed expires within 30 days (read from the file each minute; 0: the file \
                          could not be read): `pgha deploy` renews a host's certificate then; a CA near its end needs \
                          `pgha certs rotate`. Expired, TLS between the components fails."
                .to_string(),
        },
        Rule {
            alert: "PghaCertMetricsStale",
            expr: format!(
                "time() - pgha_cert_metrics_timestamp_seconds{{{c}}} > {CERT_STALE} \
                 or (up{{{c}, job=\"{node}\"}} == 1 unless on (cluster, host) pgha_cert_metrics_timestamp_seconds{{{c}}})",
                node = NODE.name
            ),
            for_: "5m",
            severity: "warning",
            summary: "the certificate metrics on {{ $labels.host }} are stale or missing",
            description: "pgha-cert-metrics.timer reads the certificates' expiry every minute: it is stopped, its runs \
                          fail, or the textfile cannot be written, so PghaCertificateExpiring cannot see this host. \
                          `systemctl status pgha-cert-metrics.timer pgha-cert-metrics.service` on the host."
                .to_string(),
        },
        Rule {
            alert: "PghaTargetDown",
            expr: format!("up{{{c}}} == 0"),
            for_: "1m",
            severity: "warning",
            summary: "{{ $labels.job }} on {{ $labels.host }} does not answer",
            description: "Prometheus cannot scrape this target: the host, the exporter or HAProxy's metrics gateway \
                          is down, or the metrics CA's certificate is refused."
                .to_string(),
        },
    ];
    if let Some(site) = &design.site {
        rules.extend(site_rules(&c, site.ttl));
        if site.synchronous {
            rules.push(Rule {
                alert: "PghaSiteAsynchronous",
                expr: format!("max by (cluster, cloud) (pgha_site_synchronous{{{c}}}) == 0"),
                for_: "2m",
                severity: "warning",
                summary: "cloud {{ $labels.cloud }} commits without waiting for another cloud",
                description: format!(
                    "site.synchronous is on, and the site records that the primary cloud's master went on \
                     without another cloud's confirmation (a commit waited {} s, or no member of the partner \
                     streamed that long): a failover between clouds may now lose what it acknowledged since. \
                     `pgha status` says since when and why; it is synchronous again once a cloud has caught up.",
                    site.synchronous_timeout
                ),
            });
        }
    }
    if design.backup.is_some() {
        rules.push(Rule {
            alert: "PghaArchiveFailing",
            // Failing now: a failure in the last 2 minutes (the archiver
            // retries at least each minute) and no segment archived in the
            // last minute. Unless, not and: a host that never archived has
            // no age (NaN), and it fails too. It resolves at the first
            // segment archived after the repair, not 5 minutes later.
            expr: format!(
                "increase(pg_stat_archiver_failed_count{{{c}}}[2m]) > 0 \
                 unless pg_stat_archiver_last_archive_age{{{c}}} <= 60"
            ),
            for_: "1m",
            severity: "critical",
            summary: "WAL archiving fails on {{ $labels.host }}",
            description: "archive_command fails and no segment was archived in the last minute: WAL piles up under \
                          pg_wal and point-in-time recovery stops at the last archived segment. `pgha backup check`."
                .to_string(),
        });
        rules.extend(backup_rules(&c));
    }
    let mut out = format!(
        "# Written by `pgha monitoring` for cluster {}: what endangers it, with\n\
         # the design's bounds. Labels: cluster, cloud, host, role (from the targets).\n\
         groups:\n  - name: {}\n    rules:\n",
        design.platform.name,
        json(&design.platform.name)
    );
    for r in rules {
        out.push_str(&format!(
            "      - alert: {}\n        expr: {}\n        for: {}\n        labels:\n          severity: {}\n        \
             annotations:\n          summary: {}\n          description: {}\n",
            r.alert,
            json(&r.expr),
            r.for_,
            r.severity,
            json(r.summary),
            json(&r.description)
        ));
    }
    out
}

/// The filesystems the disk alerts watch.
pub(crate) const FS: &str = "mountpoint!~\"/boot.*|/etc/.+\"";

/// The site lease's rules: each host's gate reports what its agent saw.
fn site_rules(c: &str, ttl: u32) -> Vec<Rule> {
    let bound = crate::components::site::gate_bound(ttl);
    let late = crate::components::site::late_bound(ttl);
    vec![
        Rule {
            alert: "PghaWritableOutsideLeaseCloud",
            // The holder as any host's running agent last read it (a stuck
            // agent's gate says none): during a flip both clouds count, and
            // with no holder known every master is outside; not when no
            // gate answers (PghaTargetDown says that).
            expr: format!(
                "patroni_primary{{{c}}} == 1 and on (cluster, host) patroni_postgres_running{{{c}}} == 1 \
                 unless on (cluster, cloud) label_replace(max by (cluster, holder) (pgha_site_lease_holder{{{c}}}), \
                 \"cloud\", \"$1\", \"holder\", \"(.+)\") \
                 and on (cluster) count by (cluster) (pgha_site_gate_bound_seconds{{{c}}}) > 0"
            ),
            for_: "45s",
            severity: "critical",
            summary: "{{ $labels.host }} takes writes but cloud {{ $labels.cloud }} does not hold the site lease",
            description: format!(
                "A master runs in a cloud that does not hold the site lease (or no agent can read who does): its site \
                 gate closes within {bound:.0} s of its last renewal and its agent fences it. If it stays, `pgha status` \
                 and the host's `journalctl -u pgha-site-agent`."
            ),
        },
        Rule {
            alert: "PghaSiteLeaseLate",
            // The agent's record catches what lasts between two scrapes (a
            // late renewal lasts at most bound - late seconds before the
            // fence) and what Prometheus could not scrape (a partition, of
            // any length); the age now, a master whose agent records nothing.
            expr: format!(
                "pgha_site_last_late_renewal_age_seconds{{{c}}} < 600 or pgha_site_renewal_age_seconds{{{c}}} > {late} \
                 and on (cluster, host) patroni_primary{{{c}}} == 1"
            ),
            for_: "0s",
            severity: "warning",
            summary: "the master {{ $labels.host }} renewed the site lease late, or not at all",
            description: format!(
                "In the last 10 minutes the master's site agent found its last renewal of the site lease over {late} s \
                 old (it renews every tenth of site.ttl), or it is that old now: at {bound:.1} s its gate closes and it \
                 is fenced. The site members or the links to them are failing or slow."
            ),
        },
        Rule {
            alert: "PghaSiteLeaseNotHeld",
            expr: format!(
                "count by (cluster) (pgha_site_reachable{{{c}}} == 1) unless on (cluster) count by (cluster) \
                 (pgha_site_lease_holder{{{c}}})"
            ),
            for_: "1m",
            severity: "critical",
            summary: "no cloud of {{ $labels.cluster }} holds the site lease",
            description: "Site agents reach the site and read no lease holder: no master may take writes. The primary \
                          cloud's master is down or fenced; with site.auto_failover another cloud claims the lease once it \
                          is close enough, else `pgha cloud make-primary CLOUD`."
                .to_string(),
        },
        Rule {
            alert: "PghaSiteFenced",
            expr: format!("increase(pgha_site_fences_total{{{c}}}[10m]) > 0"),
            for_: "0s",
            severity: "critical",
            summary: "the master on {{ $labels.host }} was fenced",
            description: "The host's master was stopped, by its site agent or by pgha-site-fence (the agent stopped, \
                          frozen or crashing), because it could not renew the site lease or another cloud holds it: \
                          writes move to the lease holder's cloud. `pgha status`; /var/lib/pgha/site-fenced.json \
                          says why, and where the agent fenced, where it kept the WAL past the other clouds."
                .to_string(),
        },
        Rule {
            alert: "PghaSiteUnreachable",
            expr: format!("pgha_site_reachable{{{c}}} == 0"),
            for_: "1m",
            severity: "warning",
            summary: "the site agent on {{ $labels.host }} reaches no site member",
            description: "No member of the site etcd answers this host: its cloud cannot keep or take the lease, and a \
                          master there is fenced."
                .to_string(),
        },
        Rule {
            alert: "PghaSiteAgentStuck",
            expr: format!("pgha_site_agent_loop_age_seconds{{{c}}} > {bound}"),
            for_: "30s",
            severity: "warning",
            summary: "the site agent on {{ $labels.host }} has not looped for {{ $value | humanizeDuration }}",
            description: "The site agent is stopped, frozen or crash-looping (or fencing: keeping the WAL past the \
                          fork can take a minute): on the master, pgha-site-fence stops PostgreSQL once the renewal \
                          is as old as its bound."
                .to_string(),
        },
    ]
}

/// The repositories' rules, from what every database host's backup metrics
/// read (the newest of them counts: a host cut off from one repository
/// does not make its backups old; a host whose metrics went stale counts
/// for nothing).
fn backup_rules(c: &str) -> Vec<Rule> {
    let fresh = format!("and on (cluster, host) (time() - pgha_backup_info_timestamp_seconds{{{c}}} < {BACKUP_STALE})");
    vec![
        Rule {
            alert: "PghaBackupTooOld",
            expr: format!(
                "time() - max by (cluster, repository) (pgha_backup_last_completion_timestamp_seconds{{{c}}} {fresh}) \
                 > on (cluster) group_left () max by (cluster) (pgha_backup_allowed_age_seconds{{{c}}})"
            ),
            for_: "10m",
            severity: "warning",
            summary: "the newest backup in repository {{ $labels.repository }} is {{ $value | humanizeDuration }} old",
            description: "No backup completed in this repository for longer than backup.schedule allows (twice the \
                          longest interval between two scheduled backups): the scheduled ones fail or do not run. \
                          On its host, `systemctl list-timers 'pgha-backup-*'` and `journalctl -u 'pgha-backup@*'`; \
                          `pgha backup list`."
                .to_string(),
        },
        Rule {
            alert: "PghaBackupMissing",
            expr: format!("max by (cluster, repository) (pgha_backup_count{{{c}}} {fresh}) == 0"),
            for_: "15m",
            severity: "critical",
            summary: "repository {{ $labels.repository }} holds no backup",
            description: "pgBackRest reads the repository and finds no completed backup: nothing can be restored \
                          from it, nor a replica made from it. `pgha backup --cloud CLOUD` takes one."
                .to_string(),
        },
        Rule {
            alert: "PghaBackupRepositoryUnreadable",
            expr: format!("max by (cluster, repository) (pgha_backup_repository_ok{{{c}}} {fresh}) == 0"),
            for_: "15m",
            severity: "warning",
            summary: "no database host reads repository {{ $labels.repository }}",
            description: "pgBackRest's info fails for this repository on every database host whose metrics are \
                          fresh (pgha_backup_repository_status: 1 no stanza, 99 other, -1 no answer in time): its host \
                          or pgBackRest's server there is down, or the link to it. The WAL archive's copy there stops \
                          growing; `pgha backup check`."
                .to_string(),
        },
        Rule {
            alert: "PghaBackupInfoFailing",
            expr: format!("pgha_backup_info_ok{{{c}}} == 0 or pgha_backup_schedule_ok{{{c}}} == 0"),
            for_: "15m",
            severity: "warning",
            summary: "the backup metrics on {{ $labels.host }} read no repository, or not the schedule",
            description: "pgBackRest's info answers for no repository on this host, or systemd could not read a \
                          backup.schedule expression (then no backup counts as too old): the backup alerts know \
                          nothing from it. `journalctl -u pgha-backup-metrics` on it says why."
                .to_string(),
        },
        Rule {
            alert: "PghaBackupMetricsStale",
            expr: format!("time() - pgha_backup_info_timestamp_seconds{{{c}}} > {BACKUP_STALE}"),
            for_: "0s",
            severity: "warning",
            summary: "the backup metrics on {{ $labels.host }} are {{ $value | humanizeDuration }} old",
            description: "pgha-backup-metrics.timer writes them every 5 minutes: it is stopped, or each run hangs \
                          (deploy waits for each host's first). `systemctl status pgha-backup-metrics.timer` on the host."
                .to_string(),
        },
    ]
}

/// Seconds after which a host's backup metrics are stale: four runs missed.
const BACKUP_STALE: u32 = 1200;
/// The certificate metrics are read every minute: five missed runs.
const CERT_STALE: u32 = 300;

/// A string as a YAML double-quoted scalar (JSON's quoting is YAML's).
pub(crate) fn json(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// Writes `files` under `dir` (made if missing), each atomically; the key
/// is 0600 whatever an older copy's mode was.
pub(crate) fn write(dir: &Path, files: &[Generated]) -> anyhow::Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let mut written = Vec::new();
    for f in files {
        let path = dir.join(&f.path);
        let parent = path.parent().expect("a file under the directory");
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        // write_atomic keeps an older copy's mode: a private file's is
        // narrowed first, so the new content is never readable by others.
        if f.mode == 0o600 && path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot make {} private", path.display()))?;
        }
        crate::fsutil::write_atomic(&path, f.content.as_bytes(), f.mode)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls() -> ClientTls {
        ClientTls {
            trust: "T".into(),
            cert: "C".into(),
            key: "K".into(),
        }
    }

    fn targets(files: &[Generated], job: &str) -> Vec<(String, String)> {
        let f = files
            .iter()
            .find(|f| f.path == Path::new(&format!("targets/{job}.json")))
            .unwrap_or_else(|| panic!("no {job} targets"));
        let v: serde_json::Value = serde_json::from_str(&f.content).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|g| {
                assert_eq!(g["labels"]["cluster"], "pgha-demo");
                assert_eq!(g["labels"]["role"], "database");
                (
                    g["labels"]["host"].as_str().unwrap().to_string(),
                    g["targets"][0].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn every_component_of_every_host_is_a_target_the_site_members_only_theirs() {
        let d = crate::testkit::example("three-sites.yaml");
        let files = files(&d, &tls()).unwrap();
        let postgres = targets(&files, "pgha-postgres");
        assert_eq!(postgres.len(), 6);
        assert_eq!(postgres[0], ("dc1-pg1".to_string(), "10.77.0.11:9187".to_string()));
        for job in ["pgha-etcd", "pgha-site", "pgha-patroni", "pgha-haproxy", "pgha-node"] {
            let t = targets(&files, job);
            assert_eq!(t.len(), 6, "{job}");
            assert!(t.iter().all(|(_, a)| a.ends_with(":9188")), "{job}: {t:?}");
        }
        let site: Vec<String> = targets(&files, "pgha-site-etcd").into_iter().map(|(h, _)| h).collect();
        assert_eq!(site, ["dc1-pg1", "dc2-pg1"]);
        let key = files
            .iter()
            .find(|f| f.path == Path::new("tls/prometheus.key"))
            .unwrap();
        assert_eq!((key.content.as_str(), key.mode), ("K", 0o600));
        let config = &files
            .iter()
            .find(|f| f.path == Path::new("prometheus.yml"))
            .unwrap()
            .content;
        assert!(config.contains("    metrics_path: /site-etcd/metrics\n"), "{config}");
        assert!(
            config.contains("      - files: [targets/pgha-patroni.json]\n"),
            "{config}"
        );
    }

    #[test]
    fn without_a_site_lease_or_backups_their_job_and_alert_are_left_out() {
        let mut d = crate::testkit::example("three-sites.yaml");
        d.site = None;
        d.backup = None;
        let files = files(&d, &tls()).unwrap();
        assert!(!files.iter().any(|f| f.path == Path::new("targets/pgha-site-etcd.json")));
        assert!(!files.iter().any(|f| f.path == Path::new("targets/pgha-site.json")));
        let rules = rules(&d);
        assert!(
            !rules.contains("PghaArchiveFailing") && !rules.contains("PghaBackup"),
            "{rules}"
        );
        assert!(!rules.contains("pgha_site_"), "{rules}");
        // The cloud-to-cloud bound is then the replicas' own.
        assert!(rules.contains(&format!("> {}", d.haproxy.replica_max_lag)), "{rules}");
    }

    #[test]
    fn rules_carry_the_design_bounds_and_only_the_cluster_s_series() {
        let mut d = crate::testkit::example("three-sites.yaml");
        d.haproxy.replica_max_lag = 1234;
        d.site.as_mut().unwrap().maximum_lag = 5678;
        let rules = rules(&d);
        assert!(rules.contains("> 1234\""), "{rules}");
        assert!(rules.contains("> 5678\""), "{rules}");
        // The site's from its ttl (30 s): the gate's bound a third, late at 70% of it.
        assert!(
            rules.contains("pgha_site_renewal_age_seconds{cluster=\\\"pgha-demo\\\"} > 7 and"),
            "{rules}"
        );
        assert!(
            rules.contains("pgha_site_agent_loop_age_seconds{cluster=\\\"pgha-demo\\\"} > 10\""),
            "{rules}"
        );
        // Every selector names the cluster.
        for line in rules.lines().filter(|l| l.trim_start().starts_with("expr:")) {
            assert_eq!(
                line.matches('{').count(),
                line.matches("{cluster=\\\"pgha-demo\\\"").count(),
                "{line}"
            );
        }
    }

    #[test]
    fn without_metrics_there_is_nothing_to_watch() {
        let mut d = crate::testkit::example("three-sites.yaml");
        d.exporter = None;
        let e = files(&d, &tls()).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(e.to_string().contains("components.exporter.enabled"), "{e}");
    }
}
