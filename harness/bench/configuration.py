"""A configuration resolved once: the spec, its variant (one registry look-up) and its verdict (one envelope
check), handed to every step that needs them (refusal, workload, training target, FLOP count, the row's
source, the expected output shape) instead of each looking them up again."""
from __future__ import annotations

from dataclasses import dataclass

from harness.bench.spec import BenchSpec
from harness.catalog.registry import Variant, get_variant
from harness.envelope import Verdict, check


@dataclass(frozen=True)
class Configuration:
    spec: BenchSpec
    variant: Variant
    verdict: Verdict

    @property
    def refusal(self) -> str:
        """Empty when the faithful model will run this spec, else why not (an error row's text)."""
        spec = self.spec
        if spec.exec_mode == "cudagraphs" and spec.device != "cuda":
            return f"unsupported: exec_mode cudagraphs needs CUDA (CUDA graphs capture GPU kernels), not {spec.device}"
        return "" if self.verdict.supported else f"unsupported: {self.verdict.message()}"


def resolve(spec: BenchSpec) -> Configuration:
    variant = get_variant(spec.model)
    verdict = check(variant, spec.full_input_shape, spec.constructor_overrides, spec.mode, spec.device,
                    spec.precision, suggest=True)
    return Configuration(spec, variant, verdict)
