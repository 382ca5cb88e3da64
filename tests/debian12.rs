//! Debian 12 (oldstable) stays supported, and moves to Debian 13: on a lab
//! of Debian 12 hosts, the same design (no PostgreSQL version named)
//! deploys PostgreSQL 15 under Patroni 3.0 and fails over inside the
//! primary cloud. `pgha upgrade release` then moves every host to Debian 13
//! (issue 26) with a client writing through the GLB and every host asked
//! from inside whether it takes writes: one switchover's gap, no
//! acknowledged write lost, never two writable hosts; PostgreSQL stays 15.
//! On the moved cluster a failover and a flip work, with the rows compared
//! on every host after each. The release upgrade runs with
//! PGHA_RELEASE_UPGRADE=1 (CI time); without it the flip runs on Debian 12.

mod common;

use std::time::Duration;

use common::{sql, stderr, wait_for, TestLab};

const P: &str = "10.70.0";
const HOSTS: [&str; 6] = ["11", "12", "13", "21", "22", "23"];

fn addr(last: &str) -> String {
    format!("{P}.{last}")
}

fn glb() -> String {
    format!("{P}.5")
}

/// The read-write hosts among `hosts` (last octets).
fn masters(pw: &str, hosts: &[&str]) -> Vec<String> {
    hosts
        .iter()
        .filter(|h| {
            sql(&addr(h), 5432, pw, "SELECT NOT pg_is_in_recovery()").is_ok_and(|r| r[0][0].as_deref() == Some("t"))
        })
        .map(|h| h.to_string())
        .collect()
}

fn one_master(pw: &str, hosts: &[&str], limit: Duration) -> String {
    let mut found = String::new();
    wait_for(&format!("one master among {hosts:?}"), limit, || {
        let m = masters(pw, hosts);
        if let [one] = m.as_slice() {
            found = one.clone();
        }
        m.len() == 1
    });
    found
}

/// Every host holds exactly the rows the GLB's master holds.
fn same_rows_everywhere(pw: &str, expect: usize) {
    let query = "SELECT id, name FROM company ORDER BY id";
    let reference = sql(&glb(), 5000, pw, query).unwrap();
    assert_eq!(reference.len(), expect, "{reference:?}");
    for h in HOSTS {
        wait_for(
            &format!("{h} to hold the master's rows"),
            Duration::from_secs(60),
            || sql(&addr(h), 5432, pw, query).is_ok_and(|r| r == reference),
        );
    }
}

fn pgha_ok(lab: &TestLab, args: &[&str]) {
    let out = lab.pgha(args);
    assert_eq!(out.status.code(), Some(0), "pgha {args:?}: {}", stderr(&out));
}

