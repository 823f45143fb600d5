"""Record the golden fingerprints of the article's models: ``python suites/record_fingerprints.py``.

Runs THE ARTICLE'S OWN CODE (cut from ``../shared/seeds/``, or ``$ARTICLE_SEED``, by article_oracle),
never our models, through the fixed procedures of ``fingerprints`` for every case of the faithfulness
suite, and writes ``suites/golden/faithfulness.json`` with the torch version that recorded it. Run it
from the repository root whenever the cases or the procedures change, under the torch the project pins,
then commit the JSON. Exits 2 when the article is absent. Takes a few minutes on two CPU cores.

    python suites/record_fingerprints.py [--only CASE_ID ...]   # --only: re-record some cases, keep the rest
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
import warnings
from pathlib import Path

SUITES = Path(__file__).resolve().parent
sys.path[:0] = [str(SUITES.parent), str(SUITES)]

import torch  # noqa: E402

import article_oracle  # noqa: E402
import fingerprints as fp  # noqa: E402


def record_case(case) -> dict:
    """The article's fingerprints of one case, and how loose each tensor's comparison must be.

    The outputs, gradients and running stats are recorded twice, on the default threads and on one
    (which moves kernels' last bits), and ``fingerprints.looseness`` widens the tolerance of the
    tensors that differ between the two.
    """
    _, section, class_name, kwargs, input_shape = case
    run = fp.Run(fp.build(article_oracle.namespace(section), class_name, kwargs), input_shape)
    recorded = {part: fingerprint(run) for part, fingerprint in fp.PARTS.items()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        again = fp.Run(fp.build(article_oracle.namespace(section), class_name, kwargs), input_shape)
        loose = {path: tol for part in ("eval", "train")
                 for path, tol in fp.looseness(part, recorded[part], fp.PARTS[part](again)).items()}
    finally:
        torch.set_num_threads(threads)
    return {"case": fp.case_spec(case), **recorded, "loose": loose}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="CASE_ID", help="re-record these cases, keep the others")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=r".*nn\.init\.kaiming_normal.*")  # the article's deprecated call
    seed = article_oracle.seed_path()
    if not seed.is_file():
        print(f"record_fingerprints: the article is not at {seed}; put the seed text there or point "
              f"ARTICLE_SEED at it (the fingerprints must come from the article's own code).", file=sys.stderr)
        return 2
    ids = [case[0] for case in fp.CASES]
    unknown = set(args.only or ()) - set(ids)
    if unknown:
        parser.error(f"no such case: {', '.join(sorted(unknown))} (cases: {', '.join(ids)})")
    old = fp.load()["cases"] if args.only and fp.GOLDEN_PATH.is_file() else {}
    cases = {}
    for case in fp.CASES:
        if args.only and case[0] not in args.only and case[0] in old:
            cases[case[0]] = old[case[0]]
            continue
        start = time.perf_counter()
        cases[case[0]] = record_case(case)
        print(f"{case[0]}: {time.perf_counter() - start:.1f}s", flush=True)
    stage_prints = {}
    for case_id, class_name, section, kwargs in fp.STAGE_PRINT_CASES:
        model = fp.build(article_oracle.namespace(section), class_name, kwargs)
        stage_prints[case_id] = {"case": {"section": section, "class": class_name, "kwargs": kwargs},
                                 "lines": fp.stage_prints(model, ours=False).splitlines()}
    failures = {}
    for case_id, section, class_name, kwargs, input_shape in [*fp.FAILURES, fp.TRAIN_FAILURE]:
        model = fp.build(article_oracle.namespace(section), class_name, kwargs)
        failures[case_id] = {"case": {"section": section, "class": class_name, "kwargs": kwargs,
                                      "input_shape": list(input_shape)},
                             "error": fp.failure(model, input_shape, train=case_id == fp.TRAIN_FAILURE[0])}
    golden = {
        "about": f"Fingerprints of the article's own code; regenerate with: {fp.RECORD_COMMAND}",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "article": {"name": seed.name, "sha256": hashlib.sha256(seed.read_bytes()).hexdigest()},
        "rtol": fp.RTOL,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cases": cases,
        "stage_prints": stage_prints,
        "failures": failures,
    }
    fp.GOLDEN_PATH.parent.mkdir(exist_ok=True)
    fp.GOLDEN_PATH.write_text(json.dumps(golden, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {fp.GOLDEN_PATH} ({fp.GOLDEN_PATH.stat().st_size / 1024:.0f} KiB, torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
