//! The clouds, their hosts (inline or from an inventory) and SSH settings, layered.

use super::*;

pub(super) fn default_ssh() -> Ssh {
    Ssh {
        user: "root".into(),
        port: 22,
        identity_file: None,
        known_hosts: None,
    }
}

/// Applies one layer of SSH settings on top of `base`, checking the files it names.
pub(super) fn layer_ssh(
    cx: &mut Checker,
    root: &Node,
    dir: &Path,
    mut ssh: Ssh,
    raw: Option<&RawSsh>,
    field: &str,
) -> Ssh {
    let Some(raw) = raw else { return ssh };
    if let Some(user) = &raw.user {
        if !shape::posix_user(user) {
            cx.error(
                root,
                &format!("{field}.user"),
                format!("`{user}` is not a user name"),
                "use a POSIX user name: lowercase letters, digits, `_` and `-`, starting with a letter or `_`",
            );
        }
        ssh.user = user.clone();
    }
    if let Some(port) = raw.port {
        if port == 0 {
            cx.error(
                root,
                &format!("{field}.port"),
                "port 0 is not a port",
                "use a port from 1 to 65535 (22 for sshd)",
            );
        }
        ssh.port = port;
    }
    for (value, key, slot, what) in [
        (
            &raw.identity_file,
            "identity_file",
            &mut ssh.identity_file,
            "identity file",
        ),
        (
            &raw.known_hosts,
            "known_hosts",
            &mut ssh.known_hosts,
            "known_hosts file",
        ),
    ] {
        if let Some(file) = value {
            let path = dir.join(file);
            // Checked, not opened: opening a FIFO would hang the load.
            if let Err(e) = crate::fsutil::check_regular(&path) {
                cx.error(
                    root,
                    &format!("{field}.{key}"),
                    format!("cannot read the {what} {}: {e}", path.display()),
                    "paths are relative to the file that names them; `pgha lab up` writes one for the lab",
                );
            }
            *slot = Some(path);
        }
    }
    ssh
}

#[allow(clippy::too_many_arguments)]
pub(super) fn build_clouds(
    cx: &mut Checker,
    root: &Node,
    base: &Path,
    raw: Vec<RawCloud>,
    global_ssh: &Ssh,
    platform: &Option<Platform>,
    mode: Mode,
) -> Vec<Cloud> {
    if raw.is_empty() {
        cx.error(
            root,
            "clouds",
            "the design lists no clouds",
            "add at least one cloud with `status: primary`",
        );
        return Vec::new();
    }
    let mut clouds = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, rc) in raw.into_iter().enumerate() {
        let at = format!("clouds[{i}]");
        let name = match rc.name {
            Some(n) if valid_name(&n) => n,
            Some(n) => {
                cx.error(
                    root,
                    &format!("{at}.name"),
                    format!("invalid cloud name `{n}`"),
                    NAME_HINT,
                );
                continue;
            }
            None => {
                cx.error(root, &at, "this cloud has no name", "add `name: dc1`");
                continue;
            }
        };
        if let Some(first) = names.insert(name.clone(), i) {
            cx.error(
                root,
                &format!("{at}.name"),
                format!("cloud `{name}` is listed twice (also clouds[{first}])"),
                "give every cloud its own name",
            );
        }
        let status = cloud_status(cx, root, &at, &name, rc.status.as_deref());
        let cloud_ssh = layer_ssh(
            cx,
            root,
            base,
            global_ssh.clone(),
            rc.ssh.as_ref(),
            &format!("{at}.ssh"),
        );
        let hosts = cloud_hosts(cx, root, base, &at, &name, (rc.hosts, rc.inventory), &cloud_ssh);
        let scaling = check_scaling(cx, root, &at, &name, rc.scaling, hosts.len(), platform);
        let vip = rc.vip.and_then(|v| build_vip(cx, root, &format!("{at}.vip"), v));
        clouds.push(Cloud {
            name,
            status,
            scaling,
            hosts,
            vip,
        });
    }
    check_one_primary(cx, root, &clouds, mode);
    clouds
}

