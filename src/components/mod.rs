//! One module per component: what it installs, which files it owns, which
//! service runs it. The plan and the runner ask these modules, never hard-code.

pub(crate) mod backup;
pub(crate) mod etcd;
pub(crate) mod exporter;
pub(crate) mod glb;
pub(crate) mod haproxy;
pub(crate) mod major;
pub(crate) mod objects;
pub(crate) mod packages;
pub(crate) mod patroni;
pub(crate) mod pgbouncer;
pub(crate) mod rest;
pub(crate) mod site;
pub(crate) mod systemd;
pub(crate) mod tls;
pub(crate) mod upgrade;
pub(crate) mod vip;

use serde::Serialize;

/// The parts of a deployment, in the order a cloud is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    Packages,
    Tls,
    Etcd,
    Governor,
    Haproxy,
    Cluster,
    Site,
    Backup,
    Metrics,
    Pooler,
    Vip,
    Glb,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Packages => "packages",
            Component::Tls => "tls",
            Component::Etcd => "etcd",
            Component::Governor => "governor",
            Component::Haproxy => "haproxy",
            Component::Cluster => "cluster",
            Component::Site => "site",
            Component::Backup => "backup",
            Component::Metrics => "metrics",
            Component::Pooler => "pooler",
            Component::Vip => "vip",
            Component::Glb => "glb",
        }
    }
}

/// A file pgha renders from a template and installs on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpec {
    pub component: Component,
    pub template: &'static str,
    pub path: &'static str,
    pub owner: &'static str,
    pub group: &'static str,
    pub mode: u32,
    /// The systemd unit that reads this file.
    pub service: &'static str,
    /// A command that must accept the new file (appended as its last
    /// argument) before it replaces the old one.
    pub check: Option<&'static str>,
}

impl FileSpec {
    /// Sets the file's owner, group and mode (its content is right).
    pub(crate) fn mode_script(&self) -> String {
        let quote = crate::shell::quote;
        format!(
            "chown {} {path} && chmod {:o} {path}",
            quote(&format!("{}:{}", self.owner, self.group)),
            self.mode,
            path = quote(self.path)
        )
    }
}

/// The files of a database host, in the order they are applied.
pub(crate) const DB_HOST_FILES: [FileSpec; 10] = [
    tls::TRUST,
    tls::CERT,
    tls::ETCD_KEY,
    tls::POSTGRES_KEY,
    tls::GATEWAY_CERT,
    etcd::CONFIG,
    patroni::FENCE,
    patroni::FENCE_UNIT,
    patroni::CONFIG,
    haproxy::CONFIG,
];
/// A file of a metrics job a timer runs (`service`): root's.
pub(crate) const fn timer_job_file(
    service: &'static str,
    template: &'static str,
    path: &'static str,
    mode: u32,
    check: Option<&'static str>,
) -> FileSpec {
    FileSpec {
        component: Component::Metrics,
        template,
        path,
        owner: "root",
        group: "root",
        mode,
        service,
        check,
    }
}

/// The files of a GLB host.
pub(crate) const GLB_HOST_FILES: [FileSpec; 1] = [glb::CONFIG];

/// The files of a database host of `design`: with a site lease, its member
/// and agent files too.
pub(crate) fn db_host_files(design: &crate::design::Design) -> Vec<FileSpec> {
    let mut files = DB_HOST_FILES.to_vec();
    files.push(haproxy::PEM);
    if design.site.is_some() {
        files.extend(site::DB_HOST_FILES);
    }
    if design.backup.is_some() {
        files.push(backup::CONFIG);
        files.push(backup::RESTORE_WAL);
    }
    if design.exporter.is_some() {
        files.extend(exporter::FILES);
        files.extend(exporter::NODE_FILES);
        if design.backup.is_some() {
            files.extend(backup::METRICS_FILES);
        }
    }
    if design.pgbouncer.is_some() {
        files.extend(pgbouncer::FILES);
    }
    // Rendered for the hosts of a cloud with a virtual IP only; read on all
    // (a cloud's setting removed leaves them, and their services, to stop).
    if vip::any(design) {
        files.extend(vip::FILES);
    }
    files
}

/// The files of a GLB host: with a site lease the GLB checks every cloud's
/// Patroni over TLS, so it trusts the cluster CA and presents its own
/// certificate.
pub(crate) fn glb_host_files(design: &crate::design::Design) -> Vec<FileSpec> {
    let mut files = Vec::new();
    if design.site.is_some() {
        files.push(tls::TRUST);
        files.push(haproxy::PEM);
    }
    files.extend(GLB_HOST_FILES);
    files
}
