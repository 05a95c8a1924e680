"""Idle benchmark: what `backbone run` costs when it has nothing to do, by number of synchronizations.

For each N a home is built the way `bench/tui_overview.py` builds one (N primary synchronizations
of ACME on the file protocol over one shared exchange folder, half RUNNING, half STOPPED, no
messages), then `backbone --home HOME run` is started as a child process and measured:

- start-up: from spawning the process to its "engine running" line (interpreter and imports,
  the database check, the reconcile, starting the workers). The home is reconciled once as it is
  built (a real one got its folders from `sync create`), so a start after a clean stop finds
  the folders sealed and does not walk them; `--crash` then kills the engine with SIGKILL and
  measures the start after it, which walks every folder (not judged: a crash is rare);
- idle CPU: CPU seconds (user + system) of the child per second of wall time over `--duration`
  seconds after a short settling time (the first safety scans included);
- RSS: the child's resident set at the end (VmRSS) and its peak (VmHWM).

    python bench/idle.py                       # N = 100, 1,000, 10,000; 20 s each
    python bench/idle.py --crash               # and the start after a kill -9
    python bench/idle.py --counts 1000 --duration 60 --repeat 3

Targets (issue #15): under 1% of a core and under 300 MB at 1,000 and at 10,000; start-up at
10,000 under 2 s. `--check` exits 1 when one is missed. Other work on this 2-core machine moves
the figures: the load average is printed, repeat when in doubt.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.tui_overview import add_synchronizations  # noqa: E402
from engine.runtime.engine import Engine  # noqa: E402
from engine.service.installation import Installation  # noqa: E402

TARGET_CPU = 0.01  # CPU seconds per wall second (1% of a core), at 1,000 and 10,000
TARGET_RSS_MB = 300.0
TARGET_STARTUP = 2.0  # seconds, at 10,000
SETTLE = 3.0  # seconds after start-up before CPU is measured


@dataclass
class Figures:
    count: int
    startup: float
    cpu_per_second: float
    rss_mb: float
    peak_mb: float


def build_home(home: Path, count: int) -> float:
    """A home with `count` synchronizations (half RUNNING); seconds it took."""
    began = time.perf_counter()
    inst = Installation(home)
    with inst.db.write() as s:
        add_synchronizations(s, inst, count, "ACME")
    Engine(inst).reconcile()  # the first start's walk: every side's folders made, then sealed
    inst.close()
    return time.perf_counter() - began


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(home: Path, count: int, duration: float, log: Path, *, kill: bool = False) -> Figures:
    """Start `backbone run` on `home`, let it idle `duration` seconds, stop it (with SIGKILL
    when `kill`: the next start then finds a crashed engine and walks every folder)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "backbone_tui.cli", "--home", str(home), "run"]
    with log.open("w") as out:
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        try:
            while "engine running" not in log.read_text():
                if proc.poll() is not None:
                    raise SystemExit(f"engine exited early: {log.read_text()[-2000:]}")
                if time.perf_counter() - began > 300:
                    raise SystemExit(f"engine not ready after 300 s: {log.read_text()[-2000:]}")
                time.sleep(0.005)
            startup = time.perf_counter() - began
            time.sleep(SETTLE)
            cpu0, wall0 = proc_cpu(proc.pid), time.perf_counter()
            time.sleep(duration)
            cpu1, wall1 = proc_cpu(proc.pid), time.perf_counter()
            rss, peak = proc_mb(proc.pid, "VmRSS"), proc_mb(proc.pid, "VmHWM")
            if proc.poll() is not None:
                raise SystemExit(f"engine exited while idle: {log.read_text()[-2000:]}")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return Figures(count, startup, (cpu1 - cpu0) / (wall1 - wall0), rss, peak)


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--counts", type=int, nargs="+", default=[100, 1_000, 10_000], help="numbers of synchronizations"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of idle time measured")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the engine per home")
    parser.add_argument("--dir", type=Path, help="work folder (default: a temporary one, deleted)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--crash",
        action="store_true",
        help="then kill the engine (SIGKILL) and measure the next start, which walks every folder",
    )
    args = parser.parse_args(argv)
    root = args.dir.absolute() if args.dir else Path(tempfile.mkdtemp(prefix="bench-idle-"))
    root.mkdir(parents=True, exist_ok=True)
    print(
        f"bench/idle.py: `backbone run` with nothing to do; {os.cpu_count()} cores, load average "
        f"{load_average()} (other work on the machine makes figures noisy); work folder {root}"
    )
    print(f"  {'syncs':>6}  {'run':>5}  {'start-up':>9}  {'CPU/s':>8}  {'RSS':>7}  {'peak':>7}  load")
    missed = 0
    try:
        for count in args.counts:
            home = root / f"home-{count}"
            built = build_home(home, count)
            print(f"  {count:>6}  home built and reconciled in {built:.1f} s ({count // 2} RUNNING)")
            runs = [f"{run + 1}" for run in range(args.repeat)]
            if args.crash:
                runs += ["kill", "after"]
            for run, label in enumerate(runs):
                log = root / f"run-{count}-{run}.log"
                f = measure(home, count, args.duration, log, kill=label == "kill")
                if label == "kill":
                    continue  # the start after it is the figure
                flags = []
                if count >= 1_000 and f.cpu_per_second > TARGET_CPU:
                    flags.append("CPU")
                if count >= 1_000 and f.rss_mb > TARGET_RSS_MB:
                    flags.append("RSS")
                if count >= 10_000 and f.startup > TARGET_STARTUP and label != "after":
                    flags.append("start-up")
                missed += bool(flags)
                print(
                    f"  {count:>6}  {label:>5}  {f.startup:7.2f} s  {f.cpu_per_second:8.2%}  "
                    f"{f.rss_mb:4.0f} MB  {f.peak_mb:4.0f} MB  {load_average()}"
                    f"{'  MISSED: ' + ', '.join(flags) if flags else ''}"
                )
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"targets: CPU < {TARGET_CPU:.0%} of a core and RSS < {TARGET_RSS_MB:.0f} MB at 1,000 and "
        f"10,000; start-up < {TARGET_STARTUP:.0f} s at 10,000"
    )
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
