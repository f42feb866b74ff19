"""The data build: sources and their labels, diagnoses, duplicates, mosaics, lesion crops, the group-aware split.

``python -m triage.data build`` (:mod:`.build`) writes the build folder training reads. Serving never imports
this package.
"""
