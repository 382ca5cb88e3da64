//! Issue 26, the major upgrade: on the default lab (backups, the witness
//! and the site lease) of Debian 13 hosts with PostgreSQL 15 beside 17
//! (`--os debian13-pg15`: the Debian 12 image moved by a release upgrade),
//! `pgha upgrade postgres 17` runs under a client writing through the GLB
//! and every host asked from inside whether it takes writes, killed
//! (SIGKILL) at three different steps, each run finished by the next. Then
//! every host runs 17 with the rows it had, no acknowledged write is lost,
//! never two writable hosts; each standby got the new cluster by rsync (no
//! full copy: each stopped at the master's position); a backup and a
//! point-in-time restore, `recover-node` and a flip work on 17, the flip
//! with the new cloud's route to the old master frozen.

mod common;

use std::time::{Duration, Instant};

use common::partition::Sites;
use common::{sql, stderr, stdout, wait_for, TestLab};

const P: &str = "10.68.0";
const SITES: Sites = Sites {
    name: "pgha-major",
    prefix: P,
};
const HOSTS: [&str; 6] = ["dc1-pg1", "dc1-pg2", "dc1-pg3", "dc2-pg1", "dc2-pg2", "dc2-pg3"];

fn addr(host: &str) -> String {
    SITES.address(host)
}

