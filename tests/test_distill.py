"""The assembled KD objective of `distill.make_loss_fn` against a hand computation.

A tiny student (D_s = 2, H_s = 8) and a teacher given by its outputs (D_t = 5, H_t = 12: hidden
states of every layer and MLM logits, as the teacher cache stores them in float16). The student's
own forward pass (`Bert.apply`, checked against Hugging Face elsewhere) gives its hidden states
and MLM logits; everything after that — the layer map for D_s < D_t, the projections, padding and
MLM-slot masks, the term weights, the temperature, and `output_total` (the e(ξ) the search
optimises) — is recomputed here in float64 numpy, without calling `bort_jax.losses`.
"""

import dataclasses

import jax
import numpy as np
import pytest

from bort_jax import distill, losses
from bort_jax.arch import Arch, Spec
from bort_jax.models.bert import Bert, init_params

B, L, P, V = 3, 6, 3, 13  # batch, sequence length, MLM slots, vocabulary
DS, HS, DT, HT = 2, 8, 5, 12  # student / teacher depth and width
# The teacher hidden state matched to each student hidden state 0..D_s (0 = embeddings),
# worked out by hand: 'uniform' is k·D_t/D_s rounded half up (1·5/2 = 2.5 → 3), 'last' the top
# D_s teacher layers.
HAND_MAPS = {"uniform": (0, 3, 5), "last": (0, 4, 5)}


def _batch(rng: np.random.Generator) -> dict[str, np.ndarray]:
    mask = np.ones((B, L), np.int32)
    mask[1, 4:] = 0  # padding: rows 1 and 2 are shorter
    mask[2, 3:] = 0
    ids = rng.integers(4, V, (B, L)).astype(np.int32) * mask
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": np.zeros((B, L), np.int32),
        "mlm_positions": np.array([[1, 3, 5], [2, 0, 0], [1, 2, 0]], np.int32),
        "mlm_ids": rng.integers(0, V, (B, P)).astype(np.int32),
        "mlm_weights": np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0]], np.float32),  # padded slots
        "teacher_hidden": rng.normal(0, 1, (B, DT + 1, L, HT)).astype(np.float16),
        "teacher_logits": (3 * rng.normal(0, 1, (B, P, V))).astype(np.float16),
    }


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _expected(
    hidden: list[np.ndarray],
    logits: np.ndarray,
    proj: dict,
    batch: dict,
    tmap: tuple[int, ...],
    w: distill.KDWeights,
) -> dict[str, float]:
    """The KD objective of distill.py's docstring, in float64, term by term."""
    wts = batch["mlm_weights"].astype(np.float64)
    n_slots = max(wts.sum(), 1.0)
    z = logits.astype(np.float64)
    # MLM cross-entropy over the real slots: -log softmax(z)[y]
    logp = _log_softmax(z)
    ce = -np.take_along_axis(logp, batch["mlm_ids"][..., None], -1)[..., 0]
    mlm = (wts * ce).sum() / n_slots
    acc = (wts * (z.argmax(-1) == batch["mlm_ids"])).sum() / n_slots
    # T² KL(softmax(t/T) ‖ softmax(s/T)) over the real slots
    t = batch["teacher_logits"].astype(np.float64) / w.temperature
    log_q, log_p = _log_softmax(t), _log_softmax(z / w.temperature)
    kl = (np.exp(log_q) * (log_q - log_p)).sum(-1)
    logit = w.temperature**2 * (wts * kl).sum() / n_slots
    # hidden-state MSE per student layer k against teacher layer tmap[k], through W_k, over real
    # tokens, divided by the teacher width
    mask = batch["attention_mask"].astype(np.float64)
    per_layer = []
    for k, h in enumerate(hidden):
        student = h.astype(np.float64) @ np.asarray(proj[str(k)], np.float64)
        teacher = batch["teacher_hidden"][:, tmap[k]].astype(np.float64)
        sq = ((student - teacher) ** 2).sum(-1)
        per_layer.append((mask * sq).sum() / (mask.sum() * HT))
    hidden_mean = sum(per_layer) / len(per_layer)
    total = w.mlm * mlm + w.hidden * hidden_mean + w.logit * logit
    output_total = w.mlm * mlm + w.hidden * per_layer[-1] + w.logit * logit
    return {
        "mlm": mlm,
        "mlm_acc": acc,
        "logit": logit,
        "hidden": hidden_mean,
        "hidden_last": per_layer[-1],
        "total": total,
        "output_total": output_total,
    }


