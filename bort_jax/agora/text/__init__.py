"""Agora on text: nearest-token decoding of perturbed embeddings, and samplers that edit the
tokens of a misclassified sentence directly.

Nearest-token decoding (`text_decode_fn`, the decode_fn of `sampling.sample_and_relabel` over
token embeddings [L, E]) maps every perturbed, non-special token to

    id_l = argmin_{v allowed} ||s_l - T_v||^2 = argmax_v (2 s_l . T_v - ||T_v||^2),

keeping special tokens and padding. It changes either no token or unrelated ones: in high
dimension the share of changed tokens jumps from ~0 to ~1 over a narrow range of radius
(`token_change_rate`, `radius_for_change_rate`; docs/agora.md). The samplers here instead
edit the token sequence of a centre, so a sample differs from its centre by a known number
of tokens:

* masked-LM resampling (`masked_lm_sampler`): per sample, m perturbable positions (not a
  special token, not padding) are drawn uniformly without replacement, replaced by the mask
  token, and the masked LM's distribution at those positions (one forward pass, the m
  positions sampled independently given the masked sentence) picks the replacements:

      z_j = logits_j / T;   z_jv = -inf for special ids (and, by default, the original id);
      keep the top_k largest z_j (top_k = 0: all);   new_j ~ softmax(z_j).

  Excluding the original id makes every chosen position change, so each sample differs from
  its centre in exactly min(m, #perturbable) tokens. With `continuation_ids` (WordPiece's
  "##" pieces, `continuation_ids(tokenizer)`) only whole one-piece words are resampled, and
  only into whole-word ids: no position inside or at the start of a multi-piece word is
  chosen and no "##" piece is emitted, so no word is split ("in ##ventive" never becomes
  "and ##ventive").
* span replacement (`span_sampler`, a cheap baseline): a random window of w consecutive
  perturbable tokens of the centre is overwritten by a random window of w consecutive
  perturbable tokens of a donor row (another training example). Length, special tokens,
  padding and the other input arrays are unchanged; a centre without w consecutive
  perturbable tokens is returned unchanged.

* nearest real neighbours (`neighbour_sampler`): the k samples are drawn uniformly without
  replacement from the m rows of an unlabelled pool (real sentences of the training split)
  whose sentence embeddings are closest (cosine) to the centre's:

      e(x) = normalise(mean_{l: mask_l = 1} h_l(x))       (all-MiniLM-L6-v2's embedding)
      N_m(c) = top-m_{p in pool} <e(c), e(p)>;    samples ~ Uniform(m-subsets of N_m(c), k).

  The samples lie on the data manifold by construction (they are data); "near" is a ball
  in the embedding space whose radius adapts to the local density (the m-th neighbour).

All are `sample_fn`s of `sampling.resample_and_relabel` / `rounds.Generator(sample_fn=...)`:
`(key, center_input) -> inputs (dict of [k, ...])`, wrapped in `jax.tree_util.Partial` so
the MLM parameters and the donor rows are traced, not baked in. Inputs are dicts with
'input_ids' and 'attention_mask' [L] (any other key, e.g. 'token_type_ids', is copied).

Modules: `nearest_token` (decoding, change rate), `masked_lm`, `span`, `neighbour` (one
sampler each) and `tokens` (the helpers they share: perturbable positions, summaries); every
name is importable from `bort_jax.agora.text` itself.
"""

from bort_jax.agora.text.masked_lm import (
    MaskedLMDraw,
    bert_mlm_fn,
    choose_positions,
    continuation_ids,
    masked_lm_sampler,
    sample_tokens,
    whole_word_eligible,
)
from bort_jax.agora.text.nearest_token import (
    nearest_token_decode,
    radius_for_change_rate,
    text_decode_fn,
    token_change_rate,
)
from bort_jax.agora.text.neighbour import (
    bert_embed_fn,
    embed_rows,
    neighbour_sampler,
    sentence_embedding,
)
from bort_jax.agora.text.span import span_sampler, window_starts
from bort_jax.agora.text.tokens import (
    Array,
    Inputs,
    perturbable,
    sample_summary,
    special_or_pad_mask,
    text_perturb_mask,
    token_embedding_represent,
)

SAMPLERS = ("nearest_token", "masked_lm", "span", "neighbour")

__all__ = [
    "SAMPLERS",
    "Array",
    "Inputs",
    "MaskedLMDraw",
    "bert_embed_fn",
    "bert_mlm_fn",
    "choose_positions",
    "continuation_ids",
    "embed_rows",
    "masked_lm_sampler",
    "nearest_token_decode",
    "neighbour_sampler",
    "perturbable",
    "radius_for_change_rate",
    "sample_summary",
    "sample_tokens",
    "sentence_embedding",
    "span_sampler",
    "special_or_pad_mask",
    "text_decode_fn",
    "text_perturb_mask",
    "token_change_rate",
    "token_embedding_represent",
    "whole_word_eligible",
    "window_starts",
]
