#!/usr/bin/python3
"""pgha's site gate: the client path's own check of the site lease.

HAProxy (each database host's and the GLB's) sends a client to a server
only when Patroni's /primary answers 200 there *and* this gate does. The
gate answers GET /lease with 200 while the host's last renewal of the site
lease (CLOCK_BOOTTIME seconds in /run/pgha/site-renewed, written by the
site agent and by Patroni's pre_promote) is younger than --bound, and 503
once it is older or unknown. It shares no code with the agent and depends
on nothing the agent runs: a dead, frozen or crash-looping agent stops
renewing, so the gate closes; a dead or frozen gate fails HAProxy's check,
so the route closes too. Before the site first answered this host (a new
cluster, before its agents run) nothing is fenced and the gate is open,
like pgha-site-fence.

GET /metrics, to loopback clients only (HAProxy's metrics gateway, which
asks for Prometheus with the metrics CA's certificate), says the same in
Prometheus's text format, with what the agent last saw (its state file)
and how many times this host was fenced.

Installed as it is by pgha; `python3 -m unittest test_site_gate` tests it.
"""

import argparse
import http.server
import json
import math
import os
import socket
import socketserver
import ssl
import sys
import threading
import time

STAMP = "/run/pgha/site-renewed"
ARMED = "/var/lib/pgha/site-armed"
# The agent's last loop: when (CLOCK_BOOTTIME), whether a site member
# answered, and which cloud held the lease.
AGENT_STATE = "/run/pgha/site-state.json"
# One line per fence of this host.
FENCES = "/var/lib/pgha/site-fenced.json"
PATH = "/lease"
METRICS = "/metrics"
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
# Connections served at once, and how long one may last in all: every
# HAProxy asks once a second, so a client holding more is not a checker.
MAX_CLIENTS = 64
DEADLINE = 5.0


def decide(armed, now, stamp, bound):
    """(HTTP status, why) from what was read: whether the site ever answered
    this host, the time now, the last renewal (None: unknown) and the bound."""
    if not armed:
        return 200, "the site has not answered this host yet: nothing is fenced"
    if stamp is None:
        return 503, "no renewal of the site lease is recorded since boot"
    if stamp > now + 1:
        return 503, "the recorded renewal lies in the future"
    age = now - stamp
    if age >= bound:
        return 503, f"the site lease was last renewed {age:.1f} s ago (bound {bound:g} s)"
    return 200, f"the site lease was renewed {age:.1f} s ago"


def metrics(armed, now, stamp, bound, state, fences):
    """Prometheus's text from what was read: as for decide(), plus the
    agent's state (None: unknown) and the count of fences (None: unknown)."""
    code, _ = decide(armed, now, stamp, bound)
    lines = []

    def metric(name, help, value, labels="", kind="gauge"):
        lines.extend([f"# HELP {name} {help}", f"# TYPE {name} {kind}", f"{name}{labels} {value:g}"])

    metric("pgha_site_armed", "1 once the site answered this host: silence from it now fences its master.", int(armed))
    metric("pgha_site_gate_open", "1 while the gate lets clients reach this host's master.", int(code == 200))
    metric("pgha_site_gate_bound_seconds", "The renewal age at which the gate closes.", bound)
    if stamp is not None and stamp <= now + 1:
        metric("pgha_site_renewal_age_seconds", "Seconds since this host last renewed the site lease.", max(0.0, now - stamp))
    at = state.get("at") if isinstance(state, dict) else None
    loop = "Seconds since the site agent's last loop (since boot: none yet)."
    if isinstance(at, (int, float)) and not isinstance(at, bool) and at <= now + 1:
        age = max(0.0, now - at)
        metric("pgha_site_agent_loop_age_seconds", loop, age)
        # What a stopped or frozen agent last saw is not said: its old
        # holder would hide a master outside the lease holder's cloud.
        if age < bound:
            metric("pgha_site_reachable", "1 when a site member answered the agent's last loop.", int(state.get("site_ok") is True))
            holder = state.get("holder")
            if label_value(holder):
                metric("pgha_site_lease_holder", "The cloud holding the site lease, as the agent last read it.", 1, f'{{holder="{holder}"}}')
            r = state.get("replication")
            if isinstance(r, dict) and label_value(r.get("cloud")) and r.get("mode") in ("sync", "async"):
                partner = r.get("partner") if label_value(r.get("partner")) else ""
                metric(
                    "pgha_site_synchronous",
                    "1 while the site records that every commit of `cloud` waits for `partner`, 0 while it records asynchronous.",
                    int(r["mode"] == "sync"),
                    f'{{cloud="{r["cloud"]}",partner="{partner}"}}',
                )
    elif armed:
        # No loop recorded since boot (/run is emptied) on a host the site
        # answered once: the agent does not run.
        metric("pgha_site_agent_loop_age_seconds", loop, now)
    if fences is not None:
        metric("pgha_site_fences_total", "Times this host's master was fenced.", fences, kind="counter")
    # Recorded by the agent, since boot: each time this host's master found
    # its last renewal older than its late bound (a fence's warning, and
    # what a scrape between two renewals misses), and when the last began:
    # its age tells a late renewal from a Prometheus that could not scrape
    # this host meanwhile (a partition), however long that lasted.
    late = state.get("late_renewals") if isinstance(state, dict) else None
    if isinstance(late, int) and not isinstance(late, bool) and late >= 0:
        metric("pgha_site_late_renewals_total", "Times this host's master renewed the site lease late (or not at all).", late, kind="counter")
    late_at = state.get("late_at") if isinstance(state, dict) else None
    if isinstance(late_at, (int, float)) and not isinstance(late_at, bool) and math.isfinite(late_at) and late_at <= now + 1:
        metric("pgha_site_last_late_renewal_age_seconds", "Seconds since this host's master last began to renew the site lease late (since boot: none yet).", max(0.0, now - late_at))
    return "\n".join(lines) + "\n"


