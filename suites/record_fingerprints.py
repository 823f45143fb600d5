"""Record the golden fingerprints of the article's models: ``python suites/record_fingerprints.py``.

Runs THE ARTICLE'S OWN CODE (cut from ``../shared/seeds/``, or ``$ARTICLE_SEED``, by article_oracle),
never our models, through the fixed procedures of ``fingerprints`` for every case of the faithfulness
suite, and writes ``suites/golden/faithfulness.json`` with the torch version that recorded it. Each case
is recorded twice, on the default threads and on one, and the file is written only if every case's two
recordings agree within ``fingerprints.AGREEMENT`` (the checks must hold on any machine with one
tolerance). Run it from the repository root whenever the cases or the procedures change, under the torch
the project pins, then commit the JSON. Exits 2 when the article is absent, 1 when a case is not steady.
Takes several minutes on two CPU cores.

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


def record_case(case, other_threads: int) -> tuple[dict, float, str]:
    """The article's fingerprints of one case, and how far a second recording on ``other_threads`` is
    from them, and where.

    The second recording (which sums in another order, as another CPU would) must agree within
    ``fingerprints.AGREEMENT``, a hundredth of the tolerance the tests use: a case that does not is
    ill-conditioned even in float64, and ``main`` refuses to record it.
    """
    _, section, class_name, kwargs, input_shape = case
    run = fp.Run(fp.build(article_oracle.namespace(section), class_name, kwargs), input_shape)
    recorded = {part: fingerprint(run) for part, fingerprint in fp.PARTS.items()}
    del run  # the largest cases hold GBs
    threads = torch.get_num_threads()
    torch.set_num_threads(other_threads)
    try:
        again = fp.Run(fp.build(article_oracle.namespace(section), class_name, kwargs), input_shape)
        deviation, where = max(fp.worst_deviation(part, recorded[part], fp.PARTS[part](again),
                                                  structure=recorded["structure"]) for part in ("eval", "train"))
    finally:
        torch.set_num_threads(threads)
    return {"case": fp.case_spec(case), **recorded}, deviation, where


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
    threads = torch.get_num_threads()
    other_threads = 1 if threads > 1 else 2
    old = fp.load() if args.only and fp.GOLDEN_PATH.is_file() else {"cases": {}}
    cases, agreement, unsteady = {}, {}, []
    for case in fp.CASES:
        if args.only and case[0] not in args.only and case[0] in old["cases"]:
            cases[case[0]] = old["cases"][case[0]]
            agreement[case[0]] = old.get("thread_agreement", {}).get(case[0])
            continue
        start = time.perf_counter()
        cases[case[0]], deviation, where = record_case(case, other_threads)
        agreement[case[0]] = float(f"{deviation:.2g}")
        print(f"{case[0]}: {time.perf_counter() - start:.1f}s; on {threads} threads and on {other_threads}: "
              f"at most {deviation:.2g} apart ({where}; tolerance {fp.RTOL:g})", flush=True)
        if deviation > fp.AGREEMENT:
            unsteady.append(f"{case[0]}: {deviation:.2g} at {where}")
    if unsteady:
        print(f"record_fingerprints: not written: the recordings on {threads} threads and on {other_threads} differ "
              f"by more than {fp.AGREEMENT:g} (a hundredth of the tolerance), so their checks would not hold on "
              f"other machines:\n  " + "\n  ".join(unsteady), file=sys.stderr)
        return 1
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
        "dtype": str(fp.DTYPE).removeprefix("torch."),
        "rtol": fp.RTOL,
        "threads": threads,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        # Per case: how far apart its recordings on these threads and on another count were (<= AGREEMENT).
        "thread_agreement": agreement,
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
