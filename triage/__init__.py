"""Skin-photo triage prototype: educational triage of skin close-ups, educational only."""

from triage.core.outcomes import OUTCOMES

__all__ = ["OUTCOMES"]
__version__ = "0.1.0"
