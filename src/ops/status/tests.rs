//! Findings, the table and the probes' parsers, against fixed inputs.

use super::*;

fn row(cloud: &str, status: &str, host: &str, role: &str, tl: u64, rw: bool) -> HostRow {
    HostRow {
        cloud: cloud.into(),
        cloud_status: status.into(),
        paused: false,
        host: host.into(),
        address: String::new(),
        role: role.into(),
        state: "running".into(),
        timeline: Some(tl),
        lag_bytes: None,
        cloud_lag: None,
        pending_restart: false,
        etcd: "healthy".into(),
        haproxy_routes_to: "-".into(),
        cert_expires: None,
        read_write: Some(rw),
        site_guard: None,
        watchdog: "none".into(),
        holds_vip: None,
        release: Some("13".into()),
        postgres_running: Some("17.6".into()),
        postgres_data: Some(17),
    }
}

/// The probe is one shell script: it must parse without a warning (a
/// here-document left open once swallowed the rest of it, and every
/// host showed as unreachable).
#[test]
fn the_probe_parses_cleanly() {
    for example in ["two-clouds", "three-sites"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{example}.yaml"));
        let d = crate::design::load(&path).unwrap().design;
        let script = probe_script(&d);
        crate::shell::assert_parses_cleanly(&script);
        assert!(
            script.contains("\nPGHA_SQL\n} 2>/dev/null | sed 's/^/read_write /'\n"),
            "{script}"
        );
        // The site's gate is asked through a here-document of its own.
        assert_eq!(script.contains("\nPGHA_GATE\n"), d.site.is_some(), "{script}");
    }
}

#[test]
fn the_masters_closed_gate_is_a_finding_and_a_replicas_is_not() {
    let probe = |answer: &str| format!("site_agent active\nsite_fence active\nsite_gate active\n{answer}site_armed\n");
    let open = SiteGuard::parse(
        &probe("site_gate_answer 200 the site lease was renewed 1.2 s ago\n"),
        14,
    );
    assert_eq!(open.gate_answer, Some(200));
    assert_eq!(open.gate_says, "the site lease was renewed 1.2 s ago");
    assert!(open.armed);
    let closed = SiteGuard::parse(
        &probe("site_gate_answer 503 no renewal of the site lease is recorded since boot\n"),
        14,
    );
    let silent = SiteGuard::parse(
        &probe("site_gate_answer none ConnectionRefusedError [Errno 111] Connection refused\n"),
        14,
    );
    assert_eq!(silent.gate_answer, None);
    assert_eq!(SiteGuard::parse(&probe(""), 14).gate_answer, None);
    let site = SiteStatus {
        readable: true,
        holder: Some("dc1".into()),
        ..Default::default()
    };
    let with = |g: &SiteGuard, role: &str, rw: bool| {
        let mut r = row("dc1", "primary", "a1", role, 1, rw);
        r.site_guard = Some(g.clone());
        let mut f = Vec::new();
        site_findings(&site, &[r], &mut |l, m| f.push((l, m)));
        f
    };
    assert!(with(&open, "leader", true).is_empty());
    assert!(with(&closed, "replica", false).is_empty());
    let f = with(&closed, "leader", true);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].1
            .starts_with("a1: the master's site gate is CLOSED, 503 (no renewal of the site lease"),
        "{f:?}"
    );
    let f = with(&silent, "leader", true);
    assert!(f[0].1.contains("could not be asked (ConnectionRefusedError"), "{f:?}");
}

#[test]
fn an_unarmed_host_is_a_finding_while_the_site_answers() {
    let unarmed = SiteGuard::parse(
        "site_agent active\nsite_fence active\nsite_gate active\nsite_gate_answer 200 not armed\n",
        14,
    );
    assert!(!unarmed.armed);
    let found = |readable: bool| {
        let site = SiteStatus {
            readable,
            holder: Some("dc1".into()),
            ..Default::default()
        };
        let mut r = row("dc1", "primary", "a2", "replica", 1, false);
        r.site_guard = Some(unarmed.clone());
        let mut f = Vec::new();
        site_findings(&site, &[r], &mut |l, m| f.push((l, m)));
        f
    };
    let f = found(true);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].1.starts_with("a2: the site fence is not armed"), "{f:?}");
    // A site nobody can read is its own finding; arming waits on it.
    assert!(found(false).iter().all(|(_, m)| !m.contains("not armed")));
}

