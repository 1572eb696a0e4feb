"""admuse inference service (see DESIGN.md §1).

Exported for tools (the console's gallery): `rendition`, the creative renderer of the API's
`/v1/creatives/{id}.<fmt>`, and its error `NoRendition`.
"""

from services.inference.renditions import FORMATS, NoRendition, rendition

__all__ = ["FORMATS", "NoRendition", "rendition"]
