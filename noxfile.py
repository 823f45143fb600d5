"""The front door. ``nox -l`` lists the sessions; arguments after ``--`` go to the tool underneath.

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
BENCH_FILES = ["suites/test_benchmark_unet.py", "suites/test_benchmark_resnet.py",
               "suites/test_benchmark_resnet_encoder.py", "suites/test_benchmark_unetpp.py",
               "suites/test_benchmark_peers.py"]
# Import name of each requirement, for the --no-venv check.
IMPORT_NAMES = {"pytest-benchmark": "pytest_benchmark", "dynamic-network-architectures": "dynamic_network_architectures",
                "nvidia-ml-py": "pynvml"}
# What the GPU-image set can break: the pytest plugin and benchmark suites (pytest, pytest-benchmark), the
# hypothesis properties, the results store and reports (pandas). The model suites need none of those
# versions and run under the newest and the oldest sets.
GPU_IMAGE_SUITES = ("suites/test_benchmark_unet.py", "suites/test_benchmark_resnet.py", "suites/test_cli_options.py",
                    "suites/test_faults.py", "suites/test_timing.py", "suites/test_results_store.py",
                    "suites/test_report.py", "suites/test_launch.py", "suites/test_shape_properties.py",
                    "suites/test_regress.py")
# Installed without their declared dependencies: dynamic-network-architectures declares timm, and so
# torchvision and another torch, which its UNets never import.
NO_DEPS = {"dynamic-network-architectures"}


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
    install(session, "test", "peers", "unetpp")
    args = session.posargs or []
    profile = [] if any(a.startswith("--hypothesis-profile") for a in args) else ["--hypothesis-profile", "ci"]
    session.run("python", "-m", "pytest", "suites", "--benchmark-disable", *profile, *args)


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
    session.run("python", "-m", "pytest", *suites, "--benchmark-disable", *profile, *args)
    # claims and report write under the tree's results/ (and the README): give them a copy of the tree.
    tree = Path(session.create_tmp()) / f"smoke-{deps}"
    shutil.rmtree(tree, ignore_errors=True)
    for part in ("harness", "reference_models", "suites", "pyproject.toml", "README.md"):
        copy = shutil.copytree if Path(part).is_dir() else shutil.copy2
        copy(part, tree / part)
    (tree / "results").mkdir()
    with session.chdir(tree):
        session.run("python", "-m", "pytest", *BENCH_FILES, "-p", "no:cacheprovider", "--profile", "smoke",
                    "--warmup", "1", "--models", "unet[23]d", "--runs-root", "runs", "--run-id", "smoke")
        session.run("python", "-m", "harness.claims")
        session.run("python", "-m", "harness.report", "runs/smoke", "--out", "report")


@nox.session
def tests_oldest(session: nox.Session) -> None:
    """tests plus a smoke bench, claims and report with the oldest supported versions (constraints/oldest.txt)."""
    tests_with(session, "oldest")


@nox.session
def tests_gpu_image(session: nox.Session) -> None:
    """The suites that drive pytest, pytest-benchmark, hypothesis and pandas, plus a smoke bench, claims and
    report, with a stock GPU image's test tools (constraints/gpu-image.txt)."""
    tests_with(session, "gpu-image", GPU_IMAGE_SUITES)


@nox.session
def bench(session: nox.Session) -> None:
    """Measure speed, peak memory and MACs of every variant (cpu profile, or paper on a GPU), then report."""
    args = list(session.posargs)
    # --launcher local|slurm|submitit-local: the sweep in shards (python -m harness.launch), merged into one run.
    launcher = next((a.split("=", 1)[1] if "=" in a else args[i + 1] for i, a in enumerate(args)
                     if a.split("=")[0] == "--launcher" and ("=" in a or i + 1 < len(args))), None)
    install(session, "test", "peers", "unetpp", *(["cluster"] if launcher in ("slurm", "submitit-local") else []))
    if "--validate" in args:
        args.remove("--validate")
        session.run("python", "-m", "harness.validate", *args)
        return
    if launcher:
        session.run("python", "-m", "harness.launch", *args)
    else:
        session.run("python", "-m", "pytest", *BENCH_FILES, "-p", "no:cacheprovider",
                    "--benchmark-sort", "name", "--benchmark-columns", "median,iqr,rounds", *args)
    session.run("python", "-m", "harness.claims")
    session.run("python", "-m", "harness.report")


@nox.session
def report(session: nox.Session) -> None:
    """Rebuild results/report/ (tables, plots, reproduction report) from the committed runs."""
    install(session, torch=False)
    session.run("python", "-m", "harness.report", *session.posargs)


@nox.session
def regress(session: nox.Session) -> None:
    """Compare this tree with a git ref (--against REF) or the committed baseline; non-zero on regression."""
    install(session, "test")
    session.run("python", "-m", "harness.regress", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the project."""
    session.install("ruff")
    session.run("ruff", "check", "harness", "reference_models", "suites", "noxfile.py", *session.posargs)
