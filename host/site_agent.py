#!/usr/bin/python3
# Installed by pgha as /usr/local/lib/pgha/site-agent; its settings are in
# /etc/pgha/site-agent.json (rendered per host). Edits here are replaced on
# the next deploy.
"""The site agent of pgha: which cloud may have a writable master.

The site members (one per cloud plus the witness) hold which cloud is
primary, as a key bound to a lease of TTL seconds. Timings, all from TTL and
this host's CLOCK_BOOTTIME (wall clocks never need to agree):
  - the master of the holding cloud renews every TTL/10 s and publishes its
    WAL position with each renewal;
  - a master that has not renewed for TTL/3 s (cut off from most sites)
    fences: PostgreSQL stops at once and Patroni fails over inside the
    cloud, where pre_promote asks the lease (a member that still reaches
    the site serves again). pgha-site-fence, its own process, stops it at
    TTL/2 if this agent cannot (dead, frozen, crash-looping). The lease
    lives TTL s from the same renewal: no other cloud can take it before;
  - a master that sees another cloud holding the lease (or holding it
    last) fences and makes its cloud a standby cluster of that one;
  - Patroni asks `site-agent --may-promote` before any promotion
    (pre_promote): only the holding cloud, or the last holder taking it
    back, may promote;
  - with auto failover, the standby leader of a secondary cloud takes a
    lease it has seen free for Patroni's ttl + 2 loops (the primary cloud
    elects a new master first) when it is within maximum_lag bytes of the
    last published position, and makes its cloud primary;
  - a master or standby leader whose host also leads its cloud's etcd hands
    that leadership to another member (in a thread of its own): its
    power-off then costs no etcd election, which would renew Patroni's
    leader key for a whole TTL.

What the agent does is decided by pure functions (`decide`, `decide_promotion`,
`decide_unstick`, `decide_etcd_leader`) from what one loop observed; `main`
observes and acts.
Their tests are host/test_site_agent.py, run by `cargo test`.
"""

import base64
import http.client
import json
import math
import os
import pwd
import queue
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, fields, replace
from typing import Optional

SETTINGS = "/etc/pgha/site-agent.json"
STATE_DIR = "/var/lib/pgha"
# Written once the site answered: from then on, silence from it fences.
ARMED = STATE_DIR + "/site-armed"
# Written by a fence, removed once the cloud is primary again (at once after
# a fence for silence, which leaves the cloud primary): a cloud a fence made
# a standby cluster that is still the last holder when the link returns
# takes its lease back.
FENCED = STATE_DIR + "/site-fenced"
# Written before an auto failover claims the lease, removed once the cloud
# is primary or the lease moved on: a failed promotion is tried again.
TAKING_OVER = STATE_DIR + "/site-taking-over"
# The time of the last successful renewal (CLOCK_BOOTTIME seconds, taken
# before the request left): read by pgha-site-fence, which stops a primary
# when it grows old, and by this agent when it starts again.
RUN_DIR = "/run/pgha"
STAMP = RUN_DIR + "/site-renewed"
# What the last loop saw, for the site gate's metrics.
STATE = RUN_DIR + "/site-state.json"
PATRONI_CONFIG = "/etc/patroni/config.yml"


@dataclass(frozen=True)
class Settings:
    cloud: str
    host: str
    endpoints: list
    key: str
    last_key: str
    ttl: int
    auto_failover: bool
    hold_down: float
    maximum_lag: int
    rest: str
    data_dir: str
    bin_dir: str
    postgres_port: int
    trust: str
    # The etcd gateway certificate (no common name) over the host's key:
    # etcd's JSON gateway takes the user from a login, never a certificate.
    etcd_cert: str
    etcd_key: str
    postgres_key: str
    etcd_user: str
    etcd_password: str
    # The standby_cluster section that makes this cloud follow the others.
    follow: dict
    # This cloud's etcd: its members' client URLs, this host's own, and the
    # host certificate (its common name is one of that etcd's root users).
    # Empty in the settings of an older pgha: the leadership is not steered.
    cloud_etcd: list = field(default_factory=list)
    own_etcd: str = ""
    cert: str = ""
    # The master's renewal age past which it renewed late (pgha's alert
    # rules say the same figure); 0 in an older pgha's settings.
    late_after: float = 0.0
    # Synchronous replication between clouds (site.synchronous): the site
    # key of its record (empty in an older pgha's settings: none is read),
    # whether the design asks for it, the seconds a commit may wait for the
    # partner cloud before the master records asynchronous and goes on, and
    # each other cloud's member names (PostgreSQL's application_name).
    sync_key: str = ""
    synchronous: bool = False
    sync_after: float = 10.0
    partners: dict = field(default_factory=dict)
    # Patroni's REST API user, for PATCH /config.
    rest_user: str = ""
    rest_password: str = ""

    @property
    def fence_after(self):
        return self.ttl / 3.0

    @property
    def late_bound(self):
        return self.late_after if self.late_after > 0 else round(self.fence_after * 0.7, 1)

    @property
    def period(self):
        return max(1.0, self.ttl / 10.0)

    @property
    def timeout(self):
        return max(1.0, self.ttl / 15.0)

    @staticmethod
    def load(path=SETTINGS):
        with open(path) as f:
            values = json.load(f)
        # A newer pgha's keys, met while its deploy replaces this agent, wait for its code.
        known = {f.name for f in fields(Settings)}
        return Settings(**{k: v for k, v in values.items() if k in known})


@dataclass(frozen=True)
class Observation:
    """What one loop saw. `site_ok` False: no site member answered (then
    `held` and `last` mean nothing). `standby`: the cloud's dynamic config
    has a standby_cluster section (None: not asked, or Patroni silent)."""

    now: float
    role: Optional[str]
    lsn: int = 0
    # Patroni says PostgreSQL runs (a master just stopped may still be named master).
    running: bool = True
    site_ok: bool = False
    held: Optional[dict] = None
    lease: int = 0
    last: Optional[dict] = None
    standby: Optional[bool] = None
    armed: bool = False
    fenced: bool = False
    taking_over: bool = False
    # The agent's memory: its last renewal, and since when it saw the lease free.
    last_renewal: float = 0.0
    free_since: Optional[float] = None
    # Whether a member of this cloud runs as its master (None: not asked).
    cloud_master: Optional[bool] = None
    # When this host's fence marker was written (wall clock; None: no marker).
    fenced_at: Optional[float] = None
    # The wall clock (a hand-over mark's end is one).
    wall: float = 0.0
    # The site's record of replication between clouds (read with the lease,
    # None: absent) and the revisions its write compares: its own and the
    # lease key's.
    sync: Optional[dict] = None
    sync_rev: int = 0
    held_rev: int = 0
    # A master's replication (None: not asked, or PostgreSQL silent), and
    # the agent's memory of it (see SyncStep).
    replication: Optional["Replication"] = None
    sync_target: Optional[tuple] = None
    sync_gone_since: Optional[float] = None


@dataclass
class Decision:
    """What to do, in order. `renew`: ("claim", lsn) or ("keepalive", lease,
    lsn); when it fails at or past `fence_at` (None: never), fence.
    `claim_then_promote`: (why, lsn to publish): promote only when the claim succeeds.
    `fence_follows`: the fence also makes this cloud a standby cluster
    (another cloud holds the lease, or held it last). A fence for silence
    does not: the lease may still be this cloud's, and a member that reaches
    the site may serve (seen: one master's slow links to the site kept its
    whole cloud from taking writes until they healed).
    `take_over`: (from cloud, bytes behind) for an auto failover.
    `follow`: make this cloud a standby cluster of the others, PostgreSQL untouched.
    `clear_on_renewal`: a successful renewal ends the fence and takeover
    markers (only once the cloud is primary again, not while a fence's
    standby_cluster is still set)."""

    arm: bool = False
    renew: Optional[tuple] = None
    fence_at: Optional[float] = None
    clear_on_renewal: bool = False
    fence: Optional[str] = None
    fence_follows: bool = False
    reset_clock: bool = False
    clear: list = field(default_factory=list)
    claim_then_promote: Optional[tuple] = None
    promote: Optional[str] = None
    take_over: Optional[tuple] = None
    follow: Optional[str] = None
    unstick: bool = False
    log: Optional[str] = None
    free_since: Optional[float] = None
    # The master's last renewal is older than its late bound: late or lost
    # (act sets it too when its renewal attempt ran past the fence's bound).
    late: bool = False
    # The loop saw a running master: its renewal clock is watched.
    master: bool = False
    # Synchronous replication's step is decided once the renewal succeeded
    # (`sync_due`), from the replication read then; `sync` is that step.
    sync_due: bool = False
    sync: Optional["SyncStep"] = None


