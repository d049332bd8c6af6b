#!/usr/bin/env bash
# Refresh the browser libraries the web console uses, from npm, at pinned versions.
#
# The unpacked files are committed under src/openpanel_ws/web/static/vendor/: running the
# console needs no build step and fetches nothing at run time. Run this script only to
# change a version (edit the pins below), then commit the result.
set -euo pipefail

XTERM_VERSION=6.0.0
XTERM_FIT_VERSION=0.11.0
UPLOT_VERSION=1.6.32

here="$(cd "$(dirname "$0")/.." && pwd)"
dest="$here/src/openpanel_ws/web/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

command -v npm >/dev/null || { echo "vendor-web.sh: npm is required (apt-get install -y npm)" >&2; exit 1; }

# unpack NAME@VERSION DIR FILE... : copy FILEs (paths inside the package) into vendor/DIR
unpack() {
  local spec="$1" dir="$2"; shift 2
  local tgz
  tgz="$(cd "$work" && npm pack --silent "$spec" | tail -n 1)"
  mkdir -p "$work/$dir"
  tar -xzf "$work/$tgz" -C "$work/$dir"
  rm -rf "${dest:?}/$dir"
  mkdir -p "$dest/$dir"
  local f
  for f in "$@" LICENSE package.json; do
    cp "$work/$dir/package/$f" "$dest/$dir/$(basename "$f")"
  done
  echo "$spec -> vendor/$dir ($(cd "$work/$dir/package" && sha256sum "$@" | sha256sum | cut -c1-12))"
}

unpack "@xterm/xterm@$XTERM_VERSION" xterm lib/xterm.mjs css/xterm.css
unpack "@xterm/addon-fit@$XTERM_FIT_VERSION" addon-fit lib/addon-fit.mjs
unpack "uplot@$UPLOT_VERSION" uplot dist/uPlot.esm.js dist/uPlot.min.css

# Source maps are not shipped: strip the trailing sourceMappingURL comments so browsers
# do not ask the gateway for files that are not there.
find "$dest" -name '*.mjs' -o -name '*.js' | while read -r f; do
  sed -i '/^\/\/# sourceMappingURL=/d' "$f"
done

cat > "$dest/VERSIONS" <<VERSIONS
@xterm/xterm $XTERM_VERSION (MIT) https://github.com/xtermjs/xterm.js
@xterm/addon-fit $XTERM_FIT_VERSION (MIT) https://github.com/xtermjs/xterm.js
uplot $UPLOT_VERSION (MIT) https://github.com/leeoniya/uPlot
VERSIONS
echo "vendored into $dest"
