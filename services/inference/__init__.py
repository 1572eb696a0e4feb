"""admuse inference service (see DESIGN.md §1).

Exported for tools (the console's gallery): `render_svg`, the creative renderer of the API's
`/v1/creatives/{id}.svg`.
"""

from services.inference.render import render_svg

__all__ = ["render_svg"]
