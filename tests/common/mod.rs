//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub(crate) mod partition;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn example(name: &str) -> PathBuf {
    repo().join("examples").join(name)
}

/// Runs the real binary with `args`, without a terminal.
pub(crate) fn pgha<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(args)
        .output()
        .expect("pgha runs")
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The environment that points etcdctl on a cluster host at its local
/// member, over TLS with the host's certificate (etcd requires one).
pub(crate) const ETCD_ENV: &str = "ETCDCTL_API=3 ETCDCTL_ENDPOINTS=https://127.0.0.1:2379 \
ETCDCTL_CACERT=/etc/pgha/tls/ca.crt ETCDCTL_CERT=/etc/pgha/tls/host.crt ETCDCTL_KEY=/etc/pgha/tls/etcd.key";

/// A shell line that prints `path` of the host's own Patroni REST API
/// (HTTPS, verifying the cluster CA, with the host's certificate).
pub(crate) fn rest_get(path: &str) -> String {
    format!(
        "python3 -c 'import ssl, urllib.request as u; c = ssl.create_default_context(cafile=\"/etc/pgha/tls/ca.crt\"); \
c.load_cert_chain(\"/etc/pgha/tls/host.crt\", \"/etc/pgha/tls/postgres.key\"); print(u.urlopen(\"https://127.0.0.1:8008{path}\", timeout=5, context=c).read().decode())'"
    )
}

/// Where a long end-to-end test's time went: written to the process's
/// stderr itself, past the test harness's capture, so that CI's output
/// shows it as it happens (and, when a run is cut off, what ran last).
pub(crate) struct Phases {
    test: &'static str,
    start: std::time::Instant,
}

impl Phases {
    pub(crate) fn start(test: &'static str) -> Phases {
        Phases {
            test,
            start: std::time::Instant::now(),
        }
    }

    pub(crate) fn done(&self, what: &str) {
        use std::io::Write;
        let line = format!(
            "phase: {}: {what} done at {:.0} s\n",
            self.test,
            self.start.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

/// A file of a running container, read through its init's `/proc/PID/root`
/// (its own mounts, its /run too): None when the container or the file is
/// not there. For conditions polled several times a second: a `docker
/// exec` costs about 90 ms of CPU, which the lab's hosts need.
pub(crate) fn container_file(container: &str, path: &str) -> Option<String> {
    std::fs::read_to_string(format!("{}{path}", container_root(container)?)).ok()
}

/// Whether a running container has `path`: None when that cannot be told
/// (the container is not running, /proc says something else).
pub(crate) fn container_has(container: &str, path: &str) -> Option<bool> {
    match std::fs::symlink_metadata(format!("{}{path}", container_root(container)?)) {
        Ok(_) => Some(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(false),
        Err(_) => None,
    }
}

/// `/proc/PID/root` of a running container's init.
fn container_root(container: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Pid}}", container])
        .output()
        .ok()?;
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || pid.is_empty() || pid == "0" {
        return None;
    }
    let root = format!("/proc/{pid}/root");
    Path::new(&root).exists().then_some(root)
}

/// End-to-end tests need root and Docker (`.ci/setup`). They run unless
/// PGHA_SKIP_E2E=1 says otherwise, so a missing engine fails loudly in CI.
pub(crate) fn e2e() -> bool {
    if std::env::var("PGHA_SKIP_E2E").as_deref() == Ok("1") {
        eprintln!("skipped: PGHA_SKIP_E2E=1");
        return false;
    }
    true
}

/// `lab up` arguments for a benchmark's release: Debian 13 unless
/// `PGHA_BENCH_OS` names another (`debian12`).
pub(crate) fn bench_os() -> Vec<&'static str> {
    match std::env::var("PGHA_BENCH_OS").as_deref() {
        Ok("debian12") => vec!["--os", "debian12"],
        Ok("debian13") | Err(_) => vec!["--os", "debian13"],
        Ok(other) => panic!("PGHA_BENCH_OS={other}: use debian13 or debian12"),
    }
}

/// A lab brought up for one test binary, removed when dropped (unless
/// PGHA_KEEP_LAB=1, to look at it after a failure).
pub(crate) struct TestLab {
    pub dir: PathBuf,
    name: String,
    tmp: Option<tempfile::TempDir>,
}

impl TestLab {
    pub(crate) fn up(name: &str, subnet: &str, extra: &[&str]) -> TestLab {
        // A run that died (or kept its lab) may have left this lab's hosts behind.
        remove_leftovers(name);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("lab");
        let mut args: Vec<&std::ffi::OsStr> = ["lab", "up", "--name", name, "--subnet", subnet]
            .map(std::ffi::OsStr::new)
            .to_vec();
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        args.extend(["--lab".as_ref(), dir.as_os_str()]);
        // No retry: a flaky `lab up` is a defect of pgha's own lab command
        // (it waits up to 180 s for every host's sshd and systemd).
        let out = pgha(&args);
        assert_eq!(out.status.code(), Some(0), "lab up failed: {}", stderr(&out));
        // What the first deploy's CA lets clients trust (read at each query:
        // a rotation changes it).
        TRUST.lock().unwrap().push(dir.join("pgha.pki").join("trust.crt"));
        TestLab {
            dir,
            name: name.to_string(),
            tmp: Some(tmp),
        }
    }

