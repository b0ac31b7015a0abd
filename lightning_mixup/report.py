"""Collect the final test metrics of finished runs into one markdown table, beside the papers' numbers.

``python -m lightning_mixup.report outputs/2026-01-01/12-00-00 multirun/2026-01-02/08-00-00``

A run directory is what ``python -m lightning_mixup.train`` writes: ``.hydra/config.yaml``,
``.hydra/overrides.yaml`` and the CSV logger's ``csv/version_*/metrics.csv``. A Hydra multirun directory
(with ``multirun.yaml``) stands for its numbered job directories. Runs whose overrides differ only in the
seed form one row, with the mean ± sample standard deviation over the seeds. The paper's number comes from
the experiment preset's top-level ``paper`` key (``paper: {error: 4.2, source: ...}``), see ``conf/experiment/``.

GAN runs (``--config-name gan``: ``gan/modes`` in the metrics, no test split) form a second table: the final
modes covered and high-quality fraction (mean ± std over seeds) and their range over the epochs of the last
2,000 generator iterations. A GAN run is finished when it logged its last epoch (``trainer.max_epochs``).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

_IGNORED_OVERRIDES = ("seed=", "ckpt_path=", "paths.", "data.data_dir=", "data.num_workers=", "data.download=")
_COLUMNS = ("setting", "method", "net", "data", "epochs", "seeds", "test error (%)", "test ECE", "paper error (%)")


def _short(target: object) -> str:
    return str(target).rsplit(".", 1)[-1] if target else "none"


def _select(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)


def _final_test_metrics(run: Path) -> dict[str, float] | None:
    """The last row with ``test/acc`` over the run's CSV logs (the latest version wins), or None."""
    found = None
    versions = sorted(run.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[-1]))
    for path in versions:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("test/acc"):
                    found = {key: float(value) for key, value in row.items() if key.startswith("test/") and value}
    return found


GAN_WINDOW = 2000
"""Generator iterations at the end of a GAN run over which the spread of its metrics is reported."""
_GAN_COLUMNS = (
    "setting",
    "method",
    "data",
    "iterations",
    "seeds",
    "modes (final)",
    "high quality (final)",
    f"modes, last {GAN_WINDOW:,} it. (min–max)",
    f"high quality, last {GAN_WINDOW:,} it. (min–max)",
)


def _gan_epochs(run: Path) -> list[dict[str, float]]:
    """The epoch rows with ``gan/modes`` over the run's CSV logs (a resumed run's later versions replace its
    earlier epochs), sorted by epoch."""
    by_epoch: dict[int, dict[str, float]] = {}
    versions = sorted(run.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[-1]))
    for path in versions:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("gan/modes") and row.get("epoch"):
                    by_epoch[int(float(row["epoch"]))] = {k: float(v) for k, v in row.items() if v}
    return [by_epoch[e] for e in sorted(by_epoch)]


def _is_gan(cfg: DictConfig) -> bool:
    return str(_select(cfg, "model._target_") or "").endswith("GANModule")


