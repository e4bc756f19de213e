"""What a comparison found: every pair, the explanations only one run has, the verdict and its summary."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .metrics import METRICS
from .pairs import Pair, Unpaired
from .verdict import Bound, Failure, judge

EXIT_PASSED, EXIT_FAILED = 0, 1


@dataclass
class CompareResult:
    """The pairs worst first, the unpaired explanations, the verdict, and where the outputs went.

    A baseline explanation that the candidate lacks (not explained, or its image failed) fails the verdict
    whenever there is one (any bound): a missing explanation is no evidence that nothing changed.
    """

    baseline: dict  # what the baseline is: folder or model, model name, weights
    candidate: dict
    pairs: list[Pair]
    unpaired: list[Unpaired] = field(default_factory=list)
    failed_inputs: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> input -> error
    warnings: list[str] = field(default_factory=list)
    bounds: tuple[Bound, ...] = ()
    mean_bounds: tuple[Bound, ...] = ()
    outputs: dict[str, str] = field(default_factory=dict)  # what was written: csv, json, junit, pictures folder

    @property
    def judged(self) -> bool:
        return bool(self.bounds or self.mean_bounds)

    @property
    def failed_pairs(self) -> list[Pair]:
        """The pairs below a bound, worst first."""
        return [p for p in self.pairs if p.failures]

    @property
    def missing(self) -> list[Unpaired]:
        """Baseline explanations the candidate lacks."""
        return [u for u in self.unpaired if u.role == "baseline"]

    def means(self) -> dict[str, float | None]:
        """Each metric's mean over the pairs that have a value for it."""
        out = {}
        for metric in METRICS:
            values = [p.metrics[metric] for p in self.pairs if p.metrics.get(metric) is not None]
            out[metric] = round(math.fsum(values) / len(values), 6) if values else None
        return out

    @property
    def mean_failures(self) -> list[Failure]:
        return sorted(judge(self.means(), self.mean_bounds), key=lambda f: f.margin)

    @property
    def passed(self) -> bool:
        return not (self.failed_pairs or self.mean_failures or (self.judged and self.missing))

    @property
    def exit_code(self) -> int:
        return EXIT_PASSED if self.passed else EXIT_FAILED

    def by_method_layer(self) -> list[dict]:
        """One row per (method, layer): how many pairs, how many failed, each metric's mean."""
        groups: dict[tuple[str, str], list[Pair]] = {}
        for pair in self.pairs:
            groups.setdefault((pair.method, pair.layer), []).append(pair)
        rows = []
        for (method, layer), pairs in sorted(groups.items()):
            means = CompareResult(self.baseline, self.candidate, pairs).means()
            failed = sum(1 for p in pairs if p.failures)
            rows.append({"method": method, "layer": layer, "pairs": len(pairs), "failed": failed, **means})
        return rows

    def failure_lines(self) -> list[str]:
        """One line per failing pair, worst first, then each missing explanation and each failed mean."""
        lines = [f"{p.name}: {'; '.join(map(str, p.failures))}" for p in self.failed_pairs]
        if self.judged:
            lines += [f"{u.input} {u.method} {u.layer} {u.slot}: missing ({u.reason})" for u in self.missing]
        lines += [f"mean over {len(self.pairs)} pairs: {f}" for f in self.mean_failures]
        return lines

    def summary(self) -> dict:
        """The comparison as one JSON object (``--json``)."""
        return {
            "baseline": self.baseline,
            "candidate": self.candidate,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "pairs": len(self.pairs),
            "failed_pairs": len(self.failed_pairs),
            "bounds": [str(b) for b in self.bounds],
            "mean_bounds": [str(b) for b in self.mean_bounds],
            "means": self.means(),
            "mean_failures": [str(f) for f in self.mean_failures],
            "by_method_layer": self.by_method_layer(),
            "failed": [p.row() for p in self.failed_pairs],
            "unpaired": [u.row() for u in self.unpaired],
            "failed_inputs": self.failed_inputs,
            "warnings": self.warnings,
            "outputs": self.outputs,
        }
