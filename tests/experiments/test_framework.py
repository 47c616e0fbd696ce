"""The experiment framework: configs, CLI parsing, run directories, registry, runner."""

import dataclasses
import html.parser
import json
import os
import pathlib
import subprocess
import sys
import types

import pytest

import experiments
from experiments import _framework as fw
from experiments import reproduce


@dataclasses.dataclass(frozen=True)
class Config:
    n: int = 10
    rate: float = 0.5
    name: str = "a"
    flag: bool = False
    sizes: tuple[int, ...] = (1, 2)
    limit: float | None = None

    def __post_init__(self):
        if self.n <= 0:
            raise ValueError(f"`n` must be > 0; got {self.n}.")


def _module():
    mod = types.ModuleType("experiments.fake")
    mod.__doc__ = "A fake experiment.\n\nClaim: nothing."
    mod.Config = Config
    mod.QUICK = {"n": 2}
    mod.__file__ = "experiments/fake.py"

    def run(config, workdir=None):
        if workdir is not None:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig = plt.figure(figsize=(1, 1))
            fig.savefig(workdir / "value.png")
            plt.close(fig)
        return {"value": config.n * config.rate,
                "checks": [experiments.check("value is positive", config.n * config.rate,
                                             config.n * config.rate > 0, paper=">0"),
                           experiments.not_checked("value is large", "needs n > 1e6",
                                                   config.n)]}

    mod.run = run
    return mod


def test_parse_args_types_quick_and_overrides():
    cfg, out = fw.parse_args(_module(), ["--quick", "--rate=0.25", "--flag=true",
                                         "--sizes=3,4,5", "--limit=none", "--name=b"])
    assert cfg == Config(n=2, rate=0.25, name="b", flag=True, sizes=(3, 4, 5), limit=None)
    assert out is None
    cfg, out = fw.parse_args(_module(), ["--limit=1.5", "--out=/tmp/x"])
    assert cfg.limit == 1.5 and str(out) == "/tmp/x"


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--epochs=3"], "unknown config key 'epochs'"),
        (["--n=abc"], "`n` expects int"),
        (["--flag=maybe"], "boolean"),
        (["--n=-1"], "`n` must be > 0"),
        (["positional"], "arguments are"),
    ],
)
def test_parse_args_rejects_bad_input(argv, match):
    with pytest.raises(ValueError, match=match):
        fw.parse_args(_module(), argv)


def test_make_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown config key"):
        fw.make_config(Config, {"bogus": 1})


def test_help_lists_every_field():
    text = fw.help_text(_module())
    for f in dataclasses.fields(Config):
        assert f"--{f.name}" in text
    assert "--quick: 2" in text and "Claim: nothing." in text


