"""``python -m harness.evidence.regress``: see harness.evidence.regress."""
from harness.evidence.regress.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