/// A cloud's virtual IP: an IP address (vip-manager takes no name), its
/// prefix length and the interface it goes on.
fn build_vip(cx: &mut Checker, root: &Node, at: &str, raw: RawVip) -> Option<Vip> {
    // Debian's vip-manager (1.0.2) builds IPv4 masks only and announces
    // the address by ARP: IPv6 it cannot hold.
    let address = match raw.address.as_deref().map(|a| (a, a.parse::<std::net::Ipv4Addr>())) {
        Some((_, Ok(ip))) if !ip.is_loopback() && !ip.is_unspecified() && !ip.is_multicast() && !ip.is_broadcast() => {
            ip.to_string()
        }
        Some((a, _)) => {
            cx.error(
                root,
                &format!("{at}.address"),
                format!("invalid virtual IP `{a}`"),
                "use an unused IPv4 address of the cloud's hosts' network, e.g. `address: 10.0.1.100` \
                 (Debian's vip-manager holds no IPv6 address)",
            );
            return None;
        }
        None => {
            cx.error(
                root,
                &format!("{at}.address"),
                "this virtual IP has no address",
                "add `address: 10.0.1.100` (an unused IPv4 address of the cloud's hosts' network)",
            );
            return None;
        }
    };
    let netmask = raw.netmask.unwrap_or(24);
    if !(1..=32).contains(&netmask) {
        cx.error(
            root,
            &format!("{at}.netmask"),
            format!("netmask {netmask} is out of range for `{address}`"),
            "the prefix length of the hosts' network, 1 to 32",
        );
        return None;
    }
    let interface = raw.interface.unwrap_or_else(|| "eth0".to_string());
    if !shape::interface(&interface) {
        cx.error(
            root,
            &format!("{at}.interface"),
            format!("invalid interface name `{interface}`"),
            "the hosts' network interface, e.g. `interface: eth0` (at most 15 letters, digits, `-`, `_`, `.`)",
        );
        return None;
    }
    Some(Vip {
        address,
        netmask,
        interface,
    })
}

/// `primary` or `secondary`; anything else is an error (taken as secondary).
fn cloud_status(cx: &mut Checker, root: &Node, at: &str, name: &str, raw: Option<&str>) -> CloudStatus {
    match raw {
        Some("primary") => CloudStatus::Primary,
        Some("secondary") => CloudStatus::Secondary,
        Some(other) => {
            cx.error(
                root,
                &format!("{at}.status"),
                format!("unknown cloud status `{other}`"),
                "use `primary` or `secondary`",
            );
            CloudStatus::Secondary
        }
        None => {
            cx.error(
                root,
                &format!("{at}.status"),
                format!("cloud `{name}` has no status"),
                "add `status: primary` or `status: secondary`",
            );
            CloudStatus::Secondary
        }
    }
}

/// A cloud's hosts: listed inline or in an inventory file, never both.
fn cloud_hosts(
    cx: &mut Checker,
    root: &Node,
    base: &Path,
    at: &str,
    name: &str,
    raw: (Option<Vec<RawHost>>, Option<String>),
    ssh: &Ssh,
) -> Vec<Host> {
    match raw {
        (Some(_), Some(_)) => {
            cx.error(
                root,
                &format!("{at}.inventory"),
                format!("cloud `{name}` has both `hosts` and `inventory`"),
                "list the hosts in one place",
            );
            Vec::new()
        }
        (Some(hosts), None) => build_hosts(cx, root, base, hosts, ssh, &format!("{at}.hosts")),
        (None, Some(file)) => load_inventory(cx, root, base, &file, ssh, &format!("{at}.inventory")),
        (None, None) => {
            cx.error(
                root,
                at,
                format!("cloud `{name}` has no hosts"),
                "add `hosts:` (name and address of each compute) or `inventory: inventories/FILE.yaml`",
            );
            Vec::new()
        }
    }
}

/// The cloud's scaling: its number of hosts, and what that number means
/// for etcd's quorum and the availability the platform asks.
fn check_scaling(
    cx: &mut Checker,
    root: &Node,
    at: &str,
    name: &str,
    raw: Option<usize>,
    n: usize,
    platform: &Option<Platform>,
) -> usize {
    let scaling = raw.unwrap_or(n);
    if scaling != n && n > 0 {
        cx.error(
            root,
            &format!("{at}.scaling"),
            format!("cloud `{name}` has scaling {scaling} but {} host(s)", n),
            "scaling is the number of computes: list exactly that many hosts",
        );
    }
    if scaling == 0 && raw.is_some() {
        cx.error(
            root,
            &format!("{at}.scaling"),
            "scaling must be at least 1",
            "a cloud needs at least one compute",
        );
    }
    let single = platform
        .as_ref()
        .is_some_and(|p| p.availability == Availability::Single);
    if single && n > 1 {
        cx.error(
            root,
            &format!("{at}.scaling"),
            format!("availability is `single` but cloud `{name}` has {} computes", n),
            "use `availability: redundant` for more than one compute per cloud",
        );
    } else if !single && n > 0 {
        if n < 3 {
            cx.warn(
                root,
                &format!("{at}.scaling"),
                format!("cloud `{name}` has {n} compute(s): its etcd cannot keep quorum if one fails"),
                "use at least 3 computes per cloud",
            );
        } else if n > 5 {
            cx.warn(
                root,
                &format!("{at}.scaling"),
                format!("cloud `{name}` has {n} computes: more than 5 adds replicas but little availability"),
                "3 or 5 computes per cloud are usually enough",
            );
        }
        if n.is_multiple_of(2) {
            cx.warn(
                root,
                &format!("{at}.scaling"),
                format!("cloud `{name}` runs an even number ({n}) of etcd members"),
                "an odd number tolerates as many failures with one member fewer",
            );
        }
    }
    scaling
}

