"""Evidence for the reproduction report: run every claim of the article and record what happened.

``python -m harness claims`` writes ``results/claims.json`` (``--out FILE`` elsewhere):
- each printed output and stage shape, reproduced on the meta device (PyTorch's real shape logic);
- the article's central claim that ResNet stages line up with the UNet encoder, at its input and at
  the smallest inputs where it breaks;
- its stated limits, run on CPU tensors, with the exact error each gives;
- per variant, the smallest input hypothesis finds for each envelope constraint, run for real;
- ``unetpp``: parameter counts behind the answer's "VGG16 138 M vs EfficientNet-B0 5.3 M" and of the
  UNet++ variants' encoder alone and whole network (meta device; ``python -m harness claims --only unetpp``
  refreshes this section alone).
Reports read this file; they never run models. Exit status: 0 every printed claim and stated limit reproduced;
1 one did not (a finding); 2 wrong input (an option, an --out that cannot be written, a damaged file for
--only to update).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from harness.bench import environment
from harness.envelope import check
from harness.options import EXIT_CODES_HELP, EXIT_FINDING, EXIT_OK, InputFileError, require_writable_output
from harness.overrides import format_overrides
from harness.catalog.meta_probe import run_once
from harness.catalog.registry import get_variant, list_models
from harness.store.schema import RESULTS_ROOT

OUTPUT = RESULTS_ROOT / "claims.json"
SMALL = (1, 1, 16, 16, 16)
CLAIM_SOURCES = ("article", "follow-up")  # the article's document; peers and user models make no claims


def _run(name, shape, overrides=None, mode="inference", device="cpu") -> dict:
    try:
        output, stages = run_once(name, shape, overrides, mode, device)
        return {"ran": True, "output_shape": list(output), "stage_shapes": [list(s) for s in stages]}
    except (RuntimeError, ValueError) as error:
        return {"ran": False, "error": f"{type(error).__name__}: {str(error).splitlines()[0]}"}


def printed_claims() -> list[dict]:
    rows = []
    for name in list_models(sources=CLAIM_SOURCES, available=True):
        for claim in get_variant(name).claims:
            observed = _run(name, claim.input_shape, claim.overrides, device="meta")
            stages_ok = not claim.stage_shapes or observed.get("stage_shapes") == [list(s) for s in claim.stage_shapes]
            rows.append({
                "model": name, "section": claim.where, "overrides": format_overrides(claim.overrides),
                "input_shape": list(claim.input_shape), "claimed_output": list(claim.output_shape),
                "claimed_stages": [list(s) for s in claim.stage_shapes], **observed,
                "reproduced": observed["ran"] and observed["output_shape"] == list(claim.output_shape) and stages_ok,
            })
    return rows


def stated_limits() -> list[dict]:
    rows = []
    for name in list_models(sources=CLAIM_SOURCES, available=True):
        for limit in get_variant(name).limits:
            observed = _run(name, SMALL, limit.overrides)
            verdict = check(name, SMALL, limit.overrides)
            rows.append({"model": name, "limit": limit.text, "overrides": format_overrides(limit.overrides),
                         "input_shape": list(SMALL), **observed, "envelope": verdict.message(),
                         "reproduced": not observed["ran"]})
    return rows


def stage_alignment() -> list[dict]:
    """UNet encoder vs ResNet stages at the article's input and at inputs that are not multiples of 16."""
    rows = []
    for shape in [(1, 1, 64, 64, 64), (1, 1, 128, 128, 64), (1, 1, 48, 48, 48), (1, 1, 33, 33, 33),
                  (1, 1, 40, 40, 40)]:
        unet, resnet = _run("unet3d", shape, device="meta"), _run("unet3d-resnet50", shape, device="meta")
        rows.append({"input_shape": list(shape), "unet_stages": unet.get("stage_shapes"),
                     "resnet_stages": resnet.get("stage_shapes"),
                     "aligned": unet.get("stage_shapes") == resnet.get("stage_shapes")})
    return rows


