"""Idle footprint of the embedded default: every process of an empty ``runhub`` hub, its RSS and PSS.

Starts a real ``runhub`` (embedded Valkey, the ASGI server, django-q2, the background loops) on a fresh SQLite
data directory, lets it idle --idle seconds, then reads /proc/<pid>/smaps_rollup of ``runhub`` and every process
below it, each counted under the child of ``runhub`` it belongs to. PSS shares each shared page among the processes
that map it, so the PSS total is what the hub costs the machine; RSS counts shared pages once per process.

    .venv/bin/python bench/footprint.py [--idle 60] [--server uvicorn]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

import django  # noqa: E402

django.setup()

from bench.bridge import machine  # noqa: E402
from tests.support import running_hub  # noqa: E402

MIB = 1024 * 1024


def memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of ``pid`` in bytes, from /proc/<pid>/smaps_rollup."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            parts = line.split()
            if len(parts) >= 2 and parts[0] in ("Rss:", "Pss:"):
                values[parts[0]] = int(parts[1]) * 1024
    return values["Rss:"], values["Pss:"]


def process_tree(root: int) -> dict[int, int]:
    """pid → parent pid of ``root`` and every live process below it."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = {root: parents.get(root, 0)}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent:
                found[pid] = ppid
                frontier.append(pid)
    return found


def roles(root: int, log: str) -> dict[int, str]:
    """pid → the name ``runhub`` started it under (its log's "started X (pid N)" lines), or that of the child it
    descends from; ``runhub`` for ``root`` itself. runhub forks its children, so their command lines are all its."""
    named = {int(pid): name for name, pid in re.findall(r"(?:started|restarted) (\S+) \(pid (\d+)", log)}
    named[root] = "runhub"
    tree = process_tree(root)
    found = {}
    for pid in tree:
        ancestor = pid
        while ancestor not in named and ancestor in tree:
            ancestor = tree[ancestor]
        found[pid] = named.get(ancestor, "other")
    return found


def measure(root: int, log: str, per_process: bool = False) -> dict[str, list[tuple[int, int]]]:
    by_role: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for pid, name in sorted(roles(root, log).items()):
        try:
            rss, pss = memory(pid)
        except OSError:  # gone meanwhile
            continue
        by_role[name].append((rss, pss))
        if per_process:
            print(f"  pid {pid:7} {name:12} RSS {rss / MIB:6.1f} MiB  PSS {pss / MIB:6.1f} MiB")
    return by_role


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds to idle before measuring")
    parser.add_argument("--server", default="uvicorn")
    parser.add_argument("--per-process", action="store_true", help="a line per process too")
    parser.add_argument("--print-log", action="store_true", help="print runhub's output (start-up and idle) too")
    args = parser.parse_args()
    print(f"command: {' '.join(sys.argv)}\nmachine: {machine()}")
    with running_hub(runhub=True, server=args.server, extra_env={"REDIS_URL": ""}) as hub:
        time.sleep(args.idle)
        log = hub.log()
        by_role = measure(hub.process.pid, log, args.per_process)
    total = [pair for pairs in by_role.values() for pair in pairs]
    print(f"\nidle {args.idle:.0f} s, {args.server}")
    for name, pairs in sorted(by_role.items()):
        rss, pss = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
        print(f"  {name:12} {len(pairs):2} processes  RSS {rss / MIB:7.1f} MiB  PSS {pss / MIB:7.1f} MiB")
    rss, pss = sum(p[0] for p in total), sum(p[1] for p in total)
    print(f"  {'total':12} {len(total):2} processes  RSS {rss / MIB:7.1f} MiB  PSS {pss / MIB:7.1f} MiB")
    print(f"  log lines   {len([line for line in log.splitlines() if line.strip()])} (start-up and idle)")
    if args.print_log:
        print(log)


if __name__ == "__main__":
    main()
