"""Tests of bort_jax.agora: the sampling step, decoding, the dev split guard and the round
loop. The torus demonstration (Agora beats plain training) is tests/test_agora_torus.py."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from bort_jax import agora
from bort_jax.data import batching


def _sign_labeler(inputs):
    """Label = 1 where the first coordinate is positive. inputs['x']: [k, d] -> [k]."""
    return (inputs["x"][..., 0] > 0).astype(jnp.int32)


def _cfg(**kw) -> agora.AgoraConfig:
    return agora.AgoraConfig(**{"samples_per_error": 4, "radius_mode": "absolute", **kw})


# ----------------------------------------------------------------------- sampling step


def test_sample_and_relabel_shapes_and_determinism():
    centers = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    cfg = _cfg(radius=0.5)
    decode = agora.identity_decode("x")
    a = agora.sample_and_relabel(jax.random.PRNGKey(0), centers, _sign_labeler, decode, cfg)
    b = agora.sample_and_relabel(jax.random.PRNGKey(0), centers, _sign_labeler, decode, cfg)
    c = agora.sample_and_relabel(jax.random.PRNGKey(7), centers, _sign_labeler, decode, cfg)
    samples, inputs, labels = a
    assert samples.shape == (5, 4, 3) and inputs["x"].shape == (5, 4, 3)
    assert labels.shape == (5, 4) and labels.dtype == jnp.int32
    np.testing.assert_array_equal(samples, b[0])
    np.testing.assert_array_equal(labels, b[2])
    assert not np.allclose(samples, c[0])
    np.testing.assert_array_equal(labels, (samples[..., 0] > 0).astype(np.int32))


def test_uniform_ball_within_radius_and_uniform():
    n, k, d, r = 64, 64, 3, 0.3
    centers = jax.random.normal(jax.random.PRNGKey(2), (n, d))
    cfg = _cfg(samples_per_error=k, distribution="uniform_ball")
    samples, _, _ = agora.sample_and_relabel(
        jax.random.PRNGKey(0), centers, _sign_labeler, agora.identity_decode("x"), cfg, radius=r
    )
    norms = np.linalg.norm(np.asarray(samples - centers[:, None]), axis=-1)
    assert norms.max() <= r * (1 + 1e-5)
    assert norms.max() > 0.95 * r
    # Uniform in the ball: (||delta|| / r)^d ~ U(0, 1), mean 1/2, std 1/sqrt(12) / sqrt(N).
    assert abs(np.mean((norms / r) ** d) - 0.5) < 4 / math.sqrt(12 * n * k)


def test_gaussian_has_configured_std():
    n, k, d, r = 128, 64, 4, 0.8
    centers = jnp.zeros((n, d))
    cfg = _cfg(samples_per_error=k, distribution="gaussian")
    samples, _, _ = agora.sample_and_relabel(
        jax.random.PRNGKey(3), centers, _sign_labeler, agora.identity_decode("x"), cfg, radius=r
    )
    delta = np.asarray(samples).reshape(-1, d)
    assert np.allclose(delta.std(axis=0), r / math.sqrt(d), rtol=0.04)
    assert np.allclose(delta.mean(axis=0), 0.0, atol=0.02)
    assert abs(np.mean(np.sum(delta**2, -1)) - r**2) < 0.03 * r**2


def test_vmapped_step_equals_python_loop_and_chunking():
    centers = jax.random.normal(jax.random.PRNGKey(4), (6, 2))
    cfg = _cfg(samples_per_error=3, distribution="uniform_ball")
    rng, r = jax.random.PRNGKey(11), 0.7
    decode = agora.identity_decode("x")
    samples, _, labels = agora.sample_and_relabel(
        rng, centers, _sign_labeler, decode, cfg, radius=r
    )
    for i in range(centers.shape[0]):  # reference: one point at a time
        delta = agora.perturbation(agora.point_key(rng, i), (3, 2), 1, "uniform_ball", r)
        ref = centers[i][None] + delta
        np.testing.assert_allclose(samples[i], ref, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(labels[i], _sign_labeler({"x": ref}))
    tail, _, _ = agora.sample_and_relabel(
        rng, centers[4:], _sign_labeler, decode, cfg, radius=r, index_offset=4
    )
    np.testing.assert_allclose(tail, samples[4:], rtol=1e-6, atol=1e-6)


def test_generate_does_not_depend_on_chunking():
    rng = np.random.default_rng(3)
    centers = {
        "x": rng.normal(size=(11, 2)).astype(np.float32),
        "label": rng.integers(0, 2, 11).astype(np.int32),
    }
    out = [
        agora.generate(
            jax.random.PRNGKey(2),
            centers,
            lambda x: x["x"],
            agora.identity_decode("x"),
            _sign_labeler,
            _cfg(samples_per_error=3, chunk_size=c),
            0.4,
        )
        for c in (3, 256)
    ]
    for key in ("x", "label", "synthetic"):
        np.testing.assert_array_equal(out[0][0][key], out[1][0][key])
    assert out[0][0]["x"].shape == (33, 2) and out[0][0]["synthetic"].all()
    assert out[0][1] == out[1][1]


def test_perturb_mask_freezes_atoms():
    centers = jax.random.normal(jax.random.PRNGKey(5), (3, 4, 2))  # [n, L, E]
    mask = np.array([[1, 1, 0, 0], [0, 1, 1, 1], [1, 0, 1, 0]], bool)
    cfg = _cfg(samples_per_error=5)
    samples, _, _ = agora.sample_and_relabel(
        jax.random.PRNGKey(0),
        centers,
        lambda x: jnp.zeros(x["x"].shape[0], jnp.int32),
        agora.identity_decode("x"),
        cfg,
        radius=1.0,
        perturb_mask=mask,
    )
    moved = np.any(np.asarray(samples) != np.asarray(centers)[:, None], axis=-1)  # [n, k, L]
    np.testing.assert_array_equal(moved, np.broadcast_to(mask[:, None], moved.shape))
    per_token = np.linalg.norm(np.asarray(samples - centers[:, None]), axis=-1)
    assert per_token.max() <= 1.0 + 1e-5  # ball per token


# ----------------------------------------------------------------------------- decoding


TABLE = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0], [-3.0, 0.0]], np.float32)


def test_nearest_token_decode_hand_table():
    samples = jnp.array([[[0.9, 0.2], [0.1, 0.8], [4.0, 4.5], [-0.2, 0.1], [-2.0, 0.3]]])
    keep = jnp.array([[False, False, False, True, False]])
    center = jnp.array([[7, 7, 7, 9, 7]])
    ids = agora.nearest_token_decode(TABLE, samples, keep, center)
    np.testing.assert_array_equal(ids, [[1, 2, 3, 9, 4]])
    banned = jnp.array([True, True, True, False, True])  # token 3 not allowed
    ids = agora.nearest_token_decode(TABLE, samples, keep, center, banned)
    np.testing.assert_array_equal(ids[0, 2], 2)  # (4, 4.5): nearest allowed is (0, 1)
    ids = agora.nearest_token_decode(TABLE, samples, keep, center, banned, vocab_block=2)
    np.testing.assert_array_equal(ids, [[1, 2, 2, 9, 4]])


def test_blocked_nearest_token_decode_matches_full():
    table = jax.random.normal(jax.random.PRNGKey(0), (37, 5))
    samples = jax.random.normal(jax.random.PRNGKey(1), (3, 4, 6, 5))
    keep = jnp.zeros((6,), bool).at[0].set(True)
    allowed = jnp.ones(37, bool).at[jnp.array([0, 5, 36])].set(False)
    full = agora.nearest_token_decode(table, samples, keep, 99, allowed)
    blocked = agora.nearest_token_decode(table, samples, keep, 99, allowed, vocab_block=8)
    np.testing.assert_array_equal(full, blocked)
    d = np.linalg.norm(np.asarray(samples)[..., None, :] - np.asarray(table), axis=-1)
    d[..., ~np.asarray(allowed)] = np.inf
    np.testing.assert_array_equal(full[..., 1:], d.argmin(-1)[..., 1:])
    assert np.all(np.asarray(full)[..., 0] == 99)


def test_text_decode_keeps_special_tokens_padding_and_masks():
    special, pad = [0, 3], 3
    ids = np.array([[0, 1, 2, 4, 3, 3], [0, 4, 4, 1, 2, 3]], np.int32)
    mask = (ids != pad).astype(np.int32)
    mask[:, 0] = 1
    types = np.array([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]], np.int32)
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    represent = agora.token_embedding_represent(TABLE)
    perturb = agora.text_perturb_mask(special)
    decode = agora.text_decode_fn(TABLE, special)
    cfg = _cfg(samples_per_error=16, distribution="gaussian")
    labeler = lambda x: x["input_ids"][:, 1]  # noqa: E731
    _, out, labels = agora.sample_and_relabel(
        jax.random.PRNGKey(0),
        represent(inputs),
        labeler,
        decode,
        cfg,
        radius=3.0,
        center_inputs=inputs,
        perturb_mask=perturb(inputs),
    )
    new = np.asarray(out["input_ids"])
    frozen = ~perturb(inputs)
    np.testing.assert_array_equal(
        new[:, :, frozen[0]][0], np.broadcast_to(ids[0, frozen[0]], (16, frozen[0].sum()))
    )
    for i in range(2):
        assert np.all(new[i][:, frozen[i]] == ids[i, frozen[i]])
        assert not np.isin(new[i][:, ~frozen[i]], special).any()  # never decode to special
    assert (new != ids[:, None]).any()  # something changed
    for name in ("attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(out[name], np.broadcast_to(inputs[name][:, None], (2, 16, 6)))
    np.testing.assert_array_equal(labels, new[:, :, 1])
    # Tiny radius: every token decodes back to itself.
    _, same, _ = agora.sample_and_relabel(
        jax.random.PRNGKey(1),
        represent(inputs),
        labeler,
        decode,
        cfg,
        radius=1e-3,
        center_inputs=inputs,
        perturb_mask=perturb(inputs),
    )
    np.testing.assert_array_equal(same["input_ids"], np.broadcast_to(ids[:, None], (2, 16, 6)))


def test_radius_for_token_change_rate():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(200, 16)).astype(np.float32)
    ids = rng.integers(3, 200, (16, 12)).astype(np.int32)
    ids[:, 0], ids[:, -2:] = 0, 1
    inputs = {"input_ids": ids, "attention_mask": (ids != 1).astype(np.int32)}
    cfg = _cfg(samples_per_error=8, distribution="gaussian")
    key = jax.random.PRNGKey(0)
    rates = [
        agora.token_change_rate(key, table, inputs, [0, 1, 2], r, cfg, vocab_block=64)
        for r in (0.01, 4.0, 100.0)
    ]
    assert rates[0] == 0.0 and 0.0 < rates[1] < 1.0 and rates[2] > 0.9
    r = agora.radius_for_change_rate(
        key, table, inputs, [0, 1, 2], 0.2, cfg, iters=10, vocab_block=64
    )
    rate = agora.token_change_rate(key, table, inputs, [0, 1, 2], r, cfg, vocab_block=64)
    assert abs(rate - 0.2) < 0.03


# ------------------------------------------------------------------ split, radius, replay


def test_split_dev_disjoint_and_deterministic():
    a, h = agora.split_dev(101, 0.3, seed=5)
    a2, h2 = agora.split_dev(101, 0.3, seed=5)
    a3, _ = agora.split_dev(101, 0.3, seed=6)
    agora.assert_disjoint(a, h)
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(h, h2)
    assert not np.array_equal(a, a3)
    assert len(a) == 30 and np.array_equal(np.sort(np.concatenate([a, h])), np.arange(101))
    with pytest.raises(AssertionError):
        agora.assert_disjoint(a, np.concatenate([h, a[:1]]))


def test_mean_nn_distance_and_radius():
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [3.0, 0.0]])
    atoms = agora.reference_atoms(pts, atom_ndim=1)  # duplicate removed
    assert atoms.shape == (3, 2)
    assert agora.mean_nn_distance(atoms) == pytest.approx(4.0 / 3.0)
    cfg = agora.AgoraConfig(radius=0.5, radius_mode="nn_mean")
    assert agora.resolve_radius(cfg, atoms) == pytest.approx(2.0 / 3.0)
    assert agora.resolve_radius(dataclasses.replace(cfg, radius_mode="absolute")) == 0.5


def test_replay_fraction_and_cap():
    def rows(n, start):
        return {
            "x": np.arange(start, start + n, dtype=np.float32)[:, None],
            "label": np.zeros(n, np.int32),
            "synthetic": np.ones(n, bool),
        }

    old, new = rows(10, 0), rows(4, 100)
    out = agora.replay(old, new, agora.AgoraConfig(replay_fraction=0.5), 1)
    assert batching.num_rows(out) == 9 and set(out["x"][-4:, 0]) == {100, 101, 102, 103}
    out = agora.replay(old, new, agora.AgoraConfig(replay_fraction=1.0, max_synthetic=6), 1)
    assert batching.num_rows(out) == 6 and set(out["x"][-4:, 0]) == {100, 101, 102, 103}
    out = agora.replay(old, new, agora.AgoraConfig(replay_fraction=0.0), 1)
    assert batching.num_rows(out) == 4
    out = agora.replay(old, new, agora.AgoraConfig(max_synthetic=2), 1)
    assert batching.num_rows(out) == 2 and set(out["x"][:, 0]) <= {100, 101, 102, 103}


# -------------------------------------------------------------------------- round loop


def _ring(n, rng, arc=2 * np.pi):
    theta = rng.uniform(0, arc, n)
    x = np.stack([np.cos(theta), np.sin(theta)], -1).astype(np.float32)
    return {"x": x, "label": (theta > np.pi).astype(np.int32)}


def test_run_agora_loop_with_nearest_neighbour_model():
    """1-NN 'model' (no training): checks the bookkeeping, selection and held-out isolation."""
    rng = np.random.default_rng(0)
    train_set = _ring(12, rng, arc=np.pi)  # only label 0 is ever seen
    dev = _ring(200, rng)
    agora_idx, heldout_idx = agora.split_dev(200, 0.5, seed=0)
    agora.assert_disjoint(agora_idx, heldout_idx)
    agora_dev, heldout = batching.take(dev, agora_idx), batching.take(dev, heldout_idx)
    heldout_rows = {tuple(x) for x in heldout["x"]}
    seen: list[np.ndarray] = []
    fits: list[tuple[int, int, int]] = []

    def fit_fn(data, r, key):
        assert data["synthetic"].dtype == bool
        fits.append((r, batching.num_rows(data), int(data["synthetic"].sum())))
        seen.append(data["x"])
        return {k: np.asarray(v) for k, v in data.items()}

    def predict_fn(state, inputs):
        seen.append(inputs["x"])
        d = np.linalg.norm(inputs["x"][:, None] - state["x"][None], axis=-1)
        return state["label"][np.argmin(d, axis=1)]

    def labeler(inputs):
        return (jnp.arctan2(inputs["x"][:, 1], inputs["x"][:, 0]) < 0).astype(jnp.int32)

    cfg = agora.AgoraConfig(
        rounds=3, samples_per_error=4, radius=0.05, radius_mode="absolute", patience=2, seed=0
    )
    res = agora.run_agora(
        train_set,
        agora_dev,
        fit_fn,
        predict_fn,
        lambda inputs: inputs["x"],
        agora.identity_decode("x"),
        labeler,
        cfg,
    )
    h = res.history
    assert h[0]["n_synthetic"] == 0 and h[0]["train_size"] == 12
    assert h[0]["n_new"] == 4 * h[0]["n_errors"] > 0
    assert h[1]["n_synthetic"] == h[0]["n_new"]
    assert fits[1] == (1, 12 + h[0]["n_new"], h[0]["n_new"])
    assert h[0]["labeler_agreement"] > 0.9
    assert res.best_metric == max(r["agora_dev_metric"] for r in h)
    assert res.best_metric > h[0]["agora_dev_metric"] + 0.3
    assert res.history[res.best_round]["is_best"]
    for x in seen:  # Agora never touched held-out rows
        assert not heldout_rows & {tuple(row) for row in x}
    again = agora.run_agora(
        train_set,
        agora_dev,
        fit_fn,
        predict_fn,
        lambda inputs: inputs["x"],
        agora.identity_decode("x"),
        labeler,
        cfg,
    )
    np.testing.assert_array_equal(again.train_set["x"], res.train_set["x"])


def test_patience_stops_early():
    rng = np.random.default_rng(1)
    train_set, dev = _ring(8, rng), _ring(40, rng)
    const = lambda state, inputs: np.zeros(len(inputs["x"]), np.int32)  # noqa: E731
    cfg = agora.AgoraConfig(
        rounds=10, samples_per_error=2, radius=0.1, radius_mode="absolute", patience=2
    )
    res = agora.run_agora(
        train_set,
        dev,
        lambda d, r, k: None,
        const,
        lambda inputs: inputs["x"],
        agora.identity_decode("x"),
        lambda inputs: jnp.zeros(inputs["x"].shape[0], jnp.int32),
        cfg,
    )
    assert [r["round"] for r in res.history] == [0, 1, 2] and res.best_round == 0


# ------------------------------------------------------------------ text samplers (inputs)

from bort_jax import agora_text  # noqa: E402
from bort_jax.arch import Arch, Spec  # noqa: E402
from bort_jax.models.bert import Bert, fresh_params  # noqa: E402

PAD, CLS, SEP, MASK = 0, 1, 2, 3
SPECIAL_IDS = (PAD, CLS, SEP, MASK)
VOCAB = 20


def _token_rows() -> dict:
    """Six rows [6, 10]: CLS words SEP (pairs: CLS a SEP b SEP) PAD...; varied lengths."""
    rows = [
        [CLS, 5, 6, 7, 8, SEP, PAD, PAD, PAD, PAD],
        [CLS, 9, 10, SEP, 11, 12, 13, SEP, PAD, PAD],
        [CLS, 4, 5, 6, 7, 8, 9, 10, 11, SEP],
        [CLS, 12, 13, 14, SEP, PAD, PAD, PAD, PAD, PAD],
        [CLS, 15, 16, 17, 18, 19, 4, SEP, PAD, PAD],
        [CLS, 6, SEP, PAD, PAD, PAD, PAD, PAD, PAD, PAD],  # one perturbable token
    ]
    ids = np.asarray(rows, np.int32)
    return {
        "input_ids": ids,
        "attention_mask": (ids != PAD).astype(np.int32),
        "token_type_ids": np.zeros_like(ids),
    }


def _zero_labeler(inputs):
    return jnp.zeros(inputs["input_ids"].shape[0], jnp.int32)


@pytest.fixture(scope="module")
def tiny_mlm():
    arch, spec = Arch(1, 2, 16, 32), Spec(vocab_size=VOCAB, max_positions=16, pooler=False)
    model = Bert(arch, spec, mlm_head=True)
    return agora_text.bert_mlm_fn(model, fresh_params(model, seed=0))


def _rigged(target: int, inputs, positions):
    """mlm_fn putting (almost) all mass on `target`: logits [k, m, V]."""
    k, m = positions.shape
    return jnp.broadcast_to(jnp.where(jnp.arange(VOCAB) == target, 50.0, 0.0), (k, m, VOCAB))


def _fixed_logits(logits, inputs, positions):
    k, m = positions.shape
    return jnp.broadcast_to(logits, (k, m, logits.shape[0]))


def test_masked_lm_sampler_changes_exactly_m_perturbable_tokens(tiny_mlm):
    rows, m, k = _token_rows(), 2, 5
    fn = agora_text.masked_lm_sampler(tiny_mlm, SPECIAL_IDS, MASK, VOCAB, k, m, top_k=8)
    out, labels = agora.resample_and_relabel(jax.random.PRNGKey(0), rows, _zero_labeler, fn)
    ids = np.asarray(out["input_ids"])
    assert ids.shape == (6, k, 10) and np.asarray(labels).shape == (6, k)
    eligible = ~np.isin(rows["input_ids"], SPECIAL_IDS)
    changed = ids != rows["input_ids"][:, None]
    want = np.broadcast_to(np.minimum(m, eligible.sum(-1))[:, None], (6, k))
    np.testing.assert_array_equal(changed.sum(-1), want)
    assert not (changed & ~eligible[:, None]).any()  # special / pad positions untouched
    assert not np.isin(ids[changed], SPECIAL_IDS).any()  # no special id emitted
    for key in ("attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(np.asarray(out[key]), np.repeat(rows[key][:, None], k, 1))
    # the k samples of a centre use different positions (not one draw repeated)
    assert len({tuple(np.flatnonzero(c)) for c in changed[2]}) > 1


def test_masked_lm_sampler_whole_words_only():
    """With continuation ids {7, 8, 13, 4}: only one-piece words are chosen (not a '##'
    piece, not followed by one) and no '##' id is emitted, even by a head rigged onto one."""
    rows, cont = _token_rows(), (4, 7, 8, 13)
    ids0 = rows["input_ids"]
    is_cont = np.isin(ids0, cont)
    nxt = np.concatenate([is_cont[:, 1:], np.zeros((6, 1), bool)], 1)
    eligible = ~np.isin(ids0, SPECIAL_IDS) & ~is_cont & ~nxt
    # hand check of row 0 (CLS 5 6 7 8 SEP): 6 starts the word "6 ##7 ##8"; only 5 is whole
    np.testing.assert_array_equal(eligible[0, :6], [0, 1, 0, 0, 0, 0])
    for target in (8, 15):  # a continuation piece (never obeyed), a whole word
        fn = agora_text.masked_lm_sampler(
            Partial(_rigged, target), SPECIAL_IDS, MASK, VOCAB, 6, 2, continuation_ids=cont
        )
        out, _ = agora.resample_and_relabel(jax.random.PRNGKey(3), rows, _zero_labeler, fn)
        ids = np.asarray(out["input_ids"])
        changed = ids != ids0[:, None]
        assert not (changed & ~eligible[:, None]).any()
        np.testing.assert_array_equal(
            changed.sum(-1), np.broadcast_to(np.minimum(2, eligible.sum(-1))[:, None], (6, 6))
        )
        assert not np.isin(ids[changed], cont + SPECIAL_IDS).any()
        if target == 15:  # obeyed, except where the original already is 15 (excluded)
            orig = np.broadcast_to(ids0[:, None], ids.shape)[changed]
            assert (ids[changed][orig != 15] == 15).all() and (ids[changed][orig == 15] != 15).all()
    with pytest.raises(ValueError, match="continuation_ids"):
        agora_text.masked_lm_sampler(
            Partial(_rigged, 5), SPECIAL_IDS, MASK, VOCAB, 2, 1, continuation_ids=(VOCAB,)
        )


def test_masked_lm_sampler_deterministic_and_chunk_independent():
    rows = _token_rows()
    logits = jax.random.normal(jax.random.PRNGKey(9), (VOCAB,))
    fn = agora_text.masked_lm_sampler(
        Partial(_fixed_logits, logits), SPECIAL_IDS, MASK, VOCAB, 3, 2
    )
    centers = dict(rows, label=np.arange(6, dtype=np.int32) % 2)
    out = [
        agora.generate(
            jax.random.PRNGKey(4),
            centers,
            None,
            None,
            _zero_labeler,
            _cfg(samples_per_error=3, chunk_size=c),
            float("nan"),
            sample_fn=fn,
        )
        for c in (2, 256)
    ]
    for key in ("input_ids", "attention_mask", "label", "synthetic"):
        np.testing.assert_array_equal(out[0][0][key], out[1][0][key])
    other, _ = agora.generate(
        jax.random.PRNGKey(5), centers, None, None, _zero_labeler, _cfg(samples_per_error=3),
        0.0, sample_fn=fn,
    )  # fmt: skip
    assert (other["input_ids"] != out[0][0]["input_ids"]).any()
    assert out[0][1] == pytest.approx(0.5)  # label 0 for all; gold alternates
    with pytest.raises(ValueError, match="samples_per_error=4"):
        agora.generate(
            jax.random.PRNGKey(4), centers, None, None, _zero_labeler,
            _cfg(samples_per_error=4), 0.0, sample_fn=fn,
        )  # fmt: skip


def test_masked_lm_sampler_follows_the_mlm_distribution():
    rows = _token_rows()
    # a head rigged onto token 4: every replacement is 4 (rows 1, 3 have no 4)
    fn = agora_text.masked_lm_sampler(Partial(_rigged, 4), SPECIAL_IDS, MASK, VOCAB, 4, 2)
    out, _ = agora.resample_and_relabel(jax.random.PRNGKey(1), rows, _zero_labeler, fn)
    ids = np.asarray(out["input_ids"])
    changed = ids != rows["input_ids"][:, None]
    assert changed[[1, 3]].sum() == 2 * 4 * 2 and (ids[changed] == 4).all()
    # a rigged head onto a special id is never obeyed
    fn = agora_text.masked_lm_sampler(Partial(_rigged, SEP), SPECIAL_IDS, MASK, VOCAB, 4, 2)
    out, _ = agora.resample_and_relabel(jax.random.PRNGKey(1), rows, _zero_labeler, fn)
    assert not np.isin(np.asarray(out["input_ids"])[changed], SPECIAL_IDS).any()
    # softmax(logits / T) restricted to the top-k: frequencies over 8000 draws
    p = np.zeros(VOCAB)
    p[[10, 11, 12]] = [0.6, 0.3, 0.1]
    logits = jnp.asarray(np.log(np.maximum(p, 1e-30)), jnp.float32)
    single = {k: v[5:6] for k, v in rows.items()}  # one perturbable token (id 6)
    for temperature, top_k, want in ((1.0, 0, [0.6, 0.3, 0.1]), (0.5, 2, [0.8, 0.2, 0.0])):
        fn = agora_text.masked_lm_sampler(
            Partial(_fixed_logits, logits), SPECIAL_IDS, MASK, VOCAB, 8000, 1, temperature, top_k
        )
        out, _ = agora.resample_and_relabel(jax.random.PRNGKey(2), single, _zero_labeler, fn)
        new = np.asarray(out["input_ids"])[0, :, 1]
        freq = [np.mean(new == t) for t in (10, 11, 12)]
        np.testing.assert_allclose(freq, want, atol=0.02)  # 3.6 sigma


def test_span_sampler_keeps_length_and_special_tokens():
    rows, k, w = _token_rows(), 6, 2
    donors = {
        "input_ids": np.asarray([[CLS, 14, 15, 16, SEP, PAD], [CLS, 17, SEP, PAD, PAD, PAD]]),
        "attention_mask": np.asarray([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]]),
    }
    fn = agora_text.span_sampler(donors, SPECIAL_IDS, k, w)
    out, _ = agora.resample_and_relabel(jax.random.PRNGKey(3), rows, _zero_labeler, fn)
    ids = np.asarray(out["input_ids"])
    assert ids.shape == (6, k, 10)
    special = np.isin(rows["input_ids"], SPECIAL_IDS)
    np.testing.assert_array_equal(ids[special.nonzero()[0], :, special.nonzero()[1]].T.shape,
                                  (k, special.sum()))  # fmt: skip
    same = ids == rows["input_ids"][:, None]
    assert same[np.broadcast_to(special[:, None], same.shape)].all()
    windows = {(14, 15), (15, 16)}  # donor 1 has no 2-token window
    for i in range(6):
        for j in range(k):
            pos = np.flatnonzero(~same[i, j])
            if i == 5:  # no 2 consecutive perturbable tokens: unchanged
                assert pos.size == 0
                continue
            # the written window: 2 consecutive positions holding a donor window
            starts = [s for s in range(9) if tuple(ids[i, j, s : s + 2]) in windows
                      and not special[i, s : s + 2].any()]  # fmt: skip
            assert starts and all(p in range(min(starts), max(starts) + 2) for p in pos)
    with pytest.raises(ValueError, match="consecutive"):
        agora_text.span_sampler(donors, SPECIAL_IDS, k, 4)


def test_run_agora_with_a_sample_fn():
    """The loop accepts a direct sampler: radius NaN, synthetic rows from the sampler."""
    rows = _token_rows()
    train = dict(rows, label=np.asarray([0, 1, 0, 1, 0, 1], np.int32))
    dev = dict(rows, label=np.asarray([1, 1, 1, 0, 0, 0], np.int32))
    fn = agora_text.span_sampler(rows, SPECIAL_IDS, 2, 2)
    res = agora.run_agora(
        train,
        dev,
        lambda ds, r, rng: batching.num_rows(ds),
        lambda state, inputs: np.zeros(inputs["input_ids"].shape[0], np.int32),
        None,
        None,
        _zero_labeler,
        _cfg(rounds=1, samples_per_error=2, patience=0),
        sample_fn=fn,
    )
    assert math.isnan(res.radius)
    assert [h["n_errors"] for h in res.history] == [3, 3]
    assert res.history[0]["n_new"] == 6 and res.history[1]["n_synthetic"] == 6
    assert res.train_set["input_ids"].shape == (12, 10)


def test_sentence_embedding_is_the_normalised_masked_mean():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(3, 5, 4)).astype(np.float32)
    mask = np.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], np.int32)
    got = np.asarray(agora_text.sentence_embedding(jnp.asarray(h), jnp.asarray(mask)))
    for i in range(3):
        mean = h[i, : mask[i].sum()].mean(0)
        np.testing.assert_allclose(got[i], mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-6)


def _angle_embed(inputs):
    """Toy embed_fn: the unit vector at angle (first content id) * 10 degrees, [n, 2]."""
    theta = jnp.deg2rad(10.0 * inputs["input_ids"][:, 1].astype(jnp.float32))
    return jnp.stack([jnp.cos(theta), jnp.sin(theta)], -1)


def test_neighbour_sampler_draws_distinct_rows_among_the_m_nearest():
    # pool rows: CLS t SEP PAD ... for t = 4 .. 19; embedding angle 10 t degrees
    tokens = np.arange(4, VOCAB)
    ids = np.zeros((len(tokens), 10), np.int32)
    ids[:, 0], ids[:, 1], ids[:, 2] = CLS, tokens, SEP
    pool = {
        "input_ids": ids,
        "attention_mask": (ids != PAD).astype(np.int32),
        "token_type_ids": np.zeros_like(ids),
    }
    emb = agora_text.embed_rows(Partial(_angle_embed), pool, batch_size=5)
    np.testing.assert_allclose(emb, np.asarray(_angle_embed(pool)), atol=1e-6)
    k, m = 3, 4
    fn = agora_text.neighbour_sampler(pool, emb, Partial(_angle_embed), k, m)
    rows = _token_rows()  # centres' first content ids: 5, 9, 4, 12, 15, 6
    out, labels = agora.resample_and_relabel(jax.random.PRNGKey(0), rows, _zero_labeler, fn)
    got = np.asarray(out["input_ids"])
    assert got.shape == (6, k, 10) and np.asarray(labels).shape == (6, k)
    for i, c in enumerate(rows["input_ids"][:, 1]):
        # within the m-th nearest angle |10 t - 10 c| (ties at that distance allowed)
        dist = np.abs(tokens - c)
        near = set(tokens[dist <= np.sort(dist)[m - 1]].tolist())
        picked = got[i, :, 1].tolist()
        assert len(set(picked)) == k and set(picked) <= near, (c, picked, near)
        np.testing.assert_array_equal(got[i, :, 2], SEP)  # whole pool rows are copied
        np.testing.assert_array_equal(
            np.asarray(out["attention_mask"])[i], pool["attention_mask"][got[i, :, 1] - 4]
        )
    # the draw is uniform over k-subsets: over many keys every near row is picked
    seen = set()
    for s in range(20):
        out, _ = agora.resample_and_relabel(jax.random.PRNGKey(s), rows, _zero_labeler, fn)
        seen |= set(np.asarray(out["input_ids"])[0, :, 1].tolist())
    assert seen == {4, 5, 6, 7}
    with pytest.raises(ValueError, match="k <= m"):
        agora_text.neighbour_sampler(pool, emb, Partial(_angle_embed), 5, 4)
    with pytest.raises(ValueError, match="pool_embeddings shape"):
        agora_text.neighbour_sampler(pool, emb[:3], Partial(_angle_embed), 2, 4)
