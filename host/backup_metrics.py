#!/usr/bin/python3
"""pgha's backup metrics: what the cluster's pgBackRest repositories hold,
for Prometheus through the node exporter's textfile collector.

Run by pgha-backup-metrics.timer every few minutes on every database host
(each one reads every cloud's repository, so a lost data center leaves
the other clouds' hosts reporting). It asks `pgbackrest info` for each
repository on its own (as postgres, each with a deadline past pgBackRest's
io-timeout: one repository that does not answer hides no other), asks
systemd how far apart the scheduled backups fall
(`systemd-analyze calendar`, the timers' own parser), and writes the file
whole (a temporary file renamed over it). When pgBackRest does not answer
the file says so (pgha_backup_info_ok 0) and names no backup: "could not
tell" is never read as "nothing is old".

Settings in /etc/pgha/backup-metrics.json (written by pgha deploy).
Installed as it is by pgha; `python3 -m unittest test_backup_metrics`
tests it.
"""

import calendar
import json
import os
import re
import subprocess
import sys
import tempfile
import time

SETTINGS = "/etc/pgha/backup-metrics.json"
# The newest backup may be this many times the longest interval between two
# scheduled backups old: a backup may take as long as that interval.
GRACE = 2
# Elapses asked of each schedule, and the span they are compared over:
# five weeks show any weekly pattern of the busiest schedule.
ITERATIONS = 1000
WINDOW = 35 * 86400
# systemd 252 (Debian 12) says "Iter. #2", 257 (Debian 13) "Iteration #2".
ELAPSE = re.compile(r"^(?:Next elapse|Iter\S* #\d+): \S+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC$")


class Repo:
    """What one repository holds, as pgBackRest's info said."""

    def __init__(self, status, count=0, page_errors=0, stops=None):
        # pgBackRest's status code (0: ok, 1: no stanza yet, 2: no backup
        # yet, 99: not read); -1 when info gave no answer.
        self.status = status
        self.count = count
        self.page_errors = page_errors
        self.stops = stops or {}

    @property
    def read(self):
        return self.status in (0, 2)

    def __eq__(self, other):
        return vars(self) == vars(other)

    def __repr__(self):
        return "Repo(%r)" % vars(self)


def repository(info, stanza, key):
    """Repository `key` (repoN) in `pgbackrest --output=json info`'s answer."""
    stanzas = [s for s in info if isinstance(s, dict) and s.get("name") == stanza] if isinstance(info, list) else []
    s = stanzas[0] if stanzas else {}
    codes = [(r.get("status") or {}).get("code") for r in s.get("repo") or [] if r.get("key") == key]
    status = codes[0] if codes and isinstance(codes[0], int) else -1
    if status not in (0, 2):
        return Repo(status)
    repo = Repo(status)
    for b in s.get("backup") or []:
        if (b.get("database") or {}).get("repo-key") != key:
            continue
        stop = (b.get("timestamp") or {}).get("stop")
        kind = b.get("type")
        if not isinstance(stop, int) or kind not in ("full", "diff", "incr"):
            continue
        # `error`: pgBackRest found page checksum errors; the backup is
        # whole and restorable, and counted, with its errors reported.
        repo.count += 1
        repo.page_errors += bool(b.get("error"))
        repo.stops[kind] = max(repo.stops.get(kind, 0), stop)
    return repo


