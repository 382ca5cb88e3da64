//! A lab of real hosts on one machine: systemd containers with sshd on a
//! private Docker network, grouped into clouds like the examples, plus a GLB
//! host. Everything the lab creates carries the label `pgha.lab=<name>`, and
//! nothing without it is ever changed or removed.

pub(crate) mod docker;
pub(crate) mod image;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

use self::docker::{docker, docker_with_input, exec, label_of};
pub(crate) use self::image::{Os, Variant};
use crate::design::{Host, Ssh};
use crate::remote::Remote;

/// What `lab up` builds.
#[derive(Debug, Clone)]
pub(crate) struct LabSpec {
    pub name: String,
    pub dir: PathBuf,
    pub clouds: usize,
    pub hosts_per_cloud: usize,
    pub variant: Variant,
    pub os: Os,
    /// The first three octets of a /24, e.g. `10.77.0`.
    pub subnet_prefix: String,
    /// A login other than root, with passwordless sudo.
    pub user: Option<String>,
    /// A witness host (a third site) for the site lease.
    pub witness: bool,
    /// A backup repository host in each cloud.
    pub backup: bool,
    /// A monitoring host (Prometheus and Alertmanager) outside the clouds.
    pub monitor: bool,
}

impl LabSpec {
    pub(crate) fn hosts(&self) -> Vec<LabHost> {
        // A host with address `.last`, every role off.
        let host = |name: String, last: usize, cloud: Option<String>| LabHost {
            container: format!("{}-{name}", self.name),
            address: format!("{}.{last}", self.subnet_prefix),
            cloud,
            name,
            witness: false,
            repository: false,
            monitor: false,
        };
        let mut hosts = Vec::new();
        for c in 1..=self.clouds {
            let cloud = || Some(format!("dc{c}"));
            for h in 1..=self.hosts_per_cloud {
                hosts.push(host(format!("dc{c}-pg{h}"), 10 * c + h, cloud()));
            }
            if self.backup {
                // In its cloud's data center: a partition cuts it off with it.
                hosts.push(LabHost {
                    repository: true,
                    ..host(format!("dc{c}-backup"), 10 * c + 9, cloud())
                });
            }
        }
        hosts.push(host("glb1".into(), 5, None));
        if self.witness {
            hosts.push(LabHost {
                witness: true,
                ..host("witness".into(), 4, None)
            });
        }
        if self.monitor {
            // Outside every cloud: a partition cuts a cloud off from it too.
            hosts.push(LabHost {
                monitor: true,
                ..host("monitor".into(), 6, None)
            });
        }
        hosts
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct LabHost {
    pub name: String,
    /// `None` for the GLB host and the witness.
    pub cloud: Option<String>,
    pub address: String,
    pub container: String,
    /// The witness: a site of its own.
    #[serde(default)]
    pub witness: bool,
    /// Its cloud's backup repository, not a database host.
    #[serde(default)]
    pub repository: bool,
    /// The monitoring host (`lab up --monitor`): Prometheus, not the design's.
    #[serde(default)]
    pub monitor: bool,
}

impl LabHost {
    fn is_glb(&self) -> bool {
        self.cloud.is_none() && !self.witness && !self.monitor
    }

    /// The site this host is in: its cloud, `witness`, `monitor` or `glb`.
    fn site(&self) -> &str {
        match (&self.cloud, self.witness, self.monitor) {
            (Some(c), _, _) => c,
            (None, true, _) => "witness",
            (None, false, true) => "monitor",
            (None, false, false) => "glb",
        }
    }
}

/// `lab.json`: what exists, so later commands need no flags.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Lab {
    pub name: String,
    pub network: String,
    pub subnet: String,
    pub image: String,
    pub variant: Variant,
    /// Labs made before Debian 13 was the reference ran Debian 12.
    #[serde(default = "debian12")]
    pub os: Os,
    pub hosts: Vec<LabHost>,
    /// The SSH login when not root (`lab up --user`).
    #[serde(default)]
    pub user: Option<String>,
}

fn debian12() -> Os {
    Os::Debian12
}

pub(crate) const STATE_FILE: &str = "lab.json";
pub(crate) const DESIGN_FILE: &str = "pgha.yaml";

impl Lab {
    pub(crate) fn load(dir: &Path) -> anyhow::Result<Lab> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no lab in {} (missing {STATE_FILE}): run `pgha lab up` first",
                dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))
    }

    /// Hosts named by `target`: a host name, a cloud name, or `glb`.
    pub(crate) fn select(&self, target: &str) -> anyhow::Result<Vec<&LabHost>> {
        let hosts: Vec<&LabHost> = self
            .hosts
            .iter()
            .filter(|h| h.name == target || h.site() == target)
            .collect();
        if hosts.is_empty() {
            let names: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
            bail!(crate::error::Usage(format!(
                "no lab host or cloud named `{target}` (hosts: {})",
                names.join(", ")
            )));
        }
        Ok(hosts)
    }

    pub(crate) fn ssh(&self, dir: &Path) -> Ssh {
        Ssh {
            user: self.user.clone().unwrap_or_else(|| "root".into()),
            port: 22,
            identity_file: Some(dir.join("id_ed25519")),
            known_hosts: Some(dir.join("known_hosts")),
        }
    }
}

