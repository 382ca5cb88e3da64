"""Unit tests of the site agent's decisions (run by `cargo test`, tests/real_tools.rs).

Each test names the branch it covers; `act` is driven against a fake host
that records what the agent asked of etcd, Patroni and PostgreSQL.
"""

import io
import json
import os
import tempfile
import threading
import time
import unittest
import urllib.error
from dataclasses import replace
from unittest import mock

import site_agent as a

S = a.Settings(
    cloud="dc1",
    host="dc1-pg1",
    endpoints=["https://10.0.0.1:2479"],
    key="/pgha-site/c/primary",
    last_key="/pgha-site/c/last",
    ttl=30,
    auto_failover=True,
    hold_down=40,
    maximum_lag=1000,
    rest="https://127.0.0.1:8008",
    data_dir="/var/lib/postgresql/17/main",
    bin_dir="/usr/lib/postgresql/17/bin",
    postgres_port=5432,
    trust="/etc/pgha/tls/trust.pem",
    etcd_cert="/etc/pgha/tls/gateway.pem",
    etcd_key="/etc/pgha/tls/etcd.key",
    postgres_key="/etc/pgha/tls/postgres.key",
    etcd_user="site-agent",
    etcd_password="pw",
    follow={"host": "127.0.0.1", "port": 5000, "create_replica_methods": ["basebackup"]},
)
MANUAL = replace(S, auto_failover=False)
DC1 = {"cloud": "dc1", "host": "dc1-pg1", "lsn": 5000}
DC2 = {"cloud": "dc2", "host": "dc2-pg1", "lsn": 9000}


def master(**kw):
    base = dict(now=100.0, role="master", lsn=5000, site_ok=True, armed=True, last_renewal=99.0)
    base.update(kw)
    return a.Observation(**base)


def leader(**kw):
    base = dict(now=100.0, role="standby_leader", lsn=8500, site_ok=True, armed=True, standby=True)
    base.update(kw)
    return a.Observation(**base)


class Master(unittest.TestCase):
    def test_renews_the_lease_its_cloud_holds(self):
        d = a.decide(S, master(held=DC1, lease=7, last=DC1))
        self.assertEqual(d.renew, ("keepalive", 7, 5000))
        self.assertEqual(d.fence_at, 99.0 + 10.0)
        self.assertIsNone(d.fence)

    def test_a_failed_renewal_fences_once_the_last_is_a_third_of_ttl_old(self):
        d = a.decide(S, master(held=DC1, lease=7, last_renewal=90.0))
        self.assertEqual(d.renew, ("keepalive", 7, 5000))
        self.assertEqual(d.fence_at, 100.0)
        self.assertIsNone(d.fence)

    def test_claims_a_free_lease_it_held_last(self):
        d = a.decide(S, master(held=None, last=DC1))
        self.assertEqual(d.renew, ("claim", 5000))

    def test_claims_a_lease_nobody_ever_held(self):
        d = a.decide(S, master(held=None, last=None))
        self.assertEqual(d.renew, ("claim", 5000))

    def test_fences_when_the_free_lease_was_another_clouds(self):
        d = a.decide(S, master(held=None, last=DC2))
        self.assertIsNone(d.renew)
        self.assertEqual(d.fence, "the site lease is free and cloud dc2 held it last")
        self.assertTrue(d.fence_follows, "the cloud follows the last holder")

    def test_fences_when_another_cloud_holds_the_lease(self):
        d = a.decide(S, master(held=DC2, lease=9, last=DC2))
        self.assertEqual(d.fence, "cloud dc2 holds the site lease")
        self.assertTrue(d.fence_follows, "the cloud follows the holder")

    def test_a_silent_site_fences_after_a_third_of_ttl(self):
        d = a.decide(S, master(site_ok=False, last_renewal=89.9))
        self.assertEqual(d.fence, "no renewal of the site lease for 10.1 s")
        self.assertIsNone(d.renew)
        # The lease may still be this cloud's: a member that reaches the
        # site may be promoted (pre_promote decides), so the cloud stays primary.
        self.assertFalse(d.fence_follows)

    def test_a_silent_site_waits_before_the_bound(self):
        d = a.decide(S, master(site_ok=False, last_renewal=95.0))
        self.assertIsNone(d.fence)

    def test_an_unarmed_host_never_fences_on_silence(self):
        d = a.decide(S, master(site_ok=False, armed=False, last_renewal=0.0))
        self.assertIsNone(d.fence)

    def test_arms_once_the_site_answers(self):
        self.assertTrue(a.decide(S, master(armed=False, held=DC1, lease=7)).arm)
        self.assertFalse(a.decide(S, master(held=DC1, lease=7)).arm)
        self.assertFalse(a.decide(S, master(armed=False, site_ok=False)).arm)

    def test_the_first_answer_arms_and_counts_for_the_stale_check(self):
        d = a.decide(S, master(armed=False, held=DC1, lease=7, last_renewal=0.0))
        self.assertEqual(d.fence_at, 10.0)

    def test_an_unarmed_host_has_no_fence_deadline(self):
        self.assertIsNone(a.decide(S, master(armed=False, site_ok=False)).fence_at)

    def test_a_master_not_running_neither_renews_nor_fences(self):
        for held in (DC1, DC2, None):
            d = a.decide(S, master(running=False, held=held, lease=7, last=DC2, last_renewal=0.0))
            self.assertIsNone(d.renew)
            self.assertIsNone(d.fence)
            self.assertFalse(d.reset_clock, "its fence clock keeps running")

    def test_a_renewal_ends_the_markers_only_once_the_cloud_is_primary(self):
        self.assertTrue(a.decide(S, master(held=DC1, lease=7, standby=False)).clear_on_renewal)
        self.assertFalse(a.decide(S, master(held=DC1, lease=7, standby=True)).clear_on_renewal)
        self.assertFalse(a.decide(S, master(held=DC1, lease=7, standby=None)).clear_on_renewal)

    def test_a_master_forgets_the_free_lease_clock(self):
        self.assertIsNone(a.decide(S, master(held=DC1, lease=7, free_since=50.0)).free_since)


def fenced_blind(**kw):
    """The host that fenced for silence: a replica again, its cloud still primary, the site silent."""
    base = dict(now=100.0, role="replica", site_ok=False, armed=True, standby=False, fenced=True, wall=1000.0)
    base.update(kw)
    return a.Observation(**base)


class AfterAFenceForSilence(unittest.TestCase):
    def test_the_cloud_stays_primary_while_a_member_may_serve(self):
        d = a.decide(S, fenced_blind(cloud_master=False, fenced_at=1000.0 - S.ttl + 1))
        self.assertIsNone(d.follow)
        self.assertEqual(d.clear, [], "the marker stays until the host can tell")

    def test_still_blind_a_ttl_later_with_no_master_the_cloud_follows(self):
        d = a.decide(S, fenced_blind(cloud_master=False, fenced_at=1000.0 - S.ttl))
        self.assertEqual(d.follow, "fenced 30 s ago, the site still silent and no master in this cloud: it follows")
        self.assertEqual(d.clear, [])

    def test_a_master_elsewhere_in_the_cloud_ends_the_fence(self):
        d = a.decide(S, fenced_blind(cloud_master=True, fenced_at=0.0))
        self.assertIsNone(d.follow)
        self.assertEqual(d.clear, [a.FENCED])

    def test_an_unknown_master_or_fence_time_never_follows(self):
        for o in (fenced_blind(cloud_master=None, fenced_at=0.0), fenced_blind(cloud_master=False)):
            d = a.decide(S, o)
            self.assertIsNone(d.follow)
            self.assertEqual(d.clear, [])

    def test_the_site_answering_ends_the_fence(self):
        d = a.decide(S, fenced_blind(site_ok=True, held=DC1, lease=7, cloud_master=False, fenced_at=0.0))
        self.assertIsNone(d.follow)
        self.assertEqual(d.clear, [a.FENCED])

    def test_it_asks_whether_its_cloud_has_a_master(self):
        self.assertTrue(a.needs_cloud_master(S, fenced_blind()))
        self.assertFalse(a.needs_cloud_master(S, fenced_blind(site_ok=True, held=DC1)))
        self.assertFalse(a.needs_cloud_master(S, fenced_blind(standby=True)))


