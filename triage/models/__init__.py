"""Networks: the backbone registry (:mod:`.backbones`) and the out-of-distribution statistics (:mod:`.ood`)."""
