#!/bin/sh
# Fetch the pinned OHIF Viewer build (npm package @ohif/app, MIT) into .ohif/ (git-ignored).
# `npm pack` downloads the registry tarball; its sha512 must equal the pinned integrity, or
# nothing is installed. Only the prebuilt dist/ is kept. Run by `make install`, `make run`
# and `make test`; does nothing when the pinned version is already in place.
set -eu
VERSION=3.13.2
INTEGRITY="sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# The bundle goes where MedVault serves it from (MEDVAULT_OHIF_DIR, default .ohif/dist); the
# stamp, version and licence beside it.
DIST="${MEDVAULT_OHIF_DIR:-$ROOT/.ohif/dist}"
TARGET=$(dirname "$DIST")
STAMP="$TARGET/.installed-$VERSION"
[ -f "$STAMP" ] && [ -z "${OHIF_FORCE:-}" ] && exit 0
# Without npm MedVault still runs and tests: /ohif/ answers 503 and the OHIF tests skip.
# A download that fails or does not match the pinned integrity is an error.
command -v npm >/dev/null 2>&1 || { echo "fetch_ohif: npm is not installed; OHIF at /ohif/ stays unavailable" >&2; exit 0; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
( cd "$WORK" && npm pack --silent "@ohif/app@$VERSION" >/dev/null )
TARBALL="$WORK/ohif-app-$VERSION.tgz"
GOT="sha512-$(openssl dgst -sha512 -binary "$TARBALL" | base64 -w0)"
if [ "$GOT" != "$INTEGRITY" ]; then
    echo "fetch_ohif: integrity mismatch for @ohif/app@$VERSION: got $GOT" >&2
    exit 1
fi
tar -xzf "$TARBALL" -C "$WORK" package/dist package/LICENSE
# The bundle is built for the site root: webpack's public path is the literal "/". MedVault
# serves it under /ohif/, so the chunk loaders of the app and its workers, and the font URL of
# its style sheet, are pointed there (the only changes made to the package; index.html is
# rewritten when served, see medvault.ui.ohif).
grep -rl '__webpack_require__.p = "/";' "$WORK/package/dist" --include='*.js' \
    | xargs sed -i 's#__webpack_require__.p = "/";#__webpack_require__.p = "/ohif/";#'
sed -i 's#url(/\([^/]\)#url(/ohif/\1#g' "$WORK/package/dist/app.bundle.css"
rm -rf "$DIST.new" "$TARGET"/.installed-*
mkdir -p "$TARGET"
mv "$WORK/package/dist" "$DIST.new"
cp "$WORK/package/LICENSE" "$TARGET/LICENSE"
rm -rf "$DIST"
mv "$DIST.new" "$DIST"
echo "$VERSION" > "$TARGET/VERSION"
touch "$STAMP"
echo "fetch_ohif: OHIF Viewer $VERSION in $DIST"
