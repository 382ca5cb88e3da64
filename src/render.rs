//! Renders every file pgha installs, from the embedded templates or the
//! user's replacements. Rendering is pure: same design, same bytes.

use std::path::Path;

use anyhow::{anyhow, Context};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use crate::components::backup;
use crate::components::{self, FileSpec};
use crate::design::{Backup, Cloud, Design, Etcd, Glb, Governor, Haproxy, Host, Platform, Replication, Repository};
use crate::secrets::{Secrets, TemplateSecrets};

const EMBEDDED: [(&str, &str); 38] = [
    ("pgbackrest.conf.j2", include_str!("../templates/pgbackrest.conf.j2")),
    ("pgbouncer.ini.j2", include_str!("../templates/pgbouncer.ini.j2")),
    ("vip-leader.json.j2", include_str!("../templates/vip-leader.json.j2")),
    (
        "vip-leader.service.j2",
        include_str!("../templates/vip-leader.service.j2"),
    ),
    ("vip-manager.yml.j2", include_str!("../templates/vip-manager.yml.j2")),
    (
        "vip-manager.service.j2",
        include_str!("../templates/vip-manager.service.j2"),
    ),
    (
        "pgbouncer-userlist.txt.j2",
        include_str!("../templates/pgbouncer-userlist.txt.j2"),
    ),
    (
        "pgha-backup@.service.j2",
        include_str!("../templates/pgha-backup@.service.j2"),
    ),
    (
        "pgha-backup.timer.j2",
        include_str!("../templates/pgha-backup.timer.j2"),
    ),
    ("site-etcd.env.j2", include_str!("../templates/site-etcd.env.j2")),
    (
        "site-etcd.service.j2",
        include_str!("../templates/site-etcd.service.j2"),
    ),
    ("site-agent.json.j2", include_str!("../templates/site-agent.json.j2")),
    ("site-fence.sh.j2", include_str!("../templates/site-fence.sh.j2")),
    ("restore-wal.sh.j2", include_str!("../templates/restore-wal.sh.j2")),
    (
        "site-fence.service.j2",
        include_str!("../templates/site-fence.service.j2"),
    ),
    (
        "site-agent.service.j2",
        include_str!("../templates/site-agent.service.j2"),
    ),
    (
        "site-gate.service.j2",
        include_str!("../templates/site-gate.service.j2"),
    ),
    ("tls-trust.pem.j2", include_str!("../templates/tls-trust.pem.j2")),
    ("tls-cert.pem.j2", include_str!("../templates/tls-cert.pem.j2")),
    ("tls-key.pem.j2", include_str!("../templates/tls-key.pem.j2")),
    ("tls-gateway.pem.j2", include_str!("../templates/tls-gateway.pem.j2")),
    ("etcd.env.j2", include_str!("../templates/etcd.env.j2")),
    ("patroni.yml.j2", include_str!("../templates/patroni.yml.j2")),
    ("patroni-fence.py.j2", include_str!("../templates/patroni-fence.py.j2")),
    (
        "patroni-fence.conf.j2",
        include_str!("../templates/patroni-fence.conf.j2"),
    ),
    ("haproxy.cfg.j2", include_str!("../templates/haproxy.cfg.j2")),
    ("glb.cfg.j2", include_str!("../templates/glb.cfg.j2")),
    ("exporter.env.j2", include_str!("../templates/exporter.env.j2")),
    ("exporter-web.yml.j2", include_str!("../templates/exporter-web.yml.j2")),
    ("exporter-ca.pem.j2", include_str!("../templates/exporter-ca.pem.j2")),
    ("tls-haproxy.pem.j2", include_str!("../templates/tls-haproxy.pem.j2")),
    (
        "node-exporter.env.j2",
        include_str!("../templates/node-exporter.env.j2"),
    ),
    ("cert-metrics.sh.j2", include_str!("../templates/cert-metrics.sh.j2")),
    (
        "pgha-cert-metrics.service.j2",
        include_str!("../templates/pgha-cert-metrics.service.j2"),
    ),
    (
        "pgha-cert-metrics.timer.j2",
        include_str!("../templates/pgha-cert-metrics.timer.j2"),
    ),
    (
        "backup-metrics.json.j2",
        include_str!("../templates/backup-metrics.json.j2"),
    ),
    (
        "pgha-backup-metrics.service.j2",
        include_str!("../templates/pgha-backup-metrics.service.j2"),
    ),
    (
        "pgha-backup-metrics.timer.j2",
        include_str!("../templates/pgha-backup-metrics.timer.j2"),
    ),
];

