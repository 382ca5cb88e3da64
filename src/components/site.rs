//! The site lease (issue #11): which cloud may have a writable master.
//!
//! A small etcd cluster across the sites (each cloud's first host plus the
//! witness, an odd count) holds one key bound to a lease of `site.ttl`
//! seconds. On every database host a site agent runs: on the master of the
//! cloud named in the key it renews the lease; on a master that cannot renew
//! for a third of the ttl (cut off from most sites) it fences: the cloud
//! becomes a standby cluster and PostgreSQL stops at once, well before the
//! lease can expire anywhere else. Patroni's `pre_promote` asks the agent
//! too, so no promotion happens outside the lease holder's cloud. With
//! `auto_failover`, a secondary cloud's standby leader takes an expired
//! lease when it is within `maximum_lag` of the WAL position the primary
//! published with its last renewal, and promotes its cloud.

use super::{etcd, tls, Component, FileSpec};
use crate::design::shape::url_host;
use crate::design::Design;

/// The unit of the site member (a second etcd next to the cloud's own).
pub(crate) const ETCD_SERVICE: &str = "pgha-site-etcd";
pub(crate) const AGENT_SERVICE: &str = "pgha-site-agent";

pub(crate) const ETCD_ENV: FileSpec = FileSpec {
    component: Component::Site,
    template: "site-etcd.env.j2",
    path: "/etc/pgha/site-etcd.env",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: ETCD_SERVICE,
    check: None,
};

pub(crate) const ETCD_UNIT: FileSpec = FileSpec {
    component: Component::Site,
    template: "site-etcd.service.j2",
    path: "/etc/systemd/system/pgha-site-etcd.service",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: ETCD_SERVICE,
    check: None,
};

/// The agent's code, the same on every host (host/site_agent.py).
pub(crate) const AGENT: FileSpec = FileSpec {
    component: Component::Site,
    template: "site_agent.py",
    path: "/usr/local/lib/pgha/site-agent",
    owner: "root",
    group: "root",
    mode: 0o755,
    service: AGENT_SERVICE,
    check: Some("python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())'"),
};

/// The agent's settings on this host (read by the agent and by Patroni's
/// pre_promote, as postgres): they hold its etcd password.
pub(crate) const AGENT_SETTINGS: FileSpec = FileSpec {
    component: Component::Site,
    template: "site-agent.json.j2",
    path: "/etc/pgha/site-agent.json",
    owner: "root",
    group: "postgres",
    mode: 0o640,
    service: AGENT_SERVICE,
    check: Some("python3 -c 'import json, sys; json.load(open(sys.argv[1]))'"),
};

pub(crate) const AGENT_UNIT: FileSpec = FileSpec {
    component: Component::Site,
    template: "site-agent.service.j2",
    path: "/etc/systemd/system/pgha-site-agent.service",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: AGENT_SERVICE,
    check: None,
};

/// The site fence (issue #23): its own process, sharing no code with the
/// agent, stops a primary whose last lease renewal is `fence_bound` old.
pub(crate) const FENCE_SERVICE: &str = "pgha-site-fence";

pub(crate) const FENCE: FileSpec = FileSpec {
    component: Component::Site,
    template: "site-fence.sh.j2",
    path: "/usr/local/lib/pgha/site-fence",
    owner: "root",
    group: "root",
    mode: 0o755,
    service: FENCE_SERVICE,
    check: Some("bash -n"),
};

pub(crate) const FENCE_UNIT: FileSpec = FileSpec {
    component: Component::Site,
    template: "site-fence.service.j2",
    path: "/etc/systemd/system/pgha-site-fence.service",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: FENCE_SERVICE,
    check: None,
};

/// The fence's first start since boot (its grace for a master with no
/// recorded renewal). Written by the fence script, which names it too.
/// Written by a database host's site agent once the site answered it: from
/// then on its fences act on silence.
pub(crate) const ARMED: &str = "/var/lib/pgha/site-armed";

