"""The notebooks run top to bottom on the CPU in a kernel of this interpreter, and are committed without outputs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
EXPECTED = ["01_decision_boundaries", "02_mask_gallery", "03_gan_mixup", "04_your_own_module", "05_segmentation"]
CELL_TIMEOUT_S = 300


@pytest.fixture(scope="session")
def jupyter_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Jupyter data folder whose ``python3`` kernel runs this interpreter (``sys.executable``): put first on
    ``JUPYTER_PATH``, it wins over any ``python3`` kernel of the user or the system."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter")
    install(kernel_name="python3", prefix=str(prefix))
    return prefix / "share" / "jupyter"


def test_every_notebook_is_found() -> None:
    assert set(EXPECTED) <= {path.stem for path in NOTEBOOKS}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_top_to_bottom(
    path: Path, tmp_path: Path, jupyter_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # pytest -n 2 runs two kernels on two cores
    notebook = nbformat.read(path, as_version=4)
    check = f"import sys\nassert sys.prefix == {sys.prefix!r}, f'kernel runs {{sys.executable}}'"
    notebook.cells.insert(0, nbformat.v4.new_code_cell(check))
    client = NotebookClient(
        notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError with the cell and its traceback
    out = os.environ.get("LIGHTNING_MIXUP_NOTEBOOKS_OUT")
    if out:  # the executed copy, for the documentation site (.ci/run sets it; the docs build renders it)
        notebook.cells.pop(0)
        Path(out).mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, Path(out) / path.name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"{path.name}: clear the outputs before committing"
            )
    assert path.stat().st_size < 30_000
