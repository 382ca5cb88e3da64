//! `pgha init`: a first design file and its inventories for the clouds and
//! hosts named on the command line, every setting written out with its
//! default and what it means, so the DBA edits a file instead of reading
//! a manual. Pure: the request in, the files' text out.

use super::shape;
use crate::error::Usage;

/// What `pgha init` was asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The cluster's name.
    pub name: String,
    /// Each cloud's name and its hosts' addresses; the first is primary.
    pub clouds: Vec<(String, Vec<String>)>,
    /// The GLB host's address, and the name clients use for it.
    pub glb: Option<String>,
    pub glb_fqdn: Option<String>,
    /// A host in a third site: the site lease.
    pub witness: Option<String>,
    /// `(cloud, address)`: a repository host of the cloud's own; a cloud
    /// without one keeps its repository on its last database host.
    pub repositories: Vec<(String, String)>,
    pub no_backup: bool,
    pub ssh_user: String,
    pub identity_file: Option<String>,
    pub known_hosts: Option<String>,
    pub client_networks: Vec<String>,
}

/// The design's text and each inventory's `(path relative to the design, text)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub design: String,
    pub inventories: Vec<(String, String)>,
    /// The same design with each cloud's hosts in it: what is checked
    /// before any file is written.
    pub inline: String,
}

/// `CLOUD=ADDR[,ADDR...]`, as `--cloud` takes it.
pub fn parse_cloud(arg: &str) -> Result<(String, Vec<String>), Usage> {
    let (name, hosts) = arg.split_once('=').ok_or_else(|| {
        Usage(format!(
            "--cloud {arg}: write NAME=ADDRESS[,ADDRESS...], such as dc1=10.0.1.11,10.0.1.12,10.0.1.13"
        ))
    })?;
    let hosts: Vec<String> = hosts.split(',').map(|h| h.trim().to_string()).collect();
    Ok((name.trim().to_string(), hosts))
}

/// `CLOUD=ADDR`, as `--repository` takes it.
pub fn parse_repository(arg: &str) -> Result<(String, String), Usage> {
    match arg.split_once('=') {
        Some((c, a)) if !a.contains(',') => Ok((c.trim().to_string(), a.trim().to_string())),
        _ => Err(Usage(format!(
            "--repository {arg}: write CLOUD=ADDRESS, such as dc1=10.0.1.20"
        ))),
    }
}

