"""The front door. ``nox -l`` lists the sessions; arguments after ``--`` go to the tool underneath, which is
always ``python -m harness <command>`` (the same commands run without nox; docs/options.md).

Torch: a fresh session venv gets ``torch==2.13.0`` (override with HARNESS_TORCH, e.g.
``HARNESS_TORCH="torch==2.11.0"``). On a machine whose Python already has the torch you want (a GPU
box), run with ``--no-venv``: nothing touches torch; missing pure-Python tools are pip-installed into
that environment, and the command says which.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
TORCH = os.environ.get("HARNESS_TORCH", "torch==2.13.0")
# Import name of each requirement, for the --no-venv check.
IMPORT_NAMES = {"pytest-benchmark": "pytest_benchmark", "dynamic-network-architectures": "dynamic_network_architectures",
                "nvidia-ml-py": "pynvml"}
# What the GPU-image set can break: the pytest plugin and benchmark suites (pytest, pytest-benchmark), the
# hypothesis properties, the results store and reports (pandas). The model suites need none of those
# versions and run under the newest and the oldest sets.
GPU_IMAGE_SUITES = ("suites/test_cli_options.py",
                    "suites/test_faults.py", "suites/test_timing.py", "suites/test_results_store.py",
                    "suites/test_report.py", "suites/test_launch.py", "suites/test_shape_properties.py",
                    "suites/test_regress.py")
# Under the oldest set: every suite but the faithfulness fingerprints (float64 passes, the slowest suite),
# which depend on torch alone, the same in every set.
OLDEST_SUITES = tuple(str(p) for p in sorted(Path("suites").glob("test_*.py")) if p.name != "test_reference_faithful.py")
# Installed without their declared dependencies: dynamic-network-architectures declares timm, and so
# torchvision and another torch, which its UNets never import.
NO_DEPS = {"dynamic-network-architectures", "nnunetv2"}
# All that `python -m harness report` and `compare` import: no torch, no monai (which would pull a torch).
TORCH_FREE = ("pandas", "matplotlib", "tabulate", "jinja2", "scipy")


def _requirements(*extras: str) -> list[str]:
    project = PYPROJECT["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [r for r in reqs if not r.startswith("torch")]


def _name(requirement: str) -> str:
    for sep in "<>=!~ [":
        requirement = requirement.split(sep)[0]
    return requirement


def _pip_install(session: nox.Session, requirements: list[str], *options: str) -> None:
    """pip install, the NO_DEPS packages apart and without their dependencies."""
    plain = [r for r in requirements if _name(r) not in NO_DEPS]
    bare = [r for r in requirements if _name(r) in NO_DEPS]
    for group, extra in ((plain, ()), (bare, ("--no-deps",))):
        if group:
            session.run("python", "-m", "pip", "install", "--disable-pip-version-check", *options, *extra, *group,
                        silent=False)


def install_torch_free(session: nox.Session) -> None:
    """What report and compare use, with pyproject.toml's floors: a session venv without torch, in seconds. The
    package itself is the checkout the session runs in (``python -m harness`` imports it from there)."""
    pinned = {_name(r): r for r in PYPROJECT["project"]["dependencies"]}
    reqs = [pinned.get(name, name) for name in TORCH_FREE]
    if isinstance(session.virtualenv, nox.virtualenv.PassthroughEnv):
        missing = [r for r in reqs if importlib.util.find_spec(_name(r)) is None]
        if missing:
            session.log(f"installing into the current environment: {' '.join(missing)}")
            _pip_install(session, missing)
        return
    _pip_install(session, reqs)


def install(session: nox.Session, *extras: str, torch: bool = True) -> None:
    """Install what a session needs; never reinstall torch in an existing environment."""
    reqs = _requirements(*extras)
    if isinstance(session.virtualenv, nox.virtualenv.PassthroughEnv):
        if torch and importlib.util.find_spec("torch") is None:
            session.error("--no-venv needs torch in this Python; install the build you want first")
        missing = [r for r in reqs if importlib.util.find_spec(IMPORT_NAMES.get(_name(r), _name(r))) is None]
        if missing:
            session.log(f"installing into the current environment (torch untouched): {' '.join(missing)}")
            _pip_install(session, missing)
        return
    if torch:
        session.install(TORCH)
    _pip_install(session, reqs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run every suite once: faithfulness, shapes and envelope (hypothesis), benchmarks as tests."""
    install(session, "test", "peers", "unetpp", "cluster", "pipeline")
    args = session.posargs or []
    profile = [] if any(a.startswith("--hypothesis-profile") for a in args) else ["--hypothesis-profile", "ci"]
    session.run("python", "-m", "pytest", "suites", "--bench", "--benchmark-disable", "--durations=15", *profile, *args)