class NotMaster(unittest.TestCase):
    def test_resets_its_clock(self):
        d = a.decide(S, a.Observation(now=100.0, role="replica", standby=False))
        self.assertTrue(d.reset_clock)
        self.assertIsNone(d.renew)
        self.assertIsNone(d.fence)

    def test_patroni_silent_resets_its_clock_and_does_nothing_else(self):
        d = a.decide(S, a.Observation(now=100.0, role=None, site_ok=True, held=DC2, fenced=True))
        self.assertTrue(d.reset_clock)
        self.assertIsNone(d.promote)
        self.assertIsNone(d.claim_then_promote)

    def test_a_primary_cloud_ends_the_fence_and_takeover_markers(self):
        d = a.decide(S, leader(role="replica", standby=False, fenced=True, taking_over=True, held=DC1))
        self.assertEqual(d.clear, [a.FENCED, a.TAKING_OVER])
        self.assertIsNone(d.promote)

    def test_a_replica_of_a_standby_cluster_checks_its_timeline(self):
        self.assertTrue(a.decide(S, leader(role="replica", standby=True)).unstick)
        self.assertFalse(a.decide(S, leader(role="replica", standby=None)).unstick)
        self.assertFalse(a.decide(S, leader(standby=True)).unstick)

    def test_a_replica_forgets_the_free_lease_clock(self):
        self.assertIsNone(a.decide(S, leader(role="replica", free_since=50.0)).free_since)


class Follow(unittest.TestCase):
    def test_a_masterless_cloud_follows_the_holder(self):
        d = a.decide(S, leader(role="replica", standby=False, held=DC2, lease=9, cloud_master=False))
        self.assertIn("no master", d.follow)

    def test_following_ends_a_takeover_marker(self):
        o = leader(role="replica", standby=False, held=DC2, lease=9, cloud_master=False, taking_over=True)
        self.assertEqual(a.decide(S, o).clear, [a.TAKING_OVER])

    def test_not_while_its_cloud_has_a_master(self):
        o = leader(role="replica", standby=False, held=DC2, lease=9, cloud_master=True)
        self.assertIsNone(a.decide(S, o).follow)

    def test_not_when_unknown_whether_it_has_one(self):
        o = leader(role="replica", standby=False, held=DC2, lease=9, cloud_master=None)
        self.assertIsNone(a.decide(S, o).follow)

    def test_not_while_its_cloud_holds_or_nobody_holds_the_lease(self):
        for held in (DC1, None):
            o = leader(role="replica", standby=False, held=held, lease=7, cloud_master=False)
            self.assertIsNone(a.decide(S, o).follow)
            self.assertFalse(a.needs_cloud_master(S, o))

    def test_not_when_already_a_standby_cluster_or_the_site_is_silent(self):
        self.assertFalse(a.needs_cloud_master(S, leader(role="replica", standby=True, held=DC2)))
        self.assertFalse(a.needs_cloud_master(S, leader(role="replica", standby=None, held=DC2)))
        self.assertFalse(a.needs_cloud_master(S, leader(role="replica", standby=False, site_ok=False, held=DC2)))

    def test_only_a_replica_asks(self):
        self.assertTrue(a.needs_cloud_master(S, leader(role="replica", standby=False, held=DC2)))
        self.assertFalse(a.needs_cloud_master(S, leader(role=None, standby=False, held=DC2)))


class Resume(unittest.TestCase):
    def test_promotes_when_the_cloud_still_holds_the_lease(self):
        d = a.decide(MANUAL, leader(fenced=True, held=DC1, lease=7))
        self.assertIn("still holds", d.promote)

    def test_a_fenced_replica_resumes_too(self):
        d = a.decide(MANUAL, leader(role="replica", fenced=True, held=DC1, lease=7))
        self.assertIn("still holds", d.promote)

    def test_claims_back_a_lapsed_lease_it_held_last_then_promotes(self):
        d = a.decide(MANUAL, leader(fenced=True, held=None, last=DC1))
        self.assertIsNone(d.promote)
        self.assertEqual(d.claim_then_promote[1], None)

    def test_never_takes_a_lapsed_lease_another_cloud_held_last(self):
        d = a.decide(MANUAL, leader(fenced=True, held=None, last=DC2))
        self.assertIsNone(d.promote)
        self.assertIsNone(d.claim_then_promote)
        self.assertEqual(d.clear, [])

    def test_follows_for_good_once_another_cloud_holds_it(self):
        d = a.decide(MANUAL, leader(fenced=True, held=DC2, lease=9))
        self.assertEqual(d.clear, [a.FENCED])
        self.assertIsNone(d.promote)

    def test_waits_while_the_site_is_silent(self):
        d = a.decide(MANUAL, leader(fenced=True, site_ok=False))
        self.assertIsNone(d.promote)
        self.assertIsNone(d.claim_then_promote)

    def test_resume_goes_before_auto_failover(self):
        d = a.decide(S, leader(fenced=True, held=None, last=DC2, free_since=0.0))
        self.assertIsNone(d.take_over)


class TakeOver(unittest.TestCase):
    def test_off_without_auto_failover(self):
        d = a.decide(MANUAL, leader(held=None, last=DC2, free_since=0.0))
        self.assertIsNone(d.take_over)
        self.assertEqual(d.free_since, 0.0)

    def test_a_silent_site_resets_the_hold_down(self):
        d = a.decide(S, leader(site_ok=False, free_since=10.0))
        self.assertIsNone(d.free_since)

    def test_a_held_lease_resets_the_hold_down(self):
        d = a.decide(S, leader(held=DC2, lease=9, free_since=10.0))
        self.assertIsNone(d.free_since)
        self.assertIsNone(d.take_over)

    def test_starts_the_hold_down_when_the_lease_is_first_seen_free(self):
        d = a.decide(S, leader(held=None, last=DC2))
        self.assertEqual(d.free_since, 100.0)
        self.assertIsNone(d.take_over)

    def test_waits_out_the_hold_down(self):
        d = a.decide(S, leader(held=None, last=DC2, free_since=60.5))
        self.assertIsNone(d.take_over)

    def test_takes_over_after_the_hold_down_when_caught_up(self):
        d = a.decide(S, leader(held=None, last=DC2, free_since=60.0))
        self.assertEqual(d.take_over, ("dc2", 500))

    def test_a_standby_ahead_counts_as_zero_behind(self):
        d = a.decide(S, leader(lsn=9500, held=None, last=DC2, free_since=0.0))
        self.assertEqual(d.take_over, ("dc2", 0))

    def test_refuses_when_further_behind_than_maximum_lag(self):
        d = a.decide(S, leader(lsn=7000, held=None, last=DC2, free_since=0.0))
        self.assertIsNone(d.take_over)
        self.assertIn("2000 bytes behind", d.log)

    def test_refuses_without_a_published_position(self):
        for lsn in (None, "garbage", [1]):
            d = a.decide(S, leader(held=None, last={"cloud": "dc2", "lsn": lsn}, free_since=0.0))
            self.assertIsNone(d.take_over)

    def test_never_takes_a_lease_its_own_cloud_held_last(self):
        d = a.decide(S, leader(held=None, last=DC1, free_since=0.0))
        self.assertIsNone(d.take_over)

    def test_never_takes_a_lease_nobody_held(self):
        d = a.decide(S, leader(held=None, last=None, free_since=0.0))
        self.assertIsNone(d.take_over)

    def test_promotes_again_a_claimed_lease(self):
        d = a.decide(S, leader(taking_over=True, held=DC1, lease=7))
        self.assertIn("not primary yet", d.promote)

    def test_claims_again_a_lapsed_claim(self):
        d = a.decide(S, leader(taking_over=True, held=None, last=DC1))
        self.assertEqual(d.claim_then_promote[1], 8500)

    def test_drops_the_claim_when_the_lease_moved_on(self):
        d = a.decide(S, leader(taking_over=True, held=DC2, lease=9))
        self.assertEqual(d.clear, [a.TAKING_OVER])
        self.assertIsNone(d.promote)
        self.assertIsNone(d.free_since)

    def test_a_lapsed_claim_of_another_cloud_drops_the_marker_and_waits(self):
        d = a.decide(S, leader(taking_over=True, held=None, last=DC2))
        self.assertEqual(d.clear, [a.TAKING_OVER])
        self.assertEqual(d.free_since, 100.0)
        self.assertIsNone(d.take_over)