def stale(at, last_renewal):
    return f"no renewal of the site lease for {at - last_renewal:.1f} s"


def cloud_of(value):
    return value.get("cloud") if isinstance(value, dict) else None


def handed_over(s, held, wall):
    """The cloud `pgha cloud make-primary` is handing this cloud's lease to
    (it marks the lease before it demotes this cloud, until `until`, wall
    clock), or None: no member of this cloud may be promoted meanwhile, or a
    resume after a fence would race the flip into two masters."""
    if cloud_of(held) != s.cloud:
        return None
    to, until = held.get("handover"), held.get("until")
    if not isinstance(to, str) or to == s.cloud or not isinstance(until, (int, float)) or isinstance(until, bool):
        return None
    return to if until > wall else None


def decide(s, o):
    """One loop's decision, from the settings and what was observed."""
    d = Decision(arm=o.site_ok and not o.armed, free_since=o.free_since)
    if o.role == "master" and not o.running:
        # Stopping, starting or just fenced: nothing to renew or fence (the
        # clock keeps running; pgha-site-fence watches a postmaster).
        d.free_since = None
        return d
    if o.role == "master":
        d.master = True
        d.free_since = None
        d.clear_on_renewal = o.standby is False
        # Silence fences only once the site answered this host.
        d.fence_at = o.last_renewal + s.fence_after if o.armed or o.site_ok else None
        d.late = d.fence_at is not None and o.now - o.last_renewal >= s.late_bound
        if not o.site_ok:
            if d.fence_at is not None and o.now >= d.fence_at:
                d.fence = stale(o.now, o.last_renewal)
        elif o.held is None:
            if o.last is None or cloud_of(o.last) == s.cloud:
                d.renew = ("claim", o.lsn)
            else:
                d.fence = f"the site lease is free and cloud {cloud_of(o.last)} held it last"
                d.fence_follows = True
        elif cloud_of(o.held) == s.cloud:
            d.renew = ("keepalive", o.lease, o.lsn)
            # Asked of PostgreSQL after the renewal, which it must never delay.
            d.sync_due = s.synchronous or cloud_of(o.sync) == s.cloud
        else:
            d.fence = f"cloud {cloud_of(o.held)} holds the site lease"
            d.fence_follows = True
        return d

    # Not a master: a master-to-be passed pre_promote, which renewed the
    # lease just now, so its clock starts afresh.
    d.reset_clock = True
    if o.role != "standby_leader":
        d.free_since = None
    if blind_after_fence(o):
        # A fence for silence leaves the cloud primary, so that a member that
        # reaches the site serves (its pre_promote keeps the lease). This
        # host still blind and its cloud without a master a whole ttl after
        # the fence: the cloud is cut off and the lease may be another's by
        # now. It follows, electing its standby leader while cut off (it
        # then follows the new primary soon after the heal; otherwise that
        # took a minute more), and this host resumes it if the lease is
        # still its cloud's when the site answers.
        fenced_for = o.wall - o.fenced_at if o.fenced_at is not None else None
        if o.cloud_master is False and fenced_for is not None and fenced_for >= s.ttl:
            d.follow = f"fenced {fenced_for:.0f} s ago, the site still silent and no master in this cloud: it follows"
        return d
    if needs_cloud_master(s, o) and o.cloud_master is False:
        # Its master was stopped by pgha-site-fence (its agent dead, say)
        # or is gone, and no member may promote (pre_promote refuses):
        # the cloud follows the lease holder, as a fence would have made it.
        d.follow = f"cloud {cloud_of(o.held)} holds the site lease and this cloud has no master: it follows"
        d.clear = [TAKING_OVER] if o.taking_over else []
        return d
    if o.standby is False:
        # The cloud is primary again: a fence or a takeover is over,
        # whichever member became master.
        d.clear = [m for m, on in ((FENCED, o.fenced), (TAKING_OVER, o.taking_over)) if on]
        if o.fenced or o.taking_over:
            return d
    d.unstick = o.role == "replica" and o.standby is True
    if o.role in ("standby_leader", "replica") and o.fenced:
        # The host that fenced resumes its cloud, standby leader or not:
        # Patroni may have handed the standby leadership to another member.
        decide_resume(s, o, d)
    elif o.role == "standby_leader" and s.auto_failover:
        decide_take_over(s, o, d)
    return d


def needs_cloud_master(s, o):
    """Whether the decision turns on this cloud having a master: a replica
    of a cloud that is not a standby cluster while another cloud holds the
    lease, or a host that fenced for silence and is still blind."""
    if fenced_and_blind(o):
        return True
    return o.role == "replica" and o.standby is False and o.site_ok and cloud_of(o.held) not in (None, s.cloud)


def fenced_and_blind(o):
    """This host fenced, is not a master, its cloud is primary and the site silent."""
    return o.role != "master" and o.fenced and o.standby is False and not o.site_ok


def blind_after_fence(o):
    """This host fenced and still cannot tell whether its cloud keeps the
    lease: its cloud has no master (or none known). Its marker stays until
    it can tell."""
    return fenced_and_blind(o) and o.cloud_master is not True


def decide_resume(s, o, d):
    """A fenced cloud whose lease nobody took meanwhile (the link came back
    before another cloud was made primary) is primary again: it keeps its
    lease, or takes it back as its last holder. A cloud made secondary by
    pgha never fenced, so it is never promoted here."""
    if not o.site_ok or handed_over(s, o.held, o.wall):
        return
    if o.held is None:
        if cloud_of(o.last) == s.cloud:
            d.claim_then_promote = ("the link is back and this cloud held the site lease last: promoting it again", None)
        return
    if cloud_of(o.held) != s.cloud:
        # Another cloud is primary now: this one follows it, for good.
        d.clear = [FENCED]
        return
    d.promote = "the link is back and this cloud still holds the site lease: promoting it again"


def decide_take_over(s, o, d):
    """Auto failover: a lease free for hold_down s, a caught-up standby leader."""
    if not o.site_ok:
        d.free_since = None
        return
    if o.taking_over:
        if o.held is None and cloud_of(o.last) == s.cloud:
            # Lapsed before a master renewed it: this cloud is its last
            # holder (the claim wrote it), so claim it again.
            d.claim_then_promote = ("this cloud took the site lease, which lapsed before a promotion: claimed it again", o.lsn)
            return
        if cloud_of(o.held) == s.cloud:
            # Claimed, not promoted yet (patronictl failed, or this agent
            # restarted in between).
            d.promote = "this cloud took the site lease and is not primary yet: promoting it again"
            return
        # The lease moved on to another cloud.
        d.clear = [TAKING_OVER]
    if o.held is not None:
        d.free_since = None
        return
    if d.free_since is None:
        d.free_since = o.now
    if o.now - d.free_since < s.hold_down:
        return
    last = o.last if isinstance(o.last, dict) else {}
    if cloud_of(last) in (None, s.cloud):
        return
    rule, why = sync_rule(s, o, last)
    if rule == "refuse":
        d.log = f"the lease of cloud {last['cloud']} expired; {why}: not taking over"
        return
    if rule == "synchronous":
        d.log = why
        d.take_over = (last["cloud"], 0)
        return
    try:
        published = int(last.get("lsn"))
    except (TypeError, ValueError):
        return  # no position published: what this cloud lacks is unknown
    behind = published - o.lsn
    if behind > s.maximum_lag:
        d.log = (
            f"the lease of cloud {last['cloud']} expired; this cloud is {behind} bytes behind "
            f"(at most {s.maximum_lag}): not taking over"
        )
        return
    d.take_over = (last["cloud"], max(behind, 0))