fn glb() -> String {
    SITES.glb()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

/// Runs `cmd` in a host's container as root (no SSH: a stopped sshd or
/// a killed run's session does not hide it).
fn inside(host: &str, cmd: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["exec", &format!("{}-{host}", SITES.name), "sh", "-c", cmd])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A line of the host's record of the upgrade (polled: read without a
/// `docker exec`).
fn marked(host: &str, key: &str) -> bool {
    common::container_file(&format!("{}-{host}", SITES.name), "/var/lib/pgha/pg-upgrade")
        .is_some_and(|r| r.lines().any(|l| l.starts_with(&format!("{key} "))))
}

/// `pgha upgrade postgres 17 --yes` in the background once the killed
/// run's cluster lock expired (a dry run takes the lock too).
fn start_when_unlocked(lab: &TestLab) -> std::process::Child {
    wait_for(
        "the killed run's cluster lock to expire",
        Duration::from_secs(120),
        || {
            let out = lab.pgha(&["upgrade", "postgres", "17", "--dry-run"]);
            let err = stderr(&out);
            assert!(out.status.success() || err.contains("lock"), "{}{}", stdout(&out), err);
            out.status.success()
        },
    );
    lab.spawn(&["upgrade", "postgres", "17", "--yes"])
}

/// A moment of the upgrade, seen from inside the hosts.
type Reached = Box<dyn Fn() -> bool>;

#[test]
fn major_upgrade_15_to_17_killed_three_times_then_backup_restore_recover_and_flip() {
    if !common::e2e() {
        return;
    }
    let phases = common::Phases::start("major");
    let lab = TestLab::up(SITES.name, &format!("{P}.0/24"), &["--os", "debian13-pg15"]);
    lab.pgha_ok(&["deploy", "--yes"]);
    phases.done("lab up and deploy");
    let pw = lab.superuser_password();
    let version = SITES.via_glb(&pw, "SHOW server_version");
    assert!(version[0][0].as_deref().unwrap().starts_with("15."), "{version:?}");
    SITES.via_glb(&pw, "CREATE TABLE company (id int PRIMARY KEY, name text NOT NULL)");
    SITES.via_glb(
        &pw,
        "INSERT INTO company SELECT g, md5(g::text) FROM generate_series(1, 50000) g",
    );
    SITES.everywhere(&pw, "company", "50000 1250025000");

    // The design names 15: the upgrade is refused until it names 17.
    let out = lab.pgha(&["upgrade", "postgres", "17", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("postgres_version: 17"), "{}", stderr(&out));
    let design = std::fs::read_to_string(lab.design()).unwrap();
    std::fs::write(
        lab.design(),
        design.replace("postgres_version: 15", "postgres_version: 17"),
    )
    .unwrap();
    let out = lab.pgha_ok(&["upgrade", "postgres", "17", "--dry-run"]);
    let plan = stdout(&out);
    let at = |s: &str| plan.find(s).unwrap_or_else(|| panic!("{s:?} in {plan}"));
    assert!(at("pg_upgrade --check") < at("writes stop:"), "{plan}");
    assert!(at("writes stop:") < at("POINT OF NO RETURN"), "{plan}");
    assert!(at("dc2-pg3: rsync from dc1-pg1") < at("POINT OF NO RETURN"), "{plan}");

    let monitor = common::partition::Monitor::start_every(SITES, Duration::from_secs(1));
    let (stop, handle) = common::writer(&glb(), &pw);
    let started = Instant::now();
    // Killed at three steps: the stop (the master's server down, the
    // standbys not yet), the copies (a standby's rsync begun), and after
    // the point of no return (the master's record says started).
    let kills: [(&str, Reached); 3] = [
        (
            "the stop",
            Box::new(|| {
                // A stop removes postmaster.pid last.
                marked("dc1-pg1", "master")
                    && common::container_has(
                        &format!("{}-dc1-pg1", SITES.name),
                        "/var/lib/postgresql/15/pgha/postmaster.pid",
                    ) == Some(false)
            }),
        ),
        (
            "the copies",
            Box::new(|| HOSTS[1..].iter().any(|h| marked(h, "copying"))),
        ),
        ("the start on 17", Box::new(|| marked("dc1-pg1", "started"))),
    ];
    let mut said = String::new();
    for (during, now) in kills {
        let mut run = start_when_unlocked(&lab);
        let mut ended = false;
        wait_for(
            &format!("the upgrade to reach {during}"),
            Duration::from_secs(600),
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
            stdout(&out),
            stderr(&out)
        );
        eprintln!("killed during {during} after {:.0} s", started.elapsed().as_secs_f64());
        said.push_str(&stdout(&out));
        said.push_str(&stderr(&out));
    }
    let run = start_when_unlocked(&lab);
    let out = run.wait_with_output().unwrap();
    let took = started.elapsed();
    said.push_str(&stdout(&out));
    said.push_str(&stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{said}");
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let w = handle.join().unwrap();
    monitor.finish();
    phases.done("the upgrade, killed three times");
    eprintln!(
        "figure: PostgreSQL 15 -> 17 major upgrade of 6 database hosts, killed 3 times: {:.0} s; write downtime \
         (longest gap) {:.1} s, {} writes acknowledged",
        took.as_secs_f64(),
        w.gap.as_secs_f64(),
        w.acked.len()
    );
    for line in said
        .lines()
        .filter(|l| l.contains("rsync sent") || l.contains("pg_upgrade --link") || l.contains("copied in full"))
    {
        eprintln!("figure: {}", line.trim());
    }
    // Every standby by rsync: each stopped at the master's position.
    assert!(!said.contains("copied in full"), "{said}");
    for h in &HOSTS[1..] {
        assert!(said.contains(&format!("{h}: rsync sent")), "{h}: {said}");
    }
    assert!(SITES.missing(&pw, &w.acked).is_empty(), "acknowledged writes lost");
    SITES.same_rows_everywhere(&pw);
    SITES.everywhere(&pw, "company", "50000 1250025000");
    for h in HOSTS {
        let v = sql(&addr(h), 5432, &pw, "SHOW server_version").unwrap();
        assert!(v[0][0].as_deref().unwrap().starts_with("17."), "{h}: {v:?}");
    }
    let status = json(&lab.pgha(&["status", "--output", "json"]));
    for row in status["hosts"].as_array().unwrap() {
        assert!(row["postgres_running"].as_str().unwrap().starts_with("17."), "{row}");
    }
    // Nothing left: a run again has no step, the design deploys as is.
    let out = lab.pgha_ok(&["upgrade", "postgres", "17", "--yes"]);
    assert!(stdout(&out).contains("(0 steps)") || stderr(&out).contains("runs PostgreSQL 17 already"));
    let report = json(&lab.pgha(&["deploy", "--dry-run", "--output", "json"]));
    assert_eq!(report["changed"], 0, "{report}");
    assert_eq!(
        inside("dc2-pg2", "ls /var/lib/pgha/pg-upgrade 2>&1 | grep -c 'No such'"),
        "1"
    );

    // A backup and a point-in-time restore on 17.
    lab.pgha_ok(&["backup", "--type", "diff", "--yes"]);
    SITES.via_glb(&pw, "CREATE TABLE after (id int PRIMARY KEY)");
    SITES.via_glb(&pw, "INSERT INTO after SELECT generate_series(1, 100)");
    let t = SITES.via_glb(
        &pw,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    )[0][0]
        .clone()
        .unwrap();
    wait_for("the server's clock to pass the target", Duration::from_secs(10), || {
        SITES.via_glb(
            &pw,
            &format!("SELECT clock_timestamp() > '{t}'::timestamptz + interval '1 s'"),
        )[0][0]
            .as_deref()
            == Some("t")
    });
    SITES.via_glb(&pw, "INSERT INTO after SELECT generate_series(101, 200)");
    SITES.via_glb(&pw, "DROP TABLE company");
    lab.pgha_ok(&["backup", "check"]);
    lab.pgha_ok(&["restore", "--to", &t, "--yes"]);
    SITES.everywhere(&pw, "after", "100 5050");
    SITES.everywhere(&pw, "company", "50000 1250025000");
    phases.done("backup and restore");

    // recover-node (a full copy of a replica) and a flip, on 17.
    lab.pgha_ok(&["recover-node", "dc1-pg3", "--reclone", "--yes"]);
    phases.done("recover-node");
    flip_with_the_route_frozen(&lab, &pw);
    SITES.via_glb(&pw, "INSERT INTO after VALUES (202)");
    SITES.everywhere(&pw, "after", "102 5453");
    phases.done("flip with the route frozen");
}

/// A planned flip whose new cloud's route to the old master (its standby
/// leader's own HAProxy) stops moving WAL just before: Debian's Patroni
/// (4.0 and 3.x) demotes a master to a standby cluster with an immediate
/// shutdown, so WAL it had flushed but not yet sent reaches the new cloud
/// from that demoted master only (CI: 2 flips of 12 stopped 168 bytes
/// short). Frozen (SIGSTOP), HAProxy keeps the session open, so the WAL
/// receiver still says "streaming"; a row written then exists only in dc1.
fn flip_with_the_route_frozen(lab: &TestLab, pw: &str) {
    use std::io::BufRead;
    let status = json(&lab.pgha_ok(&["status", "--output", "json"]));
    let leader = status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["cloud"] == "dc2" && h["role"] == "standby leader")
        .and_then(|h| h["host"].as_str())
        .unwrap_or_else(|| panic!("no standby leader in dc2: {status}"))
        .to_string();
    inside(&leader, "pkill -STOP -x haproxy");
    SITES.via_glb(pw, "INSERT INTO after VALUES (201)");
    let mut flip = lab.spawn(&["cloud", "make-primary", "dc2", "--yes"]);
    let mut said = String::new();
    let mut frozen = true;
    for line in std::io::BufReader::new(flip.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        // Once caught up: the flip reloads every HAProxy next.
        if frozen && line.contains("step 5:") {
            inside(&leader, "pkill -CONT -x haproxy");
            frozen = false;
        }
        said.push_str(&line);
        said.push('\n');
    }
    let done = flip.wait().unwrap();
    inside(&leader, "pkill -CONT -x haproxy");
    assert!(done.success(), "make-primary dc2:\n{said}");
    assert!(said.contains("streaming the rest from"), "{said}");
}
