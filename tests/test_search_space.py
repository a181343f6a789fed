"""Search spaces (bort_jax/search/space.py): the Bort grid, its order and named errors."""

import dataclasses

import pytest

from bort_jax.arch import Arch
from bort_jax.search import space as SP


def test_bert_grid_has_300_candidates():
    space = SP.bert_grid()
    cands = space.candidates()
    assert len(cands) == 300 == len(space)
    assert len(set(cands)) == 300
    assert all(c.hidden % c.heads == 0 for c in cands)
    assert cands == SP.bert_grid().candidates()  # deterministic order
    assert cands[0] == Arch(2, 4, 512, 256) and type(cands[0]) is Arch
    assert sorted(cands) == sorted(set(cands))  # hashable and ordered


def test_bert_grid_order_and_factory():
    @dataclasses.dataclass(frozen=True)
    class Arch:
        depth: int
        heads: int
        hidden: int
        intermediate: int

    space = SP.bert_grid(factory=Arch)
    cands = space.candidates()
    assert isinstance(cands[0], Arch) and len(cands) == 300
    small, big = Arch(2, 8, 512, 256), Arch(4, 8, 768, 768)
    assert space.leq(small, big) and not space.leq(big, small)
    assert not space.leq(Arch(2, 4, 512, 256), Arch(4, 8, 768, 768))  # heads: not ordered
    assert SP.bert_grid(monotone_heads=True).leq(Arch(2, 4, 512, 256), Arch(4, 8, 768, 768))


@pytest.mark.parametrize(
    "make,field",
    [
        (lambda: SP.Axis("depth", ()), "depth"),
        (lambda: SP.Axis("width", (4, 4)), "width"),
        (lambda: SP.Axis("heads", (4, 2.5)), "heads"),
        (lambda: SP.grid(depth=(1, 2), monotone={"widht": True}), "widht"),
        (lambda: SP.SearchSpace((SP.Axis("d", (1,)), SP.Axis("d", (2,)))), "'d'"),
        (lambda: SP.grid(valid=lambda f: False, hidden=(8,)).candidates(), "valid"),
    ],
)
def test_bad_grid_names_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()
