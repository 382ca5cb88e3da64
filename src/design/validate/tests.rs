//! One test per check: the message, the field and the line it points at.

use super::*;

const BASE: &str = "\
platform:
  name: demo
clouds:
  - name: dc1
    status: primary
    hosts:
      - {name: a1, address: 10.0.0.1}
      - {name: a2, address: 10.0.0.2}
      - {name: a3, address: 10.0.0.3}
  - name: dc2
    status: secondary
    hosts:
      - {name: b1, address: 10.0.1.1}
      - {name: b2, address: 10.0.1.2}
      - {name: b3, address: 10.0.1.3}
";

fn load(src: &str) -> Result<Loaded, Invalid> {
    load_str(src, Path::new("design.yaml"))
}

/// The problems of an invalid design.
fn problems(src: &str) -> Vec<Problem> {
    match load(src) {
        Ok(l) => panic!("expected an invalid design, got warnings {:?}", l.warnings),
        Err(e) => e.problems,
    }
}

/// Asserts that some error mentions `text` at `line`, in field `field`.
fn assert_error(src: &str, text: &str, field: &str, line: usize) {
    let ps = problems(src);
    let found = ps
        .iter()
        .find(|p| p.is_error() && p.message.contains(text))
        .unwrap_or_else(|| panic!("no error containing {text:?} in {ps:#?}"));
    assert_eq!(found.field, field, "{found}");
    assert_eq!(found.line, Some(line), "{found}");
    assert!(found.hint.is_some(), "every problem carries a hint: {found}");
}

fn warnings(src: &str) -> Vec<Problem> {
    load(src).unwrap_or_else(|e| panic!("{e}")).warnings
}

#[test]
fn base_design_is_valid_and_quiet() {
    let l = load(BASE).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(l.design.clouds.len(), 2);
    assert_eq!(l.design.haproxy.port, 5000);
    assert_eq!(l.design.platform.data_dir, "/var/lib/postgresql/17/pgha");
    assert_eq!(l.design.secrets_file, Path::new("design.secrets.yaml"));
}

#[test]
fn an_unnamed_postgres_version_is_the_release_s_and_a_named_one_stays() {
    let with = |extra: &str| {
        load(&BASE.replace("name: demo", &format!("name: demo{extra}")))
            .unwrap()
            .design
    };
    let on = |d: &Design, release_version: u32| {
        let p = d.for_postgres(release_version).platform;
        (p.postgres_version, p.bin_dir, p.data_dir)
    };
    let d = with("");
    assert_eq!(d.platform.version_source, VersionSource::Reference);
    let expect = |v: u32, bin: &str, data: &str| (v, bin.to_string(), data.to_string());
    assert_eq!(
        on(&d, 15),
        expect(15, "/usr/lib/postgresql/15/bin", "/var/lib/postgresql/15/pgha")
    );
    let pinned = with("\n  postgres_version: 16\n  data_dir: /srv/pg");
    assert_eq!(on(&pinned, 15), expect(16, "/usr/lib/postgresql/16/bin", "/srv/pg"));
    let named_dir = with("\n  data_dir: /srv/pg");
    assert_eq!(on(&named_dir, 15), expect(15, "/usr/lib/postgresql/15/bin", "/srv/pg"));
}

#[test]
fn the_version_patroni_runs_wins_over_the_hosts_release() {
    let d = load(BASE).unwrap().design;
    let runs = |pairs: &[(&str, &str, Option<u32>)]| -> BTreeMap<String, HostRuns> {
        pairs
            .iter()
            .map(|(h, os, configured)| {
                let r = HostRuns {
                    os: os.to_string(),
                    configured: *configured,
                };
                (h.to_string(), r)
            })
            .collect()
    };
    // Half-way through a release upgrade: 15 on both releases stays 15,
    // and a new host on Debian 13 joins at 15.
    let mid = d
        .for_hosts(&runs(&[
            ("a1", "debian 13", Some(15)),
            ("a2", "debian 12", Some(15)),
            ("b1", "debian 13", None),
        ]))
        .unwrap();
    assert_eq!(mid.platform.postgres_version, 15);
    assert_eq!(mid.platform.bin_dir, "/usr/lib/postgresql/15/bin");
    assert_eq!(mid.platform.version_source, VersionSource::Running);
    // Nothing set up yet: the release's own.
    let fresh = d.for_hosts(&runs(&[("a1", "debian 12", None)])).unwrap();
    assert_eq!(
        (fresh.platform.postgres_version, fresh.platform.version_source),
        (15, VersionSource::Hosts)
    );
    // Two majors under Patroni, or two releases' on fresh hosts: named.
    let two = d
        .for_hosts(&runs(&[("a1", "debian 13", Some(17)), ("a2", "debian 13", Some(15))]))
        .unwrap_err()
        .to_string();
    assert!(two.contains("Patroni runs different PostgreSQL versions"), "{two}");
    assert!(
        two.contains("PostgreSQL 15 on a2 (debian 13)") && two.contains("\n  hint: "),
        "{two}"
    );
    let releases = d
        .for_hosts(&runs(&[("a1", "debian 13", None), ("a2", "debian 12", None)]))
        .unwrap_err()
        .to_string();
    assert!(releases.contains("releases ship different"), "{releases}");
    let unknown = d
        .for_hosts(&runs(&[("a1", "debian 11", None)]))
        .unwrap_err()
        .to_string();
    assert!(unknown.starts_with("a1 runs `debian 11`"), "{unknown}");
}

