"""The article's own code, cut from the seed text and executed, to hold our reference models against.

Nothing here is copied into the project: the code is read from ``../shared/seeds/`` (or
``$ARTICLE_SEED``) at test time. Each section runs in a namespace of its own because the article
defines some names (``Bottleneck``, ``DoubleConv_3d``...) twice. The article's ``print`` calls stay in,
which is what the stage-print tests compare against.
"""
import os
import warnings
from functools import lru_cache
from pathlib import Path

SEED_NAME = "000_b2c581184bde2a03.txt"
REPO_ROOT = Path(__file__).resolve().parent.parent

# Each section: the article's code between the line after an anchor (a heading in the article)
# and the next line that reads ``stop``.
SECTIONS = {
    "preamble": ("1. Unet", "1.1 Unet 2D 版本"),
    "unet2d": ("1.1 Unet 2D 版本", "使用例子"),
    "unet3d": ("将所有层换成3d,此外对bilinear部分进行了修改", "例子"),
    "resnet3d": ("1. 将Bottleneck中的expansion从4改成2", "例子"),
    "encoder": ("完整代码如下,可以直接使用", "例子1,使用Resnet50替换Encoder, 输入大小为 (1,64,64,64)"),
}


def seed_path() -> Path:
    return Path(os.environ.get("ARTICLE_SEED", REPO_ROOT.parent / "shared" / "seeds" / SEED_NAME))


def available() -> bool:
    return seed_path().is_file()


def section_source(section: str) -> str:
    lines = [line.rstrip() for line in seed_path().read_text(encoding="utf-8").splitlines()]
    anchor, stop = SECTIONS[section]
    first = next(i for i, line in enumerate(lines) if line.strip() == anchor) + 1
    last = next(i for i in range(first, len(lines)) if lines[i].strip() == stop)
    return "\n".join(lines[first:last])


@lru_cache(maxsize=None)
def namespace(section: str) -> dict:
    """Execute one section of the article (after the article's imports) and return its globals."""
    source = section_source("preamble") + "\n" + section_source(section)
    ns: dict = {"__name__": f"article_{section}"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the article uses the deprecated nn.init.kaiming_normal
        exec(compile(source, f"<article:{section}>", "exec"), ns)
    return ns
