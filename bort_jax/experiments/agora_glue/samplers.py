"""The agora_glue experiment's samplers: the text tools over the checkpoint's embedding table,
one `sample_fn` per sampler kind (`bort_jax.agora.text`), and the sampler report (one
sampling round around agora-half rows, no student trained)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bort_jax import agora, distill, hf, mlm_head
from bort_jax import experiments as ex
from bort_jax.agora import text
from bort_jax.data import batching
from bort_jax.experiments.agora_glue.config import GlueConfig
from bort_jax.experiments.agora_glue.data import TaskData
from bort_jax.experiments.agora_glue.student import Labeler, labeler_fn, predict_labels
from bort_jax.models.bert import Bert


@dataclasses.dataclass(frozen=True)
class TextTools:
    """Token-embedding representation, nearest-token decoding and the perturbation mask
    over a checkpoint's embedding table [V, E] (special ids from `hf.special_ids`)."""

    table: np.ndarray
    special: tuple[int, ...]
    represent_fn: Callable
    decode_fn: Callable
    perturb_mask_fn: Callable
    continuation: tuple[int, ...] = ()  # WordPiece "##" ids (whole-word masked-LM sampling)

    def generator(self, labeler_fn: Any, sample_fn: Any = None) -> agora.Generator:
        """Agora's generator: nearest-token decoding over the table, or `sample_fn` if given."""
        return agora.Generator(
            labeler_fn, self.represent_fn, self.decode_fn, self.perturb_mask_fn, sample_fn
        )


def text_tools(ckpt: hf.Checkpoint, tokenizer: Any) -> TextTools:
    """`TextTools` over the word embeddings of `ckpt` and the special ids of `tokenizer`."""
    table = np.asarray(ckpt.params["embeddings"]["word_embeddings"]["embedding"], np.float32)
    special = tuple(sorted(set(hf.special_ids(tokenizer).values())))
    return TextTools(
        table,
        special,
        text.token_embedding_represent(table),
        text.text_decode_fn(table, special),
        text.text_perturb_mask(special),
        tuple(int(i) for i in text.continuation_ids(tokenizer)),
    )


def masked_lm(
    ckpt: hf.Checkpoint, tokenizer: Any, data: TaskData, cfg: GlueConfig, cache_dir: Path | None
) -> tuple[Bert, Any]:
    """The masked LM of the 'masked_lm' sampler: `ckpt` with its own MLM head, or (none, as
    all-MiniLM-L6-v2) with a head fitted on the frozen encoder over static-masked labeler
    training rows (`mlm_head.fit_mlm_head`, cached in `cache_dir`). Training-split text only:
    neither dev half reaches the head."""
    if not ckpt.has_mlm_head:
        ids = np.asarray(data.labeler_rows["input_ids"])
        if data.head_text is not None:
            ids = np.concatenate([ids, np.asarray(data.head_text["input_ids"])])
        rows = distill.static_mask(ids, tokenizer, ckpt.spec.vocab_size, seed=cfg.data_seed)
        head = mlm_head.fit_mlm_head(
            ckpt,
            rows,
            mlm_head.HeadConfig(num_steps=cfg.sampler.head_steps),
            None if cache_dir is None else str(cache_dir),
        )
        ckpt = mlm_head.with_head(ckpt, head)
    return Bert(ckpt.arch, ckpt.spec, mlm_head=True), ckpt.params


def neighbour_sample_fn(ckpt: hf.Checkpoint, data: TaskData, cfg: GlueConfig) -> Any:
    """The 'neighbour' sampler over the unlabelled pool (`data.distill_pool`, gold labels
    unused) in `ckpt`'s frozen sentence-embedding space (masked mean, unit norm: what
    all-MiniLM-L6-v2 was trained for); the pool is embedded once here."""
    if data.distill_pool is None:
        raise ValueError("the neighbour sampler needs the unlabelled pool (distill_pool_size)")
    embed = text.bert_embed_fn(Bert(ckpt.arch, ckpt.spec), ckpt.params)
    pool = agora.inputs_of(data.distill_pool)
    emb = text.embed_rows(embed, pool, cfg.eval_batch_size)
    k = int(cfg.agora["samples_per_error"])
    return text.neighbour_sampler(pool, emb, embed, k, cfg.sampler.neighbours)


def make_sample_fn(
    kind: str,
    cfg: GlueConfig,
    tools: TextTools,
    data: TaskData,
    mlm: tuple[Bert, Any] | None,
    mask_id: int,
    ckpt: hf.Checkpoint | None = None,
) -> Any:
    """`sample_fn` of `agora.Generator` for a sampler kind (None = nearest-token decoding);
    'neighbour' needs the source checkpoint `ckpt`."""
    k, sc = int(cfg.agora["samples_per_error"]), cfg.sampler
    if kind == "nearest_token":
        return None
    if kind == "neighbour":
        if ckpt is None:
            raise ValueError("the neighbour sampler needs the source checkpoint")
        return neighbour_sample_fn(ckpt, data, cfg)
    if kind == "masked_lm":
        if mlm is None:
            raise ValueError("the masked_lm sampler needs a masked LM")
        vocab = tools.table.shape[0]
        return text.masked_lm_sampler(
            text.bert_mlm_fn(*mlm),
            tools.special,
            mask_id,
            vocab,
            text.MaskedLMDraw(k, sc.mask_count, sc.temperature, min(sc.top_k, vocab)),
            continuation_ids=tools.continuation if sc.whole_word else (),
        )
    return text.span_sampler(agora.inputs_of(data.train), tools.special, k, sc.span_length)


