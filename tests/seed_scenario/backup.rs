//! Issue 12 end to end: backups and point-in-time recovery with pgBackRest,
//! and a WAL archive the standby cloud uses. On the seed scenario's lab,
//! before it (two clouds of three hosts, the GLB; dc1's repository on a
//! host of its own, dc2's under a path of its database host dc2-pg1, the
//! small setup), in order:
//!
//! 1. deploy: the stanza and a first full backup in every repository, a
//!    second deploy changes nothing, `backup check`, `status` shows them;
//! 2. a replica of the standby cloud copied afresh from its cloud's
//!    repository (pgBackRest's restore log), not across data centers;
//! 3. the repository of the primary cloud stopped: `status` says archiving
//!    fails (exit 3) while the master keeps taking writes; back, it heals;
//! 4. the standby cloud stopped while more than `wal_keep_size` of WAL is
//!    written: started again it catches up from the archive, with its data
//!    directory kept (no copy);
//! 5. point-in-time recovery: rows A, time T, rows B, `DROP TABLE`, `restore
//!    --to T`: rows A and not B on every host, and a switchover works after;
//! 6. a flip to dc2, a backup after it, and a recovery to a time after it.

use std::time::{Duration, Instant};

use crate::common::{stderr, stdout, wait_for, Phases, TestLab};

const P: &str = super::P;
/// dc2's repository, on dc2-pg1.
const REPO2: &str = "/var/lib/pgha-repository";
const HOSTS: [&str; 6] = ["dc1-pg1", "dc1-pg2", "dc1-pg3", "dc2-pg1", "dc2-pg2", "dc2-pg3"];
const SITES: crate::common::partition::Sites = super::SITES;

