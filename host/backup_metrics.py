#!/usr/bin/python3
"""pgha's backup metrics: what the cluster's pgBackRest repositories hold,
for Prometheus through the node exporter's textfile collector.

Run by pgha-backup-metrics.timer every few minutes on every database host
(each one reads every cloud's repository, so a lost data center leaves
the other clouds' hosts reporting). It asks `pgbackrest info` (as postgres,
with a deadline), asks systemd how far apart the scheduled backups fall
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
INFO_DEADLINE = 120
# The newest backup may be this many times the longest interval between two
# scheduled backups old: the backup's own time, and a late timer.
GRACE = 1.5
# Elapses asked of each schedule: enough for a weekly pattern of a daily one.
ITERATIONS = 20
# systemd 252 (Debian 12) says "Iter. #2", 257 (Debian 13) "Iteration #2".
ELAPSE = re.compile(r"^(?:Next elapse|Iter\S* #\d+): \S+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC$")


def newest(info, stanza, repositories):
    """{cloud: (answered, backups, {type: newest stop})} from `pgbackrest
    --output=json info`, for each repository (repoN is the Nth cloud's).
    A repository answers when pgBackRest read it (with or without backups)."""
    stanzas = [s for s in info if isinstance(s, dict) and s.get("name") == stanza]
    s = stanzas[0] if stanzas else {}
    answered = {}
    for r in s.get("repo") or []:
        # 0: ok; 2: no valid backup yet. Anything else: not read.
        answered[r.get("key")] = (r.get("status") or {}).get("code") in (0, 2)
    out = {}
    for key, cloud in enumerate(repositories, start=1):
        stops = {}
        count = 0
        for b in s.get("backup") or []:
            if (b.get("database") or {}).get("repo-key") != key or b.get("error"):
                continue
            stop = (b.get("timestamp") or {}).get("stop")
            kind = b.get("type")
            if not isinstance(stop, int) or kind not in ("full", "diff", "incr"):
                continue
            count += 1
            stops[kind] = max(stops.get(kind, 0), stop)
        ok = answered.get(key, False)
        out[cloud] = (ok, count if ok else 0, stops if ok else {})
    return out


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
    any type, over the span every schedule's elapses cover. None: nothing
    is scheduled, or the elapses were not read."""
    lists = [sorted(s) for s in schedules if len(s) >= 2]
    if not lists or len(lists) != len(schedules):
        return None
    horizon = min(s[-1] for s in lists)
    times = sorted({t for s in lists for t in s if t <= horizon})
    if len(times) < 2:
        return None
    return GRACE * max(b - a for a, b in zip(times, times[1:]))


def label(value):
    """A label value in Prometheus's text format."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render(now, repos, allowed):
    """The textfile: `repos` is newest()'s answer, or None when pgBackRest
    did not answer."""
    lines = [
        "# HELP pgha_backup_info_ok Whether pgBackRest's info answered this host's last try.",
        "# TYPE pgha_backup_info_ok gauge",
        "pgha_backup_info_ok %d" % (repos is not None),
        "# HELP pgha_backup_info_timestamp_seconds When this host last tried.",
        "# TYPE pgha_backup_info_timestamp_seconds gauge",
        "pgha_backup_info_timestamp_seconds %d" % now,
    ]
    if allowed is not None:
        lines += [
            "# HELP pgha_backup_allowed_age_seconds How old the newest backup may be under backup.schedule.",
            "# TYPE pgha_backup_allowed_age_seconds gauge",
            "pgha_backup_allowed_age_seconds %d" % allowed,
        ]
    if repos is not None:
        lines += [
            "# HELP pgha_backup_repository_ok Whether pgBackRest read the repository.",
            "# TYPE pgha_backup_repository_ok gauge",
        ]
        lines += ["pgha_backup_repository_ok{repository=%s} %d" % (label(c), ok) for c, (ok, _, _) in repos.items()]
        lines += [
            "# HELP pgha_backup_count Backups in the repository that completed without error.",
            "# TYPE pgha_backup_count gauge",
        ]
        lines += ["pgha_backup_count{repository=%s} %d" % (label(c), n) for c, (ok, n, _) in repos.items() if ok]
        lines += [
            "# HELP pgha_backup_last_completion_timestamp_seconds When the newest backup of the type completed.",
            "# TYPE pgha_backup_last_completion_timestamp_seconds gauge",
        ]
        for c, (_, _, stops) in repos.items():
            for kind in sorted(stops):
                lines.append(
                    "pgha_backup_last_completion_timestamp_seconds{repository=%s,type=%s} %d"
                    % (label(c), label(kind), stops[kind])
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


def read_info(stanza):
    """pgBackRest's info as JSON, or None (with why on stderr)."""
    cmd = ["runuser", "-u", "postgres", "--", "pgbackrest", "--stanza=" + stanza, "--output=json", "info"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=INFO_DEADLINE)
    except (OSError, subprocess.TimeoutExpired) as e:
        print("pgbackrest info: %s" % e, file=sys.stderr)
        return None
    if p.returncode != 0:
        print("pgbackrest info exited %d: %s" % (p.returncode, " ".join(p.stderr.split())[:500]), file=sys.stderr)
        return None
    try:
        info = json.loads(p.stdout)
    except ValueError as e:
        print("pgbackrest info is not JSON: %s" % e, file=sys.stderr)
        return None
    return info if isinstance(info, list) else None


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
    info = read_info(s["stanza"])
    repos = None if info is None else newest(info, s["stanza"], s["repositories"])
    allowed = allowed_age([read_elapses(e) for e in s["schedules"]]) if s["schedules"] else None
    write_whole(s["output"], render(int(time.time()), repos, allowed))
    # A failed read is written, then reported: the timer's unit shows it.
    return 0 if info is not None else 1


if __name__ == "__main__":
    sys.exit(main())
