//! `pgha deploy`: load -> connect -> gather facts -> compute work -> show the
//! plan of changes -> confirm -> execute cloud by cloud -> report.

mod exec;
pub(crate) mod facts;
pub(crate) mod work;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail};
use serde::Serialize;

pub(crate) use self::exec::HostResult;
use self::facts::HostFacts;
use self::work::{CloudFacts, StepWork};
use crate::components::{self, packages};
use crate::design::{Cloud, Design, Host};
use crate::engine::{self, report::Recorder};
use crate::error::Usage;
use crate::fleet;
use crate::fleet::Fleet;
use crate::plan::Plan;
use crate::remote::{self, Remote};
use crate::render::{RenderedFile, Renderer, RestClients};
use crate::secrets::Secrets;
use crate::state;
use crate::ui::{self, progress};

#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// Only these clouds (and `glb` for the GLB); empty: everything.
    pub only: Vec<String>,
    pub yes: bool,
    pub dry_run: bool,
    /// Hosts the design dropped lose their PostgreSQL data directory too.
    pub delete_removed_data: bool,
}

/// The cluster's primary cloud differs from the design's: a flip made by
/// another operator (or with another copy of the design). Deploying would
/// promote the design's primary next to the live one.
/// Issue 23: etcd's users go on before Patroni starts, since Patroni logs in
/// from its first request (Patroni 4 cannot start while its credentials
/// meet an etcd without authentication). A cloud whose running Patroni
/// started before etcd had users (a cluster an earlier pgha deployed) still
/// presents its host certificate to etcd's JSON gateway, which refuses it
/// once authentication is on: turning it on under it would cut the cloud's
/// Patroni off etcd. Refused before any change, with the way through.
fn refuse_patroni_without_gateway(cloud: &Cloud, facts: &BTreeMap<String, HostFacts>) -> anyhow::Result<()> {
    // A marker: authentication is on (the users may still change).
    let set = cloud
        .hosts
        .iter()
        .filter_map(|h| facts.get(&h.name))
        .any(|f| f.cloud_access.as_deref().is_some_and(|d| !d.is_empty()));
    let old: Vec<&str> = cloud
        .hosts
        .iter()
        .filter(|h| {
            facts
                .get(&h.name)
                .is_some_and(|f| f.service("patroni").is_active() && !f.patroni_gateway)
        })
        .map(|h| h.name.as_str())
        .collect();
    if old.is_empty() || set {
        return Ok(());
    }
    bail!(
        "{}'s etcd has no users yet, and Patroni runs on {} with the certificate it started with, which etcd's JSON \
         gateway refuses once authentication is on: turning it on would cut {} off etcd. Nothing was changed\n  hint: \
         stop Patroni on every host of {} (`systemctl stop patroni`, replicas first; PostgreSQL stops with it), then \
         deploy: the users are set before Patroni starts again (see README, Security)",
        cloud.name,
        old.join(", "),
        cloud.name,
        cloud.name
    )
}

fn refuse_stale_primary(design: &Design, clouds: &BTreeMap<String, CloudFacts>) -> anyhow::Result<()> {
    let standby = |name: &str| {
        clouds
            .get(name)
            .and_then(|f| f.dynamic_config.as_ref())
            .map(|c| c.get("standby_cluster").is_some_and(|s| !s.is_null()))
    };
    let Some(primary) = design.primary_clouds().next() else {
        return Ok(());
    };
    if standby(&primary.name) != Some(true) {
        return Ok(());
    }
    if let Some(live) = design
        .clouds
        .iter()
        .find(|c| !c.is_primary() && standby(&c.name) == Some(false))
    {
        bail!(
            "the design says {} is primary, but {} is the cluster's primary cloud (its Patroni cluster is not a standby \
             cluster, {}'s is): deploying would make two masters. Use the design that recorded the flip, or flip back \
             with `pgha cloud make-primary {}`",
            primary.name,
            live.name,
            primary.name,
            primary.name
        );
    }
    Ok(())
}

/// An etcd member that an earlier pgha set up without TLS: switching it in
/// place, member by member, would cut the members off from each other one
/// at a time (their peer addresses in the cluster stay `http://`) and cost
/// Patroni its DCS. Refused on the facts, before any change.
/// Debian 12's pgBackRest (2.45) matches a TLS peer's certificate against
/// its DNS names only: a host named by an IP address would be refused by
/// every other (seen on the lab: "unable to find hostname '10.70.0.11' in
/// certificate"). Refused on the facts, before any change.
fn refuse_backups_by_address(design: &Design, host: &Host, f: &HostFacts) -> anyhow::Result<()> {
    let Some(b) = &design.backup else { return Ok(()) };
    if !f.os.starts_with("debian 12") {
        return Ok(());
    }
    let by_ip = design
        .clouds
        .iter()
        .flat_map(|c| &c.hosts)
        .chain(b.repositories.iter().map(|r| &r.host))
        .find(|h| h.address.parse::<std::net::IpAddr>().is_ok());
    match by_ip {
        Some(ip) => bail!(Usage(format!(
            "{} runs Debian 12, whose pgBackRest (2.45) verifies certificates by DNS name only, and {} is named by \
             its IP address {}: backups cannot work this way; nothing was changed\n  hint: name the database and \
             repository hosts by DNS names in the design, or run Debian 13 (pgBackRest 2.55), or turn backups off \
             (`backup: {{enabled: false}}`)",
            host.name, ip.name, ip.address
        ))),
        None => Ok(()),
    }
}

