"""Tests of bort_jax.agora.text: nearest-token decoding, the token change rate, and the
samplers that edit text (masked LM, span replacement, nearest real neighbours), alone and
inside Agora's rounds."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from bort_jax import agora
from bort_jax.agora import text
from bort_jax.arch import Arch, Spec
from bort_jax.data import batching
from bort_jax.models.bert import Bert, fresh_params


def _cfg(**kw) -> agora.AgoraConfig:
    return agora.AgoraConfig(**{"samples_per_error": 4, "radius_mode": "absolute", **kw})


# ----------------------------------------------------------------------------- decoding


TABLE = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0], [-3.0, 0.0]], np.float32)


def test_nearest_token_decode_hand_table():
    samples = jnp.array([[[0.9, 0.2], [0.1, 0.8], [4.0, 4.5], [-0.2, 0.1], [-2.0, 0.3]]])
    keep = jnp.array([[False, False, False, True, False]])
    center = jnp.array([[7, 7, 7, 9, 7]])
    ids = text.nearest_token_decode(TABLE, samples, keep, center)
    np.testing.assert_array_equal(ids, [[1, 2, 3, 9, 4]])
    banned = jnp.array([True, True, True, False, True])  # token 3 not allowed
    ids = text.nearest_token_decode(TABLE, samples, keep, center, banned)
    np.testing.assert_array_equal(ids[0, 2], 2)  # (4, 4.5): nearest allowed is (0, 1)
    ids = text.nearest_token_decode(TABLE, samples, keep, center, banned, vocab_block=2)
    np.testing.assert_array_equal(ids, [[1, 2, 2, 9, 4]])


def test_blocked_nearest_token_decode_matches_full():
    table = jax.random.normal(jax.random.PRNGKey(0), (37, 5))
    samples = jax.random.normal(jax.random.PRNGKey(1), (3, 4, 6, 5))
    keep = jnp.zeros((6,), bool).at[0].set(True)
    allowed = jnp.ones(37, bool).at[jnp.array([0, 5, 36])].set(False)
    full = text.nearest_token_decode(table, samples, keep, 99, allowed)
    blocked = text.nearest_token_decode(table, samples, keep, 99, allowed, vocab_block=8)
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
    represent = text.token_embedding_represent(TABLE)
    perturb = text.text_perturb_mask(special)
    decode = text.text_decode_fn(TABLE, special)
    cfg = _cfg(samples_per_error=16, distribution="gaussian")
    labeler = lambda x: x["input_ids"][:, 1]  # noqa: E731

    def step(seed, radius):
        return agora.sample_and_relabel(
            jax.random.PRNGKey(seed),
            represent(inputs),
            labeler,
            decode,
            cfg.with_radius(radius),
            center_inputs=inputs,
            perturb_mask=perturb(inputs),
        )

    _, out, labels = step(0, 3.0)
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
    _, same, _ = step(1, 1e-3)
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
        text.token_change_rate(key, table, inputs, [0, 1, 2], r, cfg, vocab_block=64)
        for r in (0.01, 4.0, 100.0)
    ]
    assert rates[0] == 0.0 and 0.0 < rates[1] < 1.0 and rates[2] > 0.9
    r = text.radius_for_change_rate(
        key, table, inputs, [0, 1, 2], 0.2, cfg, iters=10, vocab_block=64
    )
    rate = text.token_change_rate(key, table, inputs, [0, 1, 2], r, cfg, vocab_block=64)
    assert abs(rate - 0.2) < 0.03


# ------------------------------------------------------------------ text samplers (inputs)


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
    return text.bert_mlm_fn(model, fresh_params(model, seed=0))


def _rigged(target: int, inputs, positions):
    """mlm_fn putting (almost) all mass on `target`: logits [k, m, V]."""
    k, m = positions.shape
    return jnp.broadcast_to(jnp.where(jnp.arange(VOCAB) == target, 50.0, 0.0), (k, m, VOCAB))


def _fixed_logits(logits, inputs, positions):
    k, m = positions.shape
    return jnp.broadcast_to(logits, (k, m, logits.shape[0]))


def test_masked_lm_sampler_changes_exactly_m_perturbable_tokens(tiny_mlm):
    rows, m, k = _token_rows(), 2, 5
    fn = text.masked_lm_sampler(
        tiny_mlm, SPECIAL_IDS, MASK, VOCAB, text.MaskedLMDraw(k, m, top_k=8)
    )
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
        fn = text.masked_lm_sampler(
            Partial(_rigged, target),
            SPECIAL_IDS,
            MASK,
            VOCAB,
            text.MaskedLMDraw(6, 2),
            continuation_ids=cont,
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
        text.masked_lm_sampler(
            Partial(_rigged, 5),
            SPECIAL_IDS,
            MASK,
            VOCAB,
            text.MaskedLMDraw(2, 1),
            continuation_ids=(VOCAB,),
        )


def test_masked_lm_sampler_deterministic_and_chunk_independent():
    rows = _token_rows()
    logits = jax.random.normal(jax.random.PRNGKey(9), (VOCAB,))
    fn = text.masked_lm_sampler(
        Partial(_fixed_logits, logits), SPECIAL_IDS, MASK, VOCAB, text.MaskedLMDraw(3, 2)
    )
    centers = dict(rows, label=np.arange(6, dtype=np.int32) % 2)
    out = [
        agora.generate(
            jax.random.PRNGKey(4),
            centers,
            agora.Generator(_zero_labeler, sample_fn=fn),
            _cfg(samples_per_error=3, chunk_size=c),
            float("nan"),
        )
        for c in (2, 256)
    ]
    for key in ("input_ids", "attention_mask", "label", "synthetic"):
        np.testing.assert_array_equal(out[0][0][key], out[1][0][key])
    gen = agora.Generator(_zero_labeler, sample_fn=fn)
    other, _ = agora.generate(jax.random.PRNGKey(5), centers, gen, _cfg(samples_per_error=3), 0.0)
    assert (other["input_ids"] != out[0][0]["input_ids"]).any()
    assert out[0][1] == pytest.approx(0.5)  # label 0 for all; gold alternates
    with pytest.raises(ValueError, match="samples_per_error=4"):
        agora.generate(jax.random.PRNGKey(4), centers, gen, _cfg(samples_per_error=4), 0.0)


def test_masked_lm_sampler_follows_the_mlm_distribution():
    rows = _token_rows()
    # a head rigged onto token 4: every replacement is 4 (rows 1, 3 have no 4)
    fn = text.masked_lm_sampler(
        Partial(_rigged, 4), SPECIAL_IDS, MASK, VOCAB, text.MaskedLMDraw(4, 2)
    )
    out, _ = agora.resample_and_relabel(jax.random.PRNGKey(1), rows, _zero_labeler, fn)
    ids = np.asarray(out["input_ids"])
    changed = ids != rows["input_ids"][:, None]
    assert changed[[1, 3]].sum() == 2 * 4 * 2 and (ids[changed] == 4).all()
    # a rigged head onto a special id is never obeyed
    fn = text.masked_lm_sampler(
        Partial(_rigged, SEP), SPECIAL_IDS, MASK, VOCAB, text.MaskedLMDraw(4, 2)
    )
    out, _ = agora.resample_and_relabel(jax.random.PRNGKey(1), rows, _zero_labeler, fn)
    assert not np.isin(np.asarray(out["input_ids"])[changed], SPECIAL_IDS).any()
    # softmax(logits / T) restricted to the top-k: frequencies over 8000 draws
    p = np.zeros(VOCAB)
    p[[10, 11, 12]] = [0.6, 0.3, 0.1]
    logits = jnp.asarray(np.log(np.maximum(p, 1e-30)), jnp.float32)
    single = {k: v[5:6] for k, v in rows.items()}  # one perturbable token (id 6)
    for temperature, top_k, want in ((1.0, 0, [0.6, 0.3, 0.1]), (0.5, 2, [0.8, 0.2, 0.0])):
        fn = text.masked_lm_sampler(
            Partial(_fixed_logits, logits),
            SPECIAL_IDS,
            MASK,
            VOCAB,
            text.MaskedLMDraw(8000, 1, temperature, top_k),
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
    fn = text.span_sampler(donors, SPECIAL_IDS, k, w)
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
        text.span_sampler(donors, SPECIAL_IDS, k, 4)


def test_run_agora_with_a_sample_fn():
    """The loop accepts a direct sampler: radius NaN, synthetic rows from the sampler."""
    rows = _token_rows()
    train = dict(rows, label=np.asarray([0, 1, 0, 1, 0, 1], np.int32))
    dev = dict(rows, label=np.asarray([1, 1, 1, 0, 0, 0], np.int32))
    fn = text.span_sampler(rows, SPECIAL_IDS, 2, 2)
    res = agora.run_agora(
        train,
        dev,
        agora.Learner(
            lambda ds, r, rng: batching.num_rows(ds),
            lambda state, inputs: np.zeros(inputs["input_ids"].shape[0], np.int32),
        ),
        agora.Generator(_zero_labeler, sample_fn=fn),
        _cfg(rounds=1, samples_per_error=2, patience=0),
    )
    assert math.isnan(res.radius)
    assert [h["n_errors"] for h in res.history] == [3, 3]
    assert res.history[0]["n_new"] == 6 and res.history[1]["n_synthetic"] == 6
    assert res.train_set["input_ids"].shape == (12, 10)


def test_sentence_embedding_is_the_normalised_masked_mean():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(3, 5, 4)).astype(np.float32)
    mask = np.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], np.int32)
    got = np.asarray(text.sentence_embedding(jnp.asarray(h), jnp.asarray(mask)))
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
    emb = text.embed_rows(Partial(_angle_embed), pool, batch_size=5)
    np.testing.assert_allclose(emb, np.asarray(_angle_embed(pool)), atol=1e-6)
    k, m = 3, 4
    fn = text.neighbour_sampler(pool, emb, Partial(_angle_embed), k, m)
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
        text.neighbour_sampler(pool, emb, Partial(_angle_embed), 5, 4)
    with pytest.raises(ValueError, match="pool_embeddings shape"):
        text.neighbour_sampler(pool, emb[:3], Partial(_angle_embed), 2, 4)
