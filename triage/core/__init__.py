"""Pure definitions every stage shares: outcomes, preprocessing and the eval transform, the decision policy,
metrics, photo quality, red flags and box geometry. Imports nothing else of this package."""