/// A cloud's virtual IP goes on an interface every host of the cloud has:
/// vip-manager exits at once on one that is not there (and restarts for
/// ever), which a deploy would call a success.
fn refuse_missing_interface(cloud: &Cloud, host: &str, f: &HostFacts) -> anyhow::Result<()> {
    let Some(vip) = &cloud.vip else { return Ok(()) };
    if f.interfaces.contains(&vip.interface) {
        return Ok(());
    }
    let has: Vec<&str> = f.interfaces.iter().map(String::as_str).collect();
    bail!(Usage(format!(
        "{host} has no network interface `{}` (it has {}): cloud {}'s virtual IP cannot go there; nothing was changed\n  \
         hint: set the cloud's `vip.interface` to the interface of the hosts' network",
        vip.interface,
        if has.is_empty() { "none that pgha could read".to_string() } else { has.join(", ") },
        cloud.name
    )))
}

fn refuse_plaintext_etcd(host: &str, f: &HostFacts) -> anyhow::Result<()> {
    if f.etcd_plaintext {
        bail!(
            "{host}: its etcd member runs without TLS (set up by an earlier pgha); this pgha speaks TLS only and does not \
             switch a running etcd cluster to TLS in place: its members would lose each other one by one, and Patroni its \
             DCS; nothing was changed\n  hint: in a maintenance window, switch over to the cloud's first host, stop Patroni \
             and then etcd on every host of the cloud, move each etcd data directory (/var/lib/etcd/pgha-<cluster>) aside \
             and deploy: the cloud gets a new etcd cluster with TLS, and Patroni, started on the first host first, writes \
             its keys there again from its data"
        );
    }
    Ok(())
}

/// The design's PostgreSQL must be one the host can run: the major version
/// Patroni already runs there (a new major is an upgrade, not a deploy), and
/// installable from the host's apt sources. Checked on the facts, before any
/// change.
fn refuse_unrunnable_postgres(design: &Design, host: &str, f: &HostFacts) -> anyhow::Result<()> {
    let v = design.platform.postgres_version;
    let why = design.platform.version_source.describe();
    let file = design.path.display();
    if let Some(to) = f.major_upgrade_to {
        // Deploy would start Patroni on a cluster half-way between two majors.
        bail!(Usage(format!(
            "{host}: an upgrade to PostgreSQL {to} is under way (/var/lib/pgha/pg-upgrade); nothing was changed\n  \
             hint: finish it with `pgha upgrade postgres {to}` first"
        )));
    }
    if let Some(running) = f.postgres_configured.filter(|r| *r != v) {
        bail!(Usage(format!(
            "{host}: Patroni runs PostgreSQL {running} there, and the design means {v} ({why}): a new major version is an \
             upgrade, which deploy does not do\n  hint: set `postgres_version: {running}` under platform in {file} to keep the cluster as it is"
        )));
    }
    let package = format!("postgresql-{v}");
    if f.missing_packages.contains(&package) && f.postgres_candidate.is_none() {
        let shipped = match f.postgres_available.as_slice() {
            [] => "none".to_string(),
            some => some
                .iter()
                .map(|n| format!("postgresql-{n}"))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let alternative = match f.postgres_available.iter().max() {
            Some(n) => format!("set `postgres_version: {n}` under platform in {file}, or "),
            None => String::new(),
        };
        bail!(Usage(format!(
            "{host} ({}): PostgreSQL {v} ({why}) cannot be installed: no apt source of the host ships {package} \
             (its sources ship: {shipped}); nothing was changed\n  hint: {alternative}add an apt source that ships it on every \
             database host, such as the PostgreSQL project's apt.postgresql.org, and deploy again: pgha installs from the \
             host's apt sources",
            f.os
        )));
    }
    Ok(())
}

/// A design parameter the cloud's running PostgreSQL does not know: Patroni
/// would drop it with a warning in its log, and the change would never
/// arrive. Names with a dot belong to extensions, which PostgreSQL accepts
/// before they load.
fn refuse_unknown_parameters(design: &Design, cloud: &Cloud, f: &CloudFacts) -> anyhow::Result<()> {
    if f.pg_contexts.is_empty() || work::parameter_changes(design, Some(f)).is_empty() {
        return Ok(());
    }
    for name in design.platform.parameters.keys() {
        if !name.contains('.') && !f.pg_contexts.contains_key(&name.to_lowercase()) {
            bail!(Usage(format!(
                "PostgreSQL {} in {} has no parameter `{name}` (platform.parameters.{name} in {}); nothing was \
                 changed\n  hint: check its spelling against `SHOW ALL`, or remove it",
                design.platform.postgres_version,
                cloud.name,
                design.path.display()
            )));
        }
    }
    Ok(())
}

/// What a deploy did, for `--output json`: the document every changing
/// command prints (`{command, dry_run, plan, results, ok}`), plus `changed`.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub command: &'static str,
    pub dry_run: bool,
    pub plan: Vec<PlannedStep>,
    pub results: Vec<HostResult>,
    pub ok: bool,
    /// Steps with changes (planned, on a dry run) or hosts' steps changed.
    pub changed: usize,
}

