//! Scripted hosts for runner tests: a small model of a deployed cluster
//! (each cloud's Patroni roles, WAL positions, installed and active HAProxy
//! configs, the etcd lock) that answers the exact scripts pgha's builders
//! write. A script the model does not know fails, so a runner that starts
//! sending something new is noticed here.
//!
//! The model checks the one invariant everything else serves after every
//! call: never two writable masters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use crate::components::systemd::{self, Verb};
use crate::components::{self, etcd, haproxy, packages, patroni, site, FileSpec};
use crate::design::{Cloud, Design, Replication};
use crate::ops::wal;
use crate::remote::{install_script, Output, Remote, Transport};
use crate::render::Renderer;
use crate::secrets::Secrets;

/// What a script did, as tests read the order of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    pub host: String,
    pub what: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashWhen {
    /// The process dies before the command reaches the host.
    Before,
    /// The host applies the command; the process dies before it hears back.
    After,
}

#[derive(Debug, Clone)]
pub(crate) struct SimCloud {
    /// The addresses this cloud follows as a standby cluster; `None`: it may
    /// elect a writable master.
    pub standby_of: Option<String>,
    /// The member holding the cloud's leader key.
    pub leader: Option<String>,
    /// Maintenance mode (`patronictl pause`).
    pub paused: bool,
    /// It streams from one host's PostgreSQL directly, past HAProxy.
    pub direct: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct SimHost {
    pub cloud: Option<String>,
    /// Patroni and PostgreSQL run (a stopped host still answers SSH).
    pub up: bool,
    pub lsn: u64,
    pub timeline: u32,
    /// Installed files by path.
    pub files: BTreeMap<String, String>,
    /// The HAProxy config the running HAProxy loaded.
    pub active_haproxy: String,
    /// Commit times pg_waldump finds past any point asked about.
    pub commits: Vec<String>,
    /// The data directory exists.
    pub data: bool,
    /// Commits that were in a data directory kept aside, and ones destroyed.
    pub kept_aside: Vec<String>,
    pub lost: Vec<String>,
    /// The timeline's `.history` file, and what hashing its WAL records gives.
    pub history: String,
    pub records: String,
    /// pg_waldump cannot read its WAL (a segment missing or unreadable).
    pub wal_unreadable: bool,
    /// Every call to it hangs (its storage or network stopped answering).
    pub hangs: bool,
    /// The lag Patroni's view reports for it, one reading each (a member
    /// key a loop old), then none.
    pub lag_reports: Vec<u64>,
    /// `pgha failover`'s hold is on it; writing one fails there.
    pub held: bool,
    pub refuses_hold: bool,
    pub etcd_healthy: bool,
    /// `ID VERSION_ID` of /etc/os-release.
    pub os: String,
    /// PostgreSQL majors the apt sources ship, and the one Patroni is
    /// configured for; `None`: the design's (installed).
    pub apt_ships: Option<Vec<u32>>,
    /// Its WAL receiver does not stream (say, a proxy session that never answers).
    pub stuck_receiver: bool,
    pub patroni_major: Option<u32>,
    /// `owner:group:mode` of each installed file.
    pub meta: BTreeMap<String, String>,
    /// The access digests its cloud's etcd member and its site member hold.
    pub cloud_access: Option<String>,
    pub site_access: Option<String>,
    /// The v2 access digest of its cloud's etcd (the VIP's).
    pub vip_access: Option<String>,
    /// HAProxy's statistics page does not answer (in the facts, or read).
    pub stats_silent: bool,
    /// Patroni started with the etcd gateway certificate.
    pub patroni_gateway: bool,
    /// Its site agent never reaches the site: its fences stay unarmed.
    pub site_blind: bool,
    /// pgBackRest fails every backup it runs here (a repository host).
    pub backup_fails: bool,
    /// A restored PostgreSQL runs without Patroni (it promoted itself at
    /// the target: writable); stopping Patroni leaves it running.
    pub plain: bool,
    /// A master just demoted into a standby cluster, which Patroni stops at
    /// once and starts again in recovery: for this many more calls to any
    /// host a read of its WAL position finds it stopped, and nothing streams
    /// from it.
    pub restarting: u32,
}

impl SimHost {
    /// A running host with `files` installed and its HAProxy config loaded.
    fn new(cloud: Option<String>, files: &[crate::render::RenderedFile], lsn: u64, timeline: u32) -> SimHost {
        let mut host = SimHost {
            cloud,
            up: true,
            lsn,
            timeline,
            files: BTreeMap::new(),
            active_haproxy: String::new(),
            commits: Vec::new(),
            data: true,
            kept_aside: Vec::new(),
            lost: Vec::new(),
            history: String::new(),
            records: "same".into(),
            wal_unreadable: false,
            held: false,
            refuses_hold: false,
            hangs: false,
            lag_reports: Vec::new(),
            etcd_healthy: true,
            os: "debian 13".into(),
            apt_ships: None,
            stuck_receiver: false,
            restarting: 0,
            patroni_major: None,
            meta: BTreeMap::new(),
            cloud_access: None,
            site_access: None,
            vip_access: None,
            stats_silent: false,
            patroni_gateway: true,
            site_blind: false,
            backup_fails: false,
            plain: false,
        };
        for f in files {
            host.files.insert(f.spec.path.to_string(), f.content.clone());
            host.meta.insert(f.spec.path.to_string(), spec_meta(&f.spec));
        }
        // The GLB's config has the same path as a database host's HAProxy config.
        host.active_haproxy = host.files[haproxy::CONFIG.path].clone();
        host
    }
}

fn spec_meta(spec: &FileSpec) -> String {
    crate::deploy::facts::meta(spec.owner, spec.group, spec.mode)
}

/// The whole fake fleet.
#[derive(Clone)]
pub(crate) struct World {
    design: Design,
    pub clouds: BTreeMap<String, SimCloud>,
    pub hosts: BTreeMap<String, SimHost>,
    pub log: Vec<Call>,
    /// The etcd lock key's value (base64 of the holder) and lease, if held.
    pub lock: Option<(String, String)>,
    /// Fail every call from this one on (0-based), as a process killed there.
    pub crash: Option<(usize, CrashWhen)>,
    pub calls: usize,
    /// The most writable masters seen at once, over the whole run.
    pub most_masters: usize,
    /// Hosts that held commits on a promoted leader's timeline past it when
    /// it was promoted: what that promotion lost.
    pub promoted_behind: Vec<String>,
    /// pgha's journal: each `put` line, in order.
    pub journal: Vec<String>,
    next_lease: u64,
    /// The cloud holding the site lease (designs with three clouds or more).
    pub site_holder: Option<String>,
    /// etcd no longer renews pgha's cluster lock (its lease lapsed).
    pub lock_renewals_fail: bool,
    /// The cloud pgha marked the site lease as handed over to.
    pub handover: Option<String>,
    /// A cloud its site agent fenced: the agent resumes it (promotes it
    /// again) as soon as it is a standby cluster holding the lease, unless
    /// pre_promote refuses (the lease handed over).
    pub fenced_agent: Option<String>,
    /// How many site members (the last ones) do not answer. Once they are
    /// a majority, every write and lease read fails as etcd's does.
    pub site_down: usize,
    /// How many takes of the site lease lose a race (the lease changed
    /// between its read and the transaction: `moved`).
    pub lease_races: usize,
    /// The site's replication record (issue 29), as its JSON, and its mod
    /// revision (moves with each write).
    pub site_sync: Option<String>,
    pub site_sync_rev: u64,
    /// The old primary cloud's agent rewrites the record to this after
    /// that many more reads of the lease (the reads it is seen by, then the
    /// change): a flip's take must judge the record it stands on.
    pub sync_rewrite: Option<(usize, String)>,
    /// A cloud whose hosts stop replaying WAL.
    pub replay_stalled: Option<String>,
    /// The next pause or resume commands (this many) change the cluster,
    /// then fail, as a `patronictl` whose REST reply was lost.
    pub pause_replies_lost: usize,
    /// A cloud whose route (HAProxy) brings it no WAL: it gets WAL only
    /// while it streams from a host directly.
    pub route_lost: Option<String>,
}

impl World {
    /// A converged cluster: every cloud as the design says, its first host
    /// the leader, HAProxy and the GLB routing to the primary cloud.
    pub(crate) fn converged(design: &Design, secrets: &Secrets) -> Arc<Mutex<World>> {
        // The PKI next to the design: deploy then finds the same certificates.
        let (pki, _) = crate::pki::ensure(design, time::OffsetDateTime::now_utc(), true).expect("pki");
        let renderer = Renderer::for_design(design).expect("templates").with_pki(Some(pki));
        let primary = design.primary_clouds().next();
        let mut clouds = BTreeMap::new();
        let mut hosts = BTreeMap::new();
        for c in &design.clouds {
            clouds.insert(
                c.name.clone(),
                SimCloud {
                    standby_of: (!c.is_primary()).then(|| primary.map_or(String::new(), |p| p.name.clone())),
                    leader: c.hosts.first().map(|h| h.name.clone()),
                    paused: false,
                    direct: false,
                },
            );
            let site_access = design
                .site
                .as_ref()
                .map(|_| site::access(design).digest(&secrets.etcd_agent_password));
            for h in &c.hosts {
                let files = renderer.db_host(design, c, h, None, secrets).expect("render");
                let mut host = SimHost::new(Some(c.name.clone()), &files, 0x5000060, 1);
                host.cloud_access = Some(etcd::cloud_access(design, c).digest(&secrets.etcd_patroni_password));
                host.vip_access = c.vip.as_ref().map(|_| components::vip::access_digest(c));
                if design.is_site_member(&h.name) {
                    host.site_access.clone_from(&site_access);
                }
                hosts.insert(h.name.clone(), host);
            }
        }
        for h in design.glb_hosts() {
            let files = renderer.glb_host(design, h, secrets).expect("render");
            hosts.insert(h.name.clone(), SimHost::new(None, &files, 0, 0));
        }
        let w = World {
            design: design.clone(),
            clouds,
            hosts,
            log: Vec::new(),
            lock: None,
            crash: None,
            calls: 0,
            most_masters: 0,
            promoted_behind: Vec::new(),
            journal: Vec::new(),
            next_lease: 0x694d_a219_52c6_e400,
            site_holder: design.site.as_ref().and(primary).map(|p| p.name.clone()),
            lock_renewals_fail: false,
            handover: None,
            fenced_agent: None,
            site_down: 0,
            lease_races: 0,
            site_sync: None,
            site_sync_rev: 0,
            sync_rewrite: None,
            replay_stalled: None,
            pause_replies_lost: 0,
            route_lost: None,
        };
        let m = w.writable_masters().len();
        Arc::new(Mutex::new(World { most_masters: m, ..w }))
    }