def decide_promotion(s, site_ok, armed, held, lease, last, wall):
    """Patroni's pre_promote. Returns ("allow"|"keepalive"|"claim"|"refuse", why):
    keepalive and claim allow the promotion when they succeed."""
    if not site_ok:
        if armed:
            return "refuse", "the site does not answer: no promotion outside the lease"
        return "allow", "no site yet (first deploy): nothing to hold"
    if held is not None:
        to = handed_over(s, held, wall)
        if to:
            return "refuse", f"pgha is handing the site lease over to cloud {to}"
        if cloud_of(held) == s.cloud:
            # Renewed now, so the new master has a whole ttl (and a fresh
            # stamp for the fence) before its agent's first renewal.
            if lease:
                return "keepalive", "this cloud's site lease could not be renewed"
            return "refuse", "this cloud's site lease has no lease id"
        return "refuse", f"cloud {cloud_of(held)} holds the site lease"
    if last is None or cloud_of(last) == s.cloud:
        return "claim", "the lease is free and this cloud could not claim it"
    return "refuse", "the lease is free but was not this cloud's: `pgha cloud make-primary` gives it"


def decide_start(s, site_ok, held, last):
    """Before Patroni starts (the Patroni fence): the cloud this one must
    follow, from the site lease, or None. A cloud another one holds the
    lease for (or held it last, the lease lapsed) follows it: Patroni's
    recover() would start a crashed primary as primary without pre_promote
    when no other member of its cloud is up (a whole cloud booting). No
    answer from the site: None (the fence's other checks decide)."""
    if not site_ok:
        return None
    holder = cloud_of(held) if held is not None else cloud_of(last)
    if held is not None and holder is None:
        # Held by a value this agent does not know: not this cloud's.
        return "an unknown cloud"
    return holder if holder not in (None, s.cloud) else None


UNSTICK_AFTER = 20
UNSTICK_AGAIN = 60


RECEIVER_SILENT_AFTER = 20


def decide_receiver(now, streaming, silent_since, restarted_at):
    """A standby leader whose WAL receiver has not been streaming for
    RECEIVER_SILENT_AFTER s has it restarted (again as long after at the
    soonest): its connection through HAProxy can stay open and silent after
    the upstream master died (HAProxy 3.0 kept such a session for its 30 min
    client timeout), and PostgreSQL's receiver has no deadline while it
    connects. Nothing is lost by a restart: PostgreSQL starts it again at
    once. Returns (restart, silent_since); `streaming` None: not known."""
    if streaming is not False:
        return False, None
    if silent_since is None:
        return False, now
    if now - silent_since < RECEIVER_SILENT_AFTER:
        return False, silent_since
    if restarted_at is not None and now - restarted_at < RECEIVER_SILENT_AFTER:
        return False, silent_since
    return True, now


# How often a master or standby leader looks whether its host also leads its
# cloud's etcd, and how long it waits after handing that leadership on.
ETCD_LEADER_EVERY = 5.0
ETCD_LEADER_AGAIN = 30.0
# The roles that hold a Patroni leader key.
LEADING = ("master", "standby_leader")


def decide_etcd_leader(role, statuses, own):
    """The member (hex id, as `etcdctl move-leader` takes it) to hand this
    cloud's etcd leadership to, or None. When the host that leads both
    Patroni and etcd dies, etcd first elects a new leader, which renews
    every lease for its whole TTL: Patroni's leader key lives a TTL from
    that election instead of from its last renewal (seen on the lab: a
    power-off's write gap of 25 s against 22 s when the hosts differ).
    `statuses`: etcdctl's `endpoint status -w json` rows of the members that
    answered; `own`: this host's endpoint among them. Only a member that
    answered and follows this one is chosen, the most applied first."""
    if role not in LEADING:
        return None
    rows = []
    for row in statuses if isinstance(statuses, list) else []:
        try:
            st = row["Status"]
            rows.append((row["Endpoint"], int(st["header"]["member_id"]), int(st["leader"]), int(st.get("raftAppliedIndex", 0))))
        except (KeyError, TypeError, ValueError):
            continue
    mine = next((r for r in rows if r[0] == own), None)
    if mine is None or mine[1] != mine[2] or mine[1] == 0:
        return None
    followers = [r for r in rows if r[0] != own and r[2] == mine[1] and r[1] != mine[1]]
    if not followers:
        return None
    return format(max(followers, key=lambda r: (r[3], r[0]))[1], "x")


def decide_unstick(now, mine, leader, behind_since, restarted_at):
    """A replica of a standby cluster left on an older timeline than its
    standby leader for UNSTICK_AFTER s is stopped (again UNSTICK_AGAIN s
    later at the soonest): Patroni then rewinds it. Returns (stop, behind_since)."""
    if not (mine and leader and mine < leader):
        return False, None
    if behind_since is None:
        behind_since = now
    if now - behind_since < UNSTICK_AFTER or (restarted_at is not None and now - restarted_at < UNSTICK_AGAIN):
        return False, behind_since
    return True, None


# ------------------------------------------------- synchronous between clouds

# A cloud whose member has flushed to within this many bytes of the master is
# asked to confirm every commit (synchronous_standby_names names it).
SYNC_CATCH_UP = 1 << 20


def ssn_for(s, cloud):
    """synchronous_standby_names that makes every commit wait for one member of `cloud`
    (its standby leader is the one that streams from this cloud's master)."""
    return "ANY 1 (" + ", ".join(f'"{n}"' for n in s.partners.get(cloud, [])) + ")"


def ssn_partner(s, ssn):
    """The cloud `ssn` (as PostgreSQL shows it) waits for, or None."""
    return next((c for c in sorted(s.partners) if s.partners[c] and ssn_for(s, c) == ssn), None)