/// A step of the plan with what it changes on each host (none: unchanged).
#[derive(Debug, Serialize)]
pub(crate) struct PlannedStep {
    #[serde(flatten)]
    pub step: crate::plan::Step,
    pub changes: Vec<String>,
}

impl PlannedStep {
    fn of(sw: &StepWork) -> PlannedStep {
        PlannedStep {
            step: sw.step.clone(),
            changes: sw
                .hosts
                .iter()
                .filter(|h| h.changes())
                .map(|h| format!("{}: {}", h.host, h.describe()))
                .collect(),
        }
    }
}

/// Everything known before executing: connections, facts, rendered files, work.
pub(crate) struct Prepared {
    /// Held from before the facts were read until the run ends.
    pub cluster_lock: Option<crate::lock::ClusterLock>,
    /// The hosts, connected, and the design for them as they run (their
    /// release's PostgreSQL).
    pub fleet: Fleet,
    pub work: Vec<StepWork>,
    /// What every host reported, read under the cluster lock.
    pub facts: BTreeMap<String, HostFacts>,
    pub secrets: Secrets,
    pub renderer: Renderer,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Clouds selected by `--cloud`, in deployment order, and whether the GLB is.
fn select<'a>(design: &'a Design, only: &[String]) -> anyhow::Result<(Vec<&'a Cloud>, bool)> {
    for name in only {
        if name != "glb" && design.cloud(name).is_none() {
            let names: Vec<&str> = design.clouds.iter().map(|c| c.name.as_str()).collect();
            bail!(Usage(format!(
                "--cloud {name}: no such cloud (clouds: {}, and glb)",
                names.join(", ")
            )));
        }
    }
    let all = only.is_empty();
    let clouds = design
        .clouds_in_order()
        .into_iter()
        .filter(|c| all || only.contains(&c.name))
        .collect();
    Ok((clouds, all || only.iter().any(|o| o == "glb")))
}

/// Hosts to reach: every host of the selected clouds (with its cloud), the
/// GLB's if selected, the witness and the repositories with every cloud.
fn reach<'a>(design: &'a Design, clouds: &[&'a Cloud], with_glb: bool) -> Vec<(Option<&'a Cloud>, &'a Host)> {
    let mut hosts: Vec<(Option<&Cloud>, &Host)> = clouds
        .iter()
        .flat_map(|c| c.hosts.iter().map(move |h| (Some(*c), h)))
        .collect();
    if with_glb {
        hosts.extend(design.glb_hosts().iter().map(|h| (None, h)));
    }
    if clouds.len() == design.clouds.len() {
        hosts.extend(design.witness().map(|h| (None, h)));
        hosts.extend(design.repository_hosts().map(|h| (None, h)));
    }
    hosts
}

/// Is `host` the design's witness?
fn is_witness(design: &Design, host: &Host) -> bool {
    design.witness().is_some_and(|w| w.name == host.name)
}

/// How a command reaches its hosts: SSH, or a test's fakes.
pub(crate) type Connector<'c> =
    &'c (dyn Fn(Vec<Host>) -> futures::future::BoxFuture<'static, (Vec<Remote>, Vec<remote::ConnectError>)> + Sync);

/// Reaches hosts over SSH.
pub(crate) fn ssh(hosts: Vec<Host>) -> futures::future::BoxFuture<'static, (Vec<Remote>, Vec<remote::ConnectError>)> {
    Box::pin(async move { remote::connect_all(&hosts, CONNECT_TIMEOUT).await })
}

