"""Write a randomly initialised checkpoint of a given shape in HF format (for benchmarks on
machines without the pretrained MiniLM package): the tokenizer files are copied from --vocab_dir.

  python benchmarks/make_random_teacher.py --out=runs/random_teacher --vocab_dir=DIR \
      --arch=6,12,384,1536
"""

import argparse

import jax

from bort_jax import hf
from bort_jax.arch import Arch, Spec
from bort_jax.models.bert import Bert, init_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab_dir", required=True)
    ap.add_argument("--arch", default="6,12,384,1536")
    ap.add_argument("--vocab_size", type=int, default=30522)
    args = ap.parse_args()
    arch, spec = Arch.parse(args.arch), Spec(vocab_size=args.vocab_size, pooler=False)
    params = jax.device_get(init_params(Bert(arch, spec), jax.random.PRNGKey(0)))
    print(hf.save(args.out, params, arch, spec, tokenizer_dir=args.vocab_dir))


if __name__ == "__main__":
    main()
