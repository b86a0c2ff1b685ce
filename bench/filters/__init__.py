"""Model views: what single filters of a CNN respond to, beside the attribution maps.

- :func:`visualise_filters`: regularised gradient ascent on the input, batched over filters,
  (F, 3, H, W) images in [0, 1].
- :func:`filter_activations`: the filters' activation maps on real images, (N, F, h, w).
- :func:`plot_filters` / :func:`filters_figure`: the figure (ascent on top, activation maps below).
- :func:`report_page`: the run report's filters page for one architecture (a PNG and a JSON
  sidecar), called by the report when the run configuration sets ``filters = true``.

Every function leaves the model as it found it (training flags, ``requires_grad``, hooks, no
parameter gradients). Bad input raises :class:`FilterError` (a ``ValueError``).
"""
from .activations import filter_activations, most_active_filters
from .ascent import start_image, visualise_filters
from .figure import filters_figure, plot_filters, report_page
from .layers import FilterError, find_layer, layer_output

__all__ = ["FilterError", "filter_activations", "filters_figure", "find_layer", "layer_output", "most_active_filters",
           "plot_filters", "report_page", "start_image", "visualise_filters"]
