//! `cargo bench --bench backup`: the figures of issue #12 on a lab with a
//! repository host per cloud. On a database of about 1 GB: a full backup
//! into each repository and its size there; a new standby-cloud replica
//! from its cloud's repository against a base backup across clouds; the
//! standby cloud's catch-up from the archive after about 2 GB of WAL
//! written while it was down; a restore of the whole cluster. Prints figures.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{sql, wait_for, TestLab};

const P: &str = "10.68.0";
const DC2: [&str; 3] = ["10.68.0.21", "10.68.0.22", "10.68.0.23"];
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn glb() -> String {
    format!("{P}.5")
}

fn one(pw: &str, q: &str) -> String {
    let mut v = None;
    wait_for(&format!("`{q}` through the GLB"), Duration::from_secs(120), || {
        v = sql(&glb(), 5000, pw, q).ok();
        v.is_some()
    });
    v.unwrap()
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .unwrap_or_default()
}

fn pgha_ok(lab: &TestLab, args: &[&str]) -> std::process::Output {
    let out = lab.pgha(args);
    assert!(
        out.status.success(),
        "pgha {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Waits until every host in `hosts` has replayed the master's WAL up to now.
fn replayed(pw: &str, hosts: &[String], limit: Duration) {
    let target = one(pw, "SELECT pg_current_wal_lsn()");
    let q = format!("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '{target}') >= 0");
    for h in hosts {
        wait_for(&format!("{h} to replay to {target}"), limit, || {
            sql(h, 5432, pw, &q).is_ok_and(|r| r[0][0].as_deref() == Some("t"))
        });
    }
}

/// dc1's master (the primary cloud's).
fn master(pw: &str) -> String {
    let mut found = None;
    wait_for("a master in dc1", Duration::from_secs(120), || {
        found = (11..=13).map(|i| format!("{P}.{i}")).find(|a| {
            sql(a, 5432, pw, "SELECT NOT pg_is_in_recovery()").is_ok_and(|r| r[0][0].as_deref() == Some("t"))
        });
        found.is_some()
    });
    found.unwrap()
}

fn main() {
    let mut args = vec!["--no-witness"];
    args.extend(common::bench_os());
    let lab = TestLab::up("pgha-bkbench", &format!("{P}.0/24"), &args);
    pgha_ok(&lab, &["deploy", "--yes"]);
    let pw = lab.superuser_password();

    // About 1 GB, in slices that each finish well inside the client's timeout.
    let t = Instant::now();
    one(&pw, "CREATE TABLE big (g int, pad text)");
    // Random hex (8 SHA-512 digests a row): compresses about 2x, where
    // repeated text would flatter the repository's size. Slices of 10,000
    // rows each finish well inside the client's 10 s.
    let digest = "encode(sha512((random()::text || g)::bytea), 'hex')";
    let pad = [digest; 8].join(" || ");
    for slice in 0..100 {
        one(
            &pw,
            &format!(
                "INSERT INTO big SELECT g, {pad} FROM generate_series({}, {}) g",
                slice * 10_000 + 1,
                (slice + 1) * 10_000
            ),
        );
    }
    let size: f64 = one(&pw, "SELECT pg_database_size('postgres')").parse().unwrap();
    println!("loaded {:.2} GiB in {:.0} s", size / GIB, t.elapsed().as_secs_f64());
    let m = master(&pw);
    let replicas: Vec<String> = [11, 12, 13, 21, 22, 23]
        .iter()
        .map(|i| format!("{P}.{i}"))
        .filter(|a| *a != m)
        .collect();
    replayed(&pw, &replicas, Duration::from_secs(900));

    // A full backup into each repository, one at a time.
    for cloud in ["dc1", "dc2"] {
        let t = Instant::now();
        pgha_ok(&lab, &["backup", "--type", "full", "--cloud", cloud, "--yes"]);
        let secs = t.elapsed().as_secs_f64();
        let list: serde_json::Value =
            serde_json::from_slice(&pgha_ok(&lab, &["backup", "list", "--output", "json"]).stdout).unwrap();
        let repo = list.as_array().unwrap().iter().find(|r| r["cloud"] == cloud).unwrap();
        let newest = repo["backups"].as_array().unwrap().last().unwrap();
        let (db, stored) = (newest["size"].as_f64().unwrap(), newest["repo_size"].as_f64().unwrap());
        println!(
            "full backup of {:.2} GiB into {cloud}'s repository: {secs:.1} s; {:.0} MiB there ({:.1}x smaller, zstd + aes-256-cbc)",
            db / GIB,
            stored / 1024.0 / 1024.0,
            db / stored
        );
    }

    // A new standby-cloud replica: from dc2's repository (recover-node
    // --reclone, Patroni's first replica method) ...
    let t = Instant::now();
    pgha_ok(&lab, &["recover-node", "dc2-pg3", "--reclone", "--yes"]);
    println!(
        "new dc2 replica from dc2's repository (recover-node --reclone): {:.1} s, 0 bytes across clouds",
        t.elapsed().as_secs_f64()
    );
    // ... against the copy a replica without a repository gets across
    // clouds: pg_basebackup from dc1's master, into a scratch directory.
    let master = master(&pw);
    // The replication credentials from the host's own Patroni configuration
    // (into the environment, not onto a command line).
    let script = format!(
        "set -e\n\
         cfg=/etc/patroni/config.yml\n\
         export PGUSER=$(sed -n '/^    replication:/,/password/ s/^ *username: *\"\\(.*\\)\"$/\\1/p' $cfg)\n\
         export PGPASSWORD=$(sed -n '/^    replication:/,/password/ s/^ *password: *\"\\(.*\\)\"$/\\1/p' $cfg)\n\
         export PGSSLMODE=require HOME=/var/lib/postgresql\n\
         rm -rf /var/tmp/bb && install -d -o postgres -m 0700 /var/tmp/bb\n\
         start=$(date +%s%N)\n\
         runuser -u postgres --preserve-environment -- pg_basebackup -h {master} -p 5432 -D /var/tmp/bb -X stream -c fast\n\
         end=$(date +%s%N)\n\
         echo $(( (end - start) / 1000000 ))\n\
         du -sb /var/tmp/bb | cut -f1\n\
         rm -rf /var/tmp/bb\n"
    );
    let out = lab.ssh_ok(DC2[2], &script);
    let mut lines = out.lines();
    let secs = lines.next().unwrap().trim().parse::<f64>().unwrap() / 1000.0;
    let bytes: f64 = lines.next().unwrap().trim().parse().unwrap();
    println!(
        "the same replica by pg_basebackup from dc1's master: {secs:.1} s, {:.2} GiB across clouds",
        bytes / GIB
    );

    // The standby cloud down while about 2 GB of WAL is written: it comes
    // back from the archive, not by a new copy.
    for a in DC2.iter().rev() {
        lab.ssh_ok(a, "systemctl stop patroni");
    }
    let from = one(&pw, "SELECT pg_current_wal_lsn()");
    let mut round = 0;
    loop {
        let written: f64 = one(&pw, &format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{from}')"))
            .parse()
            .unwrap();
        if written >= 2.0 * GIB || round == 12 {
            println!("wrote {:.2} GiB of WAL while dc2 was down", written / GIB);
            break;
        }
        round += 1;
        // Slices of the table rewritten: new row versions and full pages.
        for part in 0..24 {
            one(
                &pw,
                &format!("UPDATE big SET pad = md5(pad) || substr(pad, 33) WHERE g % 24 = {part}"),
            );
        }
    }
    one(&pw, "CHECKPOINT");
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = Instant::now();
    for a in &DC2 {
        lab.ssh_ok(a, "systemctl start patroni");
    }
    let dc2: Vec<String> = DC2.iter().map(|a| a.to_string()).collect();
    replayed(&pw, &dc2, Duration::from_secs(1800));
    let fetched = lab.ssh_ok(
        DC2[0],
        &format!("journalctl -u patroni --no-pager -o cat --since @{since} | grep -c 'from archive' || true"),
    );
    println!(
        "dc2 caught up from the archive in {:.1} s ({fetched} segments restored from the archive on its standby leader)",
        t.elapsed().as_secs_f64()
    );

    // A restore of the whole cluster to the end of the archive.
    let t = Instant::now();
    pgha_ok(&lab, &["restore", "--latest", "--yes"]);
    println!(
        "restore of the whole cluster (~1 GB, --latest, a full backup of the new timeline included): {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let out = lab.ssh_ok(
        &format!("{P}.11"),
        "grep -h 'restore command end' /var/log/pgbackrest/*-restore.log | tail -1",
    );
    println!("the leader's pgBackRest restore: {out}");
}
