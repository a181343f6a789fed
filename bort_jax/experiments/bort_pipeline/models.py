"""The models the pipeline compares: the search's picks, the baselines, their two inits.

`roles` (stage `roles.json`) names every architecture the report compares:

  chosen      the extraction's pick (the FPTAS, section `extract`);
  smallest /  the candidates of the grid with the fewest / most parameters;
  largest
  random      random search's pick at the FPTAS's number of proxy evaluations (seeded by
              `config.seed`; `search.random_search` on the same cached evaluator, so the
              candidates the FPTAS already evaluated are free);
  exhaustive  the W optimum over every candidate (`fptas.exhaustive`; only the candidates
              missing from the extraction cache are evaluated);
  layerdrop   the source with layers dropped: every k-th layer kept (`models.compress`), k the
              smallest one whose inference cost i (the extraction's i: its latency model, or
              FLOPs) is ≤ the chosen shape's.

It also stores the table of (candidate, p, i, e) the picks were computed from. A `Student` is
one distinct (architecture, init) pair — roles sharing both share every run — and each one is
fine-tuned twice: "sliced" (the source's weights sliced / its layers dropped, no pretraining)
and "kd" (that init KD-pretrained with section `pretrain`); a student of the source's own shape
sliced from it is the source, so its "sliced" model is the source's row (roles joined).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from bort_jax import extract, files, hf, hub, pretrain
from bort_jax.arch import Arch, param_count
from bort_jax.experiments import stage
from bort_jax.extract_config import ExtractConfig
from bort_jax.models import compress
from bort_jax.search import candidate_key
from bort_jax.search import fptas as F
from bort_jax.search.options import SearchOptions
from bort_jax.search.random_search import RandomOptions, random_search
from bort_jax.tasks import get_task
from bort_jax.tasks.loading import load_examples

SEARCH_ROLES = ("chosen", "smallest", "largest", "random", "exhaustive")
ROLES = SEARCH_ROLES + ("layerdrop",)


def arch_tag(arch: Arch) -> str:
    return f"D{arch.depth}_A{arch.heads}_H{arch.hidden}_I{arch.intermediate}"


def arch_arg(arch: Arch) -> str:
    return f"{arch.depth},{arch.heads},{arch.hidden},{arch.intermediate}"


# --- the only lines that read the extraction config (section `extract`) -------------------
def source_dir(config: Any) -> str:
    """The source checkpoint's local directory (hub ids resolved; '' = all-MiniLM-L6-v2)."""
    return hub.resolve(config.extract.source_dir) or hf.minilm_path()


def teacher_dir(config: Any) -> str:
    return hub.resolve(config.extract.teacher_dir) or source_dir(config)


def search_problem(config: Any, extract_dir: Path) -> tuple[Any, F.WCoefficient]:
    """(extract.Problem on the extraction's own workdir and cache, its W coefficient)."""
    problem = extract.build_problem(config.extract, str(extract_dir))
    return problem, ExtractConfig.from_config(config.extract).objective.coefficient()


# -------------------------------------------------------------------------------------------


def pick_layer_drop(source: Arch, i_fn, i_limit: float) -> dict[str, Any]:
    """Smallest k whose keep-every-k model has i ≤ `i_limit` (else k = depth: one layer)."""
    for k in range(1, source.depth + 1):
        keep = compress.keep_every(k, source.depth)
        arch = compress.dropped_arch(source, keep)
        if i_fn(arch) <= i_limit:
            return {"k": k, "keep": keep, "arch": str(arch), "i": i_fn(arch), "meets": True}
    keep = compress.keep_every(source.depth, source.depth)
    arch = compress.dropped_arch(source, keep)
    return {"k": source.depth, "keep": keep, "arch": str(arch), "i": i_fn(arch), "meets": False}


