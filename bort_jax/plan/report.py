"""The cost plan of an extraction as a record (`Plan`), its Markdown and its JSON form."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from bort_jax import arch as A

GB = 1e9


class PlanError(ValueError):
    """The run will not fit the disk or memory (or its shapes cannot be known)."""


@dataclasses.dataclass(frozen=True)
class StepTime:
    """Seconds per proxy step of one candidate (`measured_as` differs when scaled down)."""

    arch: A.Arch
    seconds: float  # per step at the config's batch and sequence length
    measured_seconds: float  # per step at `measured_as` (median of the timed steps)
    compile_seconds: float  # first call minus a steady step, at the measured shape
    flops: int  # training FLOPs of one step at the config's shape
    measured_as: tuple[int, int]  # (batch, seq_len) actually run
    extrapolated: bool


@dataclasses.dataclass
class Plan:
    """What an extraction will cost (bytes, seconds); see the module docstring for formulas."""

    n_candidates: int
    n_sequences: int
    seq_len: int
    max_predictions: int
    teacher: str
    teacher_arch: A.Arch
    input_bytes: dict[str, int]  # host RAM, by array
    teacher_cache_bytes: dict[str, int]  # disk, by array (data only)
    cache_dir: str
    cache_present: bool  # a complete entry of these shapes already exists: needs no disk
    disk_bytes: int  # what the run still needs on disk (cache + headers + chosen weights)
    largest: A.Arch
    host_bytes: dict[str, int]
    device_bytes: dict[str, int]
    step_times: list[StepTime] = dataclasses.field(default_factory=list)
    seconds_model: tuple[float, float] | None = None  # (c0, c1): t(ξ) = c0 + c1·F(ξ)
    n_evaluations: int = 0  # worst-case proxy evaluations counted in the projection
    flop_rate: float | None = None  # achieved FLOP/s of the measured steps (Σ F / Σ s)
    teacher_flops: int = 0  # forward matmul FLOPs of the teacher pass over N rows
    search_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def teacher_cache_total(self) -> int:
        return sum(self.teacher_cache_bytes.values())

    @property
    def peak_host_bytes(self) -> int:
        return sum(self.host_bytes.values())

    @property
    def peak_device_bytes(self) -> int:
        return max(self.device_bytes.values())

    @property
    def projected_search_seconds(self) -> float | None:
        return sum(self.search_seconds.values()) if self.search_seconds else None

    def lines(self) -> list[str]:
        """The plan as Markdown lines."""
        out = [
            "# Extraction cost plan",
            "",
            f"- candidates |Ξ|: {self.n_candidates}; largest {self.largest}",
            f"- data: ≤ {self.n_sequences} sequences × {self.seq_len} tokens, "
            f"{self.max_predictions} MLM slots; teacher {self.teacher} ({self.teacher_arch})",
            f"- teacher cache on disk ({self.cache_dir}): {gb(self.teacher_cache_total)}"
            + (" — already present" if self.cache_present else "")
            + "; "
            + ", ".join(f"{k} {gb(v)}" for k, v in self.teacher_cache_bytes.items()),
            f"- disk still needed: {gb(self.disk_bytes)}",
            f"- peak host memory: {gb(self.peak_host_bytes)} ("
            + ", ".join(f"{k} {gb(v)}" for k, v in self.host_bytes.items())
            + ")",
            f"- peak device memory: {gb(self.peak_device_bytes)} ("
            + ", ".join(f"{k} {gb(v)}" for k, v in self.device_bytes.items())
            + ")",
        ]
        if self.step_times:
            out.append("")
            out.append("| candidate | train GFLOP/step | s/step | compile s | measured as |")
            out.append("|---|---|---|---|---|")
            for t in self.step_times:
                how = f"{t.measured_as[0]}×{t.measured_as[1]}" + (
                    ", extrapolated by FLOPs" if t.extrapolated else ""
                )
                out.append(
                    f"| {t.arch} | {t.flops / 1e9:.3g} | {t.seconds:.4g} | "
                    f"{t.compile_seconds:.3g} | {how} |"
                )
            out.append("")
            out.append(
                f"- projected search (worst case, {self.n_evaluations} proxy evaluations): "
                f"{self.projected_search_seconds:.0f} s = "
                + " + ".join(f"{k} {v:.0f} s" for k, v in self.search_seconds.items())
            )
        out += [f"- note: {n}" for n in self.notes]
        return out

    def markdown(self) -> str:
        return "\n".join(self.lines()) + "\n"


def gb(n: int) -> str:
    return f"{n / GB:.3g} GB"


def as_dict(p: Plan) -> dict[str, Any]:
    d = dataclasses.asdict(p)
    d.update(
        peak_host_bytes=p.peak_host_bytes,
        peak_device_bytes=p.peak_device_bytes,
        teacher_cache_total=p.teacher_cache_total,
        projected_search_seconds=p.projected_search_seconds,
    )
    return json.loads(json.dumps(d, default=str))