    /// The site agent of a cloud it fenced: the agent's `decide_resume` and
    /// Patroni's `pre_promote` (see host/site_agent.py), as a process racing
    /// pgha's flip at its worst moment: after pgha read the lease's
    /// revision to take it (its demotion of the cloud checked and done).
    fn agent_acts(&mut self) {
        let Some(cloud) = self.fenced_agent.clone() else { return };
        if self.log.last().map(|c| c.what.as_str()) != Some("read the lease revision") {
            return;
        }
        let holds = self.site_holder.as_deref() == Some(cloud.as_str());
        let standby = self.clouds.get(&cloud).is_some_and(|c| c.standby_of.is_some());
        if !(holds && standby) {
            return;
        }
        let what = match &self.handover {
            Some(to) => format!("{cloud}'s pre_promote refuses: the lease is handed over to {to}"),
            None => {
                self.clouds.get_mut(&cloud).expect("known cloud").standby_of = None;
                format!("{cloud} resumed after its fence")
            }
        };
        if self.log.last().map(|c| &c.what) != Some(&what) {
            self.log.push(Call {
                host: "site agent".into(),
                what,
            });
        }
    }

    /// The paused clouds, by name.
    pub(crate) fn paused(&self) -> Vec<String> {
        self.clouds
            .iter()
            .filter(|(_, c)| c.paused)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The cloud `cloud` streams from: the one it names, or (following
    /// through its own HAProxy) the one whose master takes writes.
    pub(crate) fn follows(&self, cloud: &str) -> Option<String> {
        match self.clouds[cloud].standby_of.as_deref()? {
            THROUGH_HAPROXY => self
                .clouds
                .iter()
                .find(|(_, c)| c.standby_of.is_none() && c.leader.as_ref().is_some_and(|l| self.hosts[l].up))
                .map(|(name, _)| name.clone()),
            named => Some(named.to_string()),
        }
    }

    /// Hosts whose PostgreSQL accepts writes now: leaders of clouds that
    /// are no standby cluster, and servers running without Patroni.
    pub(crate) fn writable_masters(&self) -> Vec<String> {
        let mut masters: Vec<String> = self
            .clouds
            .values()
            .filter(|c| c.standby_of.is_none())
            .filter_map(|c| c.leader.clone())
            .filter(|l| self.hosts[l].up)
            .collect();
        for (name, h) in &self.hosts {
            if h.plain && !masters.contains(name) {
                masters.push(name.clone());
            }
        }
        masters
    }

    /// The servers a host's running HAProxy lists in `proxy`.
    pub(crate) fn routed(&self, host: &str, proxy: &str) -> Vec<String> {
        servers_in(&self.hosts[host].active_haproxy, proxy)
    }

    fn cloud_of(&self, host: &str) -> Option<&Cloud> {
        let c = self.hosts.get(host)?.cloud.as_ref()?;
        self.design.cloud(c)
    }

    fn role(&self, host: &str) -> &'static str {
        let Some(cloud) = self.cloud_of(host) else {
            return "replica";
        };
        let sim = &self.clouds[&cloud.name];
        match (&sim.leader, &sim.standby_of) {
            (Some(l), None) if l == host => "leader",
            (Some(l), Some(_)) if l == host => "standby_leader",
            _ => "replica",
        }
    }

    fn cluster_doc(&self, host: &str, lags: &BTreeMap<String, u64>) -> String {
        let cloud = self.cloud_of(host).expect("a database host");
        let members: Vec<serde_json::Value> = cloud
            .hosts
            .iter()
            .map(|h| {
                let s = &self.hosts[&h.name];
                let role = self.role(&h.name);
                let state = match (s.up, role) {
                    (false, _) => "stopped",
                    (true, "leader") => "running",
                    _ => "streaming",
                };
                let mut m = serde_json::json!({"name": h.name, "role": role, "state": state, "host": h.address, "timeline": s.timeline});
                if let Some(lag) = lags.get(&h.name) {
                    m["lag"] = (*lag).into();
                }
                m
            })
            .collect();
        serde_json::json!({ "members": members, "pause": self.clouds[&cloud.name].paused }).to_string()
    }

    /// Every standby catches up with what it follows: instant replication,
    /// from the master, or with none, from the standby leader furthest
    /// ahead (a demoted master's last WAL still reaches the others).
    fn replicate(&mut self) {
        let masters = self.writable_masters();
        let leaders = self.clouds.values().filter_map(|c| c.leader.as_ref());
        let source = masters.first().cloned().or_else(|| {
            leaders
                .filter(|l| self.hosts[*l].up && self.hosts[*l].restarting == 0)
                .max_by_key(|l| (self.hosts[*l].timeline, self.hosts[*l].lsn))
                .cloned()
        });
        let Some(master) = source.as_ref() else { return };
        let (lsn, tli) = (self.hosts[master].lsn, self.hosts[master].timeline);
        let stalled = self.replay_stalled.clone();
        let lost = self.route_lost.clone().filter(|c| !self.clouds[c].direct);
        for s in self
            .hosts
            .values_mut()
            .filter(|h| h.up && h.cloud.is_some() && h.cloud != stalled && h.cloud != lost)
        {
            s.lsn = s.lsn.max(lsn);
            s.timeline = s.timeline.max(tli);
        }
    }

    fn stats(&self, host: &str) -> String {
        let d = &self.design;
        let is_glb = self.hosts[host].cloud.is_none();
        let proxy = if is_glb {
            haproxy::glb_proxy(&d.platform.name)
        } else {
            haproxy::primary_proxy(&d.platform.name)
        };
        let masters = self.writable_masters();
        let mut csv = String::from(
            "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status\n",
        );
        for s in servers_in(&self.hosts[host].active_haproxy, &proxy) {
            let up = if is_glb && d.site.is_some() {
                // With the site lease the GLB checks Patroni's /primary on every host.
                masters.contains(&s)
            } else if is_glb {
                self.hosts
                    .get(&s)
                    .is_some_and(|h| !self.routed_up(&s).is_empty() && h.up)
            } else {
                masters.contains(&s)
            };
            csv.push_str(&format!(
                "{proxy},{s},0,0,0,0,500,0,0,0,,0,,0,0,0,0,{}\n",
                if up { "UP" } else { "DOWN" }
            ));
        }
        csv
    }

    fn routed_up(&self, host: &str) -> Vec<String> {
        let masters = self.writable_masters();
        self.routed(host, &haproxy::primary_proxy(&self.design.platform.name))
            .into_iter()
            .filter(|s| masters.contains(s))
            .collect()
    }

    /// One script on one host: its effect and its answer.
    fn answer(&mut self, host: &str, script: &str, input: Option<&[u8]>) -> Result<(String, String), String> {
        let d = self.design.clone();
        let p = &d.platform;
        let ok = |what: &str, out: String| Ok((what.to_string(), out));
        if script.contains("/pgha-journal/") {
            // pgha's journal in etcd: kept in order, read back whole.
            if script.lines().any(|l| l.starts_with("e put ")) {
                self.journal
                    .push(String::from_utf8_lossy(input.unwrap_or_default()).into_owned());
                return ok("journal", String::new());
            }
            return ok("read journal", String::new());
        }
        if let Some(cloud) = self.cloud_of(host).cloned() {
            let digest = components::vip::access_digest(&cloud);
            if script == components::vip::access_script(&cloud, d.etcd.client_port, &digest) {
                for h in self
                    .hosts
                    .values_mut()
                    .filter(|h| h.cloud.as_deref() == Some(cloud.name.as_str()))
                {
                    h.vip_access = Some(digest.clone());
                }
                return ok("secure etcd v2", String::new());
            }
        }
        if let Some(digest) = script
            .lines()
            .find_map(|l| l.strip_prefix(&format!("e put {} ", etcd::ACCESS_MARKER)))
        {
            // etcd's users set: the marker is in the whole cluster the
            // script's endpoint belongs to.
            let digest = digest.trim_end_matches(" >/dev/null").to_string();
            let site = d
                .site
                .as_ref()
                .is_some_and(|s| script.contains(&format!("https://127.0.0.1:{} ", s.client_port)));
            let cloud = self.hosts[host].cloud.clone();
            let members: Vec<String> = if site {
                d.site_members().iter().map(|(_, h)| h.name.clone()).collect()
            } else {
                self.hosts
                    .iter()
                    .filter(|(_, h)| h.cloud == cloud)
                    .map(|(n, _)| n.clone())
                    .collect()
            };
            for m in members {
                if let Some(h) = self.hosts.get_mut(&m) {
                    if site {
                        h.site_access = Some(digest.clone());
                    } else {
                        h.cloud_access = Some(digest.clone());
                    }
                }
            }
            return ok(if site { "secure site etcd" } else { "secure etcd" }, String::new());
        }
        if script == crate::fleet::runs_script() {
            return ok("read os", format!("{}\n", self.hosts[host].os));
        }
        // `endpoint health --cluster`: one line per member of the host's
        // etcd cluster (its cloud's, or the site's).
        let site_port = d.site.as_ref().map(|s| s.client_port);
        for port in std::iter::once(d.etcd.client_port).chain(site_port) {
            if script != components::upgrade::etcd_health_script(port) {
                continue;
            }
            let members: Vec<&crate::design::Host> = if Some(port) == site_port {
                d.site_members().into_iter().map(|(_, h)| h).collect()
            } else {
                self.cloud_of(host)
                    .map(|c| c.hosts.iter().collect())
                    .unwrap_or_default()
            };
            let lines: String = members
                .iter()
                .filter(|h| self.hosts.get(&h.name).is_some_and(|s| s.etcd_healthy))
                .map(|h| {
                    format!(
                        "https://{}:{port} is healthy: successfully committed proposal\n",
                        h.address
                    )
                })
                .collect();
            return ok("etcd health", lines);
        }
        if script == patroni::cluster_script(d.governor.rest_port) {
            if !self.hosts[host].up {
                return Err("Connection refused".into());
            }
            let cloud = self.cloud_of(host).expect("a database host").clone();
            let lags: BTreeMap<String, u64> = cloud
                .hosts
                .iter()
                .filter_map(|h| {
                    let reports = &mut self.hosts.get_mut(&h.name)?.lag_reports;
                    (!reports.is_empty()).then(|| (h.name.clone(), reports.remove(0)))
                })
                .collect();
            return ok("read cluster", self.cluster_doc(host, &lags));
        }
        if script == crate::fleet::psql_script(p.postgres_port, "select pg_is_in_recovery()") {
            let s = &self.hosts[host];
            if !s.up && !s.plain {
                return Err("no server".into());
            }
            let writable = self.writable_masters().iter().any(|m| m == host);
            return ok("read in-recovery", if writable { "f" } else { "t" }.into());
        }
        if script == crate::fleet::server_role_script(p.postgres_port, &p.data_dir, &p.bin_dir) {
            let s = &self.hosts[host];
            let writable = self.writable_masters().iter().any(|m| m == host);
            let role = match (s.up, writable) {
                (false, _) => "down",
                (true, true) => "f",
                (true, false) => "t",
            };
            return ok("read server role", role.into());
        }
        if script == crate::fleet::psql_script(p.postgres_port, wal::RECEIVER_SQL) {
            let s = &self.hosts[host];
            let follows = s.cloud.as_ref().is_some_and(|c| self.clouds[c].standby_of.is_some());
            let state = if s.up && follows && !s.stuck_receiver {
                "streaming"
            } else {
                "none"
            };
            return ok("read receiver", state.into());
        }
        if script == wal::position_script(&p.data_dir, &p.bin_dir, p.postgres_port) {
            let restarting = self.hosts[host].restarting > 0;
            let s = &self.hosts[host];
            if !s.up && !s.data {
                return ok("read position", "empty\n".into());
            }
            if !s.up && s.wal_unreadable {
                return Err(WAL_UNREADABLE.into());
            }
            let mode = if !s.up || restarting {
                "stopped"
            } else if self.writable_masters().iter().any(|m| m == host) {
                "primary"
            } else {
                "recovery"
            };
            // As pg_waldump says of a stopped server: where its last record
            // (24 bytes at least) starts, not where its WAL ends.
            let lsn = if mode == "stopped" {
                s.lsn.saturating_sub(24)
            } else {
                s.lsn
            };
            return ok(
                "read WAL position",
                format!("{mode} {} {} {}", crate::fleet::format_lsn(lsn), s.timeline, 16 << 20),
            );
        }
        if script.contains("desc: COMMIT") && script.contains(&format!("{}/pg_waldump", p.bin_dir)) {
            if self.hosts[host].wal_unreadable {
                return Err(WAL_UNREADABLE.into());
            }
            let commits = self.hosts[host].commits.join("\n");
            return ok("read commits", commits);
        }
        if script == haproxy::stats_script(&d.haproxy.stats_address, d.haproxy.stats_port)
            || d.glb
                .as_ref()
                .is_some_and(|g| script == haproxy::stats_script(&g.stats_address, g.stats_port))
        {
            if self.hosts[host].stats_silent {
                return Err("urllib.error.URLError: <urlopen error [Errno 111] Connection refused>".into());
            }
            return ok("read stats", self.stats(host));
        }
        if script == components::rest::required_script() {
            let required = self.hosts[host]
                .files
                .get(patroni::CONFIG.path)
                .is_some_and(|c| components::rest::requires(c));
            return ok(
                "rest required",
                if required { "rest_verify_required\n" } else { "" }.to_string(),
            );
        }
        if script == haproxy::has_pem_script() {
            let has = self.hosts[host]
                .files
                .get(haproxy::PEM.path)
                .is_some_and(|c| !c.is_empty());
            return ok("haproxy pem", if has { "haproxy_pem\n" } else { "" }.to_string());
        }
        // Flips reload-or-restart, deploy reloads: HAProxy loads its file either way.
        if script == systemd::unit_script(Verb::ReloadOrRestart, "haproxy")
            || script == systemd::unit_script(Verb::Reload, "haproxy")
        {
            let s = self.hosts.get_mut(host).expect("known host");
            s.active_haproxy = s.files.get(haproxy::CONFIG.path).cloned().unwrap_or_default();
            return ok("reload haproxy", String::new());
        }
        let all_specs = components::db_host_files(&d)
            .into_iter()
            .chain(components::glb_host_files(&d));
        let reload = systemd::unit_script(Verb::ReloadOrRestart, "haproxy");
        for spec in &all_specs.collect::<Vec<_>>() {
            let s = self.hosts.get_mut(host).expect("known host");
            // A flip's GLB config: written and HAProxy reloaded only when it differs.
            if script == crate::remote::install_if_changed_script(spec, &reload) {
                let content = String::from_utf8_lossy(input.unwrap_or_default()).into_owned();
                if s.files.get(spec.path) == Some(&content) {
                    return ok(&format!("unchanged {}", spec.path), String::new());
                }
                s.files.insert(spec.path.to_string(), content.clone());
                s.meta.insert(spec.path.to_string(), spec_meta(spec));
                s.active_haproxy = content;
                return ok(&format!("install {} and reload", spec.path), "pgha: changed\n".into());
            }
            if script == install_script(spec) {
                let content = String::from_utf8_lossy(input.unwrap_or_default()).into_owned();
                s.files.insert(spec.path.to_string(), content);
                s.meta.insert(spec.path.to_string(), spec_meta(spec));
                return ok(&format!("install {}", spec.path), String::new());
            }
            if script == crate::remote::file_mode_script(spec) {
                s.meta.insert(spec.path.to_string(), spec_meta(spec));
                return ok(&format!("chown+chmod {}", spec.path), String::new());
            }
        }
        if let Some(facts) = self.facts(host, script) {
            return ok("read facts", facts);
        }
        if script == systemd::DAEMON_RELOAD {
            return ok("daemon-reload", String::new());
        }
        if script == site::gate_installed_script() {
            let has = self.hosts[host].files.contains_key(site::GATE_UNIT.path);
            return ok("look for the site gate", if has { "gate\n" } else { "none\n" }.into());
        }
        if let Some(b) = &d.backup {
            use components::backup::{backup_script, Kind, Source};
            for repo in &b.repositories {
                for kind in Kind::ALL {
                    for from in [Source::Standby, Source::Master] {
                        if script == backup_script(&d, repo, kind, from) {
                            if self.hosts[host].backup_fails {
                                return Err("ERROR: [082]: WAL segment was not archived before the timeout".into());
                            }
                            return ok(&format!("backup {} into {}", kind.as_str(), repo.cloud), String::new());
                        }
                    }
                }
            }
        }
        let node_port = d.exporter.as_ref().map_or(0, |e| e.node_port);
        let node_up = components::exporter::node_up_script(node_port);
        if script == format!("{}{node_up}", components::exporter::running_login_script()) {
            let up = d.exporter.is_some() && self.hosts[host].up;
            return ok(
                "read the exporters",
                if up { "exporter_login\nnode_up\n" } else { "" }.into(),
            );
        }
        if script == site::armed_script() {
            // An agent that runs reaches the fake site at once, unless the
            // test keeps it blind.
            let h = &self.hosts[host];
            let armed = h.files.contains_key(site::AGENT_SETTINGS.path) && !h.site_blind;
            return ok("read the armed mark", if armed { "armed\n" } else { "" }.into());
        }
        if script == patroni::UNHOLD_SCRIPT {
            self.hosts.get_mut(host).expect("known host").held = false;
            return ok("unhold", String::new());
        }
        if let Some(out) = self.answer_site(script) {
            return out;
        }
        for svc in [
            "patroni",
            "etcd",
            site::ETCD_SERVICE,
            site::AGENT_SERVICE,
            site::GATE_SERVICE,
            components::exporter::SERVICE,
            components::exporter::NODE_SERVICE,
            components::vip::LEADER_SERVICE,
            components::vip::MANAGER_SERVICE,
        ] {
            for verb in [Verb::Restart, Verb::Reload, Verb::Start, Verb::Enable] {
                if script == systemd::unit_script(verb, svc) && !(svc == "patroni" && verb == Verb::Start) {
                    return ok(&format!("{} {svc}", verb.as_str()), String::new());
                }
            }
        }
        // A change of the dynamic configuration, through etcd or through the
        // member's own Patroni: the same change.
        let config_change = |sets: &[(String, String)]| {
            script == patroni::edit_config_script(sets)
                || patroni::patch_config_script(d.governor.rest_port, sets).is_ok_and(|s| s == script)
        };
        if let Some(hosts) = standby_hosts(script) {
            let direct = patroni::standby_cluster_direct(&d, &hosts[0]).to_string();
            if hosts.len() == 1 && config_change(&[("standby_cluster".into(), direct)]) {
                let cloud = self.cloud_of(host).expect("a database host").name.clone();
                let (of, _) = d
                    .all_hosts()
                    .find(|(_, h)| h.address == hosts[0])
                    .expect("a known address");
                let c = self.clouds.get_mut(&cloud).expect("known cloud");
                c.standby_of = Some(of.expect("a database host").name.clone());
                c.direct = true;
                return ok(&format!("{cloud} streams from {} directly", hosts[0]), String::new());
            }
            let follow = patroni::standby_cluster(&d, &hosts).to_string();
            if config_change(&[("standby_cluster".into(), follow)]) {
                // Which clouds the addresses belong to, as `dc2` or
                // `dc2,dc3`; with the site lease, the host's own HAProxy.
                let followed: Vec<&str> = d
                    .clouds
                    .iter()
                    .filter(|c| c.hosts.iter().any(|h| hosts.contains(&h.address)))
                    .map(|c| c.name.as_str())
                    .collect();
                let followed = if hosts == [patroni::LOCAL_HAPROXY] {
                    THROUGH_HAPROXY.to_string()
                } else {
                    followed.join(",")
                };
                let cloud = self.cloud_of(host).expect("a database host").name.clone();
                // Its master stops at once: the commit it wrote last had not
                // reached anyone (Patroni's immediate stop), and it starts
                // again in recovery a dozen calls later (past the reads a flip makes
                // before it promotes).
                if let Some(master) = self
                    .writable_masters()
                    .into_iter()
                    .find(|m| self.cloud_of(m).is_some_and(|c| c.name == cloud))
                {
                    let m = self.hosts.get_mut(&master).expect("known host");
                    m.lsn += 24;
                    m.commits.push("the demoted master's last commit".into());
                    m.restarting = 12;
                }
                let c = self.clouds.get_mut(&cloud).expect("known cloud");
                c.standby_of = Some(followed.clone());
                c.direct = false;
                return ok(&format!("{cloud} follows {followed}"), String::new());
            }
        }
        let sync = (p.replication == Replication::Synchronous).to_string();
        if config_change(&[
            ("standby_cluster".into(), "null".into()),
            ("synchronous_mode".into(), sync),
        ]) {
            let cloud = self.cloud_of(host).expect("a database host").name.clone();
            let leader = self.clouds[&cloud].leader.clone().expect("a leader");
            let (lsn, tli) = (self.hosts[&leader].lsn, self.hosts[&leader].timeline);
            let behind: Vec<String> = self
                .hosts
                .iter()
                .filter(|(_, h)| {
                    h.cloud.as_deref() != Some(cloud.as_str())
                        && h.timeline == tli
                        && h.lsn > lsn
                        && !h.commits.is_empty()
                })
                .map(|(n, _)| n.clone())
                .collect();
            self.promoted_behind.extend(behind);
            let c = self.clouds.get_mut(&cloud).expect("known cloud");
            (c.standby_of, c.direct) = (None, false);
            let l = self.hosts.get_mut(&leader).expect("known host");
            l.timeline += 1;
            return ok(&format!("promote {cloud}"), String::new());
        }
        if let Some(value) = lock_value(&d, script) {
            return match &self.lock {
                Some((held, _)) => {
                    let holder = String::from_utf8(decode64(held)).unwrap_or_default();
                    ok("lock refused", format!("held {holder}\n"))
                }
                None => {
                    self.next_lease += 1;
                    let lease = format!("{:x}", self.next_lease);
                    self.lock = Some((value, lease.clone()));
                    ok("lock", format!("acquired {lease}\n"))
                }
            };
        }
        if let Some((_, lease)) = self.lock.clone() {
            if script == etcd::lease_revoke_script(d.etcd.client_port, &lease) {
                self.lock = None;
                return ok("unlock", String::new());
            }
            let cloud = self.cloud_of(host).map(|c| c.name.clone()).unwrap_or_default();
            let peers = crate::lock::peers(&d, &cloud, host);
            if script == etcd::lease_keepalive_script(d.etcd.client_port, &lease, &peers) {
                if self.lock_renewals_fail {
                    return ok("renew lock (lapsed)", format!("lease {lease} expired or revoked.\n"));
                }
                return ok("renew lock", format!("lease {lease} keepalived with TTL(30)\n"));
            }
        }
        if let Some(out) = self.answer_node(host, script) {
            return out;
        }
        Err(format!("the fake host does not know this script:\n{script}"))
    }
}

impl World {
    /// The facts script's answer for a converged host: packages installed,
    /// services running, files as installed.
    fn facts(&self, host: &str, script: &str) -> Option<String> {
        let d = &self.design;
        let s = &self.hosts[host];
        let (db_files, glb_files) = (components::db_host_files(d), components::glb_host_files(d));
        let db = crate::deploy::facts::script(d, &packages::db_host_of(d), &db_files, true);
        let glb_script = crate::deploy::facts::glb_script(d);
        let specs: &[FileSpec] = if script == db {
            &db_files
        } else if script == glb_script {
            &glb_files
        } else {
            return None;
        };
        let mut out = format!("os {}\n", s.os);
        for spec in specs {
            match s.files.get(spec.path) {
                Some(c) => out.push_str(&format!(
                    "file {} {} {}\n",
                    spec.path,
                    crate::fsutil::sha256_hex(c.as_bytes()),
                    s.meta[spec.path]
                )),
                None => out.push_str(&format!("file {} absent\n", spec.path)),
            }
            out.push_str(&format!(
                "svc Id={}.service\nsvc ActiveState=active\nsvc UnitFileState=enabled\nsvc \n",
                spec.service
            ));
        }
        // The statistics page answers while HAProxy runs: on a host that is up.
        if (s.up || s.cloud.is_none()) && !s.stats_silent {
            for line in self.stats(host).lines() {
                out.push_str(&format!("stat {line}\n"));
            }
        }
        if s.cloud.is_some() && components::vip::any(d) {
            out.push_str("iface eth0\niface lo\n");
        }
        // What `rest::probe_script` reads of the files as they are.
        for path in components::rest::client_files_among(&components::db_host_files(d)) {
            if s.files
                .get(path)
                .is_some_and(|c| c.contains("pgha") && !c.contains(components::rest::MARKER))
            {
                out.push_str(&format!("rest_client_old {path}\n"));
            }
        }
        if s.files
            .get(patroni::CONFIG.path)
            .is_some_and(|c| components::rest::requires(c))
        {
            out.push_str("rest_verify_required\n");
        }
        if s.cloud.is_some() {
            let etcd_file = s.files.get(etcd::CONFIG.path).map_or("", String::as_str);
            if d.is_site_member(host) {
                out.push_str("site_initialized\n");
                let port = d.site.as_ref().map_or(0, |s| s.peer_port);
                for (i, (_, m)) in d.site_members().iter().enumerate() {
                    out.push_str(&format!(
                        "site_member 5{i:015x}, started, {}, {}, https://{}:2479, false\n",
                        m.name,
                        etcd::peer_url(&m.address, port),
                        m.address
                    ));
                }
            }
            out.push_str(&format!(
                "svc Id={}.service\nsvc ActiveState=inactive\nsvc UnitFileState=disabled\nsvc \netcd_initialized\netcd_core {}\nconfig {}\n",
                crate::deploy::facts::distro_unit(d),
                crate::fsutil::sha256_hex(etcd::core(etcd_file).as_bytes()),
                self.dynamic_config(host)
            ));
            if s.data {
                out.push_str("pgdata\n");
            }
            let v = d.platform.postgres_version;
            let ships = s.apt_ships.clone().unwrap_or_else(|| vec![v]);
            if ships.contains(&v) {
                out.push_str(&format!("pg_candidate {v}.1-1\n"));
            } else {
                out.push_str(&format!("pkg postgresql-{v} not-installed\npg_candidate (none)\n"));
            }
            for n in ships {
                out.push_str(&format!("pg_available {n}\n"));
            }
            out.push_str(&format!("pg_configured {}\n", s.patroni_major.unwrap_or(v)));
            if d.exporter.is_some() && s.up {
                out.push_str("exporter_login\n");
            }
            if s.up && s.patroni_gateway {
                out.push_str("patroni_gateway\n");
            }
            if s.up {
                for (label, digest) in [
                    ("cloud_access", &s.cloud_access),
                    ("site_access", &s.site_access),
                    ("vip_access", &s.vip_access),
                ] {
                    if let Some(digest) = digest {
                        out.push_str(&format!("{label} {digest}\n"));
                    }
                }
                // The site member here answers as the site's read does.
                let members = d.site_members();
                let quorum = members.len().saturating_sub(self.site_down) * 2 > members.len();
                if s.site_access.is_some() && quorum && members.iter().any(|(_, h)| h.name == host) {
                    let holder = self
                        .site_holder
                        .as_ref()
                        .map_or(String::new(), |c| format!("{{\"cloud\":\"{c}\"}}"));
                    out.push_str(&format!("site_primary {holder}\n"));
                }
                if d.site.is_some() && s.files.contains_key(site::AGENT_SETTINGS.path) && !s.site_blind {
                    out.push_str("site_armed\n");
                }
            }
            if s.up {
                out.push_str(&format!("cluster {}\n", self.cluster_doc(host, &BTreeMap::new())));
                let cloud = self.cloud_of(host).expect("a database host");
                for (i, h) in cloud.hosts.iter().enumerate() {
                    out.push_str(&format!(
                        "etcd_member {:x}, started, {}, {}, https://{}:{}, false\n",
                        0x1000 + i,
                        h.name,
                        etcd::peer_url(&h.address, d.etcd.peer_port),
                        h.address,
                        d.etcd.client_port
                    ));
                }
            }
        }
        Some(out)
    }

