"""``python -m harness repro``: can a training step be repeated, can it run deterministically (and on CUDA,
predicted from the CPU), and which execution settings change the numbers (docs/repro.md)."""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from harness.options import EXIT_CODES_HELP, EXIT_FINDING, EXIT_OK, OptionError, require_device, require_positive

PROG = "python -m harness repro"
RUNS_ROOT = Path("results") / "repro"
COMPILE_NOT_RUN = ("not run: torch.compile is off by default (compiling the smallest variant's step takes over 60 s "
                   "on a 2-core CPU; docs/repro.md); --compile runs it")


def parser() -> argparse.ArgumentParser:
    from harness.repro.plan import BATCH, DEFAULT_MODELS, SIZE_2D, SIZE_3D
    from harness.repro.run import CHECKS
    from harness.repro.settings import SETTING_NAMES

    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill("Reproducible training, per variant: (1) run-to-run: the bench's training step, k steps in two "
                    "fresh processes, bitwise equal or the largest deviation after each step; (2) deterministic mode: "
                    "does the step run or raise (which operator), its cost, two runs bitwise equal, and, predicted "
                    "on the CPU from a trace of its operators, whether it raises on CUDA; (3) what changes a result: "
                    "threads, channels-last, bf16, torch.compile, cudnn.benchmark and batch size against fp32 eager. "
                    f"Writes {RUNS_ROOT}/<run-id>/repro.json and repro.md and prints the table.", 110),
        epilog=textwrap.fill(
            f"{EXIT_CODES_HELP}. For repro: 1 when a check could not be measured, two runs that should be bitwise "
            "equal are not, a step raises under deterministic mode on the CPU (or not as predicted on CUDA), or a "
            "setting moves the result past its stated tolerance (docs/repro.md).", 110))
    p.add_argument("--models", metavar="PATTERNS", help=f"comma-separated shell patterns of variants to check "
                   f"(default {DEFAULT_MODELS}; `python -m harness list`)")
    p.add_argument("--model", action="append", default=[], metavar="REF",
                   help="also check your model REF (module:function or file.py:function)")
    p.add_argument("--predict", default="article", metavar="PATTERNS",
                   help="variants whose CUDA outcome is predicted by tracing on the meta device (default 'article': "
                        "the article's variants; 'none'); the checked variants always are")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--size", type=int, default=SIZE_3D, help=f"3D input edge, grown to the smallest a variant "
                   f"trains at (default {SIZE_3D})")
    p.add_argument("--size-2d", type=int, default=SIZE_2D, help=f"2D input edge, likewise (default {SIZE_2D})")
    p.add_argument("--batch", type=int, default=BATCH, help=f"training batch (default {BATCH})")
    p.add_argument("--steps", type=int, default=2, help="training steps per run (default 2)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds of deterministic mode (default 3)")
    p.add_argument("--checks", default=",".join(CHECKS), help=f"comma-separated, of {', '.join(CHECKS)} (default all)")
    p.add_argument("--settings", default=",".join(SETTING_NAMES),
                   help=f"comma-separated, of {', '.join(SETTING_NAMES)} (default all that apply to the device)")
    p.add_argument("--compile", action="store_true", help="include torch.compile (off by default: minutes on a CPU)")
    p.add_argument("--timeout", type=float, default=900, help="seconds a worker process may take (default 900)")
    p.add_argument("--runs-root", type=Path, default=RUNS_ROOT, help=f"where runs go (default {RUNS_ROOT})")
    p.add_argument("--run-id", help="the run folder's name (default: time-device)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return p


def _choices(option: str, text: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [c for c in chosen if c not in allowed]
    if unknown or not chosen:
        raise OptionError(f"{option} {text!r}: {', '.join(unknown) or 'nothing'} is not one of {', '.join(allowed)}. "
                          f"Way out: a comma-separated list of those, e.g. {option} {allowed[0]}.")
    return chosen


def _folder(root: Path, run_id: str) -> Path:
    if root.exists() and not root.is_dir():
        raise OptionError(f"--runs-root {root}: it is a file, not a folder. Way out: give a folder.")
    if "/" in run_id or run_id in ("", ".", ".."):
        raise OptionError(f"--run-id {run_id!r}: a run id is one folder name. Way out: e.g. --run-id my-check.")
    folder = root / run_id
    if folder.exists() and any(folder.iterdir()):
        raise OptionError(f"--run-id {run_id!r}: {folder} already holds a run. Way out: choose another --run-id.")
    return folder


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from harness.repro.run import CHECKS, new_run_id
    from harness.repro.settings import SETTING_NAMES

    for option, value in (("--size", args.size), ("--size-2d", args.size_2d), ("--batch", args.batch),
                          ("--steps", args.steps), ("--rounds", args.rounds)):
        require_positive(option, value)
    if args.steps > 100:
        raise OptionError(f"--steps {args.steps}: at most 100 steps are compared. Way out: e.g. --steps 5.")
    if not args.timeout > 0:
        raise OptionError(f"--timeout {args.timeout:g}: must be more than 0 seconds. Way out: e.g. --timeout 600.")
    checks = _choices("--checks", args.checks, CHECKS)
    settings = _choices("--settings", args.settings, SETTING_NAMES)
    require_device(args.device)
    folder = _folder(args.runs_root, args.run_id or new_run_id(args.device))
    from harness.repro.plan import make_plan

    plan = make_plan(args.models, tuple(args.model), args.predict, args.size, args.size_2d, args.batch, args.device)
    return execute(plan, args, checks, settings, folder)


def execute(plan, args, checks, settings, folder: Path) -> int:
    from harness.repro.render import table
    from harness.repro.run import run_checks, write

    not_run = {} if args.compile else {"compile": COMPILE_NOT_RUN}
    options = {"models": args.models, "model": list(args.model), "predict": args.predict, "device": args.device,
               "size": args.size, "size_2d": args.size_2d, "batch": args.batch, "steps": args.steps,
               "rounds": args.rounds, "checks": list(checks), "settings": list(settings), "compile": args.compile}
    progress = (lambda line: None) if args.quiet else (lambda line: print(f"repro: {line}", file=sys.stderr,
                                                                          flush=True))
    result = run_checks(plan, args.steps, args.rounds, checks, settings, not_run, args.timeout, options, progress)
    data, page = write(result, folder)
    print(table(result))
    print()
    for finding in result["findings"]:
        print(f"finding: {finding}")
    print(f"{len(result['findings'])} finding(s); written {data} and {page}")
    return EXIT_FINDING if result["findings"] else EXIT_OK
