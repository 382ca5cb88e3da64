//! `pgha lab`: real hosts up, reachable over SSH with strict host key
//! checking, faults that observably work, and a clean `down`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{pgha, stderr, stdout};

const NAME: &str = "pgha-labtest";

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `ssh` with strict host key checking against the lab's known_hosts.
fn ssh(dir: &Path, known_hosts: &Path, address: &str, cmd: &str) -> Option<String> {
    let out = Command::new("ssh")
        .args(["-i"])
        .arg(dir.join("id_ed25519"))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=2",
        ])
        .arg(format!("root@{address}"))
        .arg(cmd)
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn poll(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn lab(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all: Vec<&std::ffi::OsStr> = vec!["lab".as_ref()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    all.extend(["--lab".as_ref(), dir.as_os_str()]);
    pgha(all)
}

#[test]
fn lab_lifecycle() {
    if !common::e2e() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let up = lab(
        &dir,
        &[
            "up",
            "--name",
            NAME,
            "--subnet",
            "10.79.0.0/24",
            "--clouds",
            "2",
            "--hosts",
            "1",
        ],
    );
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));
    assert!(stdout(&up).contains("next: pgha deploy -f"));
    let kh = dir.join("known_hosts");
    let hosts = [
        ("dc1-pg1", "10.79.0.11"),
        ("dc2-pg1", "10.79.0.21"),
        ("glb1", "10.79.0.5"),
    ];

    // Every host answers with its own name, its own host key checked.
    for (name, addr) in hosts {
        assert_eq!(ssh(&dir, &kh, addr, "hostname").as_deref(), Some(name));
    }
    let keys = std::fs::read_to_string(&kh).unwrap();
    let distinct: std::collections::HashSet<_> = keys.lines().map(|l| l.split_whitespace().nth(2)).collect();
    assert_eq!(distinct.len(), 3, "each host has its own key:\n{keys}");

    // An unknown host key is refused.
    let empty = tmp.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    assert_eq!(ssh(&dir, &empty, "10.79.0.11", "true"), None);

    // The generated design is valid and points at the lab.
    let v = pgha(["validate".as_ref(), "-f".as_ref(), dir.join("pgha.yaml").as_os_str()]);
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));

    // kill: powered off; start: boots again with its disk intact.
    assert!(ssh(&dir, &kh, "10.79.0.11", "echo before > /root/marker").is_some());
    assert_eq!(lab(&dir, &["kill", "dc1-pg1"]).status.code(), Some(0));
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &format!("{NAME}-dc1-pg1")]),
        "false"
    );
    assert_eq!(ssh(&dir, &kh, "10.79.0.11", "true"), None);
    let start = lab(&dir, &["start", "dc1-pg1"]);
    assert_eq!(start.status.code(), Some(0), "{}", stderr(&start));
    assert_eq!(
        ssh(&dir, &kh, "10.79.0.11", "cat /root/marker").as_deref(),
        Some("before")
    );

    // cut a whole cloud: unreachable; heal: back.
    assert_eq!(lab(&dir, &["cut", "dc2"]).status.code(), Some(0));
    poll("dc2 to be cut off", Duration::from_secs(20), || {
        ssh(&dir, &kh, "10.79.0.21", "true").is_none()
    });
    let status = lab(&dir, &["status", "--output", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let dc2 = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "dc2-pg1")
        .unwrap();
    assert_eq!(dc2["network"], "cut");
    assert_eq!(lab(&dir, &["heal", "dc2"]).status.code(), Some(0));
    poll("dc2 to come back", Duration::from_secs(30), || {
        ssh(&dir, &kh, "10.79.0.21", "true").is_some()
    });

    // Unknown targets are a usage error.
    assert_eq!(lab(&dir, &["kill", "nosuchhost"]).status.code(), Some(2));

    // up again: reuses everything, same keys.
    let again = lab(
        &dir,
        &[
            "up",
            "--name",
            NAME,
            "--subnet",
            "10.79.0.0/24",
            "--clouds",
            "2",
            "--hosts",
            "1",
        ],
    );
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), keys);

    // down leaves nothing behind.
    let down = lab(&dir, &["down"]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("label=pgha.lab={NAME}")]),
        ""
    );
    assert_eq!(
        docker(&["network", "ls", "-q", "--filter", &format!("label=pgha.lab={NAME}")]),
        ""
    );
    assert!(!dir.exists());
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
    let out = lab(
        &tmp.path().join("lab"),
        &["up", "--name", net, "--subnet", "10.81.0.0/24"],
    );
    let gone = docker(&["network", "inspect", "-f", "{{.Name}}", net]);
    docker(&["network", "rm", net]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("not this lab's"), "{}", stderr(&out));
    assert_eq!(gone, net, "the foreign network is untouched");
}