    pub(crate) fn design(&self) -> PathBuf {
        self.dir.join("pgha.yaml")
    }

    /// `pgha ARGS -f <lab design>`.
    pub(crate) fn pgha(&self, args: &[&str]) -> Output {
        let mut all: Vec<std::ffi::OsString> = args.iter().map(|a| a.into()).collect();
        all.extend(["-f".into(), self.design().into_os_string()]);
        pgha(all)
    }

    /// `pgha ARGS -f <lab design>`, which must succeed.
    pub(crate) fn pgha_ok(&self, args: &[&str]) -> Output {
        let out = self.pgha(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "pgha {args:?}: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        out
    }

    /// `pgha ARGS -f <lab design>` started in the background, output piped.
    pub(crate) fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_pgha"))
            .args(args)
            .arg("-f")
            .arg(self.design())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("pgha starts")
    }

    /// pgha's state file next to the lab's design, as JSON (`{}` when absent).
    pub(crate) fn state(&self) -> serde_json::Value {
        std::fs::read_to_string(self.dir.join("pgha.state.yaml"))
            .ok()
            .and_then(|t| pgha::design::yaml::from_str(&t, false).ok())
            .unwrap_or_else(|| serde_json::json!({}))
    }

    /// SSH control masters pgha opened to this lab's hosts that still run.
    pub(crate) fn ssh_masters(&self) -> Vec<String> {
        let out = Command::new("pgrep")
            .args(["-a", "-f", "ssh .*-M .*"])
            .output()
            .expect("pgrep runs");
        let kh = self.dir.join("known_hosts");
        stdout(&out)
            .lines()
            .filter(|l| l.contains(kh.to_str().unwrap()))
            .map(str::to_string)
            .collect()
    }

    pub(crate) fn lab(&self, args: &[&str]) -> Output {
        let mut all: Vec<&std::ffi::OsStr> = vec!["lab".as_ref()];
        all.extend(args.iter().map(std::ffi::OsStr::new));
        all.extend(["--lab".as_ref(), self.dir.as_os_str()]);
        pgha(all)
    }

    /// Runs `cmd` on a host over SSH, strict host key checking.
    pub(crate) fn ssh(&self, address: &str, cmd: &str) -> Output {
        self.ssh_checking(&self.dir.join("known_hosts"), address, cmd)
    }

    /// `host_name`'s certificate as the lab's CA would issue it for its own
    /// key and names, but ending in `days` days (and an hour): as if no deploy
    /// had renewed it for a year. Nothing stops trusting the host meanwhile.
    pub(crate) fn host_certificate_for_days(&self, host_name: &str, days: i64) -> String {
        let pki = self.dir.join("pgha.pki");
        let read = |f: &str| std::fs::read_to_string(pki.join(f)).unwrap();
        let design = pgha::design::load(&self.design()).unwrap().design;
        let mut params = rcgen::CertificateParams::new(pgha::pki::wanted_names(&design, host_name)).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "pgha");
        params.distinguished_name.push(rcgen::DnType::CommonName, host_name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days) + time::Duration::hours(1);
        let ca_key = rcgen::KeyPair::from_pem(&read("ca.key")).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_pem(&read("ca.crt"), ca_key).unwrap();
        let key = rcgen::KeyPair::from_pem(&read(&format!("hosts/{host_name}.key"))).unwrap();
        params.signed_by(&key, &issuer).unwrap().pem()
    }