/// The cluster's secrets, generated and saved on a first deploy (a dry run
/// writes nothing, not even the secrets file); refused when a component
/// that is on lacks its own.
fn secrets_for(design: &Design, dry_run: bool) -> anyhow::Result<Secrets> {
    let mut secrets = if dry_run {
        Secrets::load(&design.secrets_file)?.map_or_else(Secrets::generate, Ok)?
    } else {
        Secrets::load_or_generate(&design.secrets_file)?
    };
    if design.backup.is_some() && secrets.backup_passphrase.is_empty() {
        bail!(Usage(format!(
            "backups are on but there is no backup_passphrase: add it to {} or set {}\n  \
             hint: the repositories are encrypted with it; without the secrets file pgha cannot keep a generated one",
            design.secrets_file.display(),
            crate::secrets::BACKUP_ENV
        )));
    }
    if design.exporter.is_some() && secrets.monitor_password.is_empty() {
        bail!(Usage(format!(
            "the metrics exporter is on but there is no monitor_password: add it to {} or set {}\n  \
             hint: without the secrets file pgha cannot keep a generated one (or set components.exporter.enabled: false)",
            design.secrets_file.display(),
            crate::secrets::MONITOR_ENV
        )));
    }
    // The design's roles kept in the secrets file get theirs once, saved
    // before any host sees them.
    let managed = design.managed_objects();
    let kept = managed
        .roles
        .iter()
        .filter(|r| r.present && r.password == crate::design::objects::PasswordSource::Secrets)
        .map(|r| r.name.as_str());
    if secrets.add_role_passwords(kept)? && !dry_run {
        if !design.secrets_file.exists() {
            bail!(Usage(format!(
                "roles keep their passwords in the secrets file, and there is none at {}\n  \
                 hint: create it (a deploy does when no PGHA_*_PASSWORD is set), or give the roles `password: env:VARIABLE`",
                design.secrets_file.display()
            )));
        }
        secrets.save(&design.secrets_file)?;
    }
    components::objects::passwords(&managed, &secrets)
        .map_err(|e| Usage(format!("{e}\n  hint: see `password:` under roles in README.md")))?;
    Ok(secrets)
}

/// `session`: the deploy's own, which takes the cluster lock; `None`: a
/// step of a command that holds the session and the lock already.
pub(crate) async fn prepare(
    design: &Design,
    opts: &Options,
    session: Option<&crate::lock::Session>,
    connect: Connector<'_>,
) -> anyhow::Result<Prepared> {
    let (clouds, with_glb) = select(design, &opts.only)?;
    let secrets = secrets_for(design, opts.dry_run)?;
    // Issued or renewed here, like the secrets: a dry run only says what it would do.
    let (pki, issued) = crate::pki::ensure(design, time::OffsetDateTime::now_utc(), !opts.dry_run)?;
    for line in &issued.lines {
        progress::note(format!(
            "tls: {line}{}",
            if opts.dry_run { " (dry run: not saved)" } else { "" }
        ));
    }
    let renderer = Renderer::for_design(design)?.with_pki(Some(pki));

    let plain: Vec<Host> = reach(design, &clouds, with_glb)
        .into_iter()
        .map(|(_, h)| h.clone())
        .collect();
    let (connected, failed) = connect(plain).await;
    if !failed.is_empty() {
        remote::close_all(connected).await;
        return Err(remote::connect_errors(failed));
    }
    let remotes: BTreeMap<String, Remote> = connected.into_iter().map(|r| (r.name.clone(), r)).collect();
    let resolved = match fleet::resolve(design, &remotes).await {
        Ok(d) => d,
        Err(e) => {
            remote::close_all(remotes.into_values()).await;
            return Err(e);
        }
    };
    let design = &resolved;
    let (clouds, with_glb) = select(design, &opts.only)?;
    let hosts = reach(design, &clouds, with_glb);
    let plan = Plan::for_clouds(design, &clouds, with_glb);
    // Facts are read under the cluster lock: nobody changes what they describe meanwhile.
    let taken = match session {
        Some(session) => session.cluster(design, &clouds, &remotes).await.map(Some),
        None => Ok(None),
    };
    let cluster_lock = match taken {
        Ok(l) => l,
        Err(e) if e.downcast_ref::<crate::lock::Busy>().is_some() => {
            remote::close_all(remotes.into_values()).await;
            return Err(e);
        }
        Err(e) => {
            // A first deploy has no etcd yet; deploy is also what repairs it.
            progress::note(format!(
                "note: no cluster lock ({e:#}); only this machine's lock on the design protects this run"
            ));
            None
        }
    };

    let inputs = Decide {
        design,
        plan: &plan,
        clouds: &clouds,
        hosts: &hosts,
        remotes: &remotes,
        renderer: &renderer,
        secrets: &secrets,
        delete_removed_data: opts.delete_removed_data,
    };
    let (work, facts, rest) = match inputs.work().await {
        Ok(w) => w,
        Err(e) => {
            // Whatever stopped the run, nothing was changed: let go of everything now.
            let_go(cluster_lock, remotes).await;
            return Err(e);
        }
    };
    Ok(Prepared {
        cluster_lock,
        fleet: Fleet {
            design: resolved,
            remotes,
            unreachable: Vec::new(),
        },
        work,
        facts,
        secrets,
        renderer: renderer.with_rest_clients(rest),
    })
}

/// What the facts, read under the cluster lock, say there is to do.
struct Decide<'a, 'b> {
    design: &'a Design,
    plan: &'b Plan,
    clouds: &'b [&'a Cloud],
    hosts: &'b [(Option<&'a Cloud>, &'a Host)],
    remotes: &'b BTreeMap<String, Remote>,
    renderer: &'b Renderer,
    secrets: &'b Secrets,
    delete_removed_data: bool,
}

