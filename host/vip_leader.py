#!/usr/bin/python3
# Installed by pgha as /usr/local/lib/pgha/vip-leader; its settings are in
# /etc/pgha/vip-leader.json (rendered per host). Edits here are replaced on
# the next deploy.
"""Names the cloud's Patroni leader where vip-manager can read it.

Debian's vip-manager (1.0.2) reads etcd's v2 API only; Patroni keeps its
leader key in the v3 store, which the v2 API cannot see. On every database
host of a cloud with a virtual IP this loop writes the host's name to a v2
key (bound to a TTL) while its own Patroni leads the cloud and runs
PostgreSQL, and takes it back (only if it still names this host) once it
does not. vip-manager on each host holds the address while the key names
that host.

  - a new leader writes its name at once: the address moves within a loop
    of this agent plus one of vip-manager (about two seconds);
  - a host that cannot tell (its Patroni silent) changes nothing: the key
    outlives a Patroni restart by its TTL (Patroni's own), and a dead
    leader's key is replaced by the next leader's name;
  - the key's TTL bounds how long a dead leader's name stays when no other
    member leads (the whole cloud down).
"""

import http.client
import json
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

SETTINGS = "/etc/pgha/vip-leader.json"
# Patroni's states in which PostgreSQL runs (3.0.4 calls a replica's,
# and a standby leader's, "streaming" or "in archive recovery").
RUNNING = ("running", "streaming", "in archive recovery")
LEADERS = ("master", "primary", "standby_leader")


@dataclass(frozen=True)
class Settings:
    host: str
    key: str
    ttl: int
    rest: str
    endpoints: list
    trust: str
    cert: str
    cert_key: str

    @property
    def period(self):
        return 1.0

    @property
    def refresh(self):
        """A held key is written again this often (its TTL runs meanwhile)."""
        return max(1.0, self.ttl / 3.0)

    @staticmethod
    def load(path=SETTINGS):
        with open(path) as f:
            return Settings(**json.load(f))


UNKNOWN = object()


def leads(role, state):
    """Whether Patroni leads the cloud with PostgreSQL running (None: it did not answer)."""
    if role is None:
        return None
    return role in LEADERS and state in RUNNING


def asks(lead, pending):
    """Whether this loop reads the key: a leader checks its name is there;
    a host that may still be named (it led, or it just started) until it
    knows it is not. Elsewhere etcd is left alone."""
    return bool(lead) or (lead is False and pending)


def decide(host, role, state, mirrored, since_write, refresh, pending=True):
    """"set", "release" or None. `role` None: Patroni did not answer;
    `mirrored` UNKNOWN: etcd did not answer, None: no key; `pending`: this
    host may still be named (see `asks`)."""
    lead = leads(role, state)
    if lead is None:
        return None
    if lead:
        if mirrored is UNKNOWN or mirrored != host or since_write is None or since_write >= refresh:
            return "set"
        return None
    if pending and (mirrored is UNKNOWN or mirrored == host):
        # Taken back only while it names this host (a compare-and-delete).
        return "release"
    return None


def log(message):
    print(message, file=sys.stderr, flush=True)


def now():
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class Host:
    def __init__(self, s):
        self.s = s
        self.tls = ssl.create_default_context(cafile=s.trust)
        self.tls.load_cert_chain(s.cert, s.cert_key)
        # Patroni's REST API wants a client certificate of the cluster CA too.
        # pgha: presents this host's certificate to Patroni's REST API
        self.rest_tls = ssl.create_default_context(cafile=s.trust)
        self.rest_tls.load_cert_chain(s.cert, s.cert_key)
        self.order = list(s.endpoints)

    def patroni(self):
        """(role, state); (None, None) when Patroni does not answer."""
        try:
            with urllib.request.urlopen(self.s.rest + "/patroni", timeout=2, context=self.rest_tls) as r:
                j = json.load(r)
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
            return None, None
        if not isinstance(j, dict):
            return None, None
        return j.get("role"), j.get("state")

    def v2(self, method, query="", body=None):
        """(status, JSON) from the first member that answers; (None, None) when none does."""
        path = "/v2/keys" + urllib.parse.quote(self.s.key)
        for i, endpoint in enumerate(self.order):
            data = urllib.parse.urlencode(body).encode() if body else None
            request = urllib.request.Request(endpoint + path + query, data=data, method=method)
            if data:
                request.add_header("Content-Type", "application/x-www-form-urlencoded")
            try:
                with urllib.request.urlopen(request, timeout=2, context=self.tls) as r:
                    status, out = r.status, json.load(r)
            except urllib.error.HTTPError as e:
                try:
                    status, out = e.code, json.load(e)
                except (ValueError, OSError, http.client.HTTPException):
                    continue
            except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
                continue
            # A member without a raft leader (cut off from its cloud's
            # majority) answers 5xx: another member may do.
            if status >= 500:
                continue
            if i:
                self.order = self.order[i:] + self.order[:i]
            return status, out
        return None, None

    def mirrored(self):
        # A local read: a quorum read in etcd v2 is a raft proposal (written
        # and synced on every member); a stale answer costs one more loop.
        status, out = self.v2("GET")
        node = out.get("node") if isinstance(out, dict) else None
        if status == 200 and isinstance(node, dict):
            return node.get("value")
        # errorCode 100: no such key.
        if status == 404 and isinstance(out, dict) and out.get("errorCode") == 100:
            return None
        return UNKNOWN

    def set(self):
        status, _ = self.v2("PUT", body={"value": self.s.host, "ttl": str(self.s.ttl)})
        return status in (200, 201)

    def release(self):
        """True once the key does not name this host (deleted, or naming another: 412, or gone: 404)."""
        status, _ = self.v2("DELETE", "?" + urllib.parse.urlencode({"prevValue": self.s.host}))
        return status in (200, 404, 412)


def main(argv):
    s = Settings.load()
    h = Host(s)
    log(f"vip leader: {s.key} names this host ({s.host}) while its Patroni leads the cloud (ttl {s.ttl} s)")
    written = None
    was = None
    # The last failure said (each said once, until the next success).
    failed = None
    # Whether the key may still name this host: at start (an earlier run
    # may have written it), and from leading until it is known not to.
    pending = True
    while True:
        began = now()
        role, state = h.patroni()
        lead = leads(role, state)
        mirrored = h.mirrored() if asks(lead, pending) else None
        if lead:
            pending = True
        elif lead is False and mirrored is not UNKNOWN and mirrored != s.host:
            pending = False
        what = decide(s.host, role, state, mirrored, None if written is None else now() - written, s.refresh, pending)
        done = None
        if what == "set":
            done = h.set()
            if done:
                written = now()
        elif what == "release":
            written = None
            done = h.release()
            if done:
                pending = False
        if done is False and failed != what:
            log(f"could not {what} {s.key} in etcd (no member answered, or each refused): trying again every second")
            failed = what
        elif done:
            failed = None
        if lead != was:
            log(f"Patroni: {role or 'no answer'} ({state or '-'}): {'naming this host' if lead else 'not naming this host' if lead is False else 'unchanged'}")
            was = lead
        time.sleep(max(0.0, s.period - (now() - began)))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
