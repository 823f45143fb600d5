"""``python -m harness``: list variants, show one, check an input against a model's envelope."""
from __future__ import annotations

import argparse
import sys

from .envelope import check
from .launch.merge import add_merge_command, run_merge_command
from .overrides import format_value, parse_overrides, parse_shape
from .registry import get_variant, list_models


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="list the registered variants")
    listing.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'unet3d*'")
    show = sub.add_parser("show", help="a variant's constructor defaults and the article's claims")
    show.add_argument("model")
    chk = sub.add_parser("check", help="will MODEL run this input? exit 0 (yes, prints the output shape) or 2")
    chk.add_argument("model")
    chk.add_argument("--input", required=True, help="N,C,D,H,W (or N,C,H,W for 2D models)")
    chk.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="constructor override, e.g. --set base_c=32 --set layers=3,4,6,3")
    chk.add_argument("--mode", choices=("inference", "train"), default="inference")
    chk.add_argument("--device", default="cpu", help="cpu or cuda (matters for shortcut_type=A)")
    chk.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    add_merge_command(sub)
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "merge":
        return run_merge_command(args)
    try:
        if args.command == "list":
            for name in list_models(args.pattern):
                print(f"{name:20s} {get_variant(name).description}")
            return 0
        if args.command == "show":
            variant = get_variant(args.model)
            print(f"{variant.name}: {variant.description}")
            print(f"  class: {variant.builder.__name__}")
            for key, value in variant.defaults.items():
                print(f"  {key} = {format_value(value)}")
            for claim in variant.claims:
                print(f"  article {claim.where}: input {claim.input_shape} -> {claim.output_shape}")
            return 0
        verdict = check(args.model, parse_shape(args.input), parse_overrides(args.set), args.mode,
                        args.device, args.precision)
    except (KeyError, ValueError) as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    if verdict.supported:
        print(verdict.output_shape)
        return 0
    print(verdict.message(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
