//! The few Docker CLI calls the lab makes, each failing with Docker's own words.

use std::process::Stdio;

use anyhow::{bail, Context};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Runs `docker ARGS`, returning stdout; an error quotes stderr.
pub(crate) async fn docker(args: &[&str]) -> anyhow::Result<String> {
    docker_with_input(args, None).await
}

pub(crate) async fn docker_with_input(args: &[&str], input: Option<&[u8]>) -> anyhow::Result<String> {
    let mut child = Command::new("docker")
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run `docker`: install Docker (Debian: apt-get install docker.io)")?;
    if let Some(data) = input {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(data).await?;
        drop(stdin);
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "`docker {}` failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `docker exec CONTAINER sh -c SCRIPT`.
pub(crate) async fn exec(container: &str, script: &str) -> anyhow::Result<String> {
    docker(&["exec", container, "sh", "-c", script]).await
}

/// Does a container or network exist, and which lab label does it carry?
/// `Ok(None)`: it does not exist. `Ok(Some(""))`: it exists without our label.
pub(crate) async fn label_of(kind: &str, name: &str) -> anyhow::Result<Option<String>> {
    // Containers keep labels in their config, networks at the top.
    let field = if kind == "container" {
        ".Config.Labels"
    } else {
        ".Labels"
    };
    let format = format!("{{{{index {field} \"pgha.lab\"}}}}");
    let out = Command::new("docker")
        .args([kind, "inspect", "-f", &format, name])
        .output()
        .await
        .context("cannot run `docker`")?;
    if out.status.success() {
        let label = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(Some(if label == "<no value>" { String::new() } else { label }))
    } else {
        Ok(None)
    }
}

/// Checks that the engine answers, with a hint on how to start it.
pub(crate) async fn require_engine() -> anyhow::Result<()> {
    let out = Command::new("docker")
        .args(["info", "-f", "{{.ServerVersion}}"])
        .output()
        .await;
    match out {
        Err(_) => bail!("Docker is not installed: apt-get install -y docker.io (or run .ci/setup)"),
        Ok(o) if !o.status.success() => bail!(
            "the Docker engine is not running: {}\n  hint: start it with `dockerd >/var/log/dockerd.log 2>&1 &` (or `systemctl start docker`); .ci/setup does both install and start",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(_) => Ok(()),
    }
}