#[test]
fn debian_12_deploys_fails_over_moves_to_13_and_flips() {
    if !common::e2e() {
        return;
    }
    let phases = common::Phases::start("debian12");
    let phase = |what: &str| phases.done(what);
    let lab = TestLab::up("pgha-deb12", &format!("{P}.0/24"), &["--os", "debian12"]);
    phase("lab up");
    // Debian 12's pgBackRest (2.45) checks certificates by DNS name only:
    // with the lab's hosts named by IP address, backups are refused before
    // any change (seen failing otherwise: "unable to find hostname ... in
    // certificate"); without them the cluster deploys as before.
    let out = lab.pgha(&["deploy", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("verifies certificates by DNS name only"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        lab.ssh_ok(&addr("11"), "systemctl is-active patroni || true"),
        "inactive",
        "nothing was started"
    );
    let design = std::fs::read_to_string(lab.design()).unwrap();
    std::fs::write(lab.design(), design.replace("backup:\n", "backup:\n  enabled: false\n")).unwrap();
    pgha_ok(&lab, &["deploy", "--yes"]);
    phase("deploy");
    let pw = lab.superuser_password();
    let version = sql(&glb(), 5000, &pw, "SHOW server_version").unwrap();
    assert!(version[0][0].as_deref().unwrap().starts_with("15."), "{version:?}");
    assert!(lab.ssh_ok(&addr("11"), "patroni --version").starts_with("patroni 3.0"));
    // etcd 3.4 and Patroni 3.0 with etcd's users: the same least privilege,
    // and a second run finds them set.
    lab.etcd_least_privilege(P, false);
    phase("etcd's users checked");
    // Issue 26: `status` shows each host's release and server; one release
    // and one major is no mixed cluster.
    let out = lab.pgha(&["status", "--output", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for row in status["hosts"].as_array().unwrap() {
        assert_eq!(row["release"], "12", "{row}");
        assert!(row["postgres_running"].as_str().unwrap().starts_with("15."), "{row}");
        assert_eq!(row["postgres_data"], 15, "{row}");
    }
    let findings = status["findings"].to_string();
    assert!(
        !findings.contains("mixed") && !findings.contains("major versions differ"),
        "{findings}"
    );
    let out = lab.pgha(&["deploy", "--dry-run", "--output", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["changed"], 0, "{}", common::stdout(&out));

    sql(
        &glb(),
        5000,
        &pw,
        "CREATE TABLE company (id int PRIMARY KEY, name text NOT NULL)",
    )
    .unwrap();
    sql(&glb(), 5000, &pw, "INSERT INTO company VALUES (1, 'Paul')").unwrap();
    same_rows_everywhere(&pw, 1);

    // A failover inside dc1 on Debian 12.
    failover_in_dc1(&lab, &pw, 2, "Allen");
    phase("a failover on Debian 12");

    // The release upgrade moves the eight hosts one at a time: 16 to 24
    // minutes of CI's 90 on a two-core machine, where the rest of the
    // suite left too little room. PGHA_RELEASE_UPGRADE=1 runs it (and is
    // run before a change to `pgha upgrade release` lands).
    let rows = if std::env::var_os("PGHA_RELEASE_UPGRADE").is_some() {
        release_upgrade(&lab, &pw);
        same_rows_everywhere(&pw, 2);
        phase("the release upgrade");

        // On Debian 13 (Patroni 4.0, etcd 3.5, PostgreSQL still 15): a failover.
        failover_in_dc1(&lab, &pw, 3, "Harry");
        phase("a failover on Debian 13");
        3
    } else {
        eprintln!("the release upgrade to Debian 13: not run (PGHA_RELEASE_UPGRADE=1 runs it)");
        2
    };

    // A planned flip: dc2 becomes the primary cloud.
    pgha_ok(&lab, &["cloud", "make-primary", "dc2", "--yes"]);
    let master = one_master(&pw, &HOSTS, Duration::from_secs(10));
    assert!(master.starts_with('2'), "the master is in dc2: {master}");
    sql(
        &glb(),
        5000,
        &pw,
        &format!("INSERT INTO company VALUES ({}, 'Teddy')", rows + 1),
    )
    .unwrap();
    same_rows_everywhere(&pw, rows + 1);
    phase("the flip");
    // A cut of the primary cloud on these packages (Debian 13's) is the
    // partition test's; run here too it cost CI 143 s.
}

/// A moment of the upgrade, seen from outside.
type Reached<'a> = Box<dyn Fn() -> bool + 'a>;

/// Whether the package upgrade of the host with address `last` runs now
/// (pgha's transient unit), asked through Docker: while dpkg replaces
/// sshd, the old listener may not start new sessions.
fn upgrading(last: &str) -> bool {
    let name = match last {
        "5" => "glb1".to_string(),
        "4" => "witness".to_string(),
        n => format!("dc{}-pg{}", &n[..1], &n[1..]),
    };
    // Its unit's file, not systemctl: mid-upgrade systemctl may not start.
    common::container_has(
        &format!("pgha-deb12-{name}"),
        "/run/systemd/transient/pgha-release-upgrade.service",
    ) == Some(true)
}

/// `pgha upgrade release --yes` in the background, once the cluster lock
/// of a killed run has expired (a dry run takes the lock too) and the
/// cluster has settled (a member the killed run restarted may still be
/// starting, or the killed run's package upgrade still runs on a host
/// whose half-upgraded sshd takes no new session or cuts an open one: the
/// upgrade then refuses before any change).
fn start_when_unlocked(lab: &TestLab) -> std::process::Child {
    let hosts = ["21", "22", "23", "11", "12", "13", "5", "4"];
    let busy = || hosts.iter().any(|h| upgrading(h));
    wait_for(
        "the killed run's cluster lock to expire and its package upgrade to end",
        Duration::from_secs(600),
        || {
            let was_busy = busy();
            let out = lab.pgha(&["upgrade", "release", "--dry-run"]);
            let err = stderr(&out);
            // Refused at connect, or cut once open: sshd restarts inside
            // the package upgrade.
            let ssh = err.contains("cannot connect over SSH") || err.contains("the SSH connection failed");
            let unreachable = ssh && (was_busy || busy());
            assert!(
                out.status.success() || err.contains("lock") || err.contains("cannot start") || unreachable,
                "{}{}",
                common::stdout(&out),
                stderr(&out)
            );
            out.status.success()
        },
    );
    lab.spawn(&["upgrade", "release", "--yes"])
}

/// The master of dc1 loses its governor: another dc1 host takes over, a
/// write through the GLB (row `id`) works, and the old one comes back.
fn failover_in_dc1(lab: &TestLab, pw: &str, id: u32, name: &str) {
    let dc1 = ["11", "12", "13"];
    let first = one_master(pw, &dc1, Duration::from_secs(10));
    lab.ssh_ok(&addr(&first), "systemctl stop patroni");
    let rest: Vec<&str> = dc1.iter().copied().filter(|h| *h != first).collect();
    one_master(pw, &rest, Duration::from_secs(40));
    wait_for(
        "a write through the GLB after the failover",
        Duration::from_secs(40),
        || {
            sql(
                &glb(),
                5000,
                pw,
                &format!("INSERT INTO company VALUES ({id}, '{name}')"),
            )
            .is_ok()
        },
    );
    lab.ssh_ok(&addr(&first), "systemctl start patroni");
    same_rows_everywhere(pw, id as usize);
}

/// `pgha upgrade release` under a client and the monitor; every host ends
/// on Debian 13 with PostgreSQL 15; a second run has nothing left to do.
fn release_upgrade(lab: &TestLab, pw: &str) {
    let sites = common::partition::Sites {
        name: "pgha-deb12",
        prefix: P,
    };
    let out = lab.pgha(&["upgrade", "release", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = common::stdout(&out);
    // The standby cloud first; the primary cloud's master after a switchover.
    let at = |s: &str| plan.find(s).unwrap_or_else(|| panic!("{s:?} in {plan}"));
    assert!(at("(standby leader of dc2)") < at("(replica of dc1)"), "{plan}");
    assert!(at("switch the master of dc1") < at("(the old master of dc1)"), "{plan}");
    assert!(at("(the old master of dc1)") < at("(the GLB)"), "{plan}");

    let monitor = common::partition::Monitor::start_every(sites, Duration::from_secs(1));
    let (stop, handle) = common::writer(&glb(), pw);
    let started = std::time::Instant::now();
    // Killed (SIGKILL) twice, each run resumed by the next: during a
    // standby-cloud host's package upgrade (the next run finishes that
    // host first) and right after the switchover (not made again). A third
    // kill, during the GLB's package upgrade, tested the first case again
    // and cost CI about 4 minutes.
    let dc1_master = one_master(pw, &["11", "12", "13"], Duration::from_secs(10));
    let kills: [(&str, Reached); 2] = [
        (
            "a dc2 host's package upgrade",
            Box::new(|| ["21", "22", "23"].iter().any(|h| upgrading(h))),
        ),
        (
            "the switchover",
            Box::new(|| masters(pw, &["11", "12", "13"]).iter().any(|m| *m != dc1_master)),
        ),
    ];
    let mut said = String::new();
    for (during, now) in kills {
        let mut run = start_when_unlocked(lab);
        let mut ended = false;
        wait_for(
            &format!("the upgrade to reach {during}"),
            // Five hosts before the switchover, a minute or more each here.
            Duration::from_secs(900),
            || {
                ended = run.try_wait().unwrap().is_some();
                ended || now()
            },
        );
        if !ended {
            run.kill().unwrap();
        }
        let out = run.wait_with_output().unwrap();
        assert!(
            !ended,
            "the upgrade ended before {during}: {:?}\n{}{}",
            out.status,
            common::stdout(&out),
            stderr(&out)
        );
        eprintln!("killed during {during} after {:.0} s", started.elapsed().as_secs_f64());
        said.push_str(&common::stdout(&out));
        said.push_str(&stderr(&out));
        assert!(said.contains("Plan for `upgrade release`"), "{said}");
    }
    let run = start_when_unlocked(lab);
    let out = run.wait_with_output().unwrap();
    let took = started.elapsed();
    said.push_str(&common::stdout(&out));
    said.push_str(&stderr(&out));
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let w = handle.join().unwrap();
    monitor.finish();
    assert_eq!(out.status.code(), Some(0), "{}{}", common::stdout(&out), stderr(&out));
    eprintln!(
        "figure: Debian 12 -> 13 release upgrade of 8 hosts: {:.0} s ({:.0} s per host); longest write gap {:.2} s \
         (ended {} UTC), {} writes acknowledged",
        took.as_secs_f64(),
        took.as_secs_f64() / 8.0,
        w.gap.as_secs_f64(),
        w.gap_end_utc(),
        w.acked.len()
    );
    for line in said
        .lines()
        .filter(|l| l.contains("packages upgraded in") || l.contains("interrupted"))
    {
        eprintln!("figure: {}", line.trim());
    }
    // One switchover in the primary cloud: Patroni's clean demotion, then
    // HAProxy's checks (2 s apart) find the new master.
    let addresses: Vec<String> = HOSTS.iter().map(|h| addr(h)).collect();
    lab.check_gap("the release upgrade", &w, &addresses, &["patroni", "haproxy"]);
    assert!(sites.missing(pw, &w.acked).is_empty(), "acknowledged writes lost");
    sites.same_rows_everywhere(pw);

    let out = lab.pgha(&["status", "--output", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for row in status["hosts"].as_array().unwrap() {
        assert_eq!(row["release"], "13", "{row}");
        assert!(row["postgres_running"].as_str().unwrap().starts_with("15."), "{row}");
    }
    let findings = status["findings"].to_string();
    assert!(!findings.contains("mixed"), "{findings}");
    // The witness and the GLB too; the GLB's HAProxy runs the new binary.
    for h in ["4", "5"] {
        assert_eq!(lab.ssh_ok(&addr(h), ". /etc/os-release; echo $VERSION_ID"), "13", "{h}");
    }
    // No HAProxy runs a replaced (old) binary; every etcd member, of each
    // cloud and of the site, runs 3.5.
    for h in ["5", "11", "12", "13", "21", "22", "23"] {
        let exes = lab.ssh_ok(&addr(h), "for p in $(pgrep -x haproxy); do readlink /proc/$p/exe; done");
        assert!(!exes.is_empty() && !exes.contains("deleted"), "{h}: {exes}");
    }
    for (h, port) in [("11", 2379), ("21", 2379), ("11", 2479)] {
        let members = lab.ssh_ok(
            &addr(h),
            &format!(
                "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:{port} --cacert=/etc/pgha/tls/ca.crt \
                 --cert=/etc/pgha/tls/host.crt --key=/etc/pgha/tls/etcd.key endpoint status --cluster -w simple"
            ),
        );
        assert_eq!(
            members.lines().filter(|l| l.contains(", 3.5.")).count(),
            3,
            "{h}:{port}: {members}"
        );
    }
    assert!(lab.ssh_ok(&addr("12"), "patroni --version").starts_with("patroni 4.0"));
    // Resumable: run again, nothing is left; the design still deploys as is.
    let out = lab.pgha(&["upgrade", "release", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(common::stdout(&out).contains("(0 steps)"), "{}", common::stdout(&out));
    let out = lab.pgha(&["deploy", "--dry-run", "--output", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["changed"], 0, "{}", common::stdout(&out));
}
