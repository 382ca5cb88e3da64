//! The Grafana dashboard `pgha monitoring` writes: one page per cluster
//! with what its alerts watch (writes, replication, the site lease,
//! backups, the hosts), each query limited to the cluster's own series and
//! asked of a Prometheus data source chosen on import.

use serde_json::{json, Value};

use super::monitoring::json as json_str;
use crate::design::Design;

/// One panel: a title, its kind, its queries (`expr`, legend) and unit.
struct Panel {
    title: &'static str,
    kind: &'static str,
    queries: Vec<(String, &'static str)>,
    unit: &'static str,
    description: &'static str,
}

fn panel(title: &'static str, kind: &'static str, unit: &'static str, description: &'static str) -> Panel {
    Panel {
        title,
        kind,
        queries: Vec::new(),
        unit,
        description,
    }
}

impl Panel {
    fn query(mut self, expr: String, legend: &'static str) -> Panel {
        self.queries.push((expr, legend));
        self
    }
}

/// The dashboard's rows, each a title and its panels, for `design`.
fn rows(design: &Design) -> Vec<(&'static str, Vec<Panel>)> {
    let c = format!("cluster={}", json_str(&design.platform.name));
    let fs = super::monitoring::FS;
    let mut rows = vec![
        (
            "Writes",
            vec![
                panel("Writable hosts", "stat", "none", "Running primaries: 1 is right, 2 or more is a split brain, 0 no master.")
                    .query(
                        format!("count(patroni_primary{{{c}}} == 1 and on (host) patroni_postgres_running{{{c}}} == 1) or vector(0)"),
                        "masters",
                    ),
                panel("Role", "state-timeline", "none", "2: master, 1: a standby cloud's leader, 0: replica or stopped.")
                    .query(format!("2 * patroni_primary{{{c}}} + patroni_standby_leader{{{c}}}"), "{{host}}"),
                panel("Commits per second", "timeseries", "ops", "Transactions committed, per host.")
                    .query(format!("sum by (host) (rate(pg_stat_database_xact_commit{{{c}}}[5m]))"), "{{host}}"),
                panel("Connections", "timeseries", "none", "Backends connected, per host.")
                    .query(format!("sum by (host) (pg_stat_database_numbackends{{{c}}})"), "{{host}}"),
                panel("Write route", "timeseries", "none", "Servers each HAProxy sends writes to (1 is right).").query(
                    format!(
                        "haproxy_backend_active_servers{{{c}, proxy={}}}",
                        json_str(&format!("{}-primary", design.platform.name))
                    ),
                    "{{host}}",
                ),
            ],
        ),
        (
            "Replication",
            vec![
                panel("Replica lag in its cloud", "timeseries", "bytes", "Each running replica behind its cloud's leader.")
                    .query(
                        format!(
                            "max by (cluster, cloud) (patroni_xlog_location{{{c}}} * patroni_primary{{{c}}} \
                             + patroni_xlog_replayed_location{{{c}}} * patroni_standby_leader{{{c}}}) \
                             - on (cluster, cloud) group_right () (patroni_xlog_replayed_location{{{c}}} \
                             and on (cluster, host) patroni_replica{{{c}}} == 1)"
                        ),
                        "{{host}}",
                    ),
                panel("Standby clouds behind the master", "timeseries", "bytes", "What a failover to that cloud would lose now.")
                    .query(
                        format!(
                            "max by (cluster) (patroni_xlog_location{{{c}}} * patroni_primary{{{c}}}) \
                             - on (cluster) group_right () (patroni_xlog_replayed_location{{{c}}} \
                             and on (cluster, host) patroni_standby_leader{{{c}}} == 1)"
                        ),
                        "{{cloud}}",
                    ),
                panel("etcd leader", "state-timeline", "none", "1: the member sees a leader (cloud and site etcd).")
                    .query(format!("etcd_server_has_leader{{{c}}}"), "{{job}} {{host}}"),
            ],
        ),
    ];
    if design.site.is_some() {
        rows.push((
            "Site lease",
            vec![
                panel(
                    "Lease holder",
                    "stat",
                    "none",
                    "The cloud the hosts' site agents read as the holder.",
                )
                .query(format!("max by (holder) (pgha_site_lease_holder{{{c}}})"), "{{holder}}"),
                panel(
                    "Renewal age",
                    "timeseries",
                    "s",
                    "Each host's last renewal; the master's gate closes at its bound.",
                )
                .query(format!("pgha_site_renewal_age_seconds{{{c}}}"), "{{host}}")
                .query(format!("max(pgha_site_gate_bound_seconds{{{c}}})"), "gate bound"),
                panel(
                    "Site reachable",
                    "state-timeline",
                    "none",
                    "1: the host's agent reached a site member in its last loop.",
                )
                .query(format!("pgha_site_reachable{{{c}}}"), "{{host}}"),
                panel(
                    "Fences in 10 minutes",
                    "stat",
                    "none",
                    "Masters the site agent stopped.",
                )
                .query(
                    format!("sum(increase(pgha_site_fences_total{{{c}}}[10m])) or vector(0)"),
                    "fences",
                ),
            ],
        ));
    }
    if design.backup.is_some() {
        rows.push((
            "Backups",
            vec![
                panel(
                    "WAL archived per minute",
                    "timeseries",
                    "none",
                    "Segments archive_command pushed, per host.",
                )
                .query(
                    format!("sum by (host) (rate(pg_stat_archiver_archived_count{{{c}}}[5m])) * 60"),
                    "{{host}}",
                )
                .query(
                    format!("sum by (host) (rate(pg_stat_archiver_failed_count{{{c}}}[5m])) * 60"),
                    "{{host}} failed",
                ),
                panel(
                    "Newest backup age",
                    "timeseries",
                    "s",
                    "Per repository; the alert fires past the schedule's allowance.",
                )
                .query(
                    format!("time() - max by (repository) (pgha_backup_last_completion_timestamp_seconds{{{c}}})"),
                    "{{repository}}",
                )
                .query(format!("max(pgha_backup_allowed_age_seconds{{{c}}})"), "allowed"),
                panel("Backups kept", "stat", "none", "Completed backups per repository.").query(
                    format!("max by (repository) (pgha_backup_count{{{c}}})"),
                    "{{repository}}",
                ),
            ],
        ));
    }
    rows.push((
        "Hosts",
        vec![
            panel("Filesystem free", "timeseries", "percentunit", "Each writable filesystem of a database host.").query(
                format!(
                    "min by (host, mountpoint) (node_filesystem_avail_bytes{{{c}, {fs}}} / node_filesystem_size_bytes{{{c}, {fs}}})"
                ),
                "{{host}} {{mountpoint}}",
            ),
            panel("Certificates expire in", "stat", "d", "The soonest certificate pgha installed on each host.").query(
                format!("min by (host) (pgha_certificate_expiry_timestamp_seconds{{{c}}} - time()) / 86400"),
                "{{host}}",
            ),
            panel("Load", "timeseries", "none", "One-minute load average.")
                .query(format!("node_load1{{{c}}}"), "{{host}}"),
            panel("Targets up", "stat", "none", "Scraped targets answering, per job.")
                .query(format!("sum by (job) (up{{{c}}})"), "{{job}}"),
        ],
    ));
    rows
}

/// The dashboard's JSON (Grafana's model), for `design`.
pub(crate) fn dashboard(design: &Design) -> String {
    let datasource = json!({"type": "prometheus", "uid": "${datasource}"});
    let mut panels = Vec::new();
    let mut id = 0;
    let mut y = 0;
    for (title, row) in rows(design) {
        id += 1;
        panels.push(json!({
            "id": id, "type": "row", "title": title, "collapsed": false,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": [],
        }));
        y += 1;
        // Three panels a line, 8 units wide each.
        for (n, p) in row.into_iter().enumerate() {
            id += 1;
            let targets: Vec<Value> = p
                .queries
                .iter()
                .zip('A'..)
                .map(|((expr, legend), r)| json!({"refId": r.to_string(), "expr": expr, "legendFormat": legend, "datasource": datasource}))
                .collect();
            let x = (n % 3) as u32 * 8;
            panels.push(json!({
                "id": id, "type": p.kind, "title": p.title, "description": p.description,
                "datasource": datasource,
                "gridPos": {"h": 8, "w": 8, "x": x, "y": y + (n / 3) as u32 * 8},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "targets": targets,
            }));
        }
        y += panels
            .iter()
            .rev()
            .take_while(|p| p["type"] != "row")
            .count()
            .div_ceil(3) as u32
            * 8;
    }
    let name = &design.platform.name;
    let value = json!({
        "title": format!("pgha: {name}"),
        "uid": uid(name),
        "tags": ["pgha", "postgresql"],
        "description": format!("Written by `pgha monitoring` for cluster {name}."),
        "schemaVersion": 39,
        "version": 1,
        "editable": true,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "timezone": "",
        "templating": {"list": [{
            "name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0,
        }]},
        "annotations": {"list": []},
        "panels": panels,
    });
    serde_json::to_string_pretty(&value).expect("JSON serializes") + "\n"
}

/// Grafana's uid (at most 40 characters of letters, digits, `-`, `_`):
/// the cluster's name, so a second import replaces the first.
fn uid(name: &str) -> String {
    let mut s: String = format!("pgha-{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(40);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_is_grafanas_model_with_every_query_of_the_cluster() {
        let d = crate::testkit::example("three-sites.yaml");
        let v: Value = serde_json::from_str(&dashboard(&d)).unwrap();
        assert_eq!(v["uid"], "pgha-pgha-demo");
        let panels = v["panels"].as_array().unwrap();
        let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
        ids.dedup();
        assert_eq!(ids.len(), panels.len(), "unique ids");
        let rows: Vec<&str> = panels
            .iter()
            .filter(|p| p["type"] == "row")
            .map(|p| p["title"].as_str().unwrap())
            .collect();
        assert_eq!(rows, ["Writes", "Replication", "Site lease", "Backups", "Hosts"]);
        let mut seen = std::collections::HashSet::new();
        for p in panels.iter().filter(|p| p["type"] != "row") {
            let g = &p["gridPos"];
            assert!(g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24, "{p}");
            assert!(
                seen.insert((g["x"].as_u64(), g["y"].as_u64())),
                "overlapping panels: {p}"
            );
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{p}");
            for t in targets {
                let expr = t["expr"].as_str().unwrap();
                assert!(expr.contains("cluster=\"pgha-demo\""), "{expr}");
            }
        }
    }

    #[test]
    fn without_a_site_lease_or_backups_their_rows_are_left_out() {
        let mut d = crate::testkit::example("three-sites.yaml");
        d.site = None;
        d.backup = None;
        let text = dashboard(&d);
        assert!(!text.contains("Site lease") && !text.contains("pgha_backup"), "{text}");
    }

    #[test]
    fn the_uid_is_grafanas_shape() {
        assert_eq!(uid("a.b c"), "pgha-a-b-c");
        assert_eq!(uid(&"x".repeat(60)).len(), 40);
    }
}