#[test]
fn unknown_key_suggests_the_close_one() {
    let src = BASE.replace("    status: secondary", "    status: secondary\n    scalling: 3");
    assert_error(&src, "unknown key `scalling`", "clouds[1].scalling", 12);
    let p = problems(&src)
        .into_iter()
        .find(|p| p.message.contains("scalling"))
        .unwrap();
    assert_eq!(p.hint.as_deref(), Some("did you mean `scaling`?"));
}

#[test]
fn unknown_keys_are_all_reported() {
    let src = format!("{BASE}bogus: 1\nglb:\n  fqdn: x\n  hots: []\n");
    let ps = problems(&src);
    let unknown: Vec<_> = ps.iter().filter(|p| p.message.starts_with("unknown key")).collect();
    assert_eq!(unknown.len(), 2, "{ps:#?}");
    assert_eq!(unknown[0].line, Some(16));
    assert_eq!(unknown[1].line, Some(19));
    assert_eq!(unknown[1].hint.as_deref(), Some("did you mean `hosts`?"));
}

#[test]
fn wrong_type_names_line_and_field() {
    let src = BASE.replace("  name: demo", "  name: demo\n  postgres_port: lots");
    assert_error(&src, "invalid type", "platform.postgres_port", 3);
}

#[test]
fn syntax_error_has_a_location() {
    let ps = problems("platform:\n  name: [unclosed\n");
    assert!(ps[0].message.starts_with("invalid YAML"), "{ps:?}");
    assert!(ps[0].line.is_some());
}

#[test]
fn no_primary_cloud() {
    let src = BASE.replace("status: primary", "status: secondary");
    assert_error(&src, "no cloud has `status: primary`", "clouds", 3);
    // ...but a cloud flip may pass through that state.
    assert!(load_str_mode(&src, Path::new("d.yaml"), Mode::AllowNoPrimary).is_ok());
}

#[test]
fn two_primary_clouds() {
    let src = BASE.replace("status: secondary", "status: primary");
    assert_error(&src, "more than one primary cloud", "clouds[1].status", 11);
}

#[test]
fn unknown_status() {
    let src = BASE.replace("status: secondary", "status: standby");
    assert_error(&src, "unknown cloud status `standby`", "clouds[1].status", 11);
}

#[test]
fn duplicate_cloud_names() {
    let src = BASE.replace("name: dc2", "name: dc1");
    assert_error(&src, "cloud `dc1` is listed twice", "clouds[1].name", 10);
}

#[test]
fn duplicate_host_names() {
    let src = BASE.replace("name: b2,", "name: a1,");
    assert_error(&src, "host name `a1` is used twice", "clouds[1].hosts[1].name", 14);
}

#[test]
fn duplicate_addresses() {
    let src = BASE.replace("10.0.1.3", "10.0.0.2");
    assert_error(
        &src,
        "address `10.0.0.2` is used twice",
        "clouds[1].hosts[2].address",
        15,
    );
}

/// BASE with `vip` (a flow mapping) under dc1, on line 6.
fn with_vip(vip: &str) -> String {
    BASE.replacen(
        "    status: primary\n",
        &format!("    status: primary\n    vip: {vip}\n"),
        1,
    )
}

