//! What a host is like now, read in one SSH round trip: packages, hashes of
//! the files pgha manages, services, data directories, listening ports.

use std::collections::BTreeMap;

use crate::components::{self, backup, packages, FileSpec};
use crate::design::{Design, Repository};
use crate::remote::Remote;
use crate::shell;

/// Listening TCP sockets, as `ss` lines the fact parser reads.
pub(crate) const LISTENERS_SCRIPT: &str = "ss -Hltnp | sed 's/^/ss /'";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Service {
    pub active: String,
    pub enabled: String,
}

impl Service {
    pub(crate) fn is_active(&self) -> bool {
        self.active == "active"
    }
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled == "enabled"
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct HostFacts {
    pub os: String,
    pub missing_packages: Vec<String>,
    /// Each managed file, `None` when absent.
    pub files: BTreeMap<String, Option<FileFact>>,
    pub services: BTreeMap<String, Service>,
    pub etcd_initialized: bool,
    /// The site member (issue #11) has its data.
    pub site_initialized: bool,
    /// A member with data that an earlier pgha configured without TLS.
    pub etcd_plaintext: bool,
    /// sha256 of the etcd config without its ETCD_INITIAL_* lines.
    pub etcd_core: Option<String>,
    pub pgdata: bool,
    /// Listening TCP port -> process name.
    pub listeners: BTreeMap<u16, String>,
    /// Ports listened on every address (`0.0.0.0`, `*`, `[::]`), not only one.
    pub wildcard_ports: std::collections::BTreeSet<u16>,
    /// The host's network interfaces (read when a cloud has a virtual IP).
    pub interfaces: std::collections::BTreeSet<String>,
    /// Patroni's dynamic configuration, when its REST API answered.
    pub dynamic_config: Option<serde_json::Value>,
    /// The version apt would install of the design's PostgreSQL package;
    /// `None` when no apt source ships it.
    pub postgres_candidate: Option<String>,
    /// The PostgreSQL major versions the host's apt sources ship.
    pub postgres_available: Vec<u32>,
    /// The major version Patroni is configured for now (its `bin_dir`).
    pub postgres_configured: Option<u32>,
    /// The major version a `pgha upgrade postgres` under way moves to.
    pub major_upgrade_to: Option<u32>,
    /// A repository host: the stanza exists, and how many full backups it holds.
    pub stanza: bool,
    pub full_backups: usize,
    /// The design's parameters PostgreSQL knows here, by lowercase name,
    /// with their context (`postmaster`: a change needs a restart).
    /// Empty unless PostgreSQL runs.
    pub pg_contexts: BTreeMap<String, String>,
    /// The metrics exporter's connection logs in (its role and password are right).
    pub exporter_login: bool,
    /// The access digest the local cloud etcd member holds (see
    /// `etcd::Access`); `None` when it did not answer.
    pub cloud_access: Option<String>,
    /// The same of the local site member.
    pub site_access: Option<String>,
    /// The v2 access digest of the local cloud member (see
    /// `vip::access_digest`); `None` or empty when it could not be read.
    pub vip_access: Option<String>,
    /// Patroni's last start was with the etcd gateway certificate (whether
    /// it runs is `services`').
    pub patroni_gateway: bool,
    /// The clients of Patroni's REST API here (see `components::rest`).
    pub rest: components::rest::Facts,
    /// The cloud's etcd members, as the local member lists them.
    pub etcd_members: Vec<components::etcd::MemberRow>,
    /// The site lease's etcd members, as a site member here lists them.
    pub site_members: Vec<components::etcd::MemberRow>,
    /// Patroni's members, from the local REST API.
    pub patroni_members: Option<Vec<components::patroni::Member>>,
    /// The host's HAProxy (or GLB) statistics CSV, when its page answered.
    pub stats: Option<String>,
    /// A master's archiver row (with backups on; see `backup::parse_archiver`).
    pub archiver: Option<String>,
    /// The site agent here has reached the site once (its fences are armed).
    pub site_armed: bool,
    /// The site lease's holder as a site member here reads it (its JSON;
    /// empty: nobody holds it); `None` when it did not answer.
    pub site_primary: Option<String>,
    /// The design's databases and roles as a master here holds them (with
    /// databases or roles declared); `None` on a replica, or unread.
    pub objects: Option<components::objects::State>,
}

/// A managed file as it is on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FileFact {
    pub sha256: String,
    /// `owner:group:mode`, mode in octal as `stat -c %a` prints it.
    pub meta: String,
}