    /// The site lease (three clouds or more): the members `site_down`
    /// leaves healthy, the lease where the fake world says, `cloud
    /// make-primary` moving it.
    fn answer_site(&mut self, script: &str) -> Option<Result<(String, String), String>> {
        let d = self.design.clone();
        let site = d.site.as_ref()?;
        let members = d.site_members();
        let answering = members.len().saturating_sub(self.site_down);
        let quorum = answering * 2 > members.len();
        if script == site::read_script(&d) {
            let mut out: String = members
                .iter()
                .enumerate()
                .map(|(i, (_, h))| {
                    let health = if i < answering { "healthy" } else { "unhealthy" };
                    format!("health https://{}:{} {health}\n", h.address, site.client_port)
                })
                .collect();
            if let (Some(holder), true) = (&self.site_holder, quorum) {
                out.push_str(&format!("primary {{\"cloud\":\"{holder}\"}}\nremaining 25\n"));
            }
            if let (Some(record), true) = (&self.site_sync, quorum) {
                out.push_str(&format!("sync {record}\n"));
            }
            match self.sync_rewrite.take() {
                Some((0, record)) => {
                    self.site_sync = Some(record);
                    self.site_sync_rev += 1;
                }
                Some((n, record)) => self.sync_rewrite = Some((n - 1, record)),
                None => {}
            }
            return Some(Ok(("read the site lease".into(), out)));
        }
        let primary_rev = if self.site_holder.is_some() { 7 } else { 0 };
        // A take as built from each revision of the record up to now (all
        // but the last are stale), plain or judged.
        let sync_rev = self.site_sync_rev;
        let design = &d;
        let takes = |cloud: &str| {
            let cloud = cloud.to_string();
            (0..=sync_rev).flat_map(move |sync| {
                let revisions = site::Revisions {
                    primary: primary_rev,
                    sync,
                };
                [false, true].map(|judged| {
                    let script = site::take_script(design, &cloud, site.ttl, revisions, judged);
                    (script, judged && sync != sync_rev)
                })
            })
        };
        let writes = [site::revision_script(&d)]
            .into_iter()
            .chain(d.clouds.iter().flat_map(|c| {
                let mut w = vec![site::renew_script(&d, &c.name)];
                w.extend(d.clouds.iter().map(|t| site::handover_script(&d, &c.name, &t.name)));
                w.extend(takes(&c.name).map(|(s, _)| s));
                w
            }));
        if !quorum && writes.into_iter().any(|w| w == script) {
            return Some(Err("context deadline exceeded: the site members have no quorum".into()));
        }
        for from in &d.clouds {
            for to in &d.clouds {
                if script == site::handover_script(&d, &from.name, &to.name) {
                    let held = self.site_holder.as_deref() == Some(from.name.as_str());
                    if held {
                        self.handover = Some(to.name.clone());
                    }
                    return Some(Ok((
                        format!("{} hands the site lease over", from.name),
                        if held { "marked" } else { "not held" }.into(),
                    )));
                }
            }
        }
        if script == site::revision_script(&d) {
            return Some(Ok((
                "read the lease revision".into(),
                format!("primary {primary_rev}\nsync {}\n", self.site_sync_rev),
            )));
        }
        for c in &d.clouds {
            if script == site::renew_script(&d, &c.name) {
                let held = self.site_holder.as_deref() == Some(c.name.as_str());
                return Some(Ok((
                    format!("{} renews the site lease", c.name),
                    if held { "renewed\n" } else { "not held\n" }.into(),
                )));
            }
            let Some((_, stale)) = takes(&c.name).find(|(s, _)| *s == script) else {
                continue;
            };
            if stale {
                return Some(Ok((
                    format!("{} loses the take: the replication record changed", c.name),
                    "moved\n".into(),
                )));
            }
            if self.lease_races > 0 {
                self.lease_races -= 1;
                return Some(Ok((
                    format!("{} loses the race for the site lease", c.name),
                    "moved\n".into(),
                )));
            }
            self.site_holder = Some(c.name.clone());
            self.handover = None;
            return Some(Ok((format!("{} takes the site lease", c.name), "taken\n".into())));
        }
        None
    }

