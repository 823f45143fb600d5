"""The runner's command-line options, and one ``RunOptions`` read from them once per pytest session.
Every value is checked (``check``) before anything is built or written."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.bench.profiles import PROFILES, best_options, default_profile
from harness.options import OptionError
from harness.store.schema import RUNS_ROOT


def add_options(parser) -> None:
    group = parser.getgroup("harness", "benchmark harness")
    group.addoption("--bench", action="store_true", help="run the benchmark sweep (the packaged benchmark test); "
                    "implied by --profile, --models and --model")
    group.addoption("--profile", metavar="NAME", help=f"sweep profile, one of {', '.join(PROFILES)} (default: paper "
                    "on a GPU, cpu otherwise; smoke under --benchmark-disable)")
    group.addoption("--device", metavar="cpu|cuda", help="default: cuda when available")
    group.addoption("--models", help="shell pattern over variant names, e.g. 'unet3d*' (default: the profile's "
                    "variants: the article's, with the peers profile also MONAI's and nnU-Net's)")
    group.addoption("--model", action="append", default=[], metavar="REF", help="your own model: "
                    "package.module:function or path/to/file.py:function returning an nn.Module (repeatable); "
                    "constructor arguments through --set")
    group.addoption("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="constructor argument for every measured variant, e.g. --set base_c=32")
    group.addoption("--precision", metavar="fp32|bf16|fp16", help="only this precision")
    group.addoption("--channels-last", action="store_true", help="channels-last (3D) memory format")
    group.addoption("--exec-mode", metavar="MODE",
                    help="eager (default); compile: torch.compile; cudagraphs: CUDA graphs through torch.compile "
                    "mode reduce-overhead (CUDA only); best: the fastest preset for the device (CUDA: cudagraphs, "
                    "bf16, channels-last)")
    group.addoption("--compile", action="store_true", help="the same as --exec-mode compile")
    group.addoption("--no-cudnn-benchmark", action="store_true", help="cudnn.benchmark off on CUDA")
    group.addoption("--rounds", metavar="N", help="latency samples (synchronized single steps) per configuration")
    group.addoption("--blocks", metavar="N", help="throughput samples (blocks of back-to-back steps) per configuration")
    group.addoption("--warmup", metavar="N", help="untimed warm-up steps per configuration (CUDA: at least; "
                    "warm-up goes on until the step time settles)")
    group.addoption("--threads", metavar="N", help="torch.set_num_threads (CPU)")
    group.addoption("--find-max-batch", action="store_true", help="also find the largest batch that fits (CUDA)")
    group.addoption("--run-id", help="name of the run directory under --runs-root (default: time-device-profile)")
    group.addoption("--resume", metavar="RUN_ID", help="continue a run: skip configurations it already has "
                    "(rows that failed, or whose warm-up never settled, are measured again)")
    group.addoption("--resume-mixed", action="store_true", help="resume even where the device, profile, "
                    "precision or machine differ from the run's first attempt (rows then are not comparable)")
    group.addoption("--shard", metavar="I/N", help="measure only shard I of N of the sweep (0 <= I < N): a "
                    "deterministic split by configuration key; python -m harness.launch runs every shard")
    group.addoption("--runs-root", help=f"where runs go (default {RUNS_ROOT}; a temporary folder when "
                    "benchmarks are disabled)")
    # Whole volumes through sliding windows (harness.bench.volume, docs/volume.md). Checked by the session, so
    # that a bad value exits 2 with one paragraph (argparse's own refusals exit 4).
    group.addoption("--volume", action="append", default=[], metavar="DxHxW", help="measure whole volumes of this "
                    "spatial shape (repeatable), and only those, for the selected 3D segmentation variants")
    group.addoption("--roi", metavar="DxHxW", help="sliding-window size (or N for N³; default: the profile's patch)")
    group.addoption("--overlap", metavar="F", help="overlap of neighbouring windows, in [0, 1) (default 0.5)")
    group.addoption("--blend", metavar="MODE", help="gaussian (default; sigma 1/8 of the window) or constant")
    group.addoption("--mirror", action="store_true", help="mirroring test-time augmentation (8 flips per window in 3D)")
    group.addoption("--sw-batch", metavar="N|auto", help="windows per forward call (default 1); auto: double from 1 "
                    "while volumes/s improves by more than 5%% (every tried value is a row)")
    group.addoption("--preset", metavar="NAME", help="window settings named after what they copy: nnunet (overlap "
                    "0.5, Gaussian, mirroring), mlperf (128³ windows, overlap 0.5, Gaussian), monai (overlap 0.25, "
                    "constant); options given beside it win")
    # Training fed by a real loader (harness.bench.loader, docs/pipeline.md): checked by the session, as above.
    group.addoption("--loader", metavar="NAME|REF", help="also measure every 3D training configuration fed by a "
                    "torch DataLoader over this augmentation pipeline, beside its tensor-fed row: nnunet (nnU-Net v2's "
                    "training transforms), monai (MONAI's tutorial chain), a pipeline of your own (module:function "
                    "or file.py:function, as python -m harness pipeline --pipeline), or none (default: tensors only); "
                    "each such row records the share of the step spent waiting for data")
    group.addoption("--workers", metavar="N[,N...]", help=f"DataLoader worker processes of the --loader rows, one "
                    f"row per value (0: load in the main process; default {DEFAULT_WORKERS})")


@dataclass(frozen=True)
class RunOptions:
    """The options of one pytest session, read once."""

    bench: bool
    device: str
    profile: str
    models: str | None
    user_models: tuple[str, ...]
    overrides: tuple[str, ...]
    precision: str | None
    channels_last: bool
    exec_mode: str
    cudnn_benchmark: bool
    rounds: int | None
    blocks: int | None
    warmup: int | None
    threads: int | None
    find_max_batch: bool
    run_id: str | None
    resume: str | None
    resume_mixed: bool
    shard: str | None
    runs_root: Path
    benchmarks_disabled: bool
    spec_options: dict = field(default_factory=dict, hash=False)  # BenchSpec fields the options set
    # Whole-volume options as given (text; parsed and checked by HarnessSession.volume_request).
    volumes: tuple[str, ...] = ()
    roi: str | None = None
    overlap: str | None = None
    blend: str | None = None
    mirror: bool = False
    sw_batch: str | None = None
    preset: str | None = None
    # Loader-fed training rows: the --loader value as given (None: not given), and --workers parsed (None: not given).
    loader: str | None = None
    workers: tuple[int, ...] | None = None

    @classmethod
    def from_config(cls, config) -> "RunOptions":
        """The options as given, each value checked (an OptionError names the option and the way out: pytest's
        own refusals would print its usage text and exit 4). Argument-free checks of paths are ``check_runs_root``."""
        option = config.getoption
        device = _choice("--device", option("--device"), DEVICES) or _default_device()
        disabled = bool(option("benchmark_disable"))
        profile = _choice("--profile", option("--profile"), tuple(PROFILES)) or (
            "smoke" if disabled else default_profile(device))
        _choice("--precision", option("--precision"), PRECISIONS)
        exec_mode = _choice("--exec-mode", option("--exec-mode"), EXEC_MODES) or (
            "compile" if option("--compile") else "eager")
        numbers = {name: _integer(name, option(name), allow_zero=name == "--warmup")
                   for name in ("--rounds", "--blocks", "--warmup", "--threads")}
        bench = bool(option("--bench") or option("--profile") or option("--models") is not None or option("--model")
                     or option("--volume"))
        read = cls(bench, device, profile, option("--models"), tuple(option("--model")), tuple(option("--set")),
                   option("--precision"), bool(option("--channels-last")), exec_mode,
                   device == "cuda" and not option("--no-cudnn-benchmark"), numbers["--rounds"], numbers["--blocks"],
                   numbers["--warmup"], numbers["--threads"], bool(option("--find-max-batch")), option("--run-id"),
                   option("--resume"), bool(option("--resume-mixed")), option("--shard"),
                   Path(option("--runs-root") or RUNS_ROOT), disabled, volumes=tuple(option("--volume")),
                   roi=option("--roi"), overlap=option("--overlap"), blend=option("--blend"),
                   mirror=bool(option("--mirror")), sw_batch=option("--sw-batch"), preset=option("--preset"),
                   loader=option("--loader"), workers=_workers(option("--workers")))
        return read.with_spec_options()

    def with_spec_options(self) -> "RunOptions":
        """The BenchSpec fields these options set (None: the profile's)."""
        chosen = dict(precision=self.precision, rounds=self.rounds, warmup=self.warmup, blocks=self.blocks)
        if self.channels_last:
            chosen["channels_last"] = True
        if self.exec_mode == "best":
            chosen.update(best_options(self.device))
        else:
            chosen["exec_mode"] = self.exec_mode
        if self.device == "cuda" and not self.cudnn_benchmark:
            chosen["cudnn_benchmark"] = False
        self.spec_options.update(chosen)
        return self

    def recorded(self, threads_now: int) -> dict:
        """The options a run records in environment.json, and compares when it is resumed."""
        return {"device": self.device, "profile": self.profile, "models": self.models,
                "user_models": list(self.user_models), "set": list(self.overrides),
                "precision": self.precision or "profile", "rounds": self.rounds, "warmup": self.warmup,
                "blocks": self.blocks, "channels_last": self.channels_last, "exec_mode": self.exec_mode,
                "cudnn_benchmark": self.cudnn_benchmark, "threads": self.threads or threads_now, "shard": self.shard,
                **({"volume": list(self.volumes), "roi": self.roi, "overlap": self.overlap, "blend": self.blend,
                    "mirror": self.mirror, "sw_batch": self.sw_batch, "preset": self.preset}
                   if self.volumes or self.roi or self.overlap or self.blend or self.mirror or self.sw_batch
                   or self.preset else {}),
                **({"loader": self.loader, "workers": list(self.loader_workers)} if self.loader else {})}

    @property
    def loader_workers(self) -> tuple[int, ...]:
        """The worker counts of the --loader rows: --workers, else ``DEFAULT_WORKERS``."""
        return self.workers if self.workers is not None else (DEFAULT_WORKERS,)


DEVICES = ("cpu", "cuda")
# --loader rows' workers when --workers is not given: a fixed number, so that keys agree across machines (the key
# holds it); 2 keeps a 2-core machine busy beside the main process without oversubscribing it badly.
DEFAULT_WORKERS = 2
PRECISIONS = ("fp32", "bf16", "fp16")
EXEC_MODES = ("eager", "compile", "cudagraphs", "best")


def _choice(option: str, value, allowed: tuple[str, ...]) -> str | None:
    if value is None or value in allowed:
        return value
    raise OptionError(f"{option} {value!r} is not one of {', '.join(allowed)}. Way out: give one of those (or leave "
                      f"{option} out for the default).")


def _integer(option: str, value, allow_zero: bool = False) -> int | None:
    """An integer option given as text; None when not given."""
    if value is None:
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        number = None
    low = 0 if allow_zero else 1
    if number is None or number < low:
        raise OptionError(f"{option} must be an integer of at least {low}, not {value!r}. Way out: leave it out for "
                          f"the profile's value, or give e.g. {option} {max(low, 3)}.")
    return number


def check_runs_root(root: Path) -> None:
    """``--runs-root`` must be a folder, or a path where one can be made; checked without leaving anything behind
    (a folder made and removed at once in its nearest existing parent)."""
    import tempfile

    way_out = "Way out: give a folder you can write to (it is made if it does not exist), e.g. --runs-root runs."
    if root.exists() and not root.is_dir():
        raise OptionError(f"--runs-root {str(root)!r} is a file, not a folder: runs are folders under it. {way_out}")
    parent = root if root.exists() else next((p for p in root.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise OptionError(f"--runs-root {str(root)!r} cannot be made: {parent} is not a folder. {way_out}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".harness-write-check-", dir=parent))
    except OSError as error:
        raise OptionError(f"--runs-root {str(root)!r} cannot be written: making a folder in {parent} fails "
                          f"({error.strerror or error}). {way_out}") from None


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _workers(value) -> tuple[int, ...] | None:
    """--workers given as text (``2`` or ``0,2,4``): distinct non-negative integers in the order given."""
    if value is None:
        return None
    try:
        numbers = [int(part.strip()) for part in str(value).split(",")]
    except ValueError:
        numbers = []
    if not numbers or any(n < 0 for n in numbers):
        raise OptionError(f"--workers must be a non-negative integer or a comma-separated list of them, not {value!r}. "
                          f"Way out: e.g. --workers {DEFAULT_WORKERS} (0 loads in the main process), or --workers 0,2,4 "
                          f"for one row per value.")
    return tuple(dict.fromkeys(numbers))
