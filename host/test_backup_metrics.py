"""Unit tests of the backup metrics (run by `cargo test`, tests/real_tools.rs):
pgBackRest's info read per repository, the schedule's allowed age, the
textfile, and its atomic write."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

import backup_metrics as m


def backup(repo, kind, stop, error=False):
    return {
        "database": {"id": 1, "repo-key": repo},
        "error": error,
        "label": "x",
        "timestamp": {"start": stop - 10, "stop": stop},
        "type": kind,
    }


def info(backups, repos):
    return [
        {"name": "other", "backup": [backup(1, "full", 999999)], "repo": [{"key": 1, "status": {"code": 0}}]},
        {
            "name": "lab",
            "backup": backups,
            "repo": [{"key": k, "status": {"code": c, "message": "m"}} for k, c in repos],
        },
    ]


class Repository(unittest.TestCase):
    def test_the_newest_backup_of_each_type(self):
        i = info(
            [
                backup(1, "full", 100),
                backup(1, "diff", 300),
                backup(1, "diff", 200),
                backup(1, "full", 500, error=True),
                backup(2, "full", 150),
            ],
            [(1, 0), (2, 0)],
        )
        # A backup with page checksum errors is whole: counted, and reported.
        self.assertEqual(m.repository(i, "lab", 1), m.Repo(0, 4, 1, {"full": 500, "diff": 300}))
        self.assertEqual(m.repository(i, "lab", 2), m.Repo(0, 1, 0, {"full": 150}))

    def test_a_repository_without_backups_was_read(self):
        r = m.repository(info([], [(2, 2)]), "lab", 2)
        self.assertEqual(r, m.Repo(2))
        self.assertTrue(r.read)

    def test_a_repository_not_read_claims_nothing(self):
        # 99: pgBackRest's "other" (the repository host did not answer);
        # 1: no stanza yet.
        for code in (99, 1):
            r = m.repository(info([backup(2, "full", 100)], [(2, code)]), "lab", 2)
            self.assertEqual(r, m.Repo(code))
            self.assertFalse(r.read)
        # Not listed, no such stanza, not pgBackRest's shape.
        self.assertEqual(m.repository(info([], [(1, 0)]), "lab", 2), m.Repo(-1))
        self.assertEqual(m.repository([], "lab", 1), m.Repo(-1))
        self.assertEqual(m.repository({"x": 1}, "lab", 1), m.Repo(-1))

    def test_malformed_entries_are_skipped(self):
        b = backup(1, "full", 100)
        b["timestamp"] = {"stop": "soon"}
        odd = backup(1, "snapshot", 200)
        got = m.repository(info([b, odd, backup(1, "incr", 50)], [(1, 0)]), "lab", 1)
        self.assertEqual(got, m.Repo(0, 1, 0, {"incr": 50}))


SYSTEMD_OUTPUT = """  Original form: Sun *-*-* 01:00:00
Normalized form: Sun *-*-* 01:00:00
    Next elapse: Sun 2026-12-13 01:00:00 UTC
       From now: 6 days left
       Iter. #2: Sun 2026-12-20 01:00:00 UTC
       From now: 1 week 6 days left
   Iteration #3: Sun 2026-12-27 01:00:00 UTC
       From now: 2 weeks 6 days left
