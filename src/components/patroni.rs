//! Patroni, the governor: elects the master inside the primary cloud and runs
//! each secondary cloud as a standby cluster that can never accept writes.

use super::{Component, FileSpec};
use crate::design::Design;
use crate::shell::quote;

/// Written as Patroni starts: how many times its config names the etcd
/// gateway certificate (0: Patroni runs with the host's, from before etcd
/// had users, and etcd's authentication must wait for its restart).
pub(crate) const GATEWAY_STAMP: &str = "/run/pgha/patroni-gateway";

pub(crate) const CONFIG: FileSpec = FileSpec {
    component: Component::Governor,
    template: "patroni.yml.j2",
    path: "/etc/patroni/config.yml",
    owner: "postgres",
    group: "postgres",
    // Holds the passwords.
    mode: 0o600,
    service: "patroni",
    check: None,
};

/// Run before Patroni starts: a cloud returning after another cloud became
/// primary without it follows that cloud instead of electing a second master.
pub(crate) const FENCE: FileSpec = FileSpec {
    component: Component::Governor,
    template: "patroni-fence.py.j2",
    path: "/usr/local/lib/pgha/patroni-fence",
    owner: "root",
    group: "root",
    mode: 0o755,
    service: "patroni",
    check: Some("python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())'"),
};

/// The systemd drop-in that runs [`FENCE`] before Patroni.
pub(crate) const FENCE_UNIT: FileSpec = FileSpec {
    component: Component::Governor,
    template: "patroni-fence.conf.j2",
    path: "/etc/systemd/system/patroni.service.d/pgha-fence.conf",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: "patroni",
    check: None,
};

/// How Patroni makes a replica, in order: from the cloud's backup
/// repository when the design has backups (a standby cloud then copies
/// nothing across data centers), else, or when that fails, a base backup
/// from its upstream. Rendered into every template that writes it.
pub(crate) fn replica_methods(design: &Design) -> Vec<&'static str> {
    if design.backup.is_some() {
        vec!["pgbackrest", "basebackup"]
    } else {
        vec!["basebackup"]
    }
}

/// A host's own HAProxy, as a standby cluster's `host`.
pub(crate) const LOCAL_HAPROXY: &str = "127.0.0.1";

/// Where a standby cloud's leader streams from: with a site lease, its own
/// host's HAProxy, which lists every cloud's hosts and follows the one
/// master wherever it is, and ends the session as soon as that master's
/// checks fail (`on-marked-down shutdown-sessions`): a WAL receiver sent to
/// another cloud's HAProxy host that lost power waited on a silent
/// connection, then on TCP's connect retries to that host, for minutes.
/// Without a site lease, HAProxy lists only the primary cloud's hosts
/// (`hosts`: theirs), and the standby follows those.
pub(crate) fn standby_hosts<S: AsRef<str>>(design: &Design, hosts: &[S]) -> Vec<String> {
    if design.site.is_some() {
        vec![LOCAL_HAPROXY.to_string()]
    } else {
        hosts.iter().map(|h| h.as_ref().to_string()).collect()
    }
}

/// The dynamic `standby_cluster` section that makes a cloud follow `hosts`
/// (the primary cloud's HAProxy instances; see [`standby_hosts`]). A
/// standby cluster's members clone with its `create_replica_methods`. The
/// site agent's settings carry it as rendered here; the Patroni fence
/// template writes the same shape.
pub(crate) fn standby_cluster<S: AsRef<str>>(design: &Design, hosts: &[S]) -> serde_json::Value {
    standby_cluster_at(design, &standby_hosts(design, hosts).join(","), design.haproxy.port)
}

/// A `standby_cluster` that streams from PostgreSQL on `address` itself,
/// past every HAProxy: a flip's new cloud fetching WAL from the demoted
/// master (a standby serves its WAL to cascading standbys).
pub(crate) fn standby_cluster_direct(design: &Design, address: &str) -> serde_json::Value {
    standby_cluster_at(design, address, design.platform.postgres_port)
}

fn standby_cluster_at(design: &Design, host: &str, port: u16) -> serde_json::Value {
    serde_json::json!({
        "host": host,
        "port": port,
        "create_replica_methods": replica_methods(design),
    })
}