impl FileFact {
    #[cfg(test)]
    pub(crate) fn new(sha256: &str, owner: &str, group: &str, mode: u32) -> Self {
        FileFact {
            sha256: sha256.to_string(),
            meta: meta(owner, group, mode),
        }
    }
}

/// `owner:group:mode` as the facts script reports it.
pub(crate) fn meta(owner: &str, group: &str, mode: u32) -> String {
    format!("{owner}:{group}:{mode:o}")
}

impl HostFacts {
    pub(crate) fn service(&self, name: &str) -> Service {
        self.services.get(name).cloned().unwrap_or_default()
    }

    pub(crate) fn file(&self, path: &str) -> Option<&FileFact> {
        self.files.get(path).and_then(Option::as_ref)
    }
}

/// The GLB host's facts script: [`script`]'s, then the GLB's statistics,
/// which a deploy that changes nothing verifies it by.
pub(crate) fn glb_script(design: &Design) -> String {
    script(
        design,
        &packages::glb_host(),
        &components::glb_host_files(design),
        false,
    ) + &if design.site.is_some() {
        // With the site lease the GLB checks every host's Patroni.
        components::rest::probe_script(&[components::glb::CONFIG.path], false)
    } else {
        String::new()
    } + &design.glb.as_ref().map_or(String::new(), |g| {
        components::patroni::local_reads_script(
            None,
            Some((&components::haproxy::stats_host(&g.stats_address), g.stats_port)),
        )
    })
}

/// Patroni's members as the first of `cloud`'s hosts whose REST API
/// answered listed them.
pub(crate) fn cloud_members<'a>(
    cloud: &crate::design::Cloud,
    facts: &'a BTreeMap<String, HostFacts>,
) -> Option<&'a [components::patroni::Member]> {
    cloud
        .hosts
        .iter()
        .find_map(|h| facts.get(&h.name)?.patroni_members.as_deref())
}

/// The distribution's own cluster unit, which Patroni must not fight.
pub(crate) fn distro_unit(design: &Design) -> String {
    format!("postgresql@{}-main", design.platform.postgres_version)
}