def _pins(constraints: str) -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in Path(constraints).read_text().splitlines())
    return dict(line.split("==") for line in lines if line)


def tests_with(session: nox.Session, deps: str, suites: tuple[str, ...] = ("suites",)) -> None:
    """The suites, then a smoke bench, claims and report in a temporary copy of the tree, under constraints/DEPS.txt."""
    constraints = f"constraints/{deps}.txt"
    if isinstance(session.virtualenv, nox.virtualenv.PassthroughEnv):
        # Never change a user's environment to match a set: check that it already is that set.
        wrong = []
        for name, pinned in _pins(constraints).items():
            try:
                found = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                found = "missing"
            if found != pinned:
                wrong.append(f"{name} {found} (set: {pinned})")
        if wrong:
            session.error(f"this environment is not the {deps} set: {', '.join(wrong)}; run without --no-venv")
        install(session, "test")
    else:
        session.install(TORCH)
        session.install("-c", constraints, *_requirements("test"))
    session.run("python", "-m", "pip", "list", "--disable-pip-version-check", silent=False)
    args = session.posargs or []
    profile = [] if any(a.startswith("--hypothesis-profile") for a in args) else ["--hypothesis-profile", "ci"]
    bench = ("--bench",) if suites != GPU_IMAGE_SUITES else ()  # the benchmark test, beside the suites
    session.run("python", "-m", "pytest", *suites, *bench, "--benchmark-disable", *profile, *args)
    # A smoke bench, claims and report write under results/ of the directory they run in: a temporary one.
    checkout = str(Path.cwd())
    work = Path(session.create_tmp()) / f"smoke-{deps}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    with session.chdir(work):
        env = {"PYTHONPATH": checkout}
        session.run("python", "-m", "harness", "bench", "--profile", "smoke", "--warmup", "1", "--models", "unet[23]d",
                    "--runs-root", "runs", "--run-id", "smoke", env=env)
        session.run("python", "-m", "harness", "claims", env=env)
        session.run("python", "-m", "harness", "report", "runs/smoke", "--out", "report", env=env)


@nox.session
def tests_oldest(session: nox.Session) -> None:
    """tests plus a smoke bench, claims and report with the oldest supported versions (constraints/oldest.txt)."""
    tests_with(session, "oldest", OLDEST_SUITES)


@nox.session
def tests_gpu_image(session: nox.Session) -> None:
    """The suites that drive pytest, pytest-benchmark, hypothesis and pandas, plus a smoke bench, claims and
    report, with a stock GPU image's test tools (constraints/gpu-image.txt)."""
    tests_with(session, "gpu-image", GPU_IMAGE_SUITES)


@nox.session
def bench(session: nox.Session) -> None:
    """Measure speed, peak memory and MACs of every variant (cpu profile, or paper on a GPU), then report."""
    args = list(session.posargs)
    # --launcher local|slurm|submitit-local: the sweep in shards (python -m harness launch), merged into one run.
    launcher = next((a.split("=", 1)[1] if "=" in a else args[i + 1] for i, a in enumerate(args)
                     if a.split("=")[0] == "--launcher" and ("=" in a or i + 1 < len(args))), None)
    install(session, "test", "peers", "unetpp", *(["cluster"] if launcher in ("slurm", "submitit-local") else []))
    if "--validate" in args:
        args.remove("--validate")
        session.run("python", "-m", "harness", "validate", *args)
        return
    # The article's claims do not depend on the sweep: results/claims.json is committed and rebuilt by
    # `nox -s claims` (a few minutes on 2 cores); here only when it is missing, so the first table comes fast.
    if not Path("results/claims.json").is_file():
        session.run("python", "-m", "harness", "claims")
    if launcher:
        session.run("python", "-m", "harness", "launch", *args)
    else:
        session.run("python", "-m", "harness", "bench", "--benchmark-sort", "name", "--benchmark-columns",
                    "median,iqr,rounds", *args)
    session.run("python", "-m", "harness", "report", silent=True)
    session.log("the report: results/report/comparison.md (tables, plots, reproduction.md); the run's rows: the "
                "results.csv named above")


