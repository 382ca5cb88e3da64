//! Snapshots of the plan and of every rendered file, for both examples.

mod common;

use common::example;
use pgha::design;
use pgha::plan::Plan;
use pgha::render::Renderer;
use pgha::secrets::Secrets;

const EXAMPLES: [&str; 3] = ["two-clouds", "single-cloud", "three-sites"];

fn load(name: &str) -> design::Design {
    design::load(&example(&format!("{name}.yaml")))
        .expect("example is valid")
        .design
}

#[test]
fn plan_table_and_json() {
    for name in EXAMPLES {
        let plan = Plan::deployment(&load(name));
        insta::assert_snapshot!(format!("plan_table_{name}"), pgha::ui::plan_table(&plan));
        insta::assert_json_snapshot!(format!("plan_json_{name}"), plan);
    }
}

#[test]
fn plan_orders_primary_then_secondary_then_glb() {
    let plan = Plan::deployment(&load("two-clouds"));
    let order: Vec<_> = plan
        .steps
        .iter()
        .map(|s| s.cloud.clone().unwrap_or_else(|| "GLB".into()))
        .collect();
    let first_dc2 = order.iter().position(|c| c == "dc2").unwrap();
    assert!(order[..first_dc2].iter().all(|c| c == "dc1"));
    assert!(order[first_dc2..].iter().all(|c| c != "dc1"));
    assert_eq!(order.last().unwrap(), "GLB");
    assert!(plan.steps.iter().enumerate().all(|(i, s)| s.number == i + 1));
}

#[test]
fn plan_puts_a_primary_listed_second_first() {
    let src = std::fs::read_to_string(example("two-clouds.yaml")).unwrap();
    // Swap the statuses: dc2 becomes primary although listed second.
    let swapped = src
        .replace("status: primary", "status: XX")
        .replace("status: secondary", "status: primary")
        .replace("status: XX", "status: secondary");
    let d = design::load_str(&swapped, &example("two-clouds.yaml")).unwrap().design;
    let plan = Plan::deployment(&d);
    assert_eq!(plan.steps[0].cloud.as_deref(), Some("dc2"));
}

#[test]
fn every_rendered_file() {
    for name in EXAMPLES {
        let d = load(name);
        let all = Renderer::for_design(&d).unwrap().all(&d, &Secrets::redacted()).unwrap();
        for hf in all {
            // Code installed as it is (host/) is the same on every host.
            for f in hf.files.into_iter().filter(|f| f.spec.template.ends_with(".j2")) {
                let cloud = hf.cloud.as_deref().unwrap_or("glb");
                let file = f.spec.path.trim_start_matches('/').replace('/', "_");
                insta::assert_snapshot!(format!("{name}__{cloud}__{}__{file}", hf.host), f.content);
            }
        }
    }
}

#[test]
fn rendered_files_never_hold_real_secrets() {
    let d = load("two-clouds");
    let secrets = Secrets::generate().unwrap();
    let all = Renderer::for_design(&d).unwrap().all(&d, &secrets).unwrap();
    let patroni: Vec<_> = all
        .iter()
        .flat_map(|h| &h.files)
        .filter(|f| f.spec.path == "/etc/patroni/config.yml")
        .collect();
    assert!(patroni
        .iter()
        .all(|f| f.content.contains(&secrets.superuser_password) && f.spec.mode == 0o600));
    let others = all
        .iter()
        .flat_map(|h| &h.files)
        .filter(|f| f.spec.path != "/etc/patroni/config.yml");
    for f in others {
        assert!(
            !f.content.contains(&secrets.superuser_password),
            "{} leaks",
            f.spec.path
        );
    }
}

#[test]
fn template_override_directory_wins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("haproxy.cfg.j2"), "# custom for {{ host.name }}\n").unwrap();
    let d = load("single-cloud");
    let r = Renderer::new(Some(dir.path())).unwrap();
    let files = r
        .db_host(&d, &d.clouds[0], &d.clouds[0].hosts[0], None, &Secrets::redacted())
        .unwrap();
    let haproxy = files
        .iter()
        .find(|f| f.spec.path == "/etc/haproxy/haproxy.cfg")
        .unwrap();
    assert_eq!(haproxy.content, "# custom for dc1-pg1\n");
}

