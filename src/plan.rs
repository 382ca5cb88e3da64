//! The deployment plan: plain data computed from the design before anything
//! runs. Primary cloud first, then each secondary cloud, then the GLB.

use serde::Serialize;

use crate::components::{self, packages, site, Component, DB_HOST_FILES, GLB_HOST_FILES};
use crate::design::{Cloud, CloudStatus, Design, GlbKind, VersionSource};
use crate::release;

/// What a step does. The runner dispatches on this; the plan only lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    InstallPackages,
    /// The trust bundle, the host's certificate and its keys.
    InstallCertificates,
    ConfigureEtcd,
    /// Start Patroni on the first host: it initialises the cluster (primary
    /// cloud) or clones the standby cluster from the primary cloud.
    BootstrapLeader,
    /// Start Patroni on the other hosts: they clone and stream.
    JoinReplicas,
    /// The site gate on a cloud's database hosts, before HAProxy names it.
    ConfigureSiteGate,
    ConfigureHaproxy,
    /// etcd's users and roles in the cloud's etcd, then authentication on.
    SecureEtcd,
    /// Wait until the cloud is what the design says.
    VerifyCloud,
    /// The witness: etcd and its certificate.
    InstallWitness,
    /// The site members (each cloud's first host and the witness).
    ConfigureSite,
    /// The site agent on every database host.
    ConfigureSiteAgents,
    /// etcd's users and roles in the site etcd, then authentication on.
    SecureSite,
    /// Wait until the design's primary cloud holds the site lease.
    VerifySite,
    /// pgBackRest on a cloud's database hosts: its config and TLS server.
    ConfigurePgbackrest,
    /// The repository hosts: pgBackRest, its server and the backup timers.
    ConfigureRepositories,
    /// Create the stanza and take the first full backup where there is none.
    InitRepositories,
    /// `pgbackrest check` from each repository: the archive works.
    VerifyBackup,
    /// The metrics exporter on a cloud's database hosts (and its role).
    ConfigureExporter,
    /// The backup metrics' timer on every database host, once the
    /// repositories hold their first backups.
    ConfigureBackupMetrics,
    /// PgBouncer on a cloud's database hosts.
    ConfigurePgbouncer,
    /// The cloud's virtual IP: vip-manager and the loop that names the
    /// leader for it (or, for a cloud without one, their units removed).
    ConfigureVip,
    /// Hosts the design no longer lists leave their cloud: etcd member
    /// removed first, then their services stopped.
    RemoveHosts,
    /// The design's PostgreSQL parameters into each cloud's dynamic
    /// configuration, then the rolling restarts they need.
    ApplyParameters,
    /// The design's roles, databases and extensions on the master.
    ConfigureObjects,
    ConfigureGlb,
    RunGlbCommand,
    VerifyGlb,
}

