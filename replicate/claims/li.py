"""Li et al. 2024 (arXiv 2405.14578) and the epsilon analysis of Su Jianlin (kexue.fm 10542, 10563)."""

from . import pending

pending("S1", source="Li et al. 2024 (arXiv 2405.14578)",
        statement="For sign-like Adam the optimal learning rate first rises then falls as the batch grows; "
                  "for SGD it only rises; a larger eps flattens the surge",
        metric="optimal LR per batch size on a noisy quadratic",
        threshold="Adam's optimum peaks at an interior batch size; SGD's is monotone; the drop shrinks with eps")
