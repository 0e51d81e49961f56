"""taskfsm benchmarks: one entry point, one table.

    python benchmarks/run.py            # the full run (a few minutes)
    python benchmarks/run.py --quick    # CI smoke run: small sizes, a few seconds
    python benchmarks/run.py --json     # the rows as JSON, for machines

Groups: 1 engine per transition, 2 memory per live task, 3 wire format, 4 stores (SQLite,
and PostgreSQL when TASKFSM_TEST_POSTGRES_URL is set), 5 replay of a JSON-lines log.
Each figure is the median of repeated runs; each row's ratio is to its group's reference
row (marked *). Targets are reported, never asserted: timings on a shared CI box vary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the _*.py helpers

from _timing import Row, Settings, set_ratios

GROUPS = ("engine", "memory", "wire", "stores", "replay")


def _engine(settings: Settings) -> tuple[list[Row], list[str]]:
    import _engine_group

    return _engine_group.run(settings), []


def _memory(settings: Settings) -> tuple[list[Row], list[str]]:
    import _memory_group

    return _memory_group.run(settings), []


def _wire(settings: Settings) -> tuple[list[Row], list[str]]:
    import _wire_group

    return _wire_group.run(settings), []


def _stores(settings: Settings) -> tuple[list[Row], list[str]]:
    import _store_group

    return _store_group.run(settings)


def _replay(settings: Settings) -> tuple[list[Row], list[str]]:
    import _replay_group

    return _replay_group.run(settings), []


RUNNERS: dict[str, Callable[[Settings], tuple[list[Row], list[str]]]] = {
    "engine": _engine,
    "memory": _memory,
    "wire": _wire,
    "stores": _stores,
    "replay": _replay,
}


def check_targets(rows: list[Row]) -> None:
    """Mark each row that has a target (the issue's, in ratios of the same run)."""
    for row in rows:
        if row.ratio is None:
            continue
        if row.name.startswith("TaskMachine.apply"):
            alternatives = [
                r.value
                for r in rows
                if r.group == row.group
                and r.name.startswith(("transitions", "python-statemachine"))
            ]
            row.target = "<= 2.0x, < alternatives"
            row.met = row.ratio <= 2.0 and all(row.value < v for v in alternatives)
        elif row.name == "TaskStatus":
            mb = row.extra.get("MB_per_million", 0.0)
            row.target = "<= 1.25x, << 300 MB/M"
            row.met = row.ratio <= 1.25 and mb < 300
        elif row.target.startswith(">= "):
            row.met = row.ratio >= float(row.target[3:].rstrip("x"))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{platform.python_implementation()} {platform.python_version()} on "
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores"
    )


def _fmt(value: float) -> str:
    if value != value:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def table(rows: list[Row]) -> str:
    lines: list[str] = []
    width = max(len(r.name) for r in rows) + 2
    group = None
    for row in rows:
        if row.group != group:
            group = row.group
            lines.append("")
            lines.append(group)
        mark = "*" if row.reference else " "
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
        verdict = "" if row.met is None else ("ok" if row.met else "MISSED")
        target = f"{row.target} {verdict}".strip()
        lines.append(
            f" {mark} {row.name:<{width}}{_fmt(row.value):>12} {row.unit:<9}{ratio:>8}"
            f"  {target:<32}{row.note}"
        )
    return "\n".join(lines[1:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a CI smoke run")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument(
        "--groups",
        default=",".join(GROUPS),
        help=f"comma-separated subset of {', '.join(GROUPS)} (default: all)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help="runs per figure (default 7, x3 for the short engine and wire runs; 3 quick)",
    )
    args = parser.parse_args(argv)
    chosen = [g.strip() for g in args.groups.split(",") if g.strip()]
    unknown = sorted(set(chosen) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group {unknown[0]!r} (known: {', '.join(GROUPS)})")
    repeats = args.repeats or (3 if args.quick else 7)
    settings = Settings(quick=args.quick, repeats=repeats)

    rows: list[Row] = []
    notes: list[str] = []
    for name in GROUPS:
        if name in chosen:
            started = time.perf_counter()
            group_rows, group_notes = RUNNERS[name](settings)
            took = time.perf_counter() - started
            print(f"{name}: {took:.1f}s", file=sys.stderr, flush=True)
            rows += group_rows
            notes += group_notes
    set_ratios(rows)
    check_targets(rows)

    if args.json:
        json.dump(
            {
                "machine": machine(),
                "quick": settings.quick,
                "repeats": settings.repeats,
                "notes": notes,
                "rows": [row.__dict__ for row in rows],
            },
            sys.stdout,
            indent=2,
        )
        print()
        return 0
    mode = "quick (smoke sizes)" if settings.quick else "full"
    print(
        f"taskfsm benchmarks, {mode}; medians of repeated runs (engine and wire "
        f"{settings.short_repeats}, memory and stores <= 3, replay <= 5); * = reference row"
    )
    print(f"machine: {machine()}")
    print()
    print(table(rows))
    for note in notes:
        print(f"\nnote: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
