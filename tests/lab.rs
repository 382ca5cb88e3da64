//! `pgha lab`: real hosts up, reachable over SSH with strict host key
//! checking, faults that observably work, and a clean `down`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{stderr, stdout, wait_for, TestLab};

const NAME: &str = "pgha-labtest";
const UP: [&str; 6] = ["--subnet", "10.79.0.0/24", "--clouds", "2", "--hosts", "1"];

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn lab_lifecycle() {
    if !common::e2e() {
        return;
    }
    let lab = TestLab::up(NAME, "10.79.0.0/24", &UP[2..]);
    let kh = lab.dir.join("known_hosts");
    let hosts = [
        ("dc1-pg1", "10.79.0.11"),
        ("dc2-pg1", "10.79.0.21"),
        ("glb1", "10.79.0.5"),
        ("witness", "10.79.0.4"),
        // Each cloud's backup repository.
        ("dc1-backup", "10.79.0.19"),
        ("dc2-backup", "10.79.0.29"),
    ];
    let answers = |addr: &str| lab.ssh(addr, "true").status.success();

    // Every host answers with its own name, its own host key checked.
    for (name, addr) in hosts {
        assert_eq!(lab.ssh_ok(addr, "hostname"), name);
    }
    let keys = std::fs::read_to_string(&kh).unwrap();
    let distinct: std::collections::HashSet<_> = keys.lines().map(|l| l.split_whitespace().nth(2)).collect();
    assert_eq!(distinct.len(), 6, "each host has its own key:\n{keys}");

    // An unknown host key is refused.
    let empty = lab.dir.with_file_name("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    assert!(!lab.ssh_checking(&empty, "10.79.0.11", "true").status.success());

    // The generated design is valid and points at the lab, backups included;
    // the repositories are no database hosts.
    let v = lab.pgha(&["validate"]);
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
    let design = std::fs::read_to_string(lab.design()).unwrap();
    assert!(
        design.contains("    - cloud: dc2\n      name: dc2-backup\n      address: 10.79.0.29\n"),
        "{design}"
    );
    let inventory = std::fs::read_to_string(lab.dir.join("inventories/dc1.yaml")).unwrap();
    assert!(!inventory.contains("backup"), "{inventory}");

    // kill: powered off; start: boots again with its disk intact.
    lab.ssh_ok("10.79.0.11", "echo before > /root/marker");
    assert_eq!(lab.lab(&["kill", "dc1-pg1"]).status.code(), Some(0));
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &format!("{NAME}-dc1-pg1")]),
        "false"
    );
    assert!(!answers("10.79.0.11"));
    let start = lab.lab(&["start", "dc1-pg1"]);
    assert_eq!(start.status.code(), Some(0), "{}", stderr(&start));
    assert_eq!(lab.ssh_ok("10.79.0.11", "cat /root/marker"), "before");

    // cut a whole cloud: unreachable; heal: back.
    assert_eq!(lab.lab(&["cut", "dc2"]).status.code(), Some(0));
    wait_for("dc2 to be cut off", Duration::from_secs(20), || !answers("10.79.0.21"));
    let status = lab.lab(&["status", "--output", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let dc2 = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "dc2-pg1")
        .unwrap();
    assert_eq!(dc2["network"], "cut");
    assert_eq!(lab.lab(&["heal", "dc2"]).status.code(), Some(0));
    wait_for("dc2 to come back", Duration::from_secs(30), || answers("10.79.0.21"));

    // partition the witness: no cloud reaches it, and back.
    let reaches_witness = || {
        lab.ssh_ok(
            "10.79.0.11",
            "timeout 2 bash -c '</dev/tcp/10.79.0.4/22' && echo open || echo cut",
        )
    };
    assert_eq!(lab.lab(&["partition", "witness"]).status.code(), Some(0));
    assert_eq!(reaches_witness(), "cut");
    assert_eq!(lab.lab(&["unpartition", "witness"]).status.code(), Some(0));
    assert_eq!(reaches_witness(), "open");

    // Unknown targets are a usage error.
    assert_eq!(lab.lab(&["kill", "nosuchhost"]).status.code(), Some(2));

    // up again: reuses everything, same keys.
    let mut again = vec!["up", "--name", NAME];
    again.extend(UP);
    let again = lab.lab(&again);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(stdout(&again).contains("next: pgha deploy -f"));
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), keys);

    // down leaves nothing behind.
    let down = lab.lab(&["down"]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("label=pgha.lab={NAME}")]),
        ""
    );
    assert_eq!(
        docker(&["network", "ls", "-q", "--filter", &format!("label=pgha.lab={NAME}")]),
        ""
    );
    assert!(!lab.dir.exists());
}

#[test]
fn lab_never_takes_over_what_is_not_its_own() {
    if !common::e2e() {
        return;
    }
    let net = "pgha-foreign";
    docker(&["network", "rm", net]);
    let created = Command::new("docker")
        .args(["network", "create", "--subnet", "10.80.0.0/24", net])
        .status()
        .unwrap();
    assert!(created.success());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let out = common::pgha([
        "lab".as_ref(),
        "up".as_ref(),
        "--name".as_ref(),
        net.as_ref(),
        "--subnet".as_ref(),
        "10.81.0.0/24".as_ref(),
        "--lab".as_ref(),
        dir.as_os_str(),
    ] as [&std::ffi::OsStr; 8]);
    let kept = docker(&["network", "inspect", "-f", "{{.Name}}", net]);
    docker(&["network", "rm", net]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("not this lab's"), "{}", stderr(&out));
    assert_eq!(kept, net, "the foreign network is untouched");
}