def compute_roles(config: Any, root: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """The `roles.json` stage (see the module docstring)."""
    prob, objective = search_problem(config, root / "extract")
    cands = prob.space.candidates()
    table = [
        {"arch": str(c), "key": candidate_key(c), "p": prob.p(c), "i": prob.i(c)} for c in cands
    ]
    n = int(summary["n_evaluations"])
    rnd = random_search(
        prob.space,
        prob.p,
        prob.i,
        prob.e,
        RandomOptions(n=n, seed=int(config.seed), objective=objective, cache=prob.cache),
    )
    exh = F.exhaustive(
        prob.space,
        prob.p,
        prob.i,
        prob.e,
        objective=objective,
        options=SearchOptions(cache=prob.cache),
    )
    e_of = {str(ev.candidate): ev.e for ev in exh.evaluations}
    w_of = {str(ev.candidate): ev.objective for ev in exh.evaluations}
    for row in table:
        row["e"], row["w"] = e_of[row["arch"]], w_of[row["arch"]]
    chosen = Arch.parse(summary["chosen"])
    size = lambda a: param_count(a, prob.spec)["total"]  # noqa: E731
    return {
        "chosen": str(chosen),
        "smallest": str(min(cands, key=size)),
        "largest": str(max(cands, key=size)),
        "random": str(rnd.chosen),
        "exhaustive": str(exh.chosen),
        "random_search": {
            "n": n,
            "seed": int(config.seed),
            "e_calls": rnd.n_e_calls,
            "cache_hits": rnd.n_cache_hits,
            "drawn": [str(ev.candidate) for ev in rnd.evaluations],
        },
        "exhaustive_search": {
            "n": exh.n_evaluations,
            "e_calls": exh.n_e_calls,
            "cache_hits": exh.n_cache_hits,
        },
        "fptas": {"n": n, "objective": summary["objective"]},
        "layerdrop": dict(
            pick_layer_drop(prob.source.arch, prob.i, prob.i(chosen)),
            source=str(prob.source.arch),
            i_chosen=prob.i(chosen),
        ),
        "table": table,
    }


@dataclasses.dataclass(frozen=True)
class Student:
    """One distinct (arch, init): base 'source' (sliced from it) or 'layerdrop'."""

    roles: tuple[str, ...]
    arch: Arch
    base: str

    @property
    def tag(self) -> str:
        return f"{self.base}_{arch_tag(self.arch)}"


@dataclasses.dataclass(frozen=True)
class Model:
    """One fine-tuned model: a student's variant ('sliced' | 'kd') or the source."""

    key: str  # directory name, unique
    roles: tuple[str, ...]
    variant: str  # sliced | kd | source
    arch: Arch
    init_dir: str
    arch_arg: str  # FinetuneConfig.arch: slice init_dir to this shape ('' = as is)

    @property
    def name(self) -> str:
        return "=".join(self.roles) + ("" if self.variant == "source" else f" ({self.variant})")


def students(roles: dict[str, Any]) -> list[Student]:
    """Roles grouped by (arch, init): those sharing both share every run."""
    by: dict[tuple[Arch, str], list[str]] = {}
    for role in SEARCH_ROLES:
        by.setdefault((Arch.parse(roles[role]), "source"), []).append(role)
    by.setdefault((Arch.parse(roles["layerdrop"]["arch"]), "layerdrop"), []).append("layerdrop")
    return [Student(tuple(r), arch, base) for (arch, base), r in by.items()]


def layer_drop_init(config: Any, roles: dict[str, Any], out: Path) -> str:
    """The source with only the kept layers, as an HF directory (written once)."""
    if not (out / "config.json").is_file():
        source = hf.load(source_dir(config))
        keep = roles["layerdrop"]["keep"]
        params = compress.drop_layers(jax.device_get(source.params), keep)
        arch = compress.dropped_arch(source.arch, keep)
        hf.save(out, params, arch, source.spec, tokenizer_dir=source.path)
    return str(out)


TASKS_CORPUS = "tasks"  # config.pretrain.corpus: the unlabelled training text of config.tasks


def task_corpus(config: Any, path: Path) -> str:
    """The training text of every task in `config.tasks`, labels dropped, as one corpus file
    (written once, atomically): each example (text_a, then text_b) one document, in an order
    shuffled by `config.seed`. KD pretraining on it adapts the student to the tasks' domain
    without their labels (the pipeline's default `pretrain.corpus = "tasks"`)."""
    if not path.is_file():
        docs = []
        for name in [t for t in config.tasks.split(",") if t]:
            task = get_task(name)
            for ex in load_examples(task, "train", config.data_dir, config.finetune.tfds_data_dir):
                docs.append(ex.text_a if ex.text_b is None else f"{ex.text_a} {ex.text_b}")
        order = np.random.default_rng(int(config.seed)).permutation(len(docs))
        text = "\n\n".join(" ".join(docs[i].split()) for i in order) + "\n"
        files.atomic_write_text(path, text)
    return str(path)


def kd_pretrain(config: Any, student: Student, init_dir: str, root: Path) -> str:
    """KD-pretrain `student` from `init_dir` (resumable); returns its export directory."""
    out = root / "pretrain" / student.tag
    if not (out / "summary.json").is_file():
        cfg = ml_collections.ConfigDict(config.pretrain.to_dict())
        if cfg.corpus == TASKS_CORPUS:
            cfg.corpus = task_corpus(config, root / "corpus" / "tasks.txt")
        cfg.arch = arch_arg(student.arch)
        cfg.init_method, cfg.init = "slice", init_dir
        cfg.teacher_dir = teacher_dir(config)
        cfg.cache_dir = cfg.cache_dir or str(root / "teacher_cache")
        pretrain.pretrain(cfg, str(out))
    return str(out / "export")


def build_models(config: Any, root: Path, roles: dict[str, Any]) -> list[Model]:
    """Every student sliced and KD-pretrained, then the source (last)."""
    src_dir = source_dir(config)
    source_arch = hf.load(src_dir).arch
    models, source_roles = [], ("source",)
    for s in students(roles):
        if s.base == "layerdrop":
            init = layer_drop_init(config, roles, root / "layerdrop_init")
            models.append(Model(f"sliced_{s.tag}", s.roles, "sliced", s.arch, init, ""))
        elif s.arch == source_arch:  # sliced to its own shape it is the source: one model
            init, source_roles = src_dir, source_roles + s.roles
        else:
            init = src_dir
            models.append(
                Model(f"sliced_{s.tag}", s.roles, "sliced", s.arch, init, arch_arg(s.arch))
            )
        models.append(
            Model(f"kd_{s.tag}", s.roles, "kd", s.arch, kd_pretrain(config, s, init, root), "")
        )
    models.append(Model("source", source_roles, "source", source_arch, src_dir, ""))
    return models


def roles_stage(config: Any, root: Path, summary: dict[str, Any]) -> dict[str, Any]:
    return stage(root / "roles.json", lambda: compute_roles(config, root, summary))