fn levels(f: &[Finding]) -> Vec<Level> {
    f.iter().map(|f| f.level).collect()
}

#[test]
fn a_healthy_cluster_has_no_findings() {
    let rows = [
        row("dc1", "primary", "a1", "leader", 2, true),
        row("dc1", "primary", "a2", "replica", 2, false),
        row("dc2", "secondary", "b1", "standby leader", 2, false),
    ];
    assert!(findings(&rows, &Default::default(), None).is_empty());
}

// HAZARDS #5: after a flip made during a partition, the old primary
// cloud's master still takes writes once the link is back.
#[test]
fn the_master_reports_how_far_each_standby_is() {
    let probe = "patroni active\nread_write t\nsender dc2-pg1 1024 0.25\nsender dc1-pg2 0 -\nsender dc3-pg1 - -\n";
    assert_eq!(
        parse_senders(probe),
        [
            (
                "dc2-pg1".to_string(),
                CloudLag {
                    bytes: Some(1024),
                    seconds: Some(0.25)
                }
            ),
            (
                "dc1-pg2".to_string(),
                CloudLag {
                    bytes: Some(0),
                    seconds: Some(0.0)
                }
            ),
            (
                "dc3-pg1".to_string(),
                CloudLag {
                    bytes: None,
                    seconds: None
                }
            ),
        ]
    );
    assert!(parse_senders("read_write f\n").is_empty());
}

#[test]
fn a_paused_cloud_is_a_warning_once() {
    let mut hosts = vec![
        row("dc1", "primary", "a1", "leader", 1, true),
        row("dc2", "secondary", "b1", "standby leader", 1, false),
        row("dc2", "secondary", "b2", "replica", 1, false),
    ];
    for h in &mut hosts[1..] {
        h.paused = true;
    }
    let f = findings(&hosts, &Default::default(), None);
    assert_eq!(levels(&f), [Level::Warning]);
    assert!(f[0].message.starts_with("dc2 is paused"), "{f:?}");
    assert!(f[0].message.contains("pgha resume --cloud dc2"), "{f:?}");
}

#[test]
fn a_writable_host_outside_the_primary_cloud_is_a_split_brain() {
    let rows = [
        row("dc1", "secondary", "a1", "leader", 1, true),
        row("dc2", "primary", "b1", "leader", 2, true),
    ];
    let f = findings(&rows, &Default::default(), None);
    assert_eq!(levels(&f), [Level::Danger, Level::Danger], "{f:?}");
    assert!(
        f[0].message
            .contains("split brain: 2 hosts take writes: a1 (dc1), b1 (dc2)"),
        "{f:?}"
    );
    assert!(
        f[1].message
            .contains("a1 takes writes, but its cloud dc1 is not the primary cloud"),
        "{f:?}"
    );
}

// HAZARDS #4: the only running replica is behind the newest timeline.
#[test]
fn a_cloud_without_leader_says_why() {
    let mut stopped = row("dc1", "primary", "a2", "stopped", 2, false);
    stopped.read_write = None;
    // Stopped hosts show the timeline of their last checkpoint.
    let mut old = row("dc1", "primary", "a1", "stopped", 1, false);
    old.read_write = None;
    let rows = [
        old,
        stopped,
        row("dc1", "primary", "a3", "replica", 1, false),
        row("dc2", "secondary", "b1", "standby leader", 2, false),
    ];
    let f = findings(&rows, &Default::default(), None);
    assert_eq!(levels(&f), [Level::Warning], "{f:?}");
    assert!(
        f[0].message
            .starts_with("cloud dc1 has no leader: a3 on an older timeline than the newest (2)"),
        "{f:?}"
    );
    assert!(f[0].message.contains("`pgha failover --to HOST`"), "{f:?}");
}