@nox.session
def claims(session: nox.Session) -> None:
    """Run every claim of the article (shapes, stated limits, envelope edges) into results/claims.json."""
    install(session, "test", "unetpp")
    session.run("python", "-m", "harness", "claims", *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    """Rebuild results/report/ (tables, plots, reproduction report) from the committed runs (no torch installed)."""
    install_torch_free(session)
    session.run("python", "-m", "harness", "report", *session.posargs)


@nox.session
def regress(session: nox.Session) -> None:
    """Compare this tree with a git ref (--against REF) or the committed baseline; non-zero on regression."""
    install(session, "test")
    session.run("python", "-m", "harness", "regress", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the project."""
    session.install("ruff")
    session.run("ruff", "check", "harness", "reference_models", "suites", "noxfile.py", *session.posargs)


@nox.session
def cluster(session: nox.Session) -> None:
    """A real SLURM scheduler on this machine (scripts/slurm-local; as root it installs slurm-wlm and munge): a
    sharded smoke sweep through --launcher slurm, one array task cancelled with scancel while it runs, the sweep
    resumed and merged, then checked. The cluster is stopped whatever happens. ``-- --runs-root DIR`` keeps the
    sweep's runs (shards and merged) in DIR; by default they go to a temporary folder, removed on success."""
    import argparse
    import csv
    import json
    import platform
    import subprocess
    import sys
    import tempfile
    import threading
    import time

    parser = argparse.ArgumentParser(prog="nox -s cluster --")
    parser.add_argument("--runs-root", type=Path, help="keep the sweep's runs here (default: a temporary folder)")
    opts = parser.parse_args(session.posargs)
    install(session, "test", "cluster")
    passthrough = isinstance(session.virtualenv, nox.virtualenv.PassthroughEnv)
    python = sys.executable if passthrough else str(Path(session.bin) / "python")
    repo = Path(__file__).resolve().parent
    script = repo / "scripts" / "slurm-local"
    work = Path(tempfile.mkdtemp(prefix="harness-cluster-"))
    runs = opts.runs_root.resolve() if opts.runs_root else work / "runs"
    cluster_dir = work / "slurm"
    sweep = f"cluster-{time.strftime('%Y%m%dT%H%M%S')}"
    env = {**os.environ, "SLURM_CONF": str(cluster_dir / "slurm.conf")}
    if not passthrough:
        env = {**env, "VIRTUAL_ENV": str(Path(session.bin).parent), "PATH": session.bin + os.pathsep + env["PATH"]}
    launch = [python, "-m", "harness", "launch", "--runs-root", str(runs)]
    started = time.monotonic()

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=env, cwd=repo, capture_output=True, text=True, timeout=timeout)

    def check(condition: bool, what: str) -> None:
        if not condition:
            session.error(f"cluster check failed: {what} (runs kept in {runs})")
        session.log(f"ok: {what}")

    def shard_processes(run_id: str) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if entry.name.isdigit() and int(entry.name) != os.getpid() and any(run_id.encode() in a for a in argv):
                found.append(int(entry.name))
        return found

    ok = False
    process = None
    try:
        session.run(str(script), "start", "--dir", str(cluster_dir), external=True)
        session.log(f"cluster up in {time.monotonic() - started:.1f}s ({cluster_dir}); runs go to {runs}")
        # 1. The sweep, in the background: once an array task's shard is running (its log exists), scancel it.
        sweep_cmd = [*launch, "--launcher", "slurm", "--shards", "3", "--gpus-per-task", "0", "--cpus-per-task", "1",
                     "--time", "10", "--sweep", sweep, "--profile", "smoke", "--device", "cpu", "--models", "unet2d*",
                     "--threads", "1"]
        session.log(" ".join(sweep_cmd))
        process = subprocess.Popen(sweep_cmd, env=env, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        lines: list[str] = []

        def echo() -> None:
            for line in process.stdout:
                lines.append(line)
                print(f"  | {line}", end="", flush=True)

        reader = threading.Thread(target=echo, daemon=True)
        reader.start()
        victim = None
        deadline = time.monotonic() + 240
        while victim is None and process.poll() is None and time.monotonic() < deadline:
            listed = run("squeue", "--noheader", "--array", "--name", sweep, "--format=%i|%T").stdout.split()
            for task, state in (item.split("|", 1) for item in listed if "|" in item):
                shard = int(task.split("_")[1]) if task.split("_")[-1].isdigit() else -1
                if state == "RUNNING" and shard >= 0 and (runs / sweep / "logs" / f"shard-{shard}.log").exists():
                    cancel = run("scancel", task)
                    check(cancel.returncode == 0, f"scancel {task}: shard {shard}, running {cancel.stderr.strip()}".strip())
                    victim = (task, shard)
                    break
            time.sleep(0.1)
        check(victim is not None, "an array task was running and was cancelled")
        task, shard = victim
        first_rc = process.wait(timeout=300)
        reader.join(timeout=10)
        output = "".join(lines)
        check(first_rc == 1, f"the first pass exits 1 with shard {shard} unfinished (exit {first_rc})")
        check("Traceback" not in output and "sacct" not in output, "no traceback and no sacct noise in its output")
        check(f"array task {task} was cancelled (scheduler state CANCELLED)" in output,
              f"the launcher reports array task {task} as cancelled")
        check(f"--resume {sweep}" in output, "it says how to resume")
        manifest = json.loads((runs / sweep / "launch.json").read_text())
        status = manifest["status"][str(shard)]
        check(status.get("scheduler_state") == "CANCELLED" and status["returncode"] not in (0, 1),
              f"the manifest records shard {shard} as cancelled, not finished: {status}")
        check(not (runs / sweep / "results.csv").exists(), "no merge while a shard is unfinished")
        check(not shard_processes(f"{sweep}-shard-{shard}-of-3"), "scancel left none of the shard's processes")
        first_tasks = {int(i): s.get("array_task") for i, s in manifest["status"].items()}

        # 2. Resume: only the cancelled shard is submitted again, then the merge.
        session.run(*launch, "--resume", sweep, env=env, external=True)
        manifest = json.loads((runs / sweep / "launch.json").read_text())
        attempts = {int(i): s["attempts"] for i, s in manifest["status"].items()}
        check(attempts == {i: 2 if i == shard else 1 for i in range(3)}, f"only shard {shard} ran again: {attempts}")

        # 3. Every configuration exactly once, each row with the SLURM job, array task and node it ran in.
        keys = session.run("python", "-c", (
            "import json, sys; sys.path[:0] = ['.', 'suites']\n"
            "from harness.bench.profiles import specs\n"
            "from harness.store.csvfile import read_rows\n"
            "from harness.store.schema import row_key\n"
            "expected = [list(s.key) for s in specs('smoke', 'cpu', 'unet2d*', ('unet2d', 'unet3d'))]\n"
            "merged = [list(row_key(r)) for r in read_rows(sys.argv[1]).rows]\n"
            "print(json.dumps({'expected': expected, 'merged': merged}))"), str(runs / sweep / "results.csv"),
            silent=True, log=False, env=env)
        keys = json.loads(keys.strip().splitlines()[-1])
        merged = [tuple(k) for k in keys["merged"]]
        check(len(merged) == len(set(merged)) and set(merged) == {tuple(k) for k in keys["expected"]},
              f"the merged run holds each of the {len(keys['expected'])} configurations exactly once")
        with open(runs / sweep / "results.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        tasks = {i: {first_tasks.get(i), s.get("array_task")} for i, s in ((int(i), s) for i, s in
                                                                            manifest["status"].items())}
        # A one-task resubmission is a plain job (submitit submits no array of one): no array task id then.
        where = [(r["run_id"], "_".join(filter(None, (r.get("slurm_job_id", ""), r.get("slurm_array_task_id", "")))),
                  r.get("node", "")) for r in rows]
        check(all(task_of in tasks[int(run_id.split("-shard-")[1].split("-")[0])] and node == platform.node()
                  for run_id, task_of, node in where),
              f"each row records the job_task and node it ran in: {sorted(set(where))}")
        resumed = manifest["status"][str(shard)]["array_task"]
        check(resumed.split("_")[0] != task.split("_")[0], f"the resumed shard ran in a new job ({resumed})")
        ok = True
    finally:
        if process is not None and process.poll() is None:
            process.kill()  # a check failed while the first pass was running
            process.wait()
        session.run(str(script), "stop", "--dir", str(cluster_dir), external=True, success_codes=[0, 1])
        left = shard_processes(sweep) + shard_processes(str(cluster_dir))
        if left:
            session.error(f"processes left running after the cluster stopped: {left}")
        if ok:  # the cluster's files are gone; the runs too unless --runs-root put them elsewhere
            shutil.rmtree(work, ignore_errors=True)
        session.log(f"cluster session {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.1f}s"
                    + ("" if ok and not opts.runs_root else f"; runs in {runs}"))


@nox.session
def compare(session: nox.Session) -> None:
    """Compare two runs (-- BASE NEW: run folders or ids): ratios with 95% intervals, verdicts; non-zero when slower."""
    install_torch_free(session)  # reads the runs' files only: no torch installed
    session.run("python", "-m", "harness", "compare", *session.posargs)
