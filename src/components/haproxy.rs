//! HAProxy on every database host: its port leads to the read-write master.

use super::{Component, FileSpec};

pub(crate) const CONFIG: FileSpec = FileSpec {
    component: Component::Haproxy,
    template: "haproxy.cfg.j2",
    path: "/etc/haproxy/haproxy.cfg",
    owner: "root",
    group: "root",
    // The stats password is inside; HAProxy's master process reads it as root.
    mode: 0o600,
    service: "haproxy",
    check: Some("haproxy -c -q -f"),
};

/// The host's certificate and key in one file, as HAProxy wants them (its
/// master process reads it as root): presented to Patroni's REST API by the
/// checks (a GLB's too, with the site lease), and the metrics gateway's own.
pub(crate) const PEM: FileSpec = FileSpec {
    component: Component::Haproxy,
    template: "tls-haproxy.pem.j2",
    path: "/etc/pgha/tls/haproxy.pem",
    owner: "root",
    group: "root",
    mode: 0o600,
    service: "haproxy",
    check: None,
};

/// Prints `haproxy_pem` when the host has [`PEM`].
pub(crate) fn has_pem_script() -> String {
    format!("[ -s {} ] && echo haproxy_pem || true", crate::shell::quote(PEM.path))
}

/// Python's `admin(command)`: one command to HAProxy's admin socket (root
/// only), its whole answer (HAProxy closes the connection after it).
macro_rules! admin_py {
    () => {
        r#"import socket
def admin(command):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(3)
    s.connect("/run/haproxy/pgha-admin.sock")
    s.sendall(command.encode() + b"\n")
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            return out.decode()
        out += b
"#
    };
}

/// Saves `show servers state`, read from HAProxy's admin socket, to the
/// file the next process loads (`server-state-file` and
/// `load-server-state-from-file` in both configs); on any failure there is
/// no file, and the new process starts as HAProxy always did.
pub(crate) const SAVE_STATE_SCRIPT: &str = concat!(
    "python3 - > /var/lib/haproxy/pgha-server-state.new <<'PGHA_PY' && mv -f /var/lib/haproxy/pgha-server-state.new \
     /var/lib/haproxy/pgha-server-state || rm -f /var/lib/haproxy/pgha-server-state.new /var/lib/haproxy/pgha-server-state\n",
    admin_py!(),
    "import sys\nsys.stdout.write(admin(\"show servers state\"))\nPGHA_PY\n"
);

/// Sets `server` of each of `proxies` to `state` (`drain`: no new
/// sessions, or `ready`) through the admin socket. Prints the first
/// proxy's answer on its first line (`done`: set; `No such server.`: this
/// HAProxy does not list it; the others' answers are not printed: a proxy
/// may not list it); once drained, waits up to 5 s for the sessions of all
/// of them to end and prints `sessions N`, those left. The names are design
/// names (letters, digits, `-`), passed to Python as JSON strings.
pub(crate) fn server_state_script(proxies: &[String], server: &str, state: &str) -> String {
    let json = |v: &str| serde_json::to_string(v).unwrap_or_default();
    let list = serde_json::to_string(proxies).unwrap_or_default();
    format!(
        r#"python3 - <<'PGHA_PY'
{}import time
proxies, server, state = {}, {}, {}
def sessions():
    n = 0
    for line in admin("show stat").splitlines():
        cols = line.split(",")
        if len(cols) > 4 and cols[0] in proxies and cols[1] == server:
            n += int(cols[4] or 0)
    return n
said = [admin(f"set server {{proxy}}/{{server}} state {{state}}").strip() for proxy in proxies]
print(said[0] or "done", flush=True)
if state == "drain" and not said[0]:
    deadline = time.monotonic() + 5
    left = sessions()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = sessions()
    print("sessions", left)
PGHA_PY
"#,
        admin_py!(),
        list,
        json(server),
        json(state)
    )
}

/// The proxy name of the GLB's HAProxy.
pub(crate) fn glb_proxy(cluster: &str) -> String {
    format!("{cluster}-glb")
}

/// Every proxy of the GLB's HAProxy that lists the database hosts: the
/// read-write one first, then the read-only one.
pub(crate) fn glb_proxies(design: &crate::design::Design) -> Vec<String> {
    let cluster = &design.platform.name;
    let mut proxies = vec![glb_proxy(cluster), format!("{cluster}-glb-read-only")];
    if design.pgbouncer.is_some() {
        proxies.push(format!("{cluster}-glb-pooled"));
    }
    proxies
}

