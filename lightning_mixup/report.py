"""Collect the final test metrics of finished runs into one markdown table, beside the papers' numbers.

``python -m lightning_mixup.report outputs/2026-01-01/12-00-00 multirun/2026-01-02/08-00-00``

A run directory is what ``python -m lightning_mixup.train`` writes: ``.hydra/config.yaml``,
``.hydra/overrides.yaml`` and the CSV logger's ``csv/version_*/metrics.csv``. A Hydra multirun directory
(with ``multirun.yaml``) stands for its numbered job directories. Runs whose overrides differ only in the
seed form one row, with the mean ± sample standard deviation over the seeds. The paper's number comes from
the experiment preset's top-level ``paper`` key (``paper: {error: 4.2, source: ...}``), see ``conf/experiment/``.
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
    skipped with a warning.

    Example:
        >>> collect(["multirun/2026-01-02/08-00-00"])[0]["test_error"]  # doctest: +SKIP
        4.31
    """
    runs = []
    for path in paths:
        for run in _run_dirs(Path(path)):
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


def to_markdown(rows: Sequence[dict[str, str]]) -> str:
    """A markdown table of :func:`aggregate`'s rows."""
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    lines += ["| " + " | ".join(row[column] for column in _COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the markdown table of the runs under the given directories."""
    parser = argparse.ArgumentParser(prog="python -m lightning_mixup.report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run directories or Hydra multirun directories")
    args = parser.parse_args(argv)
    try:
        runs = collect(args.paths)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not runs:
        print("error: no finished run (none has test/acc in its metrics.csv)", file=sys.stderr)
        return 1
    print(to_markdown(aggregate(runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