fn run_args<'a>(network: &'a str, image: &'a str, h: &'a LabHost, label: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "-d",
        "--name",
        &h.container,
        "--hostname",
        &h.name,
        "--network",
        network,
        "--ip",
        &h.address,
        "--label",
        label,
    ];
    // LAB.md: systemd as PID 1 without --privileged, which this sandbox refuses.
    args.extend([
        "--cap-add",
        "SYS_ADMIN",
        "--cap-add",
        "NET_ADMIN",
        // As root on a real host: the site agent and fence raise their priority.
        "--cap-add",
        "SYS_NICE",
        "--security-opt",
        "seccomp=unconfined",
        "--cgroupns=host",
        "-v",
        "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/run/lock",
        "--stop-signal",
        "SIGRTMIN+3",
    ]);
    args.extend([image, "/lib/systemd/systemd"]);
    args
}

/// Brings the lab up, reusing what exists and repairing what is missing.
pub(crate) async fn up(spec: &LabSpec, say: &dyn Fn(&str)) -> anyhow::Result<Lab> {
    docker::require_engine().await?;
    std::fs::create_dir_all(&spec.dir).with_context(|| format!("cannot create {}", spec.dir.display()))?;
    let dir = spec.dir.canonicalize()?;
    let key = dir.join("id_ed25519");
    if !key.exists() {
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "pgha-lab", "-f"])
            .arg(&key)
            .status()
            .context("cannot run ssh-keygen (package openssh-client)")?;
        if !st.success() {
            bail!("ssh-keygen failed");
        }
    }
    let pubkey = std::fs::read(dir.join("id_ed25519.pub"))?;
    let image = image::ensure(spec.os, spec.variant, say).await?;

    let label = format!("pgha.lab={}", spec.name);
    let network = spec.name.clone();
    let subnet = format!("{}.0/24", spec.subnet_prefix);
    match label_of("network", &network).await? {
        Some(l) if l == spec.name => {}
        Some(_) => bail!(
            "a Docker network named `{network}` exists and is not this lab's: remove or rename it, or pick another lab name with --name"
        ),
        None => {
            docker(&["network", "create", "--subnet", &subnet, "--label", &label, &network])
                .await
                .map_err(|e| {
                    anyhow!("{e}\n  hint: subnet {subnet} may collide with another network; pick another with --subnet")
                })?;
        }
    }

    let hosts = spec.hosts();
    // Refuse before touching anything if a name belongs to someone else.
    for h in &hosts {
        if let Some(l) = label_of("container", &h.container).await? {
            if l != spec.name {
                bail!(
                    "a container named `{}` exists and is not this lab's: remove or rename it",
                    h.container
                );
            }
        }
    }
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for h in hosts.clone() {
        let (label, network, image, pubkey) = (label.clone(), network.clone(), image.clone(), pubkey.clone());
        let user = spec.user.clone();
        set.spawn(async move {
            let r = start_host(&network, &image, &h, &label, &pubkey, user.as_deref()).await;
            (h.name.clone(), r)
        });
    }
    let mut keys = Vec::new();
    while let Some(res) = set.join_next().await {
        let (name, r) = res.expect("host task does not panic");
        let key = r.with_context(|| format!("lab host {name}"))?;
        keys.push((name, key));
    }
    // known_hosts with each host's real key, in host order.
    let mut known = String::new();
    for h in &hosts {
        let key = &keys.iter().find(|(n, _)| *n == h.name).expect("every host reported").1;
        known.push_str(&format!("{} {}\n", h.address, key.trim()));
    }
    std::fs::write(dir.join("known_hosts"), known)?;

    let lab = Lab {
        name: spec.name.clone(),
        network,
        subnet,
        image,
        variant: spec.variant,
        os: spec.os,
        hosts,
        user: spec.user.clone(),
    };
    // Prove it the way pgha will use it: SSH with strict host key checking.
    let ssh = lab.ssh(&dir);
    // Seen on a loaded 2-core machine: a new host's sshd reset every
    // connection for a minute after boot. The wait is bounded, and long
    // enough for that.
    wait_ssh(&lab.hosts.iter().collect::<Vec<_>>(), &ssh, Duration::from_secs(180)).await?;
    write_files(&lab, &dir)?;
    say(&format!(
        "{} hosts up and answering SSH in {:.1} s",
        lab.hosts.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(lab)
}

/// Starts (or creates) one host, waits for systemd, installs the lab key;
/// returns the host's SSH public key.
async fn start_host(
    network: &str,
    image: &str,
    h: &LabHost,
    label: &str,
    pubkey: &[u8],
    user: Option<&str>,
) -> anyhow::Result<String> {
    let running = docker(&["inspect", "-f", "{{.State.Running}} {{.Config.Image}}", &h.container]).await;
    match running.as_deref().map(str::trim) {
        Ok(s) if s.ends_with(image) && s.starts_with("true") => {}
        Ok(s) if s.ends_with(image) => {
            docker(&["start", &h.container]).await?;
        }
        Ok(_) => {
            // Built from an older image: replace it.
            docker(&["rm", "-f", &h.container]).await?;
            docker(&run_args(network, image, h, label)).await?;
        }
        Err(_) => {
            docker(&run_args(network, image, h, label)).await?;
        }
    }
    ensure_connected(network, h).await?;
    wait_systemd(&h.container, Duration::from_secs(90)).await?;
    exec(&h.container, "mkdir -p /root/.ssh && chmod 700 /root/.ssh").await?;
    docker_with_input(
        &[
            "exec",
            "-i",
            &h.container,
            "sh",
            "-c",
            "cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys",
        ],
        Some(pubkey),
    )
    .await?;
    if let Some(u) = user {
        add_sudo_user(&h.container, u, pubkey).await?;
    }
    // ssh.service makes the host keys at its first start (see image.rs).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match exec(&h.container, "cat /etc/ssh/ssh_host_ed25519_key.pub").await {
            Ok(k) if !k.trim().is_empty() => {
                let mut parts = k.split_whitespace();
                return Ok(format!(
                    "{} {}",
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default()
                ));
            }
            _ if Instant::now() > deadline => bail!("{}: sshd never created its host key", h.name),
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// The script that makes `user` (validated: a POSIX name) a login with the
/// key in `$PGHA_KEY`'s file and, when `sudo`, passwordless sudo. Idempotent.
pub(crate) fn add_user_script(user: &str, sudo: bool) -> String {
    let u = crate::shell::quote(user);
    let grant = if sudo {
        format!(
            "echo {} > /etc/sudoers.d/pgha-lab-{user} && chmod 440 /etc/sudoers.d/pgha-lab-{user}\n",
            crate::shell::quote(&format!("{user} ALL=(ALL:ALL) NOPASSWD: ALL"))
        )
    } else {
        String::new()
    };
    format!(
        "set -e\nid {u} >/dev/null 2>&1 || useradd -m -s /bin/sh {u}\nh=$(getent passwd {u} | cut -d: -f6)\n\
install -d -m 700 -o {u} -g {u} \"$h/.ssh\"\ncat > \"$h/.ssh/authorized_keys\"\n\
chown {u}:{u} \"$h/.ssh/authorized_keys\" && chmod 600 \"$h/.ssh/authorized_keys\"\n{grant}"
    )
}

async fn add_sudo_user(container: &str, user: &str, pubkey: &[u8]) -> anyhow::Result<()> {
    let script = add_user_script(user, true);
    docker_with_input(&["exec", "-i", container, "sh", "-c", &script], Some(pubkey))
        .await
        .map(|_| ())
}

async fn ensure_connected(network: &str, h: &LabHost) -> anyhow::Result<()> {
    let nets = docker(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        &h.container,
    ])
    .await?;
    if !nets.split_whitespace().any(|n| n == network) {
        docker(&["network", "connect", "--ip", &h.address, network, &h.container]).await?;
    }
    Ok(())
}

async fn wait_systemd(container: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        // is-system-running exits non-zero while starting or degraded.
        let out = tokio::process::Command::new("docker")
            .args(["exec", container, "systemctl", "is-system-running"])
            .output()
            .await?;
        last = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if last == "running" || last == "degraded" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!(
        "{container}: systemd did not reach `running` within {} s (last: {last:?})",
        limit.as_secs()
    )
}

/// Polls until every host answers over SSH with strict host key checking.
pub(crate) async fn wait_ssh(hosts: &[&LabHost], ssh: &Ssh, limit: Duration) -> anyhow::Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for h in hosts {
        let host = Host {
            name: h.name.clone(),
            address: h.address.clone(),
            ssh: ssh.clone(),
        };
        set.spawn(async move {
            let deadline = Instant::now() + limit;
            loop {
                let attempt = async {
                    let r = Remote::connect(&host, Duration::from_secs(5)).await?;
                    let out = r.check("systemctl", "systemctl is-system-running || true").await;
                    r.close().await;
                    anyhow::Ok(out?)
                };
                match attempt.await {
                    Ok(state) if matches!(state.trim(), "running" | "degraded") => return Ok(()),
                    Ok(state) if Instant::now() > deadline => {
                        bail!("{}: systemd is {:?}", host.name, state.trim())
                    }
                    Err(e) if Instant::now() > deadline => return Err(e),
                    _ => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("ssh wait task does not panic")?;
    }
    Ok(())
}

/// The inventory, design and state a deploy needs, inside the lab directory.
fn write_files(lab: &Lab, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("inventories"))?;
    let mut clouds: Vec<&str> = lab.hosts.iter().filter_map(|h| h.cloud.as_deref()).collect();
    clouds.dedup();
    for cloud in &clouds {
        let mut inv = format!("# Computes of lab cloud {cloud}, written by `pgha lab up`.\nhosts:\n");
        for h in lab
            .hosts
            .iter()
            .filter(|h| h.cloud.as_deref() == Some(cloud) && !h.repository)
        {
            inv.push_str(&format!("  - name: {}\n    address: {}\n", h.name, h.address));
        }
        std::fs::write(dir.join("inventories").join(format!("{cloud}.yaml")), inv)?;
    }
    let glb = lab.hosts.iter().find(|h| h.is_glb()).expect("the lab has a GLB host");
    let design_path = dir.join(DESIGN_FILE);
    // Keep a design the user (or a cloud flip) edited: only write it once.
    if !design_path.exists() {
        let witness = lab.hosts.iter().find(|h| h.witness);
        std::fs::write(&design_path, lab_design(lab, &clouds, glb, witness))?;
    }
    std::fs::write(dir.join(STATE_FILE), serde_json::to_string_pretty(lab)?)?;
    Ok(())
}

fn lab_design(lab: &Lab, clouds: &[&str], glb: &LabHost, witness: Option<&LabHost>) -> String {
    let mut d = format!(
        "# The two-clouds example pointed at the lab `{}` (written by `pgha lab up`).\n\
platform:\n  name: pgha-lab\n  availability: redundant\n  replication: asynchronous\n  \
# The lab's own network may log in directly (TLS and passwords still required).\n  \
client_networks: [{}]\n\n\
ssh:\n  user: {}\n  identity_file: id_ed25519\n  known_hosts: known_hosts\n\nclouds:\n",
        lab.name,
        lab.subnet,
        lab.user.as_deref().unwrap_or("root")
    );
    if lab.os == Os::Debian13Pg15 {
        // Its hosts' release ships 17: the lab runs the old major, named.
        d = d.replacen(
            "  replication: asynchronous\n",
            &format!(
                "  replication: asynchronous\n  # The old major, beside 17: `pgha upgrade postgres 17` moves it.\n  postgres_version: {}\n",
                lab.os.postgres()
            ),
            1,
        );
    }
    for (i, c) in clouds.iter().enumerate() {
        let status = if i == 0 { "primary" } else { "secondary" };
        let n = lab
            .hosts
            .iter()
            .filter(|h| h.cloud.as_deref() == Some(c) && !h.repository)
            .count();
        d.push_str(&format!(
            "  - name: {c}\n    status: {status}\n    scaling: {n}\n    inventory: inventories/{c}.yaml\n"
        ));
    }
    // Faster failover than the defaults: Patroni's minimum ttl, a short loop,
    // still within loop_wait + 2*retry_timeout <= ttl.
    d.push_str(
        "\ncomponents:\n  governor:\n    ttl: 20\n    loop_wait: 2\n    retry_timeout: 4\n  haproxy:\n    port: 5000\n\n",
    );
    d.push_str(&format!(
        "glb:\n  fqdn: {}\n  port: 5000\n  kind: haproxy\n  hosts:\n    - name: {}\n      address: {}\n",
        glb.address, glb.name, glb.address
    ));
    if let Some(w) = witness {
        d.push_str(&format!(
            "\n# A third site: with it, a cloud cut off from the others fences its own master.\n\
witness:\n  name: {}\n  address: {}\n\n\
site:\n  # A shorter lease than the default 30 s, for the lab: fence after 7 s.\n  ttl: 20\n  auto_failover: false\n",
            w.name, w.address
        ));
    }
    let repositories: Vec<&LabHost> = lab.hosts.iter().filter(|h| h.repository).collect();
    if !repositories.is_empty() {
        d.push_str(
            "\n# Backups and the WAL archive (pgBackRest): a repository host in each cloud.\nbackup:\n  repositories:\n",
        );
        for r in repositories {
            d.push_str(&format!(
                "    - cloud: {}\n      name: {}\n      address: {}\n",
                r.site(),
                r.name,
                r.address
            ));
        }
        d.push_str("  retention_full: 2\n  schedule:\n    full: \"Sun *-*-* 01:00:00\"\n    diff: \"Mon..Sat *-*-* 01:00:00\"\n");
    }
    d
}

/// One row of `lab status`.
#[derive(Debug, Serialize)]
pub(crate) struct HostState {
    pub cloud: String,
    pub name: String,
    pub address: String,
    pub container: String,
    /// running | stopped | missing
    pub state: String,
    /// connected | cut
    pub network: String,
}

pub(crate) async fn status(lab: &Lab) -> anyhow::Result<Vec<HostState>> {
    let mut rows = Vec::new();
    for h in &lab.hosts {
        let inspect = docker(&[
            "inspect",
            "-f",
            "{{.State.Running}}|{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
            &h.container,
        ])
        .await;
        let (state, network) = match inspect {
            Ok(s) => {
                let (running, nets) = s.trim().split_once('|').unwrap_or((s.trim(), ""));
                let state = if running == "true" { "running" } else { "stopped" };
                let connected = nets.split_whitespace().any(|n| n == lab.network);
                (state, if connected { "connected" } else { "cut" })
            }
            Err(_) => ("missing", "-"),
        };
        rows.push(HostState {
            cloud: h.site().to_string(),
            name: h.name.clone(),
            address: h.address.clone(),
            container: h.container.clone(),
            state: state.into(),
            network: network.into(),
        });
    }
    Ok(rows)
}

/// Removes the lab's containers, its network and its directory; nothing else.
pub(crate) async fn down(dir: &Path, say: &dyn Fn(&str)) -> anyhow::Result<()> {
    docker::require_engine().await?;
    let lab = Lab::load(dir)?;
    for h in &lab.hosts {
        match label_of("container", &h.container).await? {
            Some(l) if l == lab.name => {
                docker(&["rm", "-f", "-v", &h.container]).await?;
            }
            Some(_) => say(&format!("left {}: it is not this lab's", h.container)),
            None => {}
        }
    }
    match label_of("network", &lab.network).await? {
        Some(l) if l == lab.name => {
            docker(&["network", "rm", &lab.network]).await?;
        }
        Some(_) => say(&format!("left network {}: it is not this lab's", lab.network)),
        None => {}
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    say(&format!(
        "removed lab {} ({} hosts, network, {})",
        lab.name,
        lab.hosts.len(),
        dir.display()
    ));
    Ok(())
}

/// Where the monitoring host keeps `pgha monitoring`'s files.
pub(crate) const MONITOR_DIR: &str = "/etc/pgha/prometheus";

/// What the lab adds to the generated `prometheus.yml`: its own Alertmanager.
const ALERTING: &str = "\n# Added by `pgha lab monitor`: the monitoring host's own Alertmanager.\n\
alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:9093']\n";

/// Checks the files with promtool, points Debian's Prometheus (loopback
/// 9090) and Alertmanager (loopback 9093, no cluster listener on 9094) at
/// them, restarts both and waits until each answers ready.
pub(crate) fn monitor_start_script() -> String {
    let config = format!("{MONITOR_DIR}/prometheus.yml");
    let prometheus = format!("ARGS=\"--config.file={config} --web.listen-address=127.0.0.1:9090\"\n");
    let alertmanager = "ARGS=\"--cluster.listen-address= --web.listen-address=127.0.0.1:9093\"\n";
    format!(
        "set -e\n\
         promtool check config {config} >/dev/null 2>&1 || {{ promtool check config {config} >&2; exit 1; }}\n\
         printf '%s' {} > /etc/default/prometheus\n\
         printf '%s' {} > /etc/default/prometheus-alertmanager\n\
         systemctl enable --quiet prometheus prometheus-alertmanager\n\
         systemctl restart prometheus prometheus-alertmanager\n\
         end=$(( $(date +%s) + 60 ))\n\
         for port in 9090 9093; do\n\
         \x20 until python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/-/ready', timeout=2)\" 2>/dev/null; do\n\
         \x20   [ \"$(date +%s)\" -lt \"$end\" ] || {{ echo \"nothing ready on port $port within 60 s\" >&2; journalctl -n 10 --no-pager -u prometheus -u prometheus-alertmanager >&2; exit 1; }}\n\
         \x20   sleep 0.5\n\
         \x20 done\n\
         done\n",
        crate::shell::quote(&prometheus),
        crate::shell::quote(alertmanager),
    )
}

/// `lab monitor`: installs `files` (`pgha monitoring`'s, for the lab's
/// design) under [`MONITOR_DIR`] on the lab's monitoring host, the client
/// key readable by Prometheus alone, and starts Prometheus with them.
pub(crate) async fn monitor(
    dir: &Path,
    files: &[crate::ops::monitoring::Generated],
    say: &dyn Fn(&str),
) -> anyhow::Result<()> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("no lab at {}", dir.display()))?;
    let lab = Lab::load(&dir)?;
    let Some(h) = lab.hosts.iter().find(|h| h.monitor) else {
        bail!(crate::error::Usage(
            "this lab has no monitoring host: make the lab with `pgha lab up --monitor`".to_string()
        ));
    };
    let host = Host {
        name: h.name.clone(),
        address: h.address.clone(),
        ssh: lab.ssh(&dir),
    };
    let remote = Remote::connect(&host, Duration::from_secs(10)).await?;
    let result = async {
        for f in files {
            let path = format!("{MONITOR_DIR}/{}", f.path.display());
            let mut content = f.content.clone();
            if f.path == Path::new("prometheus.yml") {
                content.push_str(ALERTING);
            }
            let owner = if f.mode & 0o077 == 0 { "prometheus" } else { "root" };
            let script = crate::remote::install_path_script(&path, owner, owner, f.mode, None);
            let out = remote
                .run_within(&script, Some(content.as_bytes()), Duration::from_secs(30))
                .await?;
            if !out.success() {
                bail!(
                    "{}: writing {path} failed: {}",
                    h.name,
                    crate::shell::last_lines(&out.stderr, 5)
                );
            }
        }
        remote
            .check_within("starting Prometheus", &monitor_start_script(), Duration::from_secs(150))
            .await
    }
    .await;
    remote.close().await;
    result?;
    say(&format!(
        "{}: Prometheus (127.0.0.1:9090) and Alertmanager (127.0.0.1:9093) run with the {} files under {MONITOR_DIR}",
        h.name,
        files.len()
    ));
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Power off: the container is killed.
    Kill,
    /// Boot again, disks intact; waits until SSH answers.
    Start,
    /// Disconnect from the lab network.
    Cut,
    /// Reconnect with the same address.
    Heal,
}

/// The lines that cut (`cut`) or restore the links from one host to
/// `addresses`: blackhole routes, so every other link of the host stays.
pub(crate) fn partition_script(addresses: &[String], cut: bool) -> String {
    addresses
        .iter()
        .map(|a| {
            let route = crate::shell::quote(&format!("{a}/32"));
            if cut {
                format!("ip route replace blackhole {route}\n")
            } else {
                format!("ip route del blackhole {route} 2>/dev/null || true\n")
            }
        })
        .collect()
}

/// Partitions `cloud` from every other lab host (`Some(operator)`: and,
/// with `operator`, from this machine too), or ends its partition (`None`).
/// Its own hosts keep reaching each other: the cut is between data centers.
pub(crate) async fn partition(dir: &Path, cloud: &str, cut: Option<bool>, say: &dyn Fn(&str)) -> anyhow::Result<()> {
    docker::require_engine().await?;
    let lab = Lab::load(dir)?;
    let (inside, outside): (Vec<&LabHost>, Vec<&LabHost>) =
        lab.hosts.iter().partition(|h| h.site() == cloud && !h.is_glb());
    if inside.is_empty() {
        bail!(crate::error::Usage(format!(
            "the lab has no cloud (or witness) named `{cloud}`"
        )));
    }
    // This machine, as the hosts see it: their default route (Docker's
    // network inspect leaves the gateway out when only a subnet was given).
    let gateway = exec(&inside[0].container, "ip route show default | awk '{print $3; exit}'")
        .await?
        .trim()
        .to_string();
    if cut == Some(true) && gateway.parse::<std::net::Ipv4Addr>().is_err() {
        bail!("{}: no default route to cut this machine off with", inside[0].name);
    }
    let addresses = |hosts: &[&LabHost]| hosts.iter().map(|h| h.address.clone()).collect::<Vec<_>>();
    let mut away = addresses(&outside);
    // Healing always lifts the operator's cut as well.
    if cut != Some(false) && !gateway.is_empty() {
        away.push(gateway);
    }
    let is_cut = cut.is_some();
    let jobs = inside.iter().map(|h| (h, partition_script(&away, is_cut))).chain(
        outside
            .iter()
            .map(|h| (h, partition_script(&addresses(&inside), is_cut))),
    );
    for (h, script) in jobs {
        // A powered-off host has no routes to change: they went with its
        // network namespace, and it starts again with none.
        if !running(&h.container).await {
            say(&format!("{} is not running: its routes left as they are", h.name));
            continue;
        }
        exec(&h.container, &script)
            .await
            .with_context(|| format!("{}: changing its routes", h.name))?;
    }
    say(&match cut {
        Some(op) => format!(
            "partitioned {cloud} from the other lab hosts{}",
            if op { " and from this machine" } else { "" }
        ),
        None => format!("ended the partition of {cloud}"),
    });
    Ok(())
}

/// Whether the container runs (false also when Docker cannot tell).
async fn running(container: &str) -> bool {
    docker(&["inspect", "-f", "{{.State.Running}}", container])
        .await
        .is_ok_and(|s| s.trim() == "true")
}

pub(crate) async fn fault(dir: &Path, target: &str, fault: Fault, say: &dyn Fn(&str)) -> anyhow::Result<()> {
    docker::require_engine().await?;
    let lab = Lab::load(dir)?;
    let hosts = lab.select(target)?;
    for h in &hosts {
        match fault {
            Fault::Kill => {
                docker(&["kill", &h.container]).await?;
            }
            Fault::Start => {
                docker(&["start", &h.container]).await?;
            }
            Fault::Cut => {
                docker(&["network", "disconnect", "-f", &lab.network, &h.container]).await?;
            }
            Fault::Heal => ensure_connected(&lab.network, h).await?,
        }
        say(&format!("{:?}: {} ({})", fault, h.name, h.address).to_lowercase());
    }
    if fault == Fault::Start {
        wait_ssh(&hosts, &lab.ssh(&dir.canonicalize()?), Duration::from_secs(90)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_scripts_are_exact() {
        let a = ["10.77.0.21".to_string(), "10.77.0.1".to_string()];
        assert_eq!(
            partition_script(&a, true),
            "ip route replace blackhole 10.77.0.21/32\nip route replace blackhole 10.77.0.1/32\n"
        );
        assert_eq!(
            partition_script(&a[..1], false),
            "ip route del blackhole 10.77.0.21/32 2>/dev/null || true\n"
        );
    }

    #[test]
    fn lab_users_get_a_key_and_sudo_only_when_asked() {
        let s = add_user_script("pgha-op", true);
        assert!(s.contains("useradd -m -s /bin/sh pgha-op"), "{s}");
        assert!(
            s.contains("'pgha-op ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/pgha-lab-pgha-op"),
            "{s}"
        );
        assert!(!add_user_script("nosudo", false).contains("sudoers"));
    }

    #[test]
    fn the_monitoring_host_is_outside_every_cloud_and_not_the_glb() {
        let spec = LabSpec {
            name: "l".into(),
            dir: PathBuf::from("lab"),
            clouds: 2,
            hosts_per_cloud: 3,
            variant: Variant::Baked,
            os: Os::Debian13,
            subnet_prefix: "10.77.0".into(),
            user: None,
            witness: true,
            backup: true,
            monitor: true,
        };
        let hosts = spec.hosts();
        let m: Vec<&LabHost> = hosts.iter().filter(|h| h.monitor).collect();
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].address.as_str(), m[0].site()), ("10.77.0.6", "monitor"));
        assert_eq!(m[0].container, "l-monitor");
        let glbs: Vec<&str> = hosts.iter().filter(|h| h.is_glb()).map(|h| h.name.as_str()).collect();
        assert_eq!(glbs, ["glb1"]);
        let none = LabSpec { monitor: false, ..spec };
        assert!(none.hosts().iter().all(|h| !h.monitor));
        // A lab.json written before the monitoring host reads as without one.
        let old: LabHost =
            serde_json::from_str(r#"{"name":"glb1","cloud":null,"address":"10.77.0.5","container":"l-glb1"}"#).unwrap();
        assert!(old.is_glb() && !old.monitor);
    }

    #[test]
    fn prometheus_starts_on_loopback_with_checked_files() {
        let s = monitor_start_script();
        let check = s
            .find("promtool check config /etc/pgha/prometheus/prometheus.yml")
            .unwrap();
        assert!(check < s.find("systemctl restart").unwrap(), "{s}");
        assert!(
            s.contains("'ARGS=\"--config.file=/etc/pgha/prometheus/prometheus.yml --web.listen-address=127.0.0.1:9090\"\n' > /etc/default/prometheus\n"),
            "{s}"
        );
        // No Alertmanager cluster listener (9094 on every address by default).
        assert!(
            s.contains("--cluster.listen-address= --web.listen-address=127.0.0.1:9093"),
            "{s}"
        );
        assert!(ALERTING.contains("targets: ['127.0.0.1:9093']"));
    }
}