#[test]
fn a_cloud_s_virtual_ip_has_defaults_and_its_shape_checked() {
    let d = load(&with_vip("{address: 10.0.0.100}")).unwrap().design;
    assert_eq!(
        d.clouds[0].vip,
        Some(Vip {
            address: "10.0.0.100".into(),
            netmask: 24,
            interface: "eth0".into()
        })
    );
    assert_eq!(d.clouds[1].vip, None);
    let ens3 = load(&with_vip("{address: 10.0.0.200, netmask: 16, interface: ens3}"))
        .unwrap()
        .design;
    assert_eq!(
        ens3.clouds[0].vip.as_ref().map(|v| (v.netmask, v.interface.as_str())),
        Some((16, "ens3"))
    );
    assert_error(
        &with_vip("{address: 'fd00::64'}"),
        "invalid virtual IP",
        "clouds[0].vip.address",
        6,
    );
    assert_error(
        &with_vip("{address: db.example.com}"),
        "invalid virtual IP",
        "clouds[0].vip.address",
        6,
    );
    assert_error(
        &with_vip("{address: 127.0.0.5}"),
        "invalid virtual IP",
        "clouds[0].vip.address",
        6,
    );
    assert_error(&with_vip("{netmask: 24}"), "has no address", "clouds[0].vip.address", 6);
    assert_error(
        &with_vip("{address: 10.0.0.100, netmask: 33}"),
        "netmask 33 is out of range",
        "clouds[0].vip.netmask",
        6,
    );
    assert_error(
        &with_vip("{address: 10.0.0.100, interface: 'eth0; reboot'}"),
        "invalid interface name",
        "clouds[0].vip.interface",
        6,
    );
    assert_error(
        &with_vip("{address: 10.0.0.100, interface: averyveryverylongname}"),
        "invalid interface name",
        "clouds[0].vip.interface",
        6,
    );
    assert_error(
        &with_vip("{address: 10.0.0.100, mask: 24}"),
        "mask",
        "clouds[0].vip.mask",
        6,
    );
}

#[test]
fn a_virtual_ip_is_nobody_s_address() {
    assert_error(
        &with_vip("{address: 10.0.1.2}"),
        "the virtual IP `10.0.1.2` is also clouds[1].hosts[1]'s address",
        "clouds[0].vip.address",
        6,
    );
    let both = with_vip("{address: 10.0.0.100}").replace(
        "    status: secondary\n",
        "    status: secondary\n    vip: {address: 10.0.0.100}\n",
    );
    assert_error(&both, "also clouds[0].vip's address", "clouds[1].vip.address", 13);
    assert_error(
        &with_vip("{address: 10.0.1.1}").replace("10.0.1.1}\n      - {name: b2", "10.0.1.10}\n      - {name: b2"),
        "the virtual IP `10.0.1.1` begins clouds[1].hosts[0]'s address `10.0.1.10`",
        "clouds[0].vip.address",
        6,
    );
}

#[test]
fn scaling_must_match_hosts() {
    let src = BASE.replace("    status: secondary", "    status: secondary\n    scaling: 5");
    assert_error(&src, "scaling 5 but 3 host(s)", "clouds[1].scaling", 12);
}

#[test]
fn haproxy_port_is_not_the_postgres_port() {
    let src = format!("{BASE}components:\n  haproxy:\n    port: 5432\n");
    assert_error(
        &src,
        "HAProxy port 5432 is the PostgreSQL port",
        "components.haproxy.port",
        18,
    );
}

#[test]
fn port_collision_between_components() {
    let src = format!("{BASE}components:\n  etcd:\n    client_port: 8008\n");
    assert_error(
        &src,
        "collides with `components.governor.rest_port`",
        "components.etcd.client_port",
        18,
    );
    let src = format!("{BASE}glb:\n  fqdn: x\n  port: 7000\n  hosts: [{{name: g, address: 10.0.0.1}}]\n");
    // The GLB shares a1's address: its port 7000 meets HAProxy's stats port.
    let ps = problems(&src);
    assert!(
        ps.iter()
            .any(|p| p.message.contains("collides") && p.field == "glb.port"),
        "{ps:#?}"
    );
}

#[test]
fn read_only_endpoints_are_checked() {
    let src = format!("{BASE}components:\n  haproxy:\n    read_only_port: 5000\n");
    assert_error(
        &src,
        "collides with `components.haproxy.port`",
        "components.haproxy.read_only_port",
        18,
    );
    let src = format!("{BASE}components:\n  haproxy:\n    replica_max_lag: 0\n");
    assert_error(&src, "replica_max_lag of 0", "components.haproxy.replica_max_lag", 18);
    let d = load(BASE).unwrap().design;
    let hp = &d.haproxy;
    assert_eq!(
        (
            hp.read_only_port,
            hp.local_read_port,
            hp.local_reads,
            hp.read_only_fallback
        ),
        (5001, 5003, false, true)
    );
    assert_eq!(hp.replica_max_lag, 16 * 1024 * 1024);
}

#[test]
fn patroni_timing_rule() {
    let src = format!("{BASE}components:\n  governor:\n    ttl: 20\n    loop_wait: 10\n    retry_timeout: 10\n");
    assert_error(&src, "exceeds ttl (20)", "components.governor.ttl", 18);
}