/// Exactly one primary cloud (none is allowed while only validating).
fn check_one_primary(cx: &mut Checker, root: &Node, clouds: &[Cloud], mode: Mode) {
    let primaries: Vec<&Cloud> = clouds.iter().filter(|c| c.is_primary()).collect();
    if primaries.is_empty() && mode == Mode::Deployable && !clouds.is_empty() {
        cx.error(
            root,
            "clouds",
            "no cloud has `status: primary`",
            "mark the cloud that serves traffic `status: primary` (after `pgha cloud make-secondary`, run `pgha cloud make-primary NAME`)",
        );
    }
    if primaries.len() > 1 {
        let names: Vec<&str> = primaries.iter().map(|c| c.name.as_str()).collect();
        let second = names[1];
        let i = clouds.iter().position(|c| c.name == second).unwrap_or(0);
        cx.error(
            root,
            &format!("clouds[{i}].status"),
            format!("more than one primary cloud ({})", names.join(", ")),
            "exactly one cloud elects the master and serves traffic; make the others `secondary`",
        );
    }
}

pub(super) fn build_hosts(
    cx: &mut Checker,
    root: &Node,
    dir: &Path,
    raw: Vec<RawHost>,
    ssh: &Ssh,
    at: &str,
) -> Vec<Host> {
    let mut hosts = Vec::new();
    for (i, rh) in raw.into_iter().enumerate() {
        let here = format!("{at}[{i}]");
        let name = match rh.name {
            Some(n) if valid_name(&n) => Some(n),
            Some(n) => {
                cx.error(
                    root,
                    &format!("{here}.name"),
                    format!("invalid host name `{n}`"),
                    NAME_HINT,
                );
                None
            }
            None => {
                cx.error(root, &here, "this host has no name", "add `name: pg1`");
                None
            }
        };
        let address = match rh.address {
            Some(a) if shape::address(&a).is_some() => Some(a),
            Some(a) => {
                cx.error(
                    root,
                    &format!("{here}.address"),
                    format!("invalid address `{a}`"),
                    "use an IPv4 or IPv6 address (without brackets) or a DNS host name",
                );
                None
            }
            None => {
                cx.error(
                    root,
                    &here,
                    "this host has no address",
                    "add `address: 10.0.0.11` (IP or DNS name)",
                );
                None
            }
        };
        let ssh = layer_ssh(cx, root, dir, ssh.clone(), rh.ssh.as_ref(), &format!("{here}.ssh"));
        if let (Some(name), Some(address)) = (name, address) {
            hosts.push(Host { name, address, ssh });
        }
    }
    hosts
}

pub(super) fn load_inventory(cx: &mut Checker, root: &Node, base: &Path, file: &str, ssh: &Ssh, at: &str) -> Vec<Host> {
    let path = base.join(file);
    let src = match crate::fsutil::read_text(&path, crate::fsutil::MAX_SMALL) {
        Ok(s) if s.starts_with('\u{feff}') || s.contains('\0') => {
            cx.error(
                root,
                at,
                format!("the inventory {} holds a byte order mark or a NUL byte", path.display()),
                "save it as plain UTF-8 text",
            );
            return Vec::new();
        }
        Ok(s) => s,
        Err(e) => {
            cx.error(
                root,
                at,
                format!("cannot read the inventory: {e:#}"),
                "inventory paths are relative to the design file",
            );
            return Vec::new();
        }
    };
    // Problems inside the inventory name the inventory, not the design.
    let mut inner = Checker::new(&path);
    let hosts = inner
        .parse(&src)
        .and_then(|node| {
            inner.refuse_control_characters(&node);
            let raw: Option<RawInventory> = inner.deserialize(&node);
            raw.map(|raw| {
                let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
                if raw.hosts.is_empty() {
                    inner.error(
                        &node,
                        "hosts",
                        "the inventory lists no hosts",
                        "add `hosts:` with a name and address each",
                    );
                }
                build_hosts(&mut inner, &node, &dir, raw.hosts, ssh, "hosts")
            })
        })
        .unwrap_or_default();
    cx.problems.append(&mut inner.problems);
    hosts
}