/// The facts script for a host with these packages and files. Pure. One
/// `dpkg-query` and one `systemctl show` for all packages and services;
/// a database host (`db`) also prints Patroni's dynamic configuration, when
/// its REST API answers, and which PostgreSQL its apt sources can install.
pub(crate) fn script(design: &Design, packages: &[String], files: &[FileSpec], db: bool) -> String {
    let mut services: Vec<String> = files.iter().map(|f| f.service.to_string()).collect();
    services.push(distro_unit(design));
    // The package's own vip-manager unit, which pgha keeps off.
    if db && components::vip::any(design) {
        services.push(components::vip::DEBIAN_SERVICE.to_string());
    }
    services.sort();
    services.dedup();
    let paths: Vec<&str> = files.iter().map(|f| f.path).collect();
    let etcd_member = format!("{}/member", components::etcd::data_dir(&design.platform.name));
    let site_member = format!("{}/member", components::site::data_dir(&design.platform.name));
    let pg_version = format!("{}/PG_VERSION", design.platform.data_dir);
    let db_facts = if db {
        format!(
            "{}{} 2>/dev/null | sed 's/^/etcd_member /'\n{}{}{}{}\
[ \"$(cat {stamp} 2>/dev/null)\" -gt 0 ] 2>/dev/null && echo patroni_gateway\n{armed}{rest}",
            components::patroni::local_reads_script(
                Some(design.governor.rest_port),
                Some((
                    &components::haproxy::stats_host(&design.haproxy.stats_address),
                    design.haproxy.stats_port
                ))
            ),
            components::etcd::member_list_script(design.etcd.client_port),
            postgres_script(design.platform.postgres_version),
            sql_script(design),
            if design.managed_objects().is_empty() {
                String::new()
            } else {
                components::objects::state_script(design)
            },
            components::etcd::access_probe_script(
                &format!("https://127.0.0.1:{}", design.etcd.client_port),
                "cloud_access"
            ),
            stamp = components::patroni::GATEWAY_STAMP,
            rest = components::rest::probe_script(&components::rest::client_files_among(files), true),
            armed = if design.site.is_some() {
                format!("[ -f {} ] && echo site_armed\n", components::site::ARMED)
            } else {
                String::new()
            },
        ) + &design
            .exporter
            .as_ref()
            .map(|_| components::exporter::login_script())
            .unwrap_or_default()
            + &if components::vip::any(design) {
                format!(
                    "{}{}",
                    components::vip::INTERFACES_SCRIPT,
                    components::vip::access_probe_script(design.etcd.client_port)
                )
            } else {
                String::new()
            }
    } else {
        String::new()
    };
    format!(
        r#". /etc/os-release 2>/dev/null; echo "os $ID $VERSION_ID"
have=$(dpkg-query -W -f='${{Package}} ${{db:Status-Status}}\n' {pkgs} 2>/dev/null)
for p in {pkgs}; do s=missing; while read -r n st; do [ "$n" = "$p" ] && s=$st; done <<PGHA_PKGS
$have
PGHA_PKGS
echo "pkg $p $s"; done
set --
for f in {paths}; do if [ -f "$f" ]; then set -- "$@" "$f"; else echo "file $f absent"; fi; done
[ $# -eq 0 ] || {{ sha256sum -- "$@"; stat -c 'meta %U:%G:%a %n' -- "$@"; }} | awk '$1 == "meta" {{ m[$3] = $2; next }} {{ h[$2] = $1; o[++n] = $2 }} END {{ for (i = 1; i <= n; i++) print "file " o[i] " " h[o[i]] " " m[o[i]] }}'
systemctl show -p Id -p ActiveState -p UnitFileState {svcs} 2>/dev/null | sed 's/^/svc /'
[ -d {etcd_member} ] && echo "etcd_initialized"
[ -d {site_member} ] && echo "site_initialized"
{site_list}[ -d {etcd_member} ] && grep -qs '^ETCD_LISTEN_CLIENT_URLS="http://' {etcd_file} && echo "etcd_plaintext"
echo "etcd_core $(grep -v '^ETCD_INITIAL_' {etcd_file} 2>/dev/null | sha256sum | cut -d' ' -f1)"
[ -f {pg_version} ] && echo "pgdata"
ss -Hltnp 2>/dev/null | sed 's/^/ss /'
{db_facts}true
"#,
        pkgs = shell::words(packages),
        paths = shell::words(&paths),
        svcs = shell::words(&services),
        etcd_member = shell::quote(&etcd_member),
        site_member = shell::quote(&site_member),
        site_list = design.site.as_ref().map_or(String::new(), |s| {
            let local = format!("https://127.0.0.1:{}", s.client_port);
            format!(
                "[ -d {m} ] && {e} member list 2>/dev/null | sed 's/^/site_member /'\nif [ -d {m} ]; then\n{}\
v=$({e} get {} --print-value-only 2>/dev/null) && printf 'site_primary %s\\n' \"$v\"\nfi\n",
                components::etcd::access_probe_script(&local, "site_access"),
                shell::quote(&components::site::primary_key(&design.platform.name)),
                e = components::etcd::etcdctl_at(&local),
                m = shell::quote(&site_member),
            )
        }),
        etcd_file = shell::quote(components::etcd::CONFIG.path),
        pg_version = shell::quote(&pg_version),
    )
}

/// A repository's own facts, after [`script`]'s: whether the stanza
/// exists in its repository and how many full backups it has (their
/// directories end in `F`).
pub(crate) fn repository_script(design: &Design, repo: &Repository) -> String {
    let dir = shell::quote(&format!(
        "{}/backup/{}",
        repo.path.trim_end_matches('/'),
        backup::stanza(design)
    ));
    format!(
        "[ -f {dir}/backup.info ] && echo stanza\n\
echo \"full_backups $(ls -d {dir}/*F 2>/dev/null | wc -l)\"\n"
    )
}

/// Which PostgreSQL the host can install, when the design's version is not
/// installed (apt's candidate, after refreshing the package lists only if
/// there is none, and the versions its sources ship), and which one Patroni
/// is configured for. Reads `$have`, the package states printed before.
fn postgres_script(version: u32) -> String {
    format!(
        r#"if ! echo "$have" | grep -qx 'postgresql-{version} installed'; then
c() {{ apt-cache policy postgresql-{version} 2>/dev/null | sed -n 's/^ *Candidate: //p'; }}
v=$(c); case "$v" in ''|'(none)') apt-get update -q >/dev/null 2>&1; v=$(c);; esac
echo "pg_candidate ${{v:-(none)}}"
apt-cache pkgnames postgresql- 2>/dev/null | grep -E '^postgresql-[0-9]+$' | sed 's/^postgresql-/pg_available /'
fi
{configured}
[ -f {marker} ] && sed -n 's/^to /pg_upgrade_to /p' {marker}
"#,
        configured = components::patroni::configured_major_script("pg_configured "),
        marker = components::major::MARKER,
    )
}

