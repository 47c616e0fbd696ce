"""Runs every registered experiment and writes one summary report; jaxgen's main job.

::

    python -m experiments.reproduce                       # every quick preset (minutes)
    python -m experiments.reproduce --only=density2d,flows4flows
    python -m experiments.reproduce --preset=full         # the defaults: the reproductions
    python -m experiments.reproduce --preset=full --only density2d

A run writes ``runs/reproduce/<time>/summary.md``, ``summary.json`` and ``summary.html``
(self-contained: per experiment its paper and claim, the claims table and its figures
inline, with the run's config and time), and each experiment's run directory under the
same folder. Each claim row is PASS, FAIL or NOT CHECKED (a claim the preset cannot test
at its scale; never counted as passed). An experiment that raises is reported as failed
and the others still run. The exit status is 0 when no check failed.

The full preset also updates ``RESULTS.md`` (and the ``RESULTS.json`` it is written from)
in the current directory, or at ``--results=PATH``: per experiment the claims, the paper's
figures where the experiment states them, ours, the runtime and the commit measured on.
Experiments run before keep their entries; those never run at the full preset are listed.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import importlib
import json
import pathlib
import re
import subprocess
import sys
import time
import traceback

import jax

from experiments._framework import FAIL
from experiments._framework import NOT_CHECKED
from experiments._framework import PASS
from experiments._framework import discover
from experiments._framework import failed
from experiments._framework import format_checks
from experiments._framework import make_config
from experiments._framework import new_run_dir
from experiments._framework import run_experiment
from experiments._framework import status
from jaxgen.io import atomic_open
from jaxgen.io import write_json

PRESETS = ("quick", "full")


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _counts(rows: list[dict]) -> dict[str, int]:
    return {s: sum(status(r) == s for r in rows) for s in (PASS, FAIL, NOT_CHECKED)}


def headline(rows: list[dict], wall_seconds: float) -> str:
    """One line: how many checks passed, failed, were not checked, and the run's wall time."""
    n = _counts(rows)
    text = f"{n[PASS]} of {len(rows)} checks passed"
    if n[FAIL]:
        text += f", {n[FAIL]} failed"
    if n[NOT_CHECKED]:
        text += f", {n[NOT_CHECKED]} not checked at this preset"
    return text + f"; wall time {wall_seconds:.0f} s."


def describe(module) -> dict:
    """The experiment's title, claim paragraph and arXiv ids, from its docstring."""
    doc = (module.__doc__ or "").strip()
    paragraphs = [" ".join(p.split()) for p in doc.split("\n\n") if p.strip()]
    claim = next((p for p in paragraphs if p.startswith("Claim")), "")
    return {
        "title": paragraphs[0] if paragraphs else module.__name__,
        "claim": claim,
        "arxiv": sorted(set(re.findall(r"arXiv:\s*(\d{4}\.\d{4,5})", doc))),
    }


