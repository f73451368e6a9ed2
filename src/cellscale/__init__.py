"""cellscale: tile, segment, track and measure cells at any scale."""

__version__ = "0.1.0"
