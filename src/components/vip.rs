//! A virtual IP per cloud (issue 27, part 3): vip-manager on the cloud's
//! database hosts holds the address on the host whose Patroni leads the
//! cloud (its master, or a standby cloud's standby leader).
//!
//! Debian's vip-manager (1.0.2) reads etcd's v2 API only, where Patroni's
//! leader key (v3) is not: the cloud's etcd serves v2 too, and a small loop
//! on every host (host/vip_leader.py) names the host in a v2 key while its
//! Patroni leads and runs PostgreSQL. vip-manager watches that key.

use super::{Component, FileSpec};

pub(crate) const PACKAGE: &str = "vip-manager";
/// Debian's own unit: enabled by the package with an empty configuration;
/// pgha runs its own and keeps this one off.
pub(crate) const DEBIAN_SERVICE: &str = "vip-manager";
pub(crate) const MANAGER_SERVICE: &str = "pgha-vip-manager";
pub(crate) const LEADER_SERVICE: &str = "pgha-vip-leader";

pub(crate) const MANAGER_CONFIG: FileSpec = FileSpec {
    component: Component::Vip,
    template: "vip-manager.yml.j2",
    path: "/etc/pgha/vip-manager.yml",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: MANAGER_SERVICE,
    check: None,
};

pub(crate) const MANAGER_UNIT: FileSpec = FileSpec {
    component: Component::Vip,
    template: "vip-manager.service.j2",
    path: "/etc/systemd/system/pgha-vip-manager.service",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: MANAGER_SERVICE,
    check: None,
};

/// The loop's code, the same on every host (host/vip_leader.py).
pub(crate) const LEADER: FileSpec = FileSpec {
    component: Component::Vip,
    template: "vip_leader.py",
    path: "/usr/local/lib/pgha/vip-leader",
    owner: "root",
    group: "root",
    mode: 0o755,
    service: LEADER_SERVICE,
    check: Some("python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())'"),
};

pub(crate) const LEADER_SETTINGS: FileSpec = FileSpec {
    component: Component::Vip,
    template: "vip-leader.json.j2",
    path: "/etc/pgha/vip-leader.json",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: LEADER_SERVICE,
    check: None,
};

pub(crate) const LEADER_UNIT: FileSpec = FileSpec {
    component: Component::Vip,
    template: "vip-leader.service.j2",
    path: "/etc/systemd/system/pgha-vip-leader.service",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: LEADER_SERVICE,
    check: None,
};

/// Every file of a host of a cloud with a virtual IP.
pub(crate) const FILES: [FileSpec; 5] = [LEADER, LEADER_SETTINGS, LEADER_UNIT, MANAGER_CONFIG, MANAGER_UNIT];

/// The v2 key that names the cloud's leader.
pub(crate) fn key(cluster: &str, cloud: &str) -> String {
    format!("/pgha-vip/{cluster}/{cloud}")
}

/// `vip ADDRESS` for each of the design's virtual IPs this host holds.
pub(crate) fn held_script(design: &crate::design::Design) -> String {
    design
        .clouds
        .iter()
        .filter_map(|c| c.vip.as_ref())
        .map(|v| {
            format!(
                "ip -o addr show to {a} 2>/dev/null | grep -q . && echo vip {a}\n",
                a = crate::shell::quote(&v.address)
            )
        })
        .collect()
}

/// `iface NAME` for each network interface of the host (no process started).
pub(crate) const INTERFACES_SCRIPT: &str = "for i in /sys/class/net/*; do echo \"iface ${i##*/}\"; done\n";

/// Does any cloud of `design` have a virtual IP?
pub(crate) fn any(design: &crate::design::Design) -> bool {
    design.clouds.iter().any(|c| c.vip.is_some())
}

/// The v2 key where pgha records the digest of the v2 access it set (only
/// v2's root users may read it).
pub(crate) const ACCESS_MARKER: &str = "/pgha-vip-access";
/// What v2's guest role may do: read the VIP's keys, write nothing.
const GUEST_READS: &str = "/pgha-vip/*";