fn addr(host: &str) -> String {
    let (cloud, n) = host.split_once("-pg").unwrap();
    let c: u32 = cloud.trim_start_matches("dc").parse().unwrap();
    format!("{P}.{}", 10 * c + n.parse::<u32>().unwrap())
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

/// The server's clock now, as pgBackRest's `--target` takes it.
fn server_now(pw: &str) -> String {
    SITES.via_glb(
        pw,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    )[0][0]
        .clone()
        .unwrap()
}

/// Waits until the server's clock is past `t` by a second: a commit after
/// it is after the target for sure.
fn wait_past(pw: &str, t: &str) {
    wait_for("the server's clock to pass the target", Duration::from_secs(10), || {
        SITES.via_glb(
            pw,
            &format!("SELECT clock_timestamp() > '{t}'::timestamptz + interval '1 s'"),
        )[0][0]
            .as_deref()
            == Some("t")
    });
}

/// The scenario on a lab just up (`--no-witness`), deployed here. It ends
/// with dc2 primary.
pub(crate) fn backups_archive_and_point_in_time_recovery(lab: &TestLab, phases: &Phases) {
    // dc2's repository moves onto its database host dc2-pg1 (the lab's
    // dc2-backup container stays idle).
    let design = std::fs::read_to_string(lab.design()).unwrap();
    let dedicated = format!("    - cloud: dc2\n      name: dc2-backup\n      address: {P}.29\n");
    assert!(design.contains(&dedicated), "{design}");
    let on_db_host = format!("    - cloud: dc2\n      host: dc2-pg1\n      path: {REPO2}\n");
    std::fs::write(lab.design(), design.replace(&dedicated, &on_db_host)).unwrap();
    let started = Instant::now();
    lab.pgha_ok(&["deploy", "--yes"]);
    eprintln!(
        "figure: deploy with backups (stanza, a full backup into both repositories): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    phases.done("lab up and deploy");
    let pw = lab.superuser_password();
    deployed(lab);
    phases.done("backups deployed");
    replica_from_the_repository(lab);
    phases.done("a replica from the repository");
    archiving_failure(lab, &pw);
    phases.done("archiving failure");
    standby_catches_up_from_the_archive(lab, &pw);
    phases.done("standby from the archive");
    point_in_time_recovery(lab, &pw, "pitr_a");
    phases.done("point-in-time recovery");
    // After a restore the cluster is highly available again.
    lab.pgha_ok(&["switchover", "--yes"]);
    SITES.via_glb(&pw, "INSERT INTO pitr_a VALUES (1000)");
    SITES.everywhere(&pw, "pitr_a", "101 6050");
    // Archive continuity across a flip: a backup and a recovery after it.
    lab.pgha_ok(&["cloud", "make-primary", "dc2", "--yes"]);
    lab.pgha_ok(&["backup", "--type", "diff", "--yes"]);
    point_in_time_recovery(lab, &pw, "pitr_b");
    phases.done("flip, backup and recovery after it");
}

/// The stanza and a full backup in each repository; nothing to do again.
fn deployed(lab: &TestLab) {
    let list = json(&lab.pgha_ok(&["backup", "list", "--output", "json"]));
    let repos = list.as_array().unwrap();
    assert_eq!(repos.len(), 2, "{list}");
    for r in repos {
        assert_eq!(r["status"], "ok", "{list}");
        assert_eq!(r["backups"][0]["kind"], "full", "{list}");
    }
    let dry = json(&lab.pgha_ok(&["deploy", "--dry-run", "--output", "json"]));
    assert_eq!(dry["changed"], 0, "a second deploy changes nothing: {dry}");
    backup_metrics(lab);
    lab.pgha_ok(&["backup", "check"]);
    // dc2's repository is on dc2-pg1, with its backup timers.
    let pg1 = addr("dc2-pg1");
    lab.ssh_ok(&pg1, &format!("test -f {REPO2}/backup/pgha-lab/backup.info"));
    assert_eq!(
        lab.ssh_ok(&pg1, "systemctl is-enabled pgha-backup-full.timer"),
        "enabled"
    );
    let status = json(&lab.pgha_ok(&["status", "--output", "json"]));
    assert_eq!(status["backup"]["archiving"]["failing"], false, "{status}");
    assert!(status["findings"].as_array().unwrap().is_empty(), "{status}");
    // Issue 13: the lag between clouds, as the primary's master sees dc2's
    // standby leader (bytes, and seconds: 0 when caught up and idle).
    let leaders: Vec<&serde_json::Value> = status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["role"] == "standby leader")
        .collect();
    assert_eq!(leaders.len(), 1, "{status}");
    assert!(leaders[0]["cloud_lag"]["bytes"].is_u64(), "{status}");
    assert!(leaders[0]["cloud_lag"]["seconds"].is_number(), "{status}");
    // A differential backup lands in both repositories.
    lab.pgha_ok(&["backup", "--type", "diff", "--yes"]);
    let list = json(&lab.pgha_ok(&["backup", "list", "--output", "json"]));
    for r in list.as_array().unwrap() {
        assert_eq!(r["backups"].as_array().unwrap().len(), 2, "{list}");
        assert_eq!(r["backups"][1]["kind"], "diff", "{list}");
    }
}

/// Issue 28: every database host's backup metrics timer runs, and its first
/// run (deploy waits for it, after the first backups) read the first full
/// backup in both repositories (dc2's on a database host): served by the
/// node exporter through HAProxy's metrics gateway to Prometheus's
/// certificate.
fn backup_metrics(lab: &TestLab) {
    let glb = format!("{P}.5");
    lab.metrics_client(&glb);
    for h in HOSTS {
        let a = addr(h);
        lab.ssh_ok(
            &a,
            "systemctl is-enabled --quiet pgha-backup-metrics.timer && systemctl is-active --quiet pgha-backup-metrics.timer",
        );
        let get = |prefix: &str| {
            lab.metrics_get(
                &glb,
                Some("prometheus"),
                &format!("https://{a}:9188/node/metrics"),
                prefix,
            )
        };
        assert_eq!(get("pgha_backup_info_ok "), "['pgha_backup_info_ok 1']", "{h}");
        let full = get("pgha_backup_last_completion_timestamp_seconds{");
        for repo in ["dc1", "dc2"] {
            assert!(
                full.contains(&format!("{{repository=\"{repo}\",type=\"full\"}} ")),
                "{h}: {full}"
            );
            assert_eq!(
                get(&format!("pgha_backup_count{{repository=\"{repo}\"}} ")),
                format!("['pgha_backup_count{{repository=\"{repo}\"}} 1']"),
                "{h}"
            );
        }
    }
}

/// `recover-node --reclone` of a standby-cloud replica: Patroni's first
/// replica method restores it from dc2's own repository.
fn replica_from_the_repository(lab: &TestLab) {
    let host = addr("dc2-pg3");
    let started = Instant::now();
    lab.pgha_ok(&["recover-node", "dc2-pg3", "--reclone", "--yes"]);
    eprintln!(
        "figure: a standby-cloud replica made afresh from its cloud's repository: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let log = lab.ssh_ok(&host, "cat /var/log/pgbackrest/pgha-lab-restore.log");
    assert!(log.contains("restore command end: completed successfully"), "{log}");
    // From dc2's repository (repo2 on every host: the design's order), not dc1's.
    assert!(log.contains("--repo=2"), "{log}");
    let conf = lab.ssh_ok(&host, "grep '^repo2-host=' /etc/pgbackrest.conf");
    assert_eq!(conf, format!("repo2-host={}", addr("dc2-pg1")));
}

/// With dc1's repository down, archiving fails and `status` says so, while
/// the master keeps taking writes; with it back, archiving heals.
fn archiving_failure(lab: &TestLab, pw: &str) {
    SITES.via_glb(pw, "CREATE TABLE IF NOT EXISTS churn (id serial PRIMARY KEY, pad text)");
    assert_eq!(lab.lab(&["kill", "dc1-backup"]).status.code(), Some(0));
    let mut status = serde_json::Value::Null;
    wait_for("status to report failing archiving", Duration::from_secs(120), || {
        SITES.via_glb(pw, "INSERT INTO churn (pad) VALUES ('x'); SELECT pg_switch_wal()");
        let out = lab.pgha(&["status", "--output", "json"]);
        status = json(&out);
        out.status.code() == Some(3) && status["backup"]["archiving"]["failing"] == true
    });
    let findings = status["findings"].to_string();
    assert!(findings.contains("WAL archiving fails"), "{status}");
    // Writes go on meanwhile.
    SITES.via_glb(pw, "INSERT INTO churn (pad) VALUES ('still writable')");
    assert_eq!(lab.lab(&["start", "dc1-backup"]).status.code(), Some(0));
    // PostgreSQL retries a failing segment after a pause of up to a minute.
    wait_for("archiving to heal (pgbackrest check)", Duration::from_secs(300), || {
        lab.pgha(&["backup", "check"]).status.code() == Some(0)
    });
    let status = json(&lab.pgha_ok(&["status", "--output", "json"]));
    assert_eq!(status["backup"]["archiving"]["failing"], false, "{status}");
}

/// dc2 stopped while more than `wal_keep_size` (1 GB: 64 segments) of WAL
/// is written: started again, its standby leader takes what the master no
/// longer has from the archive, and keeps its data directory.
fn standby_catches_up_from_the_archive(lab: &TestLab, pw: &str) {
    let dc2: Vec<String> = HOSTS[3..].iter().map(|h| addr(h)).collect();
    let data = lab.ssh_ok(
        &dc2[0],
        "sed -n 's/^  data_dir: \"\\(.*\\)\"$/\\1/p' /etc/patroni/config.yml",
    );
    lab.ssh_ok(&dc2[0], &format!("touch {data}/pgha-test-marker"));
    for a in dc2.iter().rev() {
        lab.ssh_ok(a, "systemctl stop patroni");
    }
    SITES.via_glb(pw, "CREATE TABLE IF NOT EXISTS catchup (id int PRIMARY KEY)");
    for i in 1..=70 {
        SITES.via_glb(pw, &format!("INSERT INTO catchup VALUES ({i}); SELECT pg_switch_wal()"));
    }
    SITES.via_glb(pw, "CHECKPOINT");
    // The master no longer holds the segment dc2 stopped at.
    let started = Instant::now();
    let since = crate::common::partition::epoch_secs(std::time::SystemTime::now());
    for a in &dc2 {
        lab.ssh_ok(a, "systemctl start patroni");
    }
    SITES.everywhere(pw, "catchup", "70 2485");
    eprintln!(
        "figure: the standby cloud caught up on 70 WAL segments (1.1 GB past wal_keep_size) from the archive in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        lab.ssh_ok(&dc2[0], &format!("ls {data}/pgha-test-marker")),
        format!("{data}/pgha-test-marker")
    );
    let from_archive = lab.ssh_ok(
        &dc2[0],
        &format!("journalctl -u patroni --no-pager -o cat --since @{since} | grep -c 'from archive' || true"),
    );
    assert!(
        from_archive.parse::<u32>().unwrap() > 0,
        "no segment came from the archive"
    );
}

/// Rows A, time T, rows B, DROP TABLE; `restore --to T`: A and not B, everywhere.
fn point_in_time_recovery(lab: &TestLab, pw: &str, table: &str) {
    SITES.via_glb(pw, &format!("CREATE TABLE {table} (id int PRIMARY KEY)"));
    SITES.via_glb(pw, &format!("INSERT INTO {table} SELECT generate_series(1, 100)"));
    let t = server_now(pw);
    wait_past(pw, &t);
    SITES.via_glb(pw, &format!("INSERT INTO {table} SELECT generate_series(101, 200)"));
    SITES.via_glb(pw, &format!("DROP TABLE {table}"));
    // Archived in every repository before the restore.
    lab.pgha_ok(&["backup", "check"]);
    let started = Instant::now();
    let out = lab.pgha_ok(&["restore", "--to", &t, "--yes", "--output", "json"]);
    let report = json(&out);
    assert_eq!(report["ok"], true, "{report}");
    eprintln!(
        "figure: restore of the whole cluster to a point in time: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    SITES.everywhere(pw, table, "100 5050");
    // The old data directories are kept aside.
    let aside = lab.ssh_ok(
        &addr("dc1-pg2"),
        "ls -d /var/lib/postgresql/*/pgha.pgha-restore-* | wc -l",
    );
    assert_ne!(aside, "0");
}