def elapses(text):
    """The Unix times `TZ=UTC systemd-analyze calendar --iterations=N` printed."""
    out = []
    for line in text.splitlines():
        m = ELAPSE.search(line.strip())
        if m:
            out.append(calendar.timegm(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")))
    return out


def allowed_age(schedules):
    """Seconds the newest backup may be old under these schedules (each a
    list of elapses): GRACE times the longest gap between two backups of
    any type, over WINDOW or the span every schedule's elapses cover. None:
    nothing is scheduled, or the elapses were not read."""
    lists = [sorted(s) for s in schedules if len(s) >= 2]
    if not lists or len(lists) != len(schedules):
        return None
    horizon = min(min(s[-1] for s in lists), min(s[0] for s in lists) + WINDOW)
    times = sorted({t for s in lists for t in s if t <= horizon})
    if len(times) < 2:
        return None
    return GRACE * max(b - a for a, b in zip(times, times[1:]))


def label(value):
    """A label value in Prometheus's text format."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render(now, repos, schedule_ok, allowed):
    """The textfile: `repos` is {cloud: Repo}, `schedule_ok` whether every
    schedule was read, `allowed` allowed_age()'s answer."""
    answered = any(r.status != -1 for r in repos.values())
    lines = [
        "# HELP pgha_backup_info_ok Whether pgBackRest's info answered this host's last try, for any repository.",
        "# TYPE pgha_backup_info_ok gauge",
        "pgha_backup_info_ok %d" % answered,
        "# HELP pgha_backup_info_timestamp_seconds When this host last tried.",
        "# TYPE pgha_backup_info_timestamp_seconds gauge",
        "pgha_backup_info_timestamp_seconds %d" % now,
        "# HELP pgha_backup_schedule_ok Whether systemd read every backup.schedule expression.",
        "# TYPE pgha_backup_schedule_ok gauge",
        "pgha_backup_schedule_ok %d" % schedule_ok,
    ]
    if allowed is not None:
        lines += [
            "# HELP pgha_backup_allowed_age_seconds How old the newest backup may be under backup.schedule.",
            "# TYPE pgha_backup_allowed_age_seconds gauge",
            "pgha_backup_allowed_age_seconds %d" % allowed,
        ]
    read = {c: r for c, r in repos.items() if r.read}

    def gauge(name, what, values):
        lines.extend(["# HELP %s %s" % (name, what), "# TYPE %s gauge" % name])
        lines.extend("%s{%s} %d" % (name, labels, v) for labels, v in values)

    def by_repo(items):
        return [("repository=%s" % label(c), v) for c, v in items]

    gauge(
        "pgha_backup_repository_ok",
        "Whether pgBackRest read the repository (with or without backups).",
        by_repo((c, r.read) for c, r in repos.items()),
    )
    gauge(
        "pgha_backup_repository_status",
        "pgBackRest's status code for the repository (0 ok, 1 no stanza, 2 no backup, 99 other; -1 no answer).",
        by_repo((c, r.status) for c, r in repos.items()),
    )
    gauge("pgha_backup_count", "Completed backups in the repository.", by_repo((c, r.count) for c, r in read.items()))
    gauge(
        "pgha_backup_page_errors",
        "Backups in the repository in which pgBackRest found page checksum errors.",
        by_repo((c, r.page_errors) for c, r in read.items()),
    )
    gauge(
        "pgha_backup_last_completion_timestamp_seconds",
        "When the newest backup of the type completed.",
        [
            ("repository=%s,type=%s" % (label(c), label(kind)), r.stops[kind])
            for c, r in read.items()
            for kind in sorted(r.stops)
        ],
    )
    return "\n".join(lines) + "\n"


def write_whole(path, text):
    """Writes `text` to `path` through a temporary file renamed over it:
    the exporter never reads half a file."""
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".pgha-backup.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_info(stanza, key, deadline):
    """pgBackRest's info on repository `key` as JSON, or None (with why on stderr)."""
    cmd = ["runuser", "-u", "postgres", "--", "pgbackrest", "--stanza=" + stanza, "--repo=%d" % key]
    cmd += ["--output=json", "info"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=deadline)
    except (OSError, subprocess.TimeoutExpired) as e:
        print("pgbackrest info, repo%d: %s" % (key, e), file=sys.stderr)
        return None
    if p.returncode != 0:
        why = " ".join(p.stderr.split())[:500]
        print("pgbackrest info, repo%d: exit %d: %s" % (key, p.returncode, why), file=sys.stderr)
        return None
    try:
        return json.loads(p.stdout)
    except ValueError as e:
        print("pgbackrest info, repo%d: not JSON: %s" % (key, e), file=sys.stderr)
        return None


def read_elapses(expression):
    """The next elapses of one OnCalendar= expression, as systemd computes them."""
    cmd = ["systemd-analyze", "calendar", "--iterations=%d" % ITERATIONS, expression]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=dict(os.environ, TZ="UTC"))
    except (OSError, subprocess.TimeoutExpired) as e:
        print("systemd-analyze: %s" % e, file=sys.stderr)
        return []
    return elapses(p.stdout) if p.returncode == 0 else []


def main():
    with open(SETTINGS) as f:
        s = json.load(f)
    repos = {}
    for key, cloud in enumerate(s["repositories"], start=1):
        info = read_info(s["stanza"], key, s["deadline"])
        repos[cloud] = Repo(-1) if info is None else repository(info, s["stanza"], key)
    elapses = [read_elapses(e) for e in s["schedules"]]
    schedule_ok = all(len(e) >= 2 for e in elapses)
    allowed = allowed_age(elapses) if s["schedules"] else None
    write_whole(s["output"], render(int(time.time()), repos, schedule_ok, allowed))
    # What was not read is written, then reported: the timer's unit shows it.
    return 0 if schedule_ok and all(r.read for r in repos.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
