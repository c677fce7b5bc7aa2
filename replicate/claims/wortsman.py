"""Wortsman et al. 2023 (arXiv 2304.13013, 2309.14322)."""

from . import pending

pending("W1", source="Wortsman et al. 2023 (arXiv 2304.13013) §3.4",
        statement="Loss spikes follow 1-8 steps after the second-moment estimate underestimates g^2: "
                  "RMS_t spikes first, in the shallow layer",
        metric="fraction of loss spikes with an RMS_t spike 1-8 steps before the rise starts",
        threshold=">= 0.7, and the embedding's RMS_t first most often")
pending("W1_gpu", source="Wortsman et al. 2023 (arXiv 2304.13013) §3.4",
        statement="(GPU tier: a GPT of 10M-125M parameters on real text)", metric="as the cpu tier",
        threshold="as the cpu tier", tier="gpu")
pending("W2", source="Wortsman et al. 2023 (arXiv 2309.14322) §3",
        statement="At high learning rate, qk-layernorm and z-loss lower learning-rate sensitivity",
        metric="LR sensitivity over a >= 5-point grid, with and without qk-layernorm + z-loss",
        threshold="lower with them in >= 2 of 3 seeds")