/// Prints `armed` on a host whose fences are armed.
pub(crate) fn armed_script() -> String {
    format!("[ -f {ARMED} ] && echo armed || true\n")
}

pub(crate) const FENCE_SINCE: &str = "/run/pgha/site-fence-since";

/// Seconds after a master's last lease renewal by which the site fence
/// stops it (plus its 1 s period and the stop): half the lease's ttl, so
/// it is down before the lease can pass to another cloud. The agent
/// itself fences sooner, at a third.
pub(crate) fn fence_bound(ttl: u32) -> u32 {
    ttl / 2
}

/// The site gate (issue #23): the client path's own check of the lease.
/// HAProxy and the GLB route to a master only while its gate answers 200,
/// which it does while the host's last renewal is younger than
/// [`gate_bound`]. Its own process, sharing no code with the agent: a dead
/// gate fails the check and closes the route.
pub(crate) const GATE_SERVICE: &str = "pgha-site-gate";

/// The gate's code, the same on every host (host/site_gate.py).
pub(crate) const GATE: FileSpec = FileSpec {
    component: Component::Site,
    template: "site_gate.py",
    path: "/usr/local/lib/pgha/site-gate",
    owner: "root",
    group: "root",
    mode: 0o755,
    service: GATE_SERVICE,
    check: Some("python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())'"),
};

pub(crate) const GATE_UNIT: FileSpec = FileSpec {
    component: Component::Site,
    template: "site-gate.service.j2",
    path: "/etc/systemd/system/pgha-site-gate.service",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: GATE_SERVICE,
    check: None,
};

/// The path HAProxy asks the gate.
pub(crate) const GATE_PATH: &str = "/lease";

/// Prints `gate` where the gate's unit is installed, `none` where not.
pub(crate) fn gate_installed_script() -> String {
    format!("if test -f {}; then echo gate; else echo none; fi", GATE_UNIT.path)
}

/// Prints `site_gate_answer CODE WHY`, what this host's gate answers
/// HAProxy now (asked here over TLS, trusting the cluster CA; the name is
/// not checked, the probe asks itself), or `site_gate_answer none WHY`
/// when it could not be asked. Python: the hosts have no curl, and the
/// gate itself runs on it.
pub(crate) fn gate_answer_script(port: u16) -> String {
    const ASK: &str = r#"import socket, ssl
try:
    c = ssl.create_default_context(cafile=TRUST)
    c.check_hostname = False
    with socket.create_connection(("127.0.0.1", PORT), timeout=3) as s, c.wrap_socket(s) as t:
        t.settimeout(3)
        t.sendall(b"GET " + PATH.encode() + b" HTTP/1.0\r\n\r\n")
        data = b""
        while len(data) < 4096:
            more = t.recv(4096)
            if not more:
                break
            data += more
    head, _, body = data.partition(b"\r\n\r\n")
    print(int(head.split()[1]), " ".join(body.decode(errors="replace").split())[:200])
except Exception as e:
    print("none", type(e).__name__, " ".join(str(e).split())[:200])"#;
    // Python literals (JSON's strings are Python's).
    let script = ASK
        .replace("TRUST", &serde_json::Value::from(tls::TRUST_PATH).to_string())
        .replace("PORT", &port.to_string())
        .replace("PATH", &serde_json::Value::from(GATE_PATH).to_string());
    format!("python3 - <<'PGHA_GATE' 2>/dev/null | sed 's/^/site_gate_answer /'\n{script}\nPGHA_GATE")
}

/// Seconds after a master's last renewal at which its gate closes: when
/// its agent would fence it (a third of the ttl). HAProxy takes the route
/// away within its check's `fall` of that, well before the lease can pass.
pub(crate) fn gate_bound(ttl: u32) -> f64 {
    f64::from(ttl) / 3.0
}

/// Seconds after its last renewal past which a master renewed late: most
/// of the way to the gate's bound (the agent renews every tenth of the
/// ttl), so one slow site member does not warn and a fence near does. The
/// site agent counts these (its settings carry the figure) and the alert
/// rules read it.
pub(crate) fn late_bound(ttl: u32) -> f64 {
    (gate_bound(ttl) * 0.7 * 10.0).round() / 10.0
}