/// Prints HAProxy's statistics as CSV, read on the host itself: from
/// loopback when the page listens on every address, else from the address
/// it listens on (the page lets the host's own reads in without a password).
pub(crate) fn stats_script(stats_address: &str, stats_port: u16) -> String {
    let host = crate::design::shape::url_host(&stats_host(stats_address));
    format!("python3 -c 'import urllib.request as u; print(u.urlopen(\"http://{host}:{stats_port}/;csv\", timeout=3).read().decode())'")
}

/// The address of the statistics page as the host itself reads it (see
/// [`stats_script`]).
pub(crate) fn stats_host(stats_address: &str) -> String {
    match stats_address.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_unspecified() && ip.is_ipv6() => "::1".to_string(),
        Ok(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        _ => stats_address.to_string(),
    }
}

/// `(server, status)` of every server of `proxy` in a stats CSV.
pub(crate) fn servers(csv: &str, proxy: &str) -> Vec<(String, String)> {
    csv.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            (cols.len() > 17 && cols[0] == proxy && cols[1] != "FRONTEND" && cols[1] != "BACKEND")
                .then(|| (cols[1].to_string(), cols[17].to_string()))
        })
        .collect()
}

/// The servers of `proxy` that HAProxy's health checks see up.
pub(crate) fn up_servers(csv: &str, proxy: &str) -> Vec<String> {
    servers(csv, proxy)
        .into_iter()
        .filter(|(_, s)| s == "UP")
        .map(|(n, _)| n)
        .collect()
}

/// Servers that still take new sessions: up, or up and going down after a
/// first failed check (`UP 1/2`), which `up_servers` leaves out.
pub(crate) fn serving_servers(csv: &str, proxy: &str) -> Vec<String> {
    servers(csv, proxy)
        .into_iter()
        .filter(|(_, s)| s.starts_with("UP"))
        .map(|(n, _)| n)
        .collect()
}

/// Servers set to drain through the admin socket (an up one shows
/// `DRAIN`): left so by a removal that did not reach the GLB's reload.
pub(crate) fn drained_servers(csv: &str, proxy: &str) -> Vec<String> {
    servers(csv, proxy)
        .into_iter()
        .filter(|(_, s)| s.starts_with("DRAIN"))
        .map(|(n, _)| n)
        .collect()
}

