"""The web page for people: ``GET /ui`` (``/`` redirects there) and its static files under ``/ui/static/``.

The page is plain HTML, CSS and ES modules from ``service/web/`` (no build step). It loads without an API
key; the API calls it makes send the key the user typed (docs/web.md).

Caching: asset URLs carry a digest of the static folder's content (``/ui/static/<digest>/app.js``), so
they are cached for a year as immutable, and the page itself (``no-cache``) names the current digest; a
new release changes the digest and browsers fetch the new files. Modules import each other by relative
paths, so they stay inside the same digest. The digest is taken when the app is built: restart the
server after editing the files.
"""

import hashlib
from pathlib import Path

from litestar import MediaType, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.handlers import HTTPRouteHandler
from litestar.response import Redirect
from litestar.router import Router
from litestar.static_files import create_static_files_router

WEB = Path(__file__).resolve().parents[1] / "web"
STATIC = WEB / "static"
PAGE = "/ui"
STATIC_PREFIX = "/ui/static"
# The page makes requests to its own origin only; images it shows are blob: URLs of the user's files.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def static_digest(folder: Path = STATIC) -> str:
    """12 hex characters of a sha256 over every static file's path and bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def routes() -> list[HTTPRouteHandler | Router]:
    """The page, the redirect from ``/`` and the static files router, for ``create_app``'s route list."""
    assets = f"{STATIC_PREFIX}/{static_digest()}"
    html = (WEB / "index.html").read_text(encoding="utf-8").replace("{{static}}", assets)

    @get(PAGE, include_in_schema=False, name="web-page")
    async def page() -> Response[str]:
        """The page: one HTML document that names its versioned scripts and styles."""
        return Response(html, media_type=MediaType.HTML, headers=PAGE_HEADERS)

    @get("/", include_in_schema=False, name="web-root")
    async def root() -> Redirect:
        return Redirect(PAGE, status_code=302)

    static = create_static_files_router(
        path=assets,
        directories=[STATIC],
        name="web-static",
        cache_control=CacheControlHeader(public=True, max_age=365 * 24 * 3600, immutable=True),
        include_in_schema=False,
    )
    return [page, root, static]