/// The site files of a database host (the member files matter on the
/// cloud's first host only).
pub(crate) const DB_HOST_FILES: [FileSpec; 9] = [
    ETCD_ENV,
    ETCD_UNIT,
    // The code before its settings: a new agent reads older settings, an
    // older one does not read newer ones.
    AGENT,
    AGENT_SETTINGS,
    AGENT_UNIT,
    FENCE,
    FENCE_UNIT,
    GATE,
    GATE_UNIT,
];
/// The files of the witness: TLS for etcd, and its member.
pub(crate) const WITNESS_FILES: [FileSpec; 5] = [tls::TRUST, tls::CERT, tls::ETCD_KEY, ETCD_ENV, ETCD_UNIT];

/// The packages of the witness.
pub(crate) fn witness_packages() -> Vec<String> {
    vec!["etcd-server".into(), "etcd-client".into()]
}

pub(crate) fn data_dir(cluster: &str) -> String {
    format!("/var/lib/etcd/pgha-site-{cluster}")
}

/// The key naming the primary cloud (bound to the lease).
pub(crate) fn primary_key(cluster: &str) -> String {
    format!("/pgha-site/{cluster}/primary")
}

/// The site etcd: the database hosts that are site members are root (pgha
/// reads and moves the lease from them), the agents write the site keys by
/// password, the witness only reads them (`status` may ask it), repository
/// hosts are nobody.
pub(crate) fn access(design: &Design) -> etcd::Access {
    let members = design.site_members();
    etcd::Access {
        roots: members
            .iter()
            .filter(|(c, _)| c.is_some())
            .map(|(_, h)| h.name.clone())
            .collect(),
        readers: members
            .iter()
            .filter(|(c, _)| c.is_none())
            .map(|(_, h)| h.name.clone())
            .collect(),
        user: crate::secrets::ETCD_AGENT_USER,
        prefix: format!("/pgha-site/{}/", design.platform.name),
    }
}

/// The last holder and its WAL position, kept after the lease ends.
pub(crate) fn last_key(cluster: &str) -> String {
    format!("/pgha-site/{cluster}/last")
}

/// The primary cloud's record of its replication to the others (issue 29):
/// synchronous with which cloud from which position, or asynchronous since
/// which. Written by its master's site agent, read with the lease.
pub(crate) fn sync_key(cluster: &str) -> String {
    format!("/pgha-site/{cluster}/sync")
}

