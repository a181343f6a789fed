"""The architecture tuple ⟨D, A, H, I⟩ and its exact costs.

de Wynter & Perry, "Optimal Subarchitecture Extraction for BERT" (arXiv 2010.10499), Sec. 2:
a BERT-family encoder is parameterised by depth D, attention heads A, hidden size H and
intermediate (feed-forward) size I. Everything else (vocabulary, positions, token types,
pooler, layer-norm eps, activation) is fixed by the *source* model and lives in `Spec`.

Parameter count (exact, post-LN BERT with biases and two LayerNorms per layer):

  embeddings = (V + P + T)·H + 2H                       (word, position, token-type, LayerNorm)
  layer      = 4H² + 4H  +  2H  +  2HI + I + H  +  2H  = 4H² + 2HI + 9H + I
  pooler     = H² + H
  mlm head   = H² + H + 2H + V   (transform dense, LayerNorm, output bias; decoder tied)
  classifier = H·C + C

FLOPs of one forward pass (`flops`) count every multiply-add of a matrix product as 2 FLOPs:
  per layer: 2·L·(4H² + 2HI)  (QKV, output, FFN)  +  4·L²·H  (Q·Kᵀ and softmax·V)
  pooler: 2·H² per sequence; mlm head: 2·L·(H² + H·V).
Elementwise work (softmax, GELU, LayerNorm, bias) is O(L·H) and is not counted, so that
`flops` stays the matmul count that a roofline compares to peak.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

ACTIVATIONS = ("gelu", "gelu_new", "gelu_fast", "relu", "tanh")


@dataclasses.dataclass(frozen=True, order=True)
class Arch:
    """⟨D, A, H, I⟩ of a BERT-style encoder: depth, heads, hidden, intermediate."""

    depth: int
    heads: int
    hidden: int
    intermediate: int

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Arch.{field.name} must be an int, got {value!r}")
            if value <= 0:
                raise ValueError(f"Arch.{field.name} must be positive, got {value}")
        if self.hidden % self.heads:
            raise ValueError(
                f"Arch.hidden={self.hidden} is not divisible by Arch.heads={self.heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def __str__(self) -> str:
        return f"D{self.depth}/A{self.heads}/H{self.hidden}/I{self.intermediate}"

    @classmethod
    def parse(cls, text: str | Sequence[int]) -> "Arch":
        """'4,8,1024,768' or (4, 8, 1024, 768) → Arch (order D, A, H, I)."""
        if isinstance(text, str):
            parts = [p for p in text.replace("/", ",").replace(" ", ",").split(",") if p]
            try:
                values = [int(p.lstrip("DAHI")) for p in parts]
            except ValueError as e:
                raise ValueError(f"cannot parse architecture {text!r}; want 'D,A,H,I'") from e
        else:
            values = list(text)
        if len(values) != 4:
            raise ValueError(f"architecture needs 4 values (D, A, H, I), got {text!r}")
        return cls(*values)


@dataclasses.dataclass(frozen=True)
class Spec:
    """Fixed parts of the source model that an `Arch` does not vary."""

    vocab_size: int = 30522
    max_positions: int = 512
    type_vocab_size: int = 2
    pooler: bool = True
    layer_norm_eps: float = 1e-12
    activation: str = "gelu"
    pad_token_id: int = 0
    # RoBERTa numbers positions from pad_token_id + 1 and skips padding; BERT from 0.
    position_offset: int = 0

    def __post_init__(self):
        for name in ("vocab_size", "max_positions"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Spec.{name} must be positive, got {getattr(self, name)}")
        if self.type_vocab_size < 0:
            raise ValueError(f"Spec.type_vocab_size must be >= 0, got {self.type_vocab_size}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"Spec.activation={self.activation!r} not in {ACTIVATIONS}")
        if not 0 < self.layer_norm_eps < 1:
            raise ValueError(f"Spec.layer_norm_eps must be in (0, 1), got {self.layer_norm_eps}")


BERT_LARGE = Arch(24, 16, 1024, 4096)
BERT_BASE = Arch(12, 12, 768, 3072)
BORT = Arch(4, 8, 1024, 768)  # as released: width 1024, FFN 768
BORT_PAPER_SIZE = Arch(4, 8, 768, 1024)  # the shape the paper's 56M / 39M figures fit
MINILM_L6 = Arch(6, 12, 384, 1536)

BERT_SPEC = Spec()
ROBERTA_SPEC = Spec(
    vocab_size=50265,
    max_positions=514,
    type_vocab_size=1,
    pooler=True,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    position_offset=2,
)
# alexa/bort `bort_4_8_768_1024`: RoBERTa BPE vocab, 512 positions from 0, eps 1e-5.
BORT_SPEC = Spec(
    vocab_size=50265,
    max_positions=512,
    type_vocab_size=2,
    pooler=False,
    layer_norm_eps=1e-5,
    pad_token_id=1,
)
MINILM_SPEC = Spec(pooler=False)


def embedding_params(arch: Arch, spec: Spec = BERT_SPEC) -> int:
    """(V + P + T)·H + 2H."""
    h = arch.hidden
    return (spec.vocab_size + spec.max_positions + spec.type_vocab_size) * h + 2 * h


def layer_params(arch: Arch) -> int:
    """One post-LN encoder layer: 4H² + 2HI + 9H + I."""
    h, i = arch.hidden, arch.intermediate
    return 4 * h * h + 2 * h * i + 9 * h + i


def encoder_params(arch: Arch) -> int:
    return arch.depth * layer_params(arch)


def pooler_params(arch: Arch) -> int:
    return arch.hidden * arch.hidden + arch.hidden


def mlm_head_params(arch: Arch, spec: Spec = BERT_SPEC) -> int:
    """Transform dense + LayerNorm + output bias (decoder weights tied to word embeddings)."""
    h = arch.hidden
    return h * h + h + 2 * h + spec.vocab_size


def classifier_params(arch: Arch, num_labels: int) -> int:
    return arch.hidden * num_labels + num_labels


def param_count(
    arch: Arch, spec: Spec = BERT_SPEC, *, mlm_head: bool = False, num_labels: int = 0
) -> dict[str, int]:
    """Exact parameter count, split by block. Keys: embedding, encoder, pooler, head, total."""
    counts = {
        "embedding": embedding_params(arch, spec),
        "encoder": encoder_params(arch),
        "pooler": pooler_params(arch) if spec.pooler else 0,
        "head": (mlm_head_params(arch, spec) if mlm_head else 0)
        + (classifier_params(arch, num_labels) if num_labels else 0),
    }
    counts["total"] = sum(counts.values())
    return counts


def flops(
    arch: Arch, seq_len: int, batch: int = 1, spec: Spec = BERT_SPEC, *, mlm_head: bool = False
) -> int:
    """Matmul FLOPs of one forward pass over `batch` sequences of `seq_len` tokens."""
    if seq_len <= 0 or batch <= 0:
        raise ValueError(f"seq_len and batch must be positive, got {seq_len}, {batch}")
    h, i, l = arch.hidden, arch.intermediate, seq_len
    per_layer = 2 * l * (4 * h * h + 2 * h * i) + 4 * l * l * h
    total = arch.depth * per_layer
    if spec.pooler:
        total += 2 * h * h
    if mlm_head:
        total += 2 * l * (h * h + h * spec.vocab_size)
    return batch * total


def block_costs(arch: Arch, spec: Spec, seq_len: int) -> dict[str, dict[str, int]]:
    """Cost of the A (embeddings), B (one layer) and C (pooler/output) blocks of AB^nC."""
    h = arch.hidden
    return {
        "A": {"params": embedding_params(arch, spec), "flops": 10 * seq_len * h},
        "B": {
            "params": layer_params(arch),
            "flops": flops(arch, seq_len, spec=Spec(pooler=False)) // arch.depth,
        },
        "C": {
            "params": pooler_params(arch) if spec.pooler else 0,
            "flops": 2 * h * h if spec.pooler else 0,
        },
    }


def count_tree(tree) -> int:
    """Number of scalars in a pytree of arrays (or anything with `.size`)."""
    import jax  # local: arch.py stays importable without initialising a backend

    return int(sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


def dense_params(widths: Sequence[tuple[int, int]]) -> int:
    """Generic counting helper: Σ (d_in·d_out + d_out) over dense layers given as (d_in, d_out)."""
    return sum(d_in * d_out + d_out for d_in, d_out in widths)


def check_seq_len(seq_len: int, spec: Spec, name: str = "seq_len") -> None:
    """ValueError (naming `name`) if rows of `seq_len` tokens do not fit the model.

    RoBERTa numbers positions from pad_id + 1, so it has max_positions − offset usable ones;
    a row needs at least 3 tokens ([CLS] x [SEP]).
    """
    usable = spec.max_positions - spec.position_offset
    if seq_len > usable:
        raise ValueError(
            f"{name}={seq_len} exceeds the model's {usable} usable positions "
            f"(max_positions={spec.max_positions}); use {name} <= {usable}"
        )
    if seq_len < 3:
        raise ValueError(f"{name} must be >= 3 to hold [CLS] x [SEP], got {seq_len}")