@pytest.mark.slow
@pytest.mark.parametrize("layer_map", ["uniform", "last"])
@pytest.mark.parametrize("logit_weight", [0.4, 0.0])
def test_kd_objective_equals_hand_computation(layer_map, logit_weight):
    rng = np.random.default_rng(7)
    spec = Spec(vocab_size=V, max_positions=16, pooler=False)
    model = Bert(Arch(DS, 2, HS, 16), spec, mlm_head=True)
    student = init_params(model, jax.random.PRNGKey(3))
    proj = {str(k): rng.normal(0, 0.5, (HS, HT)).astype(np.float32) for k in range(DS + 1)}
    params = {"student": student, "proj": proj}
    data = distill.KDData(
        train={},
        heldout={},
        teacher_train={},
        teacher_heldout={},
        teacher_depth=DT,
        teacher_hidden=HT,
        vocab_size=V,
    )
    weights = distill.KDWeights(
        mlm=0.7, hidden=1.3, logit=logit_weight, temperature=2.0, layer_map=layer_map
    )
    batch = _batch(rng)
    if not logit_weight:
        del batch["teacher_logits"]  # hidden-state KD only: no teacher MLM head needed
    total, metrics = distill.make_loss_fn(model, data, weights)(
        params, batch, jax.random.PRNGKey(0), deterministic=True
    )

    out = model.apply(
        {"params": student},
        batch["input_ids"],
        batch["attention_mask"],
        batch["token_type_ids"],
        output_hidden_states=True,
        mlm_positions=batch["mlm_positions"],
    )
    hidden = [np.asarray(h) for h in out["hidden_states"]]
    assert len(hidden) == DS + 1
    exp = _expected(
        hidden,
        np.asarray(out["mlm_logits"]),
        proj,
        {**batch, "teacher_logits": batch.get("teacher_logits", np.zeros((B, P, V)))},
        HAND_MAPS[layer_map],
        weights,
    )
    got = {k: float(v) for k, v in metrics.items()}
    np.testing.assert_allclose(float(total), exp["total"], rtol=2e-5)
    np.testing.assert_allclose(got["total"], exp["total"], rtol=2e-5)
    np.testing.assert_allclose(got["output_total"], exp["output_total"], rtol=2e-5)
    for name in ("mlm", "mlm_acc", "hidden", "hidden_last"):
        np.testing.assert_allclose(got[name], exp[name], rtol=2e-5, atol=1e-7, err_msg=name)
    if logit_weight:
        np.testing.assert_allclose(got["logit"], exp["logit"], rtol=2e-5, err_msg="logit")
    else:
        assert "logit" not in got
    # the check can fail: the two objectives differ, and another layer map gives other values
    assert abs(exp["output_total"] - exp["total"]) > 1e-3
    other = "last" if layer_map == "uniform" else "uniform"
    wrong = _expected(
        hidden,
        np.asarray(out["mlm_logits"]),
        proj,
        {**batch, "teacher_logits": batch.get("teacher_logits", np.zeros((B, P, V)))},
        HAND_MAPS[other],
        weights,
    )
    assert abs(wrong["total"] - got["total"]) > 1e-3 * abs(got["total"])


# --------------------------------------------------------------------------------------------
# only the teacher layers a student can match are stored
# --------------------------------------------------------------------------------------------
def test_stored_layers_by_hand():
    # D_t = 5. 'uniform' D_s = 2: (0, 3, 5) (HAND_MAPS); D_s = 3: k·5/3 = 1.67, 3.33 → (0, 2, 3, 5)
    assert distill.stored_layers([2], DT) == (0, 3, 5)
    assert distill.stored_layers([3], DT) == (0, 2, 3, 5)
    assert distill.stored_layers([3, 2, 2], DT) == (0, 2, 3, 5)
    assert distill.stored_layers([1], DT) == (0, 5)
    # 'last' D_s = 2: the top two layers (0, 4, 5); D_s = 1: (0, 5)
    assert distill.stored_layers([2, 1], DT, "last") == (0, 4, 5)
    # default = every depth 1..D_t = every hidden state
    assert distill.stored_layers(None, DT) == (0, 1, 2, 3, 4, 5)
    data = distill.KDData({}, {}, {}, {}, DT, HT, V, hidden_layers=(0, 2, 3, 5))
    assert data.hidden_index == {0: 0, 2: 1, 3: 2, 5: 3}
    assert distill.KDData({}, {}, {}, {}, 2, HT, V).hidden_index == {0: 0, 1: 1, 2: 2}