#[test]
fn a_virtual_ip_off_its_leader_or_on_two_hosts_is_a_finding() {
    let cloud = |holders: [Option<bool>; 3]| {
        let mut rows = vec![
            row("dc1", "primary", "a1", "leader", 3, true),
            row("dc1", "primary", "a2", "replica", 3, false),
            row("dc1", "primary", "a3", "replica", 3, false),
        ];
        for (r, h) in rows.iter_mut().zip(holders) {
            r.holds_vip = h;
        }
        findings(&rows, &Default::default(), None)
    };
    let (t, f, n) = (Some(true), Some(false), None);
    assert!(cloud([t, f, f]).is_empty(), "on the leader alone");
    assert!(cloud([n, n, n]).is_empty(), "no virtual IP");
    assert!(cloud([n, f, f]).is_empty(), "the leader did not answer");
    let off = cloud([f, t, n]);
    assert_eq!(levels(&off), [Level::Warning]);
    assert!(
        off[0]
            .message
            .starts_with("cloud dc1's virtual IP is on a2, not on its leader a1"),
        "{off:?}"
    );
    let none = cloud([f, f, f]);
    assert!(
        none[0].message.contains("is on no host, not on its leader a1"),
        "{none:?}"
    );
    assert!(
        none[0]
            .message
            .contains("journalctl -u pgha-vip-leader -u pgha-vip-manager"),
        "{none:?}"
    );
    let two = cloud([t, t, f]);
    assert!(two[0].message.contains("is on 2 hosts (a1, a2)"), "{two:?}");
}

#[test]
fn the_watchdog_line_names_where_patroni_holds_it() {
    let mut rows = vec![
        row("dc1", "primary", "a1", "leader", 3, true),
        row("dc1", "primary", "a2", "replica", 3, false),
        row("dc1", "primary", "a3", "replica", 3, false),
    ];
    rows[0].watchdog = "held".into();
    rows[1].watchdog = "present".into();
    let s = Status {
        watchdog_mode: crate::design::Watchdog::Automatic,
        cluster: "c".into(),
        hosts: rows,
        glb: None,
        site: None,
        earliest_cert_expiry: None,
        backup: None,
        findings: Vec::new(),
    };
    assert_eq!(
        watchdog_line(&s),
        "Patroni watchdog: mode automatic; armed on a1; a device, not held, on 1; no device on 1 of 3 hosts"
    );
}

#[test]
fn replicas_behind_and_pending_changes_are_warnings() {
    let rows = [
        row("dc1", "primary", "a1", "leader", 3, true),
        row("dc1", "primary", "a2", "replica", 2, false),
    ];
    let pending = [("dc2".to_string(), vec!["become a standby cluster".to_string()])].into();
    let f = findings(&rows, &pending, None);
    assert_eq!(levels(&f), [Level::Warning, Level::Warning], "{f:?}");
    assert!(
        f[0].message.contains("a2 is on timeline 2, the newest in dc1 is 3"),
        "{f:?}"
    );
    assert!(
        f[1].message.contains("pgha owes cloud dc2: become a standby cluster"),
        "{f:?}"
    );
    let s = Status {
        watchdog_mode: crate::design::Watchdog::Automatic,
        cluster: "c".into(),
        hosts: Vec::new(),
        glb: None,
        site: None,
        earliest_cert_expiry: None,
        backup: None,
        findings: f,
    };
    let e = attention(&s).unwrap_err();
    assert_eq!(crate::error::exit_code(&e), 3);
}

#[test]
fn certificates_near_expiry_warn_and_expired_ones_are_unsafe() {
    let c = |days_left| CertExpiry {
        host: "a2".into(),
        expires: "2027-01-01T00:00:00Z".into(),
        days_left,
    };
    assert!(cert_findings(None).is_empty());
    assert!(cert_findings(Some(&c(30))).is_empty());
    let f = cert_findings(Some(&c(10)));
    assert_eq!(levels(&f), [Level::Warning]);
    assert!(
        f[0].message.contains("a2 expires") && f[0].message.contains("(10 days)"),
        "{f:?}"
    );
    let f = cert_findings(Some(&c(-1)));
    assert_eq!(levels(&f), [Level::Danger]);
    assert!(f[0].message.contains("a2 expired"), "{f:?}");
}

