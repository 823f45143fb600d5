"""The front door. ``nox -l`` lists the sessions; arguments after ``--`` go to the tool underneath.

Torch: a fresh session venv gets ``torch==2.13.0`` (override with HARNESS_TORCH, e.g.
``HARNESS_TORCH="torch==2.5.1"``). On a machine whose Python already has the torch you want (a GPU
box), run with ``--no-venv``: nothing touches torch; missing pure-Python tools are pip-installed into
that environment, and the command says which.
"""
from __future__ import annotations

import importlib.util
import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
TORCH = os.environ.get("HARNESS_TORCH", "torch==2.13.0")
BENCH_FILES = ["suites/test_benchmark_unet.py", "suites/test_benchmark_resnet.py",
               "suites/test_benchmark_resnet_encoder.py"]
# Import name of each requirement, for the --no-venv check.
IMPORT_NAMES = {"pytest-benchmark": "pytest_benchmark"}


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


def install(session: nox.Session, *extras: str, torch: bool = True) -> None:
    """Install what a session needs; never reinstall torch in an existing environment."""
    reqs = _requirements(*extras)
    if isinstance(session.virtualenv, nox.virtualenv.PassthroughEnv):
        if torch and importlib.util.find_spec("torch") is None:
            session.error("--no-venv needs torch in this Python; install the build you want first")
        missing = [r for r in reqs if importlib.util.find_spec(IMPORT_NAMES.get(_name(r), _name(r))) is None]
        if missing:
            session.log(f"installing into the current environment (torch untouched): {' '.join(missing)}")
            session.run("python", "-m", "pip", "install", *missing)
        return
    if torch:
        session.install(TORCH)
    session.install(*reqs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run every suite once: faithfulness, shapes and envelope (hypothesis), benchmarks as tests."""
    install(session, "test")
    args = session.posargs or []
    profile = [] if any(a.startswith("--hypothesis-profile") for a in args) else ["--hypothesis-profile", "ci"]
    session.run("python", "-m", "pytest", "suites", "--benchmark-disable", *profile, *args)


@nox.session
def bench(session: nox.Session) -> None:
    """Measure speed, peak memory and MACs of every variant (cpu profile, or paper on a GPU), then report."""
    args = list(session.posargs)
    # --launcher local|slurm|submitit-local: the sweep in shards (python -m harness.launch), merged into one run.
    launcher = next((a.split("=", 1)[1] if "=" in a else args[i + 1] for i, a in enumerate(args)
                     if a.split("=")[0] == "--launcher" and ("=" in a or i + 1 < len(args))), None)
    install(session, "test", *(["cluster"] if launcher in ("slurm", "submitit-local") else []))
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
