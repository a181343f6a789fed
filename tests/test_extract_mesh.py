"""Extraction and pretraining on a device mesh: candidate-parallel search, sharded KD.

Needs 8 devices: `.ci/run` runs it in a second pytest process with
XLA_FLAGS=--xla_force_host_platform_device_count=8 (8 fake CPU devices); in the default
single-device process it is skipped with that reason.
"""

import json

import jax
import numpy as np
import pytest

from bort_jax import extract, hf, pretrain, sharding, train
from bort_jax.arch import Arch, Spec
from bort_jax.models.bert import Bert, init_params
from configs import bert_large, pretrain_bort

pytestmark = pytest.mark.skipif(
    jax.device_count() < 8,
    reason="needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8 (.ci/run)",
)


def _random_bert(path, arch, tokenizer_dir):
    """A randomly initialised BERT with an MLM head (a toy member of the BERT-large family)."""
    spec = Spec(vocab_size=30522, max_positions=64, pooler=True)
    params = init_params(Bert(arch, spec, mlm_head=True), jax.random.PRNGKey(0))
    return hf.save(path, jax.device_get(params), arch, spec, tokenizer_dir=tokenizer_dir)


def _bert_large_toy(tmp_path, minilm_dir, parallel):
    source = _random_bert(tmp_path / "bert_large_toy", Arch(2, 4, 128, 256), minilm_dir)
    teacher = _random_bert(tmp_path / "roberta_toy", Arch(2, 4, 128, 256), minilm_dir)
    cfg = bert_large.get_config("smoke")
    cfg.source_dir, cfg.teacher_dir, cfg.corpus = str(source), str(teacher), "embedded"
    cfg.grid.depth, cfg.grid.heads, cfg.grid.hidden = [1, 2], [4], [128]
    cfg.grid.intermediate = [128, 256]  # 4 candidates
    cfg.proxy.batch_size = 8
    cfg.inference = "flops"
    cfg.parallel = parallel
    return cfg


def _run(tmp_path, minilm_dir, parallel):
    cfg = _bert_large_toy(tmp_path, minilm_dir, parallel)
    summary = extract.extract(cfg, str(tmp_path / f"out_{parallel}"))
    return summary, json.loads((tmp_path / f"out_{parallel}" / "report.json").read_text())


@pytest.fixture(scope="module")
def sequential(tmp_path_factory, minilm_dir):
    """One candidate at a time, each on the whole 8-device mesh (data=8)."""
    return _run(tmp_path_factory.mktemp("seq"), minilm_dir, 1)


@pytest.mark.slow
@pytest.mark.parametrize("parallel", (4,))
def test_bert_large_config_candidate_parallel_on_mesh_equals_sequential(
    tmp_path, minilm_dir, sequential, parallel
):
    """bert_large config at toy size: k candidates at a time on k device groups (8/k devices
    each, data-parallel) make the same search as one at a time on the whole 8-device mesh."""
    (seq, seq_rep), (par, par_rep) = sequential, _run(tmp_path, minilm_dir, parallel)
    assert par["chosen"] == seq["chosen"]
    cands = [[ev["candidate"] for ev in rep["evaluations"]] for rep in (seq_rep, par_rep)]
    assert cands[0] == cands[1] and len(cands[0]) >= 2
    np.testing.assert_allclose(
        [ev["e"] for ev in par_rep["evaluations"]],
        [ev["e"] for ev in seq_rep["evaluations"]],
        rtol=1e-5,
    )
    assert par_rep["parallel"] == parallel and seq_rep["parallel"] == 1
    assert par_rep["n_rounds"] < seq_rep["n_rounds"] == len(cands[0])
    assert all(m["heldout_logit"] > 0 for m in par["candidate_metrics"].values())