#[test]
fn patroni_minimum_timings() {
    let src = format!("{BASE}components:\n  governor:\n    ttl: 10\n    loop_wait: 2\n    retry_timeout: 4\n");
    assert_error(
        &src,
        "ttl 10 is below Patroni's minimum of 20",
        "components.governor.ttl",
        18,
    );
    let src = format!("{BASE}components:\n  governor:\n    ttl: 20\n    loop_wait: 2\n    retry_timeout: 2\n");
    assert_error(&src, "minimum of 3", "components.governor.retry_timeout", 20);
    let src = format!("{BASE}components:\n  governor:\n    ttl: 20\n    loop_wait: 0\n    retry_timeout: 3\n");
    assert_error(&src, "minimum of 1", "components.governor.loop_wait", 19);
}

#[test]
fn etcd_timing_rule() {
    let src = format!("{BASE}components:\n  etcd:\n    election_timeout_ms: 300\n");
    assert_error(
        &src,
        "less than 5 x the heartbeat",
        "components.etcd.election_timeout_ms",
        18,
    );
}

#[test]
fn unreadable_inventory() {
    let src = BASE.replace(
        "    hosts:\n      - {name: b1, address: 10.0.1.1}\n      - {name: b2, address: 10.0.1.2}\n      - {name: b3, address: 10.0.1.3}\n",
        "    inventory: missing.yaml\n",
    );
    assert_error(&src, "cannot read the inventory", "clouds[1].inventory", 12);
}

#[test]
fn problems_inside_an_inventory_name_the_inventory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("inv.yaml"),
        "hosts:\n  - name: b1\n    adress: 10.0.1.1\n",
    )
    .unwrap();
    let design = dir.path().join("d.yaml");
    let src = BASE.replace(
        "    hosts:\n      - {name: b1, address: 10.0.1.1}\n      - {name: b2, address: 10.0.1.2}\n      - {name: b3, address: 10.0.1.3}\n",
        "    inventory: inv.yaml\n",
    );
    let ps = load_str(&src, &design).unwrap_err().problems;
    let p = ps
        .iter()
        .find(|p| p.message.contains("unknown key `adress`"))
        .expect("typo found");
    assert_eq!(p.file, dir.path().join("inv.yaml"));
    assert_eq!(p.line, Some(3));
    assert_eq!(p.hint.as_deref(), Some("did you mean `address`?"));
}

#[test]
fn unreadable_identity_file() {
    let src = format!("{BASE}ssh:\n  identity_file: nowhere/id_ed25519\n");
    assert_error(&src, "cannot read the identity file", "ssh.identity_file", 17);
}

#[test]
fn ssh_settings_layer_global_cloud_host() {
    let src = BASE
        .replace("platform:", "ssh: {user: admin, port: 2222}\nplatform:")
        .replace("    status: secondary", "    status: secondary\n    ssh: {user: ops}")
        .replace(
            "{name: b3, address: 10.0.1.3}",
            "{name: b3, address: 10.0.1.3, ssh: {port: 22}}",
        );
    let d = load(&src).unwrap().design;
    let a1 = &d.clouds[0].hosts[0].ssh;
    assert_eq!((a1.user.as_str(), a1.port), ("admin", 2222));
    let b1 = &d.clouds[1].hosts[0].ssh;
    assert_eq!((b1.user.as_str(), b1.port), ("ops", 2222));
    let b3 = &d.clouds[1].hosts[2].ssh;
    assert_eq!((b3.user.as_str(), b3.port), ("ops", 22));
}

#[test]
fn glb_needs_hosts_or_command() {
    let src = format!("{BASE}glb:\n  fqdn: db.example.com\n");
    assert_error(&src, "needs `hosts`", "glb.hosts", 16);
    let src = format!("{BASE}glb:\n  fqdn: db.example.com\n  kind: external\n");
    assert_error(&src, "needs `command`", "glb.command", 16);
}

#[test]
fn every_error_is_reported_at_once() {
    let src = BASE
        .replace("name: dc2", "name: dc1")
        .replace("10.0.1.3", "10.0.0.2")
        .replace("status: primary", "status: primry");
    let errors = problems(&src).into_iter().filter(Problem::is_error).count();
    assert!(errors >= 3, "{errors}");
}

#[test]
fn small_cloud_warns_about_quorum() {
    let src = BASE.replace("      - {name: b3, address: 10.0.1.3}\n", "");
    let ws = warnings(&src);
    assert!(
        ws.iter()
            .any(|w| w.message.contains("cannot keep quorum") && w.line == Some(10)),
        "{ws:#?}"
    );
    assert!(ws.iter().any(|w| w.message.contains("even number (2)")), "{ws:#?}");
}

#[test]
fn large_cloud_warns_about_waste() {
    let extra: String = (4..=7)
        .map(|i| format!("      - {{name: b{i}, address: 10.0.1.{i}}}\n"))
        .collect();
    let src = format!("{BASE}{extra}");
    let ws = warnings(&src);
    assert!(ws.iter().any(|w| w.message.contains("more than 5")), "{ws:#?}");
}