/// Files installed as they are (code that runs on hosts, tested by
/// `cargo test`): their settings come from a rendered file beside them.
const STATIC: [(&str, &str); 4] = [
    ("backup_metrics.py", include_str!("../host/backup_metrics.py")),
    ("site_agent.py", include_str!("../host/site_agent.py")),
    ("site_gate.py", include_str!("../host/site_gate.py")),
    ("vip_leader.py", include_str!("../host/vip_leader.py")),
];

/// A file ready to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub spec: FileSpec,
    pub content: String,
}

/// The file rendered for `spec` among a host's files.
pub fn pick<'a>(files: &'a [RenderedFile], spec: &FileSpec) -> &'a RenderedFile {
    files
        .iter()
        .find(|f| f.spec == *spec)
        .expect("every managed file is rendered")
}

/// The files of one host.
#[derive(Debug, Clone)]
pub struct HostFiles {
    /// `None` for a GLB host.
    pub cloud: Option<String>,
    pub host: String,
    pub files: Vec<RenderedFile>,
}

#[derive(Clone)]
pub struct Renderer {
    env: Environment<'static>,
    /// Certificates and keys to install; without them (`pgha render`, or
    /// before the first deploy) the TLS files hold placeholders.
    pki: Option<crate::pki::Pki>,
    rest: RestClients,
}

/// How the clients of Patroni's REST API and Patroni meet (see
/// `components::rest`): whether HAProxy's checks present the host's
/// certificate (not while a host an older pgha deployed lacks the file), and
/// whether Patroni requires one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestClients {
    pub present: bool,
    pub require: bool,
}

/// What templates see of TLS: file contents and where they live on the host.
#[derive(Serialize, Clone)]
struct TlsContext<'a> {
    trust: &'a str,
    /// The first 16 hex digits of the trust bundle's SHA-256.
    trust_digest: String,
    cert: &'a str,
    key: &'a str,
    trust_path: &'static str,
    cert_path: &'static str,
    etcd_key_path: &'static str,
    postgres_key_path: &'static str,
    /// The host's etcd gateway certificate (no common name).
    gateway: &'a str,
    gateway_path: &'static str,
    /// The CA whose certificates the metrics exporter lets in.
    metrics_ca: &'a str,
    metrics_ca_path: &'static str,
}

#[derive(Serialize, Clone)]
struct PgbouncerContext<'a> {
    #[serde(flatten)]
    settings: &'a crate::design::Pgbouncer,
    auth_query: &'static str,
    userlist: &'static str,
}

#[derive(Serialize, Clone)]
struct ExporterContext<'a> {
    #[serde(flatten)]
    settings: &'a crate::design::Exporter,
    web_config: &'static str,
    key_path: &'static str,
    /// HAProxy's certificate and key, for the metrics gateway.
    gateway_pem: &'static str,
    /// A site member runs here: the gateway leads to its metrics too.
    site_member: bool,
    /// The node exporter's textfile directory, and pgha's file in it.
    textfile_dir: &'static str,
    textfile: &'static str,
    /// What the backup metrics write there.
    backup_textfile: &'static str,
}

/// How a cloud's etcd members start: all at once, or joining a running cluster.
#[derive(Debug, Clone)]
pub struct EtcdBootstrap {
    pub members: Vec<Host>,
    pub state: &'static str,
}

#[derive(Serialize, Clone)]
struct DbHost<'a> {
    name: &'a str,
    address: &'a str,
    cloud: &'a str,
    hba_address: String,
}

/// A GLB host, which pg_hba lets in: clients reach the master through it.
#[derive(Serialize, Clone)]
struct GlbHost {
    hba_address: String,
}

#[derive(Serialize, Clone)]
struct Standby {
    hosts: Vec<String>,
    port: u16,
}