/// The proxy name a database host's HAProxy routes the master through.
pub(crate) fn primary_proxy(cluster: &str) -> String {
    format!("{cluster}-primary")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dc2-pg1's HAProxy config for the three-sites example (a site lease)
    /// with `edit` applied to the design.
    fn dc2_config(edit: impl FnOnce(&mut crate::design::Design)) -> String {
        let mut d = crate::testkit::example("three-sites.yaml");
        edit(&mut d);
        let cloud = d.clouds.iter().find(|c| c.name == "dc2").unwrap().clone();
        let files = crate::render::Renderer::new(None)
            .unwrap()
            .db_host(&d, &cloud, &cloud.hosts[0], None, &crate::secrets::Secrets::redacted())
            .unwrap();
        crate::render::pick(&files, &CONFIG).content.clone()
    }

    #[test]
    fn local_reads_take_clients_but_never_send_them_to_a_master() {
        let closed = dc2_config(|_| {});
        assert!(
            closed.contains("tcp-request connection reject unless pgha_hop"),
            "{closed}"
        );
        assert!(closed.contains("use_backend pgha-demo-primary if pgha_hop"), "{closed}");
        assert!(closed.contains("server dc2-pg3 10.77.0.23:5432"), "{closed}");
        let open = dc2_config(|d| d.haproxy.local_reads = true);
        assert!(!open.contains("tcp-request connection reject"), "{open}");
        // Only the hop falls back to the master: a local client is refused instead.
        assert!(open.contains("use_backend pgha-demo-primary if pgha_hop"), "{open}");
        assert!(open.contains("default_backend pgha-demo-local-replicas"), "{open}");
        let strict = dc2_config(|d| d.haproxy.read_only_fallback = false);
        assert!(!strict.contains("use_backend pgha-demo-primary"), "{strict}");
    }

    #[test]
    fn a_server_going_down_still_serves() {
        let csv = "# pxname,svname,status\nc-glb,a,UP\nc-glb,b,UP 1/2\nc-glb,c,DOWN\nc-glb,d,DOWN 1/2\n";
        let csv = csv.replace(
            ",status",
            ",qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status",
        );
        let pad = |l: &str| {
            let (head, status) = l.rsplit_once(',').unwrap();
            format!("{head},0,0,0,0,0,0,0,0,,0,,0,0,0,0,{status}")
        };
        let csv: String = csv
            .lines()
            .map(|l| if l.starts_with('#') { l.to_string() } else { pad(l) })
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(up_servers(&csv, "c-glb"), ["a"]);
        assert_eq!(serving_servers(&csv, "c-glb"), ["a", "b"]);
        assert!(drained_servers(&csv, "c-glb").is_empty());
        let drained = csv.replace(",UP 1/2", ",DRAIN");
        assert_eq!(drained_servers(&drained, "c-glb"), ["b"]);
    }

    #[test]
    fn the_configs_name_the_socket_and_file_the_reload_uses() {
        for t in [
            include_str!("../../templates/haproxy.cfg.j2"),
            include_str!("../../templates/glb.cfg.j2"),
        ] {
            for (config, script) in [
                (
                    "stats socket /run/haproxy/pgha-admin.sock mode 600 level admin",
                    "\"/run/haproxy/pgha-admin.sock\"",
                ),
                (
                    "server-state-file /var/lib/haproxy/pgha-server-state\n",
                    "mv -f /var/lib/haproxy/pgha-server-state.new /var/lib/haproxy/pgha-server-state ",
                ),
                ("load-server-state-from-file global", ""),
            ] {
                assert!(t.contains(config) && SAVE_STATE_SCRIPT.contains(script), "{config}");
            }
        }
    }

    #[test]
    fn a_server_is_drained_through_the_admin_socket() {
        let mut design = crate::testkit::design_with("");
        design.pgbouncer = Some(crate::design::Pgbouncer {
            port: 6432,
            pool_mode: crate::design::PoolMode::Transaction,
            max_client_conn: 10,
            default_pool_size: 2,
            max_db_connections: 0,
        });
        let script = server_state_script(&glb_proxies(&design), "dc1-pg2", "drain");
        crate::shell::assert_parses_cleanly(&script);
        assert!(
            script.contains(
                "proxies, server, state = [\"pgha-demo-glb\",\"pgha-demo-glb-read-only\",\"pgha-demo-glb-pooled\"], \"dc1-pg2\", \"drain\"\n"
            ),
            "{script}"
        );
        assert!(
            script.contains("admin(f\"set server {proxy}/{server} state {state}\").strip() for proxy in proxies]"),
            "{script}"
        );
        assert!(
            script.contains("s.connect(\"/run/haproxy/pgha-admin.sock\")"),
            "{script}"
        );
        // Python compiles both admin-socket scripts (a newline inside a literal once did not).
        for script in [script.as_str(), SAVE_STATE_SCRIPT] {
            let body = script
                .split_once("<<'PGHA_PY'")
                .and_then(|(_, rest)| rest.split_once('\n'))
                .unwrap()
                .1
                .split("PGHA_PY\n")
                .next()
                .unwrap();
            let py = std::process::Command::new("python3")
                .args(["-c", "import sys; compile(sys.stdin.read(), 'drain', 'exec')"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin.take().unwrap().write_all(body.as_bytes())?;
                    c.wait()
                });
            assert!(py.is_ok_and(|s| s.success()), "{body}");
        }
    }

    #[test]
    fn servers_are_read_from_stats() {
        let csv =
            "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status\n\
x-primary,FRONTEND,,,0,0,1000,0,0,0,0,0,0,,,,,OPEN\n\
x-primary,a1,0,0,0,0,500,0,0,0,,0,,0,0,0,0,UP\n\
x-primary,a2,0,0,0,0,500,0,0,0,,0,,0,0,0,0,DOWN\n\
x-primary,BACKEND,0,0,0,0,100,0,0,0,0,0,,0,0,0,0,UP\n";
        assert_eq!(
            servers(csv, "x-primary"),
            [("a1".into(), "UP".into()), ("a2".into(), "DOWN".into())]
        );
    }
}
