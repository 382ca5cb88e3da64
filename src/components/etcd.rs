//! etcd: one cluster per cloud, so losing a cloud never costs another its quorum
//! (../HAZARDS #3: a 3+3 stretched cluster loses quorum with either cloud).

use super::{tls, Component, FileSpec};
use crate::design::shape::url_host;
use crate::shell::quote;

pub(crate) const CONFIG: FileSpec = FileSpec {
    component: Component::Etcd,
    template: "etcd.env.j2",
    path: "/etc/default/etcd",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: "etcd",
    check: None,
};

/// pgha's own data directory: the package's default member in
/// /var/lib/etcd/default belongs to a one-member cluster and must not be reused.
pub(crate) fn data_dir(cluster: &str) -> String {
    format!("/var/lib/etcd/pgha-{cluster}")
}

/// The config without its ETCD_INITIAL_* lines, as `grep -v` prints it:
/// what matters to a member that already has its data.
pub(crate) fn core(content: &str) -> String {
    content
        .lines()
        .filter(|l| !l.starts_with("ETCD_INITIAL_"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// etcdctl against the local member, over TLS with the host's certificate
/// (etcd refuses a client without one); pgha's scripts run as root.
fn etcdctl(client_port: u16) -> String {
    etcdctl_at(&format!("https://127.0.0.1:{client_port}"))
}

/// etcdctl against `endpoints` (comma-separated URLs of validated addresses).
pub(crate) fn etcdctl_at(endpoints: &str) -> String {
    format!(
        "ETCDCTL_API=3 etcdctl --endpoints={} --cacert={} --cert={} --key={} --command-timeout=3s",
        quote(endpoints),
        tls::TRUST_PATH,
        tls::CERT_PATH,
        tls::ETCD_KEY_PATH
    )
}

/// Who may do what in one etcd cluster (a cloud's, or the site's): etcd's
/// users and roles, with authentication on. Without them any certificate
/// of the cluster CA (the witness's, a repository host's) is etcd's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Access {
    /// Users named by their certificate's common name, with etcd's root
    /// role: the hosts pgha runs etcdctl on.
    pub roots: Vec<String>,
    /// Users named by certificate that may only read `prefix`.
    pub readers: Vec<String>,
    /// The password user of the JSON gateway's clients (Patroni, the site
    /// agents; the gateway takes no user from a certificate), and its role.
    pub user: &'static str,
    /// What `user` may read and write, and `readers` read.
    pub prefix: String,
}

/// A cloud's etcd: its hosts are root (pgha runs etcdctl on each), Patroni
/// reaches only its cluster's keys; the witness and the repository hosts
/// are nobody.
pub(crate) fn cloud_access(design: &crate::design::Design, cloud: &crate::design::Cloud) -> Access {
    Access {
        roots: cloud.hosts.iter().map(|h| h.name.clone()).collect(),
        readers: Vec::new(),
        user: crate::secrets::ETCD_PATRONI_USER,
        prefix: format!("{}{}/", super::patroni::NAMESPACE, design.platform.name),
    }
}

/// Where pgha records the digest of the access it set.
pub(crate) const ACCESS_MARKER: &str = "/pgha-access";
/// The role of [`Access::readers`].
const READER_ROLE: &str = "reader";

impl Access {
    /// A digest of the users, roles and `password`: equal to the cluster's
    /// marker when nothing needs setting.
    pub(crate) fn digest(&self, password: &str) -> String {
        crate::fsutil::sha256_hex(
            format!(
                "roots {}\nreaders {}\nuser {} {}\npassword {}\n",
                self.roots.join(","),
                self.readers.join(","),
                self.user,
                self.prefix,
                crate::fsutil::sha256_hex(password.as_bytes())
            )
            .as_bytes(),
        )
    }

    /// Sets the users and roles on the cluster at `endpoint` (as a root user
    /// by certificate), removes a root or reader user the design no longer
    /// names (a host gone, a witness replaced: their certificates stay
    /// valid), turns authentication on and records `digest`. Idempotent.
    /// The password comes in `$PGHA_INPUT`: never in argv.
    pub(crate) fn script(&self, endpoint: &str, digest: &str) -> String {
        let names = |v: &[String]| v.iter().map(|n| quote(n)).collect::<Vec<_>>().join(" ");
        let keep: Vec<String> = ["root".to_string(), self.user.to_string()]
            .into_iter()
            .chain(self.roots.iter().cloned())
            .chain(self.readers.iter().cloned())
            .collect();
        let readers = if self.readers.is_empty() {
            String::new()
        } else {
            format!(
                "role {READER_ROLE}\ne role grant-permission {READER_ROLE} read {prefix} --prefix=true >/dev/null\n\
for u in {readers}; do user \"$u\"; e user grant-role \"$u\" {READER_ROLE} >/dev/null; done\n",
                prefix = quote(&self.prefix),
                readers = names(&self.readers),
            )
        };
        format!(
            "set -e\n\
e() {{ {e} \"$@\"; }}\n\
{MIXED_VERSIONS_GUARD}\
user() {{ e user get \"$1\" >/dev/null 2>&1 || e user add \"$1\" --no-password >/dev/null; }}\n\
role() {{ e role get \"$1\" >/dev/null 2>&1 || e role add \"$1\" >/dev/null; }}\n\
for u in root {roots}; do user \"$u\"; e user grant-role \"$u\" root >/dev/null; done\n\
{readers}\
role {user}\n\
e role grant-permission {user} readwrite {prefix} --prefix=true >/dev/null\n\
if e user get {user} >/dev/null 2>&1; then\n\
  e user passwd {user} --interactive=false < \"$PGHA_INPUT\" >/dev/null\n\
else\n\
  e user add {user} --interactive=false < \"$PGHA_INPUT\" >/dev/null\n\
fi\n\
e user grant-role {user} {user} >/dev/null\n\
for u in $(e user list); do\n\
  case \" {keep} \" in *\" $u \"*) continue ;; esac\n\
  r=$(e user get \"$u\" | sed -n 's/^Roles: *//p' | tr ' ' '\\n')\n\
  if printf '%s\\n' \"$r\" | grep -qx -e root -e {READER_ROLE}; then e user delete \"$u\" >/dev/null; echo \"removed $u\"; fi\n\
done\n\
e auth enable >/dev/null\n\
e put {marker} {digest} >/dev/null\n",
            e = etcdctl_at(endpoint),
            roots = names(&self.roots),
            user = quote(self.user),
            prefix = quote(&self.prefix),
            keep = keep.join(" "),
            marker = ACCESS_MARKER,
            digest = quote(digest),
        )
    }
}

/// Stops the access script before any change (exit 3) when the members
/// that answer run two etcd minor versions: a 3.5 member passes a new
/// password on already hashed and empty in its log entry, which a 3.4
/// member stores as the hash of an empty password (etcd's 3.5 upgrade guide:
/// no mixed cluster with authentication on; release-3.5 v3_server.go).
/// The third column of `endpoint status -w simple` is the version in 3.4
/// and 3.5 alike. A member that does not answer is not counted.
pub(crate) const MIXED_VERSIONS_GUARD: &str = "v=$(e endpoint status --cluster -w simple 2>/dev/null | cut -d, -f3 | \
sed -n 's/^ *\\([0-9][0-9]*\\.[0-9][0-9]*\\)\\..*/\\1/p' | sort -u | tr '\\n' ' ')\n\
case \"$v\" in *' '?*) echo \"etcd's members run versions ${v% }: etcd keeps users consistent only among members of \
one version (its 3.5 upgrade guide); no user or password was changed: bring every member to one version, then deploy \
again\" >&2; exit 3 ;; esac\n";

/// Prints `LABEL DIGEST`: the access marker at `endpoint`, empty when it is
/// absent or etcd did not answer (see [`Access`]; the script writes it only
/// after authentication is on; etcd 3.4 has no `auth status` to ask).
pub(crate) fn access_probe_script(endpoint: &str, label: &str) -> String {
    format!(
        "echo \"{label} $({} get {ACCESS_MARKER} --print-value-only 2>/dev/null)\"\n",
        etcdctl_at(endpoint)
    )
}

/// Exits 0 when the local member is healthy (it has a leader and quorum).
pub(crate) fn health_script(client_port: u16) -> String {
    format!("{} endpoint health", etcdctl(client_port))
}

/// Lines `id, status, name, peer urls, client urls, learner`.
pub(crate) fn member_list_script(client_port: u16) -> String {
    format!("{} member list", etcdctl(client_port))
}

/// Adds a member to the running cluster: the only safe way to grow it.
pub(crate) fn member_add_script(client_port: u16, name: &str, peer_url: &str) -> String {
    format!(
        "{} member add {} {}",
        etcdctl(client_port),
        quote(name),
        quote(&format!("--peer-urls={peer_url}"))
    )
}

/// Removes a member by its hex id.
pub(crate) fn member_remove_script(client_port: u16, id: &str) -> String {
    format!("{} member remove {}", etcdctl(client_port), quote(id))
}

/// Takes `key` for a new lease of `ttl` seconds unless someone holds it:
/// prints `acquired LEASE`, or `held HOLDER` (the holder's JSON). The
/// transaction is: compare, blank line, success ops, blank line, failure ops
/// (none), blank line. The key
/// comes from a validated cluster name and the value is base64, so neither
/// can break out of etcdctl's transaction syntax; both are checked here too.
pub(crate) fn lock_acquire_script(client_port: u16, key: &str, value_b64: &str, ttl: u64) -> String {
    let plain = |s: &str, extra: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
    assert!(
        plain(key, "/._-") && plain(value_b64, "+/="),
        "lock key and value are plain"
    );
    format!(
        "e() {{ {etcdctl} \"$@\"; }}\n\
id=$(e lease grant {ttl} | sed -n 's/^lease \\([0-9a-f]*\\) granted.*/\\1/p')\n\
[ -n \"$id\" ] || {{ echo 'etcd granted no lease (no quorum?)' >&2; exit 1; }}\n\
if e txn <<EOF | head -1 | grep -qx SUCCESS\n\
create(\"{key}\") = \"0\"\n\
\n\
put {key} {value_b64} --lease=$id\n\
\n\
\n\
EOF\n\
then echo \"acquired $id\"\n\
else e lease revoke \"$id\" >/dev/null 2>&1; echo \"held $(e get {key} --print-value-only | base64 -d 2>/dev/null)\"\n\
fi\n",
        etcdctl = etcdctl(client_port)
    )
}

/// Renews a lease once.
pub(crate) fn lease_keepalive_script(client_port: u16, lease: &str, peers: &[&str]) -> String {
    // The local member first, then the cloud's others: a member that
    // restarts (a certificate rotation) does not cost a renewal.
    let endpoints: Vec<String> = std::iter::once("127.0.0.1")
        .chain(peers.iter().copied())
        .map(|a| format!("https://{}:{client_port}", url_host(a)))
        .collect();
    format!(
        "{} lease keep-alive --once {}",
        etcdctl_at(&endpoints.join(",")),
        quote(lease)
    )
}

/// Ends a lease and every key bound to it.
pub(crate) fn lease_revoke_script(client_port: u16, lease: &str) -> String {
    format!("{} lease revoke {}", etcdctl(client_port), quote(lease))
}

/// Adds `value` (one line of JSON) under `key` below `prefix`, then drops
/// the oldest keys below `prefix` past the newest `keep` (a bounded journal).
/// The value comes on stdin (`$PGHA_INPUT`): never in etcdctl's argv,
/// which every user of the host can read in `ps`.
pub(crate) fn journal_put_script(client_port: u16, prefix: &str, key: &str, keep: usize) -> String {
    format!(
        "e() {{ {etcdctl} \"$@\"; }}\n\
e put {key} < \"$PGHA_INPUT\" >/dev/null || exit 1\n\
e get {prefix} --prefix --keys-only | sed '/^$/d' | head -n -{keep} | while read -r k; do e del \"$k\" >/dev/null; done\n",
        etcdctl = etcdctl(client_port),
        key = quote(key),
        prefix = quote(prefix),
    )
}

/// Every value below `prefix`, one per line, oldest key first.
pub(crate) fn get_prefix_script(client_port: u16, prefix: &str) -> String {
    format!(
        "{} get {} --prefix --print-value-only",
        etcdctl(client_port),
        quote(prefix)
    )
}

/// Deletes one key.
pub(crate) fn del_script(client_port: u16, key: &str) -> String {
    format!("{} del {}", etcdctl(client_port), quote(key))
}

/// Deletes `keys` and every key under `prefixes`, stopping at the first
/// failure (no quorum).
pub(crate) fn del_all_script(client_port: u16, keys: &[String], prefixes: &[String]) -> String {
    let e = etcdctl(client_port);
    let mut script = String::from("set -e\n");
    for k in keys {
        script.push_str(&format!("{e} del {} >/dev/null\n", quote(k)));
    }
    for p in prefixes {
        script.push_str(&format!("{e} del --prefix {} >/dev/null\n", quote(p)));
    }
    script
}

/// A member's peer URL (an IPv6 address in brackets).
pub(crate) fn peer_url(address: &str, peer_port: u16) -> String {
    format!("https://{}:{peer_port}", url_host(address))
}

/// Throws the local member's data away and starts it as a member joining the
/// running cluster (after `member add`).
pub(crate) fn rejoin_script(data_dir: &str) -> String {
    format!(
        "systemctl stop etcd; rm -rf {}; sed -i 's/^ETCD_INITIAL_CLUSTER_STATE=.*/ETCD_INITIAL_CLUSTER_STATE=\"existing\"/' {}; systemctl start --no-block etcd",
        quote(data_dir),
        quote(CONFIG.path)
    )
}

/// Back to the canonical config once the member has joined (etcd ignores the
/// initial-cluster settings from then on).
pub(crate) fn restore_state_new_script() -> String {
    format!(
        "sed -i 's/^ETCD_INITIAL_CLUSTER_STATE=.*/ETCD_INITIAL_CLUSTER_STATE=\"new\"/' {}",
        quote(CONFIG.path)
    )
}

/// Member names from `member list` output (an unstarted member has no name yet:
/// it is identified by its peer URL instead).
pub(crate) fn parse_members(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split(',').map(str::trim).collect();
            (cols.len() >= 4).then(|| (cols[2].to_string(), cols[3].to_string()))
        })
        .collect()
}

