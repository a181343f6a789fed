"""KD pretraining (Bort, arXiv 2010.10499; thin main of bort_jax.pretrain).

python scripts/pretrain.py --config=configs/pretrain_bort.py --workdir=runs/pretrain
"""

from bort_jax import cli, pretrain


def describe(summary: dict) -> str:
    return (
        f"initial held-out KD objective {summary['initial_heldout']['heldout_total']:.4f}"
        f" → final {summary['final_heldout']['heldout_total']:.4f}; "
        f"export: {summary['export']}"
    )


if __name__ == "__main__":
    cli.config_main(pretrain.pretrain, __file__, "pretrain_bort.py", "runs/pretrain", describe)
