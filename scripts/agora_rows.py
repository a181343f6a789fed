"""One table over finished `agora_glue` runs (`bort_jax.experiments.agora_glue.runs_markdown`).

    python scripts/agora_rows.py runs/agora_controls/*/agora_glue.json \
        runs/agora_controls2k/*/agora_glue.json [--out=table.md] [--min_tasks=2]

Prints the Markdown table (and writes it to --out if given); reads nothing but the reports.
"""

from absl import flags

from bort_jax import cli, files
from bort_jax.experiments import agora_glue

_OUT = flags.DEFINE_string("out", "", "also write the table to this file")
_MIN_TASKS = flags.DEFINE_integer("min_tasks", 2, "tasks an arm must win for the target")


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise ValueError("give one or more agora_glue.json reports as arguments")
    text = agora_glue.runs_markdown(agora_glue.load_reports(argv[1:]), _MIN_TASKS.value)
    if _OUT.value:
        files.atomic_write_text(_OUT.value, text)
    print(text, end="")


if __name__ == "__main__":
    cli.run(main)
