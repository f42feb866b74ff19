"""Where uploads live while the app runs, and how each one is removed as soon as it is answered.

Gradio writes every upload to ``GRADIO_TEMP_DIR`` (default ``/tmp/gradio``), in a folder named after the
file's hash, before any event runs. Two rules keep client photos off the disk:

* every run gets a private folder of its own (:func:`use_private_upload_dir`), removed on a normal exit,
  on Ctrl-C and on SIGTERM (Gradio's own cleanup does not run on SIGTERM);
* every event that takes a photo reads it into memory and deletes the file at once (:func:`take_upload`),
  before the photo is even decoded, so the file is gone before the answer is sent, whatever the answer
  (a result, a refusal, a timeout). Only the bytes in memory are used from then on.

:func:`use_private_upload_dir` must run before Gradio is imported: some of its modules read the variable once.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
from collections.abc import MutableSet
from pathlib import Path

from triage.inference.decode import UploadError

#: What the person sees when the photo is no longer on the server (already answered, or never sent in time).
GONE_MESSAGE = (
    "For your privacy, this photo was deleted from our server once it was checked. "
    "To check it again, please add the photo again."
)


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


def upload_path(payload: str | dict | None) -> Path | None:
    """The file behind an event's photo input: a path (``type="filepath"``) or Gradio's raw file payload."""
    if isinstance(payload, dict):  # events with preprocess=False get Gradio's FileData as a dict
        payload = payload.get("path")
    return Path(payload) if payload else None


def delete_upload(path: Path, folder: str | Path) -> bool:
    """Delete ``path`` and the per-upload folder Gradio made for it (when empty), but only inside ``folder``.

    A file anywhere else is never touched: a direct call with a path of the caller's own (tests, a script
    embedding the app) must not lose that file.

    Returns:
        whether ``path`` was inside ``folder`` (and so is gone now).
    """
    folder = Path(folder).resolve()
    path = Path(path).resolve()
    if path == folder or not path.is_relative_to(folder):
        return False
    try:
        path.unlink(missing_ok=True)
    except OSError:  # a folder, say, sent as a "file" path: nothing of ours to delete
        return False
    if path.parent != folder:
        try:
            path.parent.rmdir()  # Gradio's "<sha256 of the bytes>/" folder
        except OSError:
            pass  # not empty: the same bytes were uploaded again meanwhile, and that copy is still waiting
    return True


def take_upload(payload: str | dict | None, folder: str | Path, known: MutableSet[str] | None = None) -> bytes:
    """Read an uploaded photo into memory and delete its file straight away.

    Args:
        payload: the event's photo input (a path or Gradio's file payload).
        folder: Gradio's upload folder; only files inside it are deleted.
        known: Gradio's record of uploads (``Blocks.upload_file_set``), from which the path is dropped, so that
            the record does not grow with every photo (Gradio forgets only files its own cleanup removed).

    Raises:
        UploadError: ``"empty"`` when no photo was given, ``"gone"`` when its file is no longer there.
    """
    path = upload_path(payload)
    if path is None:
        raise UploadError("empty", "Please add a photo first.")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UploadError("gone", GONE_MESSAGE) from None
    except OSError:
        raise UploadError("unreadable") from None
    finally:
        # Also when reading failed halfway: a file we cannot read is not kept either.
        if delete_upload(path, folder) and known is not None:
            known.discard(str(path))
    return data