class Promotion(unittest.TestCase):
    def test_refuses_when_armed_and_the_site_is_silent(self):
        self.assertEqual(a.decide_promotion(S, False, True, None, 0, None, 100.0)[0], "refuse")

    def test_allows_before_the_site_ever_answered(self):
        self.assertEqual(a.decide_promotion(S, False, False, None, 0, None, 100.0)[0], "allow")

    def test_renews_its_own_clouds_lease(self):
        self.assertEqual(a.decide_promotion(S, True, True, DC1, 7, DC1, 100.0)[0], "keepalive")

    def test_refuses_its_clouds_key_without_a_lease(self):
        self.assertEqual(a.decide_promotion(S, True, True, DC1, 0, DC1, 100.0)[0], "refuse")

    def test_refuses_while_another_cloud_holds_it(self):
        verdict, why = a.decide_promotion(S, True, True, DC2, 9, DC2, 100.0)
        self.assertEqual((verdict, why), ("refuse", "cloud dc2 holds the site lease"))

    def test_claims_a_free_lease_it_held_last_or_nobody_held(self):
        self.assertEqual(a.decide_promotion(S, True, True, None, 0, DC1, 100.0)[0], "claim")
        self.assertEqual(a.decide_promotion(S, True, True, None, 0, None, 100.0)[0], "claim")

    def test_refuses_a_free_lease_another_cloud_held_last(self):
        self.assertEqual(a.decide_promotion(S, True, True, None, 0, DC2, 100.0)[0], "refuse")


HANDED = {"cloud": "dc1", "by": "pgha", "handover": "dc2", "until": 200.0}


class HandOver(unittest.TestCase):
    """`pgha cloud make-primary dc2` marks dc1's lease before it demotes dc1:
    until the mark ends, no member of dc1 may be promoted."""

    def test_pre_promote_refuses_while_the_lease_is_handed_over(self):
        self.assertEqual(
            a.decide_promotion(S, True, True, HANDED, 7, DC1, 100.0),
            ("refuse", "pgha is handing the site lease over to cloud dc2"),
        )

    def test_an_ended_mark_is_no_mark(self):
        self.assertEqual(a.decide_promotion(S, True, True, HANDED, 7, DC1, 300.0)[0], "keepalive")

    def test_a_resume_waits_while_the_lease_is_handed_over(self):
        d = a.decide(S, leader(fenced=True, held=HANDED, lease=7, last=DC1, wall=100.0))
        self.assertIsNone(d.promote)
        self.assertIsNone(d.claim_then_promote)
        d = a.decide(S, leader(fenced=True, held=HANDED, lease=7, last=DC1, wall=300.0))
        self.assertIsNotNone(d.promote)

    def test_the_master_still_renews_while_handed_over(self):
        d = a.decide(S, master(held=HANDED, lease=7, last=DC1, wall=100.0))
        self.assertEqual(d.renew, ("keepalive", 7, 5000))

    def test_marks_of_other_shapes_are_no_marks(self):
        for held in (
            dict(HANDED, handover="dc1"),
            dict(HANDED, handover=5),
            dict(HANDED, until="200"),
            dict(HANDED, until=True),
            {"cloud": "dc1", "handover": "dc2"},
            dict(HANDED, cloud="dc3"),
        ):
            self.assertIsNone(a.handed_over(S, held, 100.0), held)
        self.assertEqual(a.handed_over(S, HANDED, 100.0), "dc2")


class Start(unittest.TestCase):
    """The Patroni fence asks, before Patroni starts, whom the cloud follows."""

    def test_another_cloud_holding_the_lease_is_followed(self):
        self.assertEqual(a.decide_start(S, True, DC2, DC2), "dc2")

    def test_a_lapsed_lease_whose_last_holder_is_another_cloud_is_followed(self):
        self.assertEqual(a.decide_start(S, True, None, DC2), "dc2")

    def test_this_clouds_lease_or_none_known_starts_as_configured(self):
        self.assertIsNone(a.decide_start(S, True, DC1, DC1))
        self.assertIsNone(a.decide_start(S, True, None, DC1))
        self.assertIsNone(a.decide_start(S, True, None, None))

    def test_no_answer_decides_nothing(self):
        self.assertIsNone(a.decide_start(S, False, DC2, DC2))

    def test_a_value_of_no_known_cloud_is_not_this_clouds(self):
        self.assertEqual(a.decide_start(S, True, {"cloud": None}, DC1), "an unknown cloud")


class Unstick(unittest.TestCase):
    def test_nothing_on_the_leaders_timeline(self):
        self.assertEqual(a.decide_unstick(100, 3, 3, 50, None), (False, None))

    def test_nothing_when_a_timeline_is_unknown(self):
        self.assertEqual(a.decide_unstick(100, None, 3, 50, None), (False, None))

    def test_starts_counting_when_behind(self):
        self.assertEqual(a.decide_unstick(100, 2, 3, None, None), (False, 100))

    def test_stops_after_twenty_seconds_behind(self):
        self.assertEqual(a.decide_unstick(120, 2, 3, 100, None), (True, None))

    def test_not_again_within_a_minute(self):
        self.assertEqual(a.decide_unstick(120, 2, 3, 100, 80), (False, 100))
        self.assertEqual(a.decide_unstick(141, 2, 3, 100, 80), (True, None))


class Receiver(unittest.TestCase):
    def test_nothing_while_it_streams_or_when_unknown(self):
        self.assertEqual(a.decide_receiver(100, True, 50, None), (False, None))
        self.assertEqual(a.decide_receiver(100, None, 50, None), (False, None))

    def test_starts_counting_when_silent(self):
        self.assertEqual(a.decide_receiver(100, False, None, None), (False, 100))

    def test_waits_twenty_seconds(self):
        self.assertEqual(a.decide_receiver(119, False, 100, None), (False, 100))

    def test_restarts_after_twenty_seconds(self):
        self.assertEqual(a.decide_receiver(120, False, 100, None), (True, 120))

    def test_not_again_within_twenty_seconds(self):
        self.assertEqual(a.decide_receiver(130, False, 100, 120), (False, 100))
        self.assertEqual(a.decide_receiver(140, False, 100, 120), (True, 140))


