"""Pictures: reconstruction grids, latent traversals (PNG/GIF), charts and the single-run HTML report
(Jinja2 templates in ``viz/templates``, shared with the sweep report)."""

from .images import reconstructions, traversals
from .report import write_report

__all__ = ["reconstructions", "traversals", "write_report"]
