//! The binary as users meet it: exit codes, messages, help.

mod common;

use common::{example, pgha, stderr, stdout};

#[test]
fn plan_exits_zero_and_numbers_steps() {
    let out = pgha(["plan", "-f"]).clone();
    assert_eq!(out.status.code(), Some(2), "missing value for -f is a usage error");
    let out = pgha(["plan".as_ref(), "-f".as_ref(), example("two-clouds.yaml").as_os_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("23 steps"), "{}", stdout(&out));
}

#[test]
fn plan_json_is_data_on_stdout() {
    let out = pgha([
        "plan".as_ref(),
        "--output".as_ref(),
        "json".as_ref(),
        "--design".as_ref(),
        example("single-cloud.yaml").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cluster"], "pgha-single");
    assert_eq!(v["steps"][0]["number"], 1);
}

#[test]
fn default_design_is_pgha_yaml_in_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgha"))
        .arg("plan")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("pgha.yaml"), "{}", stderr(&out));
}

#[test]
fn invalid_design_exits_two_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "platform:\n  name: x\n  postgres_prot: 5432\nclouds: []\n").unwrap();
    let out = pgha(["validate".as_ref(), "-f".as_ref(), path.as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:3:3", path.display())), "{err}");
    assert!(err.contains("did you mean `postgres_port`?"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn validate_json_lists_problems() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "clouds: 3\n").unwrap();
    let out = pgha([
        "validate".as_ref(),
        "--output".as_ref(),
        "json".as_ref(),
        "-f".as_ref(),
        path.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"][0]["line"], 1);
}

#[test]
fn binary_garbage_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.yaml");
    std::fs::write(&path, [0xff, 0x00, 0x13, 0x37, b':', b'\n']).unwrap();
    let out = pgha(["plan".as_ref(), "-f".as_ref(), path.as_os_str()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn render_writes_every_file_per_host() {
    let dir = tempfile::tempdir().unwrap();
    let out = pgha([
        "render".as_ref(),
        "-f".as_ref(),
        example("two-clouds.yaml").as_os_str(),
        "--out".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for host in ["dc1/dc1-pg1", "dc2/dc2-pg3"] {
        for f in ["etc/default/etcd", "etc/patroni/config.yml", "etc/haproxy/haproxy.cfg"] {
            assert!(dir.path().join(host).join(f).is_file(), "{host}/{f}");
        }
    }
    assert!(dir.path().join("glb/glb1/etc/haproxy/haproxy.cfg").is_file());
    let patroni = std::fs::read_to_string(dir.path().join("dc1/dc1-pg1/etc/patroni/config.yml")).unwrap();
    assert!(patroni.contains("REDACTED"));
}

#[test]
fn help_text() {
    insta::assert_snapshot!("help", stdout(&pgha(["--help"])));
    insta::assert_snapshot!("help_plan", stdout(&pgha(["plan", "--help"])));
}

#[test]
fn completions_and_man_pages() {
    for shell in ["bash", "zsh", "fish"] {
        let out = pgha(["completions", shell]);
        assert_eq!(out.status.code(), Some(0));
        assert!(stdout(&out).contains("pgha"));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = pgha(["man".as_ref(), "--out".as_ref(), dir.path().as_os_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(dir.path().join("pgha.1").is_file());
    assert!(dir.path().join("pgha-plan.1").is_file());
}

/// Issue 13: `--force` accepted data loss where patronictl's only skips the
/// prompt. It is refused (exit 2, before any design is read or host
/// reached) with the flag that says what it does; make-secondary has none.
#[test]
fn force_is_refused_for_accept_data_loss() {
    for args in [
        vec!["recover-node", "dc1-pg1", "--force"],
        vec!["cloud", "make-primary", "dc2", "--force"],
    ] {
        let out = pgha(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("--accept-data-loss"), "{}", stderr(&out));
        assert!(
            !stderr(&out).contains("pgha.yaml"),
            "refused before the design: {}",
            stderr(&out)
        );
    }
    let help = stdout(&pgha(["cloud", "make-primary", "--help"]));
    assert!(
        help.contains("--accept-data-loss") && !help.contains("--force"),
        "{help}"
    );
    let help = stdout(&pgha(["cloud", "make-secondary", "--help"]));
    assert!(
        !help.contains("--accept-data-loss") && !help.contains("--force"),
        "{help}"
    );
    let help = stdout(&pgha(["recover-node", "--help"]));
    assert!(
        help.contains("--accept-data-loss") && !help.contains("--force"),
        "{help}"
    );
}

/// Issue 22: a recovery time that does not exist, or has no offset, is
/// refused before pgha reaches any host (the example's hosts do not exist:
/// a run that went further would fail to connect, exit 1).
#[test]
fn restore_times_are_refused_before_any_change() {
    let design = example("two-clouds.yaml");
    for (to, why) in [
        ("2026-02-30T00:00:00Z", "2026-02-30 does not exist"),
        ("2026-11-30 12:00:00", "no offset"),
    ] {
        let out = pgha([
            "restore".as_ref(),
            "--to".as_ref(),
            to.as_ref(),
            "--yes".as_ref(),
            "-f".as_ref(),
            design.as_os_str(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{to}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{to}: {}", stderr(&out));
    }
}

/// Issue 28: `status --nagios` that cannot tell says UNKNOWN (3) on its
/// one line, never OK; `monitoring` without the first deploy's
/// certificates says what to run.
#[test]
fn nagios_unknown_and_monitoring_before_a_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let out = pgha([
        "status".as_ref(),
        "--nagios".as_ref(),
        "-f".as_ref(),
        missing.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("PGHA UNKNOWN - "), "{}", stdout(&out));
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    let out = pgha(["status", "--nagios", "--watch"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out_dir = dir.path().join("m");
    let out = pgha([
        "monitoring".as_ref(),
        "-f".as_ref(),
        example("two-clouds.yaml").as_os_str(),
        "--out".as_ref(),
        out_dir.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("run `pgha deploy` first"), "{}", stderr(&out));
    assert!(!out_dir.exists());
}
