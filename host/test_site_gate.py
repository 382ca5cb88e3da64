"""Unit tests of the site gate (run by `cargo test`, tests/real_tools.rs):
its decision, every branch, and one server answering over TLS."""

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from unittest import mock

import site_gate as g


class Decide(unittest.TestCase):
    def test_open_before_the_site_first_answered(self):
        self.assertEqual(g.decide(False, 100.0, None, 10)[0], 200)

    def test_closed_without_a_renewal_since_boot(self):
        code, why = g.decide(True, 100.0, None, 10)
        self.assertEqual(code, 503)
        self.assertIn("since boot", why)

    def test_open_while_the_renewal_is_fresh(self):
        self.assertEqual(g.decide(True, 100.0, 95.0, 10)[0], 200)

    def test_closed_once_the_renewal_is_as_old_as_the_bound(self):
        self.assertEqual(g.decide(True, 100.0, 90.0, 10)[0], 503)
        code, why = g.decide(True, 100.0, 80.0, 10)
        self.assertEqual(code, 503)
        self.assertIn("20.0 s ago", why)

    def test_closed_on_a_renewal_from_the_future(self):
        # A stamp from before a reboot on a clock that restarted at zero.
        self.assertEqual(g.decide(True, 5.0, 500.0, 10)[0], 503)


class Metrics(unittest.TestCase):
    def values(self, text):
        return dict(l.rsplit(" ", 1) for l in text.splitlines() if not l.startswith("#"))

    def test_a_renewing_host_of_the_holder_cloud(self):
        state = {"at": 99.0, "site_ok": True, "holder": "dc1", "late_renewals": 4, "late_at": 40.0}
        v = self.values(g.metrics(True, 100.0, 98.5, 10.0, state, 2))
        self.assertEqual(v["pgha_site_armed"], "1")
        self.assertEqual(v["pgha_site_gate_open"], "1")
        self.assertEqual(v["pgha_site_gate_bound_seconds"], "10")
        self.assertEqual(v["pgha_site_renewal_age_seconds"], "1.5")
        self.assertEqual(v["pgha_site_agent_loop_age_seconds"], "1")
        self.assertEqual(v["pgha_site_reachable"], "1")
        self.assertEqual(v['pgha_site_lease_holder{holder="dc1"}'], "1")
        self.assertEqual(v["pgha_site_fences_total"], "2")
        self.assertEqual(v["pgha_site_late_renewals_total"], "4")
        self.assertEqual(v["pgha_site_last_late_renewal_age_seconds"], "60")

    def test_the_replication_record_as_the_agent_read_it(self):
        state = {"at": 99.0, "site_ok": True, "holder": "dc1", "replication": {"cloud": "dc1", "mode": "sync", "partner": "dc2"}}
        v = self.values(g.metrics(True, 100.0, 98.5, 10.0, state, 0))
        self.assertEqual(v['pgha_site_synchronous{cloud="dc1",partner="dc2"}'], "1")
        state["replication"] = {"cloud": "dc1", "mode": "async", "partner": None}
        v = self.values(g.metrics(True, 100.0, 98.5, 10.0, state, 0))
        self.assertEqual(v['pgha_site_synchronous{cloud="dc1",partner=""}'], "0")
        state["replication"] = {"cloud": 'x"} 1\n', "mode": "sync", "partner": "dc2"}
        v = self.values(g.metrics(True, 100.0, 98.5, 10.0, state, 0))
        self.assertFalse(any(k.startswith("pgha_site_synchronous") for k in v))

    def test_a_stale_renewal_closes_and_unknowns_are_left_out(self):
        v = self.values(g.metrics(False, 100.0, 80.0, 10.0, None, None))
        self.assertEqual(v["pgha_site_renewal_age_seconds"], "20")
        for absent in ("pgha_site_agent_loop_age_seconds", "pgha_site_reachable", "pgha_site_fences_total"):
            self.assertNotIn(absent, v)
        v = self.values(g.metrics(True, 100.0, 80.0, 10.0, None, None))
        self.assertEqual(v["pgha_site_gate_open"], "0")
        # Armed, and no loop since boot: the agent does not run.
        self.assertEqual(v["pgha_site_agent_loop_age_seconds"], "100")
        self.assertNotIn("pgha_site_reachable", v)
        v = self.values(g.metrics(False, 100.0, None, 10.0, {"at": "x", "holder": 'a"} 1\nb', "late_renewals": "3", "late_at": 200.0}, 0))
        self.assertNotIn("pgha_site_renewal_age_seconds", v)
        self.assertNotIn("pgha_site_late_renewals_total", v)
        self.assertNotIn("pgha_site_last_late_renewal_age_seconds", v, "a time in the future")
        self.assertNotIn("pgha_site_agent_loop_age_seconds", v)
        self.assertEqual(v["pgha_site_fences_total"], "0")

    def test_a_stuck_agent_s_last_holder_is_not_said(self):
        v = self.values(g.metrics(True, 100.0, 98.0, 10.0, {"at": 85.0, "site_ok": True, "holder": "dc1"}, 0))
        self.assertEqual(v["pgha_site_agent_loop_age_seconds"], "15")
        self.assertNotIn("pgha_site_reachable", v)
        self.assertFalse(any(k.startswith("pgha_site_lease_holder") for k in v), v)
        # A holder that is not a cloud's name never reaches a label.
        v = self.values(g.metrics(True, 100.0, 99.0, 10.0, {"at": 99.0, "site_ok": False, "holder": 'a"} 1'}, 0))
        self.assertEqual(v["pgha_site_reachable"], "0")
        self.assertFalse(any(k.startswith("pgha_site_lease_holder") for k in v), v)