def status(endpoint, member, leader, applied=100):
    return {"Endpoint": endpoint, "Status": {"header": {"member_id": member}, "leader": leader, "raftAppliedIndex": applied}}


ONE, TWO, THREE = "https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"


class EtcdLeader(unittest.TestCase):
    """A host that leads both Patroni and its cloud's etcd hands etcd's
    leadership to a member that follows it."""

    def test_a_master_leading_etcd_hands_it_to_the_most_applied_follower(self):
        rows = [status(ONE, 17, 17, 100), status(TWO, 18, 17, 99), status(THREE, 255, 17, 100)]
        self.assertEqual(a.decide_etcd_leader("master", rows, ONE), "ff")
        self.assertEqual(a.decide_etcd_leader("standby_leader", rows, ONE), "ff")

    def test_a_replica_or_a_silent_patroni_leaves_it(self):
        rows = [status(ONE, 17, 17), status(TWO, 18, 17)]
        self.assertIsNone(a.decide_etcd_leader("replica", rows, ONE))
        self.assertIsNone(a.decide_etcd_leader(None, rows, ONE))

    def test_a_master_that_does_not_lead_etcd_leaves_it(self):
        rows = [status(ONE, 17, 18), status(TWO, 18, 18)]
        self.assertIsNone(a.decide_etcd_leader("master", rows, ONE))

    def test_its_own_member_silent_or_no_follower_answering_leaves_it(self):
        self.assertIsNone(a.decide_etcd_leader("master", [status(TWO, 18, 17)], ONE))
        self.assertIsNone(a.decide_etcd_leader("master", [status(ONE, 17, 17)], ONE))
        self.assertIsNone(a.decide_etcd_leader("master", [], ONE))
        self.assertIsNone(a.decide_etcd_leader("master", None, ONE))

    def test_a_member_that_names_another_leader_is_not_chosen(self):
        rows = [status(ONE, 17, 17), status(TWO, 18, 19), status(THREE, 19, 17, 5)]
        self.assertEqual(a.decide_etcd_leader("master", rows, ONE), "13")

    def test_rows_it_cannot_read_are_skipped(self):
        rows = [status(ONE, 17, 17), {"Endpoint": TWO}, "x", status(THREE, "n", 17), status(THREE, 19, 17)]
        self.assertEqual(a.decide_etcd_leader("master", rows, ONE), "13")

    def host(self, role, running, statuses, moved_rc=0):
        h = a.Host.__new__(a.Host)
        h.s = replace(S, cloud_etcd=[ONE, TWO], own_etcd=ONE, cert="/etc/pgha/tls/host.crt")
        h.calls = []
        h.patroni = lambda: (role, 5000, running)

        def etcdctl(endpoints, *args):
            h.calls.append((endpoints, args))
            if args[0] == "endpoint":
                return mock.Mock(stdout=json.dumps(statuses), returncode=1, stderr="")
            return mock.Mock(stdout="", returncode=moved_rc, stderr="etcdserver: not leader")

        h.etcdctl = etcdctl
        return h

    def test_one_look_moves_the_leadership_from_its_own_member(self):
        h = self.host("master", True, [status(ONE, 17, 17), status(TWO, 18, 17)])
        with mock.patch.object(a, "log") as logged:
            self.assertEqual(h.steer_etcd_leader("master"), (True, "master"))
        self.assertEqual(h.calls, [([ONE, TWO], ("endpoint", "status", "-w", "json")), ([ONE], ("move-leader", "12"))])
        self.assertIn("handed etcd's leadership to member 12", logged.call_args[0][0])

    def test_a_refused_move_is_logged_and_tried_at_the_next_look(self):
        h = self.host("master", True, [status(ONE, 17, 17), status(TWO, 18, 17)], moved_rc=1)
        with mock.patch.object(a, "log") as logged:
            self.assertEqual(h.steer_etcd_leader("master"), (False, "master"))
        self.assertIn("could not hand", logged.call_args[0][0])

    def test_a_stopped_postgres_a_replica_or_a_role_just_taken_asks_nothing_of_etcd(self):
        rows = [status(ONE, 17, 17), status(TWO, 18, 17)]
        self.assertEqual(self.host("master", False, rows).steer_etcd_leader("master")[0], False)
        replica = self.host("replica", True, rows)
        self.assertEqual(replica.steer_etcd_leader("replica"), (False, "replica"))
        promoted = self.host("master", True, rows)
        self.assertEqual(promoted.steer_etcd_leader("replica"), (False, "master"))
        for h in (replica, promoted):
            self.assertEqual(h.calls, [])

    def test_settings_of_an_older_pgha_still_load(self):
        old = {k: v for k, v in S.__dict__.items() if k not in ("cloud_etcd", "own_etcd", "cert")}
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(old, f)
            f.flush()
            self.assertEqual(a.Settings.load(f.name).cloud_etcd, [])

    def test_settings_of_a_newer_pgha_load_without_its_keys(self):
        newer = dict(S.__dict__, a_later_key=1)
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(newer, f)
            f.flush()
            self.assertEqual(a.Settings.load(f.name), S)


class SiteValues(unittest.TestCase):
    def kv(self, key, value, lease=0):
        import base64

        b = lambda t: base64.b64encode(t.encode()).decode()
        return {"key": b(key), "value": b(value), "lease": str(lease)}

    def test_reads_the_lease_and_its_last_holder(self):
        kvs = [self.kv(S.last_key, '{"cloud": "dc1", "lsn": 5}'), self.kv(S.key, '{"cloud": "dc1"}', 42)]
        self.assertEqual(a.parse_site(S, kvs), ({"cloud": "dc1"}, 42, {"cloud": "dc1", "lsn": 5}))

    def test_absent_keys(self):
        self.assertEqual(a.parse_site(S, None), (None, 0, None))

    def test_a_value_that_does_not_decode_is_held_by_no_known_cloud(self):
        for bad in ("{not json", '"a string"', "[1, 2]", "7"):
            held, _, last = a.parse_site(S, [self.kv(S.key, bad), self.kv(S.last_key, bad)])
            self.assertEqual((held, last), ({"cloud": None}, {"cloud": None}), bad)

    def test_a_master_fences_on_a_key_held_by_no_known_cloud(self):
        self.assertEqual(a.decide(S, master(held={"cloud": None}, lease=3)).fence, "cloud None holds the site lease")

    def test_cloud_of_anything(self):
        self.assertIsNone(a.cloud_of("dc1"))
        self.assertIsNone(a.cloud_of(None))
        self.assertEqual(a.cloud_of(DC1), "dc1")


class FakeHost:
    """What `act` asks of the world; claims and renewals succeed as told."""

    def __init__(self, claims=True, renewals=True, records=True):
        self.claims, self.renewals, self.records, self.calls = claims, renewals, records, []
        self.seen = None

    def claim(self, lsn, sync=None, sync_rev=0):
        self.calls.append(("claim", lsn))
        self.claimed_sync = (sync, sync_rev)
        return self.claims

    def record_sync(self, record, sync_rev, held_rev):
        self.calls.append(("record", record["mode"], record["lsn"], sync_rev, held_rev))
        return self.records

    def patch_ssn(self, value):
        self.calls.append(("ssn", value))
        return True

    def replication(self):
        self.calls.append(("replication",))
        return self.seen

    def renew(self, lease, lsn):
        self.calls.append(("renew", lease, lsn))
        return self.renewals

    def fence(self, why, lsn, follows):
        self.calls.append(("fence", why, follows))

    def promote(self, why):
        self.calls.append(("promote",))

    def follow(self):
        self.calls.append(("follow",))