#[test]
fn single_availability_means_one_compute() {
    let src = BASE.replace("  name: demo", "  name: demo\n  availability: single");
    assert_error(&src, "availability is `single`", "clouds[0].scaling", 5);
}

#[test]
fn missing_name_and_bad_names() {
    assert_error(
        &BASE.replace("  name: demo\n", ""),
        "the platform has no name",
        "platform.name",
        1,
    );
    assert_error(
        &BASE.replace("name: dc2", "name: 'dc 2'"),
        "invalid cloud name",
        "clouds[1].name",
        10,
    );
}

#[test]
fn bad_client_network() {
    let src = BASE.replace("  name: demo", "  name: demo\n  client_networks: [10.0.0.0/33]");
    assert_error(&src, "not a network in CIDR form", "platform.client_networks[0]", 3);
}

#[test]
fn empty_file_is_reported_not_panicked() {
    let ps = problems("");
    assert!(ps.iter().any(|p| p.message.contains("no name")));
    assert!(ps.iter().any(|p| p.message.contains("lists no clouds")));
}

#[test]
fn a_witness_turns_the_site_lease_on_with_defaults() {
    let d = load(&format!("{BASE}witness: {{name: w, address: 10.0.2.1}}\n"))
        .unwrap()
        .design;
    let site = d.site.as_ref().expect("a site lease");
    assert_eq!(
        (site.ttl, site.auto_failover, site.client_port, site.peer_port),
        (30, false, 2479, 2480)
    );
    assert_eq!(site.maximum_lag, 16 * 1024 * 1024);
    let members: Vec<&str> = d.site_members().iter().map(|(_, h)| h.name.as_str()).collect();
    assert_eq!(members, ["a1", "b1", "w"]);
    assert!(
        load(BASE).unwrap().design.site.is_none(),
        "two clouds alone: today's behaviour"
    );
}

#[test]
fn a_site_without_witness_or_third_cloud_is_refused() {
    assert_error(
        &format!("{BASE}site:\n  ttl: 30\n"),
        "a site lease needs a witness host or three clouds or more",
        "site",
        16,
    );
}

#[test]
fn the_site_members_are_an_odd_count() {
    let src = format!(
        "{BASE}  - name: dc3\n    status: secondary\n    hosts:\n      - {{name: c1, address: 10.0.3.1}}\nwitness: {{name: w, address: 10.0.2.1}}\n"
    );
    assert_error(&src, "an even count", "witness", 20);
    // Three clouds need no witness.
    let three =
        format!("{BASE}  - name: dc3\n    status: secondary\n    hosts:\n      - {{name: c1, address: 10.0.3.1}}\n");
    assert_eq!(load(&three).unwrap().design.site_members().len(), 3);
}

#[test]
fn site_ttl_range_and_witness_address_and_ports_are_checked() {
    let w = "witness: {name: w, address: 10.0.2.1}\n";
    assert_error(
        &format!("{BASE}{w}site:\n  ttl: 5\n"),
        "ttl 5 is out of range",
        "site.ttl",
        18,
    );
    assert_error(
        &format!("{BASE}witness: {{name: w, address: 'a;b'}}\n"),
        "invalid address",
        "witness.address",
        16,
    );
    assert_error(
        &format!("{BASE}witness: {{name: w, address: 10.0.0.1}}\n"),
        "address `10.0.0.1` is used twice",
        "witness.address",
        16,
    );
    assert_error(
        &format!("{BASE}{w}site:\n  client_port: 2379\n"),
        "collides",
        "site.client_port",
        18,
    );
    assert_error(
        &format!("{BASE}{w}site:\n  auto_failovr: true\n"),
        "unknown key",
        "site.auto_failovr",
        18,
    );
}

const REPOS: &str = "backup:
  repositories:
    - {cloud: dc1, name: r1, address: 10.0.0.9}
    - {cloud: dc2, name: r2, address: 10.0.1.9}
";

#[test]
fn backups_have_a_repository_per_cloud_and_defaults() {
    let d = load(&format!("{BASE}{REPOS}")).unwrap().design;
    let b = d.backup.as_ref().unwrap();
    assert_eq!(b.repositories.len(), 2);
    assert_eq!(b.repository("dc2").unwrap().host.name, "r2");
    assert_eq!((b.retention_full, b.retention_diff, b.port), (2, 6, 8432));
    assert_eq!(b.schedule_full.as_deref(), Some("Sun *-*-* 01:00:00"));
    assert_eq!(b.schedule_incr, None);
    assert!(d.is_repository("r1") && !d.is_repository("a1"));
    // Listed in any order, they keep the design's cloud order (repo1, repo2).
    let swapped = format!(
        "{BASE}backup:\n  repositories:\n    - {{cloud: dc2, name: r2, address: 10.0.1.9}}\n    - {{cloud: dc1, name: r1, address: 10.0.0.9}}\n"
    );
    assert_eq!(
        load(&swapped).unwrap().design.backup.unwrap().repositories[0].cloud,
        "dc1"
    );
    let off = format!("{BASE}backup:\n  enabled: false\n");
    assert!(load(&off).unwrap().design.backup.is_none());
}