impl Decide<'_, '_> {
    async fn work(&self) -> anyhow::Result<(Vec<StepWork>, BTreeMap<String, HostFacts>, RestClients)> {
        let Decide {
            design,
            plan,
            clouds,
            hosts,
            secrets,
            ..
        } = *self;
        let host_facts = self.gather_facts().await?;
        for (cloud, h) in hosts.iter() {
            if let Some(c) = cloud {
                refuse_plaintext_etcd(&h.name, &host_facts[&h.name])?;
                refuse_unrunnable_postgres(design, &h.name, &host_facts[&h.name])?;
                refuse_missing_interface(c, &h.name, &host_facts[&h.name])?;
            }
            refuse_backups_by_address(design, h, &host_facts[&h.name])?;
        }
        refuse_new_site_members(design, &host_facts)?;
        let mut cloud_facts = BTreeMap::new();
        for cloud in clouds {
            let f = read_cloud_facts(cloud, &host_facts);
            if f.dynamic_config.as_ref().is_some_and(|c| c["pause"] == true) {
                progress::note(components::patroni::paused_warning(&cloud.name).to_string());
            }
            refuse_unknown_parameters(design, cloud, &f)?;
            refuse_patroni_without_gateway(cloud, &host_facts)?;
            refuse_removing_the_leader(design, cloud, &f)?;
            cloud_facts.insert(cloud.name.clone(), f);
        }

        refuse_stale_primary(design, &cloud_facts)?;
        let objects = self.objects(&host_facts)?;

        // Patroni requires client certificates once no client an older
        // pgha deployed runs (this deploy replaces them).
        let require = components::rest::require(design, |h| host_facts.get(h).map(|f| &f.rest))
            .inspect_err(|behind| progress::note(components::rest::not_yet_note(behind)))
            .is_ok();
        let rest = RestClients { present: true, require };
        let files = self.render(rest)?;
        let recorded = state::load(design)?.glb_primary_cloud;
        let work = work::compute(&work::Inputs {
            design,
            plan,
            facts: &host_facts,
            cloud_facts: &cloud_facts,
            files: &files,
            glb_applied: recorded.as_deref(),
            delete_removed_data: self.delete_removed_data,
            secrets,
            objects: objects.as_ref(),
        });
        Ok((work, host_facts, rest))
    }

    /// What the design's roles and databases need on the master, when a
    /// master reported its own; what it will not fix is said, and what it
    /// cannot do refuses the deploy before any change.
    fn objects(&self, host_facts: &BTreeMap<String, HostFacts>) -> anyhow::Result<Option<components::objects::Diff>> {
        let design = self.design;
        let state = self
            .hosts
            .iter()
            .filter(|(c, _)| c.is_some_and(Cloud::is_primary))
            .find_map(|(_, h)| host_facts.get(&h.name).and_then(|f| f.objects.as_ref()));
        let managed = design.managed_objects();
        let Some(state) = state.filter(|_| !managed.is_empty()) else {
            return Ok(None);
        };
        let passwords = components::objects::passwords(&managed, self.secrets).map_err(Usage)?;
        let diff = components::objects::diff(&managed, state, &passwords);
        if !diff.refused.is_empty() {
            bail!(Usage(format!(
                "the master cannot hold what the design declares:\n  {}",
                diff.refused.join("\n  ")
            )));
        }
        for d in &diff.drift {
            progress::note(format!("drift: {d}"));
        }
        Ok(Some(diff))
    }

    /// Facts from every host at once, each by the script for its kind
    /// (database host, GLB, witness, repository host, or a database host
    /// that holds its cloud's repository); only Debian and Ubuntu hosts.
    async fn gather_facts(&self) -> anyhow::Result<BTreeMap<String, HostFacts>> {
        let Decide {
            design, hosts, remotes, ..
        } = *self;
        let db_script = facts::script(
            design,
            &packages::db_host_of(design),
            &components::db_host_files(design),
            true,
        );
        let glb_script = facts::glb_script(design);
        let witness_script = facts::script(
            design,
            &components::site::witness_packages(),
            &components::site::WITNESS_FILES,
            false,
        );
        let repository_script = facts::script(
            design,
            &components::backup::repository_packages(),
            &components::backup::repository_fact_files(),
            false,
        );
        // A database host that holds its cloud's repository has both kinds of files.
        let colocated_script = facts::script(
            design,
            &packages::db_host_of(design),
            &[
                components::db_host_files(design),
                components::backup::repository_fact_files(),
            ]
            .concat(),
            true,
        );
        let gathered = futures::future::join_all(hosts.iter().map(|(cloud, h)| {
            let script = match (cloud, design.repository_on(&h.name)) {
                (Some(_), Some(repo)) => colocated_script.clone() + &facts::repository_script(design, repo),
                (Some(_), None) => db_script.clone(),
                (None, _) if is_witness(design, h) => witness_script.clone(),
                (None, Some(repo)) => repository_script.clone() + &facts::repository_script(design, repo),
                (None, None) => glb_script.clone(),
            };
            let r = &remotes[&h.name];
            async move { (h.name.clone(), facts::gather(r, &script).await) }
        }))
        .await;
        let mut host_facts: BTreeMap<String, HostFacts> = BTreeMap::new();
        for (name, f) in gathered {
            let f = f?;
            if !f.os.starts_with("debian") && !f.os.starts_with("ubuntu") {
                bail!(
                    "{name}: pgha installs with apt and supports Debian and Ubuntu; this host runs `{}`",
                    f.os
                );
            }
            host_facts.insert(name, f);
        }
        Ok(host_facts)
    }