class Act(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.mkdtemp()
        self.patch = mock.patch.multiple(
            a,
            STATE_DIR=tmp,
            ARMED=tmp + "/armed",
            FENCED=tmp + "/fenced",
            TAKING_OVER=tmp + "/taking-over",
            now=lambda: 100.0,
            log=lambda m: None,
        )
        self.patch.start()
        self.addCleanup(self.patch.stop)

    def run_once(self, o, host):
        return a.act(S, host, o, a.decide(S, o))

    def test_a_renewal_moves_the_clock_and_ends_the_markers(self):
        a.mark(a.FENCED, "x")
        h = FakeHost()
        last, _ = self.run_once(master(held=DC1, lease=7, standby=False), h)
        self.assertEqual(last, 100.0)
        self.assertEqual(h.calls, [("renew", 7, 5000)])
        self.assertFalse(os.path.exists(a.FENCED))

    def test_a_renewal_keeps_the_markers_while_the_cloud_is_a_standby(self):
        a.mark(a.FENCED, "x")
        self.run_once(master(held=DC1, lease=7, standby=True), FakeHost())
        self.assertTrue(os.path.exists(a.FENCED))

    def test_a_claim_moves_the_clock(self):
        h = FakeHost()
        last, _ = self.run_once(master(held=None, last=DC1, standby=False), h)
        self.assertEqual((last, h.calls), (100.0, [("claim", 5000)]))

    def test_another_holder_fences_at_once(self):
        h = FakeHost()
        last, _ = self.run_once(master(held=DC2, lease=9), h)
        self.assertEqual(h.calls, [("fence", "cloud dc2 holds the site lease", True)])
        self.assertEqual(last, 100.0)

    def test_a_resume_promotes(self):
        h = FakeHost()
        self.run_once(leader(fenced=True, held=DC1, lease=7), h)
        self.assertEqual(h.calls, [("promote",)])

    def test_arms_on_the_first_answer(self):
        self.run_once(leader(armed=False, held=DC1, lease=7), FakeHost())
        self.assertEqual(os.path.exists(a.ARMED), os.geteuid() == 0)

    def test_a_failed_renewal_past_the_bound_fences(self):
        h = FakeHost(renewals=False)
        last, _ = self.run_once(master(held=DC1, lease=7, last_renewal=80.0), h)
        self.assertEqual(h.calls[-1], ("fence", "no renewal of the site lease for 20.0 s", False))
        self.assertEqual(last, 100.0)

    def test_a_renewal_that_fails_late_counts_its_own_wait(self):
        # Decided at 95 (a renewal 5 s old), failed at 100: 10 s, fenced.
        h = FakeHost(renewals=False)
        o = master(now=95.0, held=DC1, lease=7, last_renewal=90.0)
        d = a.decide(S, o)
        self.assertFalse(d.late)
        a.act(S, h, o, d)
        self.assertEqual(h.calls[-1], ("fence", "no renewal of the site lease for 10.0 s", False))
        # It was late before it was fenced: counted.
        self.assertTrue(d.late)

    def test_a_failed_renewal_within_the_bound_keeps_the_clock(self):
        h = FakeHost(renewals=False)
        last, _ = self.run_once(master(held=DC1, lease=7, last_renewal=95.0), h)
        self.assertEqual(h.calls, [("renew", 7, 5000)])
        self.assertEqual(last, 95.0)

    def test_a_takeover_marks_claims_and_promotes(self):
        h = FakeHost()
        _, free = self.run_once(leader(held=None, last=DC2, free_since=0.0), h)
        self.assertEqual(h.calls, [("claim", 8500), ("promote",)])
        self.assertTrue(os.path.exists(a.TAKING_OVER))
        self.assertIsNone(free)

    def test_a_failed_takeover_claim_drops_the_marker_and_keeps_waiting(self):
        h = FakeHost(claims=False)
        _, free = self.run_once(leader(held=None, last=DC2, free_since=0.0), h)
        self.assertEqual(h.calls, [("claim", 8500)])
        self.assertFalse(os.path.exists(a.TAKING_OVER))
        self.assertEqual(free, 0.0)

    def test_a_masterless_cloud_follows_without_a_stop(self):
        h = FakeHost()
        self.run_once(leader(role="replica", standby=False, held=DC2, lease=9, cloud_master=False), h)
        self.assertEqual(h.calls, [("follow",)])

    def test_a_resume_promotes_only_after_its_claim(self):
        h = FakeHost(claims=False)
        self.run_once(leader(fenced=True, held=None, last=DC1), h)
        self.assertEqual(h.calls, [("claim", None)])


class EtcdLogin(unittest.TestCase):
    """The gateway client: a refusal for want of a login logs in once and
    repeats the request; anything else is no answer from that member."""

    def host(self, answers):
        h = a.Host.__new__(a.Host)
        h.s, h.order, h.token, h.calls = S, list(S.endpoints) + ["https://10.0.0.2:2479"], None, []

        def post(endpoint, path, body):
            h.calls.append((endpoint, path, h.token))
            answer = answers.pop(0)
            if isinstance(answer, tuple):
                status, message = answer
                body = io.BytesIO(json.dumps({"message": message}).encode())
                raise urllib.error.HTTPError(endpoint + path, status, "refused", {}, body)
            if answer is None:
                raise OSError("no answer")
            return answer

        h.post = post
        return h

    def test_a_refusal_for_want_of_a_login_logs_in_and_repeats(self):
        h = self.host([(403, "etcdserver: permission denied"), {"token": "t1"}, {"kvs": []}])
        self.assertEqual(h.etcd("/v3/kv/range", {}), {"kvs": []})
        self.assertEqual([c[1] for c in h.calls], ["/v3/kv/range", "/v3/auth/authenticate", "/v3/kv/range"])
        self.assertEqual(h.calls[-1][2], "t1")

    def test_an_unknown_token_logs_in_again(self):
        h = self.host([(401, "etcdserver: invalid auth token"), {"token": "t2"}, {"ok": 1}])
        h.token = "old"
        self.assertEqual(h.etcd("/v3/kv/put", {}), {"ok": 1})
        self.assertEqual(h.token, "t2")

    def test_a_failed_login_moves_to_the_next_member(self):
        h = self.host([(403, "permission denied"), (400, "authentication failed"), {"ok": 2}])
        self.assertEqual(h.etcd("/v3/kv/put", {}), {"ok": 2})
        self.assertEqual(h.calls[-1][0], "https://10.0.0.2:2479")
        self.assertEqual(h.order[0], "https://10.0.0.2:2479")

    def test_a_refusal_after_a_login_is_no_answer_from_that_member(self):
        h = self.host([(403, "permission denied"), {"token": "t"}, (403, "permission denied"), None])
        self.assertIsNone(h.etcd("/v3/kv/put", {}))
        self.assertEqual(len(h.calls), 4)

    def test_other_refusals_never_log_in(self):
        h = self.host([(400, "etcdserver: key not found"), None])
        self.assertIsNone(h.etcd("/v3/kv/range", {}))
        self.assertNotIn("/v3/auth/authenticate", [c[1] for c in h.calls])

    def test_authentication_not_enabled_leaves_no_token(self):
        h = self.host([(403, "x"), (400, "etcdserver: authentication is not enabled"), None])
        h.token = "stale"
        self.assertIsNone(h.etcd("/v3/kv/range", {}))
        self.assertIsNone(h.token)

    def test_no_user_no_login(self):
        h = self.host([(403, "permission denied"), None])
        h.s = replace(S, etcd_user="")
        self.assertIsNone(h.etcd("/v3/kv/range", {}))
        self.assertEqual(len(h.calls), 2)

    def test_a_read_at_once_takes_the_first_answer_past_a_silent_member(self):
        gone = threading.Event()
        h = self.host([])

        def post(endpoint, path, body):
            if endpoint == S.endpoints[0]:
                # A powered-off member: silent until its deadline.
                gone.wait(5)
                raise OSError("timed out")
            return {"kvs": [], "from": endpoint}

        h.post = post
        started = time.monotonic()
        self.assertEqual(h.etcd_first("/v3/kv/range", {})["from"], "https://10.0.0.2:2479")
        self.assertLess(time.monotonic() - started, 2)
        self.assertEqual(h.order[0], "https://10.0.0.2:2479")
        gone.set()

    def test_a_read_at_once_with_no_answer_is_none(self):
        h = self.host([None, None])
        self.assertIsNone(h.etcd_first("/v3/kv/range", {}))

    def test_decisions(self):
        self.assertTrue(a.needs_login(401, ""))
        self.assertTrue(a.needs_login(403, ""))
        self.assertTrue(a.needs_login(400, "etcdserver: revision of auth store is old"))
        self.assertTrue(a.needs_login(400, "etcdserver: user name is empty"))
        self.assertFalse(a.needs_login(400, "etcdserver: key not found"))
        self.assertFalse(a.needs_login(500, ""))
        self.assertTrue(a.auth_not_enabled(400, "etcdserver: authentication is not enabled"))
        self.assertFalse(a.auth_not_enabled(403, "etcdserver: authentication is not enabled"))


class State(unittest.TestCase):
    def test_the_loop_s_state_names_the_holder_only_when_the_site_answered(self):
        self.assertEqual(
            json.loads(a.state_text(12.3456, True, {"cloud": "dc2", "lsn": 5}, (3, 10.12345))),
            {"at": 12.346, "site_ok": True, "holder": "dc2", "late_renewals": 3, "late_at": 10.123, "replication": None},
        )
        sync = {"cloud": "dc2", "mode": "sync", "partner": "dc1", "lsn": 7, "why": "w"}
        self.assertEqual(
            json.loads(a.state_text(1.0, True, None, (0, None), sync))["replication"],
            {"cloud": "dc2", "mode": "sync", "partner": "dc1"},
        )
        # Not said when the site is silent or the record does not read.
        self.assertIsNone(json.loads(a.state_text(1.0, False, None, (0, None), sync))["replication"])
        self.assertIsNone(json.loads(a.state_text(1.0, True, None, (0, None), {"cloud": "dc2", "mode": "x"}))["replication"])
        self.assertIsNone(json.loads(a.state_text(1.0, True, None, (0, None)))["holder"])
        self.assertIsNone(json.loads(a.state_text(1.0, False, {"cloud": "dc1"}, (0, None)))["holder"])

    def test_it_is_written_whole(self):
        with tempfile.TemporaryDirectory() as d:
            with mock.patch.object(a, "RUN_DIR", d), mock.patch.object(a, "STATE", d + "/s.json"):
                a.record_state(3.0, True, {"cloud": "dc1"}, (2, 1.5))
                with open(d + "/s.json") as f:
                    self.assertEqual(json.load(f)["holder"], "dc1")
                self.assertEqual(os.listdir(d), ["s.json"])
                # A restarted agent counts on from the recorded count.
                self.assertEqual(a.recorded_late(d + "/s.json"), (2, 1.5))

    def test_a_count_it_cannot_read_starts_again(self):
        with tempfile.TemporaryDirectory() as d:
            p = d + "/s.json"
            self.assertEqual(a.recorded_late(p), (0, None))
            for text in ("{", "[1]", '{"late_renewals": -1}', '{"late_renewals": true}', '{"late_renewals": "7"}'):
                with open(p, "w") as f:
                    f.write(text)
                self.assertEqual(a.recorded_late(p), (0, None), text)
            # An older agent's state: a count, no time.
            for text in ('{"late_renewals": 4}', '{"late_renewals": 4, "late_at": "x"}'):
                with open(p, "w") as f:
                    f.write(text)
                self.assertEqual(a.recorded_late(p), (4, None), text)


class LateRenewals(unittest.TestCase):
    def test_a_master_s_renewal_older_than_the_late_bound_is_late(self):
        # ttl 30: fenced at 10 s, late from 7 s.
        self.assertEqual(S.late_bound, 7.0)
        self.assertFalse(a.decide(S, master(held=DC1, lease=7, last_renewal=93.1)).late)
        for o in (master(held=DC1, lease=7, last_renewal=93.0), master(site_ok=False, last_renewal=92.0)):
            self.assertTrue(a.decide(S, o).late, o)
        # The fence's own loop too.
        d = a.decide(S, master(site_ok=False, last_renewal=89.0))
        self.assertTrue(d.late and d.fence)

    def test_the_design_s_bound_wins(self):
        self.assertFalse(a.decide(replace(S, late_after=8.5), master(held=DC1, lease=7, last_renewal=92.0)).late)

    def test_never_late_unarmed_stopped_or_not_master(self):
        for o in (
            master(site_ok=False, armed=False, last_renewal=0.0),
            master(running=False, held=DC1, last_renewal=0.0),
            leader(last_renewal=0.0),
        ):
            self.assertFalse(a.decide(S, o).late, o)

    def test_one_count_per_episode_after_a_loop_on_time(self):
        late, on_time = a.Decision(late=True, master=True), a.Decision(master=True)
        self.assertEqual(
            [a.late_episode(p, d) for p, d in ((on_time, late), (late, late), (late, on_time), (on_time, late))],
            [True, False, False, True],
        )

    def test_not_after_a_restart_of_postgres_or_of_the_agent(self):
        # The clock waits while the master is not running: its first loop
        # running again may find it old, and renews.
        late = a.Decision(late=True, master=True)
        self.assertFalse(a.late_episode(a.decide(S, master(running=False)), late))
        self.assertFalse(a.late_episode(None, late), "the agent's first loop")
        self.assertFalse(a.late_episode(a.decide(S, leader()), late), "just promoted")


if __name__ == "__main__":
    unittest.main()


# Synchronous replication between clouds: dc1 primary, dc2 its partner.
SY = replace(
    S,
    sync_key="/pgha-site/c/sync",
    synchronous=True,
    sync_after=10.0,
    partners={"dc2": ["dc2-pg1", "dc2-pg2"], "dc3": ["dc3-pg1"]},
)
WANT = 'ANY 1 ("dc2-pg1", "dc2-pg2")'


def repl(ssn="", lsn=5000, waiting=0.0, senders=None, idle=True):
    return a.Replication(ssn, lsn, waiting, senders if senders is not None else [], idle)


def sender(name="dc2-pg1", flush=5000, sync="async", state="streaming"):
    return {"name": name, "state": state, "sync": sync, "flush": flush}


def rec(mode, lsn, partner=None, cloud="dc1"):
    return {"cloud": cloud, "mode": mode, "partner": partner, "lsn": lsn}


def sync_master(**kw):
    base = dict(held=DC1, lease=7, held_rev=11, sync_rev=12, wall=1000.0)
    base.update(kw)
    return master(**base)


class Sync(unittest.TestCase):
    """decide_sync: a master holding the lease, after its renewal."""

    def step(self, **kw):
        o = sync_master(**kw)
        d = a.decide(SY, o)
        self.assertEqual((d.renew, d.sync_due), (("keepalive", 7, 5000), True))
        return a.decide_sync(SY, o)

    def test_nothing_without_knowing_the_replication(self):
        self.assertEqual(self.step(sync=rec("sync", 100, "dc2"), replication=None), a.SyncStep())

    def test_no_record_of_its_own_records_asynchronous_since_now(self):
        for sync in (None, rec("sync", 100, "dc1", cloud="dc2"), {"cloud": None, "unreadable": True}):
            s = self.step(sync=sync, replication=repl(lsn=6000))
            self.assertEqual((s.record["mode"], s.record["lsn"], s.record["cloud"]), ("async", 6000, "dc1"))
            self.assertEqual(s.patch, "")

    def test_asynchronous_asks_a_cloud_that_caught_up(self):
        far = repl(lsn=5000 + a.SYNC_CATCH_UP + 1, senders=[sender(flush=5000)])
        self.assertEqual(self.step(sync=rec("async", 100), replication=far), a.SyncStep())
        close = repl(lsn=5000 + a.SYNC_CATCH_UP, senders=[sender(flush=5000), sender("dc1-pg2", flush=5000)])
        s = self.step(sync=rec("async", 100), replication=close)
        self.assertEqual((s.record, s.patch), (None, WANT))

    def test_a_member_not_streaming_or_of_no_other_cloud_is_not_asked(self):
        senders = [sender(state="catchup"), sender("dc1-pg2"), sender("stranger")]
        self.assertIsNone(self.step(sync=rec("async", 100), replication=repl(senders=senders)).patch)

    def test_a_setting_not_its_own_is_left_alone(self):
        s = self.step(sync=rec("async", 100), replication=repl(ssn="FIRST 1 (x)", senders=[sender()]))
        self.assertEqual(s, a.SyncStep())

    def test_records_synchronous_once_the_partner_flushed_past_a_later_position(self):
        senders = [sender(flush=5000, sync="quorum")]
        # First seen in force: no position yet.
        s = self.step(sync=rec("async", 100), replication=repl(ssn=WANT, lsn=7000, senders=senders))
        self.assertEqual((s.record, s.patch, s.target), (None, None, ("dc2", None)))
        # A loop later, with a sender confirming: the position.
        s = self.step(sync=rec("async", 100), sync_target=s.target, replication=repl(ssn=WANT, lsn=7000, senders=senders))
        self.assertEqual((s.record, s.target), (None, ("dc2", 7000)))
        # Flushed short of it: waits.
        s = self.step(sync=rec("async", 100), sync_target=s.target, replication=repl(ssn=WANT, lsn=9000, senders=senders))
        self.assertEqual((s.record, s.target), (None, ("dc2", 7000)))
        senders = [sender(flush=7000, sync="quorum")]
        s = self.step(sync=rec("async", 100), sync_target=s.target, replication=repl(ssn=WANT, lsn=9000, senders=senders))
        self.assertEqual((s.record["mode"], s.record["partner"], s.record["lsn"], s.patch), ("sync", "dc2", 7000, None))

    def test_no_position_while_no_sender_confirms(self):
        s = self.step(sync=rec("async", 100), sync_target=("dc2", None), replication=repl(ssn=WANT, senders=[sender()]))
        self.assertEqual(s.target, ("dc2", None))

    def test_no_position_while_the_checkpointer_may_not_have_read_the_setting(self):
        senders = [sender(sync="quorum")]
        s = self.step(sync=rec("async", 100), sync_target=("dc2", None), replication=repl(ssn=WANT, senders=senders, idle=False))
        self.assertEqual(s.target, ("dc2", None))
        s = self.step(sync=rec("async", 100), sync_target=("dc2", None), replication=repl(ssn=WANT, senders=senders))
        self.assertEqual(s.target, ("dc2", 5000))

    def test_a_partner_that_never_confirms_is_dropped_after_the_bound(self):
        s = self.step(sync=rec("async", 100), sync_target=("dc2", 7000), replication=repl(ssn=WANT, waiting=10.0))
        self.assertEqual((s.record, s.patch), (None, ""))

    def test_synchronous_stays_while_the_partner_streams(self):
        s = self.step(sync=rec("sync", 100, "dc2"), replication=repl(ssn=WANT, waiting=9.9, senders=[sender(sync="quorum")]))
        self.assertEqual(s, a.SyncStep())

    def test_a_commit_waiting_the_bound_degrades_record_first(self):
        s = self.step(sync=rec("sync", 100, "dc2"), replication=repl(ssn=WANT, lsn=8000, waiting=10.0, senders=[sender()]))
        self.assertEqual((s.record["mode"], s.record["lsn"], s.record["partner"], s.patch), ("async", 8000, None, ""))

    def test_a_partner_silent_for_the_bound_degrades(self):
        s = self.step(sync=rec("sync", 100, "dc2"), replication=repl(ssn=WANT), now=100.0)
        self.assertEqual((s.record, s.gone_since), (None, 100.0))
        s = self.step(sync=rec("sync", 100, "dc2"), replication=repl(ssn=WANT), now=109.0, last_renewal=108.0, sync_gone_since=100.0)
        self.assertEqual((s.record, s.gone_since), (None, 100.0))
        s = self.step(sync=rec("sync", 100, "dc2"), replication=repl(ssn=WANT), now=110.0, last_renewal=109.0, sync_gone_since=100.0)
        self.assertEqual((s.record["mode"], s.patch), ("async", ""))

    def test_synchronous_recorded_but_not_in_force_degrades(self):
        s = self.step(sync=rec("sync", 100, "dc2"), replication=repl(ssn="", senders=[sender()]))
        self.assertEqual((s.record["mode"], s.patch), ("async", ""))

    def test_off_in_the_design_drops_what_it_set(self):
        off = replace(SY, synchronous=False)
        s = a.decide_sync(off, sync_master(sync=rec("sync", 100, "dc2"), replication=repl(ssn=WANT)))
        self.assertEqual((s.record["mode"], s.patch), ("async", ""))
        s = a.decide_sync(off, sync_master(sync=rec("async", 100), replication=repl(ssn=WANT)))
        self.assertEqual((s.record, s.patch), (None, ""))
        # Only a record of its own cloud's is looked after; none: PostgreSQL is not even asked.
        self.assertEqual(a.decide_sync(off, sync_master(sync=rec("sync", 1, "dc1", cloud="dc2"), replication=repl())), a.SyncStep())
        self.assertFalse(a.decide(off, sync_master(sync=None)).sync_due)
        self.assertTrue(a.decide(off, sync_master(sync=rec("async", 100))).sync_due)


DC1_FAR = {"cloud": "dc1", "host": "dc1-pg1", "lsn": 10**9}


class Waited(unittest.TestCase):
    """waited: how long the oldest commit has waited for a synchronous standby."""

    def test_a_long_statement_counts_from_the_previous_look_not_its_start(self):
        # 30 s of work, then its commit waits: not "30 s waiting" at once.
        seen, wait = a.waited({}, [{"id": "7/t", "age": 30.0}], 100.0, 100.0, 99.0)
        self.assertEqual((seen, wait), ({"7/t": 99.0}, 1.0))
        seen, wait = a.waited(seen, [{"id": "7/t", "age": 34.0}], 104.0, 104.0, 100.0)
        self.assertEqual(wait, 5.0)

    def test_a_short_statement_counts_from_its_start(self):
        seen, wait = a.waited({}, [{"id": "8/t", "age": 0.5}], 100.0, 100.0, 97.0)
        self.assertEqual((seen, wait), ({"8/t": 99.5}, 0.5))

    def test_the_first_look_counts_from_the_statement(self):
        self.assertEqual(a.waited({}, [{"id": "8/t", "age": 12.0}], 100.0, 100.0, None), ({"8/t": 88.0}, 12.0))

    def test_the_oldest_waiter_counts_and_gone_ones_are_forgotten(self):
        seen = {"1/a": 90.0, "2/b": 95.0}
        seen, wait = a.waited(seen, [{"id": "2/b", "age": 9.0}, {"id": "3/c", "age": 0.2}], 100.0, 100.0, 98.0)
        self.assertEqual((seen, wait), ({"2/b": 95.0, "3/c": 99.8}, 5.0))
        self.assertEqual(a.waited(seen, [], 101.0, 101.0, 100.0), ({}, 0.0))

    def test_each_transaction_of_a_procedure_counts_on_its_own(self):
        seen, _ = a.waited({}, [{"id": "7/t1", "age": 0.2}], 100.0, 100.0, 97.0)
        seen, wait = a.waited(seen, [{"id": "7/t2", "age": 0.1}], 103.0, 103.5, 100.0)
        self.assertEqual(list(seen), ["7/t2"])
        self.assertAlmostEqual(wait, 0.6)

    def test_the_query_s_round_trip_counts_as_waiting(self):
        # Asked at 100, answered at 101.5: the commit began 2 s before the ask.
        self.assertEqual(a.waited({}, [{"id": "8/t", "age": 2.0}], 100.0, 101.5, 97.0), ({"8/t": 98.0}, 3.5))

    def test_what_does_not_read_is_skipped(self):
        self.assertEqual(a.waited({}, ["x", {"age": 3}, None], 100.0, 100.0, 99.0), ({}, 0.0))


class SyncTakeOver(unittest.TestCase):
    """The record decides an automatic takeover before maximum_lag does."""

    def take(self, sync, lsn=8500, last=DC1_FAR):
        o = leader(held=None, last=last, free_since=0.0, lsn=lsn, sync=sync)
        return a.decide(replace(SY, cloud="dc2", host="dc2-pg1", partners={"dc1": ["dc1-pg1"]}), o)

    def test_the_synchronous_partner_takes_it_however_far_the_last_position(self):
        d = self.take(rec("sync", 8000, "dc2"))
        self.assertEqual(d.take_over, ("dc1", 0))

    def test_not_behind_the_position_it_confirmed_from(self):
        self.assertIsNone(self.take(rec("sync", 9000, "dc2")).take_over)

    def test_another_partner_refuses(self):
        self.assertIsNone(self.take(rec("sync", 8000, "dc3")).take_over)

    def test_asynchronous_behind_its_position_refuses(self):
        d = self.take(rec("async", 8600), last=dict(DC1_FAR, lsn=8600))
        self.assertIsNone(d.take_over)
        self.assertIn("this cloud is at", d.log)

    def test_asynchronous_past_its_position_leaves_it_to_maximum_lag(self):
        self.assertEqual(self.take(rec("async", 8000), last=dict(DC1_FAR, lsn=9000)).take_over, ("dc1", 500))
        self.assertIsNone(self.take(rec("async", 8000)).take_over)

    def test_a_record_that_does_not_read_refuses(self):
        self.assertIsNone(self.take({"cloud": "dc1", "mode": "sync"}, last=dict(DC1_FAR, lsn=8500)).take_over)

    def test_another_clouds_record_leaves_it_to_maximum_lag(self):
        self.assertEqual(self.take(rec("sync", 100, "dc1", cloud="dc2"), last=dict(DC1_FAR, lsn=9000)).take_over, ("dc1", 500))


class ActSync(unittest.TestCase):
    setUp = Act.setUp
    def test_the_record_goes_before_the_setting_and_only_after_a_renewal(self):
        o = sync_master(sync=rec("sync", 100, "dc2"))
        seen = repl(ssn=WANT, lsn=8000, waiting=11.0)
        h = FakeHost()
        h.seen = seen
        d = a.decide(SY, o)
        a.act(SY, h, o, d)
        self.assertEqual(h.calls, [("renew", 7, 5000), ("replication",), ("record", "async", 8000, 12, 11), ("ssn", "")])
        self.assertEqual(d.sync.patch, "")
        h = FakeHost(records=False)
        h.seen = seen
        a.act(SY, h, o, a.decide(SY, o))
        self.assertEqual(h.calls, [("renew", 7, 5000), ("replication",), ("record", "async", 8000, 12, 11)])
        h = FakeHost(renewals=False)
        d = a.decide(SY, o)
        a.act(SY, h, o, d)
        self.assertEqual((h.calls, d.sync), ([("renew", 7, 5000)], None))

    def test_a_takeover_claims_with_an_asynchronous_record(self):
        o = leader(held=None, last=DC2, free_since=0.0, sync=None, sync_rev=0)
        h = FakeHost()
        a.act(SY, h, o, a.decide(SY, o))
        record, rev = h.claimed_sync
        self.assertEqual((record["cloud"], record["mode"], record["lsn"], rev), ("dc1", "async", 8500, 0))


class ParseSync(unittest.TestCase):
    def kv(self, key, value, rev):
        return {"key": a.b64(key), "value": a.b64(value), "mod_revision": str(rev)}

    def test_the_record_and_both_revisions(self):
        kvs = [self.kv(SY.key, json.dumps(DC1), 11), self.kv(SY.sync_key, json.dumps(rec("sync", 5, "dc2")), 12)]
        self.assertEqual(a.parse_sync(SY, kvs), (rec("sync", 5, "dc2"), 12, 11))
        self.assertEqual(a.parse_sync(SY, []), (None, 0, 0))

    def test_a_record_that_does_not_decode_is_kept_as_unreadable(self):
        record, rev, _ = a.parse_sync(SY, [self.kv(SY.sync_key, "{", 3)])
        self.assertEqual((record["unreadable"], rev), (True, 3))
        self.assertEqual(a.sync_rule(SY, leader(lsn=10**9, sync=record), DC2)[0], "refuse")

    def test_the_names_it_waits_for(self):
        self.assertEqual(a.ssn_for(SY, "dc2"), WANT)
        self.assertEqual(a.ssn_partner(SY, WANT), "dc2")
        self.assertIsNone(a.ssn_partner(SY, "ANY 1 (x)"))


class SyncHistory(unittest.TestCase):
    def test_a_record_keeps_the_states_before_it_bounded(self):
        r = None
        for i in range(a.SYNC_HISTORY + 3):
            r = a.sync_record(SY, "async" if i % 2 else "sync", i, f"w{i}", partner=None if i % 2 else "dc2", wall=float(i), previous=r)
        self.assertEqual(len(r["history"]), a.SYNC_HISTORY)
        self.assertEqual([h["lsn"] for h in r["history"]][-2:], [a.SYNC_HISTORY + 0, a.SYNC_HISTORY + 1])
        self.assertTrue(all("history" not in h for h in r["history"]))
        # A record that does not read leaves no history behind.
        self.assertEqual(a.sync_record(SY, "async", 1, "w", previous={"cloud": None, "unreadable": True})["history"], [])