#[test]
fn a_repository_can_live_on_a_database_host() {
    let src = format!(
        "{BASE}backup:\n  repositories:\n    - {{cloud: dc1, name: r1, address: 10.0.0.9}}\n    - {{cloud: dc2, host: b2, path: /srv/backup}}\n"
    );
    let d = load(&src).unwrap().design;
    let r = d.backup.as_ref().unwrap().repository("dc2").unwrap();
    assert_eq!((r.host.name.as_str(), r.host.address.as_str()), ("b2", "10.0.1.2"));
    assert_eq!(r.path, "/srv/backup");
    assert!(r.on_database_host);
    assert_eq!(d.repository_on("b2").unwrap().cloud, "dc2");
    // It adds no machine: only r1 is a repository host of its own.
    assert_eq!(
        d.repository_hosts().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["r1"]
    );
    assert_eq!(
        d.backup.as_ref().unwrap().repository("dc1").unwrap().path,
        "/var/lib/pgbackrest"
    );
}

#[test]
fn repository_on_a_database_host_mistakes() {
    let with = |dc2: &str| {
        format!("{BASE}backup:\n  repositories:\n    - {{cloud: dc1, name: r1, address: 10.0.0.9}}\n    - {dc2}\n")
    };
    assert_error(
        &with("{cloud: dc2, host: a1}"),
        "`a1` is not a database host of cloud `dc2`",
        "backup.repositories[1].host",
        19,
    );
    assert_error(
        &with("{cloud: dc2, host: b1, address: 10.0.1.9}"),
        "both on a database host",
        "backup.repositories[1].host",
        19,
    );
    assert_error(
        &with("{cloud: dc2, host: b1, path: /var/lib/postgresql}"),
        "overlaps the data directory",
        "backup.repositories[1].path",
        19,
    );
    assert_error(
        &with("{cloud: dc2, host: b1, path: \"backup; rm -rf /\"}"),
        "not a plain absolute path",
        "backup.repositories[1].path",
        19,
    );
}

#[test]
fn backup_mistakes_name_their_line_and_field() {
    assert_error(
        &format!("{BASE}backup:\n  repositories:\n    - {{cloud: dc1, name: r1, address: 10.0.0.9}}\n"),
        "cloud `dc2` has no repository",
        "backup.repositories",
        17,
    );
    assert_error(
        &format!("{BASE}{REPOS}    - {{cloud: dc3, name: r3, address: 10.0.2.9}}\n"),
        "no cloud named `dc3`",
        "backup.repositories[2].cloud",
        20,
    );
    assert_error(
        &format!("{BASE}{REPOS}    - {{cloud: dc1, name: r3, address: 10.0.2.9}}\n"),
        "cloud `dc1` has a repository already",
        "backup.repositories[2].cloud",
        20,
    );
    assert_error(
        &format!("{BASE}backup:\n  repositories:\n    - {{cloud: dc1, name: r1, address: 'x;y'}}\n    - {{cloud: dc2, name: r2, address: 10.0.1.9}}\n"),
        "invalid address",
        "backup.repositories[0].address",
        18,
    );
    assert_error(
        &format!("{BASE}backup:\n  repositories:\n    - {{cloud: dc1, name: a1, address: 10.0.0.9}}\n    - {{cloud: dc2, name: r2, address: 10.0.1.9}}\n"),
        "host name `a1` is used twice",
        "backup.repositories[0].name",
        18,
    );
    assert_error(
        &format!("{BASE}{REPOS}  schedule:\n    full: \"Sun 01:00\\nExecStart=/bin/sh\"\n"),
        "not a calendar expression",
        "backup.schedule.full",
        21,
    );
    assert_error(
        &format!("{BASE}{REPOS}  retention_full: 0\n"),
        "0 is out of range",
        "backup.retention_full",
        20,
    );
    assert_error(&format!("{BASE}{REPOS}  port: 8008\n"), "collides", "backup.port", 20);
    assert_error(
        &format!("{BASE}{REPOS}  retention: 3\n"),
        "unknown key",
        "backup.retention",
        20,
    );
}

#[test]
fn a_parameter_value_is_one_line() {
    let src = BASE.replace(
        "  name: demo\n",
        "  name: demo\n  parameters:\n    search_path: \"a\\nb\"\n",
    );
    assert_error(&src, "control character", "platform.parameters.search_path", 4);
}

