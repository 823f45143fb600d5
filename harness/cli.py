"""``python -m harness``: list variants, show one, check an input against a model's envelope, run the
benchmark sweep (``bench``: the packaged pytest plugin; every option of ``pytest --bench`` applies), merge
runs, compare two runs (``compare BASE NEW``: harness.evidence.compare).
``plan``: what fits on a GPU, predicted on the CPU (harness.evidence.plan).

MODEL is a registered variant (``python -m harness list``) or your own model as ``package.module:function``
or ``path/to/file.py:function`` (see harness.catalog.user).
"""
from __future__ import annotations

import argparse
import sys

from harness.envelope import check, prober
from harness.evidence.compare import main as compare_runs
from harness.evidence.plan import add_plan_command, main as plan
from harness.store.merge import add_merge_command, run_merge_command
from harness.overrides import format_value, parse_overrides, parse_shape
from harness.catalog.registry import get_variant, list_models
from harness.store.schema import SOURCE_LABELS
from harness.catalog.user import register_entry_points, register_reference


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="list the registered variants (the article's, peers, yours)")
    listing.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'unet3d*'")
    listing.add_argument("--model", action="append", default=[], metavar="REF", help="also list your model REF")
    show = sub.add_parser("show", help="a variant's constructor defaults, the article's claims, a probed envelope")
    show.add_argument("model")
    chk = sub.add_parser("check", help="will MODEL run this input? exit 0 (yes, prints the output shape) or 2")
    chk.add_argument("model")
    chk.add_argument("--input", required=True, help="N,C,D,H,W (or N,C,H,W for 2D models)")
    chk.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="constructor override, e.g. --set base_c=32 --set layers=3,4,6,3")
    chk.add_argument("--mode", choices=("inference", "train"), default="inference")
    chk.add_argument("--device", default="cpu", help="cpu or cuda (matters for shortcut_type=A)")
    chk.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    sub.add_parser("bench", help="the benchmark sweep (pytest with the packaged plugin); options as for "
                   "`pytest --bench`, e.g. --profile smoke --model nets:build --runs-root runs", add_help=False)
    add_merge_command(sub)
    sub.add_parser("compare", help="compare two runs (BASE NEW: run folders or run ids): ratios with intervals, "
                   "verdicts, changed work; exit 1 when something is slower", add_help=False)
    add_plan_command(sub)
    return parser


def _model(reference: str) -> str:
    """A registered name as it is; a ``module:function`` reference registered first."""
    return register_reference(reference) if ":" in reference else reference


def _list(pattern: str, references: list[str]) -> None:
    for reference in references:
        _model(reference)
    for name in list_models(pattern):
        variant = get_variant(name)
        missing = variant.unavailable_reason()
        state = f"  [unavailable: {missing}]" if missing else ""
        print(f"{name:26s} {SOURCE_LABELS[variant.source]:10s} {variant.description}{state}")


def _show(name: str) -> None:
    variant = get_variant(name)
    print(f"{variant.name}: {variant.description} ({SOURCE_LABELS[variant.source]})")
    print(f"  builder: {variant.builder.__module__}.{variant.builder.__name__}")
    for key, value in variant.defaults.items():
        print(f"  {key} = {format_value(value)}")
    for claim in variant.claims:
        print(f"  article {claim.where}: input {claim.input_shape} -> {claim.output_shape}")
    missing = variant.unavailable_reason()
    if missing:
        print(f"  unavailable here: it {missing}")
    elif variant.record.envelope is None:
        print(f"  envelope (probed on the meta device): {prober(name).rule().describe()}")


PLUGIN = "harness.pytest_plugin.plugin"


def bench(argv: list[str]) -> int:
    """The benchmark sweep: pytest with the packaged plugin and its benchmark test, options passed through
    (``--profile``, ``--model``, ``--runs-root``, pytest's and pytest-benchmark's own). pytest's exit status."""
    import pytest

    return int(pytest.main(["-p", PLUGIN, "--bench", "-p", "no:cacheprovider", *argv]))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        return bench(argv[1:])
    if argv[:1] == ["compare"]:
        return compare_runs(argv[1:])
    if argv[:1] == ["plan"]:
        return plan(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "merge":
        return run_merge_command(args)
    try:
        register_entry_points()
        if args.command == "list":
            _list(args.pattern, args.model)
            return 0
        if args.command == "show":
            _show(_model(args.model))
            return 0
        verdict = check(_model(args.model), parse_shape(args.input), parse_overrides(args.set), args.mode,
                        args.device, args.precision)
    except (KeyError, ValueError) as error:  # OptionError is a ValueError
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    if verdict.supported:
        print(verdict.output_shape)
        return 0
    print(verdict.message(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
