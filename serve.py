"""Run the triage web app.

Usage:
    python serve.py [--host 127.0.0.1] [--port 7860] [--model models/triage-mnv3s.pt]

Gradio's GRADIO_SERVER_NAME / GRADIO_SERVER_PORT also work. Optional therapist
login: set TRIAGE_USER and TRIAGE_PASSWORD.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load the model, launch the app."""
    from triage.inference.engine import DEFAULT_MODEL, ModelLoadError, Triage

    p = argparse.ArgumentParser(description="Skin-photo triage app (educational only, not a medical opinion).")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    args = p.parse_args(argv)
    try:
        triage = Triage.load(args.model)
    except ModelLoadError as err:
        print(f"Cannot start: {err}", file=sys.stderr)
        return 2
    from triage.app.upload_dir import remove_upload_dir, use_private_upload_dir

    uploads = use_private_upload_dir()  # before Gradio is imported
    from triage.app.layout import CSS, UPLOAD_LIMIT, build_app, theme

    user, password = os.environ.get("TRIAGE_USER"), os.environ.get("TRIAGE_PASSWORD")
    app = build_app(triage)  # also sets the queue's bounds (triage/inference/limits.py)
    try:
        app.launch(
            server_name=args.host,
            server_port=args.port,
            share=False,
            theme=theme(),
            css=CSS,
            show_error=False,
            # Client-side rendering only, whatever GRADIO_SSR_MODE says: no Node server beside the app, and
            # CVE-2026-134825 (gradio 6.27 to 6.31) needs one.
            ssr_mode=False,
            max_file_size=UPLOAD_LIMIT,
            auth=(user, password) if user and password else None,
        )
    except KeyboardInterrupt:
        pass
    finally:
        remove_upload_dir(uploads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
