"""Experiments built on the library, and what they share: resumable stages in a workdir.

Each experiment module has a config dataclass (built from a `configs/*.py` ConfigDict with
`bort_jax.config.from_config`, so an unknown key is an error naming its dotted path) and one
entry point `run(config, workdir=None) -> report`; `scripts/*.py` are thin absl mains.

    agora_torus   Agora on a toy manifold where the answer is known (docs/agora.md section 4)
    agora_glue    Agora vs plain fine-tuning of a small student on SST-2 / RTE / MRPC, with
                  controls and paired intervals; one table over several runs (docs/agora.md)
    method_audit  the FPTAS, the published interval algorithm and random search vs exhaustive
    error_audit   does the proxy error e predict downstream task error (docs/error_signal.md)
    eps_budget    rank stability and proxy evaluations per ε (docs/eps_budget.md)
    choice_stability  the extraction's pick over seeds and over T and 2T proxy steps, and
                  what ε promises then (docs/eps_budget.md section 5)
    bort_pipeline extract -> baselines (random, exhaustive, layer drop) -> sliced / KD-pretrained
                  students -> fine-tune (grid, 3 seeds) -> compare (a package)

Reliability. An experiment killed at any point (SIGKILL included) and rerun with the same
config and workdir ends with the same results as an uninterrupted run:

  * every finished stage (a task, a seed) leaves one JSON file, written atomically
    (`files.atomic_write_json`); a rerun loads it instead of recomputing (`stage`);
  * training inside an unfinished stage resumes from its Orbax checkpoints through
    `bort_jax.train.train`, whose resume is bit-exact; checkpoints of a finished stage are
    deleted once its JSON exists (`drop_dir`);
  * everything else (data, splits, synthetic points) is a deterministic function of the
    config and is recomputed;
  * the workdir remembers its config (`open_workdir`): a rerun with another config is refused
    instead of mixing results.

Wall-clock fields are named `seconds`; they are the only fields a rerun may change.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from absl import logging

from bort_jax import agora, files, sharding
from bort_jax.config import ConfigError, from_config, to_plain
from bort_jax.tasks.metrics import spearman  # noqa: F401  (the experiments' rank correlation)

T = TypeVar("T")
CONFIG_FILE = "config.json"


# ---------------------------------------------------------------------------- small tools


def log(message: str) -> None:
    """One progress line, logged at INFO (absl: stderr; stdout is left to the scripts' final
    report)."""
    logging.info("%s", message)


def parse_list(text: str, cast: Callable[[str], T] = str) -> list[T]:
    """'a, b,c' -> [cast('a'), cast('b'), cast('c')] (empty items dropped)."""
    return [cast(x.strip()) for x in str(text).split(",") if x.strip()]


def parse_seeds(text: str, where: str = "config.seeds") -> list[int]:
    """Comma-separated seeds; ConfigError when empty or repeated."""
    try:
        seeds = parse_list(text, int)
    except ValueError as e:
        raise ConfigError(f"{where}={text!r}: {e}") from e
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}={text!r}: give distinct comma-separated integers")
    return seeds


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one value)."""
    x = np.asarray(values, np.float64)
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0


def jsonable(x: Any) -> Any:
    """Plain JSON data: numpy scalars / arrays -> Python numbers / lists, tuples -> lists."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    return x


def without_seconds(x: Any) -> Any:
    """`x` with every 'seconds' entry removed (the wall-clock fields), recursively."""
    if isinstance(x, Mapping):
        return {k: without_seconds(v) for k, v in x.items() if k != "seconds"}
    if isinstance(x, list):
        return [without_seconds(v) for v in x]
    return x


def agora_config(
    section: Mapping[str, Any], seed: int, where: str = "config.agora"
) -> agora.AgoraConfig:
    """`AgoraConfig` from a config section (every field but `seed`; max_synthetic 0 = no cap).

    Raises:
        ConfigError: an unknown key (named with its dotted path), a bad value, or a `seed`
            key (the experiment's seeds set it).
    """
    values = dict(to_plain(section))
    if "seed" in values:
        raise ConfigError(
            f"{where}.seed: Agora's seed is the experiment seed (config.seeds); remove it"
        )
    values["max_synthetic"] = values.get("max_synthetic") or None
    return from_config(agora.AgoraConfig, dict(values, seed=seed), where)


# ------------------------------------------------------------------------------ workdir


def open_workdir(workdir: str | os.PathLike | None, config: Any) -> Path | None:
    """Create `workdir` and record `config` in it, or check a rerun uses the same config.

    A workdir that holds nothing but its config.json (a run that failed before producing
    anything, e.g. on a wrong data path) takes the new config. Returns the workdir as a Path
    (None stays None: nothing is written, nothing resumes).

    Raises:
        ValueError: the workdir holds results of a different config.
    """
    if workdir is None:
        return None
    path = Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    plain = jsonable(to_plain(config))
    saved = path / CONFIG_FILE
    if saved.is_file():
        before = json.loads(saved.read_text())
        results = [p for p in path.iterdir() if p.name != CONFIG_FILE]
        if before == plain:
            return path
        if results:
            changed = sorted(k for k in set(before) | set(plain) if before.get(k) != plain.get(k))
            raise ValueError(
                f"{path} holds a run of another config (differs in "
                f"{', '.join(changed)}); rerun it unchanged or use a new --workdir"
            )
    files.atomic_write_json(saved, plain)
    return path


def stage(path: Path | None, compute: Callable[[], Mapping[str, Any]]) -> dict:
    """The result of one resumable stage: loaded from `path` if it exists, else computed and
    written there atomically. Either way it comes back through JSON, so a loaded stage and
    a computed one are the same data (numpy types become Python ones, tuples lists)."""
    if path is not None and path.is_file():
        return json.loads(path.read_text())
    text = json.dumps(jsonable(compute()), indent=2)
    if path is not None:
        files.atomic_write_text(path, text)
    return json.loads(text)


def drop_dir(path: Path | None) -> None:
    """Delete a finished stage's working files (checkpoints); a missing one is fine. Process 0
    only (the directory is shared by every host of a multi-host run)."""
    if path is not None and sharding.is_primary() and path.exists():
        shutil.rmtree(path)


def subdir(workdir: Path | None, *parts: str) -> Path | None:
    """workdir / parts, or None without a workdir."""
    return None if workdir is None else workdir.joinpath(*parts)


def write_report(workdir: Path | None, name: str, report: Mapping[str, Any], markdown: str) -> None:
    """`name`.json (the report) and `name`.md (its tables), atomically; written last, so
    their presence marks a finished run."""
    if workdir is None:
        return
    files.atomic_write_json(workdir / f"{name}.json", jsonable(report))
    files.atomic_write_text(workdir / f"{name}.md", markdown)