/// etcd's v2 API has authentication of its own, apart from v3's (v3's
/// already refuses member changes made through v2). v2 maps a client
/// certificate's common name to a v2 user, as v3 does: the cloud's hosts
/// are v2 users with the root role, by certificate (each with a random
/// password kept nowhere; the loop and vip-manager use the host's
/// certificate), `root` exists because etcd wants it before it turns
/// authentication on, and the guest role (any other certificate of the
/// cluster CA: the witness's, a repository host's) may only read the
/// VIP's keys. A certificate without a common name (the gateway's) gets no
/// answer at all from v2 once authentication is on: etcd closes the
/// connection.
pub(crate) fn access_digest(cloud: &crate::design::Cloud) -> String {
    let hosts: Vec<&str> = cloud.hosts.iter().map(|h| h.name.as_str()).collect();
    crate::fsutil::sha256_hex(format!("v2 roots {}\nguest reads {GUEST_READS}\n", hosts.join(",")).as_bytes())
}

/// A Python program, run through `sh`, that reads or changes the local
/// member's v2 API as this host (its certificate and key).
fn v2_program(client_port: u16, body: &str) -> String {
    format!(
        r#"python3 - <<'PGHA_V2'
import json, secrets, ssl, sys, urllib.error, urllib.parse, urllib.request
c = ssl.create_default_context(cafile={trust})
c.load_cert_chain({cert}, {key})
def call(method, path, body=None, form=None):
    data, headers = None, {{}}
    if body is not None:
        data, headers = json.dumps(body).encode(), {{"Content-Type": "application/json"}}
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers = {{"Content-Type": "application/x-www-form-urlencoded"}}
    request = urllib.request.Request("https://127.0.0.1:{client_port}" + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=c) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None
{body}PGHA_V2
"#,
        trust = json(super::tls::TRUST_PATH),
        cert = json(super::tls::CERT_PATH),
        key = json(super::tls::ETCD_KEY_PATH),
    )
}