#[test]
fn backups_warn_on_failing_archiving_and_missing_or_stale_backups() {
    let repo = |status: &str, age: Option<i64>| RepoSummary {
        cloud: "dc1".into(),
        host: "b1".into(),
        status: status.into(),
        last_backup: age.map(|_| "L".into()),
        last_backup_type: age.map(|_| "full".into()),
        last_backup_at: None,
        last_backup_age_s: age,
        archive_newest_wal: None,
    };
    let healthy = BackupStatus {
        repositories: vec![repo("ok", Some(3600))],
        archiving: Some(Archiving::default()),
    };
    assert!(backup_findings(&healthy).is_empty());
    let bad = BackupStatus {
        repositories: vec![
            repo("ok", None),
            repo("ok", Some(9 * 86_400)),
            repo("unreachable over SSH", None),
        ],
        archiving: Some(Archiving {
            host: "a1".into(),
            failing: true,
            failed_count: 2,
            ..Archiving::default()
        }),
    };
    let f: Vec<String> = backup_findings(&bad).into_iter().map(|f| f.message).collect();
    assert_eq!(f.len(), 4, "{f:?}");
    assert!(f[0].starts_with("WAL archiving fails on a1 (2 failures"), "{f:?}");
    assert!(f[1].contains("holds no backup"), "{f:?}");
    assert!(f[2].contains("9 days old"), "{f:?}");
    assert!(f[3].contains("unreachable over SSH"), "{f:?}");
}

fn site(holder: Option<&str>, witness_ok: bool) -> SiteStatus {
    SiteStatus {
        readable: true,
        members: vec![
            SiteMember {
                host: "a1".into(),
                site: "dc1".into(),
                healthy: true,
            },
            SiteMember {
                host: "b1".into(),
                site: "dc2".into(),
                healthy: true,
            },
            SiteMember {
                host: "w".into(),
                site: "witness".into(),
                healthy: witness_ok,
            },
        ],
        holder: holder.map(str::to_string),
        ttl_s: 30,
        ..Default::default()
    }
}

// Issue 11: with the site lease, the holder is the primary cloud.
#[test]
fn the_site_lease_decides_which_cloud_may_write() {
    let healthy = [
        row("dc1", "primary", "a1", "leader", 2, true),
        row("dc2", "secondary", "b1", "standby leader", 2, false),
    ];
    assert!(findings(&healthy, &Default::default(), Some(&site(Some("dc1"), true))).is_empty());
    // After an automatic failover, before the design records it: dc2
    // writes and holds the lease, which is safe; the design is behind.
    let taken_over = [
        row("dc1", "primary", "a1", "standby leader", 3, false),
        row("dc2", "secondary", "b1", "leader", 3, true),
    ];
    let f = findings(&taken_over, &Default::default(), Some(&site(Some("dc2"), true)));
    assert_eq!(levels(&f), [Level::Warning], "{f:?}");
    assert!(
        f[0].message
            .contains("cloud dc2 holds the site lease but the design says dc1"),
        "{f:?}"
    );
    // A writable host outside the holder's cloud is unsafe.
    let f = findings(&healthy, &Default::default(), Some(&site(Some("dc2"), true)));
    assert_eq!(f[0].level, Level::Danger, "{f:?}");
    assert!(f[0].message.contains("a1 takes writes"), "{f:?}");
    // No holder, a member down, no majority: each a warning.
    let f = findings(&taken_over[..1], &Default::default(), Some(&site(None, false)));
    let text: Vec<&str> = f.iter().map(|f| f.message.as_str()).collect();
    assert!(
        text.iter().any(|m| m.contains("site member w (witness) is unhealthy")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|m| m.contains("no cloud holds the site lease")),
        "{text:?}"
    );
    let dark = SiteStatus {
        readable: false,
        ..site(None, false)
    };
    let f = findings(&healthy, &Default::default(), Some(&dark));
    assert!(f[0].message.contains("no majority"), "{f:?}");
}

