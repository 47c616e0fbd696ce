"""Runs every registered experiment's quick preset and writes one summary report.

This is jaxgen's main job::

    python -m experiments.reproduce                 # all experiments, quick presets
    python -m experiments.reproduce --only=density2d,flows4flows
    python -m experiments.reproduce --full          # paper-faithful defaults (slow)

It writes ``runs/reproduce/<timestamp>/summary.md`` and ``summary.json`` with one row
per claim: experiment, claim, measured value, pass/fail and time. Every experiment's own
run directory sits under the same timestamped folder. An experiment that raises is
reported as failed and the others still run. The exit status is 0 only if every check
passed.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback

import jax

from experiments._framework import discover
from experiments._framework import format_checks
from experiments._framework import make_config
from experiments._framework import new_run_dir
from experiments._framework import run_experiment
from jaxgen.io import atomic_open
from jaxgen.io import write_json


def _markdown(rows: list[dict], total: float) -> str:
    lines = [
        "# jaxgen reproduction summary",
        "",
        f"{sum(r['passed'] for r in rows)} of {len(rows)} checks passed in {total:.0f} s.",
        "",
        "| experiment | claim | measured | pass | time (s) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["measured"]
        m = f"{m:.4g}" if isinstance(m, float) else str(m)
        claim = str(r["claim"]).replace("|", "/")
        ok = "PASS" if r["passed"] else "**FAIL**"
        lines.append(f"| {r['experiment']} | {claim} | {m} | {ok} | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def reproduce(names: list[str] | None = None, quick: bool = True) -> tuple[list[dict], str]:
    """Runs the named (default: all) experiments; returns the summary rows and run dir."""
    names = discover() if names is None else names
    root = new_run_dir("reproduce")
    rows = []
    start = time.perf_counter()
    for name in names:
        # Free the previous experiment's compiled programs: every CPU executable holds its
        # own memory mappings, and one process running them all would otherwise approach
        # the kernel's per-process limit (vm.max_map_count, 65,530), where XLA segfaults.
        jax.clear_caches()
        module = importlib.import_module(f"experiments.{name}")
        config = make_config(module.Config, module.QUICK if quick else None)
        print(f"--- {name} ---", flush=True)
        t0 = time.perf_counter()
        try:
            metrics, _ = run_experiment(module, config, root / name)
            print(format_checks(name, metrics["checks"]), flush=True)
            checks = metrics["checks"] or [
                {"claim": "(no checks reported)", "measured": "-", "passed": False}
            ]
            for c in checks:
                rows.append({"experiment": name, **c, "seconds": metrics["seconds"]})
        except Exception as e:  # noqa: BLE001 - one broken experiment must not stop the rest
            traceback.print_exc()
            rows.append(
                {
                    "experiment": name,
                    "claim": "experiment runs",
                    "measured": f"{type(e).__name__}: {e}"[:200],
                    "passed": False,
                    "seconds": time.perf_counter() - t0,
                }
            )
    total = time.perf_counter() - start
    write_json(root / "summary.json", {"rows": rows, "seconds": total})
    with atomic_open(root / "summary.md") as f:
        f.write(_markdown(rows, total))
    return rows, str(root)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``[--only=a,b] [--full]``."""
    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:
        print(__doc__)
        return 0
    names, quick = None, True
    for arg in argv:
        if arg.startswith("--only="):
            names = [n for n in arg.split("=", 1)[1].split(",") if n]
        elif arg == "--full":
            quick = False
        else:
            print(f"error: unknown argument {arg!r} (see --help)", file=sys.stderr)
            return 2
    if names is not None:
        unknown = sorted(set(names) - set(discover()))
        if unknown:
            print(f"error: unknown experiment(s) {unknown}; known: {discover()}", file=sys.stderr)
            return 2
    rows, root = reproduce(names, quick)
    print(_markdown(rows, sum(r["seconds"] for r in rows)))
    print(f"summary in {root}/summary.md")
    return 0 if rows and all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
