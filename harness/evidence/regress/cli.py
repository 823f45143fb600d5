"""``python -m harness.evidence.regress``: options, their checks, the mode, the table and the verdict file."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import harness.evidence.regress as package
from harness.bench.profiles import select_models
from harness.catalog.registry import require_models
from harness.catalog.user import register_reference
from harness.evidence.regress.checks import against_baseline, against_ref, deterministic_only, update_facts
from harness.evidence.regress.render import print_report
from harness.evidence.regress.results import EXIT_OK
from harness.evidence.regress.tree import resolve_ref
from harness.options import (EXIT_CODES_HELP, OptionError, require_device, require_fraction, require_positive,
                             require_writable_output)
from harness.options import report as report_option_error
from harness.store.load import read_run
from harness.store.schema import RESULTS_ROOT, RUNS_ROOT

OUT = RESULTS_ROOT / "regress" / "latest.json"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness regress", description=package.__doc__,
                                epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--against", metavar="REF", help="git ref to compare the working tree with")
    p.add_argument("--baseline", metavar="RUN_DIR", help="committed run to compare with (default: the run from this "
                   "machine holding the most of the planned configurations)")
    p.add_argument("--runs-root", type=Path, default=RUNS_ROOT, help=f"where committed runs are looked for when "
                   f"--baseline is not given (default {RUNS_ROOT})")
    p.add_argument("--deterministic-only", action="store_true", help="facts only, against the snapshot")
    p.add_argument("--update-facts", action="store_true", help="rewrite results/regress/facts.json")
    p.add_argument("--models", help="shell pattern over variant names (default: the article's variants, or only "
                   "your --model ones when given)")
    p.add_argument("--model", action="append", default=[], metavar="REF",
                   help="your own model, package.module:function or path/to/file.py:function (repeatable); a "
                   "relative path resolves in each compared tree, so --against compares your file's versions")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--replicates", type=int, default=2,
                   help="fresh pairs of worker processes, one after the other (--against)")
    p.add_argument("--blocks", type=int, default=5, help="alternating timing blocks per configuration and replicate")
    p.add_argument("--rounds", type=int, default=3, help="timed steps per block and side")
    p.add_argument("--min-effect", type=float, default=0.10, help="smallest slowdown called a regression")
    p.add_argument("--mem-tolerance", type=float, default=0.10,
                   help="peak-memory growth tolerated (plus 32 MB on CPU, 2 MB on CUDA)")
    p.add_argument("--modes", default="inference,train", type=lambda text: tuple(text.split(",")),
                   help="which of inference,train to time")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="threads per worker")
    p.add_argument("--out", type=Path, default=OUT, help="JSON verdict file")
    return p


def check_options(args) -> None:
    """Refuse bad options before any worker starts or model is built."""
    if args.models is not None:
        require_models(args.models)
    args.names = select_models("cpu", args.models, tuple(register_reference(r) for r in args.model))
    require_device(args.device)
    for option in ("replicates", "blocks", "rounds", "threads"):
        require_positive(f"--{option}", getattr(args, option))
    require_fraction("--min-effect", args.min_effect)
    require_fraction("--mem-tolerance", args.mem_tolerance)
    unknown = set(args.modes) - {"inference", "train"}
    if unknown or not args.modes:
        raise OptionError(f"--modes takes inference, train or both separated by a comma, not "
                          f"{','.join(args.modes)!r}. Way out: --modes inference,train.")
    if args.baseline and not (Path(args.baseline) / "results.csv").is_file():
        raise OptionError(f"--baseline {args.baseline}: no results.csv there. Way out: give a run folder "
                          f"under {args.runs_root}, or leave --baseline out to choose one from there.")
    if args.baseline:
        read_run(args.baseline)  # a damaged baseline: InputFileError, before any model is built
    if args.against:
        args.against_commit = resolve_ref(args.against)
    require_writable_file("--out", args.out)


def require_writable_file(option: str, path: Path) -> None:
    require_writable_output(option, path, OUT)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        check_options(args)
    except OptionError as error:
        return report_option_error(error)
    if args.update_facts:
        print(f"wrote {update_facts(args.names)}")
        return EXIT_OK
    try:
        if args.deterministic_only:
            result = deterministic_only(args)
        elif args.against:
            result = against_ref(args)
        else:
            result = against_baseline(args)  # a damaged committed run under --runs-root: InputFileError
    except OptionError as error:
        return report_option_error(error)
    status = print_report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result.record(), indent=1, sort_keys=True, default=str) + "\n")
    return status
