"""configs/bort.py:smoke cut to a two-candidate grid on the fixture GLUE slices: the config of
the pipeline tests, in-process and as `scripts/bort.py --config=tests/_pipeline_config.py`."""

from pathlib import Path

from configs import bort


def get_config(arg=None):
    c = bort.get_config("smoke")
    c.data_dir = str(Path(__file__).resolve().parent / "fixtures" / "data")
    c.extract.grid.depth, c.extract.grid.hidden = [1, 2], [128]
    c.extract.grid.heads, c.extract.grid.intermediate = [4], [384]
    # i(ξ) from FLOPs: the latency model is tested in test_extract; the pipeline's own
    # side-by-side latency measurement (the report's speed-ups) still runs
    c.extract.inference = "flops"
    c.pretrain.num_steps, c.pretrain.checkpoint_every, c.pretrain.eval_every = 4, 2, 2
    c.grid.num_steps = [4]
    return c
