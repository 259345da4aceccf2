"""The tenants' logos, served from the database (every node has them; there is no shared media storage)."""

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from branding.selectors import logo_png

# The URL names the content (its SHA-256): a changed logo is another URL, so this one never changes.
LOGO_CACHE_CONTROL = "public, max-age=31536000, immutable"


@require_safe
def logo(request: HttpRequest, sha256: str) -> HttpResponse:
    data = logo_png(sha256=sha256)
    if data is None:
        raise Http404
    response = HttpResponse(data, content_type="image/png")
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = LOGO_CACHE_CONTROL
    response["ETag"] = f'"{sha256}"'
    # Opened on its own, the image runs nothing and loads nothing (it is a PNG we drew; this is a second wall).
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    response["Content-Disposition"] = 'inline; filename="logo.png"'
    return response
