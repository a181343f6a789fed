"""Optimal subarchitecture extraction end to end (arXiv 2010.08512 applied as in 2010.10499).

`extract(config, workdir)`, `config` an `ExtractConfig` (or its ConfigDict, configs/default.py):
  1. validates everything (checkpoints exist, grid valid and sliceable, ε ∈ (0, 1), output
     directory writable) before any work;
  2. loads the source (whose sub-architectures are searched) and the teacher, prepares the
     proxy-training data and the teacher's outputs once (`distill.prepare`, cached on disk);
  3. p(ξ) = exact parameter count (`arch.param_count`), i(ξ) = the prediction of a latency
     model calibrated once on this device (below) or analytic FLOPs, e(ξ) = `proxy.proxy_error`;
  4. runs the FPTAS (`search.fptas`) — every finished candidate is stored on disk under
     `workdir/candidates/<config-hash>/`, so a killed search resumes without recomputing
     anything and a changed config never reuses stale entries;
  5. writes the report (Markdown, JSON, PNGs), the AB^nC check, the chosen architecture as a
     ready pretraining config, and its weights sliced from the source in HF format.

Reproducibility of i(ξ) (`inference="measured"`, the default). Measuring every candidate's
latency made the search follow machine noise: on a shared, loaded 2-core CPU machine two
measurements of the same shape differed by up to 36 % (and by far more under load), enough to
reorder candidates by W and change which ones the FPTAS evaluates, so two runs of one config
chose and reported differently. Now `latency_points` calibration shapes (spread evenly over the
grid's FLOP range, both ends included) are measured once, a non-negative least-squares model

    t(ξ) = c_call + c_layer·D + c_mm·matmul FLOPs + c_sm·B·D·A·L² + c_w·encoder weight bytes

is fitted on the relative error (`latency.LatencyModel`), stored as JSON (default
`workdir/latency_model_<B>x<L>_r<R>_k<K>.json`, or the path `config.latency_model`), and i(ξ)
is its prediction: a pure function of ξ and the stored coefficients. A rerun or a resume in the
same workdir, an audit of it, and any extraction pointed at the same `latency_model` file see
bit-identical i(ξ), hence (e being deterministic for a fixed seed) the same evaluation sequence,
choice and report. Two fresh workdirs without a shared model calibrate separately and their
models differ by the calibration's measurement noise; rounding cannot fix that (to absorb a
noise of tens of percent it would have to discard what was measured), so runs that must compare
share the model file — the tests do exactly that. In a multi-process run process 0 alone
calibrates and stores the model, and every process loads that one file after a barrier.

What it costs in fidelity, measured on the default grid (24 candidates, 1 × 128 tokens) on the
same 2-core machine under load average 5–7: three runs each measured every candidate (median of
5). Against the median of the two other runs, a raw measurement was off by 28–50 % on average
(max 112–250 %, rank correlation 0.90–0.94); the model fitted to one run's 8 calibration
shapes was off by 23–27 % on average (max 61–74 %, rank correlation 0.96–0.97). W depends on i
only through ratios i_ref/i, so a common factor (the machine's load level) cancels; after removing
it the model's error is 23–28 % on average (raw: 29–45 %). The default extraction's own model,
calibrated in another load period, is 40 % off in absolute terms but 21 % (max 63 %, rank
correlation 0.97) scale-free. So on this machine the model is no further from a fresh measurement
than a repeated measurement is; what it cannot represent is a shape-specific effect outside its
five features (say, one shape XLA tiles badly), and on a quiet machine that bias is what remains.
Its in-sample error is written to the report. It is also cheaper: K compilations instead of one
per candidate. A stored model is checked against the requested batch, sequence length, dtype and
device; a mismatch is an error, never a silent reuse.
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
import numpy as np

from bort_jax import arch as A
from bort_jax import compile_cache, distill, hf, hub, latency, proxy, sharding
from bort_jax import plan as cost_plan
from bort_jax.config import to_plain
from bort_jax.data import mlm
from bort_jax.extract_config import ExtractConfig
from bort_jax.files import atomic_write_json, atomic_write_text
from bort_jax.models.bert import slice_params, slice_params_check
from bort_jax.search import audit as search_audit
from bort_jax.search import budget as proxy_budget
from bort_jax.search import candidate_key, report, space
from bort_jax.search import fptas as F
from bort_jax.search.result import with_e_ref
from bort_jax.search.space import build_space


def config_hash(config: ExtractConfig, keys: tuple[str, ...]) -> str:
    """Hash of the parts of the config that change e(ξ) (data, teacher, proxy settings).

    `proxy.model` (scan_layers, remat, vocab_multiple) is left out on purpose: a scanned,
    rematerialised or vocabulary-padded student starts from the same values and computes the
    same function and gradients as the plain one (padding rows get none), so e(ξ) is the same
    up to float rounding, and a cache filled under one layout serves the others (e.g. a search
    resumed on a mesh that needs the padded vocabulary).
    """
    plain = to_plain(config)
    parts = {k: plain.get(k) for k in keys}
    if isinstance(parts.get("proxy"), dict):
        parts["proxy"] = {k: v for k, v in parts["proxy"].items() if k not in HASH_EXCLUDED}
    parts["error_version"] = ERROR_VERSION
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Bumped whenever the definition of e(ξ) changes, so cached errors of an old definition are
# never reused (2: output-layer hidden term; 3: proxy.error / head_init / proj_init; 4: the
# typed config, every proxy field hashed under its canonical name).
ERROR_VERSION = 4
HASH_EXCLUDED = ("model",)  # proxy fields that do not change e(ξ) (`config_hash`)
ERROR_KEYS = (
    "source_dir",
    "teacher_dir",
    "corpus",
    "max_seq_len",
    "max_sequences",
    "heldout_fraction",
    "proxy",
    "data_seed",
)


class CandidateCache:
    """One JSON file per finished candidate under `root` (written atomically).

    An entry holds the error, the held-out metrics and a checksum of both; a missing,
    unparsable or mismatching entry is treated as absent and recomputed.

    Multi-process: process 0 alone writes the files (`files`), every process keeps the values
    it `put` in memory and answers `get` from there first, so no process can see a file
    process 0 wrote a moment ago in this run while another does not (every process takes the
    same hits and misses, as the search's collectives need).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.metrics: dict[str, dict] = {}
        self.values: dict[str, float] = {}  # put in this run

    def _path(self, key: str) -> Path:
        safe = "".join(c if c.isalnum() else "_" for c in key)
        return self.root / f"{safe}.json"

    @staticmethod
    def _checksum(entry: dict) -> str:
        return hashlib.sha256(
            json.dumps([entry["key"], entry["error"], entry["metrics"]], sort_keys=True).encode()
        ).hexdigest()

    def get(self, key: str) -> float | None:
        if key in self.values:
            return self.values[key]
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
        self.values[key] = float(value)
        atomic_write_json(self._path(key), entry, indent=None)

    def __len__(self) -> int:
        return len(list(self.root.glob("*.json")))


def validate(config: Any, workdir: str, checkpoints: bool = True) -> ExtractConfig:
    """Every check that can fail before work starts (``checkpoints=False``: all but the
    checkpoint directories, for a cost plan made before they are downloaded); the typed config.

    The field values themselves are checked when the `ExtractConfig` is built."""
    config = ExtractConfig.from_config(config)
    if checkpoints and config.require_source and not config.source_dir:
        raise ValueError(
            "config.source_dir is required by this config (the source model's HF "
            "directory, e.g. bert-large-uncased)"
        )
    for key in ("source_dir", "teacher_dir") if checkpoints else ():
        path = getattr(config, key)
        if path and not (Path(hub.resolve(path, files=hub.CONFIG_ONLY)) / "config.json").is_file():
            raise FileNotFoundError(f"config.{key}={path}: no checkpoint (config.json) there")
    pcfg = config.proxy
    group = sharding.split_devices(config.parallel)[0]  # named error if no split
    data, fsdp, _ = config.mesh.shape(len(group))
    if len(group) > 1 and pcfg.batch_size % (data * fsdp):
        raise ValueError(
            f"config.proxy.batch_size={pcfg.batch_size} must be divisible by the "
            f"data-parallel size {data * fsdp} (mesh data x fsdp over the {len(group)} "
            "devices of each candidate)"
        )
    build_space(config.grid)
    try:
        os.makedirs(workdir, exist_ok=True)
        if sharding.is_primary():  # the process that writes the outputs
            with tempfile.NamedTemporaryFile(dir=workdir):
                pass
    except OSError as e:
        raise PermissionError(f"output directory {workdir} is not writable: {e}") from e
    return config


def _source_dir(config: ExtractConfig) -> str:
    return hub.resolve(config.source_dir) or hf.minilm_path()


def _teacher_dir(config: ExtractConfig) -> str:
    return hub.resolve(config.teacher_dir) or _source_dir(config)


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
    latency_model: latency.LatencyModel | None = None


def latency_model_path(config: ExtractConfig, workdir: str) -> Path:
    """Where the latency model of `config` is stored: `config.latency_model`, or the workdir."""
    if config.latency_model:
        return Path(config.latency_model)
    return Path(workdir) / (
        f"latency_model_{config.latency_batch}x{config.latency_seq_len}"
        f"_r{config.latency_repeats}_k{config.latency_points}.json"
    )


def latency_model(
    config: ExtractConfig, spec: A.Spec, workdir: str, candidates: list[A.Arch]
) -> latency.LatencyModel:
    """The stored latency model, or a new one calibrated on `candidates` and stored (atomic).

    One model per run, whatever the number of processes: process 0 calibrates and stores it
    (when there is none yet), all processes wait at a barrier, then every one loads the
    stored file, so i(ξ) is the same function on each (the search's choices must agree).

    Raises ValueError when a stored model is unreadable or was fitted for other settings
    (batch, sequence length, dtype, device): it is never silently replaced;
    FileNotFoundError when a process does not see the model process 0 stored (a path on a
    disk of process 0's host only).
    """
    path = latency_model_path(config, workdir)
    if sharding.is_primary() and not path.is_file():
        shapes = latency.calibration_shapes(
            candidates, spec, config.latency_seq_len, config.latency_points
        )
        model = latency.calibrate(
            shapes, spec, config.latency_batch, config.latency_seq_len, config.latency_repeats
        )
        atomic_write_json(path, model.to_json(), indent=1)
    sharding.barrier("extract/latency_model")  # stored by process 0 before anyone reads it
    if not path.is_file():
        raise FileNotFoundError(
            f"latency model {path} (stored by process 0) is not visible to this process: "
            "put the workdir or config.latency_model on a file system every process sees"
        )
    return load_latency_model(path, config)


def load_latency_model(path: Path, config: ExtractConfig) -> latency.LatencyModel:
    """The latency model stored at `path`, checked against the settings `config` asks for."""
    # what a stored model must share with the request, else its i(ξ) means another thing
    want = {
        "batch": int(config.latency_batch),
        "seq_len": int(config.latency_seq_len),
        "dtype": "float32",
        "device": latency.device_name(),
    }
    try:
        model = latency.LatencyModel.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"latency model {path} is unreadable ({err}); delete it to recalibrate"
        ) from err
    bad = {k: (model.settings.get(k), v) for k, v in want.items() if model.settings.get(k) != v}
    if bad:
        raise ValueError(
            f"latency model {path} was fitted for other settings "
            f"(stored, requested): {bad}; delete it or set "
            "config.latency_model to another path"
        )
    return model


