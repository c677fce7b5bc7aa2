"""One ``fig_*`` function per figure of the report, each drawn from ``results/`` alone, one module
per figure family:

- ``style``: the seaborn theme and the shared drawing helpers (layout, log-axis labels, thinning,
  spike markers, legends);
- ``arms``: a sweep's varied keys and the label and order of its arms; ``selection``: one
  experiment's rows, spike episodes, layers, the window around the first spike;
- ``loss``, ``spike_rates``, ``histograms`` (update values over time), ``layers`` (gradient RMS
  against ε), ``curvature`` (curvature and RMS_t around spikes), ``slingshot`` (the Slingshot's loss,
  zero-gradient fraction and classifier mean row, fp32 beside fp64), ``halflife`` (H1: β2 fixed vs
  scaled by its half-life, over the batch size): the per-experiment figures, each
  module declaring its ``KINDS`` (``kinds.Kind``: name, title, when it applies, how it is drawn,
  caption, why it is missing) beside its function; ``replicate.report.FIGURES`` collects them in
  the page's order;
- ``leaderboard``, ``throughput``: the page's two figures that are not per experiment.

Every function takes what ``results.load()`` / ``results.runs()`` / ``results.load_histograms()``
return (already narrowed to one experiment by the caller, or not: they filter on ``experiment``)
and returns a matplotlib Figure, or ``None`` when there is nothing to draw (the report then shows a
"no data for this figure" box in its place). Every figure has labelled axes, a legend (or a colour
bar) and the number of seeds in its title.

Spikes are episodes under the four definitions of CLAIMS.md ("Spike definitions",
``replicate.spikes.DEFINITIONS``), fixed before any run: R3, the primary (the loss exceeds 3× the
median of the previous 100 non-spiking logged losses, until back under 1.2× it), R10 and R100 (the
same rule at 10× and 100×) and Z6 (OLMo-core's SkipStepOptimizer rule: more than 6 standard
deviations above the mean of the previous 128 losses). ``selection.episodes`` gives R3's unless
told otherwise, so every figure that marks or aligns on spikes uses R3's episodes; the loss curves
also mark the other three definitions' episode starts, the spike-rate figure draws the rate under
each of the four (pooled over seeds, exact Poisson interval), its heatmap R3's, and the leaderboard
figure R3's rate beside R10's, R100's and Z6's. The legacy rule (``spikes.detect``) draws nothing.
"""

from __future__ import annotations

from .style import (MAX_POINTS, SPIKE, PlainLogFormatter, _legend_entries, _mark_spikes, _plain_text,  # noqa: F401
                    _seeds, _SUPERSCRIPT, _thin, lighten_ticks, tight)
from .arms import (_NOT_ARMS, _SYMBOL, SWEEP_KEYS, _natural, _natural_arms, _sortable, _value_label,  # noqa: F401
                   arm_labels, varied_keys)
from .selection import _first_spike_window, _layers, _of, episodes, layer_order  # noqa: F401
from .kinds import Kind  # noqa: F401
from .loss import fig_loss_curves  # noqa: F401
from .spike_rates import _rate_heatmap, fig_spike_rates, spike_table  # noqa: F401
from .histograms import fig_update_histograms  # noqa: F401
from .layers import fig_grad_rms  # noqa: F401
from .curvature import _aligned, _around_spikes, _per_run, fig_curvature, fig_rms_lead  # noqa: F401
from .leaderboard import LEADERBOARD_PANELS, fig_leaderboard  # noqa: F401
from .throughput import bench_table, fig_throughput  # noqa: F401