/// Every site member's client URL, comma-separated.
pub(crate) fn endpoints(design: &Design) -> String {
    let port = design.site.as_ref().map_or(2479, |s| s.client_port);
    design
        .site_members()
        .iter()
        .map(|(_, h)| format!("https://{}:{port}", url_host(&h.address)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Health of every member, the key, its lease's time to live, the last
/// holder and the replication record: lines `health URL
/// healthy|unhealthy`, `primary JSON`, `remaining SECONDS`, `last JSON`,
/// `sync JSON`.
pub(crate) fn read_script(design: &Design) -> String {
    let e = etcd::etcdctl_at(&endpoints(design));
    let key = primary_key(&design.platform.name);
    let last = last_key(&design.platform.name);
    let sync = sync_key(&design.platform.name);
    format!(
        "e() {{ {e} \"$@\"; }}\n\
e endpoint health 2>&1 | sed -n 's/^\\(https:[^ ]*\\) is \\(healthy\\|unhealthy\\).*/health \\1 \\2/p'\n\
v=$(e get {key} --print-value-only) || exit 1\n\
[ -n \"$v\" ] && printf 'primary %s\\n' \"$v\"\n\
l=$(e get {key} -w fields | sed -n 's/^\"Lease\" : //p')\n\
if [ -n \"$l\" ] && [ \"$l\" != 0 ]; then\n\
  e lease timetolive \"$(printf '%x' \"$l\")\" | sed -n 's/.*remaining(\\(-*[0-9]*\\)s).*/remaining \\1/p'\n\
fi\n\
w=$(e get {last} --print-value-only)\n\
[ -n \"$w\" ] && printf 'last %s\\n' \"$w\"\n\
y=$(e get {sync} --print-value-only) || exit 1\n\
[ -n \"$y\" ] && printf 'sync %s\\n' \"$y\"\n\
exit 0\n"
    )
}

/// The mod revisions of the lease key and of the replication record (0:
/// absent), read before what a take judges: a transaction that compares
/// them holds only if neither changed since.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Revisions {
    pub primary: u64,
    pub sync: u64,
}

/// Gives the lease to `cloud`: a new lease of `ttl` seconds, put in one
/// transaction that holds only if the key is as it was read (`revisions`;
/// with `judged`, the replication record too: what the flip judged is what
/// the old primary cloud left). Prints `taken` or `moved` (someone changed
/// it meanwhile). Cloud names are validated names; the JSON is Go-quoted
/// for etcdctl's transaction syntax and checked plain here.
pub(crate) fn take_script(design: &Design, cloud: &str, ttl: u32, revisions: Revisions, judged: bool) -> String {
    let e = etcd::etcdctl_at(&endpoints(design));
    let key = primary_key(&design.platform.name);
    let last = last_key(&design.platform.name);
    let value = serde_json::json!({"cloud": cloud, "by": "pgha"}).to_string();
    assert!(!value.contains(['$', '`', '\\', '\n']), "the lease value is plain");
    let quoted = format!("\"{}\"", value.replace('"', "\\\""));
    let mut compare = match revisions.primary {
        0 => format!("create(\"{key}\") = \"0\""),
        r => format!("mod(\"{key}\") = \"{r}\""),
    };
    if judged {
        // An absent key's mod revision compares as 0.
        compare.push_str(&format!(
            "\nmod(\"{}\") = \"{}\"",
            sync_key(&design.platform.name),
            revisions.sync
        ));
    }
    format!(
        "e() {{ {e} \"$@\"; }}\n\
id=$(e lease grant {ttl} | sed -n 's/^lease \\([0-9a-f]*\\) granted.*/\\1/p')\n\
[ -n \"$id\" ] || {{ echo 'the sites granted no lease: no quorum among the site members' >&2; exit 1; }}\n\
if e txn <<EOF | head -1 | grep -qx SUCCESS\n\
{compare}\n\
\n\
put {key} {quoted} --lease=$id\n\
put {last} {quoted}\n\
\n\
\n\
EOF\n\
then echo taken\n\
else e lease revoke \"$id\" >/dev/null 2>&1; echo moved\n\
fi\n"
    )
}

/// Renews the site lease once while it names `cloud`: the lease a flip took
/// must not lapse while the promotion it was taken for runs (the new
/// master's agent renews it from then on). Prints `renewed`, or `not held`
/// when the key names another cloud or none; fails when etcd does not
/// answer. The value and its lease come from one read (`-w fields`, where
/// the value is Go-quoted).
pub(crate) fn renew_script(design: &Design, cloud: &str) -> String {
    format!(
        "{}[ -n \"$l\" ] && [ \"$l\" != 0 ] || {{ echo 'not held'; exit 0; }}\n\
out=$(e lease keep-alive --once \"$(printf '%x' \"$l\")\") || exit 1\n\
case \"$out\" in *'keepalived with TTL'*) echo renewed ;; *) echo 'not held' ;; esac\n",
        read_held(design, cloud)
    )
}

/// The start of a script on the key while `cloud` holds it: `e`, the key's
/// fields in `$f` (from one read), `not held` and exit when its value names
/// another cloud or none, its lease id in `$l` (decimal).
fn read_held(design: &Design, cloud: &str) -> String {
    let e = etcd::etcdctl_at(&endpoints(design));
    let key = primary_key(&design.platform.name);
    format!(
        "e() {{ {e} \"$@\"; }}\n\
f=$(e get {key} -w fields) || exit 1\n\
case \"$f\" in *'\\\"cloud\\\":\\\"{cloud}\\\"'* | *'\\\"cloud\\\": \\\"{cloud}\\\"'*) ;; *) echo 'not held'; exit 0 ;; esac\n\
l=$(printf '%s\\n' \"$f\" | sed -n 's/^\"Lease\" : //p')\n"
    )
}

/// How long a hand-over mark holds (see [`handover_script`]): a flip that
/// dies after marking blocks promotions in the old cloud no longer.
pub(crate) const HANDOVER_SECS: u32 = 120;

/// Marks the lease `from` holds as being handed over to `to`, before a
/// planned flip demotes `from`: until the mark ends ([`HANDOVER_SECS`], by
/// the host's clock) `from`'s agents neither resume a fenced cloud nor let
/// pre_promote promote, so nothing in `from` is promoted between the
/// demotion and `to` taking the lease. Keeps the key's lease; one
/// transaction that holds only if the key did not change meanwhile. Prints
/// `marked`, `not held` (the key names no lease of `from`: nothing to
/// mark) or `moved`.
pub(crate) fn handover_script(design: &Design, from: &str, to: &str) -> String {
    let key = primary_key(&design.platform.name);
    format!(
        "{}r=$(printf '%s\\n' \"$f\" | sed -n 's/^\"ModRevision\" : //p')\n\
[ -n \"$l\" ] && [ \"$l\" != 0 ] && [ -n \"$r\" ] || {{ echo 'not held'; exit 0; }}\n\
until=$(($(date +%s) + {HANDOVER_SECS}))\n\
if e txn <<EOF | head -1 | grep -qx SUCCESS\n\
mod(\"{key}\") = \"$r\"\n\
\n\
put {key} \"{{\\\"cloud\\\":\\\"{from}\\\",\\\"by\\\":\\\"pgha\\\",\\\"handover\\\":\\\"{to}\\\",\\\"until\\\":$until}}\" --lease=$(printf '%x' \"$l\")\n\
\n\
\n\
EOF\n\
then echo marked\n\
else echo moved\n\
fi\n",
        read_held(design, from)
    )
}

/// The [`Revisions`] for [`take_script`]: lines `primary REV` and `sync
/// REV`; fails when etcd does not answer.
pub(crate) fn revision_script(design: &Design) -> String {
    let e = etcd::etcdctl_at(&endpoints(design));
    let key = primary_key(&design.platform.name);
    let sync = sync_key(&design.platform.name);
    format!(
        "e() {{ {e} \"$@\"; }}\n\
for k in {key} {sync}; do\n\
  f=$(e get \"$k\" -w fields) || exit 1\n\
  r=$(printf '%s\\n' \"$f\" | sed -n 's/^\"ModRevision\" : //p' | head -1)\n\
  printf '%s %s\\n' \"${{k##*/}}\" \"${{r:-0}}\"\n\
done\n"
    )
}

/// Reads [`revision_script`]'s lines; a line missing or not a number does
/// not read (a guess could let a take pass over a change).
pub(crate) fn parse_revisions(out: &str) -> Option<Revisions> {
    let mut found = (None, None);
    for line in out.lines() {
        match line.split_once(' ') {
            Some(("primary", r)) => found.0 = Some(r.trim().parse().ok()?),
            Some(("sync", r)) => found.1 = Some(r.trim().parse().ok()?),
            _ => {}
        }
    }
    Some(Revisions {
        primary: found.0?,
        sync: found.1?,
    })
}

/// What the site said.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct SiteState {
    /// Member URL -> healthy.
    pub members: Vec<(String, bool)>,
    /// The cloud holding the lease.
    pub holder: Option<String>,
    pub holder_host: Option<String>,
    /// Seconds left on the lease.
    pub remaining: Option<i64>,
    /// The last holder (also after its lease ended).
    pub last: Option<String>,
    /// The primary cloud's record of its replication to the others.
    pub sync: Option<SyncRecord>,
    /// A record is there and does not read: nothing may be concluded from it.
    pub sync_unreadable: bool,
}

/// What the primary cloud's site agent recorded of its replication (issue 29).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SyncRecord {
    /// The cloud that wrote it (the lease holder then).
    pub cloud: String,
    pub mode: SyncMode,
    /// `sync`: the cloud that confirmed every commit from `lsn` on.
    #[serde(default)]
    pub partner: Option<String>,
    /// `sync`: from here every commit reached `partner`; `async`: commits
    /// past here may be on `cloud` alone.
    pub lsn: u64,
    #[serde(default)]
    pub why: String,
    /// When it was written (Unix time, the writing host's clock).
    #[serde(default)]
    pub at: f64,
    /// The states before it, oldest first (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<SyncRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SyncMode {
    Sync,
    Async,
}