    /// Every host's files as the design wants them.
    fn render(&self, rest: RestClients) -> anyhow::Result<BTreeMap<String, Vec<RenderedFile>>> {
        let Decide {
            design,
            hosts,
            renderer,
            secrets,
            ..
        } = *self;
        let renderer = &renderer.clone().with_rest_clients(rest);
        let mut files: BTreeMap<String, Vec<RenderedFile>> = BTreeMap::new();
        for (cloud, h) in hosts {
            let rendered = match cloud {
                Some(c) => renderer.db_host(design, c, h, None, secrets)?,
                None if is_witness(design, h) => renderer.witness_host(design, h, secrets)?,
                None if design.is_repository(&h.name) => {
                    let repo = design.repository_on(&h.name).expect("a repository host");
                    renderer.repository_host(design, repo, secrets)?
                }
                None => renderer.glb_host(design, h, secrets)?,
            };
            files.insert(h.name.clone(), rendered);
        }
        Ok(files)
    }
}

/// What the cloud's hosts report of the cloud as a whole.
fn read_cloud_facts(cloud: &Cloud, facts: &BTreeMap<String, HostFacts>) -> CloudFacts {
    let of = |h: &Host| facts.get(&h.name);
    let first = |part: &dyn Fn(&HostFacts) -> bool| cloud.hosts.iter().filter_map(of).find(|f| part(f));
    CloudFacts {
        // From a member where Patroni runs.
        dynamic_config: first(&|f| f.service("patroni").is_active() && f.dynamic_config.is_some())
            .and_then(|f| f.dynamic_config.clone()),
        pg_contexts: first(&|f| !f.pg_contexts.is_empty())
            .map(|f| f.pg_contexts.clone())
            .unwrap_or_default(),
        etcd_members: first(&|f| !f.etcd_members.is_empty())
            .map(|f| f.etcd_members.clone())
            .unwrap_or_default(),
        patroni_members: facts::cloud_members(cloud, facts)
            .map(<[_]>::to_vec)
            .unwrap_or_default(),
    }
}

/// A host the design dropped that is its cloud's (standby) leader: nothing
/// is changed; a switchover first moves the leadership.
fn refuse_removing_the_leader(design: &Design, cloud: &Cloud, f: &CloudFacts) -> anyhow::Result<()> {
    for r in work::removals(design, cloud, Some(f)) {
        if let Some(m) = f
            .patroni_members
            .iter()
            .find(|m| m.name == r.name && (m.is_leader() || m.is_standby_leader()))
        {
            let hint = if m.is_leader() {
                "`pgha switchover` moves the master to a host that stays (then deploy again)"
            } else {
                "stop Patroni there (another member takes over), then deploy again"
            };
            bail!(Usage(format!(
                "{} is no longer in {} but is the {} of {}: deploy does not remove a cloud's leader; nothing was \
                 changed\n  hint: {hint}",
                r.name,
                design.path.display(),
                m.role,
                cloud.name
            )));
        }
    }
    Ok(())
}

/// The site lease's etcd cluster is made with its members (each cloud's
/// first host, and the witness), and pgha never changes them. Once it
/// exists, a design that names another (the first host dropped, a cloud's
/// hosts reordered, a cloud added) would start a member no cluster knows,
/// while the host it replaces still counts in the quorum.
fn refuse_new_site_members(design: &Design, facts: &BTreeMap<String, HostFacts>) -> anyhow::Result<()> {
    let Some(site) = &design.site else { return Ok(()) };
    let known: Vec<&str> = facts
        .values()
        .flat_map(|f| &f.site_members)
        .map(|m| m.peer.as_str())
        .collect();
    // Nobody lists the members: no cluster yet, or none of it answers (the
    // site step's own wait then fails).
    if known.is_empty() {
        return Ok(());
    }
    let new: Vec<String> = design
        .site_members()
        .iter()
        .filter(|(_, h)| !known.contains(&components::etcd::peer_url(&h.address, site.peer_port).as_str()))
        .map(|(c, h)| match c {
            Some(c) => format!("{} (now {}'s first host)", h.name, c.name),
            None => format!("{} (the witness)", h.name),
        })
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    bail!(Usage(format!(
        "{}: not a member of the site lease's etcd cluster, whose members were fixed when it was made; \
         pgha does not change them; nothing was changed\n  \
         hint: keep each cloud's first host first in its list of hosts (drop or reorder the others)",
        new.join(", ")
    )))
}

