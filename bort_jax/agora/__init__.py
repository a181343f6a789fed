"""Agora (de Wynter, 2020, arXiv 2010.07990): grow a scarce training set around the errors.

The paper's setting: a candidate model f must be trained on a training set D that is too small
or unrepresentative, no more data can be collected, but (a) a labeler (a second, trusted
model, or an oracle) and (b) a data-generating function are available. Agora alternates

    fit f on D  ->  run f on an evaluation split E  ->  take the misclassified points of E
    ->  sample new inputs near each of them in a representation space  ->  label the samples
    with the labeler  ->  add them to D  ->  repeat,

and keeps the best model on E. The theory (binary classification) says the generated points
grow an open cover of the data manifold; D is learnable iff the cover has the manifold's
homology. Bort's README adds that "replay" (re-running some Agora iterations) was needed.

The paper's exact sampling rule, radius, samples per error, representation, labeler and
replay schedule were NOT available to us (docs/papers.md §3). What follows is our
reconstruction; every piece is a small function so that a reader of the PDF can swap it.

Reconstructed choices (see docs/agora.md for the argument behind each):

1. Representation space. `represent_fn(inputs) -> reps [n, *S]`: the inputs themselves for
   continuous data; for text the word-embedding sequence of the tokens, reps [n, L, E].
2. Atoms. The last `atom_ndim` axes of a representation form an *atom* of dimension
   a = prod(S[-atom_ndim:]): the whole point for vectors (S = [d], atom_ndim = 1), one token
   for text (S = [L, E], atom_ndim = 1, so every token is perturbed independently).
   A boolean `perturb_mask [n, *S[:-atom_ndim]]` freezes atoms (special tokens, padding).
3. Distribution, per atom, delta in R^a:
     'uniform_ball':  delta = r * u^(1/a) * z / ||z||,  z ~ N(0, I_a), u ~ U(0, 1),
                      i.e. uniform in the closed ball B(0, r), so ||delta|| <= r;
     'gaussian':      delta = (r / sqrt(a)) * z,  so E||delta||^2 = r^2, std per coordinate
                      r / sqrt(a).
   The ball is the primary choice: the paper's argument is about an open cover by balls.
4. Radius. radius_mode 'absolute': r = cfg.radius. 'nn_mean' (default): r = cfg.radius * rho,
   rho = mean nearest-neighbour distance between distinct atoms of the (real) training set,
   (subsampled to nn_max_points atoms). rho is the scale at which balls around the training
   points start to overlap (the Vietoris-Rips / Cech scale that connects the sample), so a
   multiplier near 1 fills gaps without bridging far-apart parts of the manifold. For text,
   r is better set by the share of tokens it changes after decoding
   (`radius_for_change_rate`, then radius_mode 'absolute'): in high dimension that share
   jumps from ~0 to ~1 over a narrow range of r.
5. Decoding and labelling. A sample is first decoded to a model input (`decode_fn`: identity
   for continuous inputs, nearest-token decoding for text), and the *decoded* input is what
   the labeler labels and what the model trains on, so label and training point agree.
   For text, samplers that edit the tokens directly (masked-LM resampling, span replacement,
   nearest real neighbours; `agora.text`) replace steps 1-5's perturb-and-decode:
   `resample_and_relabel`, `Generator(sample_fn=...)`.
6. Replay. After each round a fraction `replay_fraction` of the earlier synthetic points is
   kept (random subset); the rest is dropped and replaced by points recomputed around the
   current errors. replay_fraction = 1 accumulates everything (the plain reading of Agora);
   0 keeps only the newest round. `max_synthetic` caps the pool; newest points win.
7. Stopping and selection. Round 0 fits the original data (plain training). Then up to
   `rounds` Agora rounds; stop early when the agora-dev metric has not improved for
   `patience` rounds or when there are no errors left. The returned model is the best one on
   the agora-dev split. The paper's hyperparameter pruning over Theta is left to `fit_fn`.
   "Misclassified" is predictions != labels unless `error_fn` says otherwise.
8. Honesty. Agora uses its evaluation split for training data, so its metric is no longer a
   held-out estimate (docs/papers.md, P5). `split_dev` (`bort_jax.tasks.loading`) cuts the
   dev set into an agora split (given to `run_agora`) and a held-out split (never given to
   it); report the held-out one.

Modules: `config` (AgoraConfig), `datasets` (data sets: dicts of numpy arrays with a 'label'
key and a boolean 'synthetic' key), `sampling` (radius, the jit(vmap) sample-and-relabel
steps, labelers), `rounds` (`run_agora` with its `Learner` and `Generator`, `generate`,
`replay`), `text` (nearest-token decoding and the samplers that edit text). The rounds, the
sampling step and nearest-token decoding are importable from `bort_jax.agora` itself; the
text samplers from `bort_jax.agora.text`.

Randomness: the sample of misclassified point i of a round uses `fold_in(rng, i)`, so the
result does not depend on how the points are chunked, and everything is a function of
`cfg.seed`.
"""

from bort_jax.agora import text
from bort_jax.agora.config import DISTRIBUTIONS, RADIUS_MODES, AgoraConfig
from bort_jax.agora.datasets import (
    RESERVED_KEYS,
    Dataset,
    Inputs,
    input_keys,
    inputs_of,
    with_synthetic_flag,
)
from bort_jax.agora.rounds import AgoraResult, Generator, Learner, generate, replay, run_agora
from bort_jax.agora.sampling import (
    argmax_labeler,
    atom_dim,
    identity_decode,
    mean_nn_distance,
    perturbation,
    point_key,
    reference_atoms,
    resample_and_relabel,
    resolve_radius,
    sample_and_relabel,
    training_radius,
)
from bort_jax.agora.text import (
    nearest_token_decode,
    radius_for_change_rate,
    special_or_pad_mask,
    text_decode_fn,
    text_perturb_mask,
    token_change_rate,
    token_embedding_represent,
)
from bort_jax.tasks.loading import assert_disjoint, split_dev

__all__ = [
    "DISTRIBUTIONS",
    "RADIUS_MODES",
    "RESERVED_KEYS",
    "AgoraConfig",
    "AgoraResult",
    "Dataset",
    "Generator",
    "Inputs",
    "Learner",
    "argmax_labeler",
    "assert_disjoint",
    "atom_dim",
    "generate",
    "identity_decode",
    "input_keys",
    "inputs_of",
    "mean_nn_distance",
    "nearest_token_decode",
    "perturbation",
    "point_key",
    "radius_for_change_rate",
    "reference_atoms",
    "replay",
    "resample_and_relabel",
    "resolve_radius",
    "run_agora",
    "sample_and_relabel",
    "special_or_pad_mask",
    "split_dev",
    "text",
    "text_decode_fn",
    "text_perturb_mask",
    "token_change_rate",
    "token_embedding_represent",
    "training_radius",
    "with_synthetic_flag",
]
