//! `cargo bench --bench failover`: on a fresh deployed lab, a client writes
//! through the GLB every 100 ms and the write gap is measured for a clean
//! governor stop, a kill and a network cut of the master; then the planned
//! cloud flip (make-primary to the first acknowledged write) and recover-node
//! on a database of about 1 GB (fast path, then --reclone). Prints figures.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{sql, TestLab};

const P: &str = "10.72.0";
const DC1: [&str; 3] = ["10.72.0.11", "10.72.0.12", "10.72.0.13"];

fn glb() -> String {
    format!("{P}.5")
}

fn master(pw: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for (i, a) in DC1.iter().enumerate() {
            if sql(a, 5432, pw, "SELECT NOT pg_is_in_recovery()").is_ok_and(|r| r == vec![vec![Some("t".to_string())]])
            {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no master");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `pgha status` shows every member of both clouds running or
/// streaming, so the next fault starts from a healthy cluster.
fn wait_healthy(lab: &TestLab) {
    common::wait_for("every member healthy", Duration::from_secs(180), || {
        let out = lab.pgha(&["status", "--output", "json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|s| {
            s["hosts"]
                .as_array()
                .is_some_and(|h| h.len() == 6 && h.iter().all(|r| r["state"] == "running" || r["state"] == "streaming"))
        })
    });
}

/// Writes every 100 ms from `start` until one is acknowledged; the gap.
fn gap_after(pw: &str, start: Instant, id: &mut i64) -> Duration {
    let deadline = start + Duration::from_secs(120);
    loop {
        *id += 1;
        if sql(&glb(), 5000, pw, &format!("INSERT INTO ticks VALUES ({id})")).is_ok() {
            return start.elapsed();
        }
        assert!(Instant::now() < deadline, "no write acknowledged within 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() {
    let lab = TestLab::up("pgha-failover", &format!("{P}.0/24"), &common::bench_os());
    let out = lab.pgha(&["deploy", "--yes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pw = lab.superuser_password();
    sql(&glb(), 5000, &pw, "CREATE TABLE ticks (id bigint PRIMARY KEY)").unwrap();
    let mut id = 0;
    println!(
        "lab on {}; governor settings: ttl 20 s, loop_wait 2 s, retry_timeout 4 s",
        common::bench_os()[1]
    );

    // Clean governor stop.
    let m = master(&pw);
    let timeline = sql(DC1[m], 5432, &pw, "SELECT timeline_id FROM pg_control_checkpoint()").unwrap()[0][0]
        .clone()
        .unwrap();
    let t = Instant::now();
    lab.ssh_ok(DC1[m], "systemctl stop patroni");
    println!(
        "failover write gap, governor stopped: {:.1} s",
        gap_after(&pw, t, &mut id).as_secs_f64()
    );
    // HAZARDS #4: until the other replica streams from the new master, a
    // second failure leaves the cloud with no master.
    let m2 = master(&pw);
    let third = (0..3).find(|i| *i != m && *i != m2).unwrap();
    let follows =
        format!("SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming' AND received_tli > {timeline}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !sql(DC1[third], 5432, &pw, &follows).is_ok_and(|r| r[0][0].as_deref() == Some("1")) {
        assert!(Instant::now() < deadline, "the other replica never followed");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "the other replica streams from the new master {:.1} s after the stop",
        t.elapsed().as_secs_f64()
    );
    lab.ssh_ok(DC1[m], "systemctl start patroni");
    wait_healthy(&lab);

    // Kill (power off).
    let m = master(&pw);
    let name = format!("dc1-pg{}", m + 1);
    let t = Instant::now();
    assert!(lab.lab(&["kill", &name]).status.success());
    println!(
        "failover write gap, master killed: {:.1} s",
        gap_after(&pw, t, &mut id).as_secs_f64()
    );
    assert!(lab.lab(&["start", &name]).status.success());
    wait_healthy(&lab);

    // Network cut.
    let m = master(&pw);
    let name = format!("dc1-pg{}", m + 1);
    let t = Instant::now();
    assert!(lab.lab(&["cut", &name]).status.success());
    println!(
        "failover write gap, master cut off: {:.1} s",
        gap_after(&pw, t, &mut id).as_secs_f64()
    );
    assert!(lab.lab(&["heal", &name]).status.success());
    wait_healthy(&lab);

    // Planned cloud flip.
    let t = Instant::now();
    let flip = std::thread::spawn({
        let design = lab.design();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_pgha"))
                .args(["cloud", "make-primary", "dc2", "--yes", "-f"])
                .arg(design)
                .output()
                .unwrap()
        }
    });
    // The first write acknowledged by dc2's master, not one that slipped in before the drain.
    let gap = loop {
        id += 1;
        let landed = sql(
            &glb(),
            5000,
            &pw,
            &format!("INSERT INTO ticks VALUES ({id}) RETURNING host(inet_server_addr())"),
        );
        if landed.is_ok_and(|r| r[0][0].as_deref().is_some_and(|a| a.starts_with(&format!("{P}.2")))) {
            break t.elapsed();
        }
        if flip.is_finished() && t.elapsed() > Duration::from_secs(30) {
            let out = flip.join().unwrap();
            panic!(
                "the flip ended (exit {:?}) and no write reached dc2:\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no write reached dc2 within 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = flip.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    println!(
        "cloud flip (make-primary dc2, planned): first acknowledged write after {:.1} s, command took {:.1} s",
        gap.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );

    // recover-node on ~1 GB.
    let t = Instant::now();
    sql(&glb(), 5000, &pw, "CREATE TABLE big (g int, pad text)").unwrap();
    // In slices that each finish well inside the client's timeout.
    for slice in 0..18 {
        let q = format!(
            "INSERT INTO big SELECT g, repeat(md5(g::text), 31) FROM generate_series({}, {}) g",
            slice * 50_000 + 1,
            (slice + 1) * 50_000
        );
        sql(&glb(), 5000, &pw, &q).unwrap();
    }
    let size = sql(&glb(), 5000, &pw, "SELECT pg_size_pretty(pg_database_size('postgres'))").unwrap();
    println!(
        "loaded {} in {:.0} s",
        size[0][0].as_deref().unwrap_or("?"),
        t.elapsed().as_secs_f64()
    );
    // Measure recovery, not catch-up: every replica (both clouds) first
    // replays the load, so none competes for the disk meanwhile.
    let target = sql(&glb(), 5000, &pw, "SELECT pg_current_wal_lsn()").unwrap()[0][0]
        .clone()
        .unwrap();
    let caught_up = format!("SELECT pg_is_in_recovery() AND pg_wal_lsn_diff('{target}', pg_last_wal_replay_lsn()) > 0");
    let deadline = Instant::now() + Duration::from_secs(600);
    for i in [11, 12, 13, 21, 22, 23] {
        let host = format!("{P}.{i}");
        while !sql(&host, 5432, &pw, &caught_up).is_ok_and(|r| r == vec![vec![Some("f".to_string())]]) {
            assert!(Instant::now() < deadline, "{host} did not catch up");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    println!(
        "every replica replayed the load after {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let replica = "dc2-pg3";
    lab.ssh_ok("10.72.0.23", "systemctl stop patroni");
    for (label, extra) in [("fast path", None), ("--reclone", Some("--reclone"))] {
        let mut args = vec!["recover-node", replica, "--yes"];
        args.extend(extra);
        let t = Instant::now();
        let out = lab.pgha(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let verdict = stderr.lines().find(|l| l.contains("verdict:")).unwrap_or("").trim();
        println!(
            "recover-node {label} on ~1 GB: {:.1} s ({verdict})",
            t.elapsed().as_secs_f64()
        );
    }
}
