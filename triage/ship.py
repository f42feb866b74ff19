"""Deprecated: ``python -m triage.ship`` is now ``python -m triage.release.ship`` (this shim goes in 0.3.0)."""

import sys
import warnings

from triage.release.ship import main

warnings.warn(
    "triage.ship moved to triage.release.ship; this alias will be removed in skin-triage 0.3.0",
    DeprecationWarning,
    stacklevel=2,
)

if __name__ == "__main__":
    print("python -m triage.ship is deprecated: use python -m triage.release.ship", file=sys.stderr)
    sys.exit(main())
