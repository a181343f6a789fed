"""Agora (de Wynter 2020, arXiv 2010.07990) vs plain fine-tuning on GLUE SST-2 and RTE.

Setting (scarce data): a small student (all-MiniLM-L6-v2 sliced to `student_arch`, or the
`student_init` checkpoint as it is, e.g. a KD-pretrained Bort) is fine-tuned on `n_train`
training examples. The dev split is cut once, by `split_seed`, into
an *agora* half (Agora's evaluation set E: its errors seed the synthetic points, and it
selects the best round) and a *held-out* half that only the report sees
(`tasks.loading.split_dev`, disjointness asserted). The labeler is the full MiniLM
fine-tuned once per task (best step chosen on the agora half) on `labeler.train_examples`
training examples: 0 = the student's `n_train` examples, -1 = the whole training split,
N = N examples. Both subsets come from the same `data_seed` permutation
(`tasks.loading.subsample`), so the student's examples are a subset of a larger labeler set
(asserted); the dev split is never part of either.

For every seed:
  plain   = Agora's round 0: the student fitted on the real examples only;
  agora   = the student of the Agora round with the best agora-half metric;
both scored on the held-out half. Every round restarts from the same initial student and
trains the same number of steps on real + synthetic rows. Synthetic rows: each token
embedding (MiniLM's table) of a misclassified agora-half example is moved uniformly inside a
ball of radius `agora.radius` x the mean nearest-neighbour distance of the training tokens,
decoded to the nearest token, and labelled by the labeler (`bort_jax.agora`).

Controls: `control_restarts` (best of R + 1 plain fits on the agora half: as many fits as
Agora, no synthetic data) and `control_distill` (the student on its real rows plus the
labeler's pseudo-labels of random unlabeled training-split sentences outside the student's
and, where enough remain, the labeler's set; as many rows as Agora's largest synthetic pool)
and `control_budget` (one plain fit of (rounds fitted) x student.num_steps steps: Agora's
total step budget). `selection` picks the reported Agora round: the best on the agora half
(optimistic) or a fixed round. `sampler.kind` picks how Agora samples around an error
(nearest-token decoding, masked-LM resampling, span replacement or nearest real neighbours
from the unlabelled pool, `bort_jax.agora.text`); a comma-separated list runs one Agora arm
per sampler on the same seeds, sharing the plain fit and the controls (`seed<s>.json`
'arms'). `sampler_report` compares samplers without training students (`sampler_report`).

Workdir (resumable, see `bort_jax.experiments`):
    config.json
    <task>/labeler/              fine-tuning workdir of the labeler (`finetune.run_prepared`;
                                 metrics.json and best_model/ are kept, checkpoints dropped)
    <task>/seed<s>/<stage>/      student fits (round0, <sampler>/round<r>, restart<j>,
                                 distill, budget) with checkpoints; deleted once
                                 <task>/seed<s>.json exists
    <task>/seed<s>.json          one finished seed
    <task>/task.json             one finished task
    agora_glue.json, agora_glue.md   the report (written last)

    python scripts/agora_glue.py --config=configs/agora_glue.py --workdir=runs/agora_glue

Modules: `config` (GlueConfig and its sections), `data` (splits, the unlabelled pool, row
content keys), `student` (student fits and scores, the labeler), `samplers` (one sample_fn
per sampler kind, the sampler report), `arms` (one seed: plain, the Agora arms, the
controls), `stats` (means and paired intervals over seeds), `report` (the Markdown of one
run and the table over several runs), `experiment` (the driver, `run`), `pipeline` (Agora as
a fine-tuning option of a given model, `agora_for_model`: one summary per task).
"""

from bort_jax.experiments.agora_glue.arms import (
    SeedStudent,
    budget_control,
    distill_control,
    restarts_control,
    run_arm,
    run_seed,
    selected_round,
)
from bort_jax.experiments.agora_glue.config import (
    SELECTIONS,
    GlueConfig,
    LabelerConfig,
    SamplerConfig,
    SamplerReportConfig,
    StageConfig,
    labeler_limit,
    stage_config,
    student_init_dir,
)
from bort_jax.experiments.agora_glue.data import (
    TaskData,
    count_in,
    distill_pool_indices,
    load_task_data,
    row_keys,
    subsample_indices,
)
from bort_jax.experiments.agora_glue.experiment import NAME, run, run_task
from bort_jax.experiments.agora_glue.pipeline import agora_for_model, task_summary
from bort_jax.experiments.agora_glue.report import (
    excludes_zero,
    fmt_interval,
    fmt_mean_std,
    load_reports,
    markdown,
    runs_markdown,
    sampler_markdown,
    target,
    task_rows,
    wins,
)
from bort_jax.experiments.agora_glue.samplers import (
    TextTools,
    make_sample_fn,
    masked_lm,
    nearest_token_radius,
    perturbation_examples,
    sampler_report,
    text_tools,
)
from bort_jax.experiments.agora_glue.stats import (
    BASELINES,
    Baseline,
    arm_summary,
    paired_interval,
    paired_intervals,
    summarise_task,
)
from bort_jax.experiments.agora_glue.student import (
    Labeler,
    cross_entropy,
    dev_scores,
    fit_student,
    labeler_fn,
    metric_fn,
    predict_labels,
    score_rows,
    train_labeler,
)

__all__ = [
    "BASELINES",
    "NAME",
    "SELECTIONS",
    "Baseline",
    "GlueConfig",
    "Labeler",
    "LabelerConfig",
    "SamplerConfig",
    "SamplerReportConfig",
    "SeedStudent",
    "StageConfig",
    "TaskData",
    "TextTools",
    "agora_for_model",
    "arm_summary",
    "budget_control",
    "count_in",
    "cross_entropy",
    "dev_scores",
    "distill_control",
    "distill_pool_indices",
    "excludes_zero",
    "fit_student",
    "fmt_interval",
    "fmt_mean_std",
    "labeler_fn",
    "labeler_limit",
    "load_reports",
    "load_task_data",
    "make_sample_fn",
    "markdown",
    "masked_lm",
    "metric_fn",
    "nearest_token_radius",
    "paired_interval",
    "paired_intervals",
    "perturbation_examples",
    "predict_labels",
    "restarts_control",
    "row_keys",
    "run",
    "run_arm",
    "run_seed",
    "run_task",
    "runs_markdown",
    "sampler_markdown",
    "sampler_report",
    "score_rows",
    "selected_round",
    "stage_config",
    "student_init_dir",
    "subsample_indices",
    "summarise_task",
    "target",
    "task_rows",
    "task_summary",
    "text_tools",
    "train_labeler",
    "wins",
]
