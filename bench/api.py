"""REST API benchmark: /api/1/integrations and /api/1/metrics of a home with 1,000 synchronizations
while its engine applies a burst, and the burst's throughput with and without a polling client.

Two paired installations as in `bench/pipeline.py` (Acme sends, Globex applies; each engine in its
own `backbone run` process); Globex's home also holds 999 more synchronizations (half RUNNING, half
STOPPED, on a project without changes, rows inserted straight into its tables) and its engine runs
with `--api`. Each round makes N summary changes on Acme twice: once with nobody asking the API,
once with a client in this process that every 100 ms GETs /integrations and then /metrics with a
bearer token. Rounds alternate the order of the two bursts (this machine's other work moves single
runs by +-30%).

    python bench/api.py                # 1,000 synchronizations, bursts of 1,000 changes, 2 rounds
    python bench/api.py --quick        # bursts of 300 changes, 1 round
    python bench/api.py --conditional  # the client sends If-None-Match: 304 while nothing changed

Figures: latency p50/p95/max per endpoint (wall time of each request as the client sees it; target
p95 < 50 ms), throughput = N / (last apply on Globex - first change on Acme) with and without the
client (target: polled within 10% of quiet), and the median of the rounds. A benchmark prints
figures; it never fails on them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import nullcontext, suppress
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.pipeline import (  # noqa: E402
    EngineProcess,
    create_issues,
    load_average,
    make_pair,
    ms,
    pct,
    run_phase,
    wait_applied,
)
from bench.tui_overview import add_synchronizations as add_bench_synchronizations  # noqa: E402
from engine.service.installation import Installation  # noqa: E402

TARGET_P95 = 0.050
TARGET_SHARE = 0.90
POLL_INTERVAL = 0.100
ENDPOINTS = ("/api/1/integrations", "/api/1/metrics")


class ApiEngineProcess(EngineProcess):
    """`backbone --home HOME run --api 127.0.0.1:PORT` in a child process."""

    def __init__(self, home: Path, log: Path, port: int) -> None:
        cmd = [
            sys.executable,
            "-m",
            "backbone_tui.cli",
            "--home",
            str(home),
            "run",
            "--api",
            f"127.0.0.1:{port}",
        ]
        self.log = log
        self._out = log.open("w")
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)


def add_synchronizations(inst: Installation, count: int) -> None:
    """`count` more synchronizations of project BENCH (no changes there: their engine work stays small)."""
    with inst.db.write() as s:
        add_bench_synchronizations(s, inst, count, "BENCH", spread=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Poller:
    """Every 100 ms: GET each endpoint once, one after the other; records each request's wall time."""

    def __init__(self, origin: str, token: str, *, conditional: bool = False) -> None:
        self.conditional = conditional  # send the last ETag back: 304 while nothing changed
        self.etags: dict[str, str] = {}
        self.not_modified = 0
        self.client = httpx.Client(base_url=origin, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        self.latencies: dict[str, list[float]] = {path: [] for path in ENDPOINTS}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            for path in ENDPOINTS:
                began = time.perf_counter()
                headers = (
                    {"If-None-Match": self.etags[path]} if self.conditional and path in self.etags else {}
                )
                response = self.client.get(path, headers=headers)
                self.latencies[path].append(time.perf_counter() - began)
                if response.status_code == 304:
                    self.not_modified += 1
                elif response.status_code != 200:
                    self.failures.append(f"{path}: {response.status_code}")
                elif "etag" in response.headers:
                    self.etags[path] = response.headers["etag"]
            next_tick += POLL_INTERVAL
            self._stop.wait(max(0.0, next_tick - time.monotonic()))

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--syncs", type=int, default=1000, help="synchronizations in Globex's home")
    parser.add_argument("--changes", type=int, default=1000, help="changes per burst")
    parser.add_argument("--issues", type=int, default=200, help="issues created first (the bursts update)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (quiet, polled) bursts")
    parser.add_argument("--quick", action="store_true", help="bursts of 300 changes, one round")
    parser.add_argument(
        "--conditional",
        action="store_true",
        help="the client sends the last ETag back (If-None-Match), as a well-behaved poller does",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each burst")
    args = parser.parse_args(argv)
    if args.quick:
        args.changes, args.rounds = 300, 1
    root = Path(tempfile.mkdtemp(prefix="bench-api-"))
    print(
        f"bench/api.py: {args.syncs} synchronizations on Globex, bursts of {args.changes} changes, "
        f"{args.rounds} round(s); {os.cpu_count()} cores, load average {load_average()}; work folder {root}"
    )
    try:
        run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def run(args: argparse.Namespace, root: Path) -> None:
    demo, setup = make_pair(root / "pair")
    globex = Installation(setup.globex_home)
    try:
        add_synchronizations(globex, args.syncs - 1)
        token = globex.tokens.create("bench")
    finally:
        globex.close()
    port = free_port()
    acme = EngineProcess(setup.acme_home, root / "acme-run.log")
    api_engine = ApiEngineProcess(setup.globex_home, root / "globex-run.log", port)
    setup.engines += [acme, api_engine]
    try:
        acme.wait_ready()
        api_engine.wait_ready()
        origin = f"http://127.0.0.1:{port}"
        listed = httpx.get(f"{origin}/api/1/integrations", headers={"Authorization": f"Bearer {token}"})
        print(
            f"  /integrations         {len(listed.json())} synchronizations listed "
            f"({len(listed.content)} bytes)"
        )
        ids = create_issues(demo.acme.tracker, args.issues)
        wait_applied(setup, args.issues, args.timeout)  # warm-up, not measured
        applied, revision = args.issues, 0
        rates: dict[str, list[float]] = {"quiet": [], "polled": []}
        latencies: dict[str, list[float]] = {path: [] for path in ENDPOINTS}
        for round_number in range(args.rounds):
            order = ("quiet", "polled") if round_number % 2 == 0 else ("polled", "quiet")
            for mode in order:
                poller = Poller(origin, token, conditional=args.conditional) if mode == "polled" else None
                with poller if poller is not None else nullcontext():
                    phase = run_phase(
                        demo,
                        setup,
                        ids,
                        args.changes,
                        rate=0.0,
                        applied_before=applied,
                        first_rev=revision,
                        timeout=args.timeout,
                    )
                applied, revision = applied + args.changes, revision + args.changes
                rate = args.changes / phase.elapsed
                rates[mode].append(rate)
                extra = ""
                if poller is not None:
                    for path in ENDPOINTS:
                        latencies[path] += poller.latencies[path]
                    requests = sum(len(v) for v in poller.latencies.values())
                    extra = (
                        f"; {requests} requests ({poller.not_modified} not modified), "
                        f"{len(poller.failures)} failed"
                    )
                print(
                    f"  round {round_number + 1} {mode:<7}      {rate:8.0f} messages/s "
                    f"({args.changes} in {phase.elapsed:.2f} s){extra}"
                )
        print(f"results (load average {load_average()})")
        for path in ENDPOINTS:
            values = latencies[path]
            p95 = pct(values, 95)
            print(
                f"  GET {path:<20} p50 {ms(pct(values, 50))}  p95 {ms(p95)}  max {ms(max(values))}  "
                f"({len(values)} requests; target p95 < {TARGET_P95 * 1000:.0f} ms: "
                f"{'met' if p95 < TARGET_P95 else 'MISSED'})"
            )
        quiet, polled = statistics.median(rates["quiet"]), statistics.median(rates["polled"])
        share = polled / quiet
        print(
            f"  throughput            quiet {quiet:.0f} messages/s, polled every "
            f"{POLL_INTERVAL * 1000:.0f} ms "
            f"{polled:.0f} messages/s: {share:.0%} of quiet (target >= {TARGET_SHARE:.0%}: "
            f"{'met' if share >= TARGET_SHARE else 'MISSED'})"
        )
    finally:
        setup.stop()
        demo.acme.close()


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        sys.exit(main())