/// What the record says of making `new` primary while `old`, the last
/// holder, cannot be asked, `new`'s standby leader being at `at`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SyncVerdict {
    /// Every commit `old` acknowledged reached `new`.
    NothingLost(String),
    /// Commits `old` acknowledged may be missing (asynchronous): the RPO.
    Tail(String),
    /// `new` lacks commits the record proves were acknowledged, or the
    /// record cannot be read: refused without `--accept-data-loss`.
    Lost(String),
}

pub(crate) fn sync_verdict(s: &SiteState, old: &str, new: &str, at: u64) -> SyncVerdict {
    if s.sync_unreadable {
        return SyncVerdict::Lost("the site's record of replication between clouds does not read".into());
    }
    let tail = || {
        SyncVerdict::Tail(format!(
            "{old} replicated to {new} asynchronously: commits {old} acknowledged after {new}'s {} may be lost",
            crate::lsn::format_lsn(at)
        ))
    };
    let Some(r) = s.sync.as_ref().filter(|r| r.cloud == old) else {
        return tail();
    };
    let pos = crate::lsn::format_lsn(r.lsn);
    match (r.mode, r.partner.as_deref()) {
        (SyncMode::Sync, Some(p)) if p != new => SyncVerdict::Lost(format!(
            "cloud {p}, not {new}, confirmed {old}'s commits (synchronous since {pos}): make {p} primary instead"
        )),
        (SyncMode::Sync, None) => SyncVerdict::Lost(format!("{old}'s record says synchronous but names no cloud")),
        (SyncMode::Sync, _) if at < r.lsn => SyncVerdict::Lost(format!(
            "{new} confirmed {old}'s commits from {pos}, and its standby leader is at {}, short of it",
            crate::lsn::format_lsn(at)
        )),
        (SyncMode::Sync, _) => SyncVerdict::NothingLost(format!(
            "{new} confirmed every commit of {old} from {pos} (synchronous replication between clouds): nothing acknowledged is lost"
        )),
        (SyncMode::Async, _) if at < r.lsn => SyncVerdict::Lost(format!(
            "{old} went on without a synchronous cloud from {pos} ({}); {new} is at {}: it lacks commits acknowledged since",
            r.why,
            crate::lsn::format_lsn(at)
        )),
        (SyncMode::Async, _) => tail(),
    }
}