"""


class Schedule(unittest.TestCase):
    def test_systemds_elapses_are_read(self):
        self.assertEqual(m.elapses(SYSTEMD_OUTPUT), [1797123600 + 7 * 86400 * i for i in range(3)])
        self.assertEqual(m.elapses("Failed to parse calendar specification 'x'"), [])

    def test_the_longest_gap_of_all_types_with_grace(self):
        day = 86400
        full = [7 * day * i for i in range(1, 5)]
        diff = [7 * day * w + day * d for w in range(0, 4) for d in range(1, 7)]
        # Sunday's full, Monday to Saturday's differential: a day apart.
        self.assertEqual(m.allowed_age([full, diff]), 2 * day)
        self.assertEqual(m.allowed_age([full]), 2 * 7 * day)

    def test_a_weekend_gap_is_seen_whatever_the_day(self):
        # Hourly from 8 to 18, Monday to Friday (2026-12-07 is a Monday),
        # asked on each day of a week: the weekend's 62 h gap every time.
        hour, day = 3600, 86400
        monday = 1796601600
        weekdays = [monday + w * 7 * day + d * day + h * hour for w in range(12) for d in range(5) for h in range(8, 19)]
        for start in range(7):
            now = monday + start * day
            elapses = [t for t in weekdays if t > now][: m.ITERATIONS]
            self.assertEqual(m.allowed_age([elapses]), 2 * 62 * hour, start)

    def test_nothing_allowed_without_elapses(self):
        self.assertIsNone(m.allowed_age([]))
        # One schedule not read: no bound rather than a wrong one.
        self.assertIsNone(m.allowed_age([[0, 100], []]))

    @unittest.skipUnless(shutil.which("systemd-analyze"), "no systemd-analyze here")
    def test_systemd_analyze_on_this_host(self):
        daily = m.read_elapses("*-*-* 01:00:00")
        self.assertGreaterEqual(len(daily), 10)
        self.assertEqual(m.allowed_age([daily]), 2 * 86400)
        self.assertEqual(m.read_elapses("not a calendar"), [])


class Render(unittest.TestCase):
    SAMPLE = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"\\\n]*"(,[a-z_]+="[^"\\\n]*")*\})? -?\d+$')

    def check_format(self, text):
        for line in text.splitlines():
            if not line.startswith("# "):
                self.assertRegex(line, self.SAMPLE)

    def test_every_repository_and_type(self):
        repos = {"dc1": m.Repo(0, 2, 1, {"full": 100, "diff": 300}), "dc2": m.Repo(99)}
        text = m.render(1000, repos, True, 172800.0)
        self.check_format(text)
        self.assertIn("pgha_backup_info_ok 1\n", text)
        self.assertIn("pgha_backup_info_timestamp_seconds 1000\n", text)
        self.assertIn("pgha_backup_schedule_ok 1\n", text)
        self.assertIn("pgha_backup_allowed_age_seconds 172800\n", text)
        self.assertIn('pgha_backup_repository_ok{repository="dc2"} 0\n', text)
        self.assertIn('pgha_backup_repository_status{repository="dc2"} 99\n', text)
        self.assertIn('pgha_backup_count{repository="dc1"} 2\n', text)
        self.assertIn('pgha_backup_page_errors{repository="dc1"} 1\n', text)
        self.assertNotIn('pgha_backup_count{repository="dc2"}', text)
        self.assertIn('pgha_backup_last_completion_timestamp_seconds{repository="dc1",type="diff"} 300\n', text)

    def test_could_not_tell_names_no_backup(self):
        text = m.render(1000, {"dc1": m.Repo(-1)}, False, None)
        self.check_format(text)
        self.assertIn("pgha_backup_info_ok 0\n", text)
        self.assertIn("pgha_backup_schedule_ok 0\n", text)
        self.assertIn('pgha_backup_repository_status{repository="dc1"} -1\n', text)
        self.assertNotIn("pgha_backup_count{", text)
        self.assertNotIn("allowed_age", text)

    def test_label_values_are_escaped(self):
        self.assertEqual(m.label('a"b\\c'), '"a\\"b\\\\c"')


class Write(unittest.TestCase):
    def test_written_whole_and_readable(self):
        d = tempfile.mkdtemp()
        try:
            path = os.path.join(d, "pgha-backup.prom")
            m.write_whole(path, "a 1\n")
            m.write_whole(path, "a 2\n")
            with open(path) as f:
                self.assertEqual(f.read(), "a 2\n")
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o644)
            self.assertEqual(os.listdir(d), ["pgha-backup.prom"])
        finally:
            shutil.rmtree(d)


class Main(unittest.TestCase):
    def test_a_repository_not_read_is_written_and_reported(self):
        d = tempfile.mkdtemp()
        try:
            settings = os.path.join(d, "s.json")
            out = os.path.join(d, "pgha-backup.prom")
            with open(settings, "w") as f:
                f.write('{"stanza": "lab", "repositories": ["dc1", "dc2"], "schedules": [], "deadline": 75, "output": "%s"}' % out)
            asked = []

            def read_info(stanza, key, deadline):
                asked.append((stanza, key, deadline))
                return info([backup(1, "full", 100)], [(1, 0)]) if key == 1 else None

            saved = (m.SETTINGS, m.read_info)
            m.SETTINGS, m.read_info = settings, read_info
            try:
                self.assertEqual(m.main(), 1)
            finally:
                m.SETTINGS, m.read_info = saved
            # Each repository on its own: dc2's silence hides none of dc1's.
            self.assertEqual(asked, [("lab", 1, 75), ("lab", 2, 75)])
            with open(out) as f:
                text = f.read()
            self.assertIn("pgha_backup_info_ok 1\n", text)
            self.assertIn('pgha_backup_count{repository="dc1"} 1\n', text)
            self.assertIn('pgha_backup_repository_ok{repository="dc2"} 0\n', text)
        finally:
            shutil.rmtree(d)


if __name__ == "__main__":
    unittest.main()