def test_run_experiment_writes_config_and_metrics(tmp_path):
    metrics, workdir = fw.run_experiment(_module(), Config(), tmp_path / "run")
    assert json.loads((workdir / "config.json").read_text())["sizes"] == [1, 2]
    saved = json.loads((workdir / "metrics.json").read_text())
    assert saved["value"] == 5.0 and saved["checks"][0]["passed"] is True
    assert "seconds" in saved
    table = fw.format_checks("fake", metrics["checks"])
    assert "PASS" in table and "value is positive" in table
    assert not list(workdir.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_main_returns_nonzero_on_bad_arguments(capsys):
    assert fw.main("experiments.density2d", ["--bogus=1"]) == 2
    assert "unknown config key" in capsys.readouterr().err


def test_discover_finds_registered_experiments():
    names = experiments.discover()
    assert {"density2d", "flows4flows"} <= set(names)
    assert "reproduce" not in names


def test_reproduce_writes_summary(tmp_path, monkeypatch):
    monkeypatch.setattr(fw, "RUNS_DIR", tmp_path)
    monkeypatch.setattr(reproduce, "new_run_dir", lambda name: fw.new_run_dir(name, tmp_path))
    mod = _module()
    monkeypatch.setitem(__import__("sys").modules, "experiments.fake", mod)
    rows, root = reproduce.reproduce(["fake"])
    assert rows[0]["experiment"] == "fake" and rows[0]["passed"]
    summary = (tmp_path / "reproduce").glob("*/summary.md")
    text = next(summary).read_text()
    assert "| fake | value is positive | 1 | PASS |" in text
    # A claim the preset cannot test is shown as such and never counted as passed.
    assert "| fake | value is large | 2 | NOT CHECKED (needs n > 1e6) |" in text
    assert "1 of 2 checks passed, 1 not checked at this preset" in text


class _Refs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.imgs, self.ids = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and not attrs["href"].startswith(("http", "#")):
            self.hrefs.append(attrs["href"])
        if tag == "img":
            self.imgs.append(attrs["src"])
        if "id" in attrs:
            self.ids.append(attrs["id"])


def test_reproduce_html_report_references_existing_figures(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "new_run_dir", lambda name: fw.new_run_dir(name, tmp_path))
    for name in ("fake", "fake2"):
        monkeypatch.setitem(sys.modules, f"experiments.{name}", _module())
    _, root = reproduce.reproduce(["fake", "fake2"])
    refs = _Refs()
    refs.feed((pathlib.Path(root) / "summary.html").read_text())
    assert set(refs.ids) == {"fake", "fake2"}  # every experiment of the run has a section
    assert len(refs.hrefs) == 2 and len(refs.imgs) == 2
    for href in refs.hrefs:
        assert (pathlib.Path(root) / href).is_file(), href
    assert all(src.startswith("data:image/png;base64,") for src in refs.imgs)  # self-contained


def test_headline_is_the_wall_time_not_the_sum_over_rows():
    rows = [{"claim": c, "measured": 1, "passed": True, "seconds": 100.0} for c in "abc"]
    assert reproduce.headline(rows, 120.0) == "3 of 3 checks passed; wall time 120 s."


def test_full_preset_writes_results_md(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "new_run_dir", lambda name: fw.new_run_dir(name, tmp_path))
    monkeypatch.setattr(reproduce, "discover", lambda: ["fake", "other"])
    monkeypatch.setitem(sys.modules, "experiments.fake", _module())
    results = tmp_path / "RESULTS.md"
    rows, _ = reproduce.reproduce(["fake"], preset="full", results=results)
    assert rows[0]["measured"] == 5.0  # the defaults (n = 10), not the quick preset
    text = results.read_text()
    assert "| value is positive | >0 | 5 | PASS |" in text
    assert "Not yet run at the full preset: `other`." in text
    assert reproduce.git_commit() in text
    assert json.loads(results.with_suffix(".json").read_text())["fake"]["seconds"] >= 0


def test_experiment_cli_writes_runs_named_after_the_experiment(tmp_path):
    """`python -m experiments.<name>` as the README writes it (``__name__`` is __main__)."""
    root = pathlib.Path(__file__).parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    # The shower simulator compiles in about a second at this size: the cheapest CLI run.
    cmd = [sys.executable, "-m", "experiments.showers", "--quick", "--n_showers=500",
           "--n_reference=0", "--throughput_showers=0"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = (tmp_path / "runs" / "showers").iterdir()
    assert not (tmp_path / "runs" / "__main__").exists()
    assert json.loads((run / "metrics.json").read_text())["preset"] == "custom"
    assert "== showers ==" in proc.stdout


def test_reproduce_reports_a_crashing_experiment(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "new_run_dir", lambda name: fw.new_run_dir(name, tmp_path))
    mod = _module()

    def broken(config, workdir=None):
        raise RuntimeError("boom")

    mod.run = broken
    monkeypatch.setitem(__import__("sys").modules, "experiments.fake", mod)
    rows, _ = reproduce.reproduce(["fake"])
    assert rows[0]["passed"] is False and "boom" in rows[0]["measured"]
