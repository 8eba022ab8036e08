"""Bridge round-trip benchmark: the hub as it runs for real against a minimal relay written on `websockets`.

B backends (members with tokens, registering with their token as ``secret``) echo every chat with a reply;
U users (members with tokens, given at the handshake as ``Authorization: Bearer``) run a closed loop (send a
chat, wait for its reply). Cases, all started up front and taking turns for each U, so that a burst of load
from elsewhere on the shared machine hits all of them:

  relay            a minimal bridge on `websockets` without compression: the baseline of every ratio
  relay-deflate    the same with permessage-deflate accepted (optional)
  relay-2proc      two such relay processes sharing one Redis, backends on one and users on the other: a chat
                   for a backend on the other process is one PUBLISH, its reply another (``foundation.redis_wire``,
                   replies off) — the least a bridge spread over processes does (optional; 2proc's floor)
  embedded/SERVER  ``manage.py runhub --server SERVER`` as ``make run`` starts it: embedded Valkey, the ASGI
                   server, django-q2, retry_queue, SQLite; users and backends on the one server process
  2proc/SERVER     two server processes (as runhub starts them) sharing the SQLite database and one Redis,
                   backends on one and users on the other: every chat and reply crosses processes
  1proc/SERVER     one such server process with that Redis (optional; what 2proc adds over it)

Prints rt/s, p50/p99 latency, round trips per CPU-second of the server process(es) (the steadiest figure on a
2-core machine where the load generator needs about one core), then each case's ratios to the relay and the
verdict against the targets: embedded ≥ 0.9x the relay's rt/s, p99 ≤ 1.5x; 2proc ≥ 0.5x, p99 ≤ 2x. With
relay-2proc in the run, the 2proc cases are also given as ratios to it (what the hub adds over the floor).

    .venv/bin/python bench/bridge.py [--seconds 5] [--warmup 1] [--users 16,64] [--backends 4]
                                     [--only relay,embedded,2proc] [--servers uvicorn] [--redis-url URL]
                                     [--repeat 1] [--idle 0]

--servers uvicorn:WS runs uvicorn with another ``--ws`` protocol (``uvicorn:websockets-sansio``, uvicorn's stock
one, or ``module:Class``) through ``bench/runhub_ws.py``, to compare protocols in one run (``bench/idle.py`` too).
Without --redis-url, 2proc/1proc/relay-2proc get a throwaway Valkey (the binary ``runhub`` embeds) on a free port.
--idle N also measures N idle sockets on every case; the 10,000-idle-sockets figure is ``bench/idle.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bridge_parts import (
    Hub,
    embedded_hub,
    machine,
    processes_hub,
    raise_file_limit,
    relay_hub,
    relay_processes_hub,
    run_load,
    start_valkey,
)
from bench.idle import idle_cost

# case prefix → (rt/s ratio at least, p99 ratio at most)
TARGETS = {"embedded": (0.9, 1.5), "2proc": (0.5, 2.0)}


def start_case(case: str, tmp: Path, args, redis_url: str | None, users: int) -> Hub:
    if case in ("relay", "relay-deflate"):
        return relay_hub(case == "relay-deflate", args.backends)
    if case == "relay-2proc":
        return relay_processes_hub(redis_url, args.backends)
    kind, server = case.split("/")
    data_dir = tmp / case.replace("/", "-")
    data_dir.mkdir()
    if kind == "embedded":
        return embedded_hub(data_dir, server, args.backends, users)
    count = {"2proc": 2, "1proc": 1}[kind]
    return processes_hub(data_dir, server, redis_url, count, args.backends, users)


def verdict(case: str, rt_ratio: float, p99_ratio: float) -> str:
    target = TARGETS.get(case.split("/")[0])
    if target is None:
        return ""
    ok = rt_ratio >= target[0] and p99_ratio <= target[1]
    return f"   target >= {target[0]}x, p99 <= {target[1]}x: {'met' if ok else 'NOT met'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--users", default="16,64")
    parser.add_argument("--backends", type=int, default=4)
    parser.add_argument("--only", default="relay,embedded,2proc")
    parser.add_argument(
        "--servers",
        default="uvicorn",
        help="ASGI servers to run each hub case under; uvicorn:WS with another --ws protocol (websockets-sansio)",
    )
    parser.add_argument("--redis-url", help="the Redis 2proc/1proc share (default: a throwaway Valkey)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds over every case; medians are reported")
    parser.add_argument("--idle", type=int, default=0, help="also measure this many idle sockets on each case")
    args = parser.parse_args()

    raise_file_limit(max(4096, args.idle + 2048))
    users = [int(u) for u in args.users.split(",")]
    cases = []
    for name in filter(None, args.only.split(",")):
        cases += [name] if name.startswith("relay") else [f"{name}/{server}" for server in args.servers.split(",")]
    print(f"bridge benchmark: B={args.backends}, U={users}, {args.warmup:g} s warm-up + {args.seconds:g} s each")
    print(f"command: {sys.executable} {' '.join(sys.argv)}")
    print(f"machine: {machine(args.servers)}")
    runs: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as tmp, contextlib.ExitStack() as stack:
        redis_url = args.redis_url
        if redis_url is None and any(c.split("/")[0] in ("2proc", "1proc", "relay-2proc") for c in cases):
            redis_url, valkey = start_valkey()
            stack.callback(valkey.stop)
        hubs: dict[str, Hub] = {}
        for case in cases:
            hubs[case] = start_case(case, Path(tmp), args, redis_url, max(users))
            stack.callback(hubs[case].stop)
        for _ in range(args.repeat):
            for u in users:
                for case, hub in hubs.items():
                    result = asyncio.run(run_load(hub, u, args.warmup, args.seconds))
                    runs.setdefault((case, u), []).append(result)
                    print(
                        f"{case:>18}  U={u:<3} {result['rt_s']:8.0f} rt/s  p50 {result['p50']:6.1f} ms"
                        f"  p99 {result['p99']:6.1f} ms  {result['rt_per_cpu_s']:7.0f} rt/server-CPU-s",
                        flush=True,
                    )
        for case, hub in hubs.items() if args.idle else ():
            before, after, _ = asyncio.run(idle_cost(hub, args.idle))
            per_socket = (after - before) * 1024 / args.idle
            print(f"{case:>18}  {args.idle} idle sockets: +{after - before:.1f} MiB, {per_socket:.1f} KiB each")

    if "relay" not in cases:
        return
    rounds = f"medians over {args.repeat} rounds (each ratio taken within its round); " if args.repeat > 1 else ""
    print_ratios(runs, users, [c for c in cases if c != "relay"], "relay", f"\n{rounds}ratios to the relay:")
    if "relay-2proc" in cases:
        twos = [c for c in cases if c.startswith("2proc/")]
        print_ratios(runs, users, twos, "relay-2proc", "\nratios to the two-process relay (no target):", judge=False)


def print_ratios(runs: dict, users: list[int], cases: list[str], baseline: str, title: str, judge=True) -> None:
    """Each case's medians next to ``baseline``'s, with the ratios taken within each round."""
    print(title)
    print(
        f"{'case':>18}  {'U':<5} {'hub rt/s':>9} {'base rt/s':>10} {'ratio':>6}  {'p99 hub/base ms':>17} {'ratio':>6}"
        f"  {'per CPU-s':>9}"
    )
    for case in cases:
        for u in users:
            hubs_, bases = runs[(case, u)], runs[(baseline, u)]
            hub = {k: statistics.median(r[k] for r in hubs_) for k in hubs_[0]}
            base = {k: statistics.median(r[k] for r in bases) for k in bases[0]}
            rt_ratio = statistics.median(h["rt_s"] / b["rt_s"] for h, b in zip(hubs_, bases, strict=True))
            p99_ratio = statistics.median(h["p99"] / b["p99"] for h, b in zip(hubs_, bases, strict=True))
            cpu_ratio = statistics.median(
                h["rt_per_cpu_s"] / b["rt_per_cpu_s"] for h, b in zip(hubs_, bases, strict=True)
            )
            print(
                f"{case:>18}  U={u:<3} {hub['rt_s']:9.0f} {base['rt_s']:10.0f} {rt_ratio:5.2f}x"
                f"  {hub['p99']:8.1f} / {base['p99']:5.1f} {p99_ratio:5.2f}x  {cpu_ratio:8.2f}x"
                f"{verdict(case, rt_ratio, p99_ratio) if judge else ''}"
            )


if __name__ == "__main__":
    main()