    /// Patroni's `/config` of the host's cloud: as the design asks, with the
    /// `standby_cluster` the cloud follows now.
    fn dynamic_config(&self, host: &str) -> String {
        let d = &self.design;
        let cloud = self.cloud_of(host).expect("a database host");
        let mut doc = serde_json::Map::new();
        for (k, v) in crate::deploy::work::desired_dynamic_config(d, cloud) {
            doc.insert(k, v);
        }
        let standby = match &self.clouds[&cloud.name].standby_of {
            None => serde_json::Value::Null,
            Some(names) => {
                let hosts: Vec<String> = names
                    .split(',')
                    .filter_map(|n| d.cloud(n))
                    .flat_map(|c| c.hosts.iter().map(|h| h.address.clone()))
                    .collect();
                patroni::standby_cluster(d, &hosts)
            }
        };
        doc.insert("standby_cluster".into(), standby);
        let params: serde_json::Map<String, serde_json::Value> = d
            .platform
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        doc.insert("postgresql".into(), serde_json::json!({ "parameters": params }));
        serde_json::Value::Object(doc).to_string()
    }

    /// A restore's scripts: each cloud's Patroni cluster forgotten, the data
    /// set aside, restored on the primary cloud's first host, which recovers
    /// and promotes itself as a server of its own (a new timeline).
    fn answer_restore(&mut self, host: &str, script: &str) -> Option<Result<(String, String), String>> {
        use crate::components::backup;
        let d = self.design.clone();
        let p = &d.platform;
        let ok = |what: &str, out: &str| Some(Ok((what.to_string(), out.to_string())));
        if let Some(c) = self.cloud_of(host).cloned() {
            if script == patroni::forget_cluster_script(d.etcd.client_port, &p.name) {
                let primary = d.primary_clouds().next().map(|p| p.name.clone());
                let sim = self.clouds.get_mut(&c.name).expect("known cloud");
                sim.leader = None;
                sim.standby_of = if c.is_primary() { None } else { primary };
                return ok("forget the Patroni cluster", "");
            }
            let restore = d
                .backup
                .is_some()
                .then(|| backup::restore_script(&d, &c.name, &backup::Target::Latest));
            if Some(script) == restore.as_deref() {
                let s = self.hosts.get_mut(host).expect("known host");
                s.data = true;
                return ok("restore", "");
            }
        }
        let aside = crate::ops::restore::set_aside_script(&p.data_dir, "");
        let s = self.hosts.get_mut(host).expect("known host");
        let head = aside.split(" mv ").next().unwrap_or_default();
        if script.starts_with(head) && script.contains(" mv ") && script.contains(".pgha-restore-") {
            // The running server (if any) keeps the moved directory open.
            s.data = false;
            s.kept_aside.append(&mut s.commits);
            s.lsn = 0;
            return ok("move the data aside", "");
        }
        for start in [false, true] {
            if script == crate::ops::whole::site_services_script(start) {
                let what = if start { "start" } else { "stop" };
                return ok(&format!("{what} the site agent and fence"), "");
            }
        }
        if script == crate::ops::restore::stop_all_script(&d) {
            (s.up, s.plain) = (false, false);
            return ok("stop patroni and postgresql", "");
        }
        if script == backup::pg_ctl_script(&d, "start") {
            if s.plain || s.up {
                return Some(Err(
                    "could not bind: Address already in use (another server might be running)".into(),
                ));
            }
            if !s.data {
                return Some(Err("no data directory".into()));
            }
            s.plain = true;
            s.timeline += 1;
            return ok("start the restored server", "");
        }
        if script == backup::pg_ctl_script(&d, "status") {
            return Some(if s.plain {
                Ok(("server status".into(), String::new()))
            } else {
                Err("no server running".into())
            });
        }
        if script == backup::pg_ctl_script(&d, "stop") {
            s.plain = false;
            return ok("stop the restored server", "");
        }
        if script == backup::restore_log_script() {
            return ok("read the restore log", "");
        }
        if script == crate::fleet::psql_script(p.postgres_port, "SELECT pg_is_in_recovery()") {
            return Some(if s.plain {
                Ok(("read in-recovery".into(), "f".into()))
            } else {
                Err("no server".into())
            });
        }
        if script == crate::fleet::psql_script(p.postgres_port, backup::RESET_RECOVERY_SQL) {
            return ok("reset the recovery settings", "");
        }
        None
    }