#[derive(Serialize, Clone)]
struct TemplateContext<'a> {
    /// ` crt PEM` on HAProxy's lines that ask Patroni's REST API, or empty.
    rest_client_crt: String,
    /// Patroni's `restapi.verify_client`.
    rest_verify_client: &'static str,
    platform: &'a Platform,
    clouds: &'a [Cloud],
    cloud: Option<&'a Cloud>,
    host: &'a Host,
    db_hosts: Vec<DbHost<'a>>,
    glb_hosts: Vec<GlbHost>,
    /// `(database, role)` of each `hostssl` rule clients may use.
    hba_rules: Vec<crate::design::objects::Access>,
    /// The same, from the database hosts only.
    hba_host_rules: Vec<crate::design::objects::Access>,
    etcd: &'a Etcd,
    etcd_members: &'a [Host],
    etcd_cluster_state: &'a str,
    etcd_data_dir: String,
    governor: &'a Governor,
    haproxy: &'a Haproxy,
    exporter: Option<ExporterContext<'a>>,
    pgbouncer: Option<PgbouncerContext<'a>>,
    glb: Option<&'a Glb>,
    site: Option<&'a crate::design::Site>,
    site_members: Vec<&'a Host>,
    site_key: String,
    /// The etcd v2 key that names this cloud's leader for vip-manager.
    vip_key: String,
    site_last_key: String,
    site_sync_key: String,
    /// Each other cloud's member names (their application_name), for this
    /// cloud's synchronous_standby_names.
    site_partners: serde_json::Value,
    site_data_dir: String,
    /// Seconds after its last lease renewal by which the site fence stops a master.
    fence_bound: u32,
    /// Seconds after its last renewal at which a host's site gate closes
    /// (one decimal: what the unit passes and HAProxy's comment says).
    gate_bound: String,
    /// Seconds after its last renewal past which a master renewed late.
    late_after: String,
    gate_path: &'static str,
    /// With a site lease, the `standby_cluster` section a fenced cloud (or
    /// one with no master while another holds the lease) takes: it follows
    /// the master of any cloud through its hosts' own HAProxy.
    site_follow: Option<serde_json::Value>,
    primary_cloud: Option<&'a Cloud>,
    standby: Option<Standby>,
    synchronous_mode: bool,
    secrets: TemplateSecrets<'a>,
    tls: TlsContext<'a>,
    /// The statistics pages ask for a password (not bound to loopback).
    haproxy_stats_auth: bool,
    glb_stats_auth: bool,
    backup: Option<&'a Backup>,
    stanza: &'a str,
    /// pgBackRest's commands in Patroni's config (with backups on).
    backup_commands: Option<BackupCommands>,
    /// Set when rendering a repository host's files.
    repository: Option<&'a Repository>,
    /// Every repository in the design's order: repoN is the same one on
    /// every host (a repository host serves only its own index).
    repositories: Vec<&'a Repository>,
    /// pgBackRest's index of the repository being rendered, or of this
    /// database host's cloud's (its replicas restore from that one).
    repo_index: usize,
    /// Certificate names this host's pgBackRest server lets in.
    backup_clients: Vec<&'a str>,
    /// A repository's database hosts, its own cloud's first.
    backup_sources: Vec<&'a Host>,
    /// Patroni's `create_replica_methods`, in order.
    replica_methods: Vec<&'static str>,
    /// The file that holds Patroni on a host until recover-node.
    hold_path: &'static str,
    upgrade_hold_path: &'static str,
    patroni_config: &'static str,
    patroni_gateway_stamp: &'static str,
    /// The timer being rendered: its backup type and calendar.
    kind: &'static str,
    calendar: &'a str,
}

#[derive(Serialize, Clone)]
struct BackupCommands {
    archive: String,
    restore: String,
    /// What [`backup::RESTORE_WAL`] runs for a file it does not refuse.
    archive_get: String,
    replica: String,
}