#[test]
fn authentication_timeout_is_pghas_unless_the_design_names_it() {
    let params = |src: &str| load(src).unwrap().design.platform.parameters;
    assert_eq!(params(BASE)["authentication_timeout"], "10s");
    let own = BASE.replace(
        "  name: demo\n",
        "  name: demo\n  parameters:\n    Authentication_Timeout: 30s\n",
    );
    let p = params(&own);
    assert_eq!(p["Authentication_Timeout"], "30s");
    assert!(!p.contains_key("authentication_timeout"), "{p:?}");
}

#[test]
fn the_leader_restarts_in_place_or_by_switchover() {
    assert_eq!(
        load(BASE).unwrap().design.governor.leader_restart,
        LeaderRestart::Restart
    );
    let src = format!("{BASE}components:\n  governor:\n    leader_restart: switchover\n");
    assert_eq!(
        load(&src).unwrap().design.governor.leader_restart,
        LeaderRestart::Switchover
    );
    let src = format!("{BASE}components:\n  governor:\n    leader_restart: reboot\n");
    assert_error(
        &src,
        "unknown way to restart the leader",
        "components.governor.leader_restart",
        18,
    );
}

#[test]
fn patroni_uses_the_watchdog_where_there_is_one() {
    assert_eq!(load(BASE).unwrap().design.governor.watchdog, Watchdog::Automatic);
    for (word, mode) in [
        ("required", Watchdog::Required),
        ("off", Watchdog::Off),
        ("\"off\"", Watchdog::Off),
    ] {
        let src = format!("{BASE}components:\n  governor:\n    watchdog: {word}\n");
        assert_eq!(load(&src).unwrap().design.governor.watchdog, mode, "{word}");
    }
    let src = format!("{BASE}components:\n  governor:\n    watchdog: softdog\n");
    assert_error(&src, "unknown watchdog mode", "components.governor.watchdog", 18);
}

const OBJECTS: &str = "\
roles:
  - {name: app_owner, login: false}
  - {name: app_rw, member_of: [app_owner], connection_limit: 20, valid_until: 2030-01-31}
  - {name: report, password: 'env:REPORT_PASSWORD', member_of: [pg_read_all_data]}
  - {name: old, state: absent}
databases:
  - {name: app, owner: app_owner, encoding: UTF8, locale: C.UTF-8, extensions: [pgcrypto, uuid-ossp]}
access:
  - {database: app, role: app_rw}
  - {database: all, role: report}
";

#[test]
fn databases_roles_and_access_are_read_with_their_defaults() {
    let d = load(&format!("{BASE}{OBJECTS}")).unwrap().design;
    let o = &d.objects;
    use crate::design::objects::PasswordSource;
    assert_eq!(o.roles.len(), 4);
    assert_eq!(
        o.roles[0].password,
        PasswordSource::None,
        "a group role has no password"
    );
    assert_eq!(
        o.roles[1].password,
        PasswordSource::Secrets,
        "a login role's is kept in the secrets file"
    );
    assert_eq!(o.roles[1].valid_until, Some(1_896_048_000));
    assert_eq!(o.roles[2].password, PasswordSource::Env("REPORT_PASSWORD".into()));
    assert!(!o.roles[3].present);
    assert_eq!(o.databases[0].extensions, ["pgcrypto", "uuid-ossp"]);
    assert_eq!(o.hba_rules().len(), 4);
}

#[test]
fn object_names_are_checked() {
    let with = |extra: &str| format!("{BASE}{extra}");
    assert_error(
        &with("roles:\n  - {name: postgres}\n"),
        "the role name `postgres` is reserved",
        "roles[0].name",
        17,
    );
    assert_error(&with("roles:\n  - {name: pg_x}\n"), "is reserved", "roles[0].name", 17);
    assert_error(
        &with("roles:\n  - {name: App}\n"),
        "not a role name pgha manages",
        "roles[0].name",
        17,
    );
    assert_error(
        &with("roles:\n  - {name: a}\n  - {name: a}\n"),
        "declared twice",
        "roles[1].name",
        18,
    );
    assert_error(
        &with("databases:\n  - {name: template1}\n"),
        "is reserved",
        "databases[0].name",
        17,
    );
    assert_error(
        &with("databases:\n  - {name: \"a;b\"}\n"),
        "not a database name",
        "databases[0].name",
        17,
    );
}

