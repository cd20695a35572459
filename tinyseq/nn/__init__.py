"""Neural-network building blocks. ``tinyseq.nn.functional`` holds the losses."""

from . import functional