fn json(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Prints `vip_access DIGEST`: the marker, empty when it cannot be read
/// (no v2 API, authentication on and this host no v2 user yet).
pub(crate) fn access_probe_script(client_port: u16) -> String {
    let program = v2_program(
        client_port,
        &format!(
            r#"status, j = call("GET", "/v2/keys{ACCESS_MARKER}")
if status == 200:
    print(j["node"]["value"])
"#
        ),
    );
    format!(
        "vip_access=$({})\necho \"vip_access $vip_access\"\n",
        program.replacen("python3 - <<", "python3 - 2>/dev/null <<", 1)
    )
}

/// Sets the v2 access of [`access_digest`] on the local member: the users
/// (a host gone from the design loses its user: its certificate stays
/// valid), the guest role, authentication on, then `digest`. Idempotent;
/// says `added NAME` and `removed NAME`.
pub(crate) fn access_script(cloud: &crate::design::Cloud, client_port: u16, digest: &str) -> String {
    let hosts: Vec<&str> = cloud.hosts.iter().map(|h| h.name.as_str()).collect();
    v2_program(
        client_port,
        &format!(
            r#"ROOTS = {roots}
GUEST = {{"read": [{guest}], "write": []}}
def need(what, status, ok=(200, 201)):
    if status not in ok:
        sys.exit("etcd's v2 API: %s: HTTP %s" % (what, status))
def user(name, roles):
    status, j = call("GET", "/v2/auth/users/" + name)
    if status == 404:
        body = {{"user": name, "password": secrets.token_urlsafe(32)}}
        if roles:
            body["roles"] = roles
        need("adding " + name, call("PUT", "/v2/auth/users/" + name, body)[0])
        return True
    need("reading " + name, status, (200,))
    have = [r["role"] for r in j.get("roles") or []]
    missing = [r for r in roles if r not in have]
    if missing:
        need("granting " + name, call("PUT", "/v2/auth/users/" + name, {{"user": name, "grant": missing}})[0])
    return False
user("root", [])
for name in ROOTS:
    if user(name, ["root"]):
        print("added", name)
status, j = call("GET", "/v2/auth/users")
need("listing users", status, (200,))
for u in j.get("users") or []:
    roles = [r["role"] for r in u.get("roles") or []]
    if u["user"] not in ROOTS and u["user"] != "root" and "root" in roles:
        need("removing " + u["user"], call("DELETE", "/v2/auth/users/" + u["user"])[0])
        print("removed", u["user"])
status, j = call("GET", "/v2/auth/roles/guest")
if status == 404:
    need("adding the guest role", call("PUT", "/v2/auth/roles/guest", {{"role": "guest", "permissions": {{"kv": GUEST}}}})[0])
else:
    need("reading the guest role", status, (200,))
    kv = (j.get("permissions") or {{}}).get("kv") or {{}}
    extra = {{k: [p for p in kv.get(k) or [] if p not in GUEST[k]] for k in GUEST}}
    lacking = {{k: [p for p in GUEST[k] if p not in (kv.get(k) or [])] for k in GUEST}}
    if any(extra.values()):
        need("revoking from guest", call("PUT", "/v2/auth/roles/guest", {{"role": "guest", "revoke": {{"kv": extra}}}})[0])
    if any(lacking.values()):
        need("granting to guest", call("PUT", "/v2/auth/roles/guest", {{"role": "guest", "grant": {{"kv": lacking}}}})[0])
status, j = call("GET", "/v2/auth/enable")
need("reading whether authentication is on", status, (200,))
if not j.get("enabled"):
    need("turning authentication on", call("PUT", "/v2/auth/enable")[0])
need("recording the access", call("PUT", "/v2/keys{ACCESS_MARKER}", form={{"value": {digest}}})[0])
"#,
            roots = serde_json::to_string(&hosts).expect("names serialize"),
            guest = json(GUEST_READS),
            digest = json(digest),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cloud_has_its_key_and_the_probe_names_what_a_host_holds() {
        let d = crate::testkit::example("three-sites.yaml");
        assert!(any(&d));
        assert_eq!(key("pgha-demo", "dc1"), "/pgha-vip/pgha-demo/dc1");
        let script = held_script(&d);
        assert_eq!(
            script,
            "ip -o addr show to 10.77.0.100 2>/dev/null | grep -q . && echo vip 10.77.0.100\n"
        );
        crate::shell::assert_parses_cleanly(&script);
        assert!(!any(&crate::testkit::example("two-clouds.yaml")));
        assert_eq!(held_script(&crate::testkit::example("two-clouds.yaml")), "");
    }

    /// The Python inside a v2 script compiles (python3 is on every host and
    /// on the machines that build pgha).
    fn assert_python_compiles(script: &str) {
        let body = script.split_once("<<'PGHA_V2'\n").unwrap().1;
        let body = body.split_once("PGHA_V2\n").unwrap().0;
        let out = std::process::Command::new("python3")
            .args(["-c", "import ast, sys; ast.parse(sys.argv[1])", body])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}\n{body}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn v2_access_makes_the_clouds_hosts_root_by_certificate_and_lets_guests_only_read_the_keys() {
        let d = crate::testkit::example("three-sites.yaml");
        let dc1 = d.cloud("dc1").unwrap();
        let digest = access_digest(dc1);
        assert_ne!(
            digest,
            access_digest(d.cloud("dc2").unwrap()),
            "each cloud its own hosts"
        );
        let script = access_script(dc1, 2379, &digest);
        crate::shell::assert_parses_cleanly(&script);
        assert_python_compiles(&script);
        let names: Vec<String> = dc1.hosts.iter().map(|h| format!("{:?}", h.name)).collect();
        assert!(script.contains(&format!("ROOTS = [{}]", names.join(","))), "{script}");
        assert!(
            script.contains(r#"GUEST = {"read": ["/pgha-vip/*"], "write": []}"#),
            "{script}"
        );
        assert!(script.contains("https://127.0.0.1:2379"), "{script}");
        assert!(script.contains("c.load_cert_chain(\"/etc/pgha/tls/host.crt\", \"/etc/pgha/tls/etcd.key\")"));
        assert!(
            script.contains(&format!("form={{\"value\": \"{digest}\"}}")),
            "{script}"
        );
        // Authentication goes on only after the users and the guest role.
        let at = |s: &str| script.find(s).unwrap_or_else(|| panic!("{s} in {script}"));
        assert!(at("user(\"root\", [])") < at("/v2/auth/roles/guest"));
        assert!(at("/v2/auth/roles/guest") < at("call(\"PUT\", \"/v2/auth/enable\")"));
        assert!(key("c", "dc1").starts_with(&GUEST_READS[..GUEST_READS.len() - 1]));

        let probe = access_probe_script(2379);
        crate::shell::assert_parses_cleanly(&probe);
        assert_python_compiles(&probe);
        assert!(
            probe.starts_with("vip_access=$(python3 - 2>/dev/null <<'PGHA_V2'\n"),
            "{probe}"
        );
        assert!(
            probe.ends_with("PGHA_V2\n)\necho \"vip_access $vip_access\"\n"),
            "{probe}"
        );
        assert!(probe.contains("/v2/keys/pgha-vip-access"), "{probe}");
    }
}
