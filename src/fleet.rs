//! The fleet as commands see it: the hosts that answered over SSH and the
//! ones that did not, and what every command asks them (the Patroni cluster,
//! SQL over the local socket, WAL positions as numbers).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::anyhow;

use crate::components::patroni;
use crate::design::{Cloud, Design, Host, HostRuns};
use crate::remote::{self, ConnectError, Remote};
use crate::shell::quote;

/// Connected hosts of a design; unreachable ones are listed, not fatal.
pub(crate) struct Fleet {
    /// The design for the hosts as they run (see [`resolve`]).
    pub design: Design,
    pub remotes: BTreeMap<String, Remote>,
    pub unreachable: Vec<ConnectError>,
}

/// The hosts a command reaches besides the clouds' own and the witness
/// (its vote on the site lease is read or moved by every command).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reach {
    pub glb: bool,
    /// The repositories: backups, their list and the archive's health.
    pub repositories: bool,
    /// The secondary clouds and the witness; without them, the primary
    /// clouds' hosts only (a switchover's: a lost host elsewhere then costs
    /// it no connection timeout).
    pub sites: bool,
}

impl Reach {
    pub(crate) const ALL: Reach = Reach {
        glb: true,
        repositories: true,
        sites: true,
    };
    pub(crate) const NO_GLB: Reach = Reach {
        glb: false,
        repositories: true,
        sites: true,
    };
}

impl Fleet {
    /// Connects the design's hosts `reach` names: each SSH connection is
    /// time on the way to a command's first step.
    pub(crate) async fn connect(design: &Design, reach: Reach) -> anyhow::Result<Fleet> {
        Fleet::connect_resolving(design, reach, true).await
    }

    /// As [`Fleet::connect`], with `design` as given when not `resolve`: a
    /// major upgrade half-way has hosts configured for either version.
    pub(crate) async fn connect_resolving(design: &Design, reach: Reach, resolve: bool) -> anyhow::Result<Fleet> {
        let mut hosts: Vec<Host> = design
            .clouds
            .iter()
            .filter(|c| reach.sites || c.is_primary())
            .flat_map(|c| c.hosts.iter().cloned())
            .collect();
        if reach.glb {
            hosts.extend(design.glb_hosts().iter().cloned());
        }
        if reach.sites {
            hosts.extend(design.witness().cloned());
        }
        if reach.repositories {
            hosts.extend(design.repository_hosts().cloned());
        }
        let (ok, unreachable) = remote::connect_all(&hosts, Duration::from_secs(8)).await;
        let remotes: BTreeMap<String, Remote> = ok.into_iter().map(|r| (r.name.clone(), r)).collect();
        let resolved = if resolve {
            self::resolve(design, &remotes).await
        } else {
            Ok(design.clone())
        };
        match resolved {
            Ok(design) => Ok(Fleet {
                design,
                remotes,
                unreachable,
            }),
            Err(e) => {
                remote::close_all(remotes.into_values()).await;
                Err(e)
            }
        }
    }

    /// The renderer for a command that rewrites hosts' files outside a
    /// deploy (a restore, a major upgrade): the PKI as it is (Patroni's
    /// config holds the trust bundle's digest), and Patroni requiring client
    /// certificates if one of its hosts does now. Only a deploy moves a
    /// cluster an older pgha deployed to require them (see
    /// `components::rest`): its older clients may still run.
    pub(crate) async fn renderer(&self) -> anyhow::Result<crate::render::Renderer> {
        let d = &self.design;
        let pki = crate::pki::load(d, time::OffsetDateTime::now_utc())?;
        let script = crate::components::rest::required_script();
        let asks = d
            .clouds
            .iter()
            .flat_map(|c| &c.hosts)
            .filter_map(|h| self.remotes.get(&h.name))
            .map(|r| r.check("reading whether Patroni requires client certificates", &script));
        let answers = futures::future::try_join_all(asks).await?;
        let require = answers.iter().any(|a| a.contains("rest_verify_required"));
        Ok(crate::render::Renderer::for_design(d)?
            .with_pki(pki)
            .with_rest_clients(crate::render::RestClients { present: true, require }))
    }

    pub(crate) fn remote(&self, host: &str) -> anyhow::Result<&Remote> {
        self.remotes
            .get(host)
            .ok_or_else(|| anyhow!("{host} is unreachable over SSH"))
    }