def is_position(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# How many earlier states a record keeps, for `pgha history`.
SYNC_HISTORY = 20


def sync_record(s, mode, lsn, why, partner=None, wall=0.0, previous=None):
    """The site's record of this cloud's replication to the others: `sync`
    with `partner`, every commit from `lsn` on waits for that cloud; `async`,
    commits past `lsn` may be missing from every other cloud. It keeps the
    last SYNC_HISTORY states before it (`previous`: the record it replaces)."""
    history = []
    if isinstance(previous, dict) and sync_state(previous):
        earlier = previous.get("history")
        history = [h for h in earlier if isinstance(h, dict)] if isinstance(earlier, list) else []
        history = (history + [{k: v for k, v in previous.items() if k != "history"}])[-SYNC_HISTORY:]
    return {"cloud": s.cloud, "mode": mode, "partner": partner, "lsn": lsn, "why": why, "at": round(wall, 3), "history": history}


def sync_state(rec):
    """(mode, partner, lsn) of a record that reads, else None."""
    if not isinstance(rec, dict) or rec.get("mode") not in ("sync", "async") or not is_position(rec.get("lsn")):
        return None
    partner = rec.get("partner")
    if rec["mode"] == "sync" and not isinstance(partner, str):
        return None
    return rec["mode"], partner if rec["mode"] == "sync" else None, rec["lsn"]


@dataclass(frozen=True)
class Replication:
    """What the master's PostgreSQL said, in one query: its
    synchronous_standby_names, its WAL position, how long the oldest commit
    has waited for a synchronous standby (0: none waits), and its WAL
    senders as dicts {name, state, sync, flush}."""

    ssn: str
    lsn: int
    waiting: float
    senders: list
    # The checkpointer waits in its main loop: it has handled every reload
    # signalled before (only it tells commits to wait for synchronous
    # standbys, and not while a checkpoint is behind schedule).
    checkpointer_idle: bool = False


@dataclass
class SyncStep:
    """What a master holding the lease does about synchronous replication
    once its renewal succeeded: write `record` to the site (compared with the
    revisions it read), then, only if that succeeded (or with no record),
    set synchronous_standby_names to `patch` ("" drops it). `target`: (cloud,
    position) being confirmed; `gone_since`: since when the partner has not
    streamed. Both are the agent's memory for the next loop."""

    record: Optional[dict] = None
    patch: Optional[str] = None
    target: Optional[tuple] = None
    gone_since: Optional[float] = None
    log: Optional[str] = None


def streaming(s, senders, cloud):
    """The senders that stream to a member of `cloud`."""
    names = set(s.partners.get(cloud, []))
    return [r for r in senders if r.get("name") in names and r.get("state") == "streaming" and is_position(r.get("flush"))]


def degrade(s, o, v, why):
    """Asynchronous from now on: recorded first, synchronous_standby_names dropped after."""
    return SyncStep(record=sync_record(s, "async", v.lsn, why, wall=o.wall, previous=o.sync), patch="", log=f"replication to the other clouds is asynchronous from {lsn_text(v.lsn)}: {why}")


def decide_sync(s, o):
    """The master's step for synchronous replication to another cloud, from
    the site's record (`o.sync`, read with the lease) and its PostgreSQL's
    replication (`o.replication`; None: not known, nothing is done).

    Safe order both ways (Patroni's for synchronous_mode): a commit is
    confirmed without the partner only once the site records asynchronous
    since a position at or past it; the site records synchronous only once
    the partner has flushed past the first position every commit waits for."""
    v = o.replication
    step = SyncStep(target=o.sync_target, gone_since=o.sync_gone_since)
    if v is None:
        return step
    state = sync_state(o.sync) if isinstance(o.sync, dict) and o.sync.get("cloud") == s.cloud else None
    mode, partner = (state[0], state[1]) if state else (None, None)
    ours = ssn_partner(s, v.ssn)
    if not s.synchronous:
        if mode == "sync":
            return degrade(s, o, v, "synchronous replication between clouds is off in the design")
        if ours:
            return SyncStep(patch="", log="synchronous replication between clouds is off in the design: dropped")
        return SyncStep()
    if state is None:
        # No record of this cloud's (just promoted or made primary, or a
        # record that does not read): asynchronous, since now.
        return degrade(s, o, v, "no record of this cloud's replication yet")
    if mode == "sync":
        if ours != partner:
            return degrade(s, o, v, f"synchronous_standby_names does not wait for cloud {partner}")
        gone_since = None if streaming(s, v.senders, partner) else (o.now if o.sync_gone_since is None else o.sync_gone_since)
        if v.waiting >= s.sync_after:
            return degrade(s, o, v, f"a commit has waited {v.waiting:.1f} s for cloud {partner}")
        if gone_since is not None and o.now - gone_since >= s.sync_after:
            return degrade(s, o, v, f"no member of cloud {partner} has streamed for {o.now - gone_since:.1f} s")
        return SyncStep(gone_since=gone_since)
    # Asynchronous: back to synchronous with a cloud that caught up.
    if ours:
        if v.waiting >= s.sync_after:
            return SyncStep(patch="", log=f"cloud {ours} did not confirm a commit for {v.waiting:.1f} s: asynchronous again")
        confirming = [r for r in streaming(s, v.senders, ours) if r.get("sync") in ("sync", "quorum")]
        target = o.sync_target if o.sync_target and o.sync_target[0] == ours else None
        if target is None or target[1] is None:
            # The position every later commit waits for is taken a loop
            # after the setting is seen in force, once a sender of that
            # cloud confirms and the checkpointer is idle: it has then
            # handled the reload, and commits wait.
            ready = target is not None and confirming and v.checkpointer_idle
            return SyncStep(target=(ours, v.lsn if ready else None))
        flushed = max((r["flush"] for r in confirming), default=-1)
        if flushed >= target[1]:
            why = f"cloud {ours} confirms every commit from {lsn_text(target[1])}"
            record = sync_record(s, "sync", target[1], why, partner=ours, wall=o.wall, previous=o.sync)
            return SyncStep(record=record, log=f"synchronous again: {why}")
        return SyncStep(target=target)
    if v.ssn:
        return SyncStep()  # someone else's setting: left alone
    close = [
        (r["flush"], c)
        for c in sorted(s.partners)
        for r in streaming(s, v.senders, c)
        if v.lsn - r["flush"] <= SYNC_CATCH_UP
    ]
    if not close:
        return SyncStep()
    cloud = max(close)[1]
    return SyncStep(patch=ssn_for(s, cloud), log=f"cloud {cloud} caught up: commits wait for it again")


def sync_rule(s, o, last):
    """What the site's record says of an automatic takeover of `last`'s
    lease: ("synchronous", why) takes it whatever the lag (every
    acknowledged commit reached this cloud), ("refuse", why), or ("lag",
    None): no record of that cloud's, maximum_lag decides."""
    rec = o.sync
    if isinstance(rec, dict) and rec.get("unreadable"):
        return "refuse", "the site's record of replication between clouds does not read"
    if not isinstance(rec, dict) or rec.get("cloud") != cloud_of(last):
        return "lag", None
    state = sync_state(rec)
    if state is None:
        return "refuse", f"the site's record of cloud {cloud_of(last)}'s replication does not read"
    mode, partner, lsn = state
    if mode == "sync" and partner != s.cloud:
        return "refuse", f"cloud {partner}, not this one, confirmed cloud {cloud_of(last)}'s commits"
    if o.lsn < lsn:
        since = "confirms every commit" if mode == "sync" else "may lack commits"
        return "refuse", f"cloud {cloud_of(last)}'s record says a cloud {since} from {lsn_text(lsn)}; this cloud is at {lsn_text(o.lsn)}"
    if mode == "sync":
        return "synchronous", f"this cloud confirmed every commit of cloud {cloud_of(last)} from {lsn_text(lsn)}"
    return "lag", None


# ---------------------------------------------------------------- the world


def log(message):
    print(message, flush=True)


# One query: what `decide_sync` needs of the master (positions in bytes).
REPLICATION_QUERY = (
    "SELECT json_build_object("
    "'ssn', current_setting('synchronous_standby_names'), "
    "'lsn', pg_current_wal_lsn() - '0/0'::pg_lsn, "
    # A waiter is its backend and transaction (a procedure commits many in
    # one statement), its age how long ago that transaction or statement began.
    "'waiters', (SELECT coalesce(json_agg(json_build_object('id', pid || '/' || greatest(state_change, xact_start), "
    "'age', extract(epoch FROM clock_timestamp() - greatest(state_change, xact_start)))), '[]') "
    "FROM pg_stat_activity WHERE wait_event = 'SyncRep'), "
    "'senders', (SELECT coalesce(json_agg(json_build_object('name', application_name, 'state', state, "
    "'sync', sync_state, 'flush', flush_lsn - '0/0'::pg_lsn)), '[]') FROM pg_stat_replication), "
    "'checkpointer_idle', coalesce((SELECT wait_event = 'CheckpointerMain' FROM pg_stat_activity "
    "WHERE backend_type = 'checkpointer'), false))"
)


def waited(seen, waiters, asked, at, previous):
    """How long the oldest commit has waited for a synchronous standby. A
    statement's start alone would count a long statement's work as waiting;
    a commit first seen waiting now began to wait after the previous look
    was asked (`previous`, None on the first) and after its transaction or
    statement began (`age` s before this look was asked, at `asked`; it
    answered at `at`), so it is counted from the later of the two: never
    less than it waited, at most a look's interval more. `seen` maps each
    waiter (backend and transaction) to that time, `waiters` are those
    waiting now ({id, age}). Returns the map for the next look and the wait
    (0: none waits)."""
    kept = {}
    for w in waiters:
        if not isinstance(w, dict) or not isinstance(w.get("id"), str):
            continue
        began = asked - float(w.get("age") or 0)
        if previous is not None:
            began = max(began, previous)
        kept[w["id"]] = seen.get(w["id"], began)
    return kept, max((at - t for t in kept.values()), default=0.0)


def now():
    """Seconds on CLOCK_BOOTTIME: monotonic, and the clock pgha-site-fence reads (/proc/uptime)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def b64(text):
    return base64.b64encode(text.encode()).decode()


def lsn_text(lsn):
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_site(s, kvs):
    """(held value, its lease id, last holder) from an etcd range answer.
    A value that does not decode counts as held by no known cloud (never
    as absent: an absent key lets a master claim)."""
    held, lease, last = None, 0, None
    for kv in kvs or []:
        try:
            name = base64.b64decode(kv.get("key", "")).decode()
        except (ValueError, AttributeError):
            continue
        try:
            value = json.loads(base64.b64decode(kv.get("value", "")))
        except ValueError:
            value = None
        if not isinstance(value, dict):
            value = {"cloud": None}
        if name == s.key:
            try:
                lease = int(kv.get("lease", 0) or 0)
            except (TypeError, ValueError):
                lease = 0
            held = value
        elif name == s.last_key:
            last = value
    return held, lease, last


def revision(kv):
    try:
        return int(kv.get("mod_revision", 0) or 0)
    except (TypeError, ValueError, AttributeError):
        return 0


def parse_sync(s, kvs):
    """(the replication record, its revision, the lease key's revision) from
    an etcd range answer. A record that does not decode is kept as one that
    does not read (never as absent: `sync_rule` refuses on it)."""
    record, sync_rev, held_rev = None, 0, 0
    for kv in kvs or []:
        try:
            name = base64.b64decode(kv.get("key", "")).decode()
        except (ValueError, AttributeError):
            continue
        if name == s.key:
            held_rev = revision(kv)
        elif s.sync_key and name == s.sync_key:
            sync_rev = revision(kv)
            try:
                record = json.loads(base64.b64decode(kv.get("value", "")))
            except ValueError:
                record = None
            if not isinstance(record, dict):
                record = {"cloud": None, "unreadable": True}
    return record, sync_rev, held_rev


def refusal(error):
    """The message of etcd's refusal (an HTTPError), or ''."""
    try:
        body = json.loads(error.read() or b"{}")
    except (ValueError, OSError, http.client.HTTPException):
        return ""
    message = body.get("message", "") if isinstance(body, dict) else ""
    return message if isinstance(message, str) else ""


def needs_login(status, message):
    """Whether etcd refused for want of a (valid) login: an unknown token
    (401), no user at all (403 once authentication is on; etcd 3.4 may say
    "user name is empty") or a token older than the users' last change."""
    return status in (401, 403) or "auth store is old" in message or "user name is empty" in message


def auth_not_enabled(status, message):
    return status == 400 and "authentication is not enabled" in message


class Host:
    """This host's etcd client, Patroni, PostgreSQL and files."""

    def __init__(self, s):
        self.s = s
        self.etcd_tls = ssl.create_default_context(cafile=s.trust)
        # As root (the service) the etcd copy of the host key; as postgres
        # (Patroni's pre_promote) its own copy.
        key = s.etcd_key if os.geteuid() == 0 else s.postgres_key
        self.etcd_tls.load_cert_chain(s.etcd_cert, key)
        # Patroni's REST API wants a client certificate of the cluster CA:
        # the host's own (an older pgha's settings name none).
        # pgha: presents this host's certificate to Patroni's REST API
        self.rest_tls = ssl.create_default_context(cafile=s.trust)
        if s.cert:
            self.rest_tls.load_cert_chain(s.cert, key)
        self.order = list(s.endpoints)
        # The WAL position this host last published to the site.
        self.published = 0
        # etcd's login token (None: not logged in, or etcd has no users yet).
        self.token = None
        # Commits waiting for a synchronous standby, since when, and when
        # this agent last looked (see waited).
        self.sync_waiters = {}
        self.sync_looked = None

    # -- etcd

    def post(self, endpoint, path, body):
        """One member's JSON answer. Raises on no answer, HTTPError on a refusal."""
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = self.token
        request = urllib.request.Request(endpoint + path, data=json.dumps(body).encode(), headers=headers)
        with urllib.request.urlopen(request, timeout=self.s.timeout, context=self.etcd_tls) as r:
            return json.load(r)

    def login(self, endpoint):
        """Logs in at `endpoint`; True when a request is worth repeating."""
        if not self.s.etcd_user:
            return False
        try:
            out = self.post(endpoint, "/v3/auth/authenticate", {"name": self.s.etcd_user, "password": self.s.etcd_password})
        except urllib.error.HTTPError as e:
            # Users exist but authentication is not on yet: no token needed.
            if auth_not_enabled(e.code, refusal(e)):
                self.token = None
            return False
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
            return False
        token = out.get("token") if isinstance(out, dict) else None
        self.token = token if isinstance(token, str) and token else None
        return self.token is not None

    def ask(self, endpoint, path, body):
        """One member's answer, logging in once when it wants a login; None when it gives none."""
        try:
            try:
                return self.post(endpoint, path, body)
            except urllib.error.HTTPError as e:
                # A token this member does not know (it restarted, or
                # authentication was just turned on): log in, once.
                if not (needs_login(e.code, refusal(e)) and self.login(endpoint)):
                    raise
                return self.post(endpoint, path, body)
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
            # IncompleteRead, BadStatusLine and the like: no answer either.
            return None

    def etcd(self, path, body):
        """POSTs to etcd's JSON gateway, trying each member; None when no member answers."""
        for i, endpoint in enumerate(self.order):
            out = self.ask(endpoint, path, body)
            if out is None:
                continue
            if i:
                self.order = self.order[i:] + self.order[:i]
            return out
        return None

    def etcd_first(self, path, body):
        """A read asked of every member at once: the first answer (each
        member's own deadline bounds the wait); None when none answers.
        Patroni's pre_promote starts with no memory of a member that is
        gone: asked one by one, a powered-off first member would cost a
        promotion the whole timeout."""
        answers = queue.Queue()
        for endpoint in self.order:
            threading.Thread(target=lambda e=endpoint: answers.put((e, self.ask(e, path, body))), daemon=True).start()
        for _ in self.order:
            endpoint, out = answers.get()
            if out is not None:
                i = self.order.index(endpoint)
                self.order = self.order[i:] + self.order[:i]
                return out
        return None

    def read_all(self, at_once=False):
        """(answered, held value, its lease id, last holder, replication
        record, its revision, the lease key's revision), from one read."""
        low, high = min(self.keys()), max(self.keys())
        ask = self.etcd_first if at_once else self.etcd
        out = ask("/v3/kv/range", {"key": b64(low), "range_end": b64(high + "\0")})
        if not isinstance(out, dict):
            return False, None, 0, None, None, 0, 0
        kvs = out.get("kvs")
        return (True, *parse_site(self.s, kvs), *parse_sync(self.s, kvs))

    def keys(self):
        return [k for k in (self.s.key, self.s.last_key, self.s.sync_key) if k]

    def read_site(self, at_once=False):
        """(answered, held value, its lease id, last holder), from one read of the keys."""
        return self.read_all(at_once)[:4]

    def mine(self, lsn):
        # 0 is not a position: Patroni did not tell (a member not running).
        return json.dumps({"cloud": self.s.cloud, "host": self.s.host, "lsn": lsn or None})

    def claim(self, lsn, sync=None, sync_rev=0):
        """Takes the lease if nobody holds it (one etcd transaction); with
        `sync`, writes that replication record too, if its key is still at
        `sync_rev` (the record the decision read)."""
        began = now()
        grant = self.etcd("/v3/lease/grant", {"TTL": self.s.ttl})
        lease = (grant or {}).get("ID")
        if not lease:
            return False
        key, last = b64(self.s.key), b64(self.s.last_key)
        txn = {
            "compare": [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [
                {"request_put": {"key": key, "value": b64(self.mine(lsn)), "lease": lease}},
                {"request_put": {"key": last, "value": b64(self.mine(lsn))}},
            ],
        }
        if sync is not None and self.s.sync_key:
            txn["compare"].append(self.unchanged(self.s.sync_key, sync_rev))
            txn["success"].append({"request_put": {"key": b64(self.s.sync_key), "value": b64(json.dumps(sync))}})
        out = self.etcd("/v3/kv/txn", txn)
        if out and out.get("succeeded"):
            stamp(began)
            self.published = lsn or self.published
            return True
        self.etcd("/v3/lease/revoke", {"ID": lease})
        return False

    @staticmethod
    def unchanged(key, rev):
        """A transaction's compare: `key` is at revision `rev` (0: absent)."""
        return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(rev)}

    def record_sync(self, record, sync_rev, held_rev):
        """Writes the replication record while this cloud still holds the
        lease key it read (at `held_rev`) and nobody wrote the record since
        (`sync_rev`): one transaction with the witness's majority."""
        if not (self.s.sync_key and held_rev):
            return False
        txn = {
            "compare": [self.unchanged(self.s.key, held_rev), self.unchanged(self.s.sync_key, sync_rev)],
            "success": [{"request_put": {"key": b64(self.s.sync_key), "value": b64(json.dumps(record))}}],
        }
        out = self.etcd("/v3/kv/txn", txn)
        return bool(out and out.get("succeeded"))

    def keepalive(self, lease):
        """Renews the lease; records the renewal."""
        began = now()
        out = self.etcd("/v3/lease/keepalive", {"ID": str(lease)})
        result = (out or {}).get("result", out or {})
        try:
            alive = int(result.get("TTL", 0) or 0) > 0
        except (TypeError, ValueError, AttributeError):
            alive = False
        if alive:
            stamp(began)
        return alive

    def renew(self, lease, lsn):
        if not self.keepalive(lease):
            return False
        # An unknown position never replaces the last one published.
        if lsn and self.etcd("/v3/kv/put", {"key": b64(self.s.last_key), "value": b64(self.mine(lsn))}) is not None:
            self.published = lsn
        return True

    # -- Patroni

    def rest(self, path):
        try:
            with urllib.request.urlopen(self.s.rest + path, timeout=2, context=self.rest_tls) as r:
                return json.load(r)
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
            return None

    def patroni(self):
        """(role, WAL position, running) of the local member; role None when Patroni does not answer."""
        j = self.rest("/patroni")
        if not isinstance(j, dict):
            return None, 0, False
        role = "master" if j.get("role") in ("master", "primary") else j.get("role")
        if j.get("state") != "running":
            return role, 0, False
        xlog = j.get("xlog") or {}
        try:
            if role == "master":
                return role, int(xlog.get("location", 0) or 0), True
            return role, max(int(xlog.get("received_location", 0) or 0), int(xlog.get("replayed_location", 0) or 0)), True
        except (TypeError, ValueError, AttributeError):
            return role, 0, True

    def patch_ssn(self, value):
        """Sets synchronous_standby_names in the cloud's dynamic config
        ("" drops it) through the local Patroni's PATCH /config, which wakes
        its loop: applied within a second, not a loop_wait."""
        body = {"postgresql": {"parameters": {"synchronous_standby_names": value or None}}}
        request = urllib.request.Request(self.s.rest + "/config", data=json.dumps(body).encode(), method="PATCH")
        request.add_header("Content-Type", "application/json")
        if self.s.rest_user:
            request.add_header("Authorization", "Basic " + b64(f"{self.s.rest_user}:{self.s.rest_password}"))
        try:
            # Short: the next renewal waits for it (the loop is ttl/10).
            with urllib.request.urlopen(request, timeout=2, context=self.rest_tls) as r:
                return 200 <= r.status < 300
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
            log(f"could not set synchronous_standby_names: {e}")
            return False

    def replication(self):
        """The master's Replication (None: PostgreSQL did not answer)."""
        asked = now()
        out = self.psql(REPLICATION_QUERY, timeout=2)
        try:
            j = json.loads(out)
            senders = [r for r in j["senders"] if isinstance(r, dict)]
            self.sync_waiters, waiting = waited(self.sync_waiters, list(j["waiters"]), asked, now(), self.sync_looked)
            self.sync_looked = asked
            return Replication(str(j["ssn"]), int(j["lsn"]), waiting, senders, j.get("checkpointer_idle") is True)
        except (TypeError, ValueError, KeyError):
            return None

    def psql(self, query, timeout=5):
        """One value from PostgreSQL over its local socket, as postgres; None when it does not answer."""
        try:
            # As postgres without runuser: PAM would log two lines a loop.
            done = subprocess.run(
                ["psql", "-p", str(self.s.postgres_port), "-XAtqc", query],
                capture_output=True,
                text=True,
                timeout=timeout,
                user="postgres",
                group="postgres",
                extra_groups=[],
                cwd="/",
            )
        except (subprocess.TimeoutExpired, OSError, KeyError, ValueError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    def streaming(self):
        """Whether the WAL receiver streams (None: PostgreSQL did not answer)."""
        status = self.psql("SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')")
        return None if status is None else status == "streaming"

    def restart_receiver(self):
        """SIGTERM to the WAL receiver (pg_terminate_backend refuses it: not a backend)."""
        pid = self.psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'walreceiver'")
        if not pid:
            return  # none running (restoring from the archive, say)
        try:
            os.kill(int(pid), signal.SIGTERM)
        except (TypeError, ValueError, OSError) as e:
            log(f"could not restart the WAL receiver: {e}")

    def cloud_master(self):
        """Whether a member of this cloud runs as master (None: Patroni did not answer)."""
        cluster = self.rest("/cluster")
        if cluster is None:
            return None
        return any(
            m.get("role") in ("leader", "master", "primary") and m.get("state") == "running"
            for m in cluster.get("members", [])
        )

    def timelines(self):
        """(this member's timeline, its standby leader's), from Patroni's /cluster."""
        members = (self.rest("/cluster") or {}).get("members", [])
        me = next((m for m in members if m.get("name") == self.s.host), {})
        leader = next((m for m in members if m.get("role") == "standby_leader"), {})
        return me.get("timeline"), leader.get("timeline")

    def etcdctl(self, endpoints, *args):
        """etcdctl against this cloud's etcd as root (the host certificate's
        user); None when it did not finish in time."""
        command = ["etcdctl", "--endpoints=" + ",".join(endpoints), "--cacert=" + self.s.trust]
        command += ["--cert=" + self.s.cert, "--key=" + self.s.etcd_key, "--command-timeout=2s", *args]
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=6, env=dict(os.environ, ETCDCTL_API="3"))
        except (subprocess.TimeoutExpired, OSError):
            return None

    def etcd_statuses(self):
        """Each answering member's `endpoint status` row (etcdctl prints
        them on stdout and fails when any member is silent)."""
        done = self.etcdctl(self.s.cloud_etcd, "endpoint", "status", "-w", "json")
        try:
            return json.loads(done.stdout) if done is not None else []
        except ValueError:
            return []

    def steer_etcd_leader(self, previous):
        """One look: hands this cloud's etcd leadership on when this host
        leads it and its Patroni has led the cloud since the last look
        (`previous`: the role it saw), so a promotion's own writes come
        first. Only then is etcd asked. Returns (moved, role)."""
        role, _, running = self.patroni()
        if not running or role != previous or role not in LEADING:
            return False, role
        to = decide_etcd_leader(role, self.etcd_statuses(), self.s.own_etcd)
        if to is None:
            return False, role
        done = self.etcdctl([self.s.own_etcd], "move-leader", to)
        if done is None or done.returncode:
            log(f"could not hand the cloud's etcd leadership to member {to}: {(done.stderr.strip()[-300:] if done else 'no answer in time')}")
            return False, role
        log(f"this host leads both Patroni ({role}) and the cloud's etcd: handed etcd's leadership to member {to}")
        return True, role

    def patronictl_set(self, value):
        """Sets the cloud's standby_cluster; a timeout is a failure, never an
        exception that ends the agent. A cloud that follows waits for no
        other cloud's confirmation (synchronous_standby_names goes with it)."""
        args = ["patronictl", "-c", PATRONI_CONFIG, "edit-config", "--force", "--quiet", "-s", "standby_cluster=" + value]
        if self.s.synchronous and value != "null":
            args += ["-s", "postgresql.parameters.synchronous_standby_names=null"]
        try:
            return subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=15)
        except (subprocess.TimeoutExpired, OSError) as e:
            return subprocess.CompletedProcess(args, 1, "", f"patronictl: {e}")

    def follow(self):
        """This cloud becomes a standby cluster of the others."""
        done = self.patronictl_set(json.dumps(self.s.follow))
        if done.returncode:
            log(f"could not make the cloud a standby cluster: {done.stderr.strip()[-300:]}")

    def promote(self, why):
        log(why)
        done = self.patronictl_set("null")
        if done.returncode:
            log(f"could not promote this cloud: {done.stderr.strip()[-300:]}")

    def stop_postgres(self, modes):
        for mode in modes:
            try:
                stopped = subprocess.run(
                    ["runuser", "-u", "postgres", "--", self.s.bin_dir + "/pg_ctl", "-D", self.s.data_dir]
                    + ["stop", "-m", mode, "-t", "5"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=8,
                )
                if stopped.returncode == 0:
                    return
            except (subprocess.TimeoutExpired, OSError):
                pass

    def keep_past(self):
        """After the stop: the WAL past the last position published to the
        site (what the other clouds may lack) is copied aside and its commits
        counted, since pg_rewind removes them from the data directory once
        this cloud follows another. At most 64 segments (1 GiB) are kept."""
        published = self.published
        if not published:
            return None
        as_postgres = ["runuser", "-u", "postgres", "--"]
        try:
            control = subprocess.run(
                as_postgres + [self.s.bin_dir + "/pg_controldata", self.s.data_dir],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
            tli = int(next(line.split(":")[1] for line in control.splitlines() if line.startswith("Latest checkpoint's TimeLineID")))
            wal = self.s.data_dir + "/pg_wal"
            dump = subprocess.run(
                as_postgres
                + [self.s.bin_dir + "/pg_waldump", "-p", wal, "-t", str(tli), "-s", lsn_text(published), "-r", "Transaction"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            commits = sum(1 for line in dump.stdout.splitlines() if "COMMIT" in line)
            first = f"{tli:08X}{published >> 32:08X}{(published & 0xFFFFFFFF) >> 24:08X}"
            segments = sorted(n for n in os.listdir(wal) if len(n) == 24 and n[:8] == first[:8] and n >= first)[:64]
            kept = f"{STATE_DIR}/fenced-wal/{int(time.time())}"
            os.makedirs(kept, exist_ok=True)
            for n in segments:
                subprocess.run(["cp", "-p", f"{wal}/{n}", kept], timeout=60)
            return {"commits_past_published": commits, "published": lsn_text(published), "kept": kept, "timeline": tli}
        except (OSError, ValueError, StopIteration, subprocess.SubprocessError) as e:
            log(f"could not keep the WAL past {lsn_text(published)}: {e}")
            return None

    def fence(self, why, lsn, follows):
        """PostgreSQL stops now (and with `follows` this cloud follows the
        others); Patroni starts it again read-only."""
        again = os.path.exists(FENCED)
        log(f"fencing{' again' if again else ''}: {why}")
        # PostgreSQL first: nothing below may delay the stop (patronictl can
        # take 15 s). Patroni then fails over inside the cloud
        # (primary_start_timeout 0), where pre_promote asks the lease.
        self.stop_postgres(("immediate",))
        if follows:
            self.follow()
        if again:
            # The WAL past the fork was kept by the first fence.
            return
        # Kept whether or not the cloud follows now: it may follow another
        # later, and pg_rewind then removes what only this host had.
        past = self.keep_past()
        if past:
            log(
                f"kept the WAL past {past['published']}, the last position published to the site, in {past['kept']}: "
                f"{past['commits_past_published']} commit(s) the other clouds may lack"
            )
        os.makedirs(STATE_DIR, exist_ok=True)
        with open(STATE_DIR + "/site-fenced.json", "a") as f:
            f.write(json.dumps({"at": time.time(), "why": why, "lsn": lsn, **(past or {})}) + "\n")
        mark(FENCED, why)
        log(f"fenced at WAL position {lsn}")


def mark(path, text):
    os.makedirs(STATE_DIR, exist_ok=True)
    with open(path, "w") as f:
        f.write(text + "\n")


def unmark(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def write_run(path, text):
    """Writes a file of RUN_DIR atomically (its readers never see half of it)."""
    if os.geteuid() == 0 and not os.path.isdir(RUN_DIR):
        os.makedirs(RUN_DIR, mode=0o770, exist_ok=True)
        pg = pwd.getpwnam("postgres")
        os.chown(RUN_DIR, pg.pw_uid, pg.pw_gid)
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def stamp(at):
    """Records a successful renewal begun at `at`."""
    try:
        write_run(STAMP, f"{at:.3f}\n")
    except (OSError, KeyError) as e:
        # Fails closed: without a fresh stamp pgha-site-fence stops the master.
        log(f"could not record the renewal in {STAMP}: {e}")


def state_text(at, site_ok, held, late, sync=None):
    """The loop's state for the gate's metrics: when, whether the site
    answered, the lease holder's cloud (None: unknown or free), `late`:
    how many times this host's master renewed late since boot, and when the
    last time began (None: never), and the replication record's cloud, mode
    and partner (None: none that reads)."""
    holder = cloud_of(held) if site_ok else None
    count, late_at = late
    late_at = None if late_at is None else round(late_at, 3)
    state = sync_state(sync) if site_ok and isinstance(sync, dict) else None
    replication = {"cloud": sync.get("cloud"), "mode": state[0], "partner": state[1]} if state else None
    return json.dumps({"at": round(at, 3), "site_ok": site_ok, "holder": holder, "late_renewals": count, "late_at": late_at, "replication": replication}) + "\n"


def record_state(at, site_ok, held, late, sync=None):
    try:
        write_run(STATE, state_text(at, site_ok, held, late, sync))
    except (OSError, KeyError) as e:
        # Only the metrics miss it (the gate reports the loop as old).
        log(f"could not record the loop's state in {STATE}: {e}")


def recorded_late(path=STATE):
    """(count, when the last began) of the late renewals a previous run of
    the agent recorded since boot; (0, None) when none or unreadable (a
    counter may start again)."""
    try:
        with open(path) as f:
            state = json.load(f)
        n, at = state.get("late_renewals"), state.get("late_at")
    except (OSError, ValueError, AttributeError):
        return 0, None
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        return 0, None
    return n, at if isinstance(at, (int, float)) and not isinstance(at, bool) and math.isfinite(at) else None


def late_episode(previous, d):
    """Whether this loop begins a late renewal: one count per episode,
    however many loops it lasts, and only once the previous loop watched a
    running master on time. A master's first loop after PostgreSQL's
    restart (its clock waited meanwhile) or after the agent's start is not
    one."""
    return d.late and previous is not None and previous.master and not previous.late


def stamped():
    """The last recorded renewal, or None when unknown."""
    try:
        with open(STAMP) as f:
            at = float(f.read().strip())
    except (OSError, ValueError):
        return None
    return at if at <= now() else None


def arm():
    if os.geteuid() == 0 and not os.path.exists(ARMED):
        mark(ARMED, "the site answered; silence from it now fences this host's master")


def may_promote(s, h):
    """Patroni's pre_promote: 0 allows the promotion."""
    ok, held, lease, last = h.read_site(at_once=True)
    verdict, why = decide_promotion(s, ok, os.path.exists(ARMED), held, lease, last, time.time())
    if ok:
        arm()
    allowed = (
        verdict == "allow"
        or (verdict == "keepalive" and h.keepalive(lease))
        or (verdict == "claim" and h.claim(None))
    )
    if not allowed:
        log(f"pre_promote: {why}")
    return 0 if allowed else 1


def act(s, h, o, d):
    """Carries out a decision; returns the agent's memory for the next loop."""
    last_renewal, free_since = o.last_renewal, d.free_since
    if d.arm:
        arm()
    if d.renew:
        at = now()
        renewed = h.claim(d.renew[1]) if d.renew[0] == "claim" else h.renew(d.renew[1], d.renew[2])
        if renewed:
            last_renewal = at
            if d.renew[0] == "claim":
                log("took the site lease")
            if d.clear_on_renewal:
                for done in (FENCED, TAKING_OVER):
                    unmark(done)
            if d.sync_due:
                d.sync = decide_sync(s, replace(o, replication=h.replication()))
                act_sync(h, o, d.sync)
        elif d.fence_at is not None and now() >= d.fence_at:
            # Checked after the attempt, which may have waited on every member.
            # Late too, if the loop began before the late bound.
            d.late = True
            h.fence(stale(now(), o.last_renewal), o.lsn, False)
            last_renewal = now()
    if d.fence:
        h.fence(d.fence, o.lsn, d.fence_follows)
        last_renewal = now()
    if d.reset_clock:
        last_renewal = now()
    for done in d.clear:
        unmark(done)
    if d.log:
        log(d.log)
    if d.claim_then_promote and h.claim(d.claim_then_promote[1]):
        h.promote(d.claim_then_promote[0])
    if d.promote:
        h.promote(d.promote)
    if d.follow:
        log(d.follow)
        h.follow()
    if d.take_over:
        cloud, behind = d.take_over
        mark(TAKING_OVER, f"cloud {cloud} left the lease; this cloud claims it")
        # Asynchronous from its first position: no other cloud confirms yet.
        why = f"took the lease of cloud {cloud}"
        record = sync_record(s, "async", o.lsn, why, wall=o.wall, previous=o.sync) if s.synchronous else None
        if h.claim(o.lsn, sync=record, sync_rev=o.sync_rev):
            free_since = None
            h.promote(f"the lease of cloud {cloud} was free for {s.hold_down:g} s; took it {behind} bytes behind its last position; promoting")
        else:
            unmark(TAKING_OVER)
    return last_renewal, free_since


def act_sync(h, o, step):
    """Carries out a SyncStep: the record first; the setting only after it."""
    if step.record is not None and not h.record_sync(step.record, o.sync_rev, o.held_rev):
        log("could not record the replication state at the site: tried again next loop")
        return
    if step.log:
        log(step.log)
    if step.patch is not None:
        h.patch_ssn(step.patch)


def steer_etcd_leader(h):
    """Its own thread: an etcdctl call that waits on a silent member must
    never delay a renewal."""
    role = None
    while True:
        try:
            moved, role = h.steer_etcd_leader(role)
        except Exception as e:  # a bug here must not end the thread silently
            log(f"etcd leadership check failed: {e!r}")
            moved, role = False, None
        time.sleep(ETCD_LEADER_AGAIN if moved else ETCD_LEADER_EVERY)


def main(argv):
    s = Settings.load()
    h = Host(s)
    if argv[1:] == ["--may-promote"]:
        return may_promote(s, h)
    if argv[1:] == ["--follows"]:
        # Prints the cloud to follow (nothing: none known).
        ok, held, _, last = h.read_site()
        print(decide_start(s, ok, held, last) or "")
        return 0
    log(f"site agent: lease ttl {s.ttl} s, fencing after {s.fence_after:.1f} s without renewal")
    try:
        # Ahead of the database's own processes where the host allows it:
        # its renewals and fence must not starve on a busy host.
        os.nice(-10)
    except OSError:
        pass
    # A restart keeps the fence clock: the last renewal recorded. With none
    # (a reboot, or the first agent that records) pgha-site-fence bounds
    # this start by its own grace.
    last_renewal = stamped() or now()
    free_since = None
    # What synchronous replication is confirming, and since when its partner is silent.
    sync_target = sync_gone_since = None
    late, previous = recorded_late(), None
    if s.cloud_etcd and s.own_etcd and s.cert:
        threading.Thread(target=steer_etcd_leader, args=(Host(s),), daemon=True).start()
    # Since when this replica has stayed behind its standby leader's
    # timeline, and when it was last stopped for it.
    behind_since = restarted_at = None
    # Since when the standby leader's WAL receiver has not streamed, and
    # when it was last restarted for it.
    silent_since = receiver_restarted = None
    while True:
        began = now()
        role, lsn, running = h.patroni()
        ok, held, lease, last, sync, sync_rev, held_rev = h.read_all()
        record_state(now(), ok, held, late, sync)
        fenced, taking_over = os.path.exists(FENCED), os.path.exists(TAKING_OVER)
        try:
            fenced_at = os.path.getmtime(FENCED) if fenced else None
        except OSError:
            fenced_at = None
        # A master reads the config only to end its markers.
        config = h.rest("/config") if role and (role != "master" or fenced or taking_over) else None
        if not isinstance(config, dict):
            config = None
        # Decided now, after the requests (each may have waited): a
        # renewal's age counts them.
        o = Observation(
            now=now(),
            role=role,
            lsn=lsn,
            running=running,
            site_ok=ok,
            held=held,
            lease=lease,
            last=last,
            standby=None if config is None else bool(config.get("standby_cluster")),
            armed=os.path.exists(ARMED),
            fenced=fenced,
            taking_over=taking_over,
            fenced_at=fenced_at,
            last_renewal=last_renewal,
            free_since=free_since,
            wall=time.time(),
            sync=sync,
            sync_rev=sync_rev,
            held_rev=held_rev,
            sync_target=sync_target,
            sync_gone_since=sync_gone_since,
        )
        if needs_cloud_master(s, o):
            o = replace(o, cloud_master=h.cloud_master())
        d = decide(s, o)
        last_renewal, free_since = act(s, h, o, d)
        if d.sync or not d.sync_due:
            # Kept over a loop whose renewal failed.
            sync_target, sync_gone_since = (d.sync.target, d.sync.gone_since) if d.sync else (None, None)
        if late_episode(previous, d):
            late = (late[0] + 1, now())
            log(f"{stale(now(), o.last_renewal)}: late (after {s.late_bound:g} s)")
            record_state(now(), ok, held, late, sync)
        previous = d
        if d.unstick:
            mine, leader = h.timelines()
            stop, behind_since = decide_unstick(now(), mine, leader, behind_since, restarted_at)
            if stop:
                log(f"this replica stays on timeline {mine}, its standby leader is on {leader}: stopping PostgreSQL so that Patroni rewinds it")
                h.stop_postgres(("fast",))
                restarted_at = now()
        else:
            behind_since = None
        if role == "standby_leader":
            restart, silent_since = decide_receiver(now(), h.streaming(), silent_since, receiver_restarted)
            if restart:
                log(f"the WAL receiver has not streamed for {RECEIVER_SILENT_AFTER} s: restarting it")
                h.restart_receiver()
                receiver_restarted = now()
        else:
            silent_since = None
        time.sleep(max(0.0, s.period - (now() - began)))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