def _latency_fn(config: ExtractConfig, spec: A.Spec, workdir: str, candidates: list[A.Arch]):
    """(i(ξ), the latency model or None): analytic FLOPs, or the calibrated model's prediction
    (so a resumed search, a rerun or an audit compare candidates under the same i)."""
    if config.inference == "flops":
        return (lambda a: float(A.flops(a, config.latency_seq_len, spec=spec))), None
    model = latency_model(config, spec, workdir, candidates)
    return (lambda a: model.predict(a, spec)), model


def build_problem(config: Any, workdir: str) -> Problem:
    """Validate, load checkpoints, prepare data + teacher outputs; p, i, e for the search."""
    config = proxy_budget.resolve_config(ExtractConfig.from_config(config))  # T(ε, s) keys cache
    validate(config, workdir)
    cost_plan.check(config, workdir)  # PlanError before any load if disk/memory cannot hold it
    cache_dir = config.compilation_cache_dir(workdir)
    if cache_dir:  # $JAX_COMPILATION_CACHE_DIR, when set, wins (compile_cache.enable)
        compile_cache.enable(cache_dir, min_compile_secs=0.5)
    source_dir, teacher_dir = _source_dir(config), _teacher_dir(config)
    source = hf.load(source_dir)
    teacher = (
        distill.Teacher.load(teacher_dir)
        if teacher_dir != source_dir
        else distill.Teacher(source, hf.load_tokenizer(source_dir))
    )
    pcfg = config.proxy
    sp = build_space(config.grid)
    if pcfg.init_method == "slice":
        if teacher_dir != source_dir:
            mlm.check_vocab_compat(source_dir, teacher_dir)  # sliced embeddings need one vocab
        for c in sp.candidates():
            slice_params_check(source.arch, c)
    # Students speak the teacher's vocabulary (Bort: BERT-large shapes, RoBERTa BPE vocab).
    spec = teacher.checkpoint.spec
    data = distill.prepare(
        teacher,
        teacher_dir,
        config.corpus,
        config.max_seq_len,
        max_sequences=config.max_sequences,
        heldout_fraction=config.heldout_fraction,
        seed=config.data_seed,
        cache_dir=os.path.join(workdir, "teacher_cache"),
        student_depths=sorted({c.depth for c in sp.candidates()}),
        kd=pcfg.kd,
    )
    chash = config_hash(config, ERROR_KEYS)
    cache = CandidateCache(Path(workdir) / "candidates" / chash)

    def p(a: A.Arch) -> float:
        return A.param_count(a, spec)["total"]

    parallel = config.parallel
    groups = sharding.DeviceGroups(parallel, config.mesh) if parallel > 1 else None
    head_dir = os.path.join(workdir, "teacher_cache")
    if pcfg.head_init == "fitted":  # fit the source's MLM head once, before any candidate
        proxy.source_with_head(source, data, pcfg.head, head_dir)

    def e(a: A.Arch) -> float:
        kwargs = dict(source=source, cache_dir=head_dir)
        if groups is None:  # one at a time, on the mesh `extract` activated (if any)
            r = proxy.proxy_error(a, data, spec, pcfg, **kwargs)
        else:  # candidate-parallel: on a free device group, in the search's worker thread
            with groups.acquire():
                r = proxy.proxy_error(a, data, spec, pcfg, **kwargs)
        cache.metrics[candidate_key(a)] = dict(r.metrics, train_seconds=r.train_seconds)
        return r.error

    i, lat_model = _latency_fn(config, spec, workdir, sp.candidates())
    return Problem(sp, p, i, e, cache, source, spec, data, chash, lat_model)