    /// Writes `pem` over the host certificate at `address` (its owner and mode stay).
    pub(crate) fn put_host_certificate(&self, address: &str, pem: &str) {
        let b64 = pgha::remote::base64(pem.as_bytes()).replace('\n', "");
        self.ssh_ok(address, &format!("echo {b64} | base64 -d > /etc/pgha/tls/host.crt"));
    }

    /// Like `ssh`, checking the host key against `known_hosts`.
    pub(crate) fn ssh_checking(&self, known_hosts: &Path, address: &str, cmd: &str) -> Output {
        self.ssh_command(known_hosts, address, cmd).output().unwrap()
    }

    fn ssh_command(&self, known_hosts: &Path, address: &str, cmd: &str) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-i")
            .arg(self.dir.join("id_ed25519"))
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=3",
            ])
            .arg(format!("root@{address}"))
            .arg(cmd);
        c
    }

    /// Issue 23: least privilege in etcd, on a lab with a witness (`.4`)
    /// and (`repository`) dc1's repository host (`.19`) under `prefix`. A database host
    /// reaches its cloud's etcd by its certificate; the witness writes
    /// neither a cloud's Patroni keys nor the site lease (it may read the
    /// lease); a repository host reads and writes nothing anywhere.
    pub(crate) fn etcd_least_privilege(&self, prefix: &str, repository: bool) {
        let (db, witness, repo) = (format!("{prefix}.11"), format!("{prefix}.4"), format!("{prefix}.19"));
        let e = |host_key: &str, port: u16, op: &str| {
            format!(
                "ETCDCTL_API=3 etcdctl --endpoints=https://{db}:{port} --cacert=/etc/pgha/tls/ca.crt \
                 --cert=/etc/pgha/tls/host.crt --key=/etc/pgha/tls/{host_key} --dial-timeout=3s --command-timeout=3s {op}"
            )
        };
        // The key under `prefix` ending in `end`, as the database host lists it.
        let key = |port: u16, prefix: &str, end: &str| {
            let keys = self.ssh_ok(&db, &e("etcd.key", port, &format!("get {prefix} --prefix --keys-only")));
            let found = keys.lines().find(|k| k.ends_with(end)).map(str::to_string);
            found.unwrap_or_else(|| panic!("no key ending in {end} under {prefix}: {keys}"))
        };
        let leader = key(2379, "/pgha/", "/leader");
        let lease = key(2479, "/pgha-site/", "/primary");
        let refused = |host: &str, key: &str, port: u16, op: &str| {
            let out = self.ssh(host, &e(key, port, op));
            let said = stdout(&out) + &stderr(&out);
            assert!(
                !out.status.success() && (said.contains("permission denied") || said.contains("user name not found")),
                "{host} may `{op}` on :{port}: {said}"
            );
        };
        refused(&witness, "etcd.key", 2379, &format!("put {leader} witness"));
        refused(&witness, "etcd.key", 2379, &format!("get {leader}"));
        refused(&witness, "etcd.key", 2479, &format!("put {lease} witness"));
        let read = self.ssh_ok(
            &witness,
            &e("etcd.key", 2479, &format!("get {lease} --print-value-only")),
        );
        assert!(read.contains("\"cloud\""), "the witness reads the lease: {read}");
        for port in [2379, 2479].into_iter().filter(|_| repository) {
            refused(&repo, "postgres.key", port, "put /pgha-x repository");
            refused(&repo, "postgres.key", port, "get / --prefix --keys-only");
            refused(&repo, "postgres.key", port, "user add intruder --no-password");
        }
        // Not a permission etcd gives a certificate, but its gateway: a
        // certificate naming a host gets nothing through it.
        let gateway = self.ssh(
            &witness,
            &format!(
                r#"python3 - <<'PY'
import ssl, urllib.error, urllib.request as u
c = ssl.create_default_context(cafile='/etc/pgha/tls/ca.crt')
c.load_cert_chain('/etc/pgha/tls/host.crt', '/etc/pgha/tls/etcd.key')
try:
    u.urlopen(u.Request('https://{db}:2379/v3/kv/range', data=b'{{}}'), context=c, timeout=3)
    print('answered')
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
PY
"#
            ),
        );
        let said = stdout(&gateway);
        assert!(
            said.starts_with("400") && said.contains("CommonName of client"),
            "the gateway and the witness's certificate: {said}{}",
            stderr(&gateway)
        );
    }

    /// Issue 28: puts on the host at `from` the trust bundle, Prometheus's
    /// metrics certificate (`prometheus`) and dc1-pg1's own (`host`), for
    /// [`TestLab::metrics_get`].
    pub(crate) fn metrics_client(&self, from: &str) {
        let pki = self.dir.join("pgha.pki");
        for (name, file) in [
            ("trust.crt", pki.join("trust.crt")),
            ("prometheus.crt", pki.join("metrics/prometheus.crt")),
            ("prometheus.key", pki.join("metrics/prometheus.key")),
            ("host.crt", pki.join("hosts/dc1-pg1.crt")),
            ("host.key", pki.join("hosts/dc1-pg1.key")),
        ] {
            let pem = std::fs::read_to_string(file).unwrap();
            self.ssh_ok(
                from,
                &format!("umask 077; mkdir -p /tmp/m; cat > /tmp/m/{name} <<'PEM'\n{pem}PEM"),
            );
        }
    }

    /// The lines of `url`, asked from `from` with the `client` certificate
    /// ([`TestLab::metrics_client`]; `None`: none), that start with
    /// `prefix`, as Python prints a list; or `refused <why>`.
    pub(crate) fn metrics_get(&self, from: &str, client: Option<&str>, url: &str, prefix: &str) -> String {
        let load = client.map_or(String::new(), |c| {
            format!("c.load_cert_chain('/tmp/m/{c}.crt', '/tmp/m/{c}.key')\n")
        });
        let py = format!(
            "import ssl, urllib.request as u\nc = ssl.create_default_context(cafile='/tmp/m/trust.crt')\n{load}\
             try:\n    t = u.urlopen('{url}', timeout=10, context=c).read().decode()\n\
             \x20   print([l for l in t.splitlines() if l.startswith('{prefix}')])\n\
             except Exception as e:\n    print('refused', type(e).__name__, getattr(e, 'code', ''))\n"
        );
        self.ssh_ok(from, &format!("python3 - <<'PY'\n{py}PY"))
    }

    /// An answer of Prometheus's (port 9090) or Alertmanager's (9093) HTTP API
    /// on the lab's monitoring host, asked there: `path` with the query
    /// parameters `params`.
    pub(crate) fn monitor_api(&self, port: u16, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
        let params = serde_json::to_string(&params.iter().map(|(k, v)| [*k, *v]).collect::<Vec<_>>()).unwrap();
        let py = format!(
            "import json, urllib.parse as p, urllib.request as u\n\
             q = p.urlencode([tuple(x) for x in json.loads({params:?})])\n\
             print(u.urlopen('http://127.0.0.1:{port}{path}?' + q, timeout=10).read().decode())\n"
        );
        // Asked again on a failure (an SSH connection or the API's answer),
        // three times in all: one transient error is no finding.
        let mut last = String::new();
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_secs(2));
            }
            let out = self.ssh(&self.monitor_address(), &format!("python3 - <<'PY'\n{py}PY"));
            match serde_json::from_str(&stdout(&out)) {
                Ok(v) if out.status.success() => return v,
                Ok(_) => last = stderr(&out),
                Err(e) => last = format!("{e}: {}{}", stdout(&out), stderr(&out)),
            }
        }
        panic!("{path}: {last}")
    }

    /// The alerts Prometheus has firing (`state` firing) for `host`, by name.
    pub(crate) fn firing(&self, host: &str) -> Vec<String> {
        let alerts = self.monitor_api(9090, "/api/v1/alerts", &[]);
        alerts["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "firing" && a["labels"]["host"] == host)
            .map(|a| a["labels"]["alertname"].as_str().unwrap().to_string())
            .collect()
    }

    /// Whether `alert` fires for `host` now.
    pub(crate) fn fires(&self, host: &str, alert: &str) -> bool {
        self.firing(host).iter().any(|a| a == alert)
    }

    /// The lab's monitoring host (`lab up --monitor`): `.6` of its subnet.
    pub(crate) fn monitor_address(&self) -> String {
        let lab: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.dir.join("lab.json")).unwrap()).unwrap();
        let subnet = lab["subnet"].as_str().unwrap();
        format!("{}.6", subnet.strip_suffix(".0/24").unwrap())
    }

    /// `pgha lab monitor`, then every active target of the lab's Prometheus
    /// once all are up (seven jobs on six database hosts, less the site's
    /// etcd on those without a member of it: at least 36).
    pub(crate) fn start_monitoring(&self) -> Vec<serde_json::Value> {
        let out = self.lab(&["monitor"]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        let mut targets = Vec::new();
        wait_for(
            "every target up in Prometheus",
            std::time::Duration::from_secs(120),
            || {
                let t = self.monitor_api(9090, "/api/v1/targets", &[("state", "active")]);
                targets = t["data"]["activeTargets"].as_array().unwrap().clone();
                targets.len() >= 36 && targets.iter().all(|t| t["health"] == "up")
            },
        );
        targets
    }

    pub(crate) fn ssh_ok(&self, address: &str, cmd: &str) -> String {
        let out = self.ssh(address, cmd);
        assert!(out.status.success(), "{address}: {cmd}: {}", stderr(&out));
        stdout(&out).trim().to_string()
    }

    /// What `units` logged on the hosts at `addresses` during the gap `w`
    /// saw (and 2 s before it): printed when a write gap crosses its bound,
    /// so a rare failure (seen once in CI, never here) says what happened
    /// meanwhile.
    pub(crate) fn journals_of_gap(&self, w: &Written, addresses: &[String], units: &[&str]) -> String {
        let end = w.gap_end.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        self.journals_between(end - w.gap.as_secs() - 2, end, addresses, units)
    }

    /// What `units` logged on `addresses` from `start` to `end` (Unix seconds).
    pub(crate) fn journals_between(&self, start: u64, end: u64, addresses: &[String], units: &[&str]) -> String {
        let units: String = units.iter().map(|u| format!(" -u {u}")).collect();
        let mut out = String::new();
        for a in addresses {
            let cmd = format!(
                "journalctl --no-pager -o short-precise --since @{} --until @{}{units}",
                start,
                end + 1
            );
            let o = self.ssh(a, &cmd);
            // Patroni's loop lines say nothing and pushed the telling ones out of CI's part.
            let text: String = String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.contains(" INFO: no action. "))
                .map(|l| format!("{l}\n"))
                .collect();
            out.push_str(&format!("== {a}\n{text}\n"));
        }
        out
    }

    /// A write gap through the GLB while the cluster changes under it. Over
    /// 10 s the writes stopped as for an outage: the test fails, with what
    /// `units` logged on `addresses` meanwhile (a cause seen before: Patroni
    /// demoting its master when an etcd member it talks to shuts down
    /// mid-request, Patroni issues #3118, #3407).
    pub(crate) fn check_gap(&self, what: &str, w: &Written, addresses: &[String], units: &[&str]) {
        self.check_gap_within(what, w, std::time::Duration::from_secs(10), addresses, units);
    }

    /// As [`TestLab::check_gap`], with the bound the change promises.
    pub(crate) fn check_gap_within(
        &self,
        what: &str,
        w: &Written,
        bound: std::time::Duration,
        addresses: &[String],
        units: &[&str],
    ) {
        // The journals only when it fails: CI shows the first part of the
        // output, and a dump for every gap over 2 s pushed a later panic out of it.
        if w.gap > bound {
            panic!(
                "{what}: a write gap of {:?} (bound {bound:?}); the hosts logged:\n{}",
                w.gap,
                self.journals_of_gap(w, addresses, units)
            );
        }
    }

    /// The password the secrets file keeps for one of the design's roles.
    pub(crate) fn role_password(&self, role: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join("pgha.secrets.yaml")).unwrap();
        let mut lines = text.lines().skip_while(|l| *l != "roles:").skip(1);
        let line = lines
            .find(|l| l.trim_start().starts_with(&format!("{role}:")))
            .unwrap_or_else(|| panic!("no password for {role} in the secrets file"));
        line.split_once(':').unwrap().1.trim().trim_matches('"').to_string()
    }

    pub(crate) fn superuser_password(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("pgha.secrets.yaml")).unwrap();
        let line = text.lines().find(|l| l.starts_with("superuser_password:")).unwrap();
        line.split_once(':').unwrap().1.trim().to_string()
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if std::env::var("PGHA_KEEP_LAB").as_deref() == Ok("1") {
            if let Some(tmp) = self.tmp.take() {
                eprintln!("lab {} kept in {}", self.name, tmp.keep().join("lab").display());
            }
            return;
        }
        let _ = self.lab(&["down"]);
        remove_leftovers(&self.name);
    }
}

