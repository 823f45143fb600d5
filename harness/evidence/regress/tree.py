"""The other side of ``--against REF``: REF checked out in a temporary git worktree, with the current
harness code in place of REF's, so that both sides are measured the same way and differ only in the
models."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

from harness.options import OptionError

REPO = Path(__file__).resolve().parents[3]


def resolve_ref(ref: str) -> str:
    """The commit ``ref`` names; OptionError (exit 2) when it names none, or git is not at hand."""
    try:
        return subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout.strip()
    except (subprocess.CalledProcessError, OSError):
        raise OptionError(f"--against {ref!r}: not a commit in the repository at {REPO} (or git is not "
                          f"available there). Way out: give a branch, tag or commit sha that `git rev-parse` "
                          f"knows, e.g. --against HEAD or --against main.") from None


@contextmanager
def worktree(ref: str):
    """Yields (tree, commit); the worktree is removed afterwards, whatever happens."""
    commit = resolve_ref(ref)
    tmp = Path(tempfile.mkdtemp(prefix="regress-"))
    tree = tmp / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), commit], cwd=REPO, check=True)
    try:
        shutil.rmtree(tree / "harness", ignore_errors=True)
        shutil.copytree(REPO / "harness", tree / "harness", ignore=shutil.ignore_patterns("__pycache__"))
        yield tree, commit
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