def nearest_token_radius(data: TaskData, tools: TextTools, cfg: GlueConfig, seed: int) -> float:
    """Absolute radius of the nearest-token sampler, as `run_agora` resolves it for `seed`."""
    acfg = ex.agora_config(cfg.agora, seed)
    return agora.training_radius(data.train, tools.represent_fn, acfg, tools.perturb_mask_fn)


def first_centres(data: TaskData, n: int) -> tuple[dict, np.ndarray]:
    """Inputs (dict of [m, L]) and gold labels [m] of the first m = min(n, rows) agora-half
    rows: the centres of the sampler report and the perturbation examples."""
    m = min(n, batching.num_rows(data.agora_dev))
    centers = batching.take(agora.inputs_of(data.agora_dev), np.arange(m))
    return centers, np.asarray(data.agora_dev["label"])[:m]


def nearest_token_round(
    rng: jax.Array, centers: dict, labeler: Any, tools: TextTools, cfg: GlueConfig, radius: float
) -> tuple[dict, jax.Array]:
    """One nearest-token sampling round at `radius` around `centers`: inputs (dict of
    [m, k, L]) and labels [m, k] (k = agora.samples_per_error)."""
    _, samples, labels = agora.sample_and_relabel(
        rng,
        tools.represent_fn(centers),
        labeler,
        tools.decode_fn,
        ex.agora_config(cfg.agora, 0).with_radius(radius),
        center_inputs=centers,
        perturb_mask=tools.perturb_mask_fn(centers),
    )
    return samples, labels


def decoded_examples(
    tokenizer: Any, center_ids: np.ndarray, ids: np.ndarray, gold: np.ndarray, labels: np.ndarray
) -> list[dict]:
    """Centre i's text, its first sample's text [i, 0], gold and labeler labels, for every
    row of center_ids [n, L] (ids [n, k, L], gold [n], labels [n, k])."""
    return [
        {
            "original": tokenizer.decode(center_ids[i].tolist()),
            "sample": tokenizer.decode(ids[i, 0].tolist()),
            "gold": int(gold[i]),
            "labeler": int(labels[i, 0]),
        }
        for i in range(len(center_ids))
    ]


def sampler_report(
    data: TaskData,
    labeler: Labeler,
    tools: TextTools,
    cfg: GlueConfig,
    sample_fns: Mapping[str, Any],
    radius: float,
    tokenizer: Any,
) -> dict:
    """Per sampler, one sampling round (rng PRNGKey(0), k = agora.samples_per_error) around
    the first `sampler_report.n_centres` agora-half rows: share of samples whose text changed,
    mean changed tokens, labeler = the centre's gold label, labeler = its own label of the
    centre, and the first `n_examples` decoded samples. sample_fns: {kind: sample_fn or None
    (nearest-token, at `radius`)}. Also the labeler's accuracy on the centres themselves."""
    centers, gold = first_centres(data, cfg.sampler_report.n_centres)
    n = len(gold)
    on_centres = predict_labels(labeler.model, labeler.params, centers, cfg)
    rng, lab = jax.random.PRNGKey(0), labeler_fn(labeler)
    out: dict[str, Any] = {
        "n_centres": n,
        "labeler_on_centres_equals_gold": float(np.mean(on_centres == gold)),
        "samplers": {},
    }
    for kind, fn in sample_fns.items():
        if fn is None:
            samples, labels = nearest_token_round(rng, centers, lab, tools, cfg, radius)
        else:
            samples, labels = agora.resample_and_relabel(rng, centers, lab, fn)
        ids, labels = np.asarray(samples["input_ids"]), np.asarray(labels)
        rec = text.sample_summary(centers["input_ids"], ids, labels, gold)
        rec["labeler_equals_centre_label"] = float(np.mean(labels == on_centres[:, None]))
        shown = min(cfg.n_examples, n)
        rec["examples"] = decoded_examples(
            tokenizer, centers["input_ids"][:shown], ids, gold, labels
        )
        out["samplers"][kind] = rec
    return out


def perturbation_examples(
    data: TaskData,
    labeler: Labeler,
    tools: TextTools,
    cfg: GlueConfig,
    radius: float,
    tokenizer: Any,
) -> dict:
    """Share of perturbable tokens changed by one sampling round over the first 16 agora-half
    rows (`agora.text.token_change_rate`), and the first `n_examples` decoded samples."""
    centers, gold = first_centres(data, 16)
    acfg, rng = ex.agora_config(cfg.agora, 0), jax.random.PRNGKey(0)
    rate = text.token_change_rate(rng, tools.table, centers, tools.special, radius, acfg)
    out, labels = nearest_token_round(rng, centers, labeler_fn(labeler), tools, cfg, radius)
    ids, shown = np.asarray(out["input_ids"]), min(cfg.n_examples, len(gold))
    examples = decoded_examples(tokenizer, centers["input_ids"][:shown], ids, gold, labels)
    return {"radius": radius, "token_change_rate": rate, "examples": examples}