    /// Scripts about one node's services and data: recover-node, switchover.
    fn answer_node(&mut self, host: &str, script: &str) -> Option<Result<(String, String), String>> {
        let d = self.design.clone();
        let p = &d.platform;
        let ok = |what: String, out: String| Some(Ok((what, out)));
        let cloud = self.cloud_of(host).map(|c| c.name.clone());
        if let Some(cloud) = &cloud {
            if script == patroni::failover_script(&p.name, host) {
                self.clouds.get_mut(cloud).expect("known cloud").leader = Some(host.to_string());
                return ok("failover to it".into(), String::new());
            }
        }
        if let Some(answer) = self.answer_restore(host, script) {
            return Some(answer);
        }
        let s = self.hosts.get_mut(host).expect("known host");
        if script == systemd::unit_script(Verb::Stop, "patroni") {
            s.up = false;
            return ok("stop patroni".into(), String::new());
        }
        if script == patroni::hold_script() {
            if s.refuses_hold {
                return Some(Err("install: cannot create regular file: Read-only file system".into()));
            }
            let was = if s.up { "was-running\n" } else { "" };
            (s.held, s.up) = (true, false);
            return ok("hold".into(), was.into());
        }
        for start in [true, false] {
            if script == patroni::release_hold_script(start) {
                s.held = false;
                s.up |= start;
                return ok(
                    format!("release hold{}", if start { ", start" } else { "" }),
                    String::new(),
                );
            }
        }
        if script == systemd::unit_script(Verb::Start, "patroni") {
            if let Some(cloud) = &cloud {
                let sim = self.clouds.get_mut(cloud).expect("known cloud");
                if sim.leader.is_none() && (s.data || sim.standby_of.is_some()) {
                    // A forgotten cluster: the first Patroni takes it, adopting
                    // a running server; a standby cloud's copies from the primary.
                    sim.leader = Some(host.to_string());
                    s.plain = false;
                }
            }
            if !s.data {
                // Patroni copies the data afresh from the cloud's leader.
                s.data = true;
            }
            // A replica that held commits of its own has them rewound away.
            s.lost.append(&mut s.commits);
            s.up = true;
            return ok("start patroni".into(), String::new());
        }
        if script == etcd::health_script(d.etcd.client_port) {
            return Some(if s.etcd_healthy {
                Ok(("etcd health".into(), "healthy".into()))
            } else {
                Err("unhealthy".into())
            });
        }
        if script == crate::ops::lineage::history_script(&p.data_dir, s.timeline) {
            return ok("read history".into(), s.history.clone());
        }
        if script.starts_with(&format!("[ -f {}/pg_wal/", p.data_dir)) && script.contains("sha256sum") {
            if s.wal_unreadable {
                return Some(Err(WAL_UNREADABLE.into()));
            }
            return ok(
                "hash WAL records".into(),
                crate::fsutil::sha256_hex(s.records.as_bytes()),
            );
        }
        for keep in [false, true] {
            if script == crate::ops::recover::discard_data_script(&p.data_dir, keep) {
                s.up = false;
                s.data = false;
                let mut commits = std::mem::take(&mut s.commits);
                if keep {
                    s.kept_aside.append(&mut commits);
                } else {
                    s.lost.append(&mut commits);
                }
                s.lsn = 0;
                return ok(
                    format!("discard data{}", if keep { " (kept aside)" } else { "" }),
                    String::new(),
                );
            }
        }
        if script == crate::fleet::psql_script(p.postgres_port, "select status from pg_stat_wal_receiver") {
            let streaming = s.up;
            let writable = self.writable_masters().iter().any(|m| m == host);
            return ok(
                "read wal receiver".into(),
                if streaming && !writable { "streaming" } else { "" }.into(),
            );
        }
        if script == crate::ops::pause::orphan_script(p.postgres_port) {
            // The fake stops PostgreSQL with Patroni: never an orphan.
            return ok("look for an orphan primary".into(), String::new());
        }
        let cloud = cloud?;
        for pause in [true, false] {
            if script == patroni::pause_script(pause) {
                // patronictl refuses a change already made.
                let c = self.clouds.get_mut(&cloud).expect("known");
                if c.paused == pause {
                    let state = if pause { "already paused" } else { "not paused" };
                    return Some(Err(format!("Error: Cluster is {state}")));
                }
                c.paused = pause;
                if self.pause_replies_lost > 0 {
                    self.pause_replies_lost -= 1;
                    return Some(Err("Error: Member is not accessible (read timed out)".into()));
                }
                return ok(
                    format!("{} patroni", if pause { "pause" } else { "resume" }),
                    String::new(),
                );
            }
        }
        for (leader, candidate) in self.clouds[&cloud].leader.iter().flat_map(|l| {
            d.cloud(&cloud)
                .into_iter()
                .flat_map(|c| c.hosts.iter())
                .map(move |h| (l.clone(), h.name.clone()))
        }) {
            if script == patroni::switchover_script(d.governor.rest_port, &leader, &candidate) {
                self.clouds.get_mut(&cloud).expect("known").leader = Some(candidate.clone());
                return ok(format!("switch over to {candidate}"), String::new());
            }
        }
        None
    }
}

/// What a cloud following its hosts' own HAProxy (with the site lease)
/// records as `standby_of`.
pub(crate) const THROUGH_HAPROXY: &str = "its HAProxy";

/// The hosts of a `standby_cluster` edit-config script.
fn standby_hosts(script: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = match script.split_once("-s 'standby_cluster=") {
        Some((_, json)) => serde_json::from_str(json.strip_suffix('\'')?).ok()?,
        // The PATCH body, the script's first argument.
        None => {
            let body = script.strip_prefix("python3 - '")?.split_once("' <<")?.0;
            serde_json::from_str::<serde_json::Value>(body).ok()?["standby_cluster"].clone()
        }
    };
    Some(v["host"].as_str()?.split(',').map(str::to_string).collect())
}

/// `server NAME ...` lines of `listen PROXY` in an HAProxy config.
pub(crate) fn servers_in(cfg: &str, proxy: &str) -> Vec<String> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in cfg.lines() {
        let t = line.trim();
        let section = ["listen ", "frontend ", "backend ", "global", "defaults", "userlist "]
            .iter()
            .find_map(|k| t.strip_prefix(k).map(|rest| (*k, rest)));
        if !line.starts_with(' ') && section.is_some() {
            inside = section.is_some_and(|(k, name)| k == "listen " && name.trim() == proxy);
        } else if inside {
            if let Some(rest) = t.strip_prefix("server ") {
                out.extend(rest.split_whitespace().next().map(str::to_string));
            }
        }
    }
    out
}

/// The holder value, when `script` is the lock acquire script for some value.
fn lock_value(d: &Design, script: &str) -> Option<String> {
    let probe = etcd::lock_acquire_script(
        d.etcd.client_port,
        &crate::lock::cluster_key(d),
        "VALUE",
        crate::lock::LEASE_TTL,
    );
    let (head, tail) = probe.split_once("VALUE")?;
    let v = script.strip_prefix(head)?.strip_suffix(tail)?;
    Some(v.to_string())
}

fn decode64(text: &str) -> Vec<u8> {
    crate::remote::base64_decode(text).unwrap_or_default()
}

/// One host of the world, as a transport.
pub(crate) struct FakeHost {
    name: String,
    world: Arc<Mutex<World>>,
}

impl Transport for FakeHost {
    fn run<'a>(&'a self, script: &'a str, input: Option<&'a [u8]>) -> BoxFuture<'a, anyhow::Result<Output>> {
        let result = {
            let mut w = self.world.lock().expect("not poisoned");
            if w.hosts.get(&self.name).is_some_and(|h| h.hangs) {
                return Box::pin(std::future::pending());
            }
            let n = w.calls;
            w.calls += 1;
            match w.crash {
                Some((at, _)) if n > at => Err(anyhow::anyhow!("{}: the process is gone", self.name)),
                Some((at, CrashWhen::Before)) if n == at => {
                    Err(anyhow::anyhow!("{}: killed before sending", self.name))
                }
                crash => {
                    let answer = w.answer(&self.name, script, input);
                    let answered = answer.as_ref().ok().map(|(what, _)| what.clone());
                    if let Some(what) = answered {
                        w.log.push(Call {
                            host: self.name.clone(),
                            what,
                        });
                    }
                    w.agent_acts();
                    for h in w.hosts.values_mut() {
                        h.restarting = h.restarting.saturating_sub(1);
                    }
                    w.replicate();
                    let masters = w.writable_masters().len();
                    w.most_masters = w.most_masters.max(masters);
                    let (status, stdout, stderr) = match answer {
                        Ok((_, out)) => (0, out, String::new()),
                        Err(e) => (1, String::new(), e),
                    };
                    if matches!(crash, Some((at, CrashWhen::After)) if n == at) {
                        Err(anyhow::anyhow!("{}: killed after the host applied it", self.name))
                    } else {
                        Ok(Output {
                            status: Some(status),
                            stdout,
                            stderr,
                        })
                    }
                }
            }
        };
        Box::pin(async move { result })
    }

    fn close(self: Arc<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// Remotes for every host of the world that is reachable.
pub(crate) fn remotes(design: &Design, world: &Arc<Mutex<World>>, unreachable: &[&str]) -> BTreeMap<String, Remote> {
    design
        .clouds
        .iter()
        .flat_map(|c| c.hosts.iter())
        .chain(design.glb_hosts())
        .filter(|h| !unreachable.contains(&h.name.as_str()))
        .map(|h| (h.name.clone(), fake_remote(h, world)))
        .collect()
}

fn fake_remote(h: &crate::design::Host, world: &Arc<Mutex<World>>) -> Remote {
    let t = FakeHost {
        name: h.name.clone(),
        world: world.clone(),
    };
    Remote::over(&h.name, &h.address, Arc::new(t))
}

/// One of the repository's example designs, loaded.
pub(crate) fn example(name: &str) -> Design {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    crate::design::load(&path).expect("the examples are valid").design
}

/// The two-clouds example with `extra` YAML appended at its top level.
pub(crate) fn design_with(extra: &str) -> Design {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/two-clouds.yaml");
    let src = std::fs::read_to_string(&path).expect("the example exists") + "\n" + extra;
    crate::design::load_str(&src, &path).expect("a valid design").design
}

/// Three clouds of three hosts and a GLB host: every path of a flip.
/// What the WAL reader says when pg_waldump could not read a host's WAL.
const WAL_UNREADABLE: &str =
    "pg_waldump could not read the WAL: pg_waldump: error: could not find file \"000000010000000000000005\"";

pub(crate) const THREE_CLOUDS: &str = "platform: {name: sim}
clouds:
  - name: dc1
    status: primary
    hosts: [{name: dc1-pg1, address: 10.0.1.1}, {name: dc1-pg2, address: 10.0.1.2}, {name: dc1-pg3, address: 10.0.1.3}]
  - name: dc2
    status: secondary
    hosts: [{name: dc2-pg1, address: 10.0.2.1}, {name: dc2-pg2, address: 10.0.2.2}, {name: dc2-pg3, address: 10.0.2.3}]
  - name: dc3
    status: secondary
    hosts: [{name: dc3-pg1, address: 10.0.3.1}, {name: dc3-pg2, address: 10.0.3.2}, {name: dc3-pg3, address: 10.0.3.3}]
glb: {fqdn: 10.0.0.5, kind: haproxy, hosts: [{name: glb1, address: 10.0.0.5}]}
# The flips as they run without the site lease; `WITH_SITE_LEASE` drops this.
site: {enabled: false}
";

/// [`THREE_CLOUDS`] with a repository in each cloud, on its third host.
pub(crate) fn with_backups() -> String {
    format!("{THREE_CLOUDS}backup: {{repositories: [{{cloud: dc1, host: dc1-pg3}}, {{cloud: dc2, host: dc2-pg3}}, {{cloud: dc3, host: dc3-pg3}}]}}\n")
}

/// The default lab's design: backups and the site lease.
pub(crate) fn default_lab() -> String {
    with_backups().replace("site: {enabled: false}\n", "")
}

/// [`THREE_CLOUDS`] with the site lease (on by default with three clouds).
pub(crate) fn with_site_lease() -> String {
    THREE_CLOUDS.replace("site: {enabled: false}\n", "")
}

/// A converged fleet as [`Sim::on`] first built it for a design and a
/// release: its directory (design, secrets, PKI) and its world, copied for
/// every later `Sim` of the same design. Keys, certificates and every
/// host's rendered files were a third of the kill-at-every-call tests'
/// CPU. The world names the first directory's paths; it reads no file.
struct Template {
    /// Each entry under the directory, parents first: its relative path,
    /// its mode, and its contents (`None`: a directory).
    entries: Vec<(std::path::PathBuf, u32, Option<Vec<u8>>)>,
    world: World,
}

type Templates = Mutex<std::collections::HashMap<(String, String), Arc<Template>>>;

impl Template {
    fn all() -> &'static Templates {
        static ALL: std::sync::OnceLock<Templates> = std::sync::OnceLock::new();
        ALL.get_or_init(Templates::default)
    }

    fn read(dir: &std::path::Path, world: World) -> Template {
        fn walk(
            root: &std::path::Path,
            at: &std::path::Path,
            out: &mut Vec<(std::path::PathBuf, u32, Option<Vec<u8>>)>,
        ) {
            use std::os::unix::fs::PermissionsExt;
            let mut names: Vec<_> = std::fs::read_dir(at)
                .expect("read the sim's directory")
                .map(|e| e.expect("an entry").path())
                .collect();
            names.sort();
            for p in names {
                let meta = std::fs::symlink_metadata(&p).expect("stat");
                let rel = p.strip_prefix(root).expect("under the root").to_path_buf();
                let mode = meta.permissions().mode() & 0o7777;
                if meta.is_dir() {
                    out.push((rel, mode, None));
                    walk(root, &p, out);
                } else {
                    out.push((rel, mode, Some(std::fs::read(&p).expect("read"))));
                }
            }
        }
        let mut entries = Vec::new();
        walk(dir, dir, &mut entries);
        Template { entries, world }
    }

    fn write(&self, dir: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt;
        for (rel, _, contents) in &self.entries {
            match contents {
                None => std::fs::create_dir(dir.join(rel)).expect("mkdir"),
                Some(bytes) => std::fs::write(dir.join(rel), bytes).expect("write"),
            }
        }
        // Children first: a directory's own mode may forbid writing in it.
        for (rel, mode, _) in self.entries.iter().rev() {
            std::fs::set_permissions(dir.join(rel), std::fs::Permissions::from_mode(*mode)).expect("chmod");
        }
    }
}