def collect_gan(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One dict per finished GAN run found in ``paths``: ``path``, ``setting``, ``method``, ``data`` (its mixture
    name when it has one), ``seed``, ``iterations``, ``modes``, ``high_quality`` (last epoch), and ``window``: the
    epoch rows of the last :data:`GAN_WINDOW` iterations. Unfinished GAN runs are skipped with a warning;
    classifier runs are left to :func:`collect`."""
    runs = []
    for path in paths:
        for run in _run_dirs(Path(path)):
            cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
            if not _is_gan(cfg):
                continue
            epochs = _gan_epochs(run)
            max_epochs = _select(cfg, "trainer.max_epochs")
            if not epochs or (isinstance(max_epochs, int) and int(epochs[-1]["epoch"]) < max_epochs - 1):
                done = f"epoch {int(epochs[-1]['epoch']) + 1} of {max_epochs}" if epochs else "no gan/modes"
                warnings.warn(f"skipping {run}: unfinished GAN run ({done} in csv/version_*/metrics.csv)", stacklevel=2)
                continue
            last = epochs[-1]
            iterations = last.get("gan/iterations")
            window = [e for e in epochs if iterations is None or e.get("gan/iterations", 0) > iterations - GAN_WINDOW]
            overrides_file = run / ".hydra" / "overrides.yaml"
            overrides = [str(o) for o in OmegaConf.load(overrides_file)] if overrides_file.is_file() else []
            name = _select(cfg, "data.name")
            runs.append(
                {
                    "path": str(run),
                    "setting": _setting(overrides),
                    "method": _short(_select(cfg, "mix._target_")),
                    "data": str(name) if name else _short(_select(cfg, "data._target_")),
                    "seed": _select(cfg, "seed"),
                    "iterations": None if iterations is None else int(iterations),
                    "modes": last["gan/modes"],
                    "high_quality": last.get("gan/high_quality"),
                    "window": window,
                }
            )
    return runs


def _range(values: Sequence[float], digits: int) -> str:
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}" if values else "—"


def aggregate_gan(runs: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """Rows of the GAN table: runs that differ only in the seed merged, in first-seen order."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["setting"], run["method"], run["data"], run["iterations"]), []).append(run)
    rows = []
    for members in groups.values():
        first = members[0]
        window = [e for run in members for e in run["window"]]
        rows.append(
            {
                "setting": f"`{first['setting']}`",
                "method": first["method"],
                "data": first["data"],
                "iterations": str(first["iterations"]),
                "seeds": ", ".join(str(run["seed"]) for run in members),
                "modes (final)": _mean_std([run["modes"] for run in members], 1),
                "high quality (final)": _mean_std([run["high_quality"] for run in members], 3),
                _GAN_COLUMNS[7]: _range([e["gan/modes"] for e in window], 0),
                _GAN_COLUMNS[8]: _range([e["gan/high_quality"] for e in window if "gan/high_quality" in e], 3),
            }
        )
    return rows


def _setting(overrides: Sequence[str]) -> str:
    kept = [o for o in overrides if not o.lstrip("+~").startswith(_IGNORED_OVERRIDES)]
    return " ".join(kept) or "defaults"


def _run_dirs(path: Path) -> list[Path]:
    if (path / ".hydra" / "config.yaml").is_file():
        return [path]
    if (path / "multirun.yaml").is_file():
        jobs = [p for p in path.iterdir() if p.is_dir() and (p / ".hydra" / "config.yaml").is_file()]
        return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    raise FileNotFoundError(
        f"{path} is neither a run directory (with .hydra/config.yaml) "
        "nor a Hydra multirun directory (with multirun.yaml)"
    )


def collect(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One dict per finished run found in ``paths`` (run or multirun directories), in the order given.

    Keys: ``path``, ``setting`` (the overrides without seed and paths), ``method`` (the mixer's class or
    ``none``), ``net``, ``data`` (class names), ``epochs``, ``seed``, ``test_error`` (%), ``test_ece``,
    ``paper_error`` (%, or None), ``paper_net`` and ``paper_source``. Runs without a test accuracy are
    skipped with a warning; GAN runs are left to :func:`collect_gan`.

    Example:
        >>> collect(["multirun/2026-01-02/08-00-00"])[0]["test_error"]  # doctest: +SKIP
        4.31
    """
    runs = []
    for path in paths:
        for run in _run_dirs(Path(path)):
            if _is_gan(OmegaConf.load(run / ".hydra" / "config.yaml")):
                continue  # a GAN has no test split: collect_gan
            metrics = _final_test_metrics(run)
            if metrics is None:
                warnings.warn(
                    f"skipping {run}: no test/acc in csv/version_*/metrics.csv (unfinished run?)", stacklevel=2
                )
                continue
            cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
            overrides_file = run / ".hydra" / "overrides.yaml"
            overrides = [str(o) for o in OmegaConf.load(overrides_file)] if overrides_file.is_file() else []
            ece = metrics.get("test/ece")
            runs.append(
                {
                    "path": str(run),
                    "setting": _setting(overrides),
                    "method": _short(_select(cfg, "mix._target_")),
                    "net": _short(_select(cfg, "net._target_")),
                    "data": _short(_select(cfg, "data._target_")),
                    "epochs": _select(cfg, "trainer.max_epochs"),
                    "seed": _select(cfg, "seed"),
                    "test_error": 100.0 * (1.0 - metrics["test/acc"]),
                    "test_ece": ece,
                    "paper_error": _select(cfg, "paper.error"),
                    "paper_net": _select(cfg, "paper.net"),
                    "paper_source": _select(cfg, "paper.source"),
                }
            )
    return runs


def _mean_std(values: Sequence[float | None], digits: int) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "—"
    if len(present) == 1:
        return f"{present[0]:.{digits}f}"
    return f"{statistics.fmean(present):.{digits}f} ± {statistics.stdev(present):.{digits}f}"


def _paper(run: dict[str, Any]) -> str:
    if run["paper_error"] is None:
        return f"— ({run['paper_source']})" if run["paper_source"] else "—"
    notes = [n for n in (run["paper_net"], run["paper_source"]) if n]
    return f"{run['paper_error']}" + (f" ({'; '.join(notes)})" if notes else "")


def aggregate(runs: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """Rows of the table: runs that differ only in the seed merged (mean ± sample std), in first-seen order."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for run in runs:
        key = (run["setting"], run["method"], run["net"], run["data"], run["epochs"], run["paper_error"])
        groups.setdefault(key, []).append(run)
    rows = []
    for members in groups.values():
        first = members[0]
        rows.append(
            {
                "setting": f"`{first['setting']}`",
                "method": first["method"],
                "net": first["net"],
                "data": first["data"],
                "epochs": str(first["epochs"]),
                "seeds": ", ".join(str(run["seed"]) for run in members),
                "test error (%)": _mean_std([run["test_error"] for run in members], 2),
                "test ECE": _mean_std([run["test_ece"] for run in members], 3),
                "paper error (%)": _paper(first),
            }
        )
    return rows


def to_markdown(rows: Sequence[dict[str, str]], columns: Sequence[str] = _COLUMNS) -> str:
    """A markdown table of :func:`aggregate`'s rows (or, with ``columns=_GAN_COLUMNS``, :func:`aggregate_gan`'s)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row[column] for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the markdown table of the runs under the given directories."""
    parser = argparse.ArgumentParser(prog="python -m lightning_mixup.report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run directories or Hydra multirun directories")
    args = parser.parse_args(argv)
    try:
        runs = collect(args.paths)
        gan_runs = collect_gan(args.paths)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not runs and not gan_runs:
        print(
            "error: no finished run (none has test/acc in its metrics.csv, "
            "nor is a GAN run that reached its last epoch)",
            file=sys.stderr,
        )
        return 1
    tables = [to_markdown(aggregate(runs))] if runs else []
    tables += [to_markdown(aggregate_gan(gan_runs), _GAN_COLUMNS)] if gan_runs else []
    print("\n\n".join(tables))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