def minimal_failures(max_size: int = 48) -> list[dict]:
    """For each variant (article settings) and each constraint that can break, the smallest input
    hypothesis finds that breaks it, then that input run on CPU tensors for the exact error."""
    from hypothesis import HealthCheck, find, settings
    from hypothesis import strategies as st
    from hypothesis.errors import NoSuchExample

    search = settings(max_examples=400, derandomize=True, database=None, deadline=None,
                      suppress_health_check=list(HealthCheck))
    rows = []
    for name in list_models(sources=CLAIM_SOURCES, available=True):
        variant = get_variant(name)
        channels = variant.example_input[1]
        # Independent sizes, or one size for every axis (some variants run only sizes like 32k).
        cubes = st.builds(lambda n_batch, n: (n_batch, channels) + (n,) * variant.spatial_dims,
                          st.integers(1, 2), st.integers(1, max_size))
        shapes = st.one_of(cubes, st.tuples(st.integers(1, 2), st.just(channels),
                                            *[st.integers(1, max_size)] * variant.spatial_dims))
        for mode in ("inference", "train"):
            for constraint in ("min-size", "parity", "train-batchnorm", "effb0-min-size", "unetpp-multiple"):
                def breaks(shape, constraint=constraint, mode=mode):
                    return check(name, shape, mode=mode, suggest=False).constraint == constraint
                try:
                    shape = find(shapes, breaks, settings=search)
                except NoSuchExample:
                    continue
                verdict = check(name, shape, mode=mode)
                rows.append({"model": name, "mode": mode, "constraint": constraint, "input_shape": list(shape),
                             "envelope": verdict.message(), **_run(name, shape, mode=mode)})
            try:
                smallest = find(shapes, lambda s, mode=mode: check(name, s, mode=mode, suggest=False).supported,
                                settings=search)
            except NoSuchExample:
                continue  # nothing up to max_size runs: the rows above say why
            rows.append({"model": name, "mode": mode, "constraint": "smallest supported",
                         "input_shape": list(smallest), "envelope": check(name, smallest, mode=mode).message(),
                         **_run(name, smallest, mode=mode)})
    return rows


def collect() -> dict:
    env = environment.capture("cpu")
    return {
        "environment": {k: env[k] for k in ("torch", "python", "git_commit")},
        "printed_claims": printed_claims(),
        "stage_alignment": stage_alignment(),
        "stated_limits": stated_limits(),
        "minimal_failures": minimal_failures(),
        **({"unetpp": unetpp_parameters()} if not get_variant("unetpp3d-effb0").unavailable_reason() else {}),
    }


def unetpp_parameters() -> dict:
    """Encoder-alone and whole-network parameter counts of the UNet++ variants (needs MONAI; without it
    the section is left out and the report says how to add it)."""
    from harness.evidence.param_facts import unetpp_parameters as count
    return count()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness claims", description=__doc__, epilog=EXIT_CODES_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=("unetpp",), help="refresh this section alone, keeping the rest of the file")
    p.add_argument("--out", type=Path, default=OUTPUT, help=f"the evidence file (default {OUTPUT})")
    return p


def _writable(path: Path) -> None:
    require_writable_output("--out", path, OUTPUT)


def _write(path: Path, evidence: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(evidence, indent=1) + "\n")
    os.replace(tmp, path)  # whole or not at all


def main(argv=None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    _writable(args.out)
    if args.only == "unetpp":
        evidence = {}
        if args.out.exists():
            try:
                evidence = json.loads(args.out.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise InputFileError(f"{args.out}: cannot be read as JSON ({error}), so its other sections cannot be "
                                     f"kept. Way out: restore it (git checkout {args.out}), or run `python -m harness "
                                     f"claims` without --only to write it whole.") from None
            if not isinstance(evidence, dict):
                raise InputFileError(f"{args.out}: holds a JSON {type(evidence).__name__}, not the claims object. "
                                     f"Way out: run `python -m harness claims` without --only to write it whole.")
        evidence["unetpp"] = unetpp_parameters()
        _write(args.out, evidence)
        print(f"wrote the unetpp section of {args.out}")
        return EXIT_OK
    evidence = collect()
    _write(args.out, evidence)
    failed = [c for c in evidence["printed_claims"] + evidence["stated_limits"] if not c["reproduced"]]
    print(f"wrote {args.out}: {len(evidence['printed_claims'])} printed claims, "
          f"{len(evidence['stated_limits'])} stated limits, {len(failed)} not reproduced")
    for claim in failed:
        print(f"  not reproduced: {claim['model']} {claim.get('section') or claim.get('limit')}")
    return EXIT_FINDING if failed else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