def test_named_errors_for_mesh_and_parallel(tmp_path, minilm_dir):
    cfg = _bert_large_toy(tmp_path, minilm_dir, 3)
    with pytest.raises(ValueError, match="8 devices do not split into 3 equal groups"):
        extract.extract(cfg, str(tmp_path / "out"))
    cfg = _bert_large_toy(tmp_path, minilm_dir, 2)
    cfg.proxy.batch_size = 6
    with pytest.raises(ValueError, match="proxy.batch_size=6 must be divisible by"):
        extract.extract(cfg, str(tmp_path / "out"))
    with pytest.raises(ValueError, match="parallel"):
        sharding.DeviceGroups(0)


def _record_training(monkeypatch):
    """What `train.train` got and gave inside `pretrain.pretrain`: the active partitioner,
    every batch it placed and the final train state."""
    seen = {"batches": [], "runs": []}
    real_train, real_put = train.train, sharding.Partitioner.put_batch

    def recording_train(*args, **kwargs):
        result = real_train(*args, **kwargs)
        seen["runs"].append((sharding.current(), result.state))
        return result

    def recording_put(self, batch):
        out = real_put(self, batch)
        seen["batches"].append(out)
        return out

    monkeypatch.setattr(train, "train", recording_train)
    monkeypatch.setattr(sharding.Partitioner, "put_batch", recording_put)
    return seen


@pytest.mark.slow
def test_pretrain_on_mesh_equals_one_device(tmp_path, monkeypatch):
    """configs/pretrain_bort.py's `mesh` (data=2, model=4 here) trains the same student as
    one device does, to fp32 tolerance, and the run really trained on that mesh."""
    cfg = pretrain_bort.get_config("smoke")
    cfg.num_steps, cfg.checkpoint_every, cfg.eval_every = 3, 3, 3
    cfg.mesh.data, cfg.mesh.model = 2, 4
    seen = _record_training(monkeypatch)
    sharded = pretrain.pretrain(cfg, str(tmp_path / "mesh"))
    (part, state), batches = seen["runs"][0], list(seen["batches"])
    # the mesh of config.mesh, every train step's batch split over its 2 data shards
    assert part is not None and part.mesh.shape == {"data": 2, "fsdp": 1, "model": 4}
    assert len(batches) == cfg.num_steps
    for batch in batches:
        for value in batch.values():
            assert value.sharding.mesh.shape == part.mesh.shape
            rows = {s.data.shape[0] for s in value.addressable_shards}
            assert rows == {value.shape[0] // 2}, rows
    # the student's weights and AdamW moments: split 4 ways over `model`, on all 8 devices
    kernel = state.params["student"]["layer_1"]["ffn_in"]["kernel"]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, "model")  # fsdp=1: dropped
    assert {s.data.shape for s in kernel.addressable_shards} == {
        (kernel.shape[0], kernel.shape[1] // 4)
    }
    assert {s.device for s in kernel.addressable_shards} == set(jax.devices())
    moments = [
        leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(state.opt_state)[0]
        if sharding._path_str(path).endswith("student/layer_1/ffn_in/kernel")
    ]
    assert len(moments) == 2 and all(m.sharding == kernel.sharding for m in moments)

    one = sharding.Partitioner.from_config(sharding.MeshConfig(), jax.devices()[:1])
    with one.activate():  # an active partitioner wins over config.mesh
        single = pretrain.pretrain(cfg, str(tmp_path / "one"))
    one_part, one_state = seen["runs"][1]
    assert one_part is one
    one_kernel = one_state.params["student"]["layer_1"]["ffn_in"]["kernel"]
    assert [s.device for s in one_kernel.addressable_shards] == [jax.devices()[0]]
    for key in ("heldout_total", "heldout_hidden"):
        np.testing.assert_allclose(
            sharded["final_heldout"][key], single["final_heldout"][key], rtol=2e-5
        )
    a = hf.load(tmp_path / "mesh" / "export").params["layer_1"]["ffn_in"]["kernel"]
    b = hf.load(tmp_path / "one" / "export").params["layer_1"]["ffn_in"]["kernel"]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(kernel), a, rtol=0, atol=0)  # what was exported