/// Issue 26: each host's release and server, read from the probe (a line
/// of another shape is left unread), and a mixed cluster named by release
/// and by PostgreSQL major; a uniform one says nothing of versions.
#[test]
fn versions_are_read_and_a_mixed_cluster_is_a_finding() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/two-clouds.yaml");
    let d = crate::design::load(&path).unwrap().design;
    let cloud = &d.clouds[0];
    let read = |probe: &str| host_row(&d, cloud, false, &cloud.hosts[0], None, Some(probe), "p");
    let running = read("patroni active\nrelease 13\npg_server 17.6\npg_data 17\n");
    assert_eq!(
        (
            running.release.as_deref(),
            running.postgres_running.as_deref(),
            running.postgres_data
        ),
        (Some("13"), Some("17.6"), Some(17))
    );
    assert_eq!(running.versions(), "13 / 17.6");
    let stopped = read("patroni inactive\nrelease 12\npg_data 15\n");
    assert_eq!(
        (stopped.postgres_major(), stopped.versions().as_str()),
        (Some(15), "12 / 15 (data)")
    );
    let odd = read("release 13; reboot\npg_server $(x)\npg_data fifteen\n");
    assert_eq!(
        (odd.release, odd.postgres_running, odd.postgres_data),
        (None, None, None)
    );
    assert_eq!(read("").versions(), "- / -");

    let new = row("dc1", "primary", "dc1-pg1", "leader", 1, true);
    let mut old = row("dc1", "primary", "dc1-pg2", "replica", 1, false);
    let said = |rows: &[HostRow]| -> Vec<String> {
        findings(rows, &Default::default(), None)
            .into_iter()
            .map(|f| f.message)
            .collect()
    };
    assert_eq!(said(&[new.clone(), old.clone()]), Vec::<String>::new());
    old.release = Some("12".into());
    old.postgres_running = None;
    old.postgres_data = Some(15);
    let found = said(&[new, old]);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        found[0],
        "a mixed cluster: Debian 12 on dc1-pg2; Debian 13 on dc1-pg1; hosts of two releases run different Patroni, \
         etcd and HAProxy versions, for the span of a release upgrade only"
    );
    assert!(
        found[1].starts_with("PostgreSQL major versions differ: PostgreSQL 15 on dc1-pg2; PostgreSQL 17 on dc1-pg1;"),
        "{found:?}"
    );
}

#[test]
fn a_glb_not_asked_is_not_known_and_one_with_no_server_up_is_named() {
    let glb = |up: &[&str], unread: &[&str]| GlbStatus {
        fqdn: "db.example".into(),
        port: 5000,
        routes_to_cloud: None,
        up: up.iter().map(|s| s.to_string()).collect(),
        unread: unread.iter().map(|s| s.to_string()).collect(),
    };
    assert!(glb_findings(&glb(&["dc1-pg1"], &[])).is_empty());
    let none = glb_findings(&glb(&[], &[]));
    assert_eq!(none.len(), 1);
    assert!(none[0].message.contains("no server up"), "{}", none[0].message);
    let unread = glb_findings(&glb(&[], &["glb1: Connection refused"]));
    assert_eq!(unread.len(), 1, "not read is not 'no server up'");
    assert!(unread[0].message.contains("glb1: Connection refused") && unread[0].message.contains("not known"));
    assert_eq!(unread[0].level, Level::Warning);
}

#[test]
fn nagios_gets_its_own_codes_and_the_worst_finding_first() {
    let status = |findings: Vec<Finding>| Status {
        watchdog_mode: crate::design::Watchdog::Automatic,
        cluster: "c".into(),
        hosts: vec![row("dc1", "primary", "a1", "leader", 3, true)],
        glb: None,
        site: None,
        earliest_cert_expiry: None,
        backup: None,
        findings,
    };
    let finding = |level, message: &str| Finding {
        level,
        message: message.into(),
    };
    assert_eq!(
        nagios(&status(Vec::new())),
        (0, "PGHA OK - cluster c: 1 hosts, nothing needs attention".to_string())
    );
    let (code, out) = nagios(&status(vec![finding(Level::Warning, "a2 lags | by\n 3 MB")]));
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "PGHA WARNING - cluster c: 1 finding(s), the worst: a2 lags / by 3 MB\na2 lags / by 3 MB"
    );
    let (code, out) = nagios(&status(vec![
        finding(Level::Danger, "a1 and b1 take writes"),
        finding(Level::Warning, "a2 lags"),
    ]));
    assert_eq!(code, 2);
    assert_eq!(
        out,
        "PGHA CRITICAL - cluster c: 2 finding(s), the worst: a1 and b1 take writes\na1 and b1 take writes\na2 lags"
    );
}
