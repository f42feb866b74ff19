"""Every serving limit in one place: upload size, pixels, request time, queue.

Serving code only (no torch import). ``triage.inference.decode`` enforces the size and
pixel limits, ``triage.app`` the request timeout, the upload cap given to
Gradio and the queue. A request over a limit gets a plain sentence, never a
traceback:

==================  =========================================================================
limit               what the person sees
==================  =========================================================================
upload size         Gradio refuses the upload (HTTP 413 / the client's "exceeds the maximum
                    file size" error); a bigger file reaching the decoder gets
                    ``UploadError("too_large_bytes")``.
pixels              ``UploadError("too_many_pixels")``: "This image is too large to open..."
request timeout     ``UploadError("timeout")``: "Checking this photo took too long..."
queue full          Refused at once (HTTP 503) with "The app is busy right now. Please try
                    again in a minute." (``triage.app.busy``); the page shows Gradio's "This
                    application is currently busy. Please try again.", ``gradio_client``
                    raises ``QueueError``. The refused photo's file is deleted.
==================  =========================================================================
"""

from __future__ import annotations

#: Largest upload accepted, in bytes (20 MiB): a phone's full-size HEIC or JPEG is 2-12 MB. Gradio's
#: ``max_file_size`` and the decoder use this same number (Gradio reads "MB" as MiB too).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024

#: Most pixels we are willing to decode (40 MP, ~120 MB as RGB). For JPEG this applies after draft
#: reduction; for every other format it applies to the header size, checked before decoding.
MAX_PIXELS = 40_000_000

#: Most pixels a JPEG header may declare. Draft decoding shrinks a JPEG by up to 8x per side, so this can
#: exceed ``MAX_PIXELS``. It equals Pillow's default hard decompression-bomb limit (2 x 89,478,485), so
#: our check and Pillow's agree; 108 MP phone sensors fit under it.
MAX_JPEG_HEADER_PIXELS = 178_956_970

#: Longest a single check (decode, quality checks, model) may take before the person is told to try again,
#: in seconds. A normal photo takes well under 1 s on 2 CPU threads (``bench/latency.py``); the margin covers
#: a busy machine. The stuck work itself cannot be killed from Python, so it runs on a small bounded pool
#: (``TIMEOUT_WORKERS``): a pathological file can slow the app down but never pile up unbounded threads.
REQUEST_TIMEOUT_S = 30.0

#: Photos checked at the same time in the whole app (client tab, therapist tab and API together); the rest
#: wait in the queue. Each check of a photo at the pixel limit can take up to ~350 MB at its peak.
CONCURRENCY_LIMIT = 2

#: Worker threads that run checks under the timeout: the running checks plus as many abandoned ones.
TIMEOUT_WORKERS = 2 * CONCURRENCY_LIMIT

#: Requests that may wait in Gradio's queue; one more is refused at once with a plain "busy" sentence.
QUEUE_MAX_SIZE = 32

#: A checked photo's file is deleted as soon as it is read (``triage.app.upload_dir.take_upload``; the same photo
#: uploaded for several requests at once is one file, deleted once the last of them has read it). One that is
#: uploaded but never sent for checking (the page closed first) is deleted by Gradio's cleanup, which runs
#: every ``UPLOAD_SWEEP_EVERY_S`` seconds and removes uploads older than ``UNCHECKED_UPLOAD_MAX_AGE_S``: such a
#: photo is gone within 6 minutes. A later "check" of it gets "please add the photo again".
UPLOAD_SWEEP_EVERY_S = 60
UNCHECKED_UPLOAD_MAX_AGE_S = 300

__all__ = [
    "CONCURRENCY_LIMIT",
    "MAX_JPEG_HEADER_PIXELS",
    "MAX_PIXELS",
    "MAX_UPLOAD_BYTES",
    "QUEUE_MAX_SIZE",
    "REQUEST_TIMEOUT_S",
    "TIMEOUT_WORKERS",
    "UNCHECKED_UPLOAD_MAX_AGE_S",
    "UPLOAD_SWEEP_EVERY_S",
]