#[test]
fn object_references_are_checked() {
    let with = |extra: &str| format!("{BASE}{extra}");
    assert_error(
        &with("roles:\n  - {name: a, member_of: [b]}\n"),
        "`b` is not a role the design declares",
        "roles[0].member_of[0]",
        17,
    );
    assert_error(
        &with("roles:\n  - {name: a, password: hunter2}\n"),
        "not a password source",
        "roles[0].password",
        17,
    );
    assert_error(
        &with("roles:\n  - {name: a, state: gone}\n"),
        "unknown state",
        "roles[0].state",
        17,
    );
    assert_error(
        &with("roles:\n  - {name: a, valid_until: soon}\n"),
        "not a date",
        "roles[0].valid_until",
        17,
    );
    assert_error(
        &with("roles:\n  - {name: a, connection_limit: -2}\n"),
        "connection limit of -2",
        "roles[0].connection_limit",
        17,
    );
    assert_error(
        &with("roles:\n  - {name: a, state: absent}\ndatabases:\n  - {name: d, owner: a}\n"),
        "the owner `a` is not a role the design keeps",
        "databases[0].owner",
        19,
    );
    assert_error(
        &with("roles:\n  - {name: a, member_of: [pg_execute_server_program]}\n"),
        "as a superuser does",
        "roles[0].member_of[0]",
        17,
    );
    assert_error(
        &with("roles:\n  - {name: a, member_of: [pg_typo]}\n"),
        "not a role the design declares",
        "roles[0].member_of[0]",
        17,
    );
    assert_error(
        &with("roles:\n  - {name: a, member_of: [b]}\n  - {name: b, member_of: [c]}\n  - {name: c, member_of: [a]}\n"),
        "`a` is a member of itself through its groups",
        "roles[0].member_of",
        17,
    );
    assert_error(
        &with("access:\n  - {database: nope, role: all}\n"),
        "not a database the design declares",
        "access[0].database",
        17,
    );
    assert_error(
        &with("access:\n  - {database: all, role: ghost}\n"),
        "not a role the design keeps",
        "access[0].role",
        17,
    );
    assert_error(
        &with("access:\n  - {database: all}\n"),
        "names a database and a role",
        "access[0]",
        17,
    );
    assert_error(
        &with("databases:\n  - {name: d, extensions: [\"x;y\"]}\n"),
        "not an extension name",
        "databases[0].extensions[0]",
        17,
    );
}

#[test]
fn synchronous_sites_leave_synchronous_standby_names_to_the_agent() {
    let w = "witness: {name: w, address: 10.0.2.1}\n";
    let sync = "site:\n  synchronous: true\n";
    let with = |platform_line: &str| {
        format!(
            "{}{w}{sync}",
            BASE.replace("  name: demo\n", &format!("  name: demo\n{platform_line}"))
        )
    };
    assert_error(
        &with("  replication: synchronous\n"),
        "both want synchronous_standby_names",
        "site.synchronous",
        19,
    );
    assert_error(
        &with("  parameters: {synchronous_standby_names: 'ANY 1 (b1)'}\n"),
        "the site agent sets synchronous_standby_names",
        "platform.parameters.synchronous_standby_names",
        3,
    );
    assert_error(
        &with("  parameters: {synchronous_commit: local}\n"),
        "confirms commits without waiting",
        "platform.parameters.synchronous_commit",
        3,
    );
    assert_error(
        &with("  parameters: {synchronous_commit: remote_write}\n"),
        "before another cloud has flushed the WAL to its disk",
        "platform.parameters.synchronous_commit",
        3,
    );
    for off in ["'false'", "false", "no", "0", "OFF"] {
        assert_error(
            &with(&format!("  parameters: {{synchronous_commit: {off}}}\n")),
            "confirms commits without waiting",
            "platform.parameters.synchronous_commit",
            3,
        );
    }
    assert!(
        warnings(&with("  parameters: {synchronous_commit: remote_apply}\n")).is_empty(),
        "remote_apply waits longer than on"
    );
    assert_error(
        &format!("{BASE}{w}{sync}  synchronous_timeout: 2\n"),
        "synchronous_timeout 2 is out of range",
        "site.synchronous_timeout",
        19,
    );
    let warned = warnings(&format!("{BASE}{w}site:\n  synchronous_timeout: 20\n"));
    assert!(
        warned.iter().any(|p| p.field == "site.synchronous_timeout"),
        "{warned:?}"
    );
    let slow = warnings(&format!("{BASE}{w}{sync}  ttl: 120\n"));
    assert!(
        slow.iter()
            .any(|p| p.field == "site.synchronous_timeout" && p.message.contains("the site agent's loop (12 s")),
        "{slow:?}"
    );
    let l = load(&format!("{BASE}{w}{sync}")).unwrap();
    assert!(
        l.warnings.iter().all(|p| p.field != "site.synchronous_timeout"),
        "{:?}",
        l.warnings
    );
    let site = l.design.site.as_ref().unwrap();
    assert!(site.synchronous);
    assert_eq!(site.synchronous_timeout, 10);
}