/// The trust bundles of every lab this test binary brought up.
static TRUST: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// A TLS client that trusts the labs' cluster CAs and checks the server's
/// name, as a client with `sslmode=verify-full` does.
fn tls() -> tokio_postgres_rustls::MakeRustlsConnect {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for path in TRUST.lock().unwrap().iter() {
        if let Ok(certs) = CertificateDer::pem_file_iter(path) {
            for c in certs.flatten() {
                let _ = roots.add(c);
            }
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

/// Runs SQL through a real PostgreSQL connection (TLS, verifying the
/// cluster CA; PostgreSQL refuses anything else); rows as text.
pub(crate) fn sql(host: &str, port: u16, password: &str, query: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    sql_within(host, port, password, query, std::time::Duration::from_secs(10))
}

/// [`sql`] with `limit` on the handshake and on the query each.
pub(crate) fn sql_within(
    host: &str,
    port: u16,
    password: &str,
    query: &str,
    limit: std::time::Duration,
) -> Result<Vec<Vec<Option<String>>>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conf = format!(
            "host={host} port={port} user=postgres password={password} dbname=postgres connect_timeout=3 sslmode=require"
        );
        // connect_timeout bounds the TCP connect only: a proxy that accepts
        // and a server that never answers would hold the handshake forever.
        let (client, conn) = tokio::time::timeout(limit, tokio_postgres::connect(&conf, tls()))
            .await
            .map_err(|_| "connecting timed out".to_string())?
            .map_err(|e| format!("{e:?}"))?;
        let handle = tokio::spawn(conn);
        let msgs = tokio::time::timeout(limit, client.simple_query(query))
            .await
            .map_err(|_| "query timed out".to_string())?
            .map_err(|e| format!("{e:?}"))?;
        drop(client);
        // The connection ends once the server hears Terminate; bounded too.
        let _ = tokio::time::timeout(limit, handle).await;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect())
    })
}

