"""Synthetic image origin attribution: frozen open_clip features, light heads, open-set scores.

Importing the package is cheap: only the configuration names are re-exported here.
Import the modules for the rest (`attribution.backbone` and `attribution.features` for
inference, `attribution.training` and `attribution.evaluate` for training and evaluation).
This package never imports Django or Celery.
"""

from attribution.config import DEFAULT_BLOCKS, OFFLINE_BACKBONE, PAPER_BACKBONE, BackboneConfig

__all__ = ["DEFAULT_BLOCKS", "OFFLINE_BACKBONE", "PAPER_BACKBONE", "BackboneConfig"]
