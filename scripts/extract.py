"""Optimal subarchitecture extraction (FPTAS, arXiv 2010.08512; thin main of bort_jax.extract).

  python scripts/extract.py                                   # embedded default (MiniLM)
  python scripts/extract.py --config=configs/bert_large.py --config.source_dir=DIR \
      --config.teacher_dir=DIR
  python scripts/extract.py --config.plan=True                # cost plan only, then exit
"""

from bort_jax import cli, extract


def describe(summary: dict) -> str:
    if "plan" in summary:  # --config.plan=True: the cost plan, nothing searched
        return summary["plan"]
    return (
        f"chosen {summary['chosen']} (W={summary['objective']:.4g}) after "
        f"{summary['n_evaluations']}/{summary['n_candidates']} proxy evaluations in "
        f"{summary['wall_seconds']:.0f} s; report: {summary['report']['markdown']}"
    )


if __name__ == "__main__":
    cli.config_main(extract.extract, __file__, "default.py", "runs/extract", describe)
