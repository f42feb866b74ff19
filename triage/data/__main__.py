"""``python -m triage.data build|crops``: see :mod:`triage.data.build`."""

import sys

from triage.data.build import main

if __name__ == "__main__":
    sys.exit(main())
