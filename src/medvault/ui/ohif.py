"""OHIF Viewer at /ohif/: the prebuilt ``@ohif/app`` bundle, served behind MedVault's login.

The bundle is fetched by ``scripts/fetch_ohif.sh`` (``make install``/``run``/``test``) into
``MEDVAULT_OHIF_DIR`` (default ``.ohif/dist``); nothing of it is in the repository. OHIF reads
every image through MedVault's own ``/dicomweb`` on the same origin with the user's session
cookie, so group rules, the de-identified view and the audit apply unchanged; no token is ever
put in the page.

Three files are MedVault's own rather than the bundle's:

- ``index.html`` (also the answer for any path that is not a file: OHIF is a single-page app
  whose router owns ``/ohif/viewer?StudyInstanceUIDs=...``): the bundle's page with its
  inline scripts moved to ``medvault-boot.js`` and its root-relative URLs under ``/ohif/``;
- ``medvault-boot.js``: what those inline scripts did (``PUBLIC_URL``, the dynamic-import
  helper), so the page needs no ``'unsafe-inline'`` script;
- ``app-config.js``: the data source, MedVault's DICOMweb.

The page gets its own Content-Security-Policy: OHIF decodes images in Web Workers and
WebAssembly, so ``'wasm-unsafe-eval'`` and ``blob:`` workers are allowed here and nowhere else.
"""

from __future__ import annotations

import functools
import mimetypes
import re
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse

from medvault.accounts.decorators import role_required

OHIF_CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self' data: blob:; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PREFIX = "/ohif/"

BOOT_JS = """// MedVault: what OHIF's index.html did inline (kept out of the page for the CSP).
window.PUBLIC_URL = "/ohif/";
window.browserImportFunction = function (n) { return import(n); };
"""

# The data source is MedVault's DICOMweb on the same origin: the browser sends the session
# cookie with every request, and MedVault answers only what this user may see.
APP_CONFIG_JS = """/** MedVault's OHIF configuration (from medvault.ui.ohif, not the bundle). */
(function () {
  var root = window.location.origin + "/dicomweb";
  window.config = {
    name: "medvault",
    routerBasename: "/ohif",
    extensions: [],
    modes: [],
    // Radiologists know OHIF: no onboarding tour over the first study they open.
    customizationService: { "ohif.tours": { $set: [] } },
    showStudyList: true,
    maxNumberOfWebWorkers: 3,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    groupEnabledModesFirst: true,
    investigationalUseDialog: { option: "never" },
    maxNumRequests: { interaction: 100, thumbnail: 5, prefetch: 10 },
    showErrorDetails: "always",
    defaultDataSourceName: "medvault",
    dataSources: [
      {
        namespace: "@ohif/extension-default.dataSourcesModule.dicomweb",
        sourceName: "medvault",
        configuration: {
          friendlyName: "MedVault",
          name: "medvault",
          wadoUriRoot: root + "/wado",
          qidoRoot: root,
          wadoRoot: root,
          qidoSupportsIncludeField: true,
          supportsReject: false,
          imageRendering: "wadors",
          thumbnailRendering: "thumbnail",
          thumbnailRequestStrategy: "fetch",
          enableStudyLazyLoad: true,
          supportsFuzzyMatching: true,
          supportsWildcard: true,
          staticWado: false,
          singlepart: "bulkdata,video",
          bulkDataURI: { enabled: true, relativeResolution: "studies" },
          omitQuotationForMultipartRequest: true,
        },
      },
    ],
  };
})();
"""

_ROOT_URL = re.compile(r'(href|src|content)="/(?!/)')
_INLINE_SCRIPT = re.compile(r"<script>[^<]*</script>")
_SERVICE_WORKER = re.compile(r'<script[^>]*init-service-worker\.js"></script>')
# The bundle's files are the npm package's bytes, the same for every user and free of patient
# data: "public" keeps their lifetime through ops.middleware's no-store rule for computed answers
# (without it every OHIF open would fetch and compile the 17 MB bundle again).
_CACHE = "public, max-age=86400"
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".mjs")


def ohif_dir() -> Path:
    return Path(settings.MEDVAULT_OHIF_DIR)


@functools.cache
def _files(root: Path) -> dict[str, Path]:
    """Every file of the bundle by its URL path: a request picks from this map, it never
    becomes a filesystem path itself."""
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}


def ohif_available() -> bool:
    return (ohif_dir() / "index.html").is_file()


@functools.cache
def _index_html(root: Path) -> str:
    text = (root / "index.html").read_text(encoding="utf-8")
    text = _SERVICE_WORKER.sub("", text)
    text = _INLINE_SCRIPT.sub("", text)
    text = _ROOT_URL.sub(lambda m: f'{m.group(1)}="{PREFIX}', text)
    boot = f'<script src="{PREFIX}medvault-boot.js"></script>'
    return text.replace("<title>", boot + "<title>", 1)


def _text(body: str, content_type: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


@role_required("view")
def ohif(request: HttpRequest, path: str = "") -> HttpResponse | FileResponse:
    if not ohif_available():
        return HttpResponse(
            "OHIF Viewer is not installed on this server: run `make install` (it fetches "
            "@ohif/app with npm), or ask an administrator.",
            status=503, content_type="text/plain; charset=utf-8",
        )
    if path == "app-config.js":
        return _text(APP_CONFIG_JS, "text/javascript; charset=utf-8")
    if path == "medvault-boot.js":
        return _text(BOOT_JS, "text/javascript; charset=utf-8")
    root = ohif_dir()
    file = _files(root).get(path) if path and path != "index.html" else None
    if file is None:
        if re.search(r"\.(js|css|wasm|map|png|svg|json|ico|woff2?)$", path):
            raise Http404("no such file in the OHIF bundle")
        response = HttpResponse(_index_html(root), content_type="text/html; charset=utf-8")
        response["Content-Security-Policy"] = OHIF_CSP
        response["Cache-Control"] = "no-store"
        return response
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    streamed = FileResponse(file.open("rb"), content_type=content_type)
    streamed["Cache-Control"] = _CACHE
    if content_type.startswith("text/html"):
        streamed["Content-Security-Policy"] = OHIF_CSP
    return streamed