#[test]
fn template_errors_name_the_template_and_never_the_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("patroni.yml.j2"),
        "{{ secrets.superuser_password }} {{ nope }}\n",
    )
    .unwrap();
    let d = load("single-cloud");
    let secrets = Secrets::generate().unwrap();
    let err = Renderer::new(Some(dir.path()))
        .unwrap()
        .db_host(&d, &d.clouds[0], &d.clouds[0].hosts[0], None, &secrets)
        .unwrap_err();
    let msg = format!("{err:#} {err:?}");
    assert!(msg.contains("patroni.yml.j2"), "{msg}");
    assert!(!msg.contains(&secrets.superuser_password), "{msg}");
}

/// A repository on a database host of a two-cloud design: pgBackRest
/// refuses remote repositories and remote database hosts in one command, so
/// the other cloud's repository is only in the WAL commands' sections and
/// the other database hosts only in the backup commands'.
#[test]
fn a_repository_on_a_database_host_splits_pgbackrest_sections() {
    let src = std::fs::read_to_string(example("three-sites.yaml")).unwrap();
    let dedicated = "    - cloud: dc2\n      name: dc2-backup\n      address: 10.77.0.29\n";
    assert!(src.contains(dedicated));
    let d = design::load_str(
        &src.replace(dedicated, "    - cloud: dc2\n      host: dc2-pg1\n"),
        &example("three-sites.yaml"),
    )
    .unwrap()
    .design;
    let all = Renderer::for_design(&d).unwrap().all(&d, &Secrets::redacted()).unwrap();
    let conf = |host: &str| {
        let files = &all.iter().find(|h| h.host == host).unwrap().files;
        let f = files.iter().find(|f| f.spec.path == "/etc/pgbackrest.conf").unwrap();
        // Section name -> its option lines.
        let mut sections: Vec<(String, Vec<String>)> = Vec::new();
        for line in f.content.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            match line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                Some(name) => sections.push((name.to_string(), Vec::new())),
                None => sections.last_mut().unwrap().1.push(line.to_string()),
            }
        }
        (sections, files.iter().map(|f| f.spec.path).collect::<Vec<_>>())
    };
    let (sections, paths) = conf("dc2-pg1");
    let names: Vec<&str> = sections.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "global",
            "global:archive-push",
            "global:archive-get",
            "global:restore",
            "global:info",
            "pgha-demo",
            "pgha-demo:stanza-create",
            "pgha-demo:check",
            "pgha-demo:backup"
        ]
    );
    let has = |section: &str, prefix: &str| {
        sections
            .iter()
            .find(|(n, _)| n == section)
            .unwrap()
            .1
            .iter()
            .any(|l| l.starts_with(prefix))
    };
    // Its own repository (repo2: dc2 is the second cloud) is local.
    assert!(has("global", "repo2-path=/var/lib/pgbackrest"));
    assert!(!has("global", "repo1-host=") && !has("global", "repo2-host="));
    for s in [
        "global:archive-push",
        "global:archive-get",
        "global:restore",
        "global:info",
    ] {
        assert!(has(s, "repo1-host=10.77.0.19") && !has(s, "repo2-host="), "{s}");
    }
    assert!(has("pgha-demo", "pg1-path=") && !has("pgha-demo", "pg2-host="));
    for s in ["pgha-demo:stanza-create", "pgha-demo:check", "pgha-demo:backup"] {
        // dc2's other hosts first (a standby there sends the files).
        assert!(has(s, "pg2-host=10.77.0.22") && !has(s, "pg1-host="), "{s}");
    }
    // The database hosts and dc1's repository host may reach it.
    assert!(has("global", "tls-server-auth=dc1-pg1=") && has("global", "tls-server-auth=dc1-backup="));
    assert!(paths.contains(&"/etc/systemd/system/pgha-backup@.service"));
    // Every other host reaches dc2's repository on dc2-pg1.
    let (sections, paths) = conf("dc1-pg2");
    assert!(sections[0].1.contains(&"repo2-host=10.77.0.21".to_string()));
    assert!(sections[0].1.contains(&"tls-server-auth=dc2-pg1=pgha-demo".to_string()));
    assert!(!paths.contains(&"/etc/systemd/system/pgha-backup@.service"));
    // No host of its own for dc2's repository any more.
    assert!(!all.iter().any(|h| h.host == "dc2-backup"));
}
