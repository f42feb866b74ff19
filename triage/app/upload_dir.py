"""Where uploads live while the app runs, and how each one is removed as soon as it is answered.

Gradio writes every upload to ``GRADIO_TEMP_DIR`` (default ``/tmp/gradio``), in a folder named after the
file's hash, before any event runs. Two rules keep client photos off the disk:

* every run gets a private folder of its own (:func:`use_private_upload_dir`), removed on a normal exit,
  on Ctrl-C and on SIGTERM (Gradio's own cleanup does not run on SIGTERM);
* every event that takes a photo reads it into memory and deletes the file at once (:func:`take_upload`),
  before the photo is even decoded, so the file is gone before the answer is sent, whatever the answer
  (a result, a refusal, a timeout). Only the bytes in memory are used from then on.

Gradio names an upload's file after the hash of its bytes, so every upload of the same photo (two tabs, two
people, a bench cycling through a few photos) is the same file. :class:`UploadRegister` therefore counts the
uploads of each file that no check has taken yet, and the file is deleted when the last of them is taken: no
request loses its photo to another, and the file is still gone as soon as the last one that needs it has read it.

:func:`use_private_upload_dir` must run before Gradio is imported: some of its modules read the variable once.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, MutableSet
from pathlib import Path
from typing import TypeVar

import anyio.from_thread
from anyio import NoEventLoopError

from triage.inference.decode import UploadError

_T = TypeVar("_T")

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


class UploadRegister(MutableSet[str]):
    """Gradio's record of uploads (``Blocks.upload_file_set``), counting the uploads of each file not yet taken.

    Gradio adds every upload's path with :meth:`update` (one call per upload request; the same photo uploaded
    twice is the same path, counted twice), iterates the record from its cleanup thread and removes what that
    cleanup deleted (``-=``, i.e. :meth:`discard`). A check gives its upload back with :meth:`release`. All of it
    is thread-safe: the upload route runs on the event loop, checks and the cleanup in worker threads.

    Args:
        paths: uploads already recorded (each counted once).
    """

    def __init__(self, paths: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, int] = {}
        self.update(paths)

    def __contains__(self, path: object) -> bool:
        with self._lock:
            return path in self._waiting

    def __iter__(self) -> Iterator[str]:
        # A copy: Gradio's cleanup iterates in its own thread while uploads and checks change the record (a live
        # set raised "Set changed size during iteration" there under load).
        with self._lock:
            return iter(list(self._waiting))

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)

    def add(self, path: str) -> None:
        """Count one more upload of ``path``."""
        with self._lock:
            self._waiting[path] = self._waiting.get(path, 0) + 1

    def update(self, paths: Iterable[str]) -> None:
        """Count one more upload of each path (Gradio's upload route calls this once per upload request)."""
        for path in paths:
            self.add(path)

    def discard(self, path: str) -> None:
        """Forget ``path`` altogether (its file was deleted by Gradio's cleanup)."""
        with self._lock:
            self._waiting.pop(path, None)

    def release(self, path: str) -> bool:
        """One upload of ``path`` was taken by a check; True when no other upload of it is still waiting."""
        with self._lock:
            left = self._waiting.get(path, 0) - 1
            if left > 0:
                self._waiting[path] = left
                return False
            self._waiting.pop(path, None)
            return True


def use_upload_register(blocks: object) -> UploadRegister:
    """Replace the Blocks' ``upload_file_set`` (and its entry in ``temp_file_sets``) by an :class:`UploadRegister`."""
    old = blocks.upload_file_set
    register = UploadRegister(old)
    blocks.temp_file_sets = [register if s is old else s for s in blocks.temp_file_sets]
    blocks.upload_file_set = register
    return register


def on_server_loop(action: Callable[..., _T], *args: object) -> _T:
    """Run ``action(*args)`` on the server's event loop when called from one of its worker threads, else here.

    Gradio's upload route makes an upload's folder, moves the file in and records it with no pause in between,
    on the event loop. Deleting there too means a deletion can never fall between those steps (say, removing
    the folder just made for the same photo's next upload, whose move would then fail).
    """
    try:
        return anyio.from_thread.run_sync(action, *args)
    except NoEventLoopError:  # a direct call (a script, a test): no server loop to go to
        return action(*args)


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
            the record does not grow with every photo (Gradio forgets only files its own cleanup removed). An
            :class:`UploadRegister` keeps the file while another upload of the same photo still waits for its check.

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
        on_server_loop(release_upload, path, folder, known)
    return data


def release_upload(path: Path, folder: str | Path, known: MutableSet[str] | None) -> None:
    """Drop one upload of ``path`` from ``known``; delete the file unless another upload of it still waits.

    Only a file inside ``folder`` is ever deleted (:func:`delete_upload`).
    """
    if isinstance(known, UploadRegister):
        if known.release(str(path)):
            delete_upload(path, folder)
        return
    if delete_upload(path, folder) and known is not None:
        known.discard(str(path))
