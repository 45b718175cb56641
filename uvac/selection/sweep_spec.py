"""What a sweep job asks for: a K range, seeds and options, checked before anything runs.

Job parameters (beside the usual training ones)::

    "n_clusters": {"min": 3, "max": 15},
    "sweep": {"seeds": [0, 1, 2], "temperature_end": [0.5, 0.3], "lambda_kl": [0.05],
              "stability_threshold": 0.8, "subsample": 0.8}     # every key optional

`parse_sweep` turns them into a `SweepSpec` or raises `InvalidSweep` (422); the API calls it
when a job is submitted and the worker when it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from uvac.errors import UvacError

if TYPE_CHECKING:
    from uvac.selection.rule import Candidate

__all__ = ["InvalidSweep", "SweepSpec", "is_sweep", "parse_sweep"]

DEFAULT_SEEDS = (0, 1, 2)
_SWEEP_KEYS = frozenset(
    {"seeds", "temperature_end", "lambda_kl", "stability_threshold", "subsample"}
)
MAX_SEEDS = 10


class InvalidSweep(UvacError):
    """A sweep request the service refuses: an empty, reversed or too wide range, bad options."""

    status = 422
    slug = "invalid-job-parameters"
    title = "Invalid job parameters"


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep job trains: a K range, seeds, optional temperature ends and lambdas."""

    k_min: int
    k_max: int
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    temperature_ends: tuple[float, ...] = ()
    lambdas: tuple[float, ...] = ()
    stability_threshold: float | None = None
    subsample: float | None = None  # None: uvac.selection.sweep.DEFAULT_SUBSAMPLE

    @property
    def n_candidates(self) -> int:
        return (
            (self.k_max - self.k_min + 1)
            * max(1, len(self.temperature_ends))
            * max(1, len(self.lambdas))
        )

    def candidates(self) -> list[Candidate]:
        from uvac.selection.rule import candidate_grid

        return candidate_grid(
            self.k_min,
            self.k_max,
            temperature_ends=self.temperature_ends,
            lambdas=self.lambdas,
        )


def is_sweep(params: Mapping[str, Any]) -> bool:
    return isinstance(params.get("n_clusters"), Mapping)


def _numbers(value: Any, *, name: str, minimum: float) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidSweep(f"sweep.{name} must be a non-empty list of numbers")
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) and v >= minimum and v == v
        for v in value
    ):
        raise InvalidSweep(f"sweep.{name} must hold numbers of at least {minimum:g}")
    return tuple(float(v) for v in value)


def parse_sweep(params: Mapping[str, Any], *, max_candidates: int) -> SweepSpec:
    """The sweep a job asks for; `InvalidSweep` (422) for an empty, reversed or too wide one."""
    bounds = params.get("n_clusters")
    if not isinstance(bounds, Mapping) or set(bounds) != {"min", "max"}:
        raise InvalidSweep('a K range is {"min": K1, "max": K2}')
    k_min, k_max = bounds["min"], bounds["max"]
    if not all(isinstance(k, int) and not isinstance(k, bool) for k in (k_min, k_max)):
        raise InvalidSweep("the K range's min and max must be integers")
    if k_min < 2:
        raise InvalidSweep(f"the K range must start at 2 or more, got {k_min}")
    if k_max < k_min:
        raise InvalidSweep(f"the K range {k_min}..{k_max} is reversed (max below min)")
    options = params.get("sweep") or {}
    if not isinstance(options, Mapping):
        raise InvalidSweep("sweep must be an object")
    unknown = sorted(set(options) - _SWEEP_KEYS)
    if unknown:
        raise InvalidSweep(f"unknown sweep options: {', '.join(unknown)}")
    seeds = options.get("seeds", list(DEFAULT_SEEDS))
    if (
        not isinstance(seeds, list)
        or not 2 <= len(seeds) <= MAX_SEEDS
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise InvalidSweep(
            f"sweep.seeds must be 2 to {MAX_SEEDS} different non-negative integers "
            "(stability is measured between seeds)"
        )
    threshold = options.get("stability_threshold")
    if threshold is not None and not (isinstance(threshold, int | float) and 0 < threshold <= 1):
        raise InvalidSweep("sweep.stability_threshold must lie in (0, 1]")
    subsample = options.get("subsample")
    if subsample is not None and not (isinstance(subsample, int | float) and 0 < subsample < 1):
        raise InvalidSweep("sweep.subsample must lie in (0, 1)")
    spec = SweepSpec(
        k_min=k_min,
        k_max=k_max,
        seeds=tuple(seeds),
        temperature_ends=_numbers(options["temperature_end"], name="temperature_end", minimum=1e-6)
        if "temperature_end" in options
        else (),
        lambdas=_numbers(options["lambda_kl"], name="lambda_kl", minimum=0.0)
        if "lambda_kl" in options
        else (),
        stability_threshold=float(threshold) if threshold is not None else None,
        subsample=float(subsample) if subsample is not None else None,
    )
    if spec.n_candidates > max_candidates:
        raise InvalidSweep(
            f"the sweep has {spec.n_candidates} candidates (K {k_min}..{k_max}"
            f"{' x temperatures' if spec.temperature_ends else ''}"
            f"{' x lambdas' if spec.lambdas else ''}); at most {max_candidates} are allowed "
            "(UVAC_MAX_SWEEP_CANDIDATES)"
        )
    return spec