fn check(r: &Request) -> Result<(), Usage> {
    let bad_name = |what: &str, v: &str| {
        Usage(format!(
            "{what} `{}` is not a name: letters, digits and -_. (starting with a letter or digit), at most 63",
            v.escape_debug()
        ))
    };
    let bad_address = |what: &str, v: &str| {
        Usage(format!(
            "{what} `{}` is not an IP address or a DNS name",
            v.escape_debug()
        ))
    };
    if !shape::name(&r.name) {
        return Err(bad_name("--name", &r.name));
    }
    if r.clouds.is_empty() {
        return Err(Usage(
            "name at least one cloud: --cloud dc1=ADDRESS,ADDRESS,ADDRESS (the first is primary)".into(),
        ));
    }
    for (c, hosts) in &r.clouds {
        // The hosts are named `<cloud>-pg<N>`: the cloud's name must leave room.
        if !shape::name(c) || c.len() > 55 {
            return Err(bad_name("--cloud", c));
        }
        for h in hosts {
            if shape::address(h).is_none() {
                return Err(bad_address(&format!("--cloud {c}:"), h));
            }
        }
    }
    for (c, a) in &r.repositories {
        if !r.clouds.iter().any(|(n, _)| n == c) {
            return Err(Usage(format!(
                "--repository {c}={a}: no cloud {c} was named with --cloud"
            )));
        }
        if shape::address(a).is_none() {
            return Err(bad_address("--repository", a));
        }
    }
    for (what, v) in [
        ("--glb", &r.glb),
        ("--glb-fqdn", &r.glb_fqdn),
        ("--witness", &r.witness),
    ] {
        if let Some(v) = v {
            if shape::address(v).is_none() {
                return Err(bad_address(what, v));
            }
        }
    }
    let site = r.witness.is_some() || r.clouds.len() >= 3;
    let members = r.clouds.len() + usize::from(r.witness.is_some());
    if site && members.is_multiple_of(2) {
        return Err(Usage(format!(
            "the site lease would have {members} members (one per cloud plus the witness), an even count: \
             with an odd number of clouds leave --witness out, with an even number give one"
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    let all = r
        .clouds
        .iter()
        .flat_map(|(_, h)| h.iter())
        .chain(&r.glb)
        .chain(&r.witness);
    for a in all.chain(r.repositories.iter().map(|(_, a)| a)) {
        if !seen.insert(a.to_ascii_lowercase()) {
            return Err(Usage(format!(
                "the address {a} is given twice: every host needs its own"
            )));
        }
    }
    if r.glb_fqdn.is_some() && r.glb.is_none() {
        return Err(Usage("--glb-fqdn names the GLB host given with --glb".into()));
    }
    if !shape::posix_user(&r.ssh_user) {
        return Err(Usage(format!(
            "--ssh-user `{}` is not a POSIX user name",
            r.ssh_user.escape_debug()
        )));
    }
    for n in &r.client_networks {
        if !shape::cidr(n) {
            return Err(Usage(format!(
                "--client-network `{}` is not a network in CIDR form",
                n.escape_debug()
            )));
        }
    }
    for (what, p) in [("--identity-file", &r.identity_file), ("--known-hosts", &r.known_hosts)] {
        if p.as_deref()
            .is_some_and(|p| p.is_empty() || p.chars().any(char::is_control))
        {
            return Err(Usage(format!("{what}: not a file path")));
        }
    }
    Ok(())
}

/// A YAML scalar: plain when it is one of the shapes checked above, else
/// double-quoted (JSON's quoting is YAML's).
fn scalar(v: &str) -> String {
    // A word YAML reads as a string: it starts with a letter or `/` (an
    // IPv4 address or network reads as one too), and is no YAML keyword.
    let keyword = ["true", "false", "yes", "no", "on", "off", "null", "y", "n"]
        .iter()
        .any(|k| v.eq_ignore_ascii_case(k));
    let plain = v.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
        && (v.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
            || v.parse::<std::net::Ipv4Addr>().is_ok()
            || shape::cidr(v) && v.contains('.'))
        && !keyword;
    if plain {
        v.to_string()
    } else {
        serde_json::Value::from(v).to_string()
    }
}

/// The design and inventories, or why the request cannot make one (exit 2).
pub fn render(r: &Request) -> Result<Files, Usage> {
    check(r)?;
    let (design, inventories) = text(r, false);
    let (inline, _) = text(r, true);
    Ok(Files {
        design,
        inventories,
        inline,
    })
}

/// The design (each cloud's hosts in it when `inline`, else in its
/// inventory) and the inventories.
fn text(r: &Request, inline: bool) -> (String, Vec<(String, String)>) {
    let mut d = String::new();
    let line = |d: &mut String, s: &str| {
        d.push_str(s);
        d.push('\n');
    };
    line(
        &mut d,
        "# Written by `pgha init`. Every setting is shown with its default; `pgha validate`\n\
         # checks the file, `pgha plan` shows what `pgha deploy` would do.",
    );
    line(&mut d, "platform:");
    line(
        &mut d,
        &format!(
            "  name: {}                # the cluster: Patroni's scope, etcd's prefix",
            scalar(&r.name)
        ),
    );
    line(
        &mut d,
        "  # postgres_version: 17     # default: the hosts' release's (17 on Debian 13, 15 on Debian 12)",
    );
    line(&mut d, "  postgres_port: 5432");
    line(&mut d, "  # data_dir: /var/lib/postgresql/<version>/pgha");
    let availability = if r.clouds.iter().all(|(_, h)| h.len() == 1) {
        "single"
    } else {
        "redundant"
    };
    line(
        &mut d,
        &format!("  availability: {availability}   # redundant: several hosts per cloud; single: exactly one"),
    );
    line(
        &mut d,
        "  replication: asynchronous  # or synchronous: Patroni's synchronous_mode inside the primary cloud",
    );
    line(
        &mut d,
        "  # Networks whose clients may log in to PostgreSQL directly (TLS and",
    );
    line(
        &mut d,
        "  # passwords still required); the database and GLB hosts always may.",
    );
    let nets: Vec<String> = r.client_networks.iter().map(|n| scalar(n)).collect();
    line(&mut d, &format!("  client_networks: [{}]", nets.join(", ")));
    line(
        &mut d,
        "  parameters:                # PostgreSQL settings deploy keeps equal on every host",
    );
    line(&mut d, "    authentication_timeout: 10s");
    line(&mut d, "");
    line(&mut d, "ssh:");
    line(
        &mut d,
        &format!(
            "  user: {}                  # with passwordless sudo unless root",
            scalar(&r.ssh_user)
        ),
    );
    line(&mut d, "  port: 22");
    match &r.identity_file {
        Some(p) => line(&mut d, &format!("  identity_file: {}", scalar(p))),
        None => line(&mut d, "  # identity_file: ~/.ssh/id_ed25519   # default: ssh's own"),
    }
    match &r.known_hosts {
        Some(p) => line(
            &mut d,
            &format!(
                "  known_hosts: {}         # unknown or changed host keys are refused",
                scalar(p)
            ),
        ),
        None => line(
            &mut d,
            "  # known_hosts: ~/.ssh/known_hosts    # unknown or changed host keys are refused",
        ),
    }
    line(&mut d, "");
    line(
        &mut d,
        "# The first cloud is primary: it serves traffic and elects the master. Each",
    );
    line(
        &mut d,
        "# other one is a standby cluster of it; `pgha cloud make-primary` flips them.",
    );
    line(&mut d, "clouds:");
    let mut inventories = Vec::new();
    for (i, (c, hosts)) in r.clouds.iter().enumerate() {
        let status = if i == 0 { "primary" } else { "secondary" };
        let path = format!("inventories/{c}.yaml");
        line(&mut d, &format!("  - name: {}", scalar(c)));
        line(&mut d, &format!("    status: {status}"));
        line(&mut d, &format!("    scaling: {}", hosts.len()));
        let mut inv = format!("# The hosts of cloud {c} (written by `pgha init`).\nhosts:\n");
        for (n, a) in hosts.iter().enumerate() {
            inv.push_str(&format!(
                "  - name: {}\n    address: {}\n",
                scalar(&host_name(c, n)),
                scalar(a)
            ));
        }
        if inline {
            let listed: Vec<&str> = inv.lines().skip(1).collect();
            line(&mut d, &format!("    {}", listed.join("\n    ")));
        } else {
            line(&mut d, &format!("    inventory: {}", scalar(&path)));
        }
        line(
            &mut d,
            "    # vip: {address: ADDRESS, netmask: 24, interface: eth0}  # a virtual IP on the cloud's leader",
        );
        inventories.push((path, inv));
    }
    line(&mut d, "");
    line(&mut d, "components:");
    line(
        &mut d,
        "  etcd:                      # one cluster per cloud, on its database hosts",
    );
    line(&mut d, "    client_port: 2379");
    line(&mut d, "    peer_port: 2380");
    line(&mut d, "    heartbeat_interval_ms: 100");
    line(&mut d, "    election_timeout_ms: 1000");
    line(
        &mut d,
        "  governor:                  # Patroni: loop_wait + 2 x retry_timeout <= ttl",
    );
    line(&mut d, "    ttl: 30");
    line(&mut d, "    loop_wait: 10");
    line(&mut d, "    retry_timeout: 10");
    line(
        &mut d,
        "    maximum_lag_on_failover: 1048576   # bytes a replica may lag and still be promoted",
    );
    line(&mut d, "    rest_port: 8008");
    line(
        &mut d,
        "    leader_restart: restart  # or switchover: how a restart reaches the master",
    );
    line(&mut d, "    watchdog: automatic      # or required, off");
    line(
        &mut d,
        "  haproxy:                   # on every database host; never PostgreSQL's port",
    );
    line(&mut d, "    port: 5000               # read-write: the master");
    line(
        &mut d,
        "    read_only_port: 5001     # read-only: the replicas of the cloud that has the master",
    );
    line(
        &mut d,
        "    replica_max_lag: 16777216  # bytes a replica may lag and stay in the read-only pool",
    );
    line(
        &mut d,
        "    read_only_fallback: true # no replica in the pool: reads go to the master",
    );
    line(&mut d, "    local_read_port: 5003    # each cloud's own replicas");
    line(
        &mut d,
        "    local_reads: false       # true: clients may read there from their own cloud",
    );
    line(&mut d, "    stats_port: 7000");
    line(
        &mut d,
        "    stats_address: 127.0.0.1 # any other address asks for stats_password",
    );
    line(
        &mut d,
        "  exporter:                  # prometheus-postgres-exporter, TLS with the metrics CA",
    );
    line(&mut d, "    enabled: true");
    line(&mut d, "    port: 9187");
    line(
        &mut d,
        "    gateway_port: 9188       # HAProxy: /etcd/, /site-etcd/, /site/, /patroni/, /haproxy/, /node/metrics",
    );
    line(
        &mut d,
        "    etcd_metrics_port: 2381  # etcd's metrics listener, loopback only",
    );
    line(
        &mut d,
        "    site_metrics_port: 2482  # the site member's, loopback only",
    );
    line(
        &mut d,
        "    node_port: 9100          # the node exporter's (disks, memory, certificates), loopback only",
    );
    line(
        &mut d,
        "  pgbouncer:                 # connection pooling on every database host",
    );
    line(
        &mut d,
        "    enabled: false           # true: the pooled endpoint (see `pgha dsn --endpoint pooled`)",
    );
    line(&mut d, "    port: 6432");
    line(&mut d, "    pool_mode: transaction   # or session");
    line(&mut d, "    max_client_conn: 1000");
    line(
        &mut d,
        "    default_pool_size: 20      # server connections per database and role",
    );
    line(&mut d, "    max_db_connections: 0      # per database; 0: no limit");
    line(&mut d, "");
    match &r.glb {
        Some(a) => {
            line(
                &mut d,
                "# The global load balancer: clients connect to fqdn on its ports.",
            );
            line(&mut d, "glb:");
            let fqdn = r.glb_fqdn.as_deref().unwrap_or(a);
            line(&mut d, &format!("  fqdn: {}", scalar(fqdn)));
            line(&mut d, "  port: 5000");
            line(&mut d, "  read_only_port: 5001");
            line(&mut d, "  pooled_port: 6432          # with pgbouncer enabled");
            line(&mut d, "  stats_port: 7000");
            line(&mut d, "  stats_address: 127.0.0.1");
            line(
                &mut d,
                "  kind: haproxy              # or external, with `command:` run on a flip",
            );
            line(&mut d, "  hosts:");
            line(&mut d, "    - name: glb1");
            line(&mut d, &format!("      address: {}", scalar(a)));
        }
        None => {
            line(
                &mut d,
                "# No global load balancer: clients use a cloud's HAProxy ports (`pgha dsn --cloud`).",
            );
            line(&mut d, "# glb:");
            line(&mut d, "#   fqdn: db.example.com");
            line(&mut d, "#   hosts:");
            line(&mut d, "#     - {name: glb1, address: 10.0.0.5}");
        }
    }
    line(&mut d, "");
    match &r.witness {
        Some(w) => {
            line(
                &mut d,
                "# A host in a third site: with it, a cloud cut off from the others fences its",
            );
            line(
                &mut d,
                "# own master, so a partition never leaves two writable masters.",
            );
            line(&mut d, "witness:");
            line(&mut d, "  name: witness");
            line(&mut d, &format!("  address: {}", scalar(w)));
            line(&mut d, "");
        }
        None if r.clouds.len() < 3 => {
            line(
                &mut d,
                "# With two clouds, a witness in a third site turns the site lease on (a cloud",
            );
            line(
                &mut d,
                "# cut off fences its own master). Without it, flips are manual.",
            );
            line(&mut d, "# witness: {name: witness, address: 10.0.3.5}");
            line(&mut d, "");
        }
        None => {}
    }
    let site_on = r.witness.is_some() || r.clouds.len() >= 3;
    let hash = if site_on { "" } else { "# " };
    line(&mut d, &format!("{hash}site:                         # the site lease"));
    line(
        &mut d,
        &format!("{hash}  ttl: 30                     # seconds; a master fences after a third of it"),
    );
    line(
        &mut d,
        &format!("{hash}  auto_failover: false        # true: a caught-up cloud takes an expired lease"),
    );
    line(
        &mut d,
        &format!("{hash}  maximum_lag: 16777216       # bytes a cloud may miss and still take over"),
    );
    line(
        &mut d,
        &format!(
            "{hash}  synchronous: false          # true: every commit waits for another cloud (RPO 0 across clouds)"
        ),
    );
    line(&mut d, &format!("{hash}  client_port: 2479"));
    line(&mut d, &format!("{hash}  peer_port: 2480"));
    line(&mut d, &format!("{hash}  gate_port: 2481"));
    line(&mut d, "");
    let hash = if r.no_backup { "# " } else { "" };
    line(
        &mut d,
        &format!("{hash}backup:                       # pgBackRest: a repository per cloud"),
    );
    line(&mut d, &format!("{hash}  repositories:"));
    for (c, hosts) in &r.clouds {
        match r.repositories.iter().find(|(rc, _)| rc == c) {
            Some((_, a)) => {
                line(&mut d, &format!("{hash}    - cloud: {}", scalar(c)));
                line(&mut d, &format!("{hash}      name: {}", scalar(&format!("{c}-backup"))));
                line(&mut d, &format!("{hash}      address: {}", scalar(a)));
            }
            None => {
                // A host of the cloud's own (small setups); the last, away from the first master.
                line(&mut d, &format!("{hash}    - cloud: {}", scalar(c)));
                line(
                    &mut d,
                    &format!(
                        "{hash}      host: {}",
                        scalar(&host_name(c, hosts.len().saturating_sub(1)))
                    ),
                );
            }
        }
        line(&mut d, &format!("{hash}      path: /var/lib/pgbackrest"));
    }
    line(&mut d, &format!("{hash}  retention_full: 2"));
    line(&mut d, &format!("{hash}  retention_diff: 6"));
    line(&mut d, &format!("{hash}  schedule:"));
    line(&mut d, &format!("{hash}    full: \"Sun *-*-* 01:00:00\""));
    line(&mut d, &format!("{hash}    diff: \"Mon..Sat *-*-* 01:00:00\""));
    line(&mut d, &format!("{hash}  archive_queue_max: 4294967296"));
    line(&mut d, &format!("{hash}  io_timeout: 15"));
    line(&mut d, &format!("{hash}  port: 8432"));
    (align(&d), inventories)
}

/// Every trailing comment starts in one column, for reading.
fn align(text: &str) -> String {
    text.lines()
        .map(|l| match comment_at(l).map(|i| (&l[..i], &l[i + 3..])) {
            Some((value, comment)) if !l.trim_start().starts_with('#') => {
                format!("{:<31} # {comment}\n", value.trim_end())
            }
            _ => format!("{l}\n"),
        })
        .collect()
}

/// Where a line's trailing ` # ` comment begins: the first one outside a
/// double-quoted value.
fn comment_at(line: &str) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' if !quoted && line[i..].starts_with(" # ") => return Some(i),
            _ => {}
        }
    }
    None
}

/// `<cloud>-pg<N>`, from 1.
pub fn host_name(cloud: &str, index: usize) -> String {
    format!("{cloud}-pg{}", index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_clouds() -> Request {
        Request {
            name: "orders".into(),
            clouds: vec![
                parse_cloud("dc1=10.0.1.11,10.0.1.12,10.0.1.13").unwrap(),
                parse_cloud("dc2=10.0.2.11,10.0.2.12,10.0.2.13").unwrap(),
            ],
            glb: Some("10.0.0.5".into()),
            glb_fqdn: Some("db.example.com".into()),
            witness: Some("10.0.3.5".into()),
            repositories: vec![parse_repository("dc1=10.0.1.20").unwrap()],
            ssh_user: "root".into(),
            ..Default::default()
        }
    }

    /// Writes the files under a temporary directory and loads the design.
    fn load(files: &Files) -> crate::design::Loaded {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("inventories")).unwrap();
        for (p, text) in &files.inventories {
            std::fs::write(dir.path().join(p), text).unwrap();
        }
        let path = dir.path().join("pgha.yaml");
        std::fs::write(&path, &files.design).unwrap();
        crate::design::load(&path).unwrap_or_else(|e| panic!("{e}\n{}", files.design))
    }

    #[test]
    fn two_clouds_of_three_hosts_validate_with_every_default() {
        let files = render(&two_clouds()).unwrap();
        let loaded = load(&files);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let d = loaded.design;
        assert_eq!(d.clouds.len(), 2);
        assert!(d.clouds[0].is_primary() && !d.clouds[1].is_primary());
        assert_eq!(d.clouds[1].hosts[2].name, "dc2-pg3");
        assert_eq!(d.clouds[1].hosts[2].address, "10.0.2.13");
        assert!(d.site.is_some() && d.witness().is_some());
        let b = d.backup.as_ref().unwrap();
        assert_eq!(b.repositories.len(), 2);
        assert_eq!(d.glb.as_ref().unwrap().fqdn, "db.example.com");
        // Shown values are the defaults: the same design as one that omits them.
        let bare = "platform: {name: orders}\nclouds:\n  - {name: dc1, status: primary, hosts: [{name: a, address: 10.0.0.1}]}\n";
        let defaults = crate::design::load_str(bare, std::path::Path::new("d.yaml"))
            .unwrap()
            .design;
        assert_eq!(format!("{:?}", d.etcd), format!("{:?}", defaults.etcd));
        assert_eq!(format!("{:?}", d.governor), format!("{:?}", defaults.governor));
        assert_eq!(format!("{:?}", d.haproxy), format!("{:?}", defaults.haproxy));
        assert_eq!(
            format!("{:?}", d.platform.parameters),
            format!("{:?}", defaults.platform.parameters)
        );
    }

    #[test]
    fn the_inline_design_is_the_same_design() {
        let files = render(&two_clouds()).unwrap();
        let inline = crate::design::load_str(&files.inline, std::path::Path::new("pgha.yaml")).unwrap();
        let written = load(&files).design;
        assert_eq!(format!("{:?}", inline.design.clouds), format!("{:?}", written.clouds));
    }

    #[test]
    fn without_a_witness_or_backups_the_sections_are_left_as_comments() {
        let mut r = two_clouds();
        r.witness = None;
        r.glb = None;
        r.glb_fqdn = None;
        r.no_backup = true;
        let d = load(&render(&r).unwrap()).design;
        assert!(d.site.is_none() && d.backup.is_none() && d.glb.is_none());
    }

    #[test]
    fn bad_input_is_refused_before_anything_is_written() {
        let mut r = two_clouds();
        r.clouds[1].1[0] = "10.0.2.11; rm -rf /".into();
        assert!(render(&r).unwrap_err().0.contains("not an IP address"));
        let mut r = two_clouds();
        r.name = "bad name".into();
        assert!(render(&r).unwrap_err().0.contains("--name"));
        let mut r = two_clouds();
        r.repositories = vec![("dc9".into(), "10.0.9.1".into())];
        assert!(render(&r).unwrap_err().0.contains("no cloud dc9"));
        let mut r = two_clouds();
        r.witness = Some("10.0.1.12".into());
        assert!(render(&r).unwrap_err().0.contains("given twice"));
        let mut r = two_clouds();
        r.clouds.push(parse_cloud("dc3=10.0.4.1").unwrap());
        assert!(render(&r).unwrap_err().0.contains("even count"));
        assert!(parse_cloud("dc1").is_err());
        assert!(parse_repository("dc1=a,b").is_err());
    }

    #[test]
    fn odd_values_are_quoted_for_yaml() {
        assert_eq!(scalar("10.0.0.1"), "10.0.0.1");
        assert_eq!(scalar("fd00::1"), "\"fd00::1\"");
        assert_eq!(scalar("yes"), "\"yes\"");
        assert_eq!(scalar("NULL"), "\"NULL\"");
        assert_eq!(scalar("123"), "\"123\"");
        assert_eq!(scalar("-"), "\"-\"");
        assert_eq!(scalar("10.0.0.0/8"), "10.0.0.0/8");
        assert_eq!(align("  a: \"x # y\" # z\n"), format!("{:<31} # z\n", "  a: \"x # y\""));
        assert_eq!(scalar("my keys/id"), "\"my keys/id\"");
    }
}