def _student(rng):
    spec = Spec(vocab_size=V, max_positions=16, pooler=False)
    model = Bert(Arch(DS, 2, HS, 16), spec, mlm_head=True)
    proj = {str(k): rng.normal(0, 0.5, (HS, HT)).astype(np.float32) for k in range(DS + 1)}
    return model, {"student": init_params(model, jax.random.PRNGKey(3)), "proj": proj}


@pytest.mark.parametrize("layer_map", ["uniform", "last"])
def test_loss_on_stored_subset_equals_loss_on_all_layers(layer_map):
    """Storing only `stored_layers` (indexed through `hidden_index`) gives the same objective as
    storing all D_t + 1 states; a wrong index mapping would pick other layers and differ."""
    rng = np.random.default_rng(5)
    model, params = _student(rng)
    batch = _batch(rng)
    weights = distill.KDWeights(mlm=0.7, hidden=1.3, logit=0.4, layer_map=layer_map)
    full = distill.KDData({}, {}, {}, {}, DT, HT, V)
    layers = distill.stored_layers([DS], DT, layer_map)
    assert layers == tuple(sorted(HAND_MAPS[layer_map]))
    sub = distill.KDData({}, {}, {}, {}, DT, HT, V, hidden_layers=layers)
    sub_batch = {**batch, "teacher_hidden": batch["teacher_hidden"][:, list(layers)]}
    key = jax.random.PRNGKey(0)
    _, m_full = distill.make_loss_fn(model, full, weights)(params, batch, key, True)
    _, m_sub = distill.make_loss_fn(model, sub, weights)(params, sub_batch, key, True)
    for k in ("total", "hidden", "hidden_last", "output_total"):
        np.testing.assert_allclose(float(m_sub[k]), float(m_full[k]), rtol=1e-6, err_msg=k)
    # the mapping is applied: stored indices (0, 1, 2) read from all states are other layers
    _, m_wrong = distill.make_loss_fn(model, sub, weights)(params, batch, key, True)
    assert abs(float(m_wrong["hidden"]) - float(m_full["hidden"])) > 1e-3
    # a depth whose layers were not stored is refused
    with pytest.raises(ValueError, match="not stored"):
        distill.make_loss_fn(
            model, distill.KDData({}, {}, {}, {}, DT, HT, V, hidden_layers=(0, 1)), weights
        )


def test_no_hidden_states_when_hidden_weight_is_zero():
    rng = np.random.default_rng(6)
    model, params = _student(rng)
    batch = _batch(rng)
    del batch["teacher_hidden"]
    weights = distill.KDWeights(mlm=0.7, hidden=0.0, logit=0.4)
    data = distill.KDData({}, {}, {}, {}, DT, HT, V, hidden_layers=())
    total, m = distill.make_loss_fn(model, data, weights)(
        params, batch, jax.random.PRNGKey(0), True
    )
    np.testing.assert_allclose(
        float(total), 0.7 * float(m["mlm"]) + 0.4 * float(m["logit"]), rtol=1e-6
    )
    assert float(m["hidden"]) == 0.0 and float(m["output_total"]) == float(total)
    with pytest.raises(ValueError, match="not stored"):  # hidden KD on, nothing stored
        distill.make_loss_fn(model, data, distill.KDWeights(hidden=1.0))


def test_top_k_objective_with_k_equal_v_is_the_full_objective():
    rng = np.random.default_rng(8)
    model, params = _student(rng)
    batch = _batch(rng)
    w_full = distill.KDWeights(mlm=0.7, hidden=1.3, logit=0.4, temperature=2.0)
    w_topk = dataclasses.replace(w_full, top_k=V)
    tk = losses.topk_teacher(batch["teacher_logits"], V, 2.0)
    topk_batch = {
        **batch,
        "teacher_topk_values": np.asarray(tk["values"]).astype(np.float16),
        "teacher_topk_ids": np.asarray(tk["ids"]),
        "teacher_rest_logmass": np.asarray(tk["rest"]),
    }
    del topk_batch["teacher_logits"]
    full = distill.KDData({}, {}, {}, {}, DT, HT, V)
    topk = distill.KDData({}, {}, {}, {}, DT, HT, V, top_k=V, temperature=2.0)
    key = jax.random.PRNGKey(0)
    _, m_full = distill.make_loss_fn(model, full, w_full)(params, batch, key, True)
    _, m_topk = distill.make_loss_fn(model, topk, w_topk)(params, topk_batch, key, True)
    np.testing.assert_allclose(float(m_topk["logit"]), float(m_full["logit"]), rtol=1e-5)
    assert float(m_full["logit"]) > 1e-2
    with pytest.raises(ValueError, match="top_k"):  # data stored full logits, loss wants top-k
        distill.make_loss_fn(model, full, w_topk)
