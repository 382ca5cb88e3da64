"""Unit tests of the VIP leader loop's decision (run by `cargo test`, tests/real_tools.rs)."""

import unittest

import vip_leader as v

ME = "dc1-pg1"


def decide(role, state="running", mirrored=None, since=None, pending=True):
    return v.decide(ME, role, state, mirrored, since, 10.0, pending)


class Decide(unittest.TestCase):
    def test_a_running_leader_names_itself(self):
        for role, state in [("master", "running"), ("primary", "running"), ("standby_leader", "streaming"),
                            ("standby_leader", "in archive recovery")]:
            self.assertEqual(decide(role, state), "set", (role, state))
            self.assertEqual(decide(role, state, mirrored="dc1-pg2"), "set", "another host's name is replaced")

    def test_a_held_key_is_refreshed_before_its_ttl_runs_out(self):
        self.assertIsNone(decide("primary", mirrored=ME, since=3.0))
        self.assertEqual(decide("primary", mirrored=ME, since=10.0), "set")
        self.assertEqual(decide("primary", mirrored=ME, since=None), "set", "never written by this loop")

    def test_etcd_silent_a_leader_writes_anyway(self):
        self.assertEqual(decide("primary", mirrored=v.UNKNOWN, since=1.0), "set")

    def test_a_leader_without_postgres_takes_its_name_back(self):
        for state in ["stopped", "starting", "crashed", "stopping", "restarting"]:
            self.assertEqual(decide("primary", state, mirrored=ME), "release", state)

    def test_a_replica_takes_back_only_its_own_name(self):
        self.assertEqual(decide("replica", "streaming", mirrored=ME), "release")
        self.assertEqual(decide("replica", "streaming", mirrored=v.UNKNOWN), "release", "a compare-and-delete")
        self.assertIsNone(decide("replica", "streaming", mirrored="dc1-pg2"))
        self.assertIsNone(decide("replica", "streaming", mirrored=None))

    def test_a_host_known_not_to_be_named_leaves_etcd_alone(self):
        self.assertIsNone(decide("replica", "streaming", mirrored=None, pending=False))
        self.assertFalse(v.asks(False, False))
        self.assertTrue(v.asks(False, True), "it may still be named")
        self.assertTrue(v.asks(True, False), "a leader checks its name")
        self.assertFalse(v.asks(None, True), "Patroni silent: nothing to do")

    def test_patroni_silent_changes_nothing(self):
        for mirrored in [ME, None, "dc1-pg2", v.UNKNOWN]:
            self.assertIsNone(decide(None, None, mirrored=mirrored), mirrored)


if __name__ == "__main__":
    unittest.main()