pub(crate) fn parse_read(out: &str) -> SiteState {
    let mut s = SiteState::default();
    let cloud_of = |json: &str| {
        serde_json::from_str::<serde_json::Value>(json).ok().map(|v| {
            (
                v["cloud"].as_str().map(str::to_string),
                v["host"].as_str().map(str::to_string),
            )
        })
    };
    for line in out.lines() {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "health" => {
                if let Some((url, state)) = rest.split_once(' ') {
                    s.members.push((url.to_string(), state == "healthy"));
                }
            }
            "primary" => {
                if let Some((cloud, host)) = cloud_of(rest) {
                    s.holder = cloud;
                    s.holder_host = host;
                }
            }
            "remaining" => s.remaining = rest.trim().parse().ok(),
            "last" => s.last = cloud_of(rest).and_then(|(c, _)| c),
            "sync" => match serde_json::from_str::<SyncRecord>(rest) {
                Ok(r) => s.sync = Some(r),
                Err(_) => s.sync_unreadable = true,
            },
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_read_only_when_both_are_numbers() {
        assert_eq!(
            parse_revisions("primary 7\nsync 0\n"),
            Some(Revisions { primary: 7, sync: 0 })
        );
        for out in ["primary 7\n", "primary 7\nsync x\n", "", "sync 3\nprimary -1\n"] {
            assert_eq!(parse_revisions(out), None, "{out:?}");
        }
    }

    #[test]
    fn the_replication_record_is_read_and_judged() {
        let s = parse_read(
            "last {\"cloud\": \"dc1\", \"lsn\": 9}\n\
             sync {\"cloud\": \"dc1\", \"mode\": \"sync\", \"partner\": \"dc2\", \"lsn\": 5000, \"why\": \"w\", \"at\": 1.5}\n",
        );
        let rec = s.sync.clone().unwrap();
        assert_eq!(
            (rec.mode, rec.partner.as_deref(), rec.lsn),
            (SyncMode::Sync, Some("dc2"), 5000)
        );
        assert!(matches!(
            sync_verdict(&s, "dc1", "dc2", 5000),
            SyncVerdict::NothingLost(_)
        ));
        assert!(matches!(sync_verdict(&s, "dc1", "dc2", 4999), SyncVerdict::Lost(_)));
        assert!(matches!(sync_verdict(&s, "dc1", "dc3", 9000), SyncVerdict::Lost(w) if w.contains("make dc2 primary")));
        // Another cloud's record says nothing of dc3's: asynchronous.
        assert!(matches!(sync_verdict(&s, "dc3", "dc2", 1), SyncVerdict::Tail(_)));
        let a = parse_read("sync {\"cloud\": \"dc1\", \"mode\": \"async\", \"lsn\": 7000, \"why\": \"dc2 cut off\"}\n");
        assert!(matches!(sync_verdict(&a, "dc1", "dc2", 6999), SyncVerdict::Lost(w) if w.contains("dc2 cut off")));
        assert!(matches!(sync_verdict(&a, "dc1", "dc2", 7000), SyncVerdict::Tail(_)));
        assert!(matches!(
            sync_verdict(&SiteState::default(), "dc1", "dc2", 1),
            SyncVerdict::Tail(_)
        ));
        // A record there that does not read proves nothing either way.
        for bad in ["sync {", "sync {\"cloud\": \"dc1\", \"mode\": \"maybe\", \"lsn\": 1}"] {
            let b = parse_read(bad);
            assert!(b.sync_unreadable && b.sync.is_none(), "{bad}");
            assert!(matches!(sync_verdict(&b, "dc1", "dc2", 10), SyncVerdict::Lost(_)));
        }
        let none = parse_read("sync {\"cloud\": \"dc1\", \"mode\": \"sync\", \"lsn\": 1}");
        assert!(matches!(sync_verdict(&none, "dc1", "dc2", 10), SyncVerdict::Lost(_)));
    }

    #[test]
    fn the_renewal_keeps_only_a_lease_that_names_the_cloud() {
        let d = crate::testkit::example("three-sites.yaml");
        let script = renew_script(&d, "dc2");
        assert!(
            script.contains(r#"*'\"cloud\":\"dc2\"'* | *'\"cloud\": \"dc2\"'*) ;;"#),
            "{script}"
        );
        assert!(
            script.contains("f=$(e get /pgha-site/pgha-demo/primary -w fields) || exit 1\n"),
            "{script}"
        );
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // Run against etcdctl's own output shapes (a fake `e`).
        let fake = |value: &str, get_ok: bool| {
            let e = format!(
                "e() {{ case $1 in get) {}; printf '%s\\n' '\"Key\" : \"/pgha-site/pgha-demo/primary\"' \
                 '\"Value\" : \"{value}\"' '\"Lease\" : 7587879436380054784' ;; \
                 lease) [ \"$4\" = 694d902523eca500 ] && echo \"lease $4 keepalived with TTL(30)\" ;; esac; }}",
                if get_ok { "true" } else { "return 1" }
            );
            let body = script.split_once('\n').unwrap().1;
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("{e}\n{body}")])
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            )
        };
        let ours = r#"{\"cloud\":\"dc2\",\"by\":\"pgha\"}"#;
        let agents = r#"{\"cloud\": \"dc2\", \"host\": \"dc2-pg1\"}"#;
        let theirs = r#"{\"cloud\":\"dc1\",\"by\":\"pgha\"}"#;
        assert_eq!(fake(ours, true), (Some(0), "renewed".into()));
        assert_eq!(fake(agents, true), (Some(0), "renewed".into()));
        assert_eq!(fake(theirs, true), (Some(0), "not held".into()));
        assert_eq!(fake(ours, false).0, Some(1), "a failed read is not \"not held\"");
    }

    /// Issue 23: the hand-over mark, run against etcdctl's output shapes (a
    /// fake `e` that records the transaction): the same lease, a compare on
    /// the key's revision, the JSON the agents read; nothing on a key that
    /// names another cloud.
    #[test]
    fn the_hand_over_mark_keeps_the_lease_and_compares_the_revision() {
        let d = crate::testkit::example("three-sites.yaml");
        let script = handover_script(&d, "dc1", "dc2");
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let run = |value: &str| {
            let dir = tempfile::tempdir().unwrap();
            let txn = dir.path().join("txn");
            let e = format!(
                "e() {{ case $1 in get) printf '%s\\n' '\"Key\" : \"/pgha-site/pgha-demo/primary\"' \
                 '\"ModRevision\" : 42' '\"Value\" : \"{value}\"' '\"Lease\" : 7587879436380054784' ;; \
                 txn) cat > {}; echo SUCCESS ;; esac; }}",
                txn.display()
            );
            let body = script.split_once('\n').unwrap().1;
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("{e}\n{body}")])
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (said, std::fs::read_to_string(&txn).unwrap_or_default())
        };
        let (said, txn) = run(r#"{\"cloud\": \"dc1\", \"host\": \"dc1-pg1\"}"#);
        assert_eq!(said, "marked");
        let lines: Vec<&str> = txn.lines().collect();
        assert_eq!(lines[0], r#"mod("/pgha-site/pgha-demo/primary") = "42""#);
        assert_eq!(lines[1], "");
        let put = lines[2];
        assert!(put.starts_with(r#"put /pgha-site/pgha-demo/primary "{\"cloud\":\"dc1\",\"by\":\"pgha\",\"handover\":\"dc2\",\"until\":"#), "{put}");
        assert!(put.ends_with(r#"}" --lease=694d902523eca500"#), "{put}");
        assert_eq!(&lines[3..], ["", ""]);
        assert_eq!(
            run(r#"{\"cloud\":\"dc3\",\"by\":\"pgha\"}"#),
            ("not held".into(), String::new())
        );
    }

    #[test]
    fn read_output_is_parsed() {
        let out = "health https://10.0.0.11:2479 healthy\nhealth https://10.0.0.9:2479 unhealthy\n\
                   primary {\"cloud\":\"dc1\",\"host\":\"dc1-pg1\",\"lsn\":123}\nremaining 27\nlast {\"cloud\":\"dc1\",\"lsn\":123}\n";
        let s = parse_read(out);
        assert_eq!(
            s.members,
            [
                ("https://10.0.0.11:2479".to_string(), true),
                ("https://10.0.0.9:2479".to_string(), false)
            ]
        );
        assert_eq!(s.holder.as_deref(), Some("dc1"));
        assert_eq!(s.holder_host.as_deref(), Some("dc1-pg1"));
        assert_eq!(s.remaining, Some(27));
        assert_eq!(s.last.as_deref(), Some("dc1"));
        assert_eq!(parse_read("health https://a:2479 healthy\n").holder, None);
    }
}