def log_encoder_params(arch: A.Arch) -> float:
    """x(ξ) of assumption C: log of the encoder's parameters (scaling laws' coordinate)."""
    return math.log(A.encoder_params(arch))


def assumptions(config: ExtractConfig) -> F.Assumptions:
    """What the search of `config` assumes about e: M with its slack, and C when `convex`."""
    convex_in = log_encoder_params if config.convex else None
    return F.Assumptions(config.monotonicity_slack, convex_in=convex_in)


def search_options(config: ExtractConfig, cache: Any = None) -> F.SearchOptions:
    """How the search of `config` runs: its budget, cache, progress and parallelism."""
    return F.SearchOptions(
        max_evaluations=config.max_evaluations or None,
        cache=cache,
        progress=config.progress,
        parallel=config.parallel,
    )


def extract(config: Any, workdir: str) -> dict[str, Any]:
    """Run the search; returns a summary dict (also written to `workdir/summary.json`)."""
    config = proxy_budget.resolve_config(ExtractConfig.from_config(config))  # search/budget.py
    if config.plan:  # print the measured cost plan and stop (bort_jax/plan/)
        validate(config, workdir, checkpoints=False)  # shapes may come from *_family
        return {"plan": cost_plan.describe(cost_plan.plan(config, workdir), workdir)}
    t_start = time.perf_counter()
    prob = build_problem(config, workdir)
    objective = config.objective.coefficient()
    options = search_options(config, prob.cache)
    costs = (prob.space, prob.p, prob.i, prob.e)
    with sharding.use_mesh(config.mesh):  # parallel > 1: each e takes its own group
        if config.method == "exhaustive":
            result = F.exhaustive(*costs, objective=objective, options=options)
        else:
            result = F.fptas(
                *costs,
                config.eps,
                config.s,
                objective=objective,
                assumptions=assumptions(config),
                options=options,
            )
    if not config.objective.e_ref:  # W(chosen) of order one; the choice is unchanged
        result = with_e_ref(result, result.chosen_evaluation.e)
    return write_outputs(config, workdir, result, prob, time.perf_counter() - t_start)


