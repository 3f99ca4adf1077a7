"""Distances and noise floors live in the public layer (``fpkit.metrics``), which ``fpkit.predict`` uses;
this name is the same module, kept for the scripts and notebooks that import it from here."""

import sys

from fpkit import metrics as _metrics

sys.modules[__name__] = _metrics