impl Renderer {
    /// The embedded templates, each replaced by `dir/NAME` when that exists.
    pub fn new(dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        // Debug info lists the template's variables, passwords included.
        env.set_debug(false);
        // Config files, not HTML: `.yml` would otherwise be JSON-escaped.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        // `host:port` and URLs need an IPv6 address in brackets.
        env.add_filter("url_host", |a: String| crate::design::shape::url_host(&a));
        // A word of a POSIX shell line.
        env.add_filter("sh", |a: String| crate::shell::quote(&a));
        for (name, source) in EMBEDDED {
            let source = match dir.map(|d| d.join(name)).filter(|p| p.exists()) {
                Some(path) => crate::fsutil::read_text(&path, crate::fsutil::MAX_SMALL)
                    .with_context(|| format!("template {name}"))?,
                None => source.to_string(),
            };
            env.add_template_owned(name.to_string(), source)
                .map_err(|e| anyhow!("template {name}: {e}"))?;
        }
        Ok(Renderer {
            env,
            pki: None,
            rest: RestClients {
                present: true,
                require: true,
            },
        })
    }

    /// Installs `pki`'s certificates and keys instead of placeholders.
    pub fn with_pki(mut self, pki: Option<crate::pki::Pki>) -> Self {
        self.pki = pki;
        self
    }

    /// How Patroni's REST API and its clients meet (by default: every
    /// client presents a certificate, Patroni requires one).
    pub fn with_rest_clients(mut self, rest: RestClients) -> Self {
        self.rest = rest;
        self
    }

    /// For a host an older pgha deployed, which has no haproxy.pem yet:
    /// HAProxy's checks present no certificate (Patroni lets them in until
    /// every host presents one, see `components::rest`).
    pub fn without_client_pem(&self) -> Self {
        let mut r = self.clone();
        r.rest.present = false;
        r
    }

    pub fn for_design(design: &Design) -> anyhow::Result<Self> {
        Self::new(design.templates_dir.as_deref())
    }

    fn render(&self, spec: FileSpec, cx: &TemplateContext) -> anyhow::Result<RenderedFile> {
        if let Some((_, content)) = STATIC.iter().find(|(name, _)| *name == spec.template) {
            return Ok(RenderedFile {
                spec,
                content: content.to_string(),
            });
        }
        let content = self
            .env
            .get_template(spec.template)
            .and_then(|t| t.render(cx))
            .map_err(|e| anyhow!("rendering {} for {}: {e}", spec.template, cx.host.name))?;
        Ok(RenderedFile { spec, content })
    }

    /// The files of a database host.
    pub fn db_host(
        &self,
        design: &Design,
        cloud: &Cloud,
        host: &Host,
        etcd: Option<&EtcdBootstrap>,
        secrets: &Secrets,
    ) -> anyhow::Result<Vec<RenderedFile>> {
        let primary = design.primary_clouds().next();
        let standby = if cloud.is_primary() {
            None
        } else {
            // Mid-flip, with no primary cloud, it waits on every other cloud's HAProxy.
            let hosts: Vec<String> = match primary {
                Some(p) => p.hosts.iter().map(|h| h.address.clone()).collect(),
                None => design
                    .clouds
                    .iter()
                    .filter(|c| c.name != cloud.name)
                    .flat_map(|c| c.hosts.iter().map(|h| h.address.clone()))
                    .collect(),
            };
            Some(Standby {
                hosts: components::patroni::standby_hosts(design, &hosts),
                port: design.haproxy.port,
            })
        };
        let (members, state) = match etcd {
            Some(e) => (e.members.as_slice(), e.state),
            None => (cloud.hosts.as_slice(), "new"),
        };
        let mut cx = TemplateContext {
            standby,
            synchronous_mode: cloud.is_primary() && design.platform.replication == Replication::Synchronous,
            etcd_members: members,
            etcd_cluster_state: state,
            ..self.context(design, Some(cloud), host, primary, secrets)
        };
        // The cloud's repository on this host (small setups): pgBackRest's
        // config is both a database host's and a repository's.
        let repository = design.repository_on(&host.name);
        if let Some(repo) = repository {
            let mut clients = std::mem::take(&mut cx.backup_clients);
            clients.extend(
                design
                    .clouds
                    .iter()
                    .flat_map(|c| c.hosts.iter().map(|h| h.name.as_str())),
            );
            cx = TemplateContext {
                backup_clients: unique(clients),
                ..repository_context(design, repo, cx)
            };
        }
        // The site member's files only where a member runs (the cloud's first host).
        let member = design.is_site_member(&host.name);
        let mut files: Vec<RenderedFile> = components::db_host_files(design)
            .iter()
            .filter(|spec| member || ![components::site::ETCD_ENV, components::site::ETCD_UNIT].contains(spec))
            .filter(|spec| cloud.vip.is_some() || spec.component != components::Component::Vip)
            .map(|spec| self.render(*spec, &cx))
            .collect::<anyhow::Result<_>>()?;
        if repository.is_some() {
            files.extend(self.backup_units(design, &cx)?);
        }
        Ok(files)
    }