def abnc_check(arch: A.Arch, spec: A.Spec, seq_len: int) -> F.AbncCheck:
    b = A.block_costs(arch, spec, seq_len)
    return F.check_abnc(b["A"], b["B"], b["C"], arch.depth)


def _inference_note(config: ExtractConfig, workdir: str, model: latency.LatencyModel | None) -> str:
    if model is None:
        return f"analytic matmul FLOPs of one sequence of {config.latency_seq_len} tokens"
    errs = model.relative_errors()
    return (
        f"latency model `{latency_model_path(config, workdir)}` ({len(errs)} calibration "
        f"shapes on {model.settings['device']}, batch {model.settings['batch']} x "
        f"{model.settings['seq_len']} tokens; in-sample relative error mean "
        f"{100 * sum(errs) / len(errs):.1f} %, max {100 * max(errs):.1f} %)"
    )


def write_outputs(
    config: ExtractConfig, workdir: str, result: F.SearchResult, prob: Problem, seconds: float
) -> dict:
    """Report, AB^nC check, the chosen shape's pretraining config and sliced weights, and
    `summary.json` of one finished search of `prob`; returns the summary."""
    source, spec, cache = prob.source, prob.spec, prob.cache
    chash, lat_model = prob.config_hash, prob.latency_model
    out = Path(workdir)
    chosen: A.Arch = result.chosen
    abnc = abnc_check(chosen, spec, config.latency_seq_len)
    paths = report.write_report(
        result,
        out,
        name="report",
        abnc=abnc,
        title=f"OSE search ({result.method}) on {source.path}",
    )
    try:
        slice_params_check(source.arch, chosen)
        sliced = slice_params(source.params, source.arch, chosen)
        hf.save(
            out / "chosen_hf",
            jax.device_get(sliced),
            chosen,
            dataclasses.replace(source.spec, pooler="pooler" in sliced),
            tokenizer_dir=source.path,
        )
        sliced_note = f"weights sliced from the source: {out / 'chosen_hf'}"
    except ValueError as err:  # chosen is not a sub-architecture of the source
        sliced_note = f"no sliced weights: {err}"
    atomic_write_text(
        out / "pretrain_config.py",
        PRETRAIN_TEMPLATE.format(
            arch=f"{chosen.depth},{chosen.heads},{chosen.hidden},{chosen.intermediate}",
            init_dir=str((out / "chosen_hf").resolve()),
            teacher_dir=config.teacher_dir or config.source_dir or _teacher_dir(config),
        ),
    )
    summary = {
        "chosen": str(chosen),
        "objective": result.objective,
        "method": result.method,
        "eps": config.eps,
        "s": config.s,
        "proxy_steps": config.proxy.num_steps,
        "n_candidates": result.n_candidates,
        "n_evaluations": result.n_evaluations,
        "n_e_calls": result.n_e_calls,
        "n_cache_hits": result.n_cache_hits,
        "guarantee": result.guarantee.statement if result.guarantee else None,
        "abnc": {"holds": abnc.holds, "ratios": dict(abnc.ratios), "guarantee": abnc.guarantee},
        "wall_seconds": seconds,
        "config_hash": chash,
        "teacher_cache_hit": prob.data.cache_hit,
        "inference": _inference_note(config, workdir, lat_model),
        "latency_model": None
        if lat_model is None
        else {"path": str(latency_model_path(config, workdir)), **lat_model.to_json()},
        "candidate_metrics": {k: v for k, v in cache.metrics.items()},
        "report": {k: str(v) for k, v in paths.items()},
        "sliced": sliced_note,
    }
    atomic_write_json(out / "summary.json", summary, default=str)
    if sharding.is_primary():  # process 0's report, the run appended (the others wrote none)
        markdown = Path(paths["markdown"]).read_text(encoding="utf-8")
        atomic_write_text(
            paths["markdown"],
            markdown
            + (
                f"\n\n## Run\n\n- wall time: {seconds:.1f} s\n- proxy evaluations: "
                f"{result.n_evaluations} of {result.n_candidates} candidates "
                f"({result.n_cache_hits} from the on-disk cache)\n- config hash: {chash}\n"
                f"- inference cost i: {summary['inference']}\n"
                f"- chosen architecture ready to pretrain: `python scripts/pretrain.py "
                f"--config={out / 'pretrain_config.py'}`\n- {sliced_note}\n"
            )
            + components_markdown(config, result, cache.metrics),
        )
    return summary