/// A design in a private directory (with its secrets file) and the fake
/// fleet it describes, converged.
pub(crate) struct Sim {
    _dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
    pub world: Arc<Mutex<World>>,
    /// Hosts that do not answer SSH.
    pub unreachable: Vec<String>,
}

impl Sim {
    /// The design's fleet on Debian 13, the reference release.
    pub(crate) fn new(design_text: &str) -> Sim {
        Sim::on(design_text, crate::release::DEBIAN13)
    }

    /// The design's fleet, every host running `release`.
    pub(crate) fn on(design_text: &str, release: crate::release::Release) -> Sim {
        let key = (design_text.to_string(), release.os.to_string());
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pgha.yaml");
        let cached = Template::all().lock().expect("templates").get(&key).cloned();
        if let Some(t) = cached {
            t.write(dir.path());
            return Sim {
                _dir: dir,
                path,
                world: Arc::new(Mutex::new(t.world.clone())),
                unreachable: Vec::new(),
            };
        }
        std::fs::write(&path, design_text).expect("write design");
        let design = crate::design::load_mode(&path, crate::design::Mode::AllowNoPrimary)
            .expect("a valid design")
            .design;
        let os = design
            .clouds
            .iter()
            .flat_map(|c| &c.hosts)
            .map(|h| {
                let runs = crate::design::HostRuns {
                    os: release.os.to_string(),
                    configured: None,
                };
                (h.name.clone(), runs)
            })
            .collect();
        let design = design.for_hosts(&os).expect("one release");
        let secrets = Secrets::load_or_generate(&design.secrets_file).expect("secrets");
        let world = World::converged(&design, &secrets);
        for h in world.lock().expect("world").hosts.values_mut() {
            h.os = release.os.to_string();
        }
        let template = Template::read(dir.path(), world.lock().expect("world").clone());
        Template::all()
            .lock()
            .expect("templates")
            .insert(key, Arc::new(template));
        Sim {
            _dir: dir,
            path,
            world,
            unreachable: Vec::new(),
        }
    }

