"""The experiment framework: configs as frozen dataclasses, a CLI, run directories.

An experiment is a module ``experiments/<name>.py`` that defines

- ``Config``: a frozen dataclass whose defaults are paper-faithful, validated in
  ``__post_init__``;
- ``QUICK``: a dict of overrides for the ``--quick`` preset (runs in seconds to a minute);
- ``run(config, workdir=None) -> dict``: the metrics, including a ``"checks"`` list built
  with ``check(...)`` (or ``not_checked(...)`` for a claim the preset's scale cannot
  test); plots go to ``workdir`` when it is given;
- ``if __name__ == "__main__": main(__name__)``.

Defining these is the registration: ``python -m experiments.reproduce`` discovers every
such module, so the runner never needs editing.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import pathlib
import sys
import time
import types
import typing
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

from jaxgen._checks import check_positive
from jaxgen.io import write_json

RUNS_DIR = pathlib.Path("runs")


PASS, FAIL, NOT_CHECKED = "PASS", "FAIL", "NOT CHECKED"


def check(claim: str, measured: Any, passed: bool, *, paper: Any = None, **details: Any) -> dict:
    """One row of an experiment's claim / measured / pass table.

    Args:
      claim: what the paper claims, in words, with the criterion applied here.
      measured: what this run measured (a number or a short string).
      passed: whether the measurement supports the claim.
      paper: the paper's own figure for this claim, where it states one (for RESULTS.md).
      **details: extra values stored with the row.
    """
    row = {"claim": claim, "measured": measured, "passed": bool(passed),
           "status": PASS if passed else FAIL, **details}
    if paper is not None:
        row["paper"] = paper
    return row


def not_checked(claim: str, reason: str, measured: Any = "-", *, paper: Any = None,
                **details: Any) -> dict:
    """A claim this preset cannot test at its scale: shown as NOT CHECKED, never as passed.

    Args:
      claim: the claim, worded as for ``check``.
      reason: why this preset cannot test it (and which preset does).
      measured: what was measured anyway, for information.
      paper: the paper's own figure, as for ``check``.
      **details: extra values stored with the row.
    """
    row = check(claim, measured, False, paper=paper, reason=reason, **details)
    row["status"] = NOT_CHECKED
    return row


def status(row: dict) -> str:
    """``PASS``, ``FAIL`` or ``NOT CHECKED`` for a check row (rows without a status: PASS/FAIL)."""
    return row.get("status", PASS if row.get("passed") else FAIL)


def failed(rows: Iterable[dict]) -> list[dict]:
    """The rows whose status is FAIL (a NOT CHECKED row is neither passed nor failed)."""
    return [r for r in rows if status(r) == FAIL]


def check_positive_fields(config: Any, names: Sequence[str]) -> None:
    """Raises ``ValueError`` naming the first of ``names`` not > 0 (and finite) on ``config``.

    The common check of an experiment ``Config.__post_init__``.
    """
    for name in names:
        check_positive(name, getattr(config, name))


def check_subset(name: str, values: Sequence[Any], allowed: Iterable[Any]) -> None:
    """Raises ``ValueError`` unless the field ``name`` is a non-empty subset of ``allowed``."""
    allowed = list(allowed)
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
        raise ValueError(f"`{name}` must be a non-empty subset of {allowed}; got unknown "
                         f"{unknown}.")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse_value(name: str, text: str, annotation: Any) -> Any:
    """Parses a command-line value according to the field's type annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _parse_value(name, text, inner[0])
    if origin is tuple or annotation is tuple:
        item = args[0] if args else str
        parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
        return tuple(_parse_value(name, p.strip(), item) for p in parts)
    if annotation is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"`{name}` expects a boolean; got {text!r}.")
    try:
        if annotation is int:
            return int(text)
        if annotation is float:
            return float(text)
    except ValueError:
        raise ValueError(f"`{name}` expects {annotation.__name__}; got {text!r}.") from None
    return text