COMPONENTS = (
    ("heldout_mlm", "MLM CE"),
    ("heldout_mlm_acc", "MLM acc"),
    ("heldout_hidden_last", "hidden MSE (out)"),
    ("heldout_hidden_nmse", "1 - R^2 (out)"),
    ("heldout_logit", "logit KL"),
    ("heldout_output_total", "output_total"),
)


def components_markdown(config: ExtractConfig, result, metrics: dict[str, dict]) -> str:
    """What e(ξ) is made of, per evaluated candidate, and its spread against the size terms.

    W = S(ξ)·(e_ref/e)^γ: e can move the choice only as far as (max e / min e)^γ reaches
    against the spread of the size score S = (p_ref/p)^α (i_ref/i)^β (docs/error_signal.md).
    """
    pcfg = config.proxy
    evs = result.evaluations
    if not evs:
        return ""
    rows = [metrics.get(candidate_key(ev.candidate), {}) for ev in evs]
    cols = [(k, name) for k, name in COMPONENTS if any(k in r for r in rows)]
    lines = [
        "",
        "## e's components (held-out, per evaluated candidate)",
        "",
        f"e(ξ) = `{pcfg.error}` after {pcfg.num_steps} proxy steps "
        f"(head_init `{pcfg.head_init}`, proj_init `{pcfg.proj_init}`).",
        "",
        "| candidate | e | " + " | ".join(name for _, name in cols) + " |",
        "|---|---:|" + "---:|" * len(cols),
    ]
    for ev, r in zip(evs, rows):
        cells = [f"{r[k]:.4g}" if k in r else "" for k, _ in cols]
        lines.append(f"| {ev.candidate} | {ev.e:.5g} | " + " | ".join(cells) + " |")
    es = np.array([ev.e for ev in evs])
    obj = result.objective_spec
    size = np.array([obj.size_score(ev.p, ev.i, result.p_ref, result.i_ref) for ev in evs])
    lines += [
        "",
        f"Spread of e: min {es.min():.5g}, max {es.max():.5g}, max/min {es.max() / es.min():.4g}, "
        f"std {es.std(ddof=1) if len(es) > 1 else 0.0:.3g}; (max/min)^γ = "
        f"{(es.max() / es.min()) ** obj.gamma:.4g} against the size score's max/min "
        f"{size.max() / size.min():.4g} over the same candidates.",
        "",
    ]
    return "\n".join(lines)