/// The plan of changes as a table: one row per step, hosts and what changes.
pub(crate) fn work_table(work: &[StepWork]) -> String {
    let mut t = ui::table(&["#", "Cloud", "Component", "Action", "Hosts", "Changes"]);
    for sw in work {
        let s = &sw.step;
        let cloud = ui::cloud_label(s);
        let changes = if !s.action.changes_hosts() {
            s.description.clone()
        } else if sw.changes() {
            PlannedStep::of(sw).changes.join("\n")
        } else {
            "unchanged".to_string()
        };
        t.add_row(vec![
            s.number.to_string(),
            cloud,
            s.component.as_str().into(),
            s.action.as_str().into(),
            s.hosts.join(", "),
            changes,
        ]);
    }
    t.to_string()
}

/// The steps in the order they run: one at a time, except that consecutive
/// steps with nothing to change (their facts, read under the cluster lock,
/// already match; verify steps) only read, so they run together.
fn read_groups(work: &[StepWork]) -> Vec<&[StepWork]> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < work.len() {
        let mut end = start + 1;
        if !work[start].changes() {
            while end < work.len() && !work[end].changes() {
                end += 1;
            }
        }
        groups.push(&work[start..end]);
        start = end;
    }
    groups
}

pub(crate) fn summary_table(results: &[HostResult], work: &[StepWork]) -> String {
    let mut t = ui::table(&["#", "Step", "Host", "Outcome", "Seconds"]);
    for r in results {
        let title = work
            .iter()
            .find(|w| w.step.number == r.step)
            .map(exec::title)
            .unwrap_or_default();
        t.add_row(vec![
            r.step.to_string(),
            title,
            r.host.clone(),
            r.outcome.label().to_string(),
            format!("{:.1}", r.seconds),
        ]);
    }
    t.to_string()
}

/// The whole command.
pub(crate) async fn run(design: &Design, opts: &Options, output: ui::Output) -> anyhow::Result<()> {
    run_with(design, opts, output, &ssh).await
}

/// The whole command, reaching hosts through `connect`.
pub(crate) async fn run_with(
    design: &Design,
    opts: &Options,
    output: ui::Output,
    connect: Connector<'_>,
) -> anyhow::Result<()> {
    apply(design, opts, output, connect).await.1
}

/// A deploy through the engine under its own session; its JSON document
/// too, when one was printed.
pub(crate) async fn apply(
    design: &Design,
    opts: &Options,
    output: ui::Output,
    connect: Connector<'_>,
) -> (Option<Report>, anyhow::Result<()>) {
    let session = match crate::lock::Session::begin(design, "deploy", None) {
        Ok(s) => s,
        Err(e) => return (None, Err(e)),
    };
    let p = match prepare(design, opts, Some(&session), connect).await {
        Ok(p) => p,
        Err(e) => return (None, Err(e)),
    };
    let (events, monitor) = progress::monitor();
    let flags = engine::Flags::new(opts.yes, opts.dry_run, output);
    let mut cmd = DeployRun::new(design, opts, &p, output == ui::Output::Text);
    let result = engine::drive(
        &p.fleet,
        Some(&session),
        p.cluster_lock.as_ref(),
        &mut cmd,
        flags,
        events,
    )
    .await;
    let report = cmd.report.take();
    let _ = monitor.await;
    close(p).await;
    (report, result)
}

/// A deploy as a step of a command that holds the session and the cluster
/// lock, asked and journaled as that command (certs rotate), drawn by its
/// monitor (`events`). Its plan and summary are drawn as text when `text`.
pub(crate) async fn apply_as_step(
    design: &Design,
    opts: &Options,
    text: bool,
    connect: Connector<'_>,
    events: progress::Events,
) -> anyhow::Result<()> {
    let p = prepare(design, opts, None, connect).await?;
    let output = if text { ui::Output::Text } else { ui::Output::Json };
    let flags = engine::Flags {
        report: false,
        ..engine::Flags::new(true, false, output)
    };
    let mut cmd = DeployRun::new(design, opts, &p, text);
    let result = engine::drive(&p.fleet, None, None, &mut cmd, flags, events).await;
    close(p).await;
    result
}

/// A deploy as the engine runs it: its steps in read groups (the steps of
/// a group read together and run at once), each host's outcome kept.
struct DeployRun<'a> {
    /// The design as loaded: what the run clears from the state.
    design: &'a Design,
    opts: &'a Options,
    p: &'a Prepared,
    text: bool,
    results: Vec<HostResult>,
    report: Option<Report>,
}

impl<'a> DeployRun<'a> {
    fn new(design: &'a Design, opts: &'a Options, p: &'a Prepared, text: bool) -> DeployRun<'a> {
        DeployRun {
            design,
            opts,
            p,
            text,
            results: Vec::new(),
            report: None,
        }
    }

    fn changes(&self) -> usize {
        self.p.work.iter().filter(|w| w.changes()).count()
    }
}

impl engine::Command for DeployRun<'_> {
    /// A read group: indices into the work.
    type Step = Vec<usize>;

