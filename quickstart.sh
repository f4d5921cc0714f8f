#!/usr/bin/env bash
# KTO Studio quick start.
#   bash quickstart.sh        install what is missing, build (Release), start the app on the demo model
#   bash quickstart.sh test   install what is missing, build (Release), run the default tests (unit, gui, e2e)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
BUILD=${KTO_BUILD_DIR:-$ROOT/build}
MODE=${1:-run}

bash scripts/install-deps.sh

launcher=()
# ccache can cache translation units that use the shared precompiled torch header only with these.
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" >/dev/null
cmake --build "$BUILD" --parallel "$(nproc)"

case "$MODE" in
  run)
    if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
      echo "No display found (DISPLAY and WAYLAND_DISPLAY are unset), so the desktop app cannot open a window here."
      echo "Use the command-line twin instead, for example:"
      echo "  $BUILD/app/kto-studio-cli --help"
      echo "  $BUILD/app/kto-studio-cli generate --prompt 'a red circle on a blue background' --out x.png"
      exit 0
    fi
    exec "$BUILD/app/kto-studio" "${@:2}"
    ;;
  test)
    export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
    cd "$BUILD"
    ctest --output-on-failure -L '^(unit|gui|e2e)$' --timeout 900 -j "$(nproc)"
    ;;
  *)
    echo "usage: bash quickstart.sh [run|test]" >&2
    exit 2
    ;;
esac
