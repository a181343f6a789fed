"""Knowledge-distillation pretraining of a student `Arch` from a teacher checkpoint.

Bort (arXiv 2010.10499, Sec. 3) pretrains the extracted architecture by KD from RoBERTa-large:
0.1·MLM-CE + 0.5·T²·KL(teacher ‖ student) on masked positions. Here the objective is

    L = w_mlm · CE(student MLM logits, true ids)                       (masked positions)
      + w_logit · T² KL(softmax(t/T) ‖ softmax(s/T))                   (teacher has an MLM head)
      + w_hidden · Σ_k MSE(h^S_k W_k, h^T_{m(k)}) / (D_s + 1)           (hidden-state KD)

with m = `losses.layer_map` and W_k a learned [H_s, H_t] projection when widths differ. With
`kd.top_k` = k > 0 the KL is taken over the teacher's k largest logits plus one "rest" bucket
(`losses.logit_kd_topk`; it under-estimates the full KL by q(rest)·KL(q|rest ‖ p|rest)). Only
the teacher outputs the loss reads are stored: the hidden states of the teacher layers the
served student depths match (none when w_hidden = 0), and top-k triples instead of [P, V]
logits. The real teacher on a CPU machine is all-MiniLM-L6-v2, which has no MLM head:
hidden-state KD is the path there; a RoBERTa-/BERT-large directory with an MLM head gets logit
KD as in the paper.

Masking is *static*: each sequence is masked once under the seed (BERT's original
`create_pretraining_data` does the same), so the teacher sees exactly the student's inputs and
its outputs can be cached on disk once (`teacher_cache`) and shared by every candidate.
This module prepares that data, the teacher outputs, the student parameters and the loss; the
loop itself is `train.train`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from bort_jax import hf, losses, sharding, teacher_cache
from bort_jax.arch import Arch, Spec, check_seq_len
from bort_jax.data import batching, mlm, text
from bort_jax.models.bert import PLAIN, Bert, ModelOptions, fresh_params, slice_params

INPUT_KEYS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "mlm_positions",
    "mlm_ids",
    "mlm_weights",
)


@dataclasses.dataclass(frozen=True)
class KDWeights:
    mlm: float = 1.0
    hidden: float = 1.0
    logit: float = 0.0
    temperature: float = 2.0
    layer_map: str = "uniform"
    top_k: int = 0  # logit KD from the teacher's top-k logits + a rest bucket; 0 = full logits


@dataclasses.dataclass
class KDData:
    """Static-masked train/held-out arrays (each key [N, ...]) plus teacher outputs.

    teacher['hidden'] [N, S, L, H_t] float16: the S teacher hidden states `hidden_layers`
    (index 0 = embeddings, l = output of layer l), absent when hidden KD is off;
    hidden_layers None = all D_t + 1 states (stored index = teacher index).
    Logit KD (teacher with an MLM head), full (top_k = 0): teacher['mlm_logits'] [N, P, V]
    float16; top-k: teacher['topk_values'] [N, P, k] float16, teacher['topk_ids'] [N, P, k]
    int32 and teacher['rest_logmass'] [N, P] float32 (log teacher mass outside the top k at
    temperature `temperature`; `losses.topk_teacher`).
    """

    train: dict[str, np.ndarray]
    heldout: dict[str, np.ndarray]
    teacher_train: dict[str, np.ndarray]
    teacher_heldout: dict[str, np.ndarray]
    teacher_depth: int
    teacher_hidden: int
    vocab_size: int
    cache_hit: bool = False
    hidden_layers: tuple[int, ...] | None = None
    top_k: int = 0
    temperature: float | None = None  # the rest mass's T (top_k > 0 only)

    @property
    def hidden_index(self) -> dict[int, int]:
        """Teacher hidden-state index → index along the stored axis 1 of teacher['hidden']."""
        layers = range(self.teacher_depth + 1) if self.hidden_layers is None else self.hidden_layers
        return {t: i for i, t in enumerate(layers)}


@dataclasses.dataclass
class Teacher:
    checkpoint: hf.Checkpoint
    tokenizer: Any

    @classmethod
    def load(cls, path: str) -> "Teacher":
        return cls(hf.load(path), hf.load_tokenizer(path))

    @property
    def model(self) -> Bert:
        ck = self.checkpoint
        return Bert(ck.arch, ck.spec, mlm_head=ck.has_mlm_head)


def static_mask(
    seqs: np.ndarray, tokenizer, vocab_size: int, seed: int, mask_prob: float = 0.15
) -> dict[str, np.ndarray]:
    """Mask every row once (80/10/10) under `seed`: dict of INPUT_KEYS arrays [N, ...]."""
    ids = hf.special_ids(tokenizer)
    specials = {ids["cls"], ids["sep"], ids["pad"], ids["mask"], ids["unk"]}
    out = mlm.mask_tokens(
        seqs, np.random.default_rng(seed), vocab_size, ids["mask"], specials, mask_prob
    )
    out["attention_mask"] = (seqs != ids["pad"]).astype(np.int32)
    out["token_type_ids"] = np.zeros_like(seqs, dtype=np.int32)
    return {k: np.asarray(out[k]) for k in INPUT_KEYS}


def stored_layers(
    student_depths: Sequence[int] | None, teacher_depth: int, mode: str = "uniform"
) -> tuple[int, ...]:
    """Sorted teacher hidden-state indices some student of `student_depths` matches.

        stored = ∪_{D_s in student_depths} set(losses.layer_map(D_s, D_t, mode))

    None = every depth 1..D_t (which stores all D_t + 1 states).
    """
    depths = range(1, teacher_depth + 1) if student_depths is None else student_depths
    out: set[int] = set()
    for d in depths:
        out.update(losses.layer_map(int(d), teacher_depth, mode))
    return tuple(sorted(out))


def teacher_output_specs(
    teacher: Teacher,
    arrays: Mapping[str, np.ndarray],
    want_logits: bool,
    *,
    layers: Sequence[int] | None = None,
    top_k: int = 0,
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{name: (shape, dtype)} of what `teacher_outputs` produces (see `KDData`).

    layers: teacher hidden-state indices to keep (None = all D_t + 1; () = no 'hidden').
    """
    ck = teacher.checkpoint
    n, length = arrays["input_ids"].shape
    p = arrays["mlm_positions"].shape[1]
    nl = ck.arch.depth + 1 if layers is None else len(layers)
    specs = {}
    if nl:
        specs["hidden"] = ((n, nl, length, ck.arch.hidden), np.dtype(np.float16))
    if want_logits and top_k:
        specs["topk_values"] = ((n, p, top_k), np.dtype(np.float16))
        specs["topk_ids"] = ((n, p, top_k), np.dtype(np.int32))
        specs["rest_logmass"] = ((n, p), np.dtype(np.float32))
    elif want_logits:
        specs["mlm_logits"] = ((n, p, ck.spec.vocab_size), np.dtype(np.float16))
    return specs