class Reads(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.dir)

    def test_a_stamp_is_a_number_or_unknown(self):
        p = os.path.join(self.dir, "stamp")
        self.assertIsNone(g.read_stamp(p))
        with open(p, "w") as f:
            f.write("12.500\n")
        self.assertEqual(g.read_stamp(p), 12.5)
        with open(p, "w") as f:
            f.write("half a numb")
        self.assertIsNone(g.read_stamp(p))
        for odd in ("nan", "inf", "-inf"):
            with open(p, "w") as f:
                f.write(odd)
            self.assertIsNone(g.read_stamp(p), odd)

    def test_armed_when_marked_or_unreadable(self):
        p = os.path.join(self.dir, "armed")
        self.assertFalse(g.armed(p))
        open(p, "w").close()
        self.assertTrue(g.armed(p))
        with mock.patch("builtins.open", side_effect=PermissionError("denied")):
            self.assertTrue(g.armed(p))


@unittest.skipUnless(shutil.which("openssl"), "needs openssl for a certificate")
class Serves(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        self.issue(self.cert, self.key)
        self.server = g.Server(("127.0.0.1", 0), g.Certificate(self.cert, self.key), 10.0)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.client = ssl.create_default_context(cafile=self.cert)

    def issue(self, cert, key):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1",
             "-keyout", key, "-out", cert],
            check=True, capture_output=True, timeout=30,
        )

    def tearDown(self):
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.dir)

    def get(self, path="/lease"):
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{self.port}{path}", context=self.client, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def test_answers_the_verdict_over_tls(self):
        with mock.patch.object(g, "verdict", return_value=(200, "fresh")):
            self.assertEqual(self.get(), (200, "fresh\n"))
        with mock.patch.object(g, "verdict", return_value=(503, "stale")):
            self.assertEqual(self.get(), (503, "stale\n"))
        self.assertEqual(self.get("/")[0], 404)

    def test_metrics_are_served_to_loopback_only(self):
        status, text = self.get("/metrics")
        self.assertEqual(status, 200)
        self.assertIn("pgha_site_gate_bound_seconds 10\n", text)
        with mock.patch.object(g, "LOOPBACK", ("192.0.2.1",)):
            self.assertEqual(self.get("/metrics")[0], 404)

    def test_a_new_certificate_is_served_without_a_restart(self):
        new_cert, new_key = os.path.join(self.dir, "new.pem"), os.path.join(self.dir, "new.key")
        self.issue(new_cert, new_key)
        with mock.patch.object(g, "verdict", return_value=(200, "fresh")):
            self.assertEqual(self.get()[0], 200)
            # Half written (a key that does not match): the last good pair stays.
            os.replace(new_key, self.key)
            with mock.patch.object(g, "log"):
                self.assertEqual(self.get()[0], 200)
            os.replace(new_cert, self.cert)
            self.client = ssl.create_default_context(cafile=self.cert)
            with mock.patch.object(g, "log"):
                self.assertEqual(self.get()[0], 200)

    def test_a_slow_client_is_cut_off_and_too_many_are_refused(self):
        with mock.patch.object(g, "DEADLINE", 1.0):
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            slow = self.client.wrap_socket(raw, server_hostname="127.0.0.1")
            try:
                began = time.monotonic()
                # A byte every 0.3 s, under the read timeout: the deadline ends it.
                with self.assertRaises(OSError):
                    for b in b"GET /lease HTTP/1.0\r\n" * 4:
                        slow.send(bytes([b]))
                        time.sleep(0.3)
                        if time.monotonic() - began > 2.5:
                            break
                    # Nothing came back and the peer hung up.
                    if slow.recv(1) == b"":
                        raise ConnectionResetError("closed")
                self.assertLess(time.monotonic() - began, 2.5)
            finally:
                slow.close()
        # Every slot taken: a new connection is closed unanswered, at once.
        for _ in range(g.MAX_CLIENTS):
            self.assertTrue(self.server.slots.acquire(blocking=False))
        try:
            extra = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            began = time.monotonic()
            self.assertEqual(extra.recv(1), b"", "closed unanswered")
            self.assertLess(time.monotonic() - began, 1)
            extra.close()
        finally:
            for _ in range(g.MAX_CLIENTS):
                self.server.slots.release()
        with mock.patch.object(g, "verdict", return_value=(200, "fresh")):
            self.assertEqual(self.get()[0], 200)

    def test_a_client_that_never_shakes_hands_blocks_nobody(self):
        idle = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        try:
            began = time.monotonic()
            with mock.patch.object(g, "verdict", return_value=(200, "fresh")):
                self.assertEqual(self.get()[0], 200)
            self.assertLess(time.monotonic() - began, 2)
        finally:
            idle.close()


if __name__ == "__main__":
    unittest.main()