/// One row of `member list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberRow {
    pub id: String,
    pub name: String,
    pub peer: String,
}

/// Every row of `member list` output, with its id.
pub(crate) fn parse_member_rows(out: &str) -> Vec<MemberRow> {
    out.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split(',').map(str::trim).collect();
            (cols.len() >= 4 && cols[0].chars().all(|c| c.is_ascii_hexdigit()) && !cols[0].is_empty()).then(|| {
                MemberRow {
                    id: cols[0].to_string(),
                    name: cols[2].to_string(),
                    peer: cols[3].to_string(),
                }
            })
        })
        .collect()
}

/// The address in a peer URL pgha wrote (`https://ADDR:PORT`, an IPv6
/// address in brackets), when it has that shape and a valid address.
pub(crate) fn peer_address(peer: &str, peer_port: u16) -> Option<String> {
    let host = peer.strip_prefix("https://")?.strip_suffix(&format!(":{peer_port}"))?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    crate::design::shape::address(host).map(|_| host.to_string())
}

/// Takes a member removed from its cluster out of service: its database
/// services stopped and disabled (PostgreSQL stops with Patroni), and its
/// etcd data deleted, since that member id is gone for good and a later
/// join starts afresh. With `pg_data`, PostgreSQL's data directory goes too,
/// but only once no postmaster holds it (its `postmaster.pid` gone).
pub(crate) fn retire_script(cluster: &str, units: &[&str], pg_data: Option<&str>) -> String {
    let mut script = format!(
        "for u in {}; do systemctl disable --now \"$u\" >/dev/null 2>&1 || true; done\nrm -rf {}\n",
        crate::shell::words(units),
        quote(&data_dir(cluster))
    );
    if let Some(dir) = pg_data {
        let dir = quote(dir);
        script.push_str(&format!(
            "if [ -e {dir}/postmaster.pid ]; then printf 'PostgreSQL still runs in %s: its data is kept\\n' {dir} >&2; exit 1; fi\n\
             rm -rf -- {dir}\n"
        ));
    }
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_rows_and_peer_addresses_are_read_strictly() {
        let out = "8e9e05c52164694d, started, dc1-pg1, https://10.0.0.1:2380, https://10.0.0.1:2379, false\n\
                   1a2b, unstarted, , https://[fd00::4]:2380, , false\nnot a row\n";
        let rows = parse_member_rows(out);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "dc1-pg1");
        assert_eq!(peer_address(&rows[0].peer, 2380).as_deref(), Some("10.0.0.1"));
        assert_eq!(peer_address(&rows[1].peer, 2380).as_deref(), Some("fd00::4"));
        assert_eq!(peer_address("https://a;b:2380", 2380), None);
        assert_eq!(peer_address("http://10.0.0.1:2380", 2380), None);
        let retire = retire_script("c", &["patroni", "etcd"], None);
        crate::shell::assert_parses_cleanly(&retire);
        assert!(retire.ends_with("rm -rf /var/lib/etcd/pgha-c\n"), "{retire}");
        let purge = retire_script("c", &["patroni"], Some("/srv/pg data"));
        crate::shell::assert_parses_cleanly(&purge);
        assert!(
            purge.ends_with(
                "if [ -e '/srv/pg data'/postmaster.pid ]; then printf 'PostgreSQL still runs in %s: its data is kept\\n' '/srv/pg data' >&2; exit 1; fi\n\
                 rm -rf -- '/srv/pg data'\n"
            ),
            "{purge}"
        );
    }

    /// Issue 26: members of two etcd minor versions stop the access script
    /// before any change; one version (patch levels apart) does not, nor
    /// a member that did not answer.
    #[test]
    fn two_etcd_versions_stop_the_access_script() {
        let run = |rows: &str| {
            let script = format!("e() {{ printf '%s' '{rows}'; }}\n{MIXED_VERSIONS_GUARD}echo changed\n");
            crate::shell::assert_parses_cleanly(&script);
            std::process::Command::new("sh").args(["-c", &script]).output().unwrap()
        };
        let row = |v: &str| format!("https://10.0.0.1:2379, 8e9e05c52164694d, {v}, 20 kB, true, false, 2, 8, 8, \n");
        let mixed = run(&format!("{}{}", row("3.4.23"), row("3.5.16")));
        assert_eq!(mixed.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&mixed.stderr).starts_with("etcd's members run versions 3.4 3.5: "));
        assert!(mixed.stdout.is_empty());
        for rows in [
            format!("{}{}", row("3.5.16"), row("3.5.21")),
            row("3.4.23"),
            String::new(),
        ] {
            let out = run(&rows);
            assert_eq!(String::from_utf8_lossy(&out.stdout), "changed\n", "{rows}");
        }
    }

    /// Issue 23: the users and roles of a cloud's etcd; the password only
    /// in the script's input; the digest changes with anything it covers.
    #[test]
    fn access_is_set_by_one_idempotent_script() {
        let a = Access {
            roots: vec!["dc1-pg1".into(), "dc1-pg2".into()],
            readers: vec!["w1".into()],
            user: "patroni",
            prefix: "/pgha/c/".into(),
        };
        let s = a.script("https://127.0.0.1:2379", "abc123");
        assert!(
            s.starts_with("set -e\ne() { ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 "),
            "{s}"
        );
        for line in [
            "for u in root dc1-pg1 dc1-pg2; do user \"$u\"; e user grant-role \"$u\" root >/dev/null; done\n",
            "role reader\ne role grant-permission reader read /pgha/c/ --prefix=true >/dev/null\n",
            "for u in w1; do user \"$u\"; e user grant-role \"$u\" reader >/dev/null; done\n",
            "e role grant-permission patroni readwrite /pgha/c/ --prefix=true >/dev/null\n",
            "e user passwd patroni --interactive=false < \"$PGHA_INPUT\" >/dev/null\n",
            "e user add patroni --interactive=false < \"$PGHA_INPUT\" >/dev/null\n",
            "case \" root patroni dc1-pg1 dc1-pg2 w1 \" in *\" $u \"*) continue ;; esac\n",
            "if printf '%s\\n' \"$r\" | grep -qx -e root -e reader; then e user delete \"$u\" >/dev/null; echo \"removed $u\"; fi\n",
            "e auth enable >/dev/null\ne put /pgha-access abc123 >/dev/null\n",
        ] {
            assert!(s.contains(line), "{line}\n---\n{s}");
        }
        assert!(s.contains(MIXED_VERSIONS_GUARD), "{s}");
        let no_readers = Access {
            readers: vec![],
            ..a.clone()
        };
        assert!(!no_readers.script("https://127.0.0.1:2379", "x").contains("role reader"));
        let d = a.digest("pw");
        assert_eq!(d.len(), 64);
        assert!(!d.contains("pw"));
        assert_ne!(d, a.digest("pw2"));
        assert_ne!(d, no_readers.digest("pw"));
        let more = Access {
            roots: vec!["dc1-pg1".into(), "dc1-pg2".into(), "dc1-pg3".into()],
            ..a.clone()
        };
        assert_ne!(d, more.digest("pw"));
        assert_eq!(
            access_probe_script("https://127.0.0.1:2479", "site_access"),
            format!(
                "echo \"site_access $({} get /pgha-access --print-value-only 2>/dev/null)\"\n",
                etcdctl_at("https://127.0.0.1:2479")
            )
        );
    }

    #[test]
    fn scripts_are_exact() {
        assert_eq!(
            member_add_script(2379, "dc1-pg4", "http://10.0.0.4:2380"),
            "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/pgha/tls/ca.crt --cert=/etc/pgha/tls/host.crt --key=/etc/pgha/tls/etcd.key --command-timeout=3s member add dc1-pg4 --peer-urls=http://10.0.0.4:2380"
        );
        assert_eq!(
            member_add_script(2379, "x;y", &peer_url("fd00::4", 2380)),
            "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/pgha/tls/ca.crt --cert=/etc/pgha/tls/host.crt --key=/etc/pgha/tls/etcd.key --command-timeout=3s member add 'x;y' '--peer-urls=https://[fd00::4]:2380'"
        );
        assert_eq!(
            member_remove_script(2379, "8e9e05c52164694d"),
            "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/pgha/tls/ca.crt --cert=/etc/pgha/tls/host.crt --key=/etc/pgha/tls/etcd.key --command-timeout=3s member remove 8e9e05c52164694d"
        );
        assert_eq!(
            del_script(2379, "/pgha/c/initialize"),
            "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/pgha/tls/ca.crt --cert=/etc/pgha/tls/host.crt --key=/etc/pgha/tls/etcd.key --command-timeout=3s del /pgha/c/initialize"
        );
        assert_eq!(
            rejoin_script("/var/lib/etcd/pgha-c"),
            "systemctl stop etcd; rm -rf /var/lib/etcd/pgha-c; sed -i 's/^ETCD_INITIAL_CLUSTER_STATE=.*/ETCD_INITIAL_CLUSTER_STATE=\"existing\"/' /etc/default/etcd; systemctl start --no-block etcd"
        );
        assert_eq!(
            lock_acquire_script(2379, "/pgha/c/pgha-lock", "eyJ1Ijoicm9vdCJ9", 30),
            "e() { ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/pgha/tls/ca.crt --cert=/etc/pgha/tls/host.crt --key=/etc/pgha/tls/etcd.key --command-timeout=3s \"$@\"; }\n\
id=$(e lease grant 30 | sed -n 's/^lease \\([0-9a-f]*\\) granted.*/\\1/p')\n\
[ -n \"$id\" ] || { echo 'etcd granted no lease (no quorum?)' >&2; exit 1; }\n\
if e txn <<EOF | head -1 | grep -qx SUCCESS\n\
create(\"/pgha/c/pgha-lock\") = \"0\"\n\
\n\
put /pgha/c/pgha-lock eyJ1Ijoicm9vdCJ9 --lease=$id\n\
\n\
\n\
EOF\n\
then echo \"acquired $id\"\n\
else e lease revoke \"$id\" >/dev/null 2>&1; echo \"held $(e get /pgha/c/pgha-lock --print-value-only | base64 -d 2>/dev/null)\"\n\
fi\n"
        );
        assert_eq!(
            lease_keepalive_script(2379, "694da21952c6e405", &["10.0.0.2", "fd00::3"]),
            "ETCDCTL_API=3 etcdctl --endpoints='https://127.0.0.1:2379,https://10.0.0.2:2379,https://[fd00::3]:2379' --cacert=/etc/pgha/tls/ca.crt --cert=/etc/pgha/tls/host.crt --key=/etc/pgha/tls/etcd.key --command-timeout=3s lease keep-alive --once 694da21952c6e405"
        );
        assert_eq!(
            lease_revoke_script(2379, "694da21952c6e405"),
            "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/pgha/tls/ca.crt --cert=/etc/pgha/tls/host.crt --key=/etc/pgha/tls/etcd.key --command-timeout=3s lease revoke 694da21952c6e405"
        );
        assert_eq!(
            health_script(2379),
            "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/pgha/tls/ca.crt --cert=/etc/pgha/tls/host.crt --key=/etc/pgha/tls/etcd.key --command-timeout=3s endpoint health"
        );
    }

    #[test]
    fn member_list_is_parsed() {
        let out = "8e9e05c52164694d, started, dc1-pg1, http://10.0.0.1:2380, http://10.0.0.1:2379, false\n\
                   91bc3c398fb3c146, unstarted, , http://10.0.0.4:2380, , false\n";
        assert_eq!(
            parse_members(out),
            [
                ("dc1-pg1".to_string(), "http://10.0.0.1:2380".to_string()),
                (String::new(), "http://10.0.0.4:2380".to_string())
            ]
        );
    }
}
