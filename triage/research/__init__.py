"""Research tools over a trained model: :mod:`.evaluate` (metrics on any manifest), :mod:`.analysis` (error
analysis, contact sheets, verified close-ups) and :mod:`.step_timing` (model-step milliseconds)."""
