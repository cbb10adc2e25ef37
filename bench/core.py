"""What every benchmark shares: the result it writes (JSON beside the others, one file per
benchmark), percentiles, the machine it ran on, resident memory, and the table printed at the end.

A result always carries its floor (the same work done the plainest way on the same machine, in the
same run), the ratio between the two, the target and whether it was met, so a figure measured while
other work shares the two cores still says something.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"
RESULTS_MD = Path(__file__).parent / "RESULTS.md"


@dataclass(frozen=True)
class Mode:
    """How big a run is: ``full`` (the sizes the issue asks for), ``quick`` (a smoke run of each
    benchmark in about a minute) or ``dry`` (the smallest run that still goes through every step)."""

    name: str

    @property
    def quick(self) -> bool:
        return self.name != "full"

    def pick(self, full: Any, quick: Any, dry: Any) -> Any:
        return {"full": full, "quick": quick, "dry": dry}[self.name]


FULL, QUICK, DRY = Mode("full"), Mode("quick"), Mode("dry")


@dataclass
class Result:
    name: str
    title: str
    mode: str
    sizes: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    floor: dict[str, Any] = field(default_factory=dict)
    ratio: float | None = None
    ratio_means: str = ""
    target: str = ""
    met: bool | None = None
    status: str = "ok"  # "ok", "blocked: <what>", "error: <what>"
    headline: str = ""  # one line for the table: the figure that the target speaks of
    floor_headline: str = ""
    notes: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    date: str = ""
    duration_s: float = 0.0


# -- numbers ---------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def latency_summary(seconds: Sequence[float]) -> dict[str, Any]:
    """Count, p50, p95, p99 and max of latencies given in seconds, in milliseconds."""
    return {
        "count": len(seconds),
        "p50_ms": ms(percentile(seconds, 50)),
        "p95_ms": ms(percentile(seconds, 95)),
        "p99_ms": ms(percentile(seconds, 99)),
        "max_ms": ms(max(seconds)) if seconds else None,
    }


def safe_ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


# -- memory -----------------------------------------------------------------------------------------


def rss_mib(pid: int | None = None) -> float | None:
    """Resident set of a process now (VmRSS from /proc; psutil is not a dependency)."""
    path = Path(f"/proc/{pid or 'self'}/status")
    try:
        for line in path.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    if pid is None:  # no /proc: the peak is all resource offers
        return peak_rss_mib()
    return None


def cpu_seconds(pid: int | None = None) -> tuple[float, float]:
    """User and system CPU seconds a process has used so far (from /proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return (0.0, 0.0)
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def peak_rss_mib() -> float:
    """This process's peak resident set (ru_maxrss, KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# -- the machine ------------------------------------------------------------------------------------


def machine(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        with open("/proc/meminfo") as meminfo:
            total_kib = int(meminfo.readline().split()[1])
        memory_gib = round(total_kib / 1024 / 1024, 1)
    except OSError:
        memory_gib = None
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    info.update(extra or {})
    return info


# -- output -----------------------------------------------------------------------------------------


def write_result(result: Result, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result.name}.json"
    data = asdict(result)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    return path


def load_results(directory: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return found


def _met(value: bool | None, status: str) -> str:
    if status != "ok":
        return status
    return {True: "met", False: "**missed**", None: "n/a"}[value]


def summary_table(results: Iterable[dict[str, Any]]) -> list[str]:
    lines = [
        "| benchmark | mode | figure | floor | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = "" if r.get("ratio") is None else f"{r['ratio']:g}"
        lines.append(
            f"| {r['name']} | {r['mode']} | {r.get('headline', '')} | {r.get('floor_headline', '')} | {ratio} "
            f"| {r.get('target', '')} | {_met(r.get('met'), r.get('status', 'ok'))} |"
        )
    return lines


ORDER = ["throughput", "alerts", "directory", "lists", "mail", "retention", "memory", "chaos"]


def write_results_md(directory: Path, target: Path) -> None:
    """RESULTS.md from every JSON result in ``directory``: the table, then each benchmark's figures."""
    results = sorted(load_results(directory), key=lambda r: ORDER.index(r["name"]) if r["name"] in ORDER else 99)
    out = [
        "# Benchmark results",
        "",
        "Generated by `python -m bench` from `bench/results/*.json`; do not edit by hand. "
        "Each figure sits next to its floor, measured in the same run on the same machine "
        "(see [README.md](README.md) for what each means).",
        "",
    ]
    if not results:
        out.append("No results yet: run `python -m bench --quick`.")
        target.write_text("\n".join(out) + "\n")
        return
    machines = {
        json.dumps({k: v for k, v in r["machine"].items() if k != "load_average"}, sort_keys=True) for r in results
    }
    for described in sorted(machines):
        m = json.loads(described)
        pg = m.get("postgres", {})
        out.append(
            f"Machine: {m.get('platform')}, {m.get('cpu_count')} CPUs, {m.get('memory_gib')} GiB, "
            f"Python {m.get('python')}"
            + (
                f", PostgreSQL {pg.get('server_version')} (fsync {pg.get('fsync')}, "
                f"synchronous_commit {pg.get('synchronous_commit')}, shared_buffers {pg.get('shared_buffers')})"
                if pg
                else ""
            )
            + (f", RabbitMQ {m.get('rabbitmq')}" if m.get("rabbitmq") else "")
            + "."
        )
    out += ["", *summary_table(results), ""]
    for r in results:
        out += [
            f"## {r['name']}: {r['title']}",
            "",
            f"{r['mode']} run, {r['date']}, {r['duration_s']:.0f} s, load average at start "
            f"{r['machine'].get('load_average')}. Status: {r['status']}.",
            "",
            f"- sizes: `{json.dumps(r['sizes'], ensure_ascii=False)}`",
            f"- target: {r['target']} -> {_met(r.get('met'), r.get('status', 'ok'))}",
            f"- ratio: {r.get('ratio')} ({r.get('ratio_means', '')})",
            "",
            "Figures:",
            "",
            "```json",
            json.dumps(r["figures"], indent=2, ensure_ascii=False),
            "```",
            "",
            "Floor:",
            "",
            "```json",
            json.dumps(r["floor"], indent=2, ensure_ascii=False),
            "```",
            "",
        ]
        if r.get("notes"):
            out += ["Notes:", "", *(f"- {note}" for note in r["notes"]), ""]
    target.write_text("\n".join(out))


def print_table(results: Iterable[Result]) -> None:
    rows = [asdict(r) for r in results]
    print()
    for line in summary_table(rows):
        print(line)
    print(flush=True)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