/// What the writer thread saw: acknowledged ids and when each was
/// acknowledged, writes refused as read-only, the longest gap between
/// acknowledgements.
pub(crate) struct Written {
    pub acked: Vec<i32>,
    pub at: Vec<std::time::Instant>,
    pub read_only: usize,
    pub gap: std::time::Duration,
    /// When the longest gap ended (wall clock, to match the hosts' journals).
    pub gap_end: std::time::SystemTime,
    /// The last acknowledgement, or the writer's start: the wait for the
    /// first acknowledgement is a gap too.
    last: std::time::Instant,
}

impl Written {
    fn new() -> Written {
        Written {
            acked: Vec::new(),
            at: Vec::new(),
            read_only: 0,
            gap: std::time::Duration::ZERO,
            gap_end: std::time::SystemTime::now(),
            last: std::time::Instant::now(),
        }
    }

    /// When the longest gap ended, in UTC as pgha prints times (its step
    /// lines and the hosts' journals match it).
    pub(crate) fn gap_end_utc(&self) -> String {
        let secs = self.gap_end.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        pgha::ui::utc(secs as i64)
    }

    /// Records an acknowledged write and the gap it ends.
    fn ack(&mut self, id: i32) {
        self.close_gap();
        self.acked.push(id);
        self.at.push(std::time::Instant::now());
        self.last = std::time::Instant::now();
    }