    /// The design as a new pgha process reads it now.
    pub(crate) fn design(&self) -> Design {
        crate::design::load_mode(&self.path, crate::design::Mode::AllowNoPrimary)
            .expect("the design stays valid")
            .design
    }

    /// Edits the design file on disk (a comment), as another operator
    /// might between a command's plan and its question.
    pub(crate) fn edit_design(&self) {
        let text = std::fs::read_to_string(&self.path).expect("the design");
        std::fs::write(&self.path, format!("{text}# edited\n")).expect("write the design");
    }

    /// Cuts a cloud off: its hosts are down and do not answer SSH.
    pub(crate) fn lose_cloud(&mut self, cloud: &str) {
        let mut w = self.world();
        let names: Vec<String> = w
            .hosts
            .iter()
            .filter(|(_, h)| h.cloud.as_deref() == Some(cloud))
            .map(|(n, _)| n.clone())
            .collect();
        for n in &names {
            w.hosts.get_mut(n).expect("known").up = false;
        }
        drop(w);
        self.unreachable.extend(names);
    }

    pub(crate) fn fleet(&self, design: &Design) -> crate::fleet::Fleet {
        let skip: Vec<&str> = self.unreachable.iter().map(String::as_str).collect();
        crate::fleet::Fleet {
            design: design.clone(),
            remotes: remotes(design, &self.world, &skip),
            unreachable: self
                .unreachable
                .iter()
                .map(|h| crate::remote::ConnectError {
                    host: h.clone(),
                    address: "?".into(),
                    reason: "unreachable (fake)".into(),
                    hint: String::new(),
                })
                .collect(),
        }
    }

    /// Reaches the world's hosts as `deploy` reaches real ones.
    pub(crate) fn connector(
        &self,
    ) -> impl Fn(Vec<crate::design::Host>) -> BoxFuture<'static, (Vec<Remote>, Vec<crate::remote::ConnectError>)> + Sync
    {
        let world = self.world.clone();
        let unreachable = self.unreachable.clone();
        move |hosts| {
            let (mut ok, mut failed) = (Vec::new(), Vec::new());
            for h in hosts {
                if unreachable.contains(&h.name) {
                    failed.push(crate::remote::ConnectError {
                        host: h.name.clone(),
                        address: h.address.clone(),
                        reason: "unreachable (fake)".into(),
                        hint: String::new(),
                    });
                } else {
                    ok.push(fake_remote(&h, &world));
                }
            }
            Box::pin(async move { (ok, failed) })
        }
    }

    pub(crate) fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().expect("not poisoned")
    }

    /// What the log says happened, as `host: what` lines.
    pub(crate) fn events(&self) -> Vec<String> {
        self.world()
            .log
            .iter()
            .map(|c| format!("{}: {}", c.host, c.what))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_what_remote_encodes() {
        for s in ["", "a", "ab", "abc", "{\"user\":\"alice\"}"] {
            assert_eq!(decode64(&crate::remote::base64(s.as_bytes())), s.as_bytes());
        }
    }
}

/// The commands the fake answers are built by the product's own builders,
/// so a wrong builder would go unseen there: the ones safety rests on are
/// pinned here as the hosts receive them (issue 24).
#[cfg(test)]
mod pins {
    use crate::components::{patroni, site};