    pub(crate) fn reachable(&self, host: &str) -> bool {
        self.remotes.contains_key(host)
    }

    pub(crate) fn cloud_reachable(&self, cloud: &Cloud) -> bool {
        cloud.hosts.iter().any(|h| self.reachable(&h.name))
    }

    pub(crate) async fn cluster_view(&self, cloud: &Cloud) -> anyhow::Result<Vec<patroni::Member>> {
        cluster_state(&self.design, &self.remotes, cloud)
            .await
            .map(|v| v.members)
    }

    /// The cloud's members and whether it is paused (maintenance mode).
    pub(crate) async fn cluster_state(&self, cloud: &Cloud) -> anyhow::Result<patroni::ClusterView> {
        cluster_state(&self.design, &self.remotes, cloud).await
    }

    /// Sets the cloud's pause key through the first member that answers,
    /// until its cluster view shows it. What counts is the view, not the
    /// command's exit: a `patronictl` whose reply was lost after the change
    /// fails, and one sent again is then told "already paused" (or "not
    /// paused"); one that failed before any change is sent again.
    pub(crate) async fn set_paused(&self, cloud: &Cloud, pause: bool) -> anyhow::Result<()> {
        let what = format!("patronictl {}", if pause { "pause" } else { "resume" });
        let script = patroni::pause_script(pause);
        // The last command's error, for the message should the view not change.
        let sent: std::cell::RefCell<Option<anyhow::Error>> = Default::default();
        let outcome = crate::wait::poll(Duration::from_secs(30), || async {
            if self.cluster_state(cloud).await?.paused == pause {
                return Ok(true);
            }
            let failed = on_first_answering(&self.remotes, cloud, &what, &script).await.err();
            *sent.borrow_mut() = failed;
            Ok(false)
        })
        .await;
        let said = sent
            .borrow()
            .as_ref()
            .map_or(String::new(), |s| format!(" ({what}: {s:#})"));
        outcome.map_err(|e| e.context(format!("{}'s Patroni does not show the change{said}", cloud.name)))
    }

    /// The cloud's master: the healthy leader in Patroni's view that takes
    /// writes (Patroni 4 names the leader before PostgreSQL has left recovery).
    pub(crate) async fn master(&self, cloud: &Cloud) -> anyhow::Result<Option<String>> {
        let members = self.cluster_view(cloud).await?;
        let Some(leader) = members.iter().find(|m| m.is_leader() && m.is_healthy()) else {
            return Ok(None);
        };
        let writable = self.psql(&leader.name, "select pg_is_in_recovery()").await? == "f";
        Ok(writable.then(|| leader.name.clone()))
    }

    /// Runs SQL as the postgres OS user over the local socket (peer
    /// authentication: no password anywhere); returns unaligned output.
    pub(crate) async fn psql(&self, host: &str, sql: &str) -> anyhow::Result<String> {
        let script = psql_script(self.design.platform.postgres_port, sql);
        Ok(self
            .remote(host)?
            .check("running SQL", &script)
            .await?
            .trim()
            .to_string())
    }

    /// Whether the host's PostgreSQL takes writes, from the host itself. A
    /// server that does not run is `Down`; a psql that fails while one runs
    /// (or a host that does not answer) is an error, never "read-only".
    pub(crate) async fn server_role(&self, host: &str) -> anyhow::Result<ServerRole> {
        let p = &self.design.platform;
        let out = self
            .remote(host)?
            .check(
                "asking PostgreSQL whether it takes writes",
                &server_role_script(p.postgres_port, &p.data_dir, &p.bin_dir),
            )
            .await?;
        match out.trim() {
            "f" => Ok(ServerRole::Primary),
            "t" => Ok(ServerRole::Standby),
            "down" => Ok(ServerRole::Down),
            other => anyhow::bail!("{host}: PostgreSQL answered {other:?} to pg_is_in_recovery()"),
        }
    }

    pub(crate) async fn close(self) {
        remote::close_all(self.remotes.into_values()).await;
    }
}

/// Prints what a database host runs: its release as the facts name it
/// (`debian 13`), then the PostgreSQL major Patroni is configured for
/// there (its `bin_dir`), if any.
pub(crate) fn runs_script() -> String {
    format!(
        ". /etc/os-release 2>/dev/null; echo \"$ID $VERSION_ID\"\n{}\n",
        patroni::configured_major_script("")
    )
}

