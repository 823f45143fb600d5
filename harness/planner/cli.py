"""``python -m harness plan``: what fits on a GPU, predicted on the CPU (harness.memory).

For a memory budget (``--gpu-memory 24GiB``, or ``--gpu NAME`` for a named card) and each variant: the
largest batch at a patch (``--patch``, default 128³) and the largest patch at a batch (``--batch``, default 2;
cubic, or with ``--volume D,H,W`` anisotropic, growing the axis with the most room left), for inference and
training, fp32 and bf16, each with its predicted peak and the budget left over. Plans keep ``--margin`` of the
budget free (default 10%: the allocator reserves more than it hands out, and the prediction was within 2% on
the measured GPU rows, within 8% before issue 27). For nnU-Net's networks, nnU-Net's own heuristic is shown beside it.

``--input C,D,H,W`` (with ``--batch``, ``--mode``, ``--precision``, ``--channels-last``) predicts that one
configuration instead; ``--json`` writes JSON for scripts. ``--rows`` holds the predictor against every measured GPU row in
the repository (harness.planner.accuracy): exit 1 when one leaves its bound.

How a plan is searched: each variant, mode and precision is simulated twice (two small sizes, on fake
tensors), which classifies every allocation of the step as constant, per sample, per voxel or both
(``ScaledTrace``); a vectorized estimate then scans batches and patches, and the allocator replay confirms
each answer. The two simulations are cached on disk (``$UNET3D_BENCH_CACHE``, default
``~/.cache/unet3d-bench``), keyed by torch's version, this code and the model's source.
"""
from __future__ import annotations

import json
import os
import re
import sys

from harness.options import EXIT_CODES_HELP, OptionError
from harness.options import report as report_option_error
from harness.planner.render import _render_fixed, plan_json, render
from harness.planner.search import make_plan, predict_fixed
from harness.planner.units import CONTEXT_ALLOWANCE_GIB, GIB, _negative_memory, _spatial, gpu_budget, gpu_table, parse_memory

HELP = ("what fits on a GPU: the largest batch and patch under a memory budget, predicted on the CPU; or one "
        "configuration's predicted peak (--input)")


def _parser():
    import argparse

    cmd = argparse.ArgumentParser(prog="python -m harness plan", description=__doc__, epilog=EXIT_CODES_HELP,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    budget = cmd.add_mutually_exclusive_group()
    budget.add_argument("--gpu-memory", metavar="SIZE", help="the memory budget, e.g. 24GiB, 80GB, 11000MiB")
    budget.add_argument("--gpu", metavar="NAME", help="a named card's usable memory ('--gpu list' shows them)")
    cmd.add_argument("--models", help="shell pattern over variant names (default 'unet3d*' unless --model is given)")
    cmd.add_argument("--model", action="append", default=[], metavar="REF",
                     help="a variant, or your model as module:function or path/to/file.py:function")
    cmd.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="constructor override")
    cmd.add_argument("--patch", help="the patch for the largest batch (N for a cube, or D,H,W; default 128, or with "
                     "--volume the volume's size up to 128; never larger than --volume)")
    cmd.add_argument("--batch", type=int, default=None, help="the batch for the largest patch (default 2); with "
                     "--input, the batch predicted (default 1)")
    cmd.add_argument("--volume", metavar="D,H,W", help="grow the largest patch within this volume, the axis with "
                     "the most room first (default: cubic patches)")
    cmd.add_argument("--step", type=int, default=16, help="patch sizes grow in steps of this (default 16)")
    cmd.add_argument("--mode", choices=("inference", "train", "both"), default="both")
    cmd.add_argument("--precision", choices=("fp32", "bf16", "fp16", "both"), default="both",
                     help="both (default): fp32 and bf16 autocast")
    cmd.add_argument("--channels-last", action="store_true")
    cmd.add_argument("--margin", type=float, default=0.1, help="fraction of the budget plans keep free (default 0.1)")
    cmd.add_argument("--input", metavar="C,D,H,W", help="predict this one configuration (with --batch)")
    cmd.add_argument("--rows", action="store_true", help="the predictor against every measured GPU row in the "
                     "repository (fitted to and held out), with its bound; exit 1 when a row leaves it")
    cmd.add_argument("--json", action="store_true", help="JSON for scripts")
    cmd.add_argument("--no-cache", action="store_true", help="simulate again rather than read the disk cache")
    cmd.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1),
                     help="simulations run side by side, in processes (default: the CPUs, at most 8)")
    return cmd


