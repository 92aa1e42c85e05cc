"""The shared floor of the host-side Python: the lab file (``lab``), the
results paths (``paths``), job progress (``progress``) and the guests' apt
sources (``aptsources``).

localvm, collector, analysis and thrashlab_job stand on it; it imports none
of them (tests/test_layers.py).
"""
