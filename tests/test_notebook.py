"""notebooks/colab.ipynb: committed without outputs, and run top to bottom with nbclient on the
CPU, as a student runs it in Colab, with tiny settings passed in through its parameters cell."""

from __future__ import annotations

import subprocess

import nbformat
import pytest

from conftest import ROOT, commit_all, copy_project, venv_env

NOTEBOOK = ROOT / "notebooks" / "colab.ipynb"
FIGURES = ("lr_find", "training_curves", "confusion", "misclassified", "gradcam")


def test_the_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert all(cell.source.startswith("# ") for cell in code)  # each says what it does
    assert [c for c in code if "parameters" in c.metadata.get("tags", [])] == [code[0]]


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom(tmp_path, cifar_npz, monkeypatch):
    from nbclient import NotebookClient

    project = copy_project(tmp_path / "project")  # what `git clone` of the project brings
    for rel in ("Makefile", "requirements.txt", "pyproject.toml"):
        (project / rel).write_bytes((ROOT / rel).read_bytes())
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    commit_all(project, "project")
    tiny = (f"-S data.source={cifar_npz} -S data.train_subset=500 -S data.test_subset=200 "
            "-S model.width_multiplier=0.125 -S lr_find.num_iter=10 -S recipe.batch_size=100 "
            "-S train.epochs=2 -S train.peak_epoch=1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(first + 1, nbformat.v4.new_code_cell(
        f"REPO = {str(project)!r}\nINSTALL = False\nRUN = {'dvc exp run ' + tiny!r}\n"
        "EXPERIMENT = '-S train.max_lr=0.01'"))
    for name in ("PATH", "DVC_NO_ANALYTICS"):  # the kernel's `!dvc ...` finds this venv's dvc
        monkeypatch.setenv(name, venv_env()[name])
    workdir = tmp_path / "colab"
    workdir.mkdir()
    # Raises CellExecutionError, naming the cell, if any cell fails (sh() raises on a failed
    # command); a generous bound per cell for a busy machine.
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()

    clone = workdir / "resnet9-cifar10"
    for name in FIGURES:
        assert (clone / "plots" / f"{name}.png").stat().st_size > 0
    assert (clone / "cams" / "test0.png.gradcam.png").is_file()
    shown = [o for cell in nb.cells for o in cell.get("outputs", [])
             if "image/png" in o.get("data", {})]
    assert len(shown) == len(FIGURES) + 1  # the five figures and the Grad-CAM, inline
    last = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "accuracy" in last  # dvc metrics diff after the experiment