impl Action {
    pub fn component(self) -> Component {
        match self {
            Action::InstallPackages => Component::Packages,
            Action::InstallCertificates => Component::Tls,
            Action::ConfigureEtcd | Action::SecureEtcd => Component::Etcd,
            Action::BootstrapLeader | Action::JoinReplicas | Action::ApplyParameters => Component::Governor,
            Action::ConfigureHaproxy => Component::Haproxy,
            Action::VerifyCloud => Component::Cluster,
            Action::InstallWitness
            | Action::ConfigureSite
            | Action::ConfigureSiteAgents
            | Action::ConfigureSiteGate
            | Action::SecureSite
            | Action::VerifySite => Component::Site,
            Action::ConfigurePgbackrest
            | Action::ConfigureRepositories
            | Action::InitRepositories
            | Action::VerifyBackup => Component::Backup,
            Action::ConfigureGlb | Action::RunGlbCommand | Action::VerifyGlb => Component::Glb,
            Action::ConfigureExporter | Action::ConfigureBackupMetrics => Component::Metrics,
            Action::ConfigurePgbouncer => Component::Pooler,
            Action::ConfigureVip => Component::Vip,
            Action::RemoveHosts | Action::ConfigureObjects => Component::Cluster,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::InstallPackages => "install",
            Action::InstallCertificates => "install",
            Action::ConfigureEtcd => "configure",
            Action::BootstrapLeader => "bootstrap",
            Action::JoinReplicas => "join",
            Action::ConfigureHaproxy => "configure",
            Action::VerifyCloud => "verify",
            Action::InstallWitness => "install",
            Action::ConfigureSite => "configure",
            Action::ConfigureSiteAgents => "agents",
            Action::ConfigureSiteGate => "gate",
            Action::SecureEtcd | Action::SecureSite => "access",
            Action::VerifySite => "verify",
            Action::ConfigurePgbackrest => "configure",
            Action::ConfigureRepositories => "repositories",
            Action::InitRepositories => "stanza",
            Action::VerifyBackup => "verify",
            Action::ConfigureGlb => "configure",
            Action::RunGlbCommand => "repoint",
            Action::VerifyGlb => "verify",
            Action::ApplyParameters => "parameters",
            Action::ConfigureExporter => "exporter",
            Action::ConfigureBackupMetrics => "backups",
            Action::ConfigurePgbouncer => "pgbouncer",
            Action::ConfigureVip => "vip",
            Action::RemoveHosts => "remove",
            Action::ConfigureObjects => "objects",
        }
    }

