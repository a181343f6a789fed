"""The Colab notebooks (notebooks/*.ipynb), executed headless on CPU with the tiny size.

Each notebook runs in a fresh ``python3`` kernel of the current interpreter (ipykernel,
a ``dev`` extra, installs that kernelspec into the venv; jupyter_client starts it with
``sys.executable``), in a temporary directory, with ``BORT_NOTEBOOK_SIZE=tiny`` (the
``smoke`` configs) and work dirs under it. The assertions read the cells' real outputs and
compare them with the files the library wrote.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ("extraction.ipynb", "pretrain_finetune.ipynb")


def execute(name: str, cwd: Path) -> nbformat.NotebookNode:
    """Runs notebooks/<name> top to bottom in a python3 kernel; raises on any cell error."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def tagged(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    (cell,) = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    return cell


def stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def displayed(cell: nbformat.NotebookNode, mime: str) -> list:
    return [o.data[mime] for o in cell.outputs if "data" in o and mime in o.data]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_stored_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    first = code[0].source
    assert 'os.environ.get("BORT_NOTEBOOK_SIZE", "auto")' in first


@pytest.fixture(scope="module")
def extraction(tmp_path_factory, task_data_dir):
    """The extraction notebook, executed once: (notebook, its work dir, the run's dir)."""
    root = tmp_path_factory.mktemp("notebooks")
    workdir = root / "extract"
    with pytest.MonkeyPatch.context() as mp:  # The kernel inherits this environment.
        mp.setenv("BORT_NOTEBOOK_SIZE", "tiny")
        mp.setenv("BORT_NOTEBOOK_WORKDIR", str(workdir))
        return execute("extraction.ipynb", root), workdir, root


@pytest.mark.slow
def test_extraction_notebook_shows_report_and_plots(extraction):
    nb, workdir, _ = extraction
    summary = json.loads((workdir / "summary.json").read_text(encoding="utf-8"))
    chosen = summary["chosen"]
    assert re.fullmatch(r"D\d+/A\d+/H\d+/I\d+", chosen)
    devices = stdout(tagged(nb, "devices"))
    assert "cpu device(s)" in devices and "size tiny" in devices
    assert f"chosen {chosen}:" in stdout(tagged(nb, "search"))

    report = tagged(nb, "report")
    assert f"chosen architecture: {chosen}\n" in stdout(report)
    (markdown,) = displayed(report, "text/markdown")
    assert markdown == Path(summary["report"]["markdown"]).read_text(encoding="utf-8")
    assert chosen in markdown

    pngs = sorted(workdir.glob("*.png"))
    shown = displayed(tagged(nb, "plots"), "image/png")
    assert len(pngs) >= 2 and len(shown) == len(pngs)
    for png, data in zip(pngs, shown):
        assert base64.b64decode(data) == png.read_bytes()


@pytest.mark.slow
def test_pretrain_finetune_notebook_scores(extraction, task_data_dir, monkeypatch):
    _, extract_dir, root = extraction
    chosen = json.loads((extract_dir / "summary.json").read_text(encoding="utf-8"))["chosen"]
    workdir = root / "pretrain"
    monkeypatch.setenv("BORT_NOTEBOOK_SIZE", "tiny")
    monkeypatch.setenv("BORT_NOTEBOOK_WORKDIR", str(workdir))
    monkeypatch.setenv("BORT_NOTEBOOK_EXTRACT_DIR", str(extract_dir))
    monkeypatch.setenv("BORT_NOTEBOOK_DATA_DIR", str(task_data_dir))
    nb = execute("pretrain_finetune.ipynb", root)

    pre = json.loads((workdir / "pretrain" / "summary.json").read_text(encoding="utf-8"))
    assert pre["arch"] == chosen  # The extraction's choice is what was pretrained.
    assert f"pretrained {chosen} (" in stdout(tagged(nb, "pretrain"))
    (curve,) = displayed(tagged(nb, "curve"), "image/png")
    assert base64.b64decode(curve) == (workdir / "pretrain" / "loss_curve.png").read_bytes()

    cell = tagged(nb, "finetune")
    match = re.search(r"^sst2 dev (\w+) = ([0-9.]+)$", stdout(cell), re.M)
    assert match, stdout(cell)
    metric, score = match[1], float(match[2])
    assert 0.0 <= score <= 1.0
    result = json.loads((workdir / "ft_sst2" / "metrics.json").read_text(encoding="utf-8"))
    assert metric == result["primary_metric"]
    assert score == pytest.approx(result["best"][metric], abs=5e-5)
    (table,) = displayed(cell, "text/markdown")
    assert f"| sst2 | {metric} | {score:.4f} | {result['best_step']} |" in table
