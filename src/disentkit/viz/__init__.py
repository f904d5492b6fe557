"""Pictures: reconstruction grids, latent traversals (PNG/GIF) and the single-run HTML report."""

from .images import reconstructions, traversals
from .report import write_report

__all__ = ["reconstructions", "traversals", "write_report"]