/// One psql, when PostgreSQL runs: the context of each design parameter it
/// knows (`pg_context|<name>|<context>`: `postmaster` needs a restart) and,
/// with backups on, the archiver of a master (`archiver|<row>`, see
/// [`backup::ARCHIVER_SQL`]; a replica prints none).
fn sql_script(design: &Design) -> String {
    let mut queries = Vec::new();
    if !design.platform.parameters.is_empty() {
        let names: Vec<String> = design
            .platform
            .parameters
            .keys()
            .map(|k| shell::sql_literal(&k.to_lowercase()))
            .collect();
        queries.push(format!(
            "SELECT 'pg_context', name, context FROM pg_settings WHERE lower(name) IN ({})",
            names.join(", ")
        ));
    }
    if design.backup.is_some() {
        queries.push(format!(
            "SELECT 'archiver', a.* FROM ({}) a WHERE NOT pg_is_in_recovery()",
            backup::ARCHIVER_SQL
        ));
    }
    if queries.is_empty() {
        return String::new();
    }
    let commands: Vec<String> = queries.iter().map(|q| format!("-c {}", shell::quote(q))).collect();
    format!(
        "(cd / && runuser -u postgres -- psql -p {} -XAtq {}) 2>/dev/null\n",
        design.platform.postgres_port,
        commands.join(" ")
    )
}

/// Adds one `svc` line of `systemctl show` (`Id=`, `ActiveState=`,
/// `UnitFileState=`; an empty line ends a unit) to `unit`, finishing it
/// into `services` at a blank line.
fn svc_line(rest: &str, unit: &mut Vec<(String, String)>, services: &mut BTreeMap<String, Service>) {
    match rest.split_once('=') {
        Some((k, v)) => unit.push((k.to_string(), v.trim().to_string())),
        None => finish_unit(unit, services),
    }
}

fn finish_unit(unit: &mut Vec<(String, String)>, services: &mut BTreeMap<String, Service>) {
    let get = |key: &str| unit.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    if let Some(id) = get("Id") {
        let name = id.strip_suffix(".service").unwrap_or(&id).to_string();
        services.insert(
            name,
            Service {
                active: get("ActiveState").unwrap_or_else(|| "unknown".into()),
                enabled: get("UnitFileState").unwrap_or_default(),
            },
        );
    }
    unit.clear();
}