    #[test]
    fn the_commands_safety_rests_on_are_pinned() {
        let d = super::Sim::new(&super::with_site_lease()).design();
        let pinned = [
        (site::take_script(&d, "dc2", 30, site::Revisions::default(), false), "e() { ETCDCTL_API=3 etcdctl --endpoints=https://10.0.1.1:2479,https://10.0.2.1:2479,https://10.0.3.1:2479 --cacert=/etc/pgha/tls/ca.crt --cert=/etc/pgha/tls/host.crt --key=/etc/pgha/tls/etcd.key --command-timeout=3s \"$@\"; }\nid=$(e lease grant 30 | sed -n 's/^lease \\([0-9a-f]*\\) granted.*/\\1/p')\n[ -n \"$id\" ] || { echo 'the sites granted no lease: no quorum among the site members' >&2; exit 1; }\nif e txn <<EOF | head -1 | grep -qx SUCCESS\ncreate(\"/pgha-site/sim/primary\") = \"0\"\n\nput /pgha-site/sim/primary \"{\\\"by\\\":\\\"pgha\\\",\\\"cloud\\\":\\\"dc2\\\"}\" --lease=$id\nput /pgha-site/sim/last \"{\\\"by\\\":\\\"pgha\\\",\\\"cloud\\\":\\\"dc2\\\"}\"\n\n\nEOF\nthen echo taken\nelse e lease revoke \"$id\" >/dev/null 2>&1; echo moved\nfi\n"),
        (site::take_script(&d, "dc2", 30, site::Revisions { primary: 7, sync: 0 }, false), "e() { ETCDCTL_API=3 etcdctl --endpoints=https://10.0.1.1:2479,https://10.0.2.1:2479,https://10.0.3.1:2479 --cacert=/etc/pgha/tls/ca.crt --cert=/etc/pgha/tls/host.crt --key=/etc/pgha/tls/etcd.key --command-timeout=3s \"$@\"; }\nid=$(e lease grant 30 | sed -n 's/^lease \\([0-9a-f]*\\) granted.*/\\1/p')\n[ -n \"$id\" ] || { echo 'the sites granted no lease: no quorum among the site members' >&2; exit 1; }\nif e txn <<EOF | head -1 | grep -qx SUCCESS\nmod(\"/pgha-site/sim/primary\") = \"7\"\n\nput /pgha-site/sim/primary \"{\\\"by\\\":\\\"pgha\\\",\\\"cloud\\\":\\\"dc2\\\"}\" --lease=$id\nput /pgha-site/sim/last \"{\\\"by\\\":\\\"pgha\\\",\\\"cloud\\\":\\\"dc2\\\"}\"\n\n\nEOF\nthen echo taken\nelse e lease revoke \"$id\" >/dev/null 2>&1; echo moved\nfi\n"),
        (site::take_script(&d, "dc2", 30, site::Revisions { primary: 7, sync: 4 }, true), "e() { ETCDCTL_API=3 etcdctl --endpoints=https://10.0.1.1:2479,https://10.0.2.1:2479,https://10.0.3.1:2479 --cacert=/etc/pgha/tls/ca.crt --cert=/etc/pgha/tls/host.crt --key=/etc/pgha/tls/etcd.key --command-timeout=3s \"$@\"; }\nid=$(e lease grant 30 | sed -n 's/^lease \\([0-9a-f]*\\) granted.*/\\1/p')\n[ -n \"$id\" ] || { echo 'the sites granted no lease: no quorum among the site members' >&2; exit 1; }\nif e txn <<EOF | head -1 | grep -qx SUCCESS\nmod(\"/pgha-site/sim/primary\") = \"7\"\nmod(\"/pgha-site/sim/sync\") = \"4\"\n\nput /pgha-site/sim/primary \"{\\\"by\\\":\\\"pgha\\\",\\\"cloud\\\":\\\"dc2\\\"}\" --lease=$id\nput /pgha-site/sim/last \"{\\\"by\\\":\\\"pgha\\\",\\\"cloud\\\":\\\"dc2\\\"}\"\n\n\nEOF\nthen echo taken\nelse e lease revoke \"$id\" >/dev/null 2>&1; echo moved\nfi\n"),
        (site::read_script(&d), "e() { ETCDCTL_API=3 etcdctl --endpoints=https://10.0.1.1:2479,https://10.0.2.1:2479,https://10.0.3.1:2479 --cacert=/etc/pgha/tls/ca.crt --cert=/etc/pgha/tls/host.crt --key=/etc/pgha/tls/etcd.key --command-timeout=3s \"$@\"; }\ne endpoint health 2>&1 | sed -n 's/^\\(https:[^ ]*\\) is \\(healthy\\|unhealthy\\).*/health \\1 \\2/p'\nv=$(e get /pgha-site/sim/primary --print-value-only) || exit 1\n[ -n \"$v\" ] && printf 'primary %s\\n' \"$v\"\nl=$(e get /pgha-site/sim/primary -w fields | sed -n 's/^\"Lease\" : //p')\nif [ -n \"$l\" ] && [ \"$l\" != 0 ]; then\ne lease timetolive \"$(printf '%x' \"$l\")\" | sed -n 's/.*remaining(\\(-*[0-9]*\\)s).*/remaining \\1/p'\nfi\nw=$(e get /pgha-site/sim/last --print-value-only)\n[ -n \"$w\" ] && printf 'last %s\\n' \"$w\"\ny=$(e get /pgha-site/sim/sync --print-value-only) || exit 1\n[ -n \"$y\" ] && printf 'sync %s\\n' \"$y\"\nexit 0\n"),
        (site::revision_script(&d), "e() { ETCDCTL_API=3 etcdctl --endpoints=https://10.0.1.1:2479,https://10.0.2.1:2479,https://10.0.3.1:2479 --cacert=/etc/pgha/tls/ca.crt --cert=/etc/pgha/tls/host.crt --key=/etc/pgha/tls/etcd.key --command-timeout=3s \"$@\"; }\nfor k in /pgha-site/sim/primary /pgha-site/sim/sync; do\nf=$(e get \"$k\" -w fields) || exit 1\nr=$(printf '%s\\n' \"$f\" | sed -n 's/^\"ModRevision\" : //p' | head -1)\nprintf '%s %s\\n' \"${k##*/}\" \"${r:-0}\"\ndone\n"),
        (site::armed_script(), "[ -f /var/lib/pgha/site-armed ] && echo armed || true\n"),
        (patroni::patch_config_script(8008, &[("standby_cluster".into(), "null".into()), ("synchronous_mode".into(), "false".into())]).unwrap(), "python3 - '{\"standby_cluster\":null,\"synchronous_mode\":false}' <<'PGHA_REST'\nimport base64, ssl, sys, urllib.error, urllib.request, yaml\nauth = yaml.safe_load(open(\"/etc/patroni/config.yml\"))[\"restapi\"][\"authentication\"]\ntoken = base64.b64encode((\"%s:%s\" % (auth[\"username\"], auth[\"password\"])).encode()).decode()\ncontext = ssl.create_default_context(cafile=\"/etc/pgha/tls/ca.crt\"); context.load_cert_chain(\"/etc/pgha/tls/host.crt\", \"/etc/pgha/tls/postgres.key\")\ndef call(method, path, body=None, timeout=10):\n    headers = {\"Authorization\": \"Basic \" + token}\n    if body is not None:\n        headers[\"Content-Type\"] = \"application/json\"\n        body = body.encode()\n    request = urllib.request.Request(\"https://127.0.0.1:8008\" + path, data=body, method=method, headers=headers)\n    return urllib.request.urlopen(request, timeout=timeout, context=context).read().decode()\ncall(\"PATCH\", \"/config\", sys.argv[1])\nPGHA_REST"),
        (patroni::switchover_script(8008, "dc2-pg1", "dc2-pg2"), "python3 - '{\"candidate\":\"dc2-pg2\",\"leader\":\"dc2-pg1\"}' <<'PGHA_REST'\nimport base64, ssl, sys, urllib.error, urllib.request, yaml\nauth = yaml.safe_load(open(\"/etc/patroni/config.yml\"))[\"restapi\"][\"authentication\"]\ntoken = base64.b64encode((\"%s:%s\" % (auth[\"username\"], auth[\"password\"])).encode()).decode()\ncontext = ssl.create_default_context(cafile=\"/etc/pgha/tls/ca.crt\"); context.load_cert_chain(\"/etc/pgha/tls/host.crt\", \"/etc/pgha/tls/postgres.key\")\ndef call(method, path, body=None, timeout=10):\n    headers = {\"Authorization\": \"Basic \" + token}\n    if body is not None:\n        headers[\"Content-Type\"] = \"application/json\"\n        body = body.encode()\n    request = urllib.request.Request(\"https://127.0.0.1:8008\" + path, data=body, method=method, headers=headers)\n    return urllib.request.urlopen(request, timeout=timeout, context=context).read().decode()\ntry:\n    print(call(\"POST\", \"/switchover\", sys.argv[1], timeout=60))\nexcept urllib.error.HTTPError as e:\n    sys.exit(\"Patroni did not switch over (%s): %s\" % (e.code, e.read().decode(errors=\"replace\").strip()))\nexcept Exception as e:\n    sys.exit(\"no answer from Patroni (%s): whether the switchover happened is not known\" % e)\nPGHA_REST"),
        (patroni::failover_script("sim-dc2", "dc2-pg2"), "patronictl -c /etc/patroni/config.yml failover sim-dc2 --candidate dc2-pg2 --force"),
        (patroni::release_hold_script(true), "rm -f /var/lib/pgha/needs-recovery && systemctl start patroni"),
        (patroni::release_hold_script(false), "rm -f /var/lib/pgha/needs-recovery"),
        (patroni::hold_script(), "systemctl is-active --quiet patroni && echo was-running\ninstall -D -m 644 \"$PGHA_INPUT\" /var/lib/pgha/needs-recovery && systemctl stop patroni"),
        (crate::fleet::server_role_script(5432, "/var/lib/postgresql/17/main", "/usr/lib/postgresql/17/bin"), "cd / && err=$(mktemp) || exit 1\ntrap 'rm -f \"$err\"' EXIT\nif out=$(runuser -u postgres -- psql -p 5432 -XAtq -c 'select pg_is_in_recovery()' 2>\"$err\"); then echo \"$out\"; exit 0; fi\nrunuser -u postgres -- /usr/lib/postgresql/17/bin/pg_ctl -D /var/lib/postgresql/17/main status >/dev/null 2>&1\ncase $? in 3|4) echo down; exit 0 ;; esac\ncat \"$err\" >&2\nexit 1\n"),
        ];
        for (i, (built, pin)) in pinned.iter().enumerate() {
            assert_eq!(built, pin, "pin {i}");
        }
    }
}