def make_config(config_cls: type, quick: dict | None = None, **overrides: Any) -> Any:
    """Builds a config from defaults, the quick preset and overrides; rejects unknown keys."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    values = dict(quick or {})
    values.update(overrides)
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"unknown config key(s) {unknown} for {config_cls.__module__}.Config; "
            f"valid keys: {sorted(names)}."
        )
    return dataclasses.replace(config_cls(), **values)


def parse_args(module: types.ModuleType, argv: Sequence[str]) -> tuple[Any, pathlib.Path | None]:
    """Parses ``--quick``, ``--out=DIR`` and ``--field=value`` into a config.

    Raises:
      ValueError: for an unknown field or a value that does not parse.
    """
    config_cls = module.Config
    hints = _field_types(config_cls)
    quick, out, overrides = False, None, {}
    for arg in argv:
        if arg == "--quick":
            quick = True
            continue
        if not arg.startswith("--") or "=" not in arg:
            raise ValueError(f"arguments are --quick, --out=DIR or --field=value; got {arg!r}.")
        name, text = arg[2:].split("=", 1)
        name = name.replace("-", "_")
        if name == "out":
            out = pathlib.Path(text)
            continue
        if name not in hints:
            raise ValueError(
                f"unknown config key {name!r}; valid keys: {sorted(hints)} (see --help)."
            )
        overrides[name] = _parse_value(name, text, hints[name])
    config = make_config(config_cls, module.QUICK if quick else None, **overrides)
    return config, out


def help_text(module: types.ModuleType) -> str:
    """The module docstring followed by every config field, its default and quick value."""
    hints = _field_types(module.Config)
    defaults = module.Config()
    lines = [(module.__doc__ or "").strip(), "", "Options (--field=value):"]
    for f in dataclasses.fields(module.Config):
        quick = module.QUICK.get(f.name)
        extra = f"   [--quick: {quick!r}]" if quick is not None else ""
        tname = getattr(hints[f.name], "__name__", str(hints[f.name]))
        lines.append(f"  --{f.name}: {tname} = {getattr(defaults, f.name)!r}{extra}")
    lines += [
        "  --quick: use the quick preset",
        "  --out=DIR: run directory (default runs/<name>/<time>)",
    ]
    return "\n".join(lines)


def new_run_dir(name: str, root: pathlib.Path = RUNS_DIR) -> pathlib.Path:
    """Creates ``runs/<name>/<timestamp>/`` (unique even within one second)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / name / stamp
    k = 1
    while path.exists():
        path = root / name / f"{stamp}-{k}"
        k += 1
    path.mkdir(parents=True)
    return path


def format_checks(name: str, checks: Sequence[dict]) -> str:
    """A plain-text claim / measured / pass table."""
    rows = [("claim", "measured", "pass")]
    for c in checks:
        m = c["measured"]
        m = f"{m:.4g}" if isinstance(m, float) else str(m)
        rows.append((c["claim"], m, status(c)))
    widths = [min(max(len(r[i]) for r in rows), 70) for i in range(3)]
    out = [f"== {name} =="]
    for r in rows:
        out.append("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)))
    return "\n".join(out)


def experiment_name(module: types.ModuleType) -> str:
    """The experiment's name: its file's stem (``__name__`` is ``__main__`` under ``-m``)."""
    path = getattr(module, "__file__", None)
    return pathlib.Path(path).stem if path else module.__name__.rsplit(".", 1)[-1]


def run_experiment(
    module: types.ModuleType, config: Any, out: pathlib.Path | None = None,
    preset: str = "custom",
) -> tuple[dict, pathlib.Path]:
    """Runs one experiment in its run directory; writes config.json and metrics.json.

    Args:
      module: the experiment module.
      config: its ``Config``.
      out: the run directory (default ``runs/<name>/<time>/``).
      preset: ``"quick"``, ``"full"`` (the defaults) or ``"custom"``; stored in the metrics.
    """
    name = experiment_name(module)
    workdir = out if out is not None else new_run_dir(name)
    workdir.mkdir(parents=True, exist_ok=True)
    write_json(workdir / "config.json", dataclasses.asdict(config))
    start = time.perf_counter()
    metrics = module.run(config, workdir)
    metrics["seconds"] = time.perf_counter() - start
    metrics["preset"] = preset
    metrics.setdefault("checks", [])
    write_json(workdir / "metrics.json", metrics)
    return metrics, workdir


def main(module_name: str, argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of an experiment module."""
    module = importlib.import_module(module_name if module_name != "__main__" else "__main__")
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--help" in argv or "-h" in argv:
        print(help_text(module))
        return 0
    try:
        config, out = parse_args(module, argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    quick = "--quick" in argv
    overridden = any(a.startswith("--") and a.split("=", 1)[0] != "--out" and a != "--quick"
                     for a in argv)
    preset = "custom" if overridden else ("quick" if quick else "full")
    metrics, workdir = run_experiment(module, config, out, preset=preset)
    print(format_checks(experiment_name(module), metrics["checks"]))
    print(f"results in {workdir} ({metrics['seconds']:.1f} s)")
    return 1 if failed(metrics["checks"]) else 0


def discover() -> list[str]:
    """Names of every experiment module in the ``experiments`` package."""
    import pkgutil

    import experiments

    names = []
    for info in pkgutil.iter_modules(experiments.__path__):
        if info.name.startswith("_") or info.name == "reproduce":
            continue
        mod = importlib.import_module(f"experiments.{info.name}")
        if all(hasattr(mod, a) for a in ("Config", "QUICK", "run")):
            names.append(info.name)
    return sorted(names)
