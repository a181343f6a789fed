"""Optimal subarchitecture extraction end to end (arXiv 2010.08512 applied as in 2010.10499).

`extract(config, workdir)`:
  1. validates everything (checkpoints exist, grid valid and sliceable, ε ∈ (0, 1), output
     directory writable) before any work;
  2. loads the source (whose sub-architectures are searched) and the teacher, prepares the
     proxy-training data and the teacher's outputs once (`distill.prepare`, cached on disk);
  3. p(ξ) = exact parameter count (`arch.param_count`), i(ξ) = measured median forward latency
     on this device (`latency`) or analytic FLOPs, e(ξ) = `proxy.proxy_error`;
  4. runs the FPTAS (`search.fptas`) — every finished candidate is stored on disk under
     `workdir/candidates/<config-hash>/`, so a killed search resumes without recomputing
     anything and a changed config never reuses stale entries;
  5. writes the report (Markdown, JSON, PNGs), the AB^nC check, the chosen architecture as a
     ready pretraining config, and its weights sliced from the source in HF format.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import jax

from bort_jax import arch as A
from bort_jax import distill, hf, latency, proxy
from bort_jax.data import mlm
from bort_jax.models.bert import slice_params, slice_params_check
from bort_jax.search import fptas as F
from bort_jax.search import report, space


def _to_plain(x):
    if hasattr(x, "to_dict"):
        x = x.to_dict()
    if isinstance(x, dict):
        return {k: _to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_plain(v) for v in x]
    return x


def config_hash(config, keys: tuple[str, ...]) -> str:
    """Hash of the parts of the config that change e(ξ) (data, teacher, proxy settings)."""
    plain = _to_plain(config)
    parts = {k: plain.get(k) for k in keys}
    parts["error_version"] = ERROR_VERSION
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Bumped whenever the definition of e(ξ) changes, so cached errors of an old definition are
# never reused (2: output-layer hidden term).
ERROR_VERSION = 2
ERROR_KEYS = ("source_dir", "teacher_dir", "corpus", "seq_len", "max_sequences",
              "heldout_fraction", "proxy", "data_seed")


class CandidateCache:
    """One JSON file per finished candidate under `root` (written atomically).

    An entry holds the error, the held-out metrics and a checksum of both; a missing,
    unparsable or mismatching entry is treated as absent and recomputed.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.metrics: dict[str, dict] = {}

    def _path(self, key: str) -> Path:
        safe = "".join(c if c.isalnum() else "_" for c in key)
        return self.root / f"{safe}.json"

    @staticmethod
    def _checksum(entry: dict) -> str:
        return hashlib.sha256(json.dumps([entry["key"], entry["error"], entry["metrics"]],
                                         sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> float | None:
        try:
            entry = json.loads(self._path(key).read_text())
            if entry["key"] != key or entry["checksum"] != self._checksum(entry):
                return None
            self.metrics[key] = entry["metrics"]
            return float(entry["error"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, value: float, metrics: dict | None = None) -> None:
        metrics = metrics if metrics is not None else self.metrics.get(key, {})
        entry = {"key": key, "error": float(value), "metrics": metrics}
        entry["checksum"] = self._checksum(entry)
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(entry, f)
        os.replace(tmp, self._path(key))

    def __len__(self) -> int:
        return len(list(self.root.glob("*.json")))


def build_space(config) -> space.SearchSpace:
    """The search space Ξ from `config.grid` (ValueError naming a bad field)."""
    g = config.grid
    axes = {}
    for name in ("depth", "heads", "hidden", "intermediate"):
        values = tuple(int(v) for v in g[name])
        if not values or min(values) <= 0:
            raise ValueError(f"config.grid.{name} must be a non-empty list of positive ints, "
                             f"got {list(g[name])}")
        axes[name] = values
    head_dim = g.get("head_dim") or 0

    def valid(f):
        if f["hidden"] % f["heads"]:
            return False
        return not head_dim or f["hidden"] == f["heads"] * head_dim

    # Axes that take part in the partial order ⪯ of assumption M ("bigger is not worse");
    # an axis the audit shows M fails on can be taken out (then only equal values compare).
    monotone = {"heads": bool(g.get("monotone_heads", False) or head_dim),
                "depth": bool(g.get("monotone_depth", True)),
                "hidden": bool(g.get("monotone_hidden", True)),
                "intermediate": bool(g.get("monotone_intermediate", True))}
    sp = space.grid(valid=valid, factory=A.Arch, monotone=monotone, type_name="Arch", **axes)
    sp.candidates()  # raises if nothing is valid
    bad = [(h, a) for h in axes["hidden"] for a in axes["heads"] if h % a]
    if bad and g.get("strict", False):
        raise ValueError(f"config.grid: hidden not divisible by heads for {bad}")
    return sp


def validate(config, workdir: str) -> None:
    """Every check that can fail before work starts."""
    if not 0 < config.eps < 1:
        raise ValueError(f"config.eps={config.eps} must lie in (0, 1)")
    if config.s < 1:
        raise ValueError(f"config.s={config.s} must be >= 1")
    if config.method not in ("fptas", "exhaustive"):
        raise ValueError(f"config.method={config.method!r}; use 'fptas' or 'exhaustive'")
    if config.inference not in ("measured", "flops"):
        raise ValueError(f"config.inference={config.inference!r}; use 'measured' or 'flops'")
    if config.get("require_source") and not config.source_dir:
        raise ValueError("config.source_dir is required by this config (the source model's HF "
                         "directory, e.g. bert-large-uncased)")
    for key in ("source_dir", "teacher_dir"):
        path = config.get(key)
        if path and not (Path(path) / "config.json").is_file():
            raise FileNotFoundError(f"config.{key}={path}: no checkpoint (config.json) there")
    proxy.config_from_dict(config.proxy)
    build_space(config)
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir):
            pass
    except OSError as e:
        raise PermissionError(f"output directory {workdir} is not writable: {e}") from e


def _source_dir(config) -> str:
    return config.source_dir or hf.minilm_path()


def _teacher_dir(config) -> str:
    return config.teacher_dir or _source_dir(config)


@dataclasses.dataclass
class Problem:
    """Everything a search needs: the space and the p, i, e callables (e cached on disk)."""

    space: space.SearchSpace
    p: Any
    i: Any
    e: Any
    cache: CandidateCache
    source: hf.Checkpoint
    spec: A.Spec
    data: Any
    config_hash: str


def _latency_fn(config, spec: A.Spec, workdir: str):
    """i(ξ): analytic FLOPs, or the measured median latency cached in workdir (so a resumed
    search or an audit compares candidates under the same measured i)."""
    if config.inference == "flops":
        return lambda a: float(A.flops(a, config.latency_seq_len, spec=spec))
    key = f"{config.latency_batch}x{config.latency_seq_len}_r{config.latency_repeats}"
    path = Path(workdir) / f"latency_{key}.json"
    store: dict[str, float] = {}
    if path.is_file():
        try:
            store = {k: float(v) for k, v in json.loads(path.read_text()).items()}
        except (ValueError, AttributeError):
            store = {}

    def i(a: A.Arch) -> float:
        k = F.candidate_key(a)
        if k not in store:
            store[k] = latency.forward_latency(a, spec, config.latency_batch,
                                               config.latency_seq_len,
                                               repeats=config.latency_repeats)
            fd, tmp = tempfile.mkstemp(dir=workdir, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(store, f, indent=1)
            os.replace(tmp, path)
        return store[k]

    return i


def build_problem(config, workdir: str) -> Problem:
    """Validate, load checkpoints, prepare data + teacher outputs; p, i, e for the search."""
    validate(config, workdir)
    if config.get("compilation_cache", True):
        jax.config.update("jax_compilation_cache_dir",
                          os.path.join(os.path.abspath(workdir), "jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    source_dir, teacher_dir = _source_dir(config), _teacher_dir(config)
    source = hf.load(source_dir)
    teacher = distill.Teacher.load(teacher_dir) if teacher_dir != source_dir else \
        distill.Teacher(source, hf.load_tokenizer(source_dir))
    pcfg = proxy.config_from_dict(config.proxy)
    sp = build_space(config)
    if pcfg.init == "slice":
        if teacher_dir != source_dir:
            mlm.check_vocab_compat(source_dir, teacher_dir)  # sliced embeddings need one vocab
        for c in sp.candidates():
            slice_params_check(source.arch, c)
    # Students speak the teacher's vocabulary (Bort: BERT-large shapes, RoBERTa BPE vocab).
    spec = teacher.checkpoint.spec
    data = distill.prepare(teacher, teacher_dir, config.corpus, config.seq_len,
                           max_sequences=config.max_sequences,
                           heldout_fraction=config.heldout_fraction, seed=config.data_seed,
                           want_logits=pcfg.kd.logit > 0,
                           cache_dir=os.path.join(workdir, "teacher_cache"))
    chash = config_hash(config, ERROR_KEYS)
    cache = CandidateCache(Path(workdir) / "candidates" / chash)

    def p(a: A.Arch) -> float:
        return A.param_count(a, spec)["total"]

    def e(a: A.Arch) -> float:
        r = proxy.proxy_error(a, data, spec, pcfg, source=source)
        cache.metrics[F.candidate_key(a)] = dict(r.metrics, train_seconds=r.train_seconds)
        return r.error

    return Problem(sp, p, _latency_fn(config, spec, workdir), e, cache, source, spec, data,
                   chash)


def search_kwargs(config, eps: float | None = None) -> dict:
    """The FPTAS options of `config` (objective, ε, s, assumptions)."""
    kwargs = dict(eps=config.eps if eps is None else eps, s=config.s,
                  monotonicity_slack=config.monotonicity_slack)
    if config.convex:
        kwargs["convex_in"] = lambda a: math.log(A.encoder_params(a))
    if config.get("max_evaluations"):
        kwargs["max_evaluations"] = config.max_evaluations
    return kwargs


def extract(config, workdir: str) -> dict[str, Any]:
    """Run the search; returns a summary dict (also written to `workdir/summary.json`)."""
    t_start = time.perf_counter()
    prob = build_problem(config, workdir)
    common = dict(objective=F.WCoefficient(**dict(config.objective)), cache=prob.cache,
                  progress=config.progress)
    if config.method == "exhaustive":
        result = F.exhaustive(prob.space, prob.p, prob.i, prob.e, **common)
    else:
        result = F.fptas(prob.space, prob.p, prob.i, prob.e, **common, **search_kwargs(config))
    return write_outputs(config, workdir, result, prob.source, prob.spec, prob.cache,
                         prob.data, prob.config_hash, time.perf_counter() - t_start)


def abnc_check(arch: A.Arch, spec: A.Spec, seq_len: int) -> F.AbncCheck:
    b = A.block_costs(arch, spec, seq_len)
    return F.check_abnc(b["A"], b["B"], b["C"], arch.depth)


def write_outputs(config, workdir: str, result, source: hf.Checkpoint, spec: A.Spec,
                  cache: CandidateCache, data, chash: str, seconds: float) -> dict:
    out = Path(workdir)
    chosen: A.Arch = result.chosen
    abnc = abnc_check(chosen, spec, config.latency_seq_len)
    paths = report.write_report(result, out, name="report", abnc=abnc,
                                title=f"OSE search ({result.method}) on {source.path}")
    try:
        slice_params_check(source.arch, chosen)
        sliced = slice_params(source.params, source.arch, chosen)
        hf.save(out / "chosen_hf", jax.device_get(sliced), chosen,
                dataclasses.replace(source.spec, pooler="pooler" in sliced),
                tokenizer_dir=source.path)
        sliced_note = f"weights sliced from the source: {out / 'chosen_hf'}"
    except ValueError as err:  # chosen is not a sub-architecture of the source
        sliced_note = f"no sliced weights: {err}"
    (out / "pretrain_config.py").write_text(PRETRAIN_TEMPLATE.format(
        arch=f"{chosen.depth},{chosen.heads},{chosen.hidden},{chosen.intermediate}",
        init_dir=str((out / "chosen_hf").resolve()), teacher_dir=_teacher_dir(config)))
    summary = {
        "chosen": str(chosen), "objective": result.objective, "method": result.method,
        "eps": config.eps, "s": config.s, "n_candidates": result.n_candidates,
        "n_evaluations": result.n_evaluations, "n_e_calls": result.n_e_calls,
        "n_cache_hits": result.n_cache_hits, "guarantee": result.guarantee.statement
        if result.guarantee else None, "abnc": {"holds": abnc.holds, "ratios": dict(abnc.ratios),
                                   "guarantee": abnc.guarantee},
        "wall_seconds": seconds, "config_hash": chash,
        "teacher_cache_hit": data.cache_hit,
        "candidate_metrics": {k: v for k, v in cache.metrics.items()},
        "report": {k: str(v) for k, v in paths.items()}, "sliced": sliced_note,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    with open(paths["markdown"], "a") as f:
        f.write(f"\n\n## Run\n\n- wall time: {seconds:.1f} s\n- proxy evaluations: "
                f"{result.n_evaluations} of {result.n_candidates} candidates "
                f"({result.n_cache_hits} from the on-disk cache)\n- config hash: {chash}\n"
                f"- chosen architecture ready to pretrain: `python scripts/pretrain.py "
                f"--config={out / 'pretrain_config.py'}`\n- {sliced_note}\n")
    return summary


PRETRAIN_TEMPLATE = '''"""Pretraining config for the architecture chosen by scripts/extract.py."""
from configs import pretrain_bort


def get_config(arg=None):
    c = pretrain_bort.get_config(arg)
    c.arch = "{arch}"
    c.init = "slice"
    c.init_dir = "{init_dir}"
    c.teacher_dir = "{teacher_dir}"
    return c
'''
