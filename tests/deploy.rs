//! `pgha deploy` end to end on the lab: the acceptance list of the deploy
//! issue, in an order that lets one fresh lab serve them all.

mod common;

use std::time::Duration;

use common::{sql, stderr, stdout, wait_for, TestLab};

const PRIMARY: [&str; 3] = ["10.75.0.11", "10.75.0.12", "10.75.0.13"];
const SECONDARY: [&str; 3] = ["10.75.0.21", "10.75.0.22", "10.75.0.23"];
const GLB: &str = "10.75.0.5";

const CREATE: &str = "CREATE TABLE company (id int PRIMARY KEY, name text NOT NULL, age int NOT NULL, \
address char(50), salary real, join_date date)";
const PAUL: &str = "INSERT INTO company VALUES (1, 'Paul', 32, 'California', 20000.00, '2001-07-13')";

/// Patroni's own view of a cloud, from one of its hosts: its REST API's
/// `/cluster` (the same in Patroni 3 and 4, unlike patronictl's table).
fn members(lab: &TestLab, address: &str) -> Vec<serde_json::Value> {
    let out = lab.ssh_ok(
        address,
        "python3 -c 'import urllib.request as u; print(u.urlopen(\"http://127.0.0.1:8008/cluster\").read().decode())'",
    );
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    doc["members"].as_array().unwrap().clone()
}

/// Waits until `query` on `addr`'s PostgreSQL returns exactly one row, `name`.
fn wait_for_one_name(addr: &str, pw: &str, query: &str, name: &str, seconds: u64) {
    wait_for(&format!("{name} on {addr}"), Duration::from_secs(seconds), || {
        sql(addr, 5432, pw, query).is_ok_and(|rows| rows == vec![vec![Some(name.to_string())]])
    });
}

/// Start times of the services and PostgreSQL's postmaster, per host.
fn start_marks(lab: &TestLab, address: &str) -> String {
    lab.ssh_ok(
        address,
        "systemctl show -p ExecMainStartTimestampMonotonic etcd patroni haproxy; head -1 /var/lib/postgresql/*/pgha/postmaster.pid",
    )
}