def label_value(value):
    """A cloud's name, safe as a label value (anything else is not said)."""
    return isinstance(value, str) and value != "" and value.replace("-", "").replace("_", "").isalnum()


def read_state(path=AGENT_STATE):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def count_fences(path=FENCES):
    try:
        with open(path) as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return 0
    except OSError:
        return None


def read_stamp(path=STAMP):
    """The recorded renewal, or None when missing, unreadable or not a
    finite number (float() takes "nan", and no comparison fails on it)."""
    try:
        with open(path) as f:
            at = float(f.read().strip())
    except (OSError, ValueError):
        return None
    return at if math.isfinite(at) else None


def armed(path=ARMED):
    try:
        with open(path):
            return True
    except FileNotFoundError:
        return False
    except OSError:
        # Could not tell: read as armed, so a stale renewal closes the gate.
        return True


def verdict(bound):
    return decide(armed(), time.clock_gettime(time.CLOCK_BOOTTIME), read_stamp(), bound)


class Handler(http.server.BaseHTTPRequestHandler):
    # Bounds the TLS handshake and the request alike (HAProxy's check waits 3 s).
    timeout = 3
    server_version = "pgha-site-gate"
    sys_version = ""

    def do_GET(self):
        if self.path == METRICS and self.client_address[0] in LOOPBACK:
            now = time.clock_gettime(time.CLOCK_BOOTTIME)
            text = metrics(armed(), now, read_stamp(), self.server.bound, read_state(), count_fences())
            self.answer(200, text.rstrip("\n"), "text/plain; version=0.0.4")
            return
        if self.path != PATH:
            self.answer(404, f"only {PATH} is here")
            return
        self.answer(*verdict(self.server.bound))

    def answer(self, code, why, kind="text/plain"):
        body = (why + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        # Asked every second by every HAProxy: nothing worth a journal line.
        pass


class Certificate:
    """The host's certificate and key, loaded again when either file changes
    (a rotation rewrites them): no restart, so no check of HAProxy's fails
    for one. A pair that does not load (one file written, not yet the
    other) leaves the last good one in use until it does."""

    def __init__(self, cert, key):
        self.paths = (cert, key)
        self.seen = None
        self.context = None
        # The files as they were when they last failed to load: tried again
        # (and logged) only once they change again.
        self.failed = None

    def current(self):
        try:
            seen = tuple((st.st_ino, st.st_mtime_ns, st.st_size) for st in map(os.stat, self.paths))
        except OSError as e:
            if self.context is None:
                raise
            if self.failed != "unreadable":
                self.failed = "unreadable"
                log(f"cannot read the certificate ({e}): serving the last one loaded")
            return self.context
        if seen != self.seen and seen != self.failed:
            try:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.load_cert_chain(*self.paths)
            except (OSError, ssl.SSLError) as e:
                if self.context is None:
                    raise
                self.failed = seen
                log(f"cannot load the new certificate ({e}): serving the last one loaded")
                return self.context
            if self.context is not None:
                log("loaded the host's new certificate")
            self.context, self.seen = context, seen
        return self.context


def log(text):
    print(text, file=sys.stderr, flush=True)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, certificate, bound):
        self.certificate = certificate
        self.bound = bound
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        super().__init__(address, Handler)

    def server_bind(self):
        # HTTPServer's own asks DNS for the address's name before listening:
        # a resolver that does not answer would keep the gate (and the route) down.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "pgha-site-gate", self.server_address[1]

    def get_request(self):
        sock, addr = self.socket.accept()
        # The handshake happens in the request's thread, under its timeout:
        # a client that never finishes one blocks nobody else.
        context = self.certificate.current()
        return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def verify_request(self, request, client_address):
        # Beyond MAX_CLIENTS at once, a connection is closed unanswered.
        return self.slots.acquire(blocking=False)

    def process_request(self, request, client_address):
        try:
            super().process_request(request, client_address)
        except BaseException:
            # No thread to give the slot back (one could not start).
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        # However slowly a client trickles bytes, its connection ends after
        # DEADLINE seconds in all.
        timer = threading.Timer(DEADLINE, shut, (request,))
        try:
            timer.start()
            super().process_request_thread(request, client_address)
        finally:
            timer.cancel()
            self.slots.release()

    def handle_error(self, request, client_address):
        # A dropped check, a scanner or a cut-off slow client is not the
        # gate's failure; anything else is logged (and the answer is none:
        # HAProxy's check fails, the route closes).
        e = sys.exc_info()[1]
        if not isinstance(e, (OSError, ssl.SSLError, ValueError)):
            log(f"request from {client_address[0]} failed: {e!r}")


def shut(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def main(argv=None):
    p = argparse.ArgumentParser(description="pgha site gate")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--bound", type=float, required=True)
    a = p.parse_args(argv)
    certificate = Certificate(a.cert, a.key)
    # Fails here, before listening, when the pair does not load: systemd tries again.
    certificate.current()
    server = Server(("0.0.0.0", a.port), certificate, a.bound)
    print(f"site gate: :{a.port}{PATH} answers 200 while the site lease was renewed less than {a.bound:g} s ago", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
