"""The open questions of CLAIMS.md: answered with numbers (verdict ``answered``), no pass/fail."""

from . import pending

_Q = {
    "Q1": "Would spikes still happen if every step saw the whole data set (full batch)?",
    "Q2": "Does low-precision training make shallow layers stall more?",
    "Q3": "Do beta1/beta2 that decay over training avoid spikes without the cost of a small beta2 early on?",
    "Q4": "Does eps relative to each layer's gradient RMS, rather than eps itself, predict stalling across sizes?",
}
for _id, _q in _Q.items():
    pending(_id, source="open question (CLAIMS.md)", statement=_q, metric="measured answer", threshold="none")