/// Where the clusters live in etcd (the config file's `namespace`).
pub(crate) const NAMESPACE: &str = "/pgha/";

/// Forgets the cluster `scope` in this cloud's etcd: Patroni's keys only
/// (pgha's lock lives under the same prefix and stays). Patroni then takes
/// a restored data directory as a new cluster, and bootstraps standby
/// leaders and replicas as on a first deploy.
pub(crate) fn forget_cluster_script(client_port: u16, scope: &str) -> String {
    let base = format!("{NAMESPACE}{scope}/");
    let keys: Vec<String> = [
        "initialize",
        "config",
        "leader",
        "history",
        "failover",
        "sync",
        "status",
        "failsafe",
    ]
    .iter()
    .map(|k| format!("{base}{k}"))
    .collect();
    let prefixes: Vec<String> = ["members/", "optime/"].iter().map(|p| format!("{base}{p}")).collect();
    super::etcd::del_all_script(client_port, &keys, &prefixes)
}

/// Prints Patroni's `/cluster` document from the local REST API.
pub(crate) fn cluster_script(rest_port: u16) -> String {
    http_get_script(rest_port, "/cluster")
}

/// Prints the cloud's timeline history (`/history`): one entry per
/// promotion, `[timeline, lsn, reason, timestamp, new leader]`.
pub(crate) fn history_script(rest_port: u16) -> String {
    http_get_script(rest_port, "/history")
}