pub(crate) fn parse(text: &str) -> HostFacts {
    let mut f = HostFacts::default();
    let mut unit = Vec::new();
    let mut objects = Vec::new();
    for line in text.lines() {
        if let Some((k @ ("objects" | "objects_ext" | "objects_lookup"), rest)) = line.split_once(' ') {
            objects.push((k, rest));
            continue;
        }
        if let Some(rest) = line.strip_prefix("svc ") {
            svc_line(rest, &mut unit, &mut f.services);
            continue;
        }
        if let Some(json) = line.strip_prefix("config ") {
            f.dynamic_config = serde_json::from_str(json).ok();
            continue;
        }
        if let Some(json) = line.strip_prefix("cluster ") {
            f.patroni_members = components::patroni::parse_cluster_view(json).ok().map(|v| v.members);
            continue;
        }
        if let Some(row) = line.strip_prefix("etcd_member ") {
            f.etcd_members.extend(components::etcd::parse_member_rows(row));
            continue;
        }
        if let Some(row) = line.strip_prefix("pg_context|") {
            if let Some((name, context)) = row.split_once('|') {
                f.pg_contexts.insert(name.to_lowercase(), context.to_string());
            }
            continue;
        }
        if let Some(row) = line.strip_prefix("archiver|") {
            f.archiver = Some(row.to_string());
            continue;
        }
        if let Some(row) = line.strip_prefix("stat ") {
            f.stats.get_or_insert_with(String::new).push_str(&format!("{row}\n"));
            continue;
        }
        if let Some(json) = line.strip_prefix("site_primary ") {
            f.site_primary = Some(json.trim().to_string());
            continue;
        }
        if let Some(row) = line.strip_prefix("site_member ") {
            f.site_members.extend(components::etcd::parse_member_rows(row));
            continue;
        }
        let mut w = line.split_whitespace();
        match w.next() {
            Some("os") => f.os = w.collect::<Vec<_>>().join(" "),
            Some("pkg") => {
                if let (Some(name), Some(status)) = (w.next(), w.next()) {
                    if status != "installed" {
                        f.missing_packages.push(name.to_string());
                    }
                }
            }
            Some("file") => {
                if let (Some(path), Some(hash)) = (w.next(), w.next()) {
                    let fact = (hash != "absent").then(|| FileFact {
                        sha256: hash.to_string(),
                        meta: w.next().unwrap_or_default().to_string(),
                    });
                    f.files.insert(path.to_string(), fact);
                }
            }
            Some("etcd_initialized") => f.etcd_initialized = true,
            Some("site_initialized") => f.site_initialized = true,
            Some("etcd_plaintext") => f.etcd_plaintext = true,
            Some("etcd_core") => f.etcd_core = w.next().map(str::to_string),
            Some("pgdata") => f.pgdata = true,
            Some("exporter_login") => f.exporter_login = true,
            Some("cloud_access") => f.cloud_access = w.next().map(str::to_string),
            Some("site_access") => f.site_access = w.next().map(str::to_string),
            Some("vip_access") => f.vip_access = w.next().map(str::to_string),
            Some("patroni_gateway") => f.patroni_gateway = true,
            Some("rest_client_old") => f.rest.old_clients.extend(w.next().map(str::to_string)),
            Some("rest_verify_required") => f.rest.required = true,
            Some("site_armed") => f.site_armed = true,
            Some("iface") => f.interfaces.extend(w.next().map(str::to_string)),
            Some("stanza") => f.stanza = true,
            Some("full_backups") => f.full_backups = w.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            Some("pg_candidate") => f.postgres_candidate = w.next().filter(|v| *v != "(none)").map(str::to_string),
            Some("pg_available") => f
                .postgres_available
                .extend(w.next().and_then(|v| v.parse::<u32>().ok())),
            Some("pg_configured") => f.postgres_configured = w.next().and_then(|v| v.parse().ok()),
            Some("pg_upgrade_to") => f.major_upgrade_to = w.next().and_then(|v| v.parse().ok()),
            Some("ss") => {
                // LISTEN 0 128 0.0.0.0:8008 0.0.0.0:* users:(("python3",pid=1,fd=5))
                let cols: Vec<&str> = line.split_whitespace().collect();
                let local = cols.get(4).and_then(|a| a.rsplit_once(':'));
                let port = local.and_then(|(_, p)| p.parse().ok());
                if let (Some((addr, _)), Some(port)) = (local, port) {
                    if ["0.0.0.0", "*", "[::]"].contains(&addr) {
                        f.wildcard_ports.insert(port);
                    }
                }
                let proc = line
                    .split("((\"")
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .unwrap_or("?");
                if let Some(port) = port {
                    f.listeners.entry(port).or_insert_with(|| proc.to_string());
                }
            }
            _ => {}
        }
    }
    finish_unit(&mut unit, &mut f.services);
    f.objects = components::objects::parse_state(&objects);
    f
}