def teacher_partitioner() -> sharding.Partitioner | None:
    """The mesh of the teacher pass: every device of the active partitioner's mesh (else all
    local devices) as one data axis, or None on one device. Only local devices: on a
    multi-process run process 0 alone computes the teacher outputs (`teacher_cache`)."""
    part = sharding.current()
    if part is not None and not sharding.multi_process():
        devices = list(part.mesh.devices.flat)
    else:
        devices = jax.local_devices()
    if len(devices) == 1:
        return None
    return sharding.Partitioner.from_config(sharding.MeshConfig(data=-1), devices)


def teacher_outputs(
    teacher: Teacher,
    arrays: Mapping[str, np.ndarray],
    want_logits: bool,
    batch_size: int = 32,
    *,
    layers: Sequence[int] | None = None,
    top_k: int = 0,
    temperature: float = 1.0,
    out: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Run the teacher (jit once) over `arrays`, `batch_size` rows at a time.

    Returns the arrays of `teacher_output_specs` (hidden states of `layers` only; full logits,
    or the top-k triple when `top_k` > 0). With `out` (writable arrays of those shapes, e.g.
    `np.lib.format.open_memmap` files) each chunk is written into them as it is produced and
    nothing beyond two chunks is held; without it they are allocated in RAM.

    With several devices (`teacher_partitioner`) each chunk is split over them along the rows
    (`batch_size` rounded up to a multiple of the device count) and the teacher replicated.
    Chunk k + 1 is dispatched before chunk k is fetched, so the device computes while the
    host copies and writes. Each row's outputs depend on that row alone.
    """
    model = teacher.model
    specs = teacher_output_specs(teacher, arrays, want_logits, layers=layers, top_k=top_k)
    keep = None if layers is None else np.asarray(layers, np.int32)

    @jax.jit
    def run(params, batch):
        res_ = model.apply(
            {"params": params},
            batch["input_ids"],
            batch["attention_mask"],
            batch["token_type_ids"],
            output_hidden_states="hidden" in specs,
            mlm_positions=batch["mlm_positions"] if want_logits else None,
        )
        res = {}
        if "hidden" in specs:
            hidden = jnp.stack(res_["hidden_states"], 1)
            if keep is not None:
                hidden = hidden[:, keep]
            res["hidden"] = hidden.astype(jnp.float16)
        if want_logits and top_k:
            tk = losses.topk_teacher(res_["mlm_logits"], top_k, temperature)
            res["topk_values"] = tk["values"].astype(jnp.float16)
            res["topk_ids"] = tk["ids"]
            res["rest_logmass"] = tk["rest"]
        elif want_logits:
            res["mlm_logits"] = res_["mlm_logits"].astype(jnp.float16)
        return res

    if out is None:
        out = {k: np.empty(shape, dtype) for k, (shape, dtype) in specs.items()}
    n = arrays["input_ids"].shape[0]
    part = teacher_partitioner()
    params, place = teacher.checkpoint.params, jax.device_put
    if part is not None:  # rows split over the data shards, the teacher replicated
        # a chunk of whole shards: batch_size rounded up to a multiple of the shard count
        batch_size = -(-batch_size // part.batch_divisor) * part.batch_divisor
        replicated = NamedSharding(part.mesh, PartitionSpec())
        params = jax.device_put(params, replicated)
        place = lambda b: {  # noqa: E731 - the local devices only (see teacher_partitioner)
            k: jax.device_put(v, part.batch_sharding(v.ndim)) for k, v in b.items()
        }
    else:
        params = jax.device_put(params)

    def dispatch(start: int):
        idx = np.arange(start, min(start + batch_size, n))
        pad = batch_size - len(idx)
        idx = np.concatenate([idx, np.full(pad, idx[-1])])  # one shape → one compilation
        res = run(params, place({k: arrays[k][idx] for k in INPUT_KEYS}))
        for v in res.values():
            v.copy_to_host_async()
        return start, batch_size - pad, res

    def write(start: int, rows: int, res) -> None:
        for k, v in jax.device_get(res).items():
            out[k][start : start + rows] = v[:rows]

    # chunk k + 1 is dispatched (inputs gathered and sent, program queued) before chunk k is
    # fetched and written: the device never waits for the host's copy and write
    pending = None
    for start in range(0, n, batch_size):
        ahead = dispatch(start)
        if pending is not None:
            write(*pending)
        pending = ahead
    if pending is not None:
        write(*pending)
    return dict(out)


def prepare(
    teacher: Teacher,
    teacher_path: str,
    corpus: str,
    seq_len: int,
    *,
    max_sequences: int | None,
    heldout_fraction: float,
    seed: int,
    want_logits: bool | None = None,
    cache_dir: str | None,
    docs: Iterable[str] | None = None,
    student_depths: Sequence[int] | None = None,
    kd: KDWeights | None = None,
) -> KDData:
    """Corpus → packed, static-masked sequences → teacher outputs (streamed into the cache).

    Only what the loss reads is stored: hidden states of the teacher layers some student depth
    in `student_depths` matches under `kd.layer_map` (None = every depth 1..D_t, i.e. all
    states; none at all when `kd.hidden` == 0), and with `kd.top_k` > 0 the top-k logits plus
    the rest mass instead of full logits. `kd` None = `KDWeights()` (hidden KD, full logits).
    `want_logits` None = `kd.logit > 0` (logit KD reads the teacher's MLM logits).
    With `cache_dir` the outputs are written chunk by chunk into pre-allocated `.npy` files
    (`teacher_cache.get_or_build_streamed`) and memory-mapped; without, they are in RAM.
    """
    kd = KDWeights() if kd is None else kd
    want_logits = kd.logit > 0 if want_logits is None else want_logits
    ck = teacher.checkpoint
    check_seq_len(seq_len, ck.spec)
    if want_logits and not ck.has_mlm_head:
        raise ValueError(
            f"logit KD needs a teacher with an MLM head; {teacher_path} has none "
            "(set kd.logit=0 and use hidden-state KD)"
        )
    docs = text.load_corpus(corpus) if docs is None else docs
    ids = hf.special_ids(teacher.tokenizer)
    seqs = text.tokenize_and_pack(  # stops reading the corpus once max_sequences rows are full
        docs,
        teacher.tokenizer,
        seq_len,
        ids["cls"],
        ids["sep"],
        ids["pad"],
        max_sequences=max_sequences or None,
    )
    train_seqs, held_seqs = text.split_train_heldout(seqs, heldout_fraction, seed)
    train = static_mask(train_seqs, teacher.tokenizer, ck.spec.vocab_size, seed)
    held = static_mask(held_seqs, teacher.tokenizer, ck.spec.vocab_size, seed + 1)

    layers = stored_layers(student_depths, ck.arch.depth, kd.layer_map) if kd.hidden else ()
    top_k = kd.top_k if want_logits else 0
    if top_k and not 0 < top_k <= ck.spec.vocab_size:
        raise ValueError(f"kd.top_k={top_k} must be in [0, vocab size {ck.spec.vocab_size}]")
    opts = dict(layers=layers, top_k=top_k, temperature=kd.temperature)
    splits = {"train": train, "heldout": held}

    def specs():
        return {
            f"{p}_{k}": v
            for p, a in splits.items()
            for k, v in teacher_output_specs(
                teacher, a, want_logits, layers=layers, top_k=top_k
            ).items()
        }

    def fill(out):
        for p, a in splits.items():
            teacher_outputs(
                teacher,
                a,
                want_logits,
                layers=layers,
                top_k=top_k,
                temperature=kd.temperature,
                out={k[len(p) + 1 :]: v for k, v in out.items() if k.startswith(f"{p}_")},
            )

    def build():
        return {
            f"{p}_{k}": v
            for p, a in splits.items()
            for k, v in teacher_outputs(teacher, a, want_logits, **opts).items()
        }

    key = teacher_cache.make_key(
        teacher=teacher_cache.digest_checkpoint(teacher_path),
        data=teacher_cache.digest_arrays(
            {**{f"t{k}": v for k, v in train.items()}, **{f"h{k}": v for k, v in held.items()}}
        ),
        logits=want_logits,
        layers=list(layers),
        top_k=top_k,
        temperature=kd.temperature if top_k else None,
        version=2,
    )
    if cache_dir:
        arrays, hit = teacher_cache.get_or_build_streamed(
            cache_dir, key, specs(), fill, info={"teacher": teacher_path, "seq_len": seq_len}
        )
    else:
        arrays, hit = build(), False
    split = lambda p: {k[len(p) :]: v for k, v in arrays.items() if k.startswith(p)}  # noqa
    return KDData(
        train,
        held,
        split("train_"),
        split("heldout_"),
        ck.arch.depth,
        ck.arch.hidden,
        ck.spec.vocab_size,
        hit,
        hidden_layers=layers,
        top_k=top_k,
        temperature=kd.temperature if top_k else None,
    )


def student_spec(teacher_spec: Spec) -> Spec:
    """The student shares the teacher's vocabulary/positions; MLM head, no pooler."""
    return dataclasses.replace(teacher_spec, pooler=False)


def init_student(
    arch: Arch,
    spec: Spec,
    teacher_hidden: int,
    seed: int,
    source: hf.Checkpoint | None = None,
    proj_init: str = "random",
) -> dict:
    """{'student': Bert params (MLM head), 'proj': {k: [H_s, H_t]}} — random or sliced.

    proj_init: 'random' (N(0, 1/H_s)) or 'slice' (W = [I_{H_s} | 0]: a student sliced from a
    source in the teacher's space keeps the first H_s features, so its states start where the
    slicing put them instead of behind a random map).
    """
    if proj_init not in ("random", "slice"):
        raise ValueError(f"proj_init={proj_init!r}; use 'random' or 'slice'")
    model = Bert(arch, spec, mlm_head=True)
    rng = jax.random.PRNGKey(seed)
    params = fresh_params(model, seed)  # jitted: one program instead of ~100 eager ones
    if source is not None:
        sliced = slice_params(source.params, source.arch, arch)
        params = {**params, **{k: v for k, v in sliced.items() if k in params}}
    proj = {}
    if arch.hidden != teacher_hidden and proj_init == "slice":
        eye = np.eye(arch.hidden, teacher_hidden, dtype=np.float32)
        proj = {str(k): jnp.asarray(eye) for k in range(arch.depth + 1)}
    elif arch.hidden != teacher_hidden:
        keys = jax.random.split(jax.random.fold_in(rng, 1), arch.depth + 1)
        proj = {
            str(k): jax.random.normal(keys[k], (arch.hidden, teacher_hidden)) / np.sqrt(arch.hidden)
            for k in range(arch.depth + 1)
        }
    return {"student": params, "proj": proj}


def make_loss_fn(model: Bert, data: KDData, weights: KDWeights) -> Callable:
    """`loss_fn(params, batch, rng)` for `train.train`; batch = inputs + teacher outputs."""
    tmap = losses.layer_map(model.arch.depth, data.teacher_depth, weights.layer_map)
    index = data.hidden_index
    missing = sorted(set(tmap) - set(index))
    # Hidden terms are computed when weighted, or (for logging) when their states are stored.
    use_hidden = bool(weights.hidden) or not missing
    if use_hidden:
        if missing:
            raise ValueError(
                f"teacher hidden states {missing} (student depth {model.arch.depth},"
                f" layer_map {weights.layer_map!r}) are not stored; stored "
                f"{data.hidden_layers} — pass this depth to distill.prepare"
            )
        smap = tuple(index[t] for t in tmap)  # student index k → stored index
    else:
        smap = None
    if weights.logit and weights.top_k != data.top_k:
        raise ValueError(
            f"kd.top_k={weights.top_k} but the teacher outputs were stored with top_k={data.top_k}"
        )
    if weights.logit and weights.top_k and weights.temperature != data.temperature:
        raise ValueError(
            f"kd.temperature={weights.temperature} but the stored rest mass is at "
            f"T={data.temperature}"
        )
    return _kd_loss_fn(model, smap, weights)


@functools.lru_cache(maxsize=32)
def _kd_loss_fn(model: Bert, smap: tuple[int, ...] | None, weights: KDWeights) -> Callable:
    """`make_loss_fn`'s loss: one function per (model, stored-layer map, weights), so the runs
    of one student shape (seeds, step budgets, resumes) share a compiled step and metric.
    `smap[k]` = the stored teacher layer matched to student layer k; None = no hidden term."""
    use_hidden = smap is not None

    def loss_fn(params, batch, rng, deterministic=False):
        out = model.apply(
            {"params": params["student"]},
            batch["input_ids"],
            batch["attention_mask"],
            batch["token_type_ids"],
            deterministic=deterministic,
            rngs={"dropout": rng},
            output_hidden_states=True,
            mlm_positions=batch["mlm_positions"],
        )
        terms = {
            "mlm": losses.mlm_cross_entropy(
                out["mlm_logits"], batch["mlm_ids"], batch["mlm_weights"]
            ),
            "mlm_acc": losses.mlm_accuracy(
                out["mlm_logits"], batch["mlm_ids"], batch["mlm_weights"]
            ),
        }
        if use_hidden:
            teacher_h = batch["teacher_hidden"]
            hid = [
                losses.hidden_kd(
                    h, teacher_h[:, smap[k]], batch["attention_mask"], params["proj"].get(str(k))
                )
                for k, h in enumerate(out["hidden_states"])
            ]
        else:  # hidden KD off and no teacher states stored
            hid = [jnp.zeros((), jnp.float32)]
        terms["hidden"] = sum(hid) / len(hid)
        if weights.logit and weights.top_k:
            terms["logit"] = losses.logit_kd_topk(
                out["mlm_logits"],
                batch["teacher_topk_values"],
                batch["teacher_topk_ids"],
                batch["teacher_rest_logmass"],
                batch["mlm_weights"],
                weights.temperature,
            )
        elif weights.logit:
            terms["logit"] = losses.logit_kd(
                out["mlm_logits"],
                batch["teacher_logits"],
                batch["mlm_weights"],
                weights.temperature,
            )
        terms["hidden_last"] = hid[-1]
        w = {"mlm": weights.mlm, "hidden": weights.hidden}
        if weights.logit:
            w["logit"] = weights.logit
        total, metrics = losses.kd_objective(w, terms)
        # The same objective with the hidden term taken at the output layer only: comparable
        # across depths (the all-layer mean is over D_s + 1 matches), used as proxy error.
        metrics["output_total"] = total + weights.hidden * (terms["hidden_last"] - terms["hidden"])
        return total, metrics

    return loss_fn


def kd_rows(
    arrays: Mapping[str, np.ndarray], teacher: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """One data set of student inputs + teacher outputs (memory-maps stay memory-maps)."""
    rows = {k: arrays[k] for k in INPUT_KEYS}
    if "hidden" in teacher:
        rows["teacher_hidden"] = teacher["hidden"]
    if "mlm_logits" in teacher:
        rows["teacher_logits"] = teacher["mlm_logits"]
    for k in ("topk_values", "topk_ids", "rest_logmass"):
        if k in teacher:
            rows[f"teacher_{k}"] = teacher[k]
    return rows


def teacher_output_variance(data: KDData) -> float | None:
    """Var of the teacher's output-layer states over the held-out real tokens (None: not stored).

        var = Σ_{n,l} m_nl ||h^T_nl − μ||² / (Σ m_nl · H_t),   μ = masked mean over tokens

    so that `hidden_kd` / var = 1 − R² of the (projected) student states, pooled over features.
    """
    index = data.hidden_index
    if "hidden" not in data.teacher_heldout or data.teacher_depth not in index:
        return None
    h = np.asarray(data.teacher_heldout["hidden"][:, index[data.teacher_depth]], np.float64)
    return masked_variance(h, np.asarray(data.heldout["attention_mask"]))


def masked_variance(hidden: np.ndarray, mask: np.ndarray) -> float:
    """Pooled per-feature variance of hidden [N, L, H] over the tokens where mask [N, L] is 1."""
    if hidden.shape[:2] != mask.shape:
        raise ValueError(f"hidden {hidden.shape} and mask {mask.shape} disagree on [N, L]")
    x = np.asarray(hidden, np.float64)[np.asarray(mask) > 0]  # [T, H]
    if not len(x):
        raise ValueError("masked_variance: the mask selects no token")
    return float(np.mean(np.square(x - x.mean(0))))


def train_batches(data: KDData, batch_size: int, seed: int) -> batching.BatchSource:
    """Stateless KD batches of the training rows (`batching.epoch_batches`, full epochs)."""
    return batching.epoch_batches(
        kd_rows(data.train, data.teacher_train), batch_size, seed, drop_remainder=True
    )


@functools.lru_cache(maxsize=32)
def _heldout_metric(loss_fn: Callable) -> Callable:
    """`(params, batch) -> metrics` of `loss_fn`, dropout off; jitted once per loss function."""

    @jax.jit
    def metric(params, batch):
        _, m = loss_fn(params, batch, jax.random.PRNGKey(0), deterministic=True)
        return m

    return metric


class HeldoutEvaluator:
    """`evaluator(params, step) -> {'heldout_total', 'heldout_mlm', ...}`: the KD objective's
    terms on the held-out rows, dropout off, averaged over full batches (one compiled shape).

    Each batch is placed by a prefetch thread while the previous one is evaluated: split along
    the batch axes of the active partitioner (`sharding.current()`, each process placing only
    its own rows), else on the parameters' device. The per-batch metrics stay on device and
    are fetched once, at the end; the mean is taken on the host as before (float32 values,
    `np.mean`).
    """

    def __init__(self, loss_fn: Callable, data: KDData, batch_size: int):
        self.batches = batching.fixed_batches(
            kd_rows(data.heldout, data.teacher_heldout), batch_size
        )
        self._metric = _heldout_metric(loss_fn)

    def _place(self, params: Any) -> Callable[[batching.Batch], dict]:
        part = sharding.current()
        if part is None:
            devices = jax.tree_util.tree_leaves(params)[0].devices()
            if len(devices) != 1:  # parameters spread over devices without a partitioner
                return lambda b: b  # host arrays, placed by the jitted call as before
            device = next(iter(devices))
            return lambda b: jax.device_put(dict(b), device)
        rows = batching.num_rows(self.batches[0])
        if rows % part.batch_divisor:  # fewer held-out rows than data shards: replicated
            return lambda b: jax.device_put(dict(b), NamedSharding(part.mesh, PartitionSpec()))
        if not sharding.multi_process():
            return part.put_batch
        positions = part.process_rows(rows)
        return lambda b: part.put_batch({k: np.asarray(v)[positions] for k, v in b.items()}, rows)

    def __call__(self, params: Any, step: int | None = None) -> dict[str, float]:
        if not all(isinstance(x, jax.Array) for x in jax.tree_util.tree_leaves(params)):
            params = jax.device_put(params)
        batches = self.batches
        with batching.Prefetcher(
            lambda i: batches[i], 0, len(batches), place=self._place(params)
        ) as prefetch:
            ms = [self._metric(params, b) for _, b in prefetch]
        ms = sharding.host_get(ms)  # one transfer for every batch's metrics
        return {f"heldout_{k}": float(np.mean([m[k] for m in ms])) for k in ms[0]}


@dataclasses.dataclass
class Student:
    """A KD student ready for `train.train`: model, initial params {'student', 'proj'}, loss."""

    arch: Arch
    spec: Spec
    model: Bert
    params: dict
    loss_fn: Callable


def build_student(
    arch: Arch,
    data: KDData,
    teacher_spec: Spec,
    weights: KDWeights,
    *,
    seed: int,
    dropout: float = 0.0,
    source: hf.Checkpoint | None = None,
    options: ModelOptions = PLAIN,
    proj_init: str = "random",
    dtype: Any = jnp.float32,
) -> Student:
    """The one student set-up shared by pretraining and proxy training.

    The student has the teacher's vocabulary/positions, an MLM head and no pooler; its
    parameters are random (seed) or sliced from `source` (projections: `init_student`'s
    `proj_init`); its loss is `make_loss_fn`.
    `options` lays the student out for training (`models.bert.ModelOptions`): with
    `scan_layers` the layers run through `nn.scan` (compile time flat in depth) from the same
    initial parameters, stacked under `params['student']['layers']`; `remat` recomputes each
    layer in the backward pass; `vocab_multiple` zero-pads the vocabulary rows. The initial
    parameters are those of the plain student in that layout, and
    `options.to_canonical(params['student'], arch, spec)` gives back the canonical tree
    (`hf.save`).
    `dtype` is the computation dtype (`precision.compute_dtype`); parameters stay float32.
    """
    spec = student_spec(teacher_spec)
    model = Bert(
        arch,
        spec,
        mlm_head=True,
        dropout_rate=dropout,
        attention_dropout_rate=dropout,
        dtype=dtype,
        **options.kwargs(),
    )
    params = init_student(arch, spec, data.teacher_hidden, seed, source, proj_init)
    params = {**params, "student": options.to_model(params["student"], arch, spec)}
    return Student(arch, spec, model, params, make_loss_fn(model, data, weights))