    /// Does this step change hosts (as opposed to only observing them)?
    pub fn changes_hosts(self) -> bool {
        !matches!(
            self,
            Action::VerifyCloud | Action::VerifyGlb | Action::VerifySite | Action::VerifyBackup
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub number: usize,
    /// `None` for GLB steps.
    pub cloud: Option<String>,
    pub cloud_status: Option<CloudStatus>,
    pub component: Component,
    pub action: Action,
    pub hosts: Vec<String>,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub cluster: String,
    pub steps: Vec<Step>,
}

impl Plan {
    /// The deployment plan for the whole design.
    pub fn deployment(design: &Design) -> Plan {
        Self::for_clouds(design, &design.clouds_in_order(), true)
    }

    /// The plan for some clouds only (and the GLB when `with_glb`). The
    /// site lease comes with the whole cluster only: it spans every cloud.
    pub fn for_clouds(design: &Design, clouds: &[&Cloud], with_glb: bool) -> Plan {
        let mut b = Builder::default();
        let all = clouds.len() == design.clouds.len();
        if all {
            // Before any database host starts: its replicas try the
            // repositories first, and its archive and restore commands use them.
            repository_steps(&mut b, design);
        }
        for cloud in clouds {
            cloud_steps(&mut b, design, cloud);
        }
        parameter_steps(&mut b, design, clouds);
        object_steps(&mut b, design, clouds);
        if all {
            site_steps(&mut b, design);
            backup_steps(&mut b, design);
        }
        if with_glb {
            glb_steps(&mut b, design);
        }
        Plan {
            cluster: design.platform.name.clone(),
            steps: b.steps,
        }
    }
}

#[derive(Default)]
struct Builder {
    steps: Vec<Step>,
}

impl Builder {
    fn push(&mut self, cloud: Option<&Cloud>, action: Action, hosts: Vec<String>, description: String) {
        self.steps.push(Step {
            number: self.steps.len() + 1,
            cloud: cloud.map(|c| c.name.clone()),
            cloud_status: cloud.map(|c| c.status),
            component: action.component(),
            action,
            hosts,
            description,
        });
    }
}

fn cloud_steps(b: &mut Builder, design: &Design, cloud: &Cloud) {
    let names: Vec<String> = cloud.hosts.iter().map(|h| h.name.clone()).collect();
    let c = Some(cloud);
    let haproxy_file = DB_HOST_FILES[9];
    b.push(c, Action::InstallPackages, names.clone(), install_description(design));
    b.push(
        c,
        Action::InstallCertificates,
        names.clone(),
        format!(
            "write the cluster CA, each host's certificate and keys under {} (issued or renewed by pgha when missing, \
             expiring within 30 days or lacking a name); services that read them restart (etcd, one at a time) or reload",
            components::tls::DIR
        ),
    );
    b.push(
        c,
        Action::RemoveHosts,
        Vec::new(),
        "remove hosts the design no longer lists (found in the cloud's etcd): never its leader, one at a time, \
         each only while the remaining etcd members keep a quorum; the etcd member goes first, then Patroni (and \
         PostgreSQL), etcd, HAProxy and the exporter are stopped and disabled there; its data directory stays"
            .to_string(),
    );
    if let Some(backup) = &design.backup {
        b.push(
            c,
            Action::ConfigurePgbackrest,
            names.clone(),
            format!(
                "write {} and PostgreSQL's restore_command {}, run pgBackRest's TLS server (:{}) for the repositories",
                components::backup::CONFIG.path,
                components::backup::RESTORE_WAL.path,
                backup.port
            ),
        );
    }
    etcd_steps(b, design, cloud, &names);
    if let Some(site) = &design.site {
        // Before HAProxy on any host of the cloud names it in its checks.
        b.push(
            c,
            Action::ConfigureSiteGate,
            names.clone(),
            format!(
                "write {} and {}, run the site gate (TLS :{}{}): it answers 200 while this host's last site lease \
                 renewal is younger than {:.1} s, and HAProxy and the GLB route to a master only then",
                site::GATE.path,
                site::GATE_UNIT.path,
                site.gate_port,
                site::GATE_PATH,
                site::gate_bound(site.ttl)
            ),
        );
    }
    // Before Patroni: with a site lease a standby cloud's leader clones and
    // streams through its own host's HAProxy.
    b.push(
        c,
        Action::ConfigureHaproxy,
        names.clone(),
        format!(
            "write {}, route :{} to the read-write master{} (Patroni /primary on :{}){}",
            haproxy_file.path,
            design.haproxy.port,
            if design.site.is_some() { " of any cloud" } else { "" },
            design.governor.rest_port,
            design.exporter.as_ref().map_or(String::new(), |e| format!(
                "; serve etcd's, Patroni's{} metrics on :{} (TLS, clients of the metrics CA only)",
                if design.site.is_some() {
                    ", HAProxy's and the site lease's"
                } else {
                    " and HAProxy's"
                },
                e.gateway_port
            ))
        ),
    );
    governor_steps(b, design, cloud, &names);
    if let Some(e) = &design.exporter {
        let role = if cloud.is_primary() {
            format!(
                "create the role {} (pg_monitor) on the master where no exporter logs in, ",
                crate::secrets::MONITOR_USER
            )
        } else {
            String::new()
        };
        b.push(
            c,
            Action::ConfigureExporter,
            names,
            format!(
                "{role}write {}, {}, {} and {}, (re)start {} on port {} (TLS, clients of the metrics CA only); \
                 write {}, (re)start {} on 127.0.0.1:{}; run {} (the certificates' expiry, from the files, every minute)",
                components::exporter::METRICS_CA.path,
                components::exporter::KEY.path,
                components::exporter::WEB.path,
                components::exporter::ENV.path,
                components::exporter::SERVICE,
                e.port,
                components::exporter::NODE_ENV.path,
                components::exporter::NODE_SERVICE,
                e.node_port,
                components::exporter::CERT_METRICS_TIMER_UNIT
            ),
        );
    }
    if let Some(p) = &design.pgbouncer {
        b.push(
            c,
            Action::ConfigurePgbouncer,
            cloud.hosts.iter().map(|h| h.name.clone()).collect(),
            format!(
                "write {} and {}, run PgBouncer on :{} ({} pooling, TLS both ways): clients' own roles, \
                 server connections through this host's HAProxy :{} to the master; reloaded on change",
                components::pgbouncer::CONFIG.path,
                components::pgbouncer::USERLIST.path,
                p.port,
                match p.pool_mode {
                    crate::design::PoolMode::Transaction => "transaction",
                    crate::design::PoolMode::Session => "session",
                },
                design.haproxy.port
            ),
        );
    }
    if components::vip::any(design) {
        let description = match &cloud.vip {
            Some(v) => format!(
                "hold {}/{} on {} of the cloud's leader: etcd key {} names it (written by {}), {} moves the address",
                v.address,
                v.netmask,
                v.interface,
                components::vip::key(&design.platform.name, &cloud.name),
                components::vip::LEADER_SERVICE,
                components::vip::MANAGER_SERVICE,
            ),
            None => format!(
                "no virtual IP in this cloud: {} and {} removed where they run",
                components::vip::MANAGER_SERVICE,
                components::vip::LEADER_SERVICE
            ),
        };
        b.push(
            c,
            Action::ConfigureVip,
            cloud.hosts.iter().map(|h| h.name.clone()).collect(),
            description,
        );
    }
}

/// What installing a database host's packages says: with the PostgreSQL
/// major of the hosts' release (not known before they are read), or the
/// design's own.
fn install_description(design: &Design) -> String {
    match design.platform.version_source {
        // Not known before the hosts are read.
        VersionSource::Reference => format!(
            "install postgresql-N (N: the hosts' release's, {}), {} where missing",
            release::SUPPORTED
                .iter()
                .map(|r| format!("{} on {}", r.postgres, r.os))
                .collect::<Vec<_>>()
                .join(", "),
            packages::STACK
                .iter()
                .chain(design.backup.iter().map(|_| &packages::BACKUP))
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => format!("install {} where missing", packages::db_host_of(design).join(", ")),
    }
}

/// The cloud's etcd cluster, then its users (before Patroni logs in).
fn etcd_steps(b: &mut Builder, design: &Design, cloud: &Cloud, names: &[String]) {
    let c = Some(cloud);
    let etcd_file = DB_HOST_FILES[5];
    b.push(
        c,
        Action::ConfigureEtcd,
        names.to_vec(),
        format!(
            "write {}, run the {}-member etcd cluster of {} (client :{}, peer :{})",
            etcd_file.path,
            names.len(),
            cloud.name,
            design.etcd.client_port,
            design.etcd.peer_port
        ),
    );
    b.push(
        c,
        Action::SecureEtcd,
        names.to_vec(),
        format!(
            "etcd users: {}'s hosts by certificate (root), Patroni by password (only {}{}/); authentication on, \
             before Patroni starts (it logs in from its first request); set from one member (one whose name is a \
             user already, once there are users)",
            cloud.name,
            components::patroni::NAMESPACE,
            design.platform.name
        ),
    );
}

/// Patroni: the cloud's first host leads (master or standby leader), the
/// others clone from it, then the cloud is verified.
fn governor_steps(b: &mut Builder, design: &Design, cloud: &Cloud, names: &[String]) {
    let c = Some(cloud);
    let [_, _, _, _, _, _, fence_file, _, patroni_file, _] = DB_HOST_FILES;
    let (first, rest) = names.split_first().expect("a validated cloud has hosts");
    let bootstrap = match cloud.status {
        CloudStatus::Primary => format!(
            "write {} and {}, start Patroni on {first}: it initialises cluster {} or rejoins it",
            patroni_file.path, fence_file.path, design.platform.name
        ),
        CloudStatus::Secondary => {
            let primary = design.primary_clouds().next().map_or("-", |p| p.name.as_str());
            format!(
                "write {} and {}, start Patroni on {first} as standby leader, following {primary}'s master through HAProxy :{}",
                patroni_file.path, fence_file.path, design.haproxy.port
            )
        }
    };
    b.push(c, Action::BootstrapLeader, vec![first.clone()], bootstrap);
    if !rest.is_empty() {
        let from = match cloud.status {
            CloudStatus::Primary => "the master",
            CloudStatus::Secondary => "the standby leader",
        };
        b.push(
            c,
            Action::JoinReplicas,
            rest.to_vec(),
            format!(
                "write {} and {}, start Patroni: replicas clone from {from} and stream",
                patroni_file.path, fence_file.path
            ),
        );
    }
    let verify = match cloud.status {
        CloudStatus::Primary => "wait for one leader, streaming replicas and HAProxy routing to the leader",
        CloudStatus::Secondary => "wait for a standby leader streaming from the primary cloud, and its replicas",
    };
    b.push(c, Action::VerifyCloud, names.to_vec(), verify.to_string());
}

/// The design's roles and databases, made on the master once its cloud
/// runs; they reach the standby clouds by replication.
fn object_steps(b: &mut Builder, design: &Design, clouds: &[&Cloud]) {
    let o = design.managed_objects();
    let Some(primary) = clouds.iter().find(|c| c.is_primary()) else {
        return;
    };
    if o.is_empty() {
        return;
    }
    b.push(
        Some(primary),
        Action::ConfigureObjects,
        primary.hosts.iter().map(|h| h.name.clone()).collect(),
        format!(
            "on the master: create or alter the design's {} role(s) (passwords as SCRAM verifiers), {} database(s) \
             and their extensions; drop roles marked absent; report roles, databases and extensions the design \
             does not know (kept)",
            o.roles.len(),
            o.databases.len()
        ),
    );
}

/// After every cloud runs: raising a setting that hot standby needs at
/// least the primary's reaches the standby clouds first.
fn parameter_steps(b: &mut Builder, design: &Design, clouds: &[&Cloud]) {
    if design.platform.parameters.is_empty() {
        return;
    }
    let hosts: Vec<String> = clouds
        .iter()
        .flat_map(|c| c.hosts.iter().map(|h| h.name.clone()))
        .collect();
    let how = match design.governor.leader_restart {
        crate::design::LeaderRestart::Restart => "restarted in place",
        crate::design::LeaderRestart::Switchover => "left by a switchover to a restarted replica",
    };
    b.push(
        None,
        Action::ApplyParameters,
        hosts,
        format!(
            "set platform.parameters in each cloud's Patroni dynamic configuration where they differ; a setting that \
             needs a restart restarts every member, replicas first and the primary cloud's master {how} (raising \
             max_connections and the like: standby clouds first; lowering it: leaders first)"
        ),
    );
}

fn site_steps(b: &mut Builder, design: &Design) {
    let Some(site) = &design.site else { return };
    let [env, _, settings, agent, _, fence, _, _, _] = site::DB_HOST_FILES;
    if let Some(w) = &site.witness {
        b.push(
            None,
            Action::InstallWitness,
            vec![w.name.clone()],
            format!(
                "install {} where missing, write the cluster CA and the witness's certificate and key under {}",
                site::witness_packages().join(", "),
                components::tls::DIR
            ),
        );
    }
    let members: Vec<String> = design.site_members().iter().map(|(_, h)| h.name.clone()).collect();
    b.push(
        None,
        Action::ConfigureSite,
        members.clone(),
        format!(
            "write {}, run the {}-member site etcd cluster (client :{}, peer :{}) that holds the site lease",
            env.path,
            members.len(),
            site.client_port,
            site.peer_port
        ),
    );
    // Before the agents: they log in from their first request.
    let access = site::access(design);
    b.push(
        None,
        Action::SecureSite,
        access.roots.clone(),
        format!(
            "site etcd users: {} by certificate (root), the agents by password (only {}){}; authentication on",
            access.roots.join(", "),
            access.prefix,
            if access.readers.is_empty() {
                String::new()
            } else {
                format!(", {} reads it", access.readers.join(", "))
            }
        ),
    );
    let all: Vec<String> = design
        .clouds
        .iter()
        .flat_map(|c| c.hosts.iter().map(|h| h.name.clone()))
        .collect();
    b.push(
        None,
        Action::ConfigureSiteAgents,
        all,
        format!(
            "write {} and {}, run the site agent: the primary's master renews the lease (ttl {} s) and fences after {:.0} s without renewal{}; \
             write {}, run the site fence: a primary whose last renewal is {} s old stops, whatever became of the agent",
            settings.path,
            agent.path,
            site.ttl,
            site.fence_after(),
            if site.auto_failover { "; a caught-up standby leader takes an expired lease" } else { "" },
            fence.path,
            site::fence_bound(site.ttl),
        ),
    );
    let primary = design.primary_clouds().next().map_or("-", |p| p.name.as_str());
    b.push(
        None,
        Action::VerifySite,
        members,
        format!(
            "wait until the site members are healthy, {primary} holds the site lease and every database host's site \
             agent has reached the site (its fences armed)"
        ),
    );
}

fn repository_steps(b: &mut Builder, design: &Design) {
    use crate::components::backup;
    let Some(bk) = &design.backup else { return };
    let names: Vec<String> = bk.repositories.iter().map(|r| r.host.name.clone()).collect();
    let schedule: Vec<String> = backup::Kind::ALL
        .iter()
        .filter_map(|k| k.schedule(bk).map(|s| format!("{} `{s}`", k.as_str())))
        .collect();
    b.push(
        None,
        Action::ConfigureRepositories,
        names,
        format!(
            "install {} where missing, write {} and the certificate, run pgBackRest's TLS server (:{}); \
             backup timers: {}",
            backup::repository_packages().join(", "),
            backup::CONFIG.path,
            bk.port,
            if schedule.is_empty() {
                "none".to_string()
            } else {
                schedule.join(", ")
            }
        ),
    );
}

fn backup_steps(b: &mut Builder, design: &Design) {
    use crate::components::backup;
    let Some(bk) = &design.backup else { return };
    let names: Vec<String> = bk.repositories.iter().map(|r| r.host.name.clone()).collect();
    b.push(
        None,
        Action::InitRepositories,
        names.clone(),
        format!(
            "create stanza {} where missing and take a first full backup into each repository that has none",
            backup::stanza(design)
        ),
    );
    b.push(
        None,
        Action::VerifyBackup,
        names,
        "pgbackrest check from each repository: a WAL segment the master switches to reaches it (a deploy that changes \
         nothing reads the master's archiver instead: no failure since its last success)"
            .to_string(),
    );
    if design.exporter.is_some() {
        // After the first backups: a new repository is not reported empty
        // while its first full backup runs.
        b.push(
            None,
            Action::ConfigureBackupMetrics,
            design
                .clouds
                .iter()
                .flat_map(|c| c.hosts.iter().map(|h| h.name.clone()))
                .collect(),
            format!(
                "write {} and {}, run {} (what each repository holds, for Prometheus: soon, then every 5 minutes)",
                backup::METRICS_CODE.path,
                backup::METRICS_SETTINGS.path,
                backup::METRICS_TIMER_UNIT
            ),
        );
    }
}

fn glb_steps(b: &mut Builder, design: &Design) {
    let Some(glb) = &design.glb else { return };
    let primary = design.primary_clouds().next();
    let target = match primary {
        _ if design.site.is_some() => format!(
            "the HAProxy (:{}) on the master's host, in whichever cloud holds the site lease",
            design.haproxy.port
        ),
        Some(p) => format!("{}'s HAProxy instances (:{})", p.name, design.haproxy.port),
        None => "nothing (no cloud is primary)".to_string(),
    };
    match &glb.kind {
        GlbKind::Haproxy { hosts } => {
            let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
            b.push(
                None,
                Action::ConfigureGlb,
                names.clone(),
                format!(
                    "write {}: {}:{} -> {target}",
                    GLB_HOST_FILES[0].path, glb.fqdn, glb.port
                ),
            );
            b.push(
                None,
                Action::VerifyGlb,
                names,
                format!("wait until {}:{} reaches the master", glb.fqdn, glb.port),
            );
        }
        GlbKind::External { .. } => {
            b.push(
                None,
                Action::RunGlbCommand,
                Vec::new(),
                format!("run the external GLB command: {}:{} -> {target}", glb.fqdn, glb.port),
            );
        }
    }
}
