"""Will it run? ``check(model, input_shape, overrides, mode, device, precision)`` answers with a ``Verdict``
before anything is built: hand-written walkers for the article's families and UNet++ (``walkers``),
meta-device probing for peers and your models (``probed``)."""
from harness.envelope.checker import check
from harness.envelope.probed import prober
from harness.envelope.verdict import FIXES, MODES, Refusal, Verdict

__all__ = ["FIXES", "MODES", "Refusal", "Verdict", "check", "prober"]