    /// The files of a cloud's repository host: TLS, pgBackRest's config, the
    /// backup unit and a timer for each scheduled backup type.
    pub fn repository_host(
        &self,
        design: &Design,
        repo: &Repository,
        secrets: &Secrets,
    ) -> anyhow::Result<Vec<RenderedFile>> {
        let primary = design.primary_clouds().next();
        let cx = TemplateContext {
            backup_clients: design
                .clouds
                .iter()
                .flat_map(|c| c.hosts.iter().map(|h| h.name.as_str()))
                .collect(),
            ..repository_context(
                design,
                repo,
                self.context(design, design.cloud(&repo.cloud), &repo.host, primary, secrets),
            )
        };
        let mut files: Vec<RenderedFile> = backup::REPOSITORY_FILES
            .iter()
            .map(|spec| self.render(*spec, &cx))
            .collect::<anyhow::Result<_>>()?;
        files.extend(self.backup_units(design, &cx)?);
        Ok(files)
    }

    /// A repository's backup unit and a timer for each scheduled type.
    fn backup_units(&self, design: &Design, cx: &TemplateContext) -> anyhow::Result<Vec<RenderedFile>> {
        let b = design.backup.as_ref().expect("a repository comes with backups");
        let mut files = vec![self.render(backup::BACKUP_UNIT, cx)?];
        for kind in backup::Kind::ALL {
            if let Some(calendar) = kind.schedule(b) {
                let cx = TemplateContext {
                    kind: kind.as_str(),
                    calendar,
                    ..cx.clone()
                };
                files.push(self.render(kind.timer(), &cx)?);
            }
        }
        Ok(files)
    }

    /// The files of the witness.
    pub fn witness_host(&self, design: &Design, host: &Host, secrets: &Secrets) -> anyhow::Result<Vec<RenderedFile>> {
        let primary = design.primary_clouds().next();
        let cx = self.context(design, None, host, primary, secrets);
        components::site::WITNESS_FILES
            .iter()
            .map(|spec| self.render(*spec, &cx))
            .collect()
    }

    /// The files of a GLB host.
    pub fn glb_host(&self, design: &Design, host: &Host, secrets: &Secrets) -> anyhow::Result<Vec<RenderedFile>> {
        let primary = design.primary_clouds().next();
        let cx = self.context(design, None, host, primary, secrets);
        components::glb_host_files(design)
            .iter()
            .map(|spec| self.render(*spec, &cx))
            .collect()
    }