#[test]
fn deploy_end_to_end() {
    if !common::e2e() {
        return;
    }
    let lab = TestLab::up("pgha-lab", "10.75.0.0/24", &[]);

    // 7. A host key that does not match known_hosts: refused before any change.
    let kh = lab.dir.join("known_hosts");
    let good = std::fs::read_to_string(&kh).unwrap();
    let key_of = |addr: &str| {
        good.lines()
            .find(|l| l.starts_with(&format!("{addr} ")))
            .unwrap()
            .split_once(' ')
            .unwrap()
            .1
            .to_string()
    };
    let forged = good.replace(&key_of("10.75.0.12"), &key_of("10.75.0.13"));
    std::fs::write(&kh, forged).unwrap();
    let out = lab.pgha(&["deploy", "--yes"]);
    std::fs::write(&kh, &good).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("dc1-pg2") && stderr(&out).contains("host key"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        lab.ssh_ok(PRIMARY[0], "test -e /etc/patroni/config.yml && echo yes || echo no"),
        "no"
    );

    // No terminal and no --yes: refuse, exit 2.
    let out = lab.pgha(&["deploy"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"));

    // 5. An unreachable host is reported before anything changes...
    assert!(lab.lab(&["cut", "dc2-pg3"]).status.success());
    let out = lab.pgha(&["deploy", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("dc2-pg3") && stderr(&out).contains("nothing was changed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        lab.ssh_ok(PRIMARY[0], "test -e /etc/patroni/config.yml && echo yes || echo no"),
        "no"
    );
    // ...and limiting the run to reachable clouds deploys them.
    let out = lab.pgha(&["deploy", "--yes", "--cloud", "dc1", "--cloud", "glb"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(lab.lab(&["heal", "dc2-pg3"]).status.success());
    wait_for("dc2-pg3 to answer again", Duration::from_secs(30), || {
        lab.ssh(SECONDARY[2], "true").status.success()
    });

    // 4. A step that fails on one host: the Patroni REST port of dc2-pg2 is taken.
    lab.ssh_ok(
        SECONDARY[1],
        "systemd-run --unit pgha-squatter python3 -m http.server 8008 >/dev/null 2>&1",
    );
    wait_for("the squatter to listen", Duration::from_secs(10), || {
        lab.ssh(SECONDARY[1], "ss -Hltn 'sport = :8008' | grep -q LISTEN")
            .status
            .success()
    });
    let out = lab.pgha(&["deploy", "--yes"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("dc2-pg2") && err.contains("port 8008") && err.contains("governor/join"),
        "{err}"
    );
    // The primary cloud serves writes through its HAProxy port meanwhile.
    let pw = lab.superuser_password();
    sql(PRIMARY[1], 5000, &pw, CREATE).unwrap();
    lab.ssh_ok(SECONDARY[1], "systemctl stop pgha-squatter");
    let out = lab.pgha(&["deploy", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains(&pw) && !stderr(&out).contains(&pw),
        "a password was printed"
    );

    // Debian 13's stack: PostgreSQL 17 under Patroni 4.0.
    let version = sql(GLB, 5000, &pw, "SHOW server_version").unwrap();
    assert!(version[0][0].as_deref().unwrap().starts_with("17."), "{version:?}");
    assert!(lab.ssh_ok(PRIMARY[0], "patroni --version").starts_with("patroni 4.0"));

    // 1. Through the GLB: the seed's insert, readable on every other host.
    sql(GLB, 5000, &pw, PAUL).unwrap();
    for addr in PRIMARY.iter().chain(&SECONDARY) {
        wait_for_one_name(addr, &pw, "SELECT name FROM company WHERE id = 1", "Paul", 30);
    }

    // 2. One leader in dc1, the others streaming; a standby leader in dc2;
    // nothing in dc2 is read-write.
    let dc1 = members(&lab, PRIMARY[0]);
    assert_eq!(dc1.iter().filter(|m| m["role"] == "leader").count(), 1, "{dc1:?}");
    // Patroni 3.0 says a streaming replica is "running", 4.0 "streaming".
    assert!(
        dc1.iter()
            .filter(|m| m["role"] != "leader")
            .all(|m| m["role"] == "replica" && (m["state"] == "running" || m["state"] == "streaming")),
        "{dc1:?}"
    );
    let dc2 = members(&lab, SECONDARY[0]);
    assert_eq!(
        dc2.iter().filter(|m| m["role"] == "standby_leader").count(),
        1,
        "{dc2:?}"
    );
    assert!(dc2.iter().all(|m| m["role"] != "leader"), "{dc2:?}");
    for addr in SECONDARY {
        let rows = sql(addr, 5432, &pw, "SELECT pg_is_in_recovery()").unwrap();
        assert_eq!(rows, vec![vec![Some("t".to_string())]], "{addr} must be read-only");
    }

    // 3. The same deploy again: every step unchanged, nothing restarted.
    let before: Vec<String> = PRIMARY.iter().chain(&SECONDARY).map(|a| start_marks(&lab, a)).collect();
    let out = lab.pgha(&["deploy", "--yes", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["changed"], 0, "{report}");
    let after: Vec<String> = PRIMARY.iter().chain(&SECONDARY).map(|a| start_marks(&lab, a)).collect();
    assert_eq!(before, after, "a service was restarted");

    // 9 (issue 8). The Patroni config (it holds passwords) made world-readable
    // and given to root: deploy repairs owner and mode, restarting nothing.
    let config = "/etc/patroni/config.yml";
    lab.ssh_ok(SECONDARY[1], &format!("chmod 644 {config} && chown root:root {config}"));
    let out = lab.pgha(&["deploy", "--yes", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["changed"], 1, "{report}");
    assert_eq!(
        lab.ssh_ok(SECONDARY[1], &format!("stat -c '%U:%G:%a' {config}")),
        "postgres:postgres:600"
    );
    let after_fix: Vec<String> = PRIMARY.iter().chain(&SECONDARY).map(|a| start_marks(&lab, a)).collect();
    assert_eq!(after, after_fix, "fixing a mode restarted a service");

    // 10 (issue 8). Locks. Another pgha on this machine holds the design's lock.
    {
        use std::io::Write;
        use std::os::unix::io::AsRawFd;
        let path = pgha::lock::local_path(&lab.design());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
        let holder = pgha::lock::Holder::me("cloud make-primary dc2");
        f.set_len(0).unwrap();
        writeln!(f, "{}", serde_json::to_string(&holder).unwrap()).unwrap();
        let out = lab.pgha(&["deploy", "--yes"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("is held by `pgha cloud make-primary dc2`"),
            "{}",
            stderr(&out)
        );
        let out = lab.pgha(&["switchover", "--yes"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    }
    // An operator on another machine holds the cluster lock in dc1's etcd.
    let value = pgha::remote::base64(
        br#"{"user":"alice","host":"ops2","pid":4242,"command":"cloud make-primary dc2","since":0}"#,
    )
    .replace('\n', "");
    let lease = lab.ssh_ok(
        PRIMARY[0],
        &format!(
            "export ETCDCTL_API=3; id=$(etcdctl lease grant 120 | sed -n 's/^lease \\([0-9a-f]*\\) granted.*/\\1/p'); \
             etcdctl put /pgha/pgha-lab/pgha-lock {value} --lease=$id >/dev/null && echo $id"
        ),
    );
    for args in [
        &["deploy", "--yes"][..],
        &["cloud", "make-primary", "dc2", "--yes"],
        &["recover-node", "dc1-pg2", "--yes"],
    ] {
        let out = lab.pgha(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("by alice@ops2 (pid 4242)"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    lab.ssh_ok(PRIMARY[0], &format!("ETCDCTL_API=3 etcdctl lease revoke {lease}"));

    // 11 (issue 8). Day-two commands speak JSON: the plan, then each step's outcome.
    let out = lab.pgha(&["cloud", "make-primary", "dc2", "--dry-run", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["dry_run"].as_bool(), v["results"].as_array().map(Vec::len)),
        (Some(true), Some(0)),
        "{v}"
    );
    assert!(v["plan"].as_array().unwrap().len() > 3, "{v}");
    let out = lab.pgha(&["switchover", "--yes", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["results"].as_array().unwrap().len(), 2, "{v}");
    let out = lab.pgha(&["recover-node", "dc2-pg3", "--yes", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let _: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // 12 (issue 8). Ctrl-C stops a run, which says what it completed and
    // leaves no SSH control master behind (they outlive a killed process).
    assert_eq!(lab.ssh_masters(), Vec::<String>::new());
    let mut interrupted = None;
    for _ in 0..3 {
        let mut child = lab.spawn(&["deploy", "--yes"]);
        let mut exited = false;
        wait_for("pgha's SSH masters to the 7 hosts", Duration::from_secs(60), || {
            exited = child.try_wait().unwrap().is_some();
            exited || lab.ssh_masters().len() >= 7
        });
        if exited {
            continue; // it finished before the signal: try again
        }
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
        interrupted = Some(child.wait_with_output().unwrap());
        break;
    }
    let out = interrupted.expect("a deploy was interrupted");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted (Ctrl-C): "), "{}", stderr(&out));
    assert!(stderr(&out).contains("SSH connections closed"), "{}", stderr(&out));
    wait_for("no SSH master left", Duration::from_secs(15), || {
        lab.ssh_masters().is_empty()
    });
    // Its cluster lock expires within the lease; then deploy runs again.
    wait_for("a deploy after the interrupted one", Duration::from_secs(90), || {
        lab.pgha(&["deploy", "--yes"]).status.success()
    });

    // 8. A second failover before the last replica followed the first: that
    // replica, still on the old timeline, must not be promoted. It would
    // start "timeline 2" again without the new master's commits (seen in the
    // seed scenario before the design set Patroni's check_timeline).
    // Patroni's view from a host that is never cut.
    // The leader key in dc1's etcd (read where Patroni may be stopped).
    let leader_seen_from = |addr: &str| {
        let out = lab.ssh_ok(
            addr,
            "ETCDCTL_API=3 etcdctl --command-timeout=3s get /pgha/pgha-lab/leader --print-value-only",
        );
        (!out.is_empty()).then_some(out)
    };
    let address = |name: &str| PRIMARY[name.trim_start_matches("dc1-pg").parse::<usize>().unwrap() - 1];
    let first = leader_seen_from(PRIMARY[0]).expect("a leader in dc1");
    let leader = || leader_seen_from(address(&first));
    let others: Vec<String> = (1..=3).map(|i| format!("dc1-pg{i}")).filter(|n| *n != first).collect();
    let (second, straggler) = (&others[0], &others[1]);
    assert!(lab.lab(&["cut", straggler]).status.success());
    lab.ssh_ok(address(&first), "systemctl stop patroni");
    wait_for(&format!("{second} to lead dc1"), Duration::from_secs(40), || {
        leader().as_ref() == Some(second)
    });
    const ALLEN: &str = "INSERT INTO company VALUES (2, 'Allen', 25, 'Texas', NULL, '2007-12-13')";
    wait_for("Allen through the GLB", Duration::from_secs(20), || {
        sql(GLB, 5000, &pw, ALLEN).is_ok()
    });
    // The new timeline is in etcd: that is what check_timeline compares with.
    wait_for("timeline 2 in dc1's etcd", Duration::from_secs(20), || {
        lab.ssh_ok(address(second), "patronictl -c /etc/patroni/config.yml history -f json") != "[]"
    });
    lab.ssh_ok(address(second), "systemctl stop patroni");
    assert!(lab.lab(&["heal", straggler]).status.success());
    let quiet_until = std::time::Instant::now() + Duration::from_secs(2 * 20);
    while std::time::Instant::now() < quiet_until {
        let rw = sql(address(straggler), 5432, &pw, "SELECT NOT pg_is_in_recovery()");
        assert_ne!(
            rw,
            Ok(vec![vec![Some("t".to_string())]]),
            "{straggler} was promoted from the old timeline"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The master that holds Allen comes back; everyone follows it.
    lab.ssh_ok(address(second), "systemctl start patroni");
    lab.ssh_ok(address(&first), "systemctl start patroni");
    for addr in PRIMARY.iter().chain(&SECONDARY) {
        wait_for_one_name(addr, &pw, "SELECT name FROM company WHERE id = 2", "Allen", 90);
    }
    assert_eq!(leader().as_ref(), Some(second));
}

#[test]
fn deploy_on_bare_hosts_installs_everything() {
    if !common::e2e() {
        return;
    }
    // One host per cloud keeps the package downloads small; the path is the same.
    let lab = TestLab::up("pgha-bare", "10.76.0.0/24", &["--image", "bare", "--hosts", "1"]);
    assert_eq!(
        lab.ssh_ok("10.76.0.11", "command -v patroni || echo missing"),
        "missing"
    );
    let out = lab.pgha(&["deploy", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let pw = lab.superuser_password();
    sql("10.76.0.5", 5000, &pw, CREATE).unwrap();
    sql("10.76.0.5", 5000, &pw, PAUL).unwrap();
    // In the secondary cloud.
    wait_for_one_name("10.76.0.21", &pw, "SELECT name FROM company", "Paul", 30);
    // The distribution's default cluster was never created.
    assert_eq!(
        lab.ssh_ok("10.76.0.11", "ls -d /etc/postgresql/*/main 2>/dev/null || echo no"),
        "no"
    );
}

#[test]
fn deploy_grows_a_cloud_with_etcd_member_add() {
    if !common::e2e() {
        return;
    }
    let lab = TestLab::up("pgha-grow", "10.71.0.0/24", &["--clouds", "1"]);
    // First deploy two of the three hosts.
    let inventory = lab.dir.join("inventories/dc1.yaml");
    let all = std::fs::read_to_string(&inventory).unwrap();
    let two: String = all
        .lines()
        .take_while(|l| !l.contains("dc1-pg3"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&inventory, two).unwrap();
    let design = std::fs::read_to_string(lab.design()).unwrap();
    std::fs::write(lab.design(), design.replace("scaling: 3", "scaling: 2")).unwrap();
    let out = lab.pgha(&["deploy", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Right after a fresh deploy nothing is left to change: Patroni keeps
    // the timings the design gave it (Patroni 4 raises a ttl under 20,
    // which the design no longer allows).
    let out = lab.pgha(&["deploy", "--dry-run", "--output", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["changed"], 0, "{report}");
    let etcd_id = lab.ssh_ok(
        "10.71.0.11",
        "ETCDCTL_API=3 etcdctl endpoint status -w simple | cut -d, -f2",
    );

    // Then the third: it joins the running etcd cluster and streams.
    std::fs::write(&inventory, all).unwrap();
    std::fs::write(lab.design(), design).unwrap();
    let out = lab.pgha(&["deploy", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("join the running etcd cluster"),
        "{}",
        stdout(&out)
    );
    let members = lab.ssh_ok("10.71.0.13", "ETCDCTL_API=3 etcdctl member list");
    assert_eq!(
        members.lines().filter(|l| l.contains(", started, ")).count(),
        3,
        "{members}"
    );
    // The same cluster, not a new one.
    assert_eq!(
        lab.ssh_ok(
            "10.71.0.11",
            "ETCDCTL_API=3 etcdctl endpoint status -w simple | cut -d, -f2"
        ),
        etcd_id
    );
    let pw = lab.superuser_password();
    sql("10.71.0.5", 5000, &pw, CREATE).unwrap();
    sql("10.71.0.5", 5000, &pw, PAUL).unwrap();
    // On the new host.
    wait_for_one_name("10.71.0.13", &pw, "SELECT name FROM company", "Paul", 30);
    // And a third deploy changes nothing.
    let out = lab.pgha(&["deploy", "--yes", "--output", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["changed"], 0, "{report}");
}