pub(crate) async fn gather(remote: &Remote, script: &str) -> anyhow::Result<HostFacts> {
    let out = remote.check("reading facts", script).await?;
    Ok(parse(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_facts_script_parses_cleanly() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/two-clouds.yaml");
        let d = crate::design::load(&path).unwrap().design;
        let script = script(&d, &["patroni".to_string()], &components::DB_HOST_FILES, true);
        shell::assert_parses_cleanly(&script);
    }

    #[test]
    fn parses_every_kind_of_fact() {
        let f = parse(
            "os debian 12\npkg patroni installed\npkg haproxy not-installed\npkg etcd-server missing\n\
file /etc/a absent\nfile /etc/b 0123abcd postgres:postgres:600\n\
svc Id=patroni.service\nsvc ActiveState=active\nsvc UnitFileState=enabled\nsvc \n\
svc ActiveState=inactive\nsvc Id=etcd.service\nsvc UnitFileState=disabled\netcd_initialized\netcd_plaintext\n\
config {\"ttl\": 30, \"standby_cluster\": null}\n\
ss LISTEN 0      128          0.0.0.0:8008      0.0.0.0:*    users:((\"nc\",pid=42,fd=3))\n\
ss LISTEN 0 244 [::]:5432 [::]:* users:((\"postgres\",pid=7,fd=6))\n\
pg_candidate 17.12-1\npg_available 17\npg_available 15\npg_configured 15\npg_upgrade_to 17\n\
rest_client_old /etc/haproxy/haproxy.cfg\nrest_client_old /usr/local/lib/pgha/site-agent\nrest_verify_required\n",
        );
        assert_eq!(
            f.rest.old_clients,
            ["/etc/haproxy/haproxy.cfg", "/usr/local/lib/pgha/site-agent"]
        );
        assert!(f.rest.required);
        assert_eq!(f.major_upgrade_to, Some(17));
        assert_eq!(f.postgres_candidate.as_deref(), Some("17.12-1"));
        assert_eq!(f.postgres_available, [17, 15]);
        assert_eq!(f.postgres_configured, Some(15));
        assert_eq!(parse("pg_candidate (none)\n").postgres_candidate, None);
        assert_eq!(f.os, "debian 12");
        assert_eq!(f.missing_packages, ["haproxy", "etcd-server"]);
        assert_eq!(f.file("/etc/a"), None);
        assert_eq!(f.file("/etc/b").unwrap().sha256, "0123abcd");
        assert_eq!(f.file("/etc/b").unwrap().meta, "postgres:postgres:600");
        assert!(f.service("patroni").is_active() && f.service("patroni").is_enabled());
        assert!(!f.service("etcd").is_active() && !f.service("etcd").is_enabled());
        assert_eq!(f.dynamic_config.as_ref().unwrap()["ttl"], 30);
        assert!(f.etcd_initialized && f.etcd_plaintext && !f.pgdata);
        assert_eq!(f.listeners.get(&8008).map(String::as_str), Some("nc"));
        assert!(f.wildcard_ports.contains(&8008), "{:?}", f.wildcard_ports);
        assert_eq!(f.listeners.get(&5432).map(String::as_str), Some("postgres"));
    }

    /// What a deploy that changes nothing verifies by (and one psql's two
    /// kinds of rows).
    #[test]
    fn parses_the_facts_verify_steps_read() {
        let f = parse(
            "stat # pxname,svname,status\nstat pgha-primary,a1,UP\narchiver|00000001000000000000000C|3|0||f\n\
pg_context|Max_Connections|postmaster\nsite_armed\nsite_primary {\"cloud\": \"dc1\", \"lsn\": 5}\n",
        );
        assert_eq!(f.stats.as_deref(), Some("# pxname,svname,status\npgha-primary,a1,UP\n"));
        assert_eq!(f.archiver.as_deref(), Some("00000001000000000000000C|3|0||f"));
        assert_eq!(f.pg_contexts["max_connections"], "postmaster");
        assert!(f.site_armed);
        assert_eq!(f.site_primary.as_deref(), Some(r#"{"cloud": "dc1", "lsn": 5}"#));
        // A member that answered with nobody holding the lease, and one that did not answer.
        assert_eq!(parse("site_primary \n").site_primary.as_deref(), Some(""));
        let silent = parse("os debian 13\n");
        assert!(silent.stats.is_none() && silent.site_primary.is_none() && !silent.site_armed);
    }
}