/// Prints `config <JSON>` (the dynamic configuration) and `cluster <JSON>`
/// (the members) from the local REST API, each when it answers, and
/// `stat <line>` for each line of HAProxy's statistics CSV at `stats`
/// (address and port, plain HTTP) when given: one Python start for all, as the
/// facts of every host need them. Raw HTTP/1.0 over `socket` and `ssl`:
/// importing `urllib` doubles the start's CPU, which ten hosts sharing a
/// machine pay at once.
pub(crate) fn local_reads_script(rest_port: Option<u16>, stats: Option<(&str, u16)>) -> String {
    let rest = rest_port.map_or(String::new(), |port| {
        format!(
            "try:
    {}
    for p in (\"config\", \"cluster\"):
        try:
            print(p, json.dumps(json.loads(get(\"127.0.0.1\", {port}, \"/\" + p, c))))
        except Exception:
            pass
except Exception:
    pass
",
            rest_context_py("c")
        )
    });
    let stats = stats.map_or(String::new(), |(host, port)| {
        format!(
            "try:
    for line in get(\"{host}\", {port}, \"/;csv\", None).splitlines():
        print(\"stat\", line)
except Exception:
    pass
"
        )
    });
    format!(
        "python3 -I -S -c 'import json, socket, ssl
def get(host, port, path, tls):
    s = socket.create_connection((host, port), timeout=3)
    try:
        if tls:
            s = tls.wrap_socket(s, server_hostname=host)
        s.sendall((\"GET %s HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n\" % (path, host)).encode())
        b = b\"\"
        while True:
            c = s.recv(65536)
            if not c:
                break
            b += c
    finally:
        s.close()
    head, _, body = b.partition(b\"\\r\\n\\r\\n\")
    if head.split(b\" \")[1:2] != [b\"200\"]:
        raise ValueError(head[:60])
    return body.decode()
{rest}{stats}' 2>/dev/null
"
    )
}

/// GETs `path` from the local REST API over HTTPS, verifying the cluster CA.
/// Prints `{prefix}N`, N the PostgreSQL major Patroni's configuration
/// names (its `bin_dir`), if it has one. `prefix` is a constant of pgha's.
pub(crate) fn configured_major_script(prefix: &str) -> String {
    format!(
        r#"sed -n 's|^ *bin_dir: "/usr/lib/postgresql/\([0-9]*\)/bin"$|{prefix}\1|p' {} 2>/dev/null | head -n 1"#,
        quote(CONFIG.path)
    )
}

fn http_get_script(rest_port: u16, path: &str) -> String {
    format!(
        "python3 -c 'import ssl, urllib.request as u; {}; print(u.urlopen(\"https://127.0.0.1:{rest_port}{path}\", timeout=3, context=c).read().decode())'",
        rest_context_py("c")
    )
}

/// Python statements (one line) that make `name` the TLS context for the
/// local REST API: the cluster CA verified, and the host's certificate
/// presented, as Patroni wants of every client. pgha's scripts run as root.
fn rest_context_py(name: &str) -> String {
    format!(
        "{name} = ssl.create_default_context(cafile={}); {name}.load_cert_chain({}, {})",
        py_str(super::tls::TRUST_PATH),
        py_str(super::tls::CERT_PATH),
        py_str(super::tls::POSTGRES_KEY_PATH)
    )
}

/// Changes the dynamic configuration through this host's own Patroni
/// (`PATCH /config`), which then runs its loop at once: a member told to
/// demote or promote acts within a moment, where a change written to etcd
/// by `patronictl edit-config` waits for the member's next loop (up to
/// `loop_wait`). The REST credentials are read from Patroni's config file on
/// the host, never carried in a command line. `sets` are as for
/// [`edit_config_script`], each value JSON (`null` removes the key).
pub(crate) fn patch_config_script(rest_port: u16, sets: &[(String, String)]) -> anyhow::Result<String> {
    let mut body = serde_json::Map::new();
    for (k, v) in sets {
        let value: serde_json::Value =
            serde_json::from_str(v).map_err(|e| anyhow::anyhow!("{k}: {v} is not JSON: {e}"))?;
        // Dotted as patronictl takes them; a GUC's own name may hold dots.
        let path: Vec<&str> = match k.strip_prefix("postgresql.parameters.") {
            Some(guc) => vec!["postgresql", "parameters", guc],
            None => k.split('.').collect(),
        };
        let (leaf, parents) = path.split_last().expect("split yields one part");
        let mut at = &mut body;
        for p in parents {
            at = at
                .entry(p.to_string())
                .or_insert_with(|| serde_json::Value::Object(Default::default()))
                .as_object_mut()
                .ok_or_else(|| anyhow::anyhow!("{k}: {p} is set twice"))?;
        }
        at.insert(leaf.to_string(), value);
    }
    let body = serde_json::Value::Object(body).to_string();
    Ok(rest_python(
        rest_port,
        &body,
        "call(\"PATCH\", \"/config\", sys.argv[1])",
    ))
}

/// A Python program on the host, run with `argument` as `sys.argv[1]`,
/// whose `call(method, path, body, timeout)` asks the local REST API over
/// HTTPS (the cluster CA verified) with the credentials read from
/// Patroni's config file, never carried in a command line.
fn rest_python(rest_port: u16, argument: &str, program: &str) -> String {
    format!(
        r#"python3 - {} <<'PGHA_REST'
import base64, ssl, sys, urllib.error, urllib.request, yaml
auth = yaml.safe_load(open({}))["restapi"]["authentication"]
token = base64.b64encode(("%s:%s" % (auth["username"], auth["password"])).encode()).decode()
{}
def call(method, path, body=None, timeout=10):
    headers = {{"Authorization": "Basic " + token}}
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = body.encode()
    request = urllib.request.Request("https://127.0.0.1:{rest_port}" + path, data=body, method=method, headers=headers)
    return urllib.request.urlopen(request, timeout=timeout, context=context).read().decode()
{program}
PGHA_REST"#,
        quote(argument),
        py_str(CONFIG.path),
        rest_context_py("context"),
    )
}

/// A Python string literal (JSON's quoting is Python's for these paths).
fn py_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Changes the dynamic configuration (kept in this cloud's etcd) with
/// patronictl on the host, which reads the REST credentials from the config
/// file: no password in any command line.
pub(crate) fn edit_config_script(sets: &[(String, String)]) -> String {
    let mut s = format!("patronictl -c {} edit-config --force --quiet", quote(CONFIG.path));
    for (k, v) in sets {
        s.push_str(&format!(" -s {}", quote(&format!("{k}={v}"))));
    }
    s
}

/// Restarts PostgreSQL on one member if a parameter change requires it.
pub(crate) fn restart_pending_script(scope: &str, member: &str) -> String {
    format!("{} --pending --force", restart_command(scope, member))
}

/// Restarts PostgreSQL on one member through Patroni (which waits for it).
pub(crate) fn restart_script(scope: &str, member: &str) -> String {
    format!("{} --force", restart_command(scope, member))
}

fn restart_command(scope: &str, member: &str) -> String {
    format!(
        "patronictl -c {} restart {} {}",
        quote(CONFIG.path),
        quote(scope),
        quote(member)
    )
}

/// `edit-config` pairs for PostgreSQL parameters: each value as a JSON
/// string (edit-config reads YAML, where `on` would become a boolean).
pub(crate) fn parameter_sets(sets: &[(String, String)]) -> Vec<(String, String)> {
    sets.iter()
        .map(|(k, v)| {
            (
                format!("postgresql.parameters.{k}"),
                serde_json::Value::String(v.clone()).to_string(),
            )
        })
        .collect()
}

/// SQL that prints `t` once PostgreSQL's own config file (the one Patroni
/// writes) holds each of `sets` and PostgreSQL loaded it after the write.
pub(crate) fn parameters_applied_sql(sets: &[(String, String)]) -> String {
    use crate::shell::sql_literal;
    let pairs: Vec<String> = sets
        .iter()
        .map(|(k, v)| format!("({}, {})", sql_literal(&k.to_lowercase()), sql_literal(v)))
        .collect();
    format!(
        "SELECT count(*) = {} AND pg_conf_load_time() >= (pg_stat_file(current_setting('config_file'))).modification \
         FROM (SELECT DISTINCT ON (lower(name)) lower(name) AS name, setting FROM pg_file_settings \
         WHERE sourcefile = current_setting('config_file') ORDER BY lower(name), seqno DESC) f \
         WHERE (f.name, f.setting) IN ({})",
        sets.len(),
        pairs.join(", ")
    )
}

/// A planned switchover from `leader` to `candidate` through the local
/// REST API (`POST /switchover`, Patroni 3 and 4), which answers once the
/// cluster has a new leader (a refusal, such as a candidate that is not
/// healthy, at once). patronictl would first load itself and read the DCS:
/// the request reaches Patroni about 0.4 s sooner this way. Nothing polls
/// meanwhile: the old leader is shutting down PostgreSQL, and load on its
/// host can only slow that (Patroni waits in whole seconds for it).
pub(crate) fn switchover_script(rest_port: u16, leader: &str, candidate: &str) -> String {
    let body = serde_json::json!({ "leader": leader, "candidate": candidate }).to_string();
    rest_python(rest_port, &body, SWITCHOVER_PY)
}

const SWITCHOVER_PY: &str = r#"try:
    print(call("POST", "/switchover", sys.argv[1], timeout=60))
except urllib.error.HTTPError as e:
    sys.exit("Patroni did not switch over (%s): %s" % (e.code, e.read().decode(errors="replace").strip()))
except Exception as e:
    sys.exit("no answer from Patroni (%s): whether the switchover happened is not known" % e)"#;

/// While this file exists on a host the fence keeps Patroni from starting
/// there: the host holds commits the master lacks (a failover accepted
/// their loss), and only `pgha recover-node` may bring it back.
pub(crate) const HOLD_PATH: &str = "/var/lib/pgha/needs-recovery";

/// Writes the hold (its text from `$PGHA_INPUT`) and stops Patroni;
/// prints `was-running` when Patroni ran before (an undo starts it again).
pub(crate) fn hold_script() -> String {
    format!(
        "systemctl is-active --quiet patroni && echo was-running\ninstall -D -m 644 \"$PGHA_INPUT\" {HOLD_PATH} && systemctl stop patroni"
    )
}

/// Lifts the hold: recover-node, once it has compared the host's WAL.
pub(crate) const UNHOLD_SCRIPT: &str = "rm -f /var/lib/pgha/needs-recovery";

/// Undoes `hold_script` when a failover stops before its promotion:
/// Patroni starts again only where it ran before.
pub(crate) fn release_hold_script(start: bool) -> String {
    if start {
        format!("{UNHOLD_SCRIPT} && systemctl start patroni")
    } else {
        UNHOLD_SCRIPT.to_string()
    }
}

/// A manual failover to `candidate`, for a cloud without a leader: Patroni
/// promotes a named candidate even where check_timeline would refuse it.
pub(crate) fn failover_script(scope: &str, candidate: &str) -> String {
    format!(
        "patronictl -c {} failover {} --candidate {} --force",
        quote(CONFIG.path),
        quote(scope),
        quote(candidate)
    )
}

#[cfg(test)]
mod patch_tests {
    use super::*;

    #[test]
    fn dotted_keys_nest_and_a_gucs_name_stays_whole() {
        let sets = [
            ("standby_cluster".to_string(), "null".to_string()),
            (
                "postgresql.parameters.synchronous_standby_names".to_string(),
                "null".to_string(),
            ),
            (
                "postgresql.parameters.pg_stat_statements.max".to_string(),
                "100".to_string(),
            ),
        ];
        let script = patch_config_script(8008, &sets).unwrap();
        let want = r#"{"postgresql":{"parameters":{"pg_stat_statements.max":100,"synchronous_standby_names":null}},"standby_cluster":null}"#;
        assert!(
            script.contains(&format!("python3 - '{want}' <<'PGHA_REST'")),
            "{script}"
        );
        let clash = [("a".to_string(), "1".to_string()), ("a.b".to_string(), "2".to_string())];
        assert!(patch_config_script(8008, &clash).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `answers` in turn on a loopback port, one connection each.
    fn serve(answers: Vec<&'static str>) -> u16 {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for answer in answers {
                let (mut s, _) = listener.accept().unwrap();
                let mut request = [0u8; 1024];
                let _ = s.read(&mut request);
                s.write_all(answer.as_bytes()).unwrap();
            }
        });
        port
    }

    fn run(script: &str) -> String {
        let out = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    /// The facts' own HTTP client (Python's socket and ssl, no urllib): each
    /// line of a 200 answer, nothing of any other, and a silent REST API
    /// (here: no CA file either) costs the statistics nothing.
    #[test]
    fn the_local_reads_print_each_line_of_a_good_answer_only() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let port = serve(vec![
            "HTTP/1.0 200 OK\r\nContent-Type: text/csv\r\n\r\n# pxname,svname,status\npgha-primary,a1,UP\n",
        ]);
        let out = run(&local_reads_script(Some(silent), Some(("127.0.0.1", port))));
        assert_eq!(out, "stat # pxname,svname,status\nstat pgha-primary,a1,UP\n");
        let port = serve(vec!["HTTP/1.0 503 Service Unavailable\r\n\r\nno\n"]);
        assert_eq!(run(&local_reads_script(None, Some(("127.0.0.1", port)))), "");
        assert_eq!(run(&local_reads_script(None, Some(("127.0.0.1", silent)))), "");
    }

    #[test]
    fn the_cluster_view_says_whether_the_cloud_is_paused() {
        let v =
            parse_cluster_view(r#"{"members": [{"name": "a1", "role": "leader", "state": "running"}], "pause": true}"#)
                .unwrap();
        assert!(v.paused && v.members.len() == 1);
        assert!(!parse_cluster_view(r#"{"members": []}"#).unwrap().paused);
        assert_eq!(pause_script(true), "patronictl -c /etc/patroni/config.yml pause --wait");
        assert_eq!(
            pause_script(false),
            "patronictl -c /etc/patroni/config.yml resume --wait"
        );
    }

    #[test]
    fn parameters_go_in_as_strings_and_are_checked_in_postgresqls_own_file() {
        let sets = [
            ("Work_Mem".to_string(), "16MB".to_string()),
            ("search_path".to_string(), "'$user', it's".to_string()),
        ];
        assert_eq!(
            parameter_sets(&sets[..1]),
            [("postgresql.parameters.Work_Mem".to_string(), "\"16MB\"".to_string())]
        );
        assert_eq!(
            edit_config_script(&parameter_sets(&[("jit".to_string(), "on".to_string())])),
            "patronictl -c /etc/patroni/config.yml edit-config --force --quiet -s 'postgresql.parameters.jit=\"on\"'"
        );
        let sql = parameters_applied_sql(&sets);
        assert!(
            sql.starts_with("SELECT count(*) = 2 AND pg_conf_load_time() >= "),
            "{sql}"
        );
        assert!(
            sql.ends_with("IN ((E'work_mem', E'16MB'), (E'search_path', E'''$user'', it''s'))"),
            "{sql}"
        );
        assert_eq!(
            restart_script("pgha-demo", "dc1-pg1"),
            "patronictl -c /etc/patroni/config.yml restart pgha-demo dc1-pg1 --force"
        );
    }

    #[test]
    fn scripts_are_exact() {
        let sets = [
            ("ttl".to_string(), "30".to_string()),
            (
                "standby_cluster".to_string(),
                r#"{"host":"a,b","port":5000}"#.to_string(),
            ),
        ];
        assert_eq!(
            edit_config_script(&sets),
            r#"patronictl -c /etc/patroni/config.yml edit-config --force --quiet -s ttl=30 -s 'standby_cluster={"host":"a,b","port":5000}'"#
        );
        assert_eq!(
            restart_pending_script("c", "dc1-pg1"),
            "patronictl -c /etc/patroni/config.yml restart c dc1-pg1 --pending --force"
        );
        let switch = switchover_script(8008, "dc1-pg1", "dc1-pg2");
        assert!(switch.starts_with(r#"python3 - '{"candidate":"dc1-pg2","leader":"dc1-pg1"}' <<'PGHA_REST'"#));
        assert!(switch.contains(r#"call("POST", "/switchover", sys.argv[1], timeout=60)"#));
        assert!(switch.contains(r#"Request("https://127.0.0.1:8008" + path"#));
        assert!(switch.ends_with("\nPGHA_REST"));
        assert_eq!(
            cluster_script(8008),
            r#"python3 -c 'import ssl, urllib.request as u; c = ssl.create_default_context(cafile="/etc/pgha/tls/ca.crt"); c.load_cert_chain("/etc/pgha/tls/host.crt", "/etc/pgha/tls/postgres.key"); print(u.urlopen("https://127.0.0.1:8008/cluster", timeout=3, context=c).read().decode())'"#
        );
    }
}

/// One member as Patroni's `/cluster` describes it.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub(crate) struct Member {
    pub name: String,
    /// leader | standby_leader | sync_standby | quorum_standby | replica
    pub role: String,
    /// running | streaming | starting | stopped | creating replica | ...
    pub state: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub timeline: Option<u64>,
    /// Bytes behind the leader; "unknown" when Patroni cannot tell.
    #[serde(default)]
    pub lag: Option<serde_json::Value>,
    #[serde(default)]
    pub pending_restart: Option<bool>,
}

impl Member {
    /// The read-write leader: `leader` in `/cluster` of Patroni 3.0 and 4.0;
    /// `master` (3.x) and `primary` (4.x) where a role of the old API shows.
    pub(crate) fn is_leader(&self) -> bool {
        self.role == "leader" || self.role == "master" || self.role == "primary"
    }

    pub(crate) fn is_standby_leader(&self) -> bool {
        self.role == "standby_leader"
    }

    /// Up and replicating (or serving, for a leader). A member replaying
    /// from the WAL archive while it cannot stream (its upstream was just
    /// demoted, or is gone) runs too.
    pub(crate) fn is_healthy(&self) -> bool {
        matches!(self.state.as_str(), "running" | "streaming" | "in archive recovery")
    }
}

#[derive(serde::Deserialize)]
struct ClusterDoc {
    #[serde(default)]
    members: Vec<Member>,
    /// Maintenance mode (`patronictl pause`), from the cloud's dynamic config.
    #[serde(default)]
    pause: bool,
}

/// A cloud as Patroni's `/cluster` shows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterView {
    pub members: Vec<Member>,
    pub paused: bool,
}

pub(crate) fn parse_cluster_view(text: &str) -> anyhow::Result<ClusterView> {
    let doc: ClusterDoc = serde_json::from_str(text.trim())?;
    Ok(ClusterView {
        members: doc.members,
        paused: doc.pause,
    })
}

/// What a changing command says before its plan when `cloud` is paused.
pub(crate) fn paused_warning(cloud: &str) -> String {
    format!(
        "warning: {cloud} is paused (maintenance mode): Patroni does not fail over there by itself; `pgha resume --cloud \
         {cloud}` ends it"
    )
}

/// Puts the cloud's Patroni into maintenance mode (`pause`: no automatic
/// failover, PostgreSQL left as it is) or takes it out (`resume`). A key of
/// the cloud's dynamic configuration: set once, every member follows.
pub(crate) fn pause_script(pause: bool) -> String {
    // `--wait`: until every member's own HA loop has seen it, not only etcd.
    format!(
        "patronictl -c {} {} --wait",
        quote(CONFIG.path),
        if pause { "pause" } else { "resume" }
    )
}
