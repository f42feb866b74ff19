"""Write the hostile-upload corpus (generators in :mod:`triage.testing.corpus`).

Usage:
    python scripts/make_corpus.py [--out DIR] [--skip-huge]
"""

from triage.testing.corpus import main

if __name__ == "__main__":
    main()
