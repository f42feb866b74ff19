"""What happens to a request when the queue is full: a plain sentence, and its photo's file deleted at once.

Gradio refuses a request that finds ``QUEUE_MAX_SIZE`` others waiting (HTTP 503 at ``/queue/join``; the page
then shows "This application is currently busy. Please try again.", and ``gradio_client`` raises
``QueueError``). Gradio's own refusal text names its internals ("Queue is full. Max size is 32 and size
is 32."); :func:`answer_busy_when_full` puts :data:`BUSY_MESSAGE` in its place and gives the refused request's
uploads back, so a refused photo is not left on disk until the cleanup.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gradio as gr

#: The answer to a request the queue has no room for.
BUSY_MESSAGE = "The app is busy right now. Please try again in a minute."


def uploads_in(values: list | None) -> list[Path]:
    """The uploaded files a request's inputs name (Gradio's file payloads: dicts with a ``path``); pure."""
    return [Path(v["path"]) for v in values or [] if isinstance(v, dict) and isinstance(v.get("path"), str)]


def answer_busy_when_full(app: gr.Blocks, give_back: Callable[[Path], None]) -> None:
    """Make the app's queue refuse with :data:`BUSY_MESSAGE` and hand each refused upload to ``give_back``.

    Args:
        app: the Blocks, after ``app.queue(...)``.
        give_back: called on the event loop with each upload of a refused request (the upload is released as a
            check would release it: its file is deleted unless another upload of the same photo still waits).
    """
    queue = app._queue  # Gradio keeps no public hook on a refusal; its push() is where the queue decides
    push = queue.push

    async def push_or_busy(body, *args, **kwargs) -> tuple:
        admitted, detail, state = await push(body, *args, **kwargs)
        if state != "queue_full":
            return admitted, detail, state
        for path in uploads_in(getattr(body, "data", None)):
            give_back(path)
        return admitted, BUSY_MESSAGE, state

    queue.push = push_or_busy
