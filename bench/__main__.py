"""``python -m bench [NAME ...] [--quick | --dry-run] [--out DIR]``: run the benchmarks (all of them
when no name is given) against the machine's PostgreSQL and RabbitMQ, print a table, write one JSON
file per benchmark and regenerate RESULTS.md from all of them.

With several benchmarks each runs in a fresh child process, so that memory figures and leftovers of
one never reach the next."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import traceback
from importlib import import_module
from pathlib import Path

from bench.core import (
    DRY,
    FULL,
    ORDER,
    QUICK,
    RESULTS_DIR,
    RESULTS_MD,
    Mode,
    Result,
    load_results,
    log,
    machine,
    now_iso,
    print_table,
    summary_table,
    write_result,
    write_results_md,
)
from bench.infra import Infra, broker_restarts_since

BENCHMARKS = {
    "throughput": "bench.throughput",
    "alerts": "bench.alerts",
    "directory": "bench.directory",
    "lists": "bench.lists",
    "mail": "bench.mail",
    "retention": "bench.retention",
    "memory": "bench.memory",
    "chaos": "bench.chaos",
}
assert list(BENCHMARKS) == ORDER


async def run_one(name: str, mode: Mode) -> Result:
    infra = Infra()
    module = import_module(BENCHMARKS[name])
    await infra.check(broker=getattr(module, "NEEDS_BROKER", True))
    infra.tokens.start()
    started = time.perf_counter()
    wall_start = time.time()
    extra = {"postgres": await infra.postgres_info(), "rabbitmq": infra.rabbitmq_version()}
    stamp = machine(extra)
    try:
        result: Result = await module.run(infra, mode)
    except Exception as exc:
        traceback.print_exc()
        result = Result(name, name, mode.name, status=f"error: {type(exc).__name__}: {exc}"[:300])
    finally:
        await infra.close()
    result.machine = stamp
    # Restarts of the shared node disturb only the benchmarks that use it (the fault run has its own).
    restarts = broker_restarts_since(wall_start) if getattr(module, "NEEDS_BROKER", True) else []
    if restarts:
        result.figures["broker_restarts_during_run"] = restarts
        result.notes.append(
            f"RabbitMQ was stopped during this run by other work on the machine ({', '.join(restarts)}); "
            "figures around that moment are disturbed."
        )
    result.date = now_iso()
    result.duration_s = round(time.perf_counter() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one or more of: {', '.join(BENCHMARKS)}")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes: a smoke run of about a minute each")
    size.add_argument("--dry-run", action="store_true", help="the smallest sizes: proves the code runs")
    parser.add_argument("--out", type=Path, default=None, help="where JSON results go (default bench/results)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    mode = DRY if args.dry_run else QUICK if args.quick else FULL
    out = args.out or RESULTS_DIR
    results_md = RESULTS_MD if out.resolve() == RESULTS_DIR.resolve() else out / "RESULTS.md"

    if len(names) > 1 and not args.child:
        failed = 0
        for name in names:
            log(f"{name}: starting ({mode.name})")
            command = [sys.executable, "-m", "bench", name, "--out", str(out), "--child"]
            command += ["--quick"] if mode is QUICK else ["--dry-run"] if mode is DRY else []
            failed += subprocess.run(command).returncode != 0
        results = [r for r in load_results(out) if r["name"] in names]
        print()
        for line in summary_table(results):
            print(line)
        write_results_md(out, results_md)
        return 1 if failed else 0

    ran: list[Result] = []
    for name in names:
        result = asyncio.run(run_one(name, mode))
        path = write_result(result, out)
        log(f"{name}: {result.status}; written to {path}")
        ran.append(result)
    if not args.child:
        print_table(ran)
    write_results_md(out, results_md)
    return 0 if all(r.status == "ok" or r.status.startswith("blocked") for r in ran) else 1


if __name__ == "__main__":
    sys.exit(main())
