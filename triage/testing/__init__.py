"""Generated test material: synthetic skin photos, tiny checkpoints and datasets (:mod:`.synthetic`), the
hostile-upload corpus (:mod:`.corpus`) and the text-overlap check (:mod:`.overlap`). Never imported by serving."""