def add_plan_command(sub) -> None:
    """Lists ``plan`` among ``python -m harness``'s subcommands (``main`` parses its options)."""
    sub.add_parser("plan", help=HELP, add_help=False)


def main(argv=None) -> int:
    """``python -m harness plan ...``: exit 0 with the plan, 2 with one paragraph for a bad option."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        _negative_memory(argv)  # before argparse, which would take '-3GiB' for an option
    except OptionError as error:
        return report_option_error(error)
    args = _parser().parse_args(argv)
    from harness.catalog.registry import get_variant, require_models
    from harness.catalog.user import register_entry_points, register_reference
    from harness.overrides import parse_overrides

    try:
        if (args.gpu or "").strip().lower() == "list":
            print(gpu_table())
            return 0
        if args.rows:
            from harness.planner.accuracy import check_rows, render_checks

            checks = check_rows()
            print(render_checks(checks))
            return 0 if all(c.within for c in checks) else 1
        budget, budget_text, card = None, "", None
        if args.gpu_memory is not None:
            budget, budget_text = parse_memory(args.gpu_memory), args.gpu_memory
        elif args.gpu is not None:
            card, capacity, budget = gpu_budget(args.gpu)
            budget_text = (f"{card}: {capacity // GIB} GiB vendor capacity less {CONTEXT_ALLOWANCE_GIB:g} GiB for the "
                           f"CUDA context (usable {budget / GIB:g} GiB)")
        if not 0 <= args.margin < 1:
            raise OptionError(f"--margin must lie in [0, 1), not {args.margin!r}. Way out: e.g. --margin 0.1 keeps 10% "
                              f"of the budget free.")
        if args.batch is not None and args.batch < 1:
            raise OptionError(f"--batch must be at least 1, not {args.batch}. Way out: e.g. --batch 2.")
        if args.jobs < 1:
            raise OptionError(f"--jobs must be at least 1, not {args.jobs}. Way out: e.g. --jobs 2.")
        if args.step < 1:
            raise OptionError(f"--step must be at least 1, not {args.step}. Way out: e.g. --step 16.")
        register_entry_points()
        names = [register_reference(ref) if ":" in ref else ref for ref in args.model]
        if args.models or not names:
            names += [n for n in require_models(args.models or "unet3d*") if n not in names]
        for name in names:
            missing = get_variant(name).unavailable_reason()
            if missing:
                raise OptionError(f"{name} is not available here: it {missing}.")
        overrides = parse_overrides(args.set)
        overrides_text = ";".join(args.set)
        modes = ("inference", "train") if args.mode == "both" else (args.mode,)
        precisions = ("fp32", "bf16") if args.precision == "both" else (args.precision,)
        if args.input:
            shape = tuple(int(p) for p in re.split(r"[x,]", args.input) if p.strip()) \
                if re.fullmatch(r"[0-9x, ]+", args.input) else ()
            if len(shape) < 2 or min(shape) < 1:
                raise OptionError(f"--input {args.input!r} is not one sample's shape: give C,D,H,W (channels, then the "
                                  f"spatial sizes), e.g. --input 1,128,128,128.")
            items = predict_fixed(names, overrides_text, shape, args.batch or 1, modes, precisions,
                                  args.channels_last, budget, gpu=card)
            print(json.dumps(items, indent=2) if args.json else _render_fixed(items))
            return 0
        if budget is None:
            raise OptionError("plan needs a memory budget: --gpu-memory SIZE (e.g. 24GiB) or --gpu NAME (--gpu list "
                              "shows the cards), or --input C,D,H,W to predict one configuration.")
        volume = None
        if args.volume:
            volume = _spatial(args.volume, len(re.split(r"[x,]", args.volume)), "--volume")
        plan = make_plan(names, overrides, overrides_text, modes, precisions, args.channels_last, budget, budget_text,
                         args.margin, args.patch, args.batch or 2, volume, args.step, cache=not args.no_cache,
                         jobs=args.jobs, gpu=card)
    except (OptionError, KeyError, ValueError) as error:
        text = error.args[0] if error.args else str(error)
        return report_option_error(error if isinstance(error, OptionError) else OptionError(str(text)))
    print(json.dumps(plan_json(plan), indent=2) if args.json else render(plan))
    return 0
