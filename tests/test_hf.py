"""Checkpoint I/O against the real all-MiniLM-L6-v2 and the Hugging Face PyTorch reference."""

import importlib.util
import json
import sys

import jax
import numpy as np
import pytest

from bort_jax import hf
from bort_jax.arch import Arch, Spec
from bort_jax.models.bert import Bert, init_params


@pytest.fixture(scope="module")
def reference(fixtures_dir):
    """Hugging Face PyTorch outputs of all-MiniLM-L6-v2 (tests/fixtures/README.md)."""
    return np.load(fixtures_dir / "minilm_reference.npz")


@jax.default_matmul_precision("highest")  # exact fp32 matmuls on GPU/TPU too
def test_minilm_parity_every_hidden_state(minilm, reference):
    model = Bert(minilm.arch, minilm.spec)
    out = model.apply(
        {"params": minilm.params},
        reference["input_ids"],
        reference["attention_mask"],
        reference["token_type_ids"],
        output_hidden_states=True,
    )
    got = np.stack(out["hidden_states"])
    assert got.shape == reference["hidden_states"].shape == (7, 5, 32, 384)
    err = np.abs(got - reference["hidden_states"])
    real = reference["attention_mask"].astype(bool)
    real_err, pad_err = err[:, real].max(axis=(1, 2)), err[:, ~real].max(axis=(1, 2))
    # Real tokens agree to ~6e-6. Padding positions (which attend to the real tokens as well)
    # pick up rounding differences that grow with depth: 1.1e-4 at layer 4 on XLA:CPU.
    assert real_err.max() <= 2e-5, f"per-layer max |Δ| on real tokens = {real_err}"
    assert pad_err.max() <= 3e-4, f"per-layer max |Δ| on padding = {pad_err}"


def test_minilm_tokenizer_matches_reference_ids(minilm_dir, reference):
    tok = hf.load_tokenizer(minilm_dir)
    texts = [str(t) for t in reference["texts"]]
    single = hf.encode(tok, texts[:4], max_length=32)
    a, b = texts[4].split(" ||| ")
    pair = hf.encode(tok, [a], [b], max_length=32)
    np.testing.assert_array_equal(single["input_ids"], reference["input_ids"][:4])
    np.testing.assert_array_equal(pair["input_ids"], reference["input_ids"][4:])
    np.testing.assert_array_equal(pair["token_type_ids"], reference["token_type_ids"][4:])
    np.testing.assert_array_equal(single["attention_mask"], reference["attention_mask"][:4])


def test_reference_script_describes_fixture(fixtures_dir, reference):
    """make_minilm_reference.py (run with torch elsewhere) encodes exactly the stored texts."""
    spec = importlib.util.spec_from_file_location(
        "make_minilm_reference", fixtures_dir / "make_minilm_reference.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)  # imports numpy only; torch is imported when it runs
    texts = [*script.SINGLES, script.PAIR_SEPARATOR.join(script.PAIR)]
    assert [str(t) for t in reference["texts"]] == texts
    assert reference["input_ids"].shape == (len(texts), script.MAX_LENGTH)
    assert "torch" not in sys.modules


@pytest.mark.slow
def test_other_lengths_consistent(minilm, minilm_dir):
    """Same text at lengths 16 and 64: the real tokens' states agree (padding does not leak)."""
    tok = hf.load_tokenizer(minilm_dir)
    model = Bert(minilm.arch, minilm.spec)
    short, long = (hf.encode(tok, ["the quick brown fox"], max_length=n) for n in (16, 64))
    a = model.apply({"params": minilm.params}, **short)["last_hidden_state"]
    b = model.apply({"params": minilm.params}, **long)["last_hidden_state"]
    n = int(short["attention_mask"].sum())
    np.testing.assert_allclose(a[0, :n], b[0, :n], atol=1e-5)


def test_round_trip_bit_exact(minilm, minilm_dir, tmp_path):
    out = hf.save(
        tmp_path / "export", minilm.params, minilm.arch, minilm.spec, tokenizer_dir=minilm_dir
    )
    again = hf.load(out)
    assert again.arch == minilm.arch and again.spec == minilm.spec
    jax.tree_util.tree_map(np.testing.assert_array_equal, again.params, minilm.params)
    from safetensors.numpy import load_file

    orig = load_file(f"{minilm_dir}/model.safetensors")
    new = load_file(str(out / "model.safetensors"))
    for k, v in new.items():
        np.testing.assert_array_equal(v, orig[k])
    assert (out / "vocab.txt").is_file()


def test_mlm_head_and_prefixed_keys_round_trip(tmp_path):
    arch, spec = Arch(1, 2, 8, 12), Spec(vocab_size=20, max_positions=16)
    params = init_params(Bert(arch, spec, mlm_head=True), jax.random.PRNGKey(0))
    tensors = hf.params_to_tensors(params, arch, prefix="bert.")
    assert "bert.encoder.layer.0.attention.self.query.weight" in tensors
    assert "cls.predictions.transform.dense.weight" in tensors
    back = hf.tensors_to_params(tensors, arch, spec)
    jax.tree_util.tree_map(np.testing.assert_array_equal, back, jax.device_get(params))
    # torch layout: (out, in)
    assert tensors["bert.encoder.layer.0.intermediate.dense.weight"].shape == (12, 8)


def test_roberta_config_gives_offset_positions():
    arch, spec = hf.config_to_arch_spec(
        {
            "model_type": "roberta",
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "vocab_size": 50265,
            "max_position_embeddings": 514,
            "type_vocab_size": 1,
            "layer_norm_eps": 1e-5,
            "pad_token_id": 1,
        }
    )
    assert spec.position_offset == 2 and spec.pad_token_id == 1 and arch.depth == 24


def test_named_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hf.load(tmp_path / "nope")
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(ValueError, match="num_hidden_layers"):
        hf.load(tmp_path)


def test_shape_mismatch_is_named(tmp_path, minilm_dir):
    import shutil

    d = tmp_path / "bad"
    shutil.copytree(minilm_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] = 1024
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="ffn_in"):
        hf.load(d)


def test_byte_level_bpe_tokenizer(tmp_path):
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        ["hello world, hello bort"] * 20,
        vocab_size=300,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    bpe.save_model(str(tmp_path))
    tok = hf.load_tokenizer(tmp_path)
    ids = hf.special_ids(tok)
    assert (ids["cls"], ids["pad"], ids["sep"]) == (0, 1, 2)
    enc = hf.encode(tok, ["hello world"], ["hello"], max_length=12)
    row = enc["input_ids"][0]
    assert row[0] == 0 and list(row).count(2) == 3  # <s> a </s></s> b </s>
    assert row[-1] == 1
