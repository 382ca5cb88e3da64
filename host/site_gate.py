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

Installed as it is by pgha; `python3 -m unittest test_site_gate` tests it.
"""

import argparse
import http.server
import os
import ssl
import sys
import time

STAMP = "/run/pgha/site-renewed"
ARMED = "/var/lib/pgha/site-armed"
PATH = "/lease"


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


def read_stamp(path=STAMP):
    """The recorded renewal, or None when missing or unreadable."""
    try:
        with open(path) as f:
            return float(f.read().strip())
    except (OSError, ValueError):
        return None


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
        if self.path != PATH:
            self.answer(404, f"only {PATH} is here")
            return
        self.answer(*verdict(self.server.bound))

    def answer(self, code, why):
        body = (why + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
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

    def current(self):
        try:
            seen = tuple((st.st_ino, st.st_mtime_ns, st.st_size) for st in map(os.stat, self.paths))
        except OSError as e:
            if self.context is None:
                raise
            log(f"cannot read the certificate ({e}): serving the last one loaded")
            return self.context
        if seen != self.seen:
            try:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.load_cert_chain(*self.paths)
            except (OSError, ssl.SSLError) as e:
                if self.context is None:
                    raise
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
        super().__init__(address, Handler)
        self.certificate = certificate
        self.bound = bound

    def get_request(self):
        sock, addr = self.socket.accept()
        # The handshake happens in the request's thread, under its timeout:
        # a client that never finishes one blocks nobody else.
        context = self.certificate.current()
        return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        # A scanner or a dropped check is not the gate's failure.
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