    /// The TLS files' contents and paths for `host`: placeholders (never a
    /// secret) before the first deploy made the PKI.
    fn tls_context(&self, host: &Host) -> TlsContext<'_> {
        let mine = self.pki.as_ref().and_then(|p| p.hosts.get(&host.name));
        let trust = self
            .pki
            .as_ref()
            .map_or("# the cluster CA: made by the first `pgha deploy`", |p| {
                p.trust.trim_end()
            });
        TlsContext {
            trust,
            trust_digest: crate::fsutil::sha256_hex(trust.as_bytes())[..16].to_string(),
            cert: mine.map_or("# this host's certificate: issued by `pgha deploy`", |c| {
                c.cert.trim_end()
            }),
            key: mine.map_or("# this host's private key: made by `pgha deploy`, never shown", |c| {
                c.key.trim_end()
            }),
            trust_path: components::tls::TRUST_PATH,
            cert_path: components::tls::CERT_PATH,
            etcd_key_path: components::tls::ETCD_KEY_PATH,
            postgres_key_path: components::tls::POSTGRES_KEY_PATH,
            gateway: mine.map_or("# this host's etcd gateway certificate: issued by `pgha deploy`", |c| {
                c.gateway.trim_end()
            }),
            gateway_path: components::tls::GATEWAY_CERT_PATH,
            metrics_ca: self
                .pki
                .as_ref()
                .and_then(|p| p.metrics_ca.as_deref())
                .map_or("# the metrics CA: made by the first `pgha deploy`", str::trim_end),
            metrics_ca_path: components::exporter::METRICS_CA_PATH,
        }
    }

    fn context<'a>(
        &'a self,
        design: &'a Design,
        cloud: Option<&'a Cloud>,
        host: &'a Host,
        primary: Option<&'a Cloud>,
        secrets: &'a Secrets,
    ) -> TemplateContext<'a> {
        let backup = design.backup.as_ref();
        let repositories: Vec<&Repository> = backup.map(|b| b.repositories.iter().collect()).unwrap_or_default();
        let tls = self.tls_context(host);
        TemplateContext {
            tls,
            rest_client_crt: if self.rest.present {
                format!(" crt {}", components::haproxy::PEM.path)
            } else {
                String::new()
            },
            rest_verify_client: components::rest::verify_client(self.rest.require),
            haproxy_stats_auth: crate::design::stats_open(&design.haproxy.stats_address),
            glb_stats_auth: design
                .glb
                .as_ref()
                .is_some_and(|g| crate::design::stats_open(&g.stats_address)),
            platform: &design.platform,
            clouds: &design.clouds,
            cloud,
            host,
            db_hosts: db_hosts(design),
            glb_hosts: design
                .glb_hosts()
                .iter()
                .map(|h| GlbHost {
                    hba_address: hba_address(&h.address),
                })
                .collect(),
            hba_rules: design.managed_objects().hba_rules(),
            hba_host_rules: design.managed_objects().hba_host_rules(),
            etcd: &design.etcd,
            etcd_members: &[],
            etcd_cluster_state: "new",
            etcd_data_dir: components::etcd::data_dir(&design.platform.name),
            governor: &design.governor,
            haproxy: &design.haproxy,
            hold_path: components::patroni::HOLD_PATH,
            upgrade_hold_path: components::major::HOLD,
            patroni_config: components::patroni::CONFIG.path,
            patroni_gateway_stamp: components::patroni::GATEWAY_STAMP,
            pgbouncer: design.pgbouncer.as_ref().map(|p| PgbouncerContext {
                settings: p,
                auth_query: components::pgbouncer::AUTH_QUERY,
                userlist: components::pgbouncer::USERLIST.path,
            }),
            exporter: design.exporter.as_ref().map(|e| ExporterContext {
                settings: e,
                web_config: components::exporter::WEB_CONFIG_PATH,
                key_path: components::exporter::KEY_PATH,
                gateway_pem: components::haproxy::PEM.path,
                site_member: design.is_site_member(&host.name),
                textfile_dir: components::exporter::TEXTFILE_DIR,
                textfile: components::exporter::NODE_TEXTFILE,
                backup_textfile: backup::METRICS_TEXTFILE,
            }),
            glb: design.glb.as_ref(),
            site: design.site.as_ref(),
            site_members: design.site_members().into_iter().map(|(_, h)| h).collect(),
            site_key: components::site::primary_key(&design.platform.name),
            vip_key: cloud.map_or_else(String::new, |c| components::vip::key(&design.platform.name, &c.name)),
            site_last_key: components::site::last_key(&design.platform.name),
            site_sync_key: components::site::sync_key(&design.platform.name),
            site_partners: design
                .clouds
                .iter()
                .filter(|c| cloud.is_some_and(|own| own.name != c.name))
                .map(|c| {
                    (
                        c.name.clone(),
                        c.hosts.iter().map(|h| h.name.clone()).collect::<Vec<_>>().into(),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into(),
            site_data_dir: components::site::data_dir(&design.platform.name),
            fence_bound: design.site.as_ref().map_or(0, |s| components::site::fence_bound(s.ttl)),
            gate_bound: design
                .site
                .as_ref()
                .map_or(String::new(), |s| format!("{:.1}", components::site::gate_bound(s.ttl))),
            late_after: design
                .site
                .as_ref()
                .map_or(String::new(), |s| format!("{:.1}", components::site::late_bound(s.ttl))),
            gate_path: components::site::GATE_PATH,
            site_follow: design
                .site
                .as_ref()
                .map(|_| components::patroni::standby_cluster(design, &[components::patroni::LOCAL_HAPROXY])),
            primary_cloud: primary,
            standby: None,
            synchronous_mode: false,
            secrets: secrets.for_templates(),
            backup,
            stanza: &design.platform.name,
            backup_commands: backup.map(|_| BackupCommands {
                archive: backup::archive_command(design),
                restore: backup::restore_command(),
                archive_get: cloud.map(|c| backup::archive_get(design, &c.name)).unwrap_or_default(),
                replica: cloud
                    .map(|c| backup::replica_command(design, &c.name))
                    .unwrap_or_default(),
            }),
            repository: None,
            repo_index: cloud.map_or(0, |c| backup::repo_index(design, &c.name)),
            // Every repository backs up from every database host.
            backup_clients: repositories.iter().map(|r| r.host.name.as_str()).collect(),
            repositories,
            backup_sources: Vec::new(),
            replica_methods: components::patroni::replica_methods(design),
            kind: "",
            calendar: "",
        }
    }

    /// Every host's files, primary cloud first, GLB last.
    pub fn all(&self, design: &Design, secrets: &Secrets) -> anyhow::Result<Vec<HostFiles>> {
        let mut out = Vec::new();
        for cloud in design.clouds_in_order() {
            for host in &cloud.hosts {
                out.push(HostFiles {
                    cloud: Some(cloud.name.clone()),
                    host: host.name.clone(),
                    files: self.db_host(design, cloud, host, None, secrets)?,
                });
            }
        }
        for host in design.glb_hosts() {
            out.push(HostFiles {
                cloud: None,
                host: host.name.clone(),
                files: self.glb_host(design, host, secrets)?,
            });
        }
        if let Some(host) = design.witness() {
            out.push(HostFiles {
                cloud: Some("witness".into()),
                host: host.name.clone(),
                files: self.witness_host(design, host, secrets)?,
            });
        }
        // A repository on a database host came with that host's files.
        for repo in design
            .backup
            .iter()
            .flat_map(|b| &b.repositories)
            .filter(|r| !r.on_database_host)
        {
            out.push(HostFiles {
                cloud: Some(repo.cloud.clone()),
                host: repo.host.name.clone(),
                files: self.repository_host(design, repo, secrets)?,
            });
        }
        Ok(out)
    }
}

/// What a repository's files add to a host's context: the repository, and
/// the database hosts it backs up from, its own cloud's first (a host that
/// holds the repository is its own local `pg1`, not in the list).
fn repository_context<'a>(design: &'a Design, repo: &'a Repository, cx: TemplateContext<'a>) -> TemplateContext<'a> {
    TemplateContext {
        repository: Some(repo),
        backup_sources: backup::source_order(design, repo)
            .into_iter()
            .filter(|h| !repo.on_database_host || h.name != repo.host.name)
            .collect(),
        ..cx
    }
}

