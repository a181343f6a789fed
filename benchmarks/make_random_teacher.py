"""Write a randomly initialised checkpoint of a given shape in HF format (for benchmarks on
machines without the pretrained MiniLM package): the tokenizer files are copied from --vocab_dir.

  python -m benchmarks.make_random_teacher --out=runs/random_teacher --vocab_dir=DIR \
      --arch=6,12,384,1536
"""

from typing import Sequence

import jax
from absl import app, flags

from bort_jax import hf
from bort_jax.arch import Arch, Spec
from bort_jax.models.bert import Bert, init_params

_OUT = flags.DEFINE_string("out", None, "HF directory to write", required=True)
_VOCAB_DIR = flags.DEFINE_string(
    "vocab_dir", None, "directory with the tokenizer files", required=True
)
_ARCH = flags.DEFINE_string("arch", "6,12,384,1536", "D,A,H,I")
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", 30522, "vocabulary size")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    arch, spec = Arch.parse(_ARCH.value), Spec(vocab_size=_VOCAB_SIZE.value, pooler=False)
    params = jax.device_get(init_params(Bert(arch, spec), jax.random.PRNGKey(0)))
    print(hf.save(_OUT.value, params, arch, spec, tokenizer_dir=_VOCAB_DIR.value))


if __name__ == "__main__":
    app.run(main)