def _markdown(rows: list[dict], wall_seconds: float, preset: str) -> str:
    lines = [
        f"# jaxgen reproduction summary ({preset} preset)",
        "",
        headline(rows, wall_seconds),
        "",
        "| experiment | claim | measured | status | experiment time (s) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        claim = str(r["claim"]).replace("|", "/")
        s = status(r)
        shown = f"**{s}**" if s == FAIL else s
        if s == NOT_CHECKED and r.get("reason"):
            shown += f" ({r['reason']})".replace("|", "/")
        lines.append(f"| {r['experiment']} | {claim} | {_fmt(r['measured'])} | {shown} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em;
text-align:left;vertical-align:top}th{background:#f3f3f3}.PASS{color:#176d2c;font-weight:600}
.FAIL{color:#b00020;font-weight:700}.NOT{color:#8a6d00;font-weight:600}img{max-width:100%;
border:1px solid #eee;margin:.3em 0}section{border-top:2px solid #ddd;margin-top:2em}
pre{background:#f8f8f8;padding:.5em;overflow-x:auto;font-size:85%}.claim{color:#444}
"""


def _status_cell(row: dict) -> str:
    s = status(row)
    css = "NOT" if s == NOT_CHECKED else s
    text = html.escape(s)
    if s == NOT_CHECKED and row.get("reason"):
        text += f"<br><small>{html.escape(str(row['reason']))}</small>"
    return f'<td class="{css}">{text}</td>'


def write_html(path: pathlib.Path, experiments: list[dict], rows: list[dict],
               wall_seconds: float, preset: str) -> list[str]:
    """Writes the self-contained report; returns the figure paths it references.

    Figures are embedded as base64 ``data:`` images so that the file stands alone, and
    each also links to its PNG beside the report (``<name>/<figure>.png``).
    """
    figures = []
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>jaxgen reproduction ({html.escape(preset)})</title><style>{_CSS}</style>",
        "</head><body>",
        f"<h1>jaxgen reproduction summary ({html.escape(preset)} preset)</h1>",
        f"<p>{html.escape(headline(rows, wall_seconds))}</p><ul>",
    ]
    for e in experiments:
        n = _counts(e["rows"])
        parts.append(f"<li><a href='#{e['name']}'>{e['name']}</a>: {n[PASS]} passed, "
                     f"{n[FAIL]} failed, {n[NOT_CHECKED]} not checked, {e['seconds']:.0f} s</li>")
    parts.append("</ul>")
    for e in experiments:
        links = ", ".join(f"<a href='https://arxiv.org/abs/{a}'>arXiv:{a}</a>"
                          for a in e["arxiv"])
        parts += [
            f"<section id='{e['name']}'><h2>{html.escape(e['name'])}</h2>",
            f"<p><b>{html.escape(e['title'])}</b> {links}</p>",
            f"<p class='claim'>{html.escape(e['claim'])}</p>",
            "<table><tr><th>claim</th><th>paper</th><th>measured</th><th>status</th></tr>",
        ]
        for r in e["rows"]:
            parts.append(f"<tr><td>{html.escape(str(r['claim']))}</td>"
                         f"<td>{html.escape(_fmt(r.get('paper', '')))}</td>"
                         f"<td>{html.escape(_fmt(r['measured']))}</td>{_status_cell(r)}</tr>")
        parts.append("</table>")
        for fig in e["figures"]:
            rel = f"{e['name']}/{fig.name}"
            data = base64.b64encode(fig.read_bytes()).decode("ascii")
            figures.append(rel)
            parts.append(f"<figure><a href='{html.escape(rel)}'><img alt='{html.escape(rel)}' "
                         f"src='data:image/png;base64,{data}'></a>"
                         f"<figcaption>{html.escape(fig.name)}</figcaption></figure>")
        parts.append(f"<p>time {e['seconds']:.1f} s</p><details><summary>config</summary>"
                     f"<pre>{html.escape(json.dumps(e['config'], indent=1))}</pre></details>")
        parts.append("</section>")
    parts.append("</body></html>\n")
    with atomic_open(path) as f:
        f.write("\n".join(parts))
    return figures


def git_commit() -> str:
    """The checked-out commit (short hash, ``+dirty`` if the tree differs), or ``unknown``."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def update_results(path: pathlib.Path, experiments: list[dict], all_names: list[str]) -> None:
    """Merges this run's full-preset entries into ``RESULTS.json`` and rewrites RESULTS.md."""
    store = path.with_suffix(".json")
    entries = json.loads(store.read_text()) if store.exists() else {}
    commit, date = git_commit(), datetime.date.today().isoformat()
    for e in experiments:
        entries[e["name"]] = {
            "title": e["title"], "arxiv": e["arxiv"], "commit": commit, "date": date,
            "seconds": e["seconds"],
            "rows": [{"claim": r["claim"], "paper": r.get("paper", ""),
                      "measured": r["measured"], "status": status(r)} for r in e["rows"]],
        }
    write_json(store, dict(sorted(entries.items())))
    lines = [
        "# jaxgen results at the full presets",
        "",
        "Written by `python -m experiments.reproduce --preset=full [--only NAME,...]`; each",
        "experiment's entry is replaced when it is run again. The quick presets of the main",
        "job are demonstrations; these are the reproductions. Machine: 2 CPU cores, no GPU,",
        "unless an entry says otherwise.",
        "",
    ]
    missing = [n for n in all_names if n not in entries]
    if missing:
        lines += ["Not yet run at the full preset: " + ", ".join(f"`{n}`" for n in missing)
                  + ".", ""]
    for name, e in sorted(entries.items()):
        extra = [f"arXiv:{a}" for a in e["arxiv"] if a not in e["title"]]
        title = e["title"] + (f" ({', '.join(extra)})." if extra else "")
        lines += [
            f"## {name}", "",
            f"{title} Commit `{e['commit']}`, {e['date']}, {e['seconds']:.0f} s.", "",
            "| claim | paper | ours | status |", "|---|---|---|---|",
        ]
        for r in e["rows"]:
            cells = [str(r["claim"]), _fmt(r["paper"]) or "—", _fmt(r["measured"]),
                     r["status"]]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        lines.append("")
    with atomic_open(path) as f:
        f.write("\n".join(lines))


def reproduce(names: list[str] | None = None, preset: str = "quick",
              results: pathlib.Path | None = None) -> tuple[list[dict], str]:
    """Runs the named (default: all) experiments at a preset; returns the rows and run dir.

    Args:
      names: experiments to run (default: every registered one).
      preset: ``"quick"`` (each module's ``QUICK``) or ``"full"`` (the defaults).
      results: with the full preset, the RESULTS.md to update (default ``./RESULTS.md``).
    """
    if preset not in PRESETS:
        raise ValueError(f"`preset` must be one of {PRESETS}; got {preset!r}.")
    all_names = discover()
    names = all_names if names is None else names
    root = new_run_dir("reproduce")
    rows, done = [], []
    start = time.perf_counter()
    for name in names:
        # Free the previous experiment's compiled programs: every CPU executable holds its
        # own memory mappings, and one process running them all would otherwise approach
        # the kernel's per-process limit (vm.max_map_count, 65,530), where XLA segfaults.
        jax.clear_caches()
        module = importlib.import_module(f"experiments.{name}")
        config = make_config(module.Config, module.QUICK if preset == "quick" else None)
        print(f"--- {name} ---", flush=True)
        t0 = time.perf_counter()
        try:
            metrics, _ = run_experiment(module, config, root / name, preset=preset)
            print(format_checks(name, metrics["checks"]), flush=True)
            checks = metrics["checks"] or [
                {"claim": "(no checks reported)", "measured": "-", "passed": False}
            ]
            seconds = metrics["seconds"]
        except Exception as e:  # noqa: BLE001 - one broken experiment must not stop the rest
            traceback.print_exc()
            checks = [{"claim": "experiment runs", "measured": f"{type(e).__name__}: {e}"[:200],
                       "passed": False}]
            seconds = time.perf_counter() - t0
        exp_rows = [{"experiment": name, **c, "seconds": seconds} for c in checks]
        rows += exp_rows
        done.append({"name": name, **describe(module), "rows": exp_rows, "seconds": seconds,
                     "config": dataclasses.asdict(config),
                     "figures": sorted((root / name).glob("*.png"))})
    wall = time.perf_counter() - start
    write_json(root / "summary.json", {"preset": preset, "rows": rows, "seconds": wall})
    with atomic_open(root / "summary.md") as f:
        f.write(_markdown(rows, wall, preset))
    write_html(root / "summary.html", done, rows, wall, preset)
    if preset == "full":
        update_results(pathlib.Path("RESULTS.md") if results is None else results, done,
                       all_names)
    return rows, str(root)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``[--preset=quick|full] [--only=a,b] [--results=PATH]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help" in argv or "-h" in argv:
        print(__doc__)
        return 0
    names, preset, results = None, "quick", None
    while argv:
        arg = argv.pop(0)
        key, _, value = arg.partition("=")
        if key in ("--only", "--preset", "--results") and not value:
            if not argv:
                print(f"error: {key} needs a value (see --help)", file=sys.stderr)
                return 2
            value = argv.pop(0)
        if key == "--only":
            names = [n for n in value.split(",") if n]
        elif key == "--preset":
            preset = value
        elif key == "--results":
            results = pathlib.Path(value)
        else:
            print(f"error: unknown argument {arg!r} (see --help)", file=sys.stderr)
            return 2
    if preset not in PRESETS:
        print(f"error: --preset must be one of {PRESETS}; got {preset!r}", file=sys.stderr)
        return 2
    if names is not None:
        unknown = sorted(set(names) - set(discover()))
        if unknown or not names:
            print(f"error: unknown experiment(s) {unknown}; known: {discover()}",
                  file=sys.stderr)
            return 2
    rows, root = reproduce(names, preset, results)
    print(_markdown(rows, json.loads((pathlib.Path(root) / "summary.json").read_text())
                    ["seconds"], preset))
    print(f"summary in {root}/summary.md")
    print(f"report: {pathlib.Path(root, 'summary.html').resolve().as_uri()}")
    return 1 if not rows or failed(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