/// `names` without repeats, in their first order.
fn unique(names: Vec<&str>) -> Vec<&str> {
    let mut seen = std::collections::BTreeSet::new();
    names.into_iter().filter(|n| seen.insert(*n)).collect()
}

fn db_hosts(design: &Design) -> Vec<DbHost<'_>> {
    design
        .clouds_in_order()
        .into_iter()
        .flat_map(|c| {
            c.hosts.iter().map(move |h| DbHost {
                name: &h.name,
                address: &h.address,
                cloud: &c.name,
                hba_address: hba_address(&h.address),
            })
        })
        .collect()
}

/// pg_hba wants a CIDR for an IP; a DNS name stands as it is.
fn hba_address(address: &str) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => format!("{address}/32"),
        Ok(std::net::IpAddr::V6(_)) => format!("{address}/128"),
        Err(_) => address.to_string(),
    }
}

/// Writes `files` under `out` as `out/<cloud or glb>/<host>/<absolute path>`.
pub fn write_tree(out: &Path, all: &[HostFiles]) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut written = Vec::new();
    for hf in all {
        let dir = out.join(hf.cloud.as_deref().unwrap_or("glb")).join(&hf.host);
        for f in &hf.files {
            let path = dir.join(f.spec.path.trim_start_matches('/'));
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&path, &f.content).with_context(|| format!("cannot write {}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}