    /// The time since the last acknowledgement, if it is the longest gap yet
    /// (a writer that stops ends with it too).
    fn close_gap(&mut self) {
        if self.last.elapsed() > self.gap {
            self.gap = self.last.elapsed();
            self.gap_end = std::time::SystemTime::now();
        }
    }
}

pub(crate) type Ticks = std::thread::JoinHandle<Written>;

/// Writes through the GLB (`glb`:5000) every 100 ms on a thread until the
/// returned flag is set. Bounded: at most 6000 writes.
pub(crate) fn writer(glb: &str, pw: &str) -> (std::sync::Arc<std::sync::atomic::AtomicBool>, Ticks) {
    sql(glb, 5000, pw, "CREATE TABLE IF NOT EXISTS ticks (id int PRIMARY KEY)").unwrap();
    let start: i32 = sql(glb, 5000, pw, "SELECT coalesce(max(id), 0) + 1 FROM ticks").unwrap()[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flag, pw, glb) = (stop.clone(), pw.to_string(), glb.to_string());
    let handle = std::thread::spawn(move || {
        let mut w = Written::new();
        for id in start..start + 6000 {
            if flag.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            match sql(&glb, 5000, &pw, &format!("INSERT INTO ticks VALUES ({id})")) {
                Ok(_) => w.ack(id),
                // HAProxy sent the client to a replica.
                Err(e) if e.contains("read-only") => w.read_only += 1,
                Err(_) => {}
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        w.close_gap();
        w
    });
    (stop, handle)
}

/// Polls until `f` returns true; panics naming `what` after `limit`.
pub(crate) fn wait_for(what: &str, limit: std::time::Duration, f: impl FnMut() -> bool) {
    wait_for_or(what, limit, f, String::new)
}

/// As `wait_for`; a timeout also says what `why` finds then.
pub(crate) fn wait_for_or(
    what: &str,
    limit: std::time::Duration,
    mut f: impl FnMut() -> bool,
    why: impl FnOnce() -> String,
) {
    let deadline = std::time::Instant::now() + limit;
    while !f() {
        if std::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}\n{}", why());
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// Removes containers and the network a lab named `name` left behind.
fn remove_leftovers(name: &str) {
    let label = format!("label=pgha.lab={name}");
    let ids = Command::new("docker")
        .args(["ps", "-aq", "--filter", &label])
        .output()
        .unwrap();
    let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker").args(["rm", "-f", "-v"]).args(&ids).output();
    }
    let nets = Command::new("docker")
        .args(["network", "ls", "-q", "--filter", &label])
        .output()
        .unwrap();
    for id in String::from_utf8_lossy(&nets.stdout).split_whitespace() {
        let _ = Command::new("docker").args(["network", "rm", id]).output();
    }
}

/// What a session writer saw: [`Written`], and how many times it had to
/// open its connection again.
pub(crate) struct SessionWritten {
    pub written: Written,
    pub reconnects: usize,
}

/// Writes `INSERT INTO table VALUES (id)` every 100 ms on one connection
/// kept open (a pooled client's way), opening another only when it breaks,
/// until the returned flag is set. `conf` is a libpq-style string without
/// the TLS part. Bounded: at most 6000 writes.
pub(crate) fn session_writer(
    conf: &str,
    table: &str,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<SessionWritten>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flag, conf, table) = (
        stop.clone(),
        format!("{conf} connect_timeout=3 sslmode=require"),
        table.to_string(),
    );
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let limit = std::time::Duration::from_secs(10);
            let connect = || async {
                let (client, conn) = tokio::time::timeout(limit, tokio_postgres::connect(&conf, tls()))
                    .await
                    .ok()?
                    .ok()?;
                tokio::spawn(conn);
                Some(client)
            };
            let mut w = Written::new();
            let mut client = connect().await;
            let mut reconnects = 0;
            for id in 1..=6000 {
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    reconnects += 1;
                    client = connect().await;
                }
                if let Some(c) = &client {
                    let q = format!("INSERT INTO {table} VALUES ({id})");
                    match tokio::time::timeout(limit, c.simple_query(&q)).await {
                        Ok(Ok(_)) => w.ack(id),
                        Ok(Err(e)) if format!("{e:?}").contains("read-only") => w.read_only += 1,
                        // A failed statement leaves the session usable; a
                        // timed-out one does not.
                        Ok(Err(_)) => {}
                        Err(_) => client = None,
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            w.close_gap();
            SessionWritten { written: w, reconnects }
        })
    });
    (stop, handle)
}

/// A figure pgbench printed after `label` (`tps = `, `latency average = `).
pub(crate) fn figure(out: &str, label: &str) -> Option<f64> {
    let line = out.lines().find(|l| l.starts_with(label))?;
    line[label.len()..].split_whitespace().next()?.parse().ok()
}

/// pgbench on this machine against `host:port`, as `user` on its own
/// database, TLS verified against the lab's cluster CA (the password in
/// the environment, never in argv): its output, asserted successful.
pub(crate) fn pgbench(lab: &TestLab, host: &str, port: u16, user: &str, password: &str, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("300")
        .arg("pgbench")
        .args(["-h", host, "-p", &port.to_string(), "-U", user, user])
        .args(args)
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", "verify-full")
        .env(
            "PGSSLROOTCERT",
            lab.design().with_file_name("pgha.pki").join("trust.crt"),
        )
        .output()
        .expect("pgbench runs (install postgresql-client)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pgbench {args:?} on :{port} failed: {text}");
    text
}
