"""A private upload folder for one run of the app, deleted when the app stops.

Gradio keeps uploads in ``GRADIO_TEMP_DIR`` (default ``/tmp/gradio``) and cleans
them every few minutes (``delete_cache``), but not when the process is stopped:
a SIGTERM (a service manager, ``docker stop``) or a Ctrl-C with browsers still
connected leaves client photos on disk for good. Here every run gets a fresh
folder of its own, removed on a normal exit, on Ctrl-C and on SIGTERM.
Must run before Gradio is imported: some of its modules read the variable once.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
from pathlib import Path


def use_private_upload_dir() -> Path:
    """Create the folder, point ``GRADIO_TEMP_DIR`` at it and arrange its removal.

    A ``GRADIO_TEMP_DIR`` set by the operator is kept as the parent folder.

    Returns:
        the new folder (mode 0700).
    """
    parent = os.environ.get("GRADIO_TEMP_DIR") or None
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="triage-uploads-", dir=parent))
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    atexit.register(remove_upload_dir, folder)
    # SIGTERM would end the process without running atexit; as KeyboardInterrupt it takes Gradio's own
    # shutdown path, then ours.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return folder


def remove_upload_dir(folder: Path) -> None:
    """Delete the folder and everything in it (no error if it is already gone)."""
    shutil.rmtree(folder, ignore_errors=True)