    fn name(&self) -> String {
        "deploy".into()
    }

    /// Taken by `prepare`, before the facts are read.
    fn lock_clouds(&self) -> Vec<&Cloud> {
        Vec::new()
    }

    async fn plan(&mut self) -> anyhow::Result<Vec<Vec<usize>>> {
        let mut at = 0;
        Ok(read_groups(&self.p.work)
            .into_iter()
            .map(|g| {
                at += g.len();
                (at - g.len()..at).collect()
            })
            .collect())
    }

    fn describe(&self, group: &Vec<usize>) -> String {
        let titles: Vec<String> = group.iter().map(|&i| exec::title(&self.p.work[i])).collect();
        titles.join("; ")
    }

    fn plan_text(&self, _: &[Vec<usize>], _: &[String]) -> String {
        format!(
            "Deployment plan for {} ({} steps, {} with changes):\n{}",
            self.design.platform.name,
            self.p.work.len(),
            self.changes(),
            work_table(&self.p.work)
        )
    }

    fn plan_json(&self, _: &[Vec<usize>], _: &[String]) -> serde_json::Value {
        let plan: Vec<PlannedStep> = self.p.work.iter().map(PlannedStep::of).collect();
        serde_json::to_value(plan).unwrap_or_default()
    }

    fn changing(&self, _: &[Vec<usize>]) -> usize {
        self.changes()
    }

    fn runs_unchanged(&self) -> bool {
        true
    }

    fn question(&self) -> String {
        format!("Apply {} step(s) with changes?", self.changes())
    }

    /// A deploy that changed something goes on the journal (a no-op one does not).
    fn journaled(&self, _: &[Vec<usize>], _: &[String]) -> Vec<String> {
        self.p.work.iter().filter(|w| w.changes()).map(exec::title).collect()
    }

    fn draws_steps(&self) -> bool {
        false
    }

    async fn run(&mut self, group: &Vec<usize>, rec: &Recorder) -> anyhow::Result<()> {
        // Drawn by the engine's monitor; a Recorder without one draws nothing.
        let events = rec.events();
        let p = self.p;
        let ctx = exec::Ctx {
            fleet: &p.fleet,
            renderer: &p.renderer,
            secrets: &p.secrets,
            events,
            unchanged: (self.changes() == 0).then_some(&p.facts),
        };
        let runs = group.iter().map(|&i| {
            let (ctx, sw) = (&ctx, &p.work[i]);
            async move {
                let started = std::time::Instant::now();
                let (r, res) = exec::run_step(ctx, sw).await;
                progress::emit(
                    &ctx.events,
                    progress::Event::StepDone {
                        number: sw.step.number,
                        ok: res.is_ok(),
                        elapsed: started.elapsed(),
                    },
                );
                (r, res)
            }
        });
        let mut outcome = Ok(());
        for (r, res) in futures::future::join_all(runs).await {
            self.results.extend(r);
            if let Err(e) = res {
                outcome = outcome.and(Err(e));
            }
        }
        outcome
    }

    fn ended(&mut self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        if self.text {
            ui::print(&format!("Summary:\n{}", summary_table(&self.results, &self.p.work)))?;
        }
        if result.is_ok() {
            let (clouds, _) = select(self.design, &self.opts.only)?;
            let names: Vec<String> = clouds.iter().map(|c| c.name.clone()).collect();
            state::clear_pending(self.design, &names)?;
        }
        result.map_err(|e| {
            anyhow!("{e:#}\n  the deploy stopped there; fix the cause and run it again: finished steps are skipped as unchanged")
        })
    }

    fn print_report(&mut self, dry_run: bool, ok: bool) -> Option<anyhow::Result<()>> {
        let changed = if dry_run {
            self.changes()
        } else {
            self.results
                .iter()
                .filter(|r| matches!(r.outcome, progress::Outcome::Changed(_)))
                .count()
        };
        let report = self.report.insert(Report {
            command: "deploy",
            dry_run,
            plan: self.p.work.iter().map(PlannedStep::of).collect(),
            results: if dry_run { Vec::new() } else { self.results.clone() },
            ok,
            changed,
        });
        Some(ui::print_json(report))
    }
}

async fn close(p: Prepared) {
    let_go(p.cluster_lock, p.fleet.remotes).await;
}

/// Releases the cluster lock and closes the connections: the lock's host
/// after the release, every other one meanwhile.
async fn let_go(lock: Option<crate::lock::ClusterLock>, mut remotes: BTreeMap<String, Remote>) {
    let held = lock.as_ref().and_then(|l| remotes.remove(l.host()));
    let release = async {
        if let Some(l) = lock {
            l.release().await;
        }
    };
    tokio::join!(release, remote::close_all(remotes.into_values()));
    remote::close_all(held).await;
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod runner_tests;