/// [`runs_script`]'s output.
pub(crate) fn parse_runs(out: &str) -> HostRuns {
    let mut lines = out.lines().map(str::trim);
    HostRuns {
        os: lines.next().unwrap_or_default().to_string(),
        configured: lines.next().and_then(|v| v.parse().ok()),
    }
}

/// `design` for its hosts as they run: what each reachable database host
/// runs is read at once, and an unnamed PostgreSQL version becomes theirs
/// ([`Design::for_hosts`]).
pub(crate) async fn resolve(design: &Design, remotes: &BTreeMap<String, Remote>) -> anyhow::Result<Design> {
    let db_hosts = remotes
        .values()
        .filter(|r| design.clouds.iter().any(|c| c.hosts.iter().any(|h| h.name == r.name)));
    let script = runs_script();
    let read = futures::future::join_all(db_hosts.map(|r| {
        let script = &script;
        async move {
            let runs = r.check("reading the OS release and PostgreSQL version", script).await;
            (r.name.clone(), runs.map(|o| parse_runs(&o)))
        }
    }))
    .await;
    let mut hosts = BTreeMap::new();
    for (name, runs) in read {
        hosts.insert(name, runs?);
    }
    Ok(design.for_hosts(&hosts)?)
}

/// What a host's PostgreSQL is, asked on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerRole {
    /// Read-write.
    Primary,
    /// In recovery: read-only.
    Standby,
    /// No server runs on the data directory.
    Down,
}

/// Prints `f` (read-write), `t` (in recovery) or `down` (pg_ctl says no
/// server runs: exit 3, or 4 without a data directory); fails otherwise.
/// From `/`, with psql's stderr apart: PostgreSQL 15's psql warns that it
/// cannot change to root's home directory.
pub(crate) fn server_role_script(port: u16, data_dir: &str, bin_dir: &str) -> String {
    format!(
        "cd / && err=$(mktemp) || exit 1\n\
trap 'rm -f \"$err\"' EXIT\n\
if out=$(runuser -u postgres -- psql -p {port} -XAtq -c 'select pg_is_in_recovery()' 2>\"$err\"); then echo \"$out\"; exit 0; fi\n\
runuser -u postgres -- {} -D {} status >/dev/null 2>&1\n\
case $? in 3|4) echo down; exit 0 ;; esac\n\
cat \"$err\" >&2\nexit 1\n",
        quote(&format!("{bin_dir}/pg_ctl")),
        quote(data_dir)
    )
}

pub(crate) fn psql_script(port: u16, sql: &str) -> String {
    format!("runuser -u postgres -- psql -p {port} -XAtq -v ON_ERROR_STOP=1 <<'PGHA_SQL'\n{sql}\nPGHA_SQL")
}

/// The cloud's Patroni cluster as the first member that answers sees it,
/// with whether the cloud is paused.
pub(crate) async fn cluster_state(
    design: &Design,
    remotes: &BTreeMap<String, Remote>,
    cloud: &Cloud,
) -> anyhow::Result<patroni::ClusterView> {
    let script = patroni::cluster_script(design.governor.rest_port);
    first_answer(remotes, cloud, "reading the Patroni cluster", &script, |out| {
        let view = patroni::parse_cluster_view(&out)?;
        anyhow::ensure!(!view.members.is_empty(), "no Patroni member of {} answered", cloud.name);
        Ok(view)
    })
    .await
}

/// Runs `script` on the cloud's connected hosts in turn until one succeeds
/// and `read` takes its output; else the last error, naming its host.
pub(crate) async fn first_answer<T>(
    remotes: &BTreeMap<String, Remote>,
    cloud: &Cloud,
    what: &str,
    script: &str,
    read: impl Fn(String) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut last = anyhow!("no host of {} answered (none is connected)", cloud.name);
    for h in &cloud.hosts {
        let Some(r) = remotes.get(&h.name) else { continue };
        match r.check(what, script).await.and_then(&read) {
            Ok(found) => return Ok(found),
            Err(e) => last = e.context(h.name.clone()),
        }
    }
    Err(last)
}

/// [`first_answer`] for a script whose success is all that matters: its output.
pub(crate) async fn on_first_answering(
    remotes: &BTreeMap<String, Remote>,
    cloud: &Cloud,
    what: &str,
    script: &str,
) -> anyhow::Result<String> {
    first_answer(remotes, cloud, what, script, Ok).await
}

pub(crate) use crate::lsn::{format_lsn, parse_lsn};
