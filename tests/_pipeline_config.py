"""configs/bort.py:smoke cut to a two-candidate grid at the source's width on the fixture GLUE
slices: the config of the pipeline tests, in-process and as
`scripts/bort.py --config=tests/_pipeline_config.py`. Variant `kill` (the kill-and-resume
test, which runs the script several times): one task and one seed."""

from pathlib import Path

import _tiny_source

from configs import bort


def get_config(arg=None):
    c = bort.get_config("smoke")
    c.data_dir = str(Path(__file__).resolve().parent / "fixtures" / "data")
    # a 4-layer source sliced from MiniLM (tests/_tiny_source.py), as source and teacher
    c.extract.source_dir = _tiny_source.path()
    # the source's width, so that a layer-dropped source (same width) can match the chosen
    # shape's cost: keep-every-k of 4 layers gives 1 or 2 layers
    a = _tiny_source.ARCH
    c.extract.grid.depth, c.extract.grid.hidden = [1, 2], [a.hidden]
    c.extract.grid.heads, c.extract.grid.intermediate = [a.heads], [a.intermediate]
    # i(ξ) from FLOPs: the latency model is tested in test_extract; the pipeline's own
    # side-by-side latency measurement (the report's speed-ups) still runs
    c.extract.inference = "flops"
    c.pretrain.num_steps, c.pretrain.checkpoint_every, c.pretrain.eval_every = 2, 2, 2
    c.grid.num_steps = [2, 4]
    c.finetune.checkpoint_every = 4  # one save per run (resume mid-run: test_finetune)
    c.seeds = [0, 1]  # the aggregation over seeds, at two seeds' cost
    if arg == "kill":
        c.tasks, c.seeds, c.calibration_task = "stsb", [0], ""
    return c