PRETRAIN_TEMPLATE = '''"""Pretraining config for the architecture chosen by scripts/extract.py."""
from configs import pretrain_bort


def get_config(arg=None):
    c = pretrain_bort.get_config(arg)
    c.arch = "{arch}"
    c.init_method = "slice"
    c.init = "{init_dir}"
    c.teacher_dir = "{teacher_dir}"
    return c
'''


def audit(
    config: Any,
    workdir: str,
    eps: list[float],
    *,
    real: bool = True,
    synthetic: bool = True,
    out: str = "audit.md",
) -> str:
    """FPTAS vs exhaustive search on the synthetic instances and (`real`) this extraction's
    instance, reusing `workdir`'s candidate cache; the Markdown table, also written to
    `workdir/out`."""
    config = proxy_budget.resolve_config(ExtractConfig.from_config(config))
    rows = search_audit.synthetic_rows(eps) if synthetic else []
    if real:
        prob = build_problem(config, workdir)
        monotone = ",".join(a.name for a in prob.space.axes if a.monotone)
        rows += search_audit.audit_problem(
            f"real: {Path(prob.source.path).name} grid ({len(prob.space.candidates())}), "
            f"⪯ over {monotone}, C {'on' if config.convex else 'off'}",
            prob.space,
            prob.p,
            prob.i,
            prob.e,
            eps,
            config.objective.coefficient(),
            s=config.s,
            assumptions=assumptions(config),
            options=F.SearchOptions(cache=prob.cache),
        )
    table = search_audit.markdown(rows)
    path = os.path.join(workdir, out)
    atomic_write_text(path, "# FPTAS audit: FPTAS vs exhaustive search\n\n" + table + "\n")
    return (
        f"{table}\n\nwritten to {path}; bound violated in {sum(not r.ok for r in rows)} of "
        f"{len(rows)} rows; assumptions violated (not certified) in "
        f"{sum(not r.certified for r in rows)}"
    )
