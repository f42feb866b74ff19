"""The hostile uploads a load run mixes in among valid photos, and whether the app answered each one rightly.

``bench/load.py --hostile-every N`` sends every N-th request with the next file of the hostile-upload corpus
(:mod:`triage.testing.corpus`): under load, as alone, each must get a result or a plain sentence, as the
corpus says, and never a traceback or a hang.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from triage.testing import corpus


@dataclass(frozen=True)
class Upload:
    """One file the clients send, and the answer it must get."""

    path: Path
    #: ``"outcome"`` (a result) for a valid photo; for a hostile file the corpus's expectation: ``"ok"`` (a
    #: result) or an ``UploadError`` code (a plain ``{"error": ...}`` sentence).
    expect: str = "outcome"

    @property
    def hostile(self) -> bool:
        """Whether this file comes from the hostile-upload corpus."""
        return self.expect != "outcome"


def hostile_uploads(folder: Path) -> list[Upload]:
    """Every case of the hostile-upload corpus (``triage.testing.corpus``) that can be made here, as files."""
    uploads = []
    for case in corpus.CASES:
        data = case.make()
        if data is not None:
            path = folder / f"hostile-{len(uploads):02d}-{case.name}"
            path.write_bytes(data)
            uploads.append(Upload(path, case.expect))
    return uploads


def judge(answer: object, upload: Upload) -> str | None:
    """What is wrong with the app's answer to ``upload`` (``None``: the right kind of answer); pure."""
    wants_result = upload.expect in ("outcome", "ok")
    if isinstance(answer, dict) and "outcome" in answer and wants_result:
        return None
    error = answer.get("error") if isinstance(answer, dict) else None
    if not wants_result and isinstance(error, str) and error.strip().endswith(".") and "Traceback" not in error:
        return None
    return f"{upload.path.name}: expected {'a result' if wants_result else 'a plain error'}, got {str(answer)[:200]}"
