//! From plan + facts to the work each host must do. Pure: facts in, work out,
//! so "a second run changes nothing" is decided here and unit-tested here.

use std::collections::BTreeMap;

use super::facts::{distro_unit, HostFacts};
use crate::components::{self, backup, patroni, site, tls, FileSpec};
use crate::design::{Cloud, Design, GlbKind, LeaderRestart, Replication};
use crate::plan::{Action, Plan, Step};
use crate::render::RenderedFile;

/// One thing to do on one host.
#[derive(Debug, Clone)]
pub(crate) enum Work {
    InstallPackages(Vec<String>),
    /// Stop and disable the package's default cluster; its data stays.
    DisableDistroCluster(String),
    /// A precondition, not a change: these ports must be free for the service.
    RequirePortsFree(Vec<(u16, &'static str)>),
    WriteFile(RenderedFile),
    /// The content is right, but owner, group or mode are not: no service
    /// needs to hear of it.
    FixFileMode(FileSpec),
    /// Join a running etcd cluster: `member add`, then start with state `existing`.
    EtcdJoin,
    Enable(&'static str),
    /// Stop and disable a unit pgha does not run (a package's own).
    Disable(&'static str),
    Start(&'static str),
    Restart(&'static str),
    Reload(&'static str),
    /// systemd rereads its unit files (a drop-in changed).
    DaemonReload,
    PatchDynamicConfig(Vec<(String, String)>),
    RunGlbCommand(String),
    /// Stop and disable the unit, remove its file (a timer no longer scheduled).
    Remove(FileSpec),
    /// `pgbackrest stanza-create` on a repository host.
    CreateStanza,
    /// A full backup into a repository that has none.
    FirstBackup,
    /// The design's PostgreSQL parameters into one cloud's dynamic
    /// configuration, then the restarts they need.
    ApplyParameters(ParamWork),
    /// The metrics exporter's role, with the secrets file's password, on
    /// the cloud's master.
    MonitorRole,
    /// The design's roles, databases and extensions on the master: these
    /// changes, or (`None`, the master's were not read) what differs then.
    ApplyObjects(Option<Vec<components::objects::Change>>),
    /// A host no longer in the design: out of its cloud's etcd, then its
    /// services stopped and disabled (its data directory kept).
    RemoveHost(Removal),
    /// etcd's users and roles, then authentication on, in a cloud's etcd or
    /// (`site`) the site etcd, from this host's member.
    SecureEtcd {
        access: components::etcd::Access,
        site: bool,
    },
    /// etcd's v2 users and guest role, then v2 authentication on, in the
    /// cloud's etcd (it serves v2 for the virtual IP), from this host.
    SecureVip,
}

/// A member of a cloud's etcd that the design no longer lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Removal {
    pub id: String,
    pub name: String,
    /// From its peer URL; `None` when that is not an address pgha wrote.
    pub address: Option<String>,
    /// Its PostgreSQL data directory is deleted too (`--delete-removed-data`).
    pub delete_data: bool,
}

/// One cloud's share of a parameter change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParamWork {
    pub cloud: String,
    /// `(name, value)`: the design's value of each parameter whose live one differs.
    pub sets: Vec<(String, String)>,
    /// A changed parameter has the context `postmaster`: every member restarts.
    pub restart: bool,
    /// Lowering a setting that a hot standby needs at least as high as its
    /// upstream: the leader restarts first, then its replicas. Otherwise
    /// replicas first, the leader last.
    pub leader_first: bool,
    /// The primary cloud's master is left by a switchover to a restarted
    /// replica instead of restarting in place (`governor.leader_restart`).
    pub switchover: bool,
}

impl ParamWork {
    fn describe(&self) -> String {
        let names: Vec<&str> = self.sets.iter().map(|(k, _)| k.as_str()).collect();
        let mut s = format!("set {}", names.join(", "));
        if self.restart {
            s.push_str(match (self.leader_first, self.switchover) {
                (true, _) => "; restart every member, the leader first",
                (false, true) => "; restart the replicas, then switch over to one",
                (false, false) => "; restart every member, the leader last",
            });
        } else {
            s.push_str(" (reload)");
        }
        s
    }
}

impl Work {
    pub(crate) fn is_change(&self) -> bool {
        !matches!(self, Work::RequirePortsFree(_))
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Work::InstallPackages(p) => format!("install {}", p.join(" ")),
            Work::DisableDistroCluster(u) => format!("stop and disable {u} (data kept)"),
            Work::RequirePortsFree(p) => {
                let ports: Vec<String> = p.iter().map(|(port, _)| port.to_string()).collect();
                format!("check ports {} are free", ports.join(", "))
            }
            Work::WriteFile(f) => format!("write {}", f.spec.path),
            Work::FixFileMode(s) => format!("set owner {}:{} and mode {:o} on {}", s.owner, s.group, s.mode, s.path),
            Work::EtcdJoin => "join the running etcd cluster (member add)".into(),
            Work::Enable(s) => format!("enable {s}"),
            Work::Disable(s) => format!("stop and disable {s}"),
            Work::Start(s) => format!("start {s}"),
            Work::Restart(s) => format!("restart {s}"),
            Work::Reload(s) => format!("reload {s}"),
            Work::DaemonReload => "reload systemd units".into(),
            Work::PatchDynamicConfig(sets) => {
                let keys: Vec<&str> = sets.iter().map(|(k, _)| k.as_str()).collect();
                format!("set dynamic config {}", keys.join(", "))
            }
            Work::RunGlbCommand(_) => "run the external GLB command".into(),
            Work::Remove(s) => format!("stop {} and remove {}", s.service, s.path),
            Work::CreateStanza => "create the stanza".into(),
            Work::FirstBackup => "take a full backup".into(),
            Work::ApplyParameters(p) => p.describe(),
            Work::RemoveHost(r) => format!(
                "remove {} from the cloud's etcd (member {}), then stop and disable its services ({})",
                r.name,
                r.id,
                if r.delete_data {
                    "its PostgreSQL data deleted"
                } else {
                    "data kept"
                }
            ),
            Work::SecureEtcd { access, .. } => format!(
                "set etcd's users ({} root by certificate, {} by password on {}) and turn authentication on",
                access.roots.join(", "),
                access.user,
                access.prefix
            ),
            Work::SecureVip => "set etcd's v2 users (the cloud's hosts root by certificate, any other certificate \
                                reading /pgha-vip/* only) and turn v2 authentication on"
                .into(),
            Work::MonitorRole => format!(
                "create or update the role {} on the master",
                crate::secrets::MONITOR_USER
            ),
            Work::ApplyObjects(None) => {
                "on the master: create or alter what differs from the design's roles and databases".into()
            }
            Work::ApplyObjects(Some(changes)) => {
                let all: Vec<String> = changes.iter().map(components::objects::Change::describe).collect();
                format!("on the master: {}", all.join(", "))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct HostWork {
    pub host: String,
    pub items: Vec<Work>,
}

impl HostWork {
    pub(crate) fn changes(&self) -> bool {
        self.items.iter().any(Work::is_change)
    }

    pub(crate) fn describe(&self) -> String {
        let changes: Vec<String> = self
            .items
            .iter()
            .filter(|w| w.is_change())
            .map(Work::describe)
            .collect();
        if changes.is_empty() {
            "unchanged".into()
        } else {
            changes.join(", ")
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StepWork {
    pub step: Step,
    pub hosts: Vec<HostWork>,
    /// One host at a time, each followed by the step's health wait: a running
    /// etcd cluster must keep quorum while its members restart or join.
    pub serial: bool,
}

impl StepWork {
    pub(crate) fn changes(&self) -> bool {
        self.hosts.iter().any(HostWork::changes)
    }
}

/// What pgha knows about a cloud as a whole.
#[derive(Debug, Clone, Default)]
pub(crate) struct CloudFacts {
    /// Patroni's dynamic configuration, when a member answers.
    pub dynamic_config: Option<serde_json::Value>,
    /// The design's parameters PostgreSQL knows, with their context, from a
    /// member where it runs (see [`HostFacts::pg_contexts`]).
    pub pg_contexts: BTreeMap<String, String>,
    /// The cloud's etcd members, from a member that listed them.
    pub etcd_members: Vec<components::etcd::MemberRow>,
    /// Patroni's members, from one that answered.
    pub patroni_members: Vec<patroni::Member>,
}

pub(crate) fn sha256(content: &str) -> String {
    crate::fsutil::sha256_hex(content.as_bytes())
}

/// Everything needed to decide.
pub(crate) struct Inputs<'a> {
    pub design: &'a Design,
    pub plan: &'a Plan,
    pub facts: &'a BTreeMap<String, HostFacts>,
    pub cloud_facts: &'a BTreeMap<String, CloudFacts>,
    pub files: &'a BTreeMap<String, Vec<RenderedFile>>,
    /// Last GLB target recorded for an external GLB.
    pub glb_applied: Option<&'a str>,
    /// A removed host's PostgreSQL data directory is deleted, not kept.
    pub delete_removed_data: bool,
    /// For the etcd users' passwords (their digests, see `etcd::Access`).
    pub secrets: &'a crate::secrets::Secrets,
    /// What the design's roles and databases need on the master, when its
    /// were read.
    pub objects: Option<&'a components::objects::Diff>,
}

pub(crate) fn compute(i: &Inputs) -> Vec<StepWork> {
    i.plan
        .steps
        .iter()
        .map(|step| {
            let cloud = step.cloud.as_deref().and_then(|c| i.design.cloud(c));
            let hosts = match step.action {
                Action::RunGlbCommand => vec![glb_command_work(i)],
                Action::ApplyParameters => parameters_work(i, step),
                Action::RemoveHosts => cloud.map(|c| removal_work(i, c)).unwrap_or_default(),
                Action::ConfigureObjects => vec![objects_work(i, step)],
                _ => step.hosts.iter().map(|h| host_work(i, step, cloud, h)).collect(),
            };
            // A running etcd cluster keeps quorum: its members change one at a time.
            let serial = match step.action {
                Action::ConfigureEtcd => cloud.is_some_and(|c| etcd_exists(i, c)),
                Action::ConfigureSite => step
                    .hosts
                    .iter()
                    .any(|h| i.facts.get(h).is_some_and(|f| f.site_initialized)),
                // Each repository's stanza-create and backup take locks on
                // the database hosts: one repository at a time. Clouds
                // take parameters in the order that keeps standbys running.
                Action::InitRepositories | Action::ApplyParameters => true,
                // One member out at a time, quorum checked before each.
                Action::RemoveHosts => true,
                _ => false,
            };
            StepWork {
                step: step.clone(),
                hosts,
                serial,
            }
        })
        .collect()
}

fn file<'a>(i: &'a Inputs, host: &str, spec: &FileSpec) -> &'a RenderedFile {
    crate::render::pick(&i.files[host], spec)
}

/// Write the file if its content differs, or set its owner and mode if only
/// they differ (a 0644 Patroni config shows the passwords to every user);
/// says whether the content changed.
fn write_if_differs(items: &mut Vec<Work>, facts: &HostFacts, f: &RenderedFile) -> bool {
    let s = &f.spec;
    match facts.file(s.path) {
        Some(have) if have.sha256 == sha256(&f.content) => {
            if have.meta != super::facts::meta(s.owner, s.group, s.mode) {
                items.push(Work::FixFileMode(f.spec));
            }
            false
        }
        _ => {
            items.push(Work::WriteFile(f.clone()));
            true
        }
    }
}

/// Adds `then` (a restart or reload of a running service) when any of the
/// files it reads at start (certificates, settings, its unit) differs on
/// the host from what it gets (an earlier step wrote them; the facts are
/// from before), unless the service is already restarted or reloaded.
fn reread(items: &mut Vec<Work>, i: &Inputs, host: &str, facts: &HostFacts, then: Work, specs: &[FileSpec]) {
    let (Work::Restart(service) | Work::Reload(service)) = then else {
        unreachable!("a restart or a reload")
    };
    let queued = items
        .iter()
        .any(|w| matches!(w, Work::Restart(s) | Work::Reload(s) if *s == service));
    let differs = specs
        .iter()
        .any(|s| facts.file(s.path).map(|f| f.sha256.as_str()) != Some(sha256(&file(i, host, s).content).as_str()));
    if facts.service(service).is_active() && !queued && differs {
        items.push(then);
    }
}

/// Write the file if it differs; then restart/reload/start as the service needs.
fn converge(items: &mut Vec<Work>, facts: &HostFacts, f: &RenderedFile, on_change: fn(&'static str) -> Work) {
    let differs = write_if_differs(items, facts, f);
    let svc = facts.service(f.spec.service);
    if !svc.is_enabled() {
        items.push(Work::Enable(f.spec.service));
    }
    if !svc.is_active() {
        items.push(Work::Start(f.spec.service));
    } else if differs {
        items.push(on_change(f.spec.service));
    }
}

fn host_work(i: &Inputs, step: &Step, cloud: Option<&Cloud>, host: &str) -> HostWork {
    let facts = i.facts.get(host).cloned().unwrap_or_default();
    let d = i.design;
    let mut items = Vec::new();
    match step.action {
        Action::InstallPackages => {
            if !facts.missing_packages.is_empty() {
                items.push(Work::InstallPackages(facts.missing_packages.clone()));
            }
        }
        Action::InstallCertificates => {
            for spec in &tls::FILES {
                write_if_differs(&mut items, &facts, file(i, host, spec));
            }
        }
        Action::ConfigureEtcd => {
            let cloud = cloud.expect("etcd steps belong to a cloud");
            etcd_work(&mut items, i, cloud, host, &facts);
        }
        Action::BootstrapLeader | Action::JoinReplicas => {
            patroni_work(&mut items, i, host, &facts);
            if step.action == Action::BootstrapLeader {
                if let Some(sets) = cloud.and_then(|c| dynamic_config_changes(d, c, i.cloud_facts.get(&c.name))) {
                    items.push(Work::PatchDynamicConfig(sets));
                }
            }
        }
        // A changed unit alone restarts it too. A new certificate does not:
        // the gate loads it when the files change (a restart would fail
        // HAProxy's checks for a moment and close the route).
        Action::ConfigureSiteGate => {
            unit_service(
                &mut items,
                i,
                host,
                &facts,
                site::GATE_UNIT,
                site::GATE,
                &[site::GATE_UNIT],
            );
        }
        Action::ConfigureHaproxy => {
            // The files the config names first: the config's check reads them.
            let mut named = vec![components::haproxy::PEM];
            if i.design.exporter.is_some() {
                named.push(components::exporter::METRICS_CA);
            }
            for spec in &named {
                write_if_differs(&mut items, &facts, file(i, host, spec));
            }
            let config = file(i, host, &components::haproxy::CONFIG);
            converge(&mut items, &facts, config, Work::Reload);
            // Its health checks verify Patroni's certificate with the trust
            // bundle and present the host's; the gateway serves the host's
            // to the metrics CA's.
            let rereads = [&[tls::TRUST][..], &named].concat();
            reread(&mut items, i, host, &facts, Work::Reload("haproxy"), &rereads);
        }
        Action::InstallWitness => {
            if !facts.missing_packages.is_empty() {
                items.push(Work::InstallPackages(facts.missing_packages.clone()));
            }
            for spec in &tls::ETCD_FILES {
                write_if_differs(&mut items, &facts, file(i, host, spec));
            }
        }
        Action::ConfigureSite => unit_service(
            &mut items,
            i,
            host,
            &facts,
            site::ETCD_UNIT,
            site::ETCD_ENV,
            &tls::ETCD_FILES,
        ),
        // The agent loads the host's certificate when it starts, like etcd.
        Action::ConfigureSiteAgents => site_agents_work(&mut items, i, host, &facts),
        Action::ConfigureGlb => glb_work(&mut items, i, host, &facts),
        Action::ConfigurePgbackrest => pgbackrest_work(&mut items, i, host, &facts),
        Action::ConfigureRepositories => repository_work(&mut items, i, host, &facts),
        Action::SecureEtcd | Action::SecureSite => secure_work(&mut items, i, step, cloud, host, &facts),
        Action::ConfigureExporter => {
            let cloud = cloud.expect("exporter steps belong to a cloud");
            // One role for every cloud: made in the primary cloud, replicated.
            if cloud.is_primary() && step.hosts.first().map(String::as_str) == Some(host) && monitor_role_needed(i) {
                items.push(Work::MonitorRole);
            }
            exporter_work(&mut items, i, host, &facts);
        }
        Action::ConfigureBackupMetrics => backup_metrics_work(&mut items, i, host, &facts),
        Action::ConfigurePgbouncer => pgbouncer_work(&mut items, i, host, &facts),
        Action::ConfigureVip => vip_work(&mut items, i, cloud.expect("vip steps belong to a cloud"), host, &facts),
        Action::InitRepositories => {
            if !facts.stanza {
                items.push(Work::CreateStanza);
            }
            if facts.full_backups == 0 {
                items.push(Work::FirstBackup);
            }
        }
        Action::VerifyCloud
        | Action::VerifyGlb
        | Action::RunGlbCommand
        | Action::VerifySite
        | Action::VerifyBackup
        | Action::ApplyParameters
        | Action::ConfigureObjects
        | Action::RemoveHosts => {}
    }
    HostWork {
        host: host.to_string(),
        items,
    }
}

/// The design's roles and databases, on the host whose master reported
/// them (else the step's first host, deciding when it runs).
fn objects_work(i: &Inputs, step: &Step) -> HostWork {
    let master = step
        .hosts
        .iter()
        .find(|h| i.facts.get(*h).is_some_and(|f| f.objects.is_some()));
    let host = master.or(step.hosts.first()).cloned().unwrap_or_default();
    let items = match (master, i.objects) {
        (Some(_), Some(diff)) if diff.changes.is_empty() => Vec::new(),
        (Some(_), Some(diff)) => vec![Work::ApplyObjects(Some(diff.changes.clone()))],
        _ => vec![Work::ApplyObjects(None)],
    };
    HostWork { host, items }
}

/// etcd on a cloud's host: a new member joins a running cluster; an
/// existing one converges its settings and rereads new certificates.
fn etcd_work(items: &mut Vec<Work>, i: &Inputs, cloud: &Cloud, host: &str, facts: &HostFacts) {
    let f = file(i, host, &components::etcd::CONFIG);
    if etcd_exists(i, cloud) && !facts.etcd_initialized {
        items.push(Work::EtcdJoin);
        if !facts.service("etcd").is_enabled() {
            items.push(Work::Enable("etcd"));
        }
        return;
    }
    converge(items, facts, f, Work::Restart);
    // etcd reads its INITIAL_* settings only when it creates its
    // data: a change there alone (a member added) needs no restart.
    let core = sha256(&components::etcd::core(&f.content));
    if facts.etcd_initialized && facts.etcd_core.as_deref() == Some(core.as_str()) {
        items.retain(|w| !matches!(w, Work::Restart(_)));
    }
    // New certificates or trust: a running member restarts (one
    // at a time, the cluster keeping quorum) to read them.
    reread(items, i, host, facts, Work::Restart("etcd"), &tls::ETCD_FILES);
}

/// Patroni on a database host: the distribution's own cluster out of the
/// way, the ports free before a first start, the fence, the config.
fn patroni_work(items: &mut Vec<Work>, i: &Inputs, host: &str, facts: &HostFacts) {
    let d = i.design;
    let unit = distro_unit(d);
    let distro = facts.service(&unit);
    if distro.is_active() || distro.is_enabled() {
        items.push(Work::DisableDistroCluster(unit));
    }
    if !facts.service("patroni").is_active() {
        items.push(Work::RequirePortsFree(vec![
            (d.platform.postgres_port, "PostgreSQL"),
            (d.governor.rest_port, "the Patroni REST API"),
        ]));
    }
    // The fence is read when Patroni next starts: no restart for it.
    write_if_differs(items, facts, file(i, host, &patroni::FENCE));
    if write_if_differs(items, facts, file(i, host, &patroni::FENCE_UNIT)) {
        items.push(Work::DaemonReload);
    }
    converge(items, facts, file(i, host, &patroni::CONFIG), Work::Reload);
    // A reload (SIGHUP) makes Patroni reread its REST certificate and
    // PostgreSQL its SSL files; nothing restarts.
    reread(
        items,
        i,
        host,
        facts,
        Work::Reload("patroni"),
        &[tls::TRUST, tls::CERT, tls::POSTGRES_KEY],
    );
}

/// The site agent, then its fence. The agent loads the host's certificate
/// when it starts, like etcd; its settings, then its code: a change of
/// either restarts it once.
fn site_agents_work(items: &mut Vec<Work>, i: &Inputs, host: &str, facts: &HostFacts) {
    write_if_differs(items, facts, file(i, host, &site::AGENT_SETTINGS));
    unit_service(items, i, host, facts, site::AGENT_UNIT, site::AGENT, &tls::ETCD_FILES);
    reread(
        items,
        i,
        host,
        facts,
        Work::Restart(site::AGENT_SERVICE),
        &[site::AGENT_SETTINGS],
    );
    // After the agent: a new agent stamps its renewals before the fence
    // that reads them starts. A changed unit alone restarts it too.
    unit_service(
        items,
        i,
        host,
        facts,
        site::FENCE_UNIT,
        site::FENCE,
        &[site::FENCE_UNIT],
    );
}

/// A GLB host: its packages, its HAProxy config, and with the site lease
/// the trust its checks of the site gates use.
fn glb_work(items: &mut Vec<Work>, i: &Inputs, host: &str, facts: &HostFacts) {
    if !facts.missing_packages.is_empty() {
        items.push(Work::InstallPackages(facts.missing_packages.clone()));
    }
    let site = i.design.site.is_some();
    let named = [tls::TRUST, components::haproxy::PEM];
    let named = if site { &named[..] } else { &[] };
    for spec in named {
        write_if_differs(items, facts, file(i, host, spec));
    }
    converge(items, facts, file(i, host, &components::glb::CONFIG), Work::Reload);
    reread(items, i, host, facts, Work::Reload("haproxy"), named);
}

/// etcd's users and roles (the cloud's or the site's), set by one host
/// of the step while the marker differs.
fn secure_work(items: &mut Vec<Work>, i: &Inputs, step: &Step, cloud: Option<&Cloud>, host: &str, facts: &HostFacts) {
    let d = i.design;
    let site = step.action == Action::SecureSite;
    let (access, marker): (_, fn(&HostFacts) -> &Option<String>) = if site {
        (site::access(d), |f| &f.site_access)
    } else {
        let cloud = cloud.expect("etcd steps belong to a cloud");
        (components::etcd::cloud_access(d, cloud), |f| &f.cloud_access)
    };
    let wanted = access.digest(i.secrets.etcd_password(site));
    // A Patroni that started before etcd had users was refused
    // before anything ran (see `refuse_patroni_without_gateway`).
    if access_runner(i, &step.hosts, marker) == host && marker(facts).as_deref() != Some(wanted.as_str()) {
        items.push(Work::SecureEtcd { access, site });
    }
}

/// pgBackRest on a database host: its config (its TLS server restarts on
/// a change, reloads on new certificates) and the restore_command's script,
/// read at each call.
fn pgbackrest_work(items: &mut Vec<Work>, i: &Inputs, host: &str, facts: &HostFacts) {
    pgbackrest_server(items, i, host, facts);
    write_if_differs(items, facts, file(i, host, &backup::RESTORE_WAL));
}

/// pgBackRest's config and its TLS server, on a database host and on a
/// repository's: restarted on a change of its config (which may move its
/// listening port), reloaded on new certificates. Its SIGHUP rereads the
/// config and the TLS files, where Debian's unit sleeps 3 s after each
/// start: a rotation's three rolling deploys wait 27 s less.
fn pgbackrest_server(items: &mut Vec<Work>, i: &Inputs, host: &str, facts: &HostFacts) {
    converge(items, facts, file(i, host, &backup::CONFIG), Work::Restart);
    reread(items, i, host, facts, Work::Reload(backup::SERVICE), &backup::TLS_FILES);
}

/// The metrics exporter: its files, enabled and running, restarted when
/// they changed.
fn exporter_work(items: &mut Vec<Work>, i: &Inputs, host: &str, facts: &HostFacts) {
    let mut differs = false;
    for spec in &components::exporter::FILES {
        differs |= write_if_differs(items, facts, file(i, host, spec));
    }
    keep_running(items, facts, components::exporter::SERVICE, differs);
    use components::exporter::{
        CERT_METRICS_CODE, CERT_METRICS_TIMER, CERT_METRICS_TIMER_UNIT, CERT_METRICS_UNIT, NODE_ENV, NODE_SERVICE,
    };
    // Debian's package enables it at install with empty arguments (every
    // address, every collector): a host booted before this deploy runs it
    // so until the restart with these.
    let node_differs = write_if_differs(items, facts, file(i, host, &NODE_ENV));
    keep_running(items, facts, NODE_SERVICE, node_differs);
    timer_work(
        items,
        i,
        host,
        facts,
        &[CERT_METRICS_CODE],
        (&CERT_METRICS_UNIT, &CERT_METRICS_TIMER),
        CERT_METRICS_TIMER_UNIT,
    );
}

/// `service` enabled and running; restarted when `changed` and it ran.
fn keep_running(items: &mut Vec<Work>, facts: &HostFacts, service: &'static str, changed: bool) {
    let svc = facts.service(service);
    if !svc.is_enabled() {
        items.push(Work::Enable(service));
    }
    if !svc.is_active() {
        items.push(Work::Start(service));
    } else if changed {
        items.push(Work::Restart(service));
    }
}

/// The backup metrics' code, settings and units, run by their timer.
fn backup_metrics_work(items: &mut Vec<Work>, i: &Inputs, host: &str, facts: &HostFacts) {
    use backup::{METRICS_CODE, METRICS_SETTINGS, METRICS_TIMER, METRICS_TIMER_UNIT, METRICS_UNIT};
    timer_work(
        items,
        i,
        host,
        facts,
        &[METRICS_CODE, METRICS_SETTINGS],
        (&METRICS_UNIT, &METRICS_TIMER),
        METRICS_TIMER_UNIT,
    );
}

/// A job a timer runs: its code (and settings), its service and timer units;
/// the timer enabled and running, restarted when it changed (the service
/// runs the code and settings anew each time).
fn timer_work(
    items: &mut Vec<Work>,
    i: &Inputs,
    host: &str,
    facts: &HostFacts,
    code: &[FileSpec],
    (unit, timer): (&FileSpec, &FileSpec),
    timer_unit: &'static str,
) {
    for spec in code {
        write_if_differs(items, facts, file(i, host, spec));
    }
    let unit = write_if_differs(items, facts, file(i, host, unit));
    let timer = write_if_differs(items, facts, file(i, host, timer));
    if unit || timer {
        items.push(Work::DaemonReload);
    }
    keep_running(items, facts, timer_unit, timer);
}

/// PgBouncer: its files, reloaded (SIGHUP) when they or the TLS files it
/// reads change; restarted unless its port listens on every address: the
/// address and port are read at start only, and Debian's package starts it
/// on localhost (`ss` names no process for PgBouncer's sockets).
fn pgbouncer_work(items: &mut Vec<Work>, i: &Inputs, host: &str, facts: &HostFacts) {
    use components::pgbouncer::{FILES, SERVICE};
    let mut differs = false;
    for spec in &FILES {
        differs |= write_if_differs(items, facts, file(i, host, spec));
    }
    let svc = facts.service(SERVICE);
    if !svc.is_enabled() {
        items.push(Work::Enable(SERVICE));
    }
    let port = i.design.pgbouncer.as_ref().map_or(0, |p| p.port);
    if !svc.is_active() {
        items.push(Work::Start(SERVICE));
    } else if !facts.wildcard_ports.contains(&port) {
        items.push(Work::Restart(SERVICE));
    } else if differs {
        items.push(Work::Reload(SERVICE));
    } else {
        reread(
            items,
            i,
            host,
            facts,
            Work::Reload(SERVICE),
            &[tls::TRUST, tls::CERT, tls::POSTGRES_KEY],
        );
    }
}

/// The cloud's virtual IP: the loop that names the leader and vip-manager,
/// each restarted when its code, settings or the TLS files it loads at
/// start change. Debian's own vip-manager unit (enabled by the package,
/// with no configuration) is kept off. A cloud without a virtual IP has
/// both units removed (the address leaves with vip-manager's stop).
fn vip_work(items: &mut Vec<Work>, i: &Inputs, cloud: &Cloud, host: &str, facts: &HostFacts) {
    use components::vip::*;
    // Installed by this deploy (its packages step), Debian's unit comes
    // enabled: off in the same deploy, or the next one is not a no-op.
    let debian = facts.service(DEBIAN_SERVICE);
    if debian.is_enabled() || debian.is_active() || facts.missing_packages.iter().any(|p| p == PACKAGE) {
        items.push(Work::Disable(DEBIAN_SERVICE));
    }
    if cloud.vip.is_none() {
        for unit in [MANAGER_UNIT, LEADER_UNIT] {
            if facts.file(unit.path).is_some() {
                items.push(Work::Remove(unit));
            }
        }
        return;
    }
    // One host sets v2's access: one that reads the marker (a v2 root
    // already), else the first.
    let hosts: Vec<String> = cloud.hosts.iter().map(|h| h.name.clone()).collect();
    if access_runner(i, &hosts, |f| &f.vip_access) == host && facts.vip_access.as_deref() != Some(&access_digest(cloud))
    {
        items.push(Work::SecureVip);
    }
    let tls = [tls::TRUST, tls::CERT, tls::ETCD_KEY];
    write_if_differs(items, facts, file(i, host, &LEADER_SETTINGS));
    unit_service(
        items,
        i,
        host,
        facts,
        LEADER_UNIT,
        LEADER,
        &[&[LEADER_SETTINGS, LEADER_UNIT][..], &tls].concat(),
    );
    unit_service(
        items,
        i,
        host,
        facts,
        MANAGER_UNIT,
        MANAGER_CONFIG,
        &[&[MANAGER_UNIT][..], &tls].concat(),
    );
}

/// A service pgha writes the unit of (the site member and agent, the VIP's
/// loop and vip-manager): its unit file (systemd rereads it), its main file
/// (code or settings: a change restarts it) and the files it loads at start
/// (`rereads`: a change restarts it too).
fn unit_service(
    items: &mut Vec<Work>,
    i: &Inputs,
    host: &str,
    facts: &HostFacts,
    unit: FileSpec,
    main: FileSpec,
    rereads: &[FileSpec],
) {
    if write_if_differs(items, facts, file(i, host, &unit)) {
        items.push(Work::DaemonReload);
    }
    converge(items, facts, file(i, host, &main), Work::Restart);
    reread(items, i, host, facts, Work::Restart(main.service), rereads);
}

/// A repository host: the package, TLS, pgBackRest's config and server, the
/// backup unit (started by its timers only) and one timer per scheduled type.
fn repository_work(items: &mut Vec<Work>, i: &Inputs, host: &str, facts: &HostFacts) {
    // pgBackRest only: a database host that holds its cloud's repository
    // gets the rest in its cloud's steps.
    let wanted = backup::repository_packages();
    let missing: Vec<String> = facts
        .missing_packages
        .iter()
        .filter(|p| wanted.contains(p))
        .cloned()
        .collect();
    if !missing.is_empty() {
        items.push(Work::InstallPackages(missing));
    }
    for spec in &backup::TLS_FILES {
        write_if_differs(items, facts, file(i, host, spec));
    }
    pgbackrest_server(items, i, host, facts);
    let mut units_changed = write_if_differs(items, facts, file(i, host, &backup::BACKUP_UNIT));
    let b = i.design.backup.as_ref().expect("repositories come with backups");
    let mut timers = Vec::new();
    for kind in backup::Kind::ALL {
        let spec = kind.timer();
        if kind.schedule(b).is_some() {
            units_changed |= write_if_differs(items, facts, file(i, host, &spec));
            timers.push(spec);
        } else if facts.file(spec.path).is_some() {
            items.push(Work::Remove(spec));
        }
    }
    if units_changed {
        items.push(Work::DaemonReload);
    }
    for spec in timers {
        let changed =
            facts.file(spec.path).map(|f| f.sha256.as_str()) != Some(sha256(&file(i, host, &spec).content).as_str());
        keep_running(items, facts, spec.service, changed);
    }
}

/// Has this cloud's etcd cluster (pgha's data directory) been created?
/// The etcd members of `cloud` that no design host of it is: each to remove.
pub(crate) fn removals(d: &Design, cloud: &Cloud, facts: Option<&CloudFacts>) -> Vec<Removal> {
    let Some(f) = facts else { return Vec::new() };
    let port = d.etcd.peer_port;
    let wanted: Vec<String> = cloud
        .hosts
        .iter()
        .map(|h| components::etcd::peer_url(&h.address, port))
        .collect();
    f.etcd_members
        .iter()
        .filter(|m| !wanted.contains(&m.peer))
        .map(|m| Removal {
            id: m.id.clone(),
            name: if m.name.is_empty() {
                m.id.clone()
            } else {
                m.name.clone()
            },
            address: components::etcd::peer_address(&m.peer, port),
            delete_data: false,
        })
        .collect()
}

fn removal_work(i: &Inputs, cloud: &Cloud) -> Vec<HostWork> {
    removals(i.design, cloud, i.cloud_facts.get(&cloud.name))
        .into_iter()
        .map(|r| HostWork {
            host: r.name.clone(),
            items: vec![Work::RemoveHost(Removal {
                delete_data: i.delete_removed_data,
                ..r
            })],
        })
        .collect()
}

/// Some database host's exporter cannot log in, or gets a new password.
fn monitor_role_needed(i: &Inputs) -> bool {
    let db_hosts = i.design.clouds.iter().flat_map(|c| &c.hosts);
    // Hosts this run reads (`--cloud` may leave some out).
    db_hosts.filter(|h| i.files.contains_key(&h.name)).any(|h| {
        let facts = i.facts.get(&h.name);
        let env_differs = facts
            .and_then(|f| f.file(components::exporter::ENV.path))
            .map(|have| have.sha256 != sha256(&file(i, &h.name, &components::exporter::ENV).content));
        !facts.is_some_and(|f| f.exporter_login) || env_differs != Some(false)
    })
}

/// The host that sets an etcd's users: once there are users, one whose
/// certificate names one of them (a member just added or replaced is no
/// user yet, and etcd would refuse it); before, the first.
fn access_runner<'a>(i: &Inputs, hosts: &'a [String], marker: fn(&HostFacts) -> &Option<String>) -> &'a str {
    hosts
        .iter()
        .find(|h| {
            i.facts
                .get(*h)
                .and_then(|f| marker(f).as_deref())
                .is_some_and(|m| !m.is_empty())
        })
        .or(hosts.first())
        .map_or("", String::as_str)
}

fn etcd_exists(i: &Inputs, cloud: &Cloud) -> bool {
    cloud
        .hosts
        .iter()
        .any(|h| i.facts.get(&h.name).is_some_and(|f| f.etcd_initialized))
}

fn glb_command_work(i: &Inputs) -> HostWork {
    let mut items = Vec::new();
    if let Some(glb) = &i.design.glb {
        if let GlbKind::External { command } = &glb.kind {
            let target = i.design.primary_clouds().next().map(|c| c.name.as_str());
            if target != i.glb_applied {
                items.push(Work::RunGlbCommand(command.clone()));
            }
        }
    }
    HostWork {
        host: "local".into(),
        items,
    }
}

/// The dynamic configuration the design asks of a cloud's Patroni cluster.
pub(crate) fn desired_dynamic_config(d: &Design, cloud: &Cloud) -> Vec<(String, serde_json::Value)> {
    use serde_json::json;
    let sync = cloud.is_primary() && d.platform.replication == Replication::Synchronous;
    let standby = if cloud.is_primary() {
        serde_json::Value::Null
    } else {
        let hosts: Vec<&str> = d
            .primary_clouds()
            .flat_map(|c| c.hosts.iter().map(|h| h.address.as_str()))
            .collect();
        if hosts.is_empty() {
            // Mid-flip, with no primary cloud: keep following whatever it follows.
            return Vec::new();
        }
        patroni::standby_cluster(d, &hosts)
    };
    vec![
        ("ttl".into(), json!(d.governor.ttl)),
        ("loop_wait".into(), json!(d.governor.loop_wait)),
        ("retry_timeout".into(), json!(d.governor.retry_timeout)),
        (
            "maximum_lag_on_failover".into(),
            json!(d.governor.maximum_lag_on_failover),
        ),
        ("synchronous_mode".into(), json!(sync)),
        // See the template: no replica left behind on an old timeline is promoted.
        ("check_timeline".into(), json!(true)),
        // See the template: a master that still reaches every member of its
        // cloud keeps serving while the cloud's etcd has no quorum.
        ("failsafe_mode".into(), json!(true)),
        // See the template: a crashed primary starts again only through pre_promote.
        ("primary_start_timeout".into(), json!(0)),
        ("standby_cluster".into(), standby),
    ]
}

/// `patronictl edit-config -s` pairs that bring the live config to the design,
/// or `None` when it already matches (or no member answered: a fresh cluster
/// takes the bootstrap config instead).
pub(crate) fn dynamic_config_changes(
    d: &Design,
    cloud: &Cloud,
    facts: Option<&CloudFacts>,
) -> Option<Vec<(String, String)>> {
    let current = facts?.dynamic_config.as_ref()?;
    let mut sets = Vec::new();
    for (key, want) in desired_dynamic_config(d, cloud) {
        let have = current.get(&key).cloned().unwrap_or(serde_json::Value::Null);
        let same = match (&want, &have) {
            (serde_json::Value::Object(w), serde_json::Value::Object(h)) => {
                w.iter().all(|(k, v)| h.get(k).map(normalize) == Some(normalize(v)))
            }
            _ => normalize(&want) == normalize(&have),
        };
        if !same {
            // edit-config reads values as YAML: JSON is YAML.
            sets.push((key, want.to_string()));
        }
    }
    (!sets.is_empty()).then_some(sets)
}

/// Design parameters whose live value (in the cloud's dynamic config)
/// differs: `(name, wanted, live)`, live `None` when unset. Nothing when no
/// member answered: a new cluster takes them from the bootstrap config.
pub(crate) fn parameter_changes(d: &Design, facts: Option<&CloudFacts>) -> Vec<(String, String, Option<String>)> {
    let Some(current) = facts.and_then(|f| f.dynamic_config.as_ref()) else {
        return Vec::new();
    };
    let live = current.get("postgresql").and_then(|p| p.get("parameters"));
    d.platform
        .parameters
        .iter()
        .filter_map(|(k, want)| {
            let have = live.and_then(|l| l.get(k)).map(normalize);
            (have.as_deref() != Some(want.as_str())).then(|| (k.clone(), want.clone(), have))
        })
        .collect()
}

/// Settings a hot standby needs at least as high as its upstream's
/// (PostgreSQL's "Hot Standby" administration notes).
const HOT_STANDBY_MINIMUMS: [&str; 5] = [
    "max_connections",
    "max_prepared_transactions",
    "max_locks_per_transaction",
    "max_wal_senders",
    "max_worker_processes",
];

/// The parameter step's work: one [`ParamWork`] per cloud whose live values
/// differ, in the order that keeps every standby running. Raising a hot
/// standby minimum: standby clouds first, each cloud's replicas before its
/// leader; lowering one: the primary cloud first, leaders before replicas.
fn parameters_work(i: &Inputs, step: &Step) -> Vec<HostWork> {
    let d = i.design;
    let (mut raising, mut lowering) = (false, false);
    let mut work = Vec::new();
    for cloud in d.clouds_in_order() {
        if !cloud.hosts.iter().any(|h| step.hosts.contains(&h.name)) {
            continue;
        }
        let facts = i.cloud_facts.get(&cloud.name);
        let changes = parameter_changes(d, facts);
        if changes.is_empty() {
            continue;
        }
        for (name, want, have) in &changes {
            if HOT_STANDBY_MINIMUMS.contains(&name.to_lowercase().as_str()) {
                let count = |v: &str| v.trim().parse::<u64>().ok();
                match (count(want), have.as_deref().and_then(count)) {
                    (Some(w), Some(h)) if w < h => lowering = true,
                    (Some(w), Some(h)) if w == h => {}
                    // Unset (PostgreSQL's default) or unreadable: the safe order is raising's.
                    _ => raising = true,
                }
            }
        }
        let restart = changes.iter().any(|(name, ..)| {
            facts
                .and_then(|f| f.pg_contexts.get(&name.to_lowercase()))
                .is_some_and(|c| c == "postmaster")
        });
        work.push(ParamWork {
            cloud: cloud.name.clone(),
            sets: changes.into_iter().map(|(k, want, _)| (k, want)).collect(),
            restart,
            leader_first: false,
            switchover: restart && cloud.is_primary() && d.governor.leader_restart == LeaderRestart::Switchover,
        });
    }
    // Both at once: raising's order; a replica that starts below its
    // upstream's value takes that value (Patroni reads pg_controldata) and
    // stays pending until the next restart.
    let leader_first = lowering && !raising;
    for w in &mut work {
        w.leader_first = leader_first && w.restart;
        w.switchover &= !leader_first;
    }
    if !leader_first {
        // Stable: standby clouds first, in design order.
        work.sort_by_key(|w| d.cloud(&w.cloud).is_some_and(Cloud::is_primary));
    }
    work.into_iter()
        .map(|w| HostWork {
            // Run from here: the name says which cloud.
            host: w.cloud.clone(),
            items: vec![Work::ApplyParameters(w)],
        })
        .collect()
}

/// Patroni stores some numbers as strings; compare by text.
fn normalize(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(false) => "false".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn design(params: &str) -> Design {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/two-clouds.yaml");
        let src = std::fs::read_to_string(&path).unwrap().replace(
            "  replication: asynchronous",
            &format!("  replication: asynchronous\n{params}"),
        );
        crate::design::load_str(&src, &path).unwrap().design
    }

    fn facts(v: serde_json::Value) -> CloudFacts {
        CloudFacts {
            dynamic_config: Some(v),
            pg_contexts: [("max_connections", "postmaster"), ("work_mem", "user")]
                .map(|(k, c)| (k.to_string(), c.to_string()))
                .into(),
            ..Default::default()
        }
    }

    #[test]
    fn etcd_members_the_design_dropped_are_removed() {
        let d = design("");
        let cloud = &d.clouds[0];
        let row = |id: &str, name: &str, address: &str| components::etcd::MemberRow {
            id: id.into(),
            name: name.into(),
            peer: components::etcd::peer_url(address, d.etcd.peer_port),
        };
        let mut f = CloudFacts {
            etcd_members: cloud
                .hosts
                .iter()
                .enumerate()
                .map(|(i, h)| row(&format!("{i:x}"), &h.name, &h.address))
                .collect(),
            ..Default::default()
        };
        assert!(removals(&d, cloud, Some(&f)).is_empty());
        f.etcd_members.push(row("8e9e05c52164694d", "dc1-pg4", "10.0.0.14"));
        f.etcd_members.push(components::etcd::MemberRow {
            id: "1a".into(),
            name: String::new(),
            peer: "http://evil;rm -rf /:2380".into(),
        });
        assert_eq!(
            removals(&d, cloud, Some(&f)),
            [
                Removal {
                    id: "8e9e05c52164694d".into(),
                    name: "dc1-pg4".into(),
                    address: Some("10.0.0.14".into()),
                    delete_data: false,
                },
                // Unnamed (never started) and not a URL pgha wrote: removed from etcd, not dialled.
                Removal {
                    id: "1a".into(),
                    name: "1a".into(),
                    address: None,
                    delete_data: false,
                }
            ]
        );
    }

    /// The parameter step's work for `d` with these live parameters in every cloud.
    fn param_work(d: &Design, live: serde_json::Value) -> Vec<ParamWork> {
        let plan = Plan::deployment(d);
        let step = plan.steps.iter().find(|s| s.action == Action::ApplyParameters).unwrap();
        let cloud_facts: BTreeMap<String, CloudFacts> = d
            .clouds
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    facts(serde_json::json!({"postgresql": {"parameters": live.clone()}})),
                )
            })
            .collect();
        let i = Inputs {
            design: d,
            plan: &plan,
            facts: &BTreeMap::new(),
            cloud_facts: &cloud_facts,
            files: &BTreeMap::new(),
            glb_applied: None,
            delete_removed_data: false,
            secrets: &crate::secrets::Secrets::redacted(),
            objects: None,
        };
        parameters_work(&i, step)
            .into_iter()
            .map(|hw| match &hw.items[..] {
                [Work::ApplyParameters(p)] if p.cloud == hw.host => p.clone(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_reload_parameter_is_set_everywhere_without_a_restart() {
        let d = design("  parameters:\n    max_connections: \"100\"\n    work_mem: 16MB");
        let w = param_work(
            &d,
            serde_json::json!({"max_connections": "100", "work_mem": "8MB", "authentication_timeout": "10s"}),
        );
        assert_eq!(w.len(), 2);
        assert!(w
            .iter()
            .all(|p| p.sets == [("work_mem".to_string(), "16MB".to_string())] && !p.restart));
        assert_eq!(w[0].describe(), "set work_mem (reload)");
        // Converged: no work at all.
        assert!(param_work(
            &d,
            serde_json::json!({"max_connections": 100, "work_mem": "16MB", "authentication_timeout": "10s"})
        )
        .is_empty());
    }

    #[test]
    fn raising_a_hot_standby_minimum_restarts_standby_clouds_first_replicas_before_leaders() {
        let d = design("  parameters:\n    max_connections: \"200\"");
        let w = param_work(&d, serde_json::json!({"max_connections": 100}));
        let order: Vec<bool> = w.iter().map(|p| d.cloud(&p.cloud).unwrap().is_primary()).collect();
        assert_eq!(order, [false, true]);
        assert!(w.iter().all(|p| p.restart && !p.leader_first && !p.switchover));
        // Unset (PostgreSQL's default): the same, safe order.
        let w = param_work(&d, serde_json::json!({}));
        assert!(!d.cloud(&w[0].cloud).unwrap().is_primary());
    }

    #[test]
    fn lowering_it_restarts_the_primary_cloud_first_leaders_before_replicas() {
        let d = design("  parameters:\n    max_connections: \"50\"");
        let w = param_work(&d, serde_json::json!({"max_connections": "100"}));
        assert!(d.cloud(&w[0].cloud).unwrap().is_primary());
        assert!(w.iter().all(|p| p.restart && p.leader_first));
        assert!(w[0].describe().ends_with("the leader first"), "{}", w[0].describe());
    }

    #[test]
    fn the_design_may_leave_the_master_by_switchover() {
        let src = "  parameters:\n    max_connections: \"200\"";
        let mut d = design(src);
        d.governor.leader_restart = LeaderRestart::Switchover;
        let w = param_work(&d, serde_json::json!({"max_connections": 100}));
        let primary = w.iter().find(|p| d.cloud(&p.cloud).unwrap().is_primary()).unwrap();
        assert!(primary.switchover);
        assert!(primary.describe().ends_with("then switch over to one"));
        // A standby cloud has no writes to spare: its leader restarts.
        assert!(w
            .iter()
            .filter(|p| !d.cloud(&p.cloud).unwrap().is_primary())
            .all(|p| !p.switchover));
    }

    #[test]
    fn live_config_matching_the_design_needs_no_change() {
        let d = design("");
        let live = serde_json::json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10, "maximum_lag_on_failover": 1048576,
            "synchronous_mode": false, "check_timeline": true, "failsafe_mode": true, "primary_start_timeout": 0, "postgresql": {"parameters": {}}});
        assert_eq!(
            dynamic_config_changes(&d, &d.clouds[0], Some(&facts(live.clone()))),
            None
        );
        // A cluster deployed before failsafe mode gets it, and only it.
        let mut before = live.clone();
        before.as_object_mut().unwrap().remove("failsafe_mode");
        assert_eq!(
            dynamic_config_changes(&d, &d.clouds[0], Some(&facts(before))),
            Some(vec![("failsafe_mode".to_string(), "true".to_string())])
        );
        // The secondary cloud must follow the primary's HAProxy ports.
        let sets = dynamic_config_changes(&d, &d.clouds[1], Some(&facts(live))).unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].0, "standby_cluster");
        assert!(
            sets[0].1.contains("10.77.0.11,10.77.0.12,10.77.0.13") && sets[0].1.contains("5000"),
            "{}",
            sets[0].1
        );
    }

    #[test]
    fn a_promoted_cloud_loses_its_standby_section_and_timing_follows_the_design() {
        let d = design("");
        let live = serde_json::json!({"ttl": "20", "loop_wait": 10, "retry_timeout": 10, "maximum_lag_on_failover": 1048576,
            "synchronous_mode": false, "check_timeline": true, "failsafe_mode": true, "primary_start_timeout": 0, "standby_cluster": {"host": "x", "port": 5000}});
        let sets = dynamic_config_changes(&d, &d.clouds[0], Some(&facts(live))).unwrap();
        assert_eq!(
            sets,
            [
                ("ttl".to_string(), "30".to_string()),
                ("standby_cluster".to_string(), "null".to_string())
            ]
        );
        assert_eq!(
            dynamic_config_changes(&d, &d.clouds[0], None),
            None,
            "a fresh cluster takes the bootstrap config"
        );
    }

    /// The work of `action` on `d`'s first host when `services` run, the
    /// packages `missing` are not installed yet and each managed file is as
    /// `file_fact` says (`None`: absent).
    fn first_host_work(
        d: &Design,
        services: &[&str],
        missing: &[&str],
        action: Action,
        file_fact: impl Fn(&RenderedFile) -> Option<crate::deploy::facts::FileFact>,
    ) -> String {
        let plan = Plan::deployment(d);
        let cloud = &d.clouds[0];
        let host = &cloud.hosts[0];
        let rendered = crate::render::Renderer::for_design(d)
            .unwrap()
            .db_host(d, cloud, host, None, &crate::secrets::Secrets::redacted())
            .unwrap();
        let running = crate::deploy::facts::Service {
            active: "active".into(),
            enabled: "enabled".into(),
        };
        let mut facts = HostFacts {
            services: services.iter().map(|s| (s.to_string(), running.clone())).collect(),
            missing_packages: missing.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        };
        for f in &rendered {
            facts.files.insert(f.spec.path.to_string(), file_fact(f));
        }
        let facts = BTreeMap::from([(host.name.clone(), facts)]);
        let files = BTreeMap::from([(host.name.clone(), rendered)]);
        let i = Inputs {
            design: d,
            plan: &plan,
            facts: &facts,
            cloud_facts: &BTreeMap::new(),
            files: &files,
            glb_applied: None,
            delete_removed_data: false,
            secrets: &crate::secrets::Secrets::redacted(),
            objects: None,
        };
        let step = plan
            .steps
            .iter()
            .find(|s| s.action == action && s.hosts.contains(&host.name))
            .unwrap();
        host_work(&i, step, Some(cloud), &host.name).describe()
    }

    /// The governor work on dc1's first host when every service runs and each
    /// managed file is as `file_fact` says (`None`: absent).
    fn governor_work(file_fact: impl Fn(&RenderedFile) -> Option<crate::deploy::facts::FileFact>) -> String {
        first_host_work(
            &design(""),
            &["etcd", "patroni", "haproxy"],
            &[],
            Action::BootstrapLeader,
            file_fact,
        )
    }

    #[test]
    fn a_new_fence_drop_in_reloads_systemd_and_restarts_nothing() {
        // Everything in place and running, except the drop-in.
        let work = governor_work(|f| {
            let s = &f.spec;
            (*s != patroni::FENCE_UNIT)
                .then(|| crate::deploy::facts::FileFact::new(&sha256(&f.content), s.owner, s.group, s.mode))
        });
        assert_eq!(
            work,
            "write /etc/systemd/system/patroni.service.d/pgha-fence.conf, reload systemd units"
        );
    }

    #[test]
    fn issue_8_a_patroni_config_made_world_readable_is_repaired_without_a_reload() {
        // `chmod 644 /etc/patroni/config.yml` and a wrong owner: same content.
        let work = governor_work(|f| {
            let s = &f.spec;
            let (owner, mode) = if *s == patroni::CONFIG {
                ("root", 0o644)
            } else {
                (s.owner, s.mode)
            };
            Some(crate::deploy::facts::FileFact::new(
                &sha256(&f.content),
                owner,
                s.group,
                mode,
            ))
        });
        assert_eq!(
            work,
            "set owner postgres:postgres and mode 600 on /etc/patroni/config.yml"
        );
    }

    /// Debian's vip-manager unit comes enabled with its package: a deploy
    /// that installs it turns it off too (the next deploy changes nothing).
    #[test]
    fn debians_vip_manager_unit_is_turned_off_by_the_deploy_that_installs_it() {
        let d = crate::testkit::example("three-sites.yaml");
        let work = |missing: &[&str]| {
            first_host_work(&d, &[], missing, Action::ConfigureVip, |f| {
                let s = &f.spec;
                Some(crate::deploy::facts::FileFact::new(
                    &sha256(&f.content),
                    s.owner,
                    s.group,
                    s.mode,
                ))
            })
        };
        assert!(
            work(&["vip-manager"]).contains("stop and disable vip-manager"),
            "{}",
            work(&["vip-manager"])
        );
        assert!(!work(&[]).contains("disable vip-manager"), "{}", work(&[]));
    }

    /// pgBackRest's work on dc1's first host of the three-site example, its
    /// server running, with `changed` files differing from the design's.
    fn pgbackrest_work_with(changed: &[FileSpec]) -> String {
        example_step_work(Action::ConfigurePgbackrest, &[backup::SERVICE], changed)
    }

    /// `action`'s work on dc1's first host of the three-site example, with
    /// `services` running and `changed` files differing from the design's.
    fn example_step_work(action: Action, services: &[&str], changed: &[FileSpec]) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/three-sites.yaml");
        let d = crate::design::load(&path).unwrap().design;
        first_host_work(&d, services, &[], action, |f| {
            let s = &f.spec;
            let hash = if changed.contains(s) {
                sha256("old")
            } else {
                sha256(&f.content)
            };
            Some(crate::deploy::facts::FileFact::new(&hash, s.owner, s.group, s.mode))
        })
    }

    #[test]
    fn new_certificates_reload_pgbackrest_and_a_new_config_restarts_it() {
        // A rotation: its TLS server rereads them on SIGHUP (Debian's unit
        // sleeps 3 s after each start).
        assert_eq!(pgbackrest_work_with(&[tls::TRUST]), "reload pgbackrest");
        // Its config may move its listening port: a restart.
        assert_eq!(
            pgbackrest_work_with(&[tls::TRUST, backup::CONFIG]),
            "write /etc/pgbackrest.conf, restart pgbackrest"
        );
        assert_eq!(pgbackrest_work_with(&[]), "unchanged");
    }

    /// The metrics work on dc1's first host of the three-site example, both
    /// exporters running (`node` false: the node exporter not yet), with
    /// `changed` files differing from the design's.
    fn metrics_work_with(changed: &[FileSpec], node: bool) -> String {
        metrics_step_work(Action::ConfigureExporter, changed, node)
    }

    fn metrics_step_work(action: Action, changed: &[FileSpec], node: bool) -> String {
        use crate::components::exporter;
        let services: &[&str] = if node {
            &[
                exporter::SERVICE,
                exporter::NODE_SERVICE,
                exporter::CERT_METRICS_TIMER_UNIT,
                backup::METRICS_TIMER_UNIT,
            ]
        } else {
            &[exporter::SERVICE]
        };
        example_step_work(action, services, changed)
    }

    #[test]
    fn the_node_exporter_restarts_on_new_arguments_only() {
        use crate::components::exporter::{CERT_METRICS_CODE, CERT_METRICS_TIMER, NODE_ENV};
        // Installed: Debian enabled it with its own arguments; pgha's start it.
        let first = metrics_work_with(&[], false);
        assert!(first.contains("start prometheus-node-exporter"), "{first}");
        // (The role's work comes first: whether the exporter logs in is
        // not among these facts.)
        let args = metrics_work_with(&[NODE_ENV], true);
        assert!(
            args.ends_with("write /etc/default/prometheus-node-exporter, restart prometheus-node-exporter")
                && !args.contains("postgres-exporter"),
            "{args}"
        );
        // The certificate metrics: the code runs anew each time; a new
        // timer restarts it, the exporter stays.
        let code = metrics_work_with(&[CERT_METRICS_CODE], true);
        assert!(code.ends_with("write /usr/local/lib/pgha/cert-metrics"), "{code}");
        let timer = metrics_work_with(&[CERT_METRICS_TIMER], true);
        assert!(
            timer.ends_with(
                "write /etc/systemd/system/pgha-cert-metrics.timer, reload systemd units, restart pgha-cert-metrics.timer"
            ) && !timer.contains("node-exporter"),
            "{timer}"
        );
        let none = metrics_work_with(&[], true);
        assert!(
            !none.contains("node-exporter") && !none.contains("cert-metrics"),
            "{none}"
        );
    }

    #[test]
    fn the_backup_metrics_timer_restarts_on_a_new_timer_only() {
        use backup::{METRICS_CODE, METRICS_SETTINGS, METRICS_TIMER};
        let metrics_work_with =
            |changed: &[FileSpec], installed| metrics_step_work(Action::ConfigureBackupMetrics, changed, installed);
        let first = metrics_work_with(&[], false);
        assert!(
            first.ends_with("enable pgha-backup-metrics.timer, start pgha-backup-metrics.timer"),
            "{first}"
        );
        // The service runs the code and reads the settings anew each time.
        let code = metrics_work_with(&[METRICS_CODE, METRICS_SETTINGS], true);
        assert!(
            code.ends_with("write /usr/local/lib/pgha/backup-metrics, write /etc/pgha/backup-metrics.json"),
            "{code}"
        );
        let timer = metrics_work_with(&[METRICS_TIMER], true);
        assert!(
            timer.ends_with(
                "write /etc/systemd/system/pgha-backup-metrics.timer, reload systemd units, restart pgha-backup-metrics.timer"
            ),
            "{timer}"
        );
        assert_eq!(metrics_work_with(&[], true), "unchanged");
    }

    #[test]
    fn parameter_changes_compare_by_text() {
        let d = design("  parameters:\n    max_connections: \"200\"\n    work_mem: 8MB\n    jit: \"off\"");
        let live = serde_json::json!({"postgresql": {"parameters": {"max_connections": 100, "work_mem": "8MB"}}});
        assert_eq!(
            parameter_changes(&d, Some(&facts(live))),
            [
                // pgha's own default, unset on a cluster deployed before it.
                ("authentication_timeout".to_string(), "10s".to_string(), None),
                ("jit".to_string(), "off".to_string(), None),
                (
                    "max_connections".to_string(),
                    "200".to_string(),
                    Some("100".to_string())
                )
            ]
        );
    }
}
