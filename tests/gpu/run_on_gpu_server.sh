#!/usr/bin/env bash
# Builds the headless core (KTO_CORE_ONLY: kto_core + gpu_check, no Qt, no SQLite) against the
# libtorch inside an installed PyTorch wheel (CUDA), then runs the GPU check. See docs/GPU.md.
#
#   tests/gpu/run_on_gpu_server.sh [BUILD_DIR]
#
# Environment:
#   PYTHON      the Python that holds torch (default python3)
#   KTO_DEPS    optional prefix with what the server lacks: include/{nlohmann,stb}, lib/libstb.a,
#               share/cmake/nlohmann_json, icu/{include,lib}, reference/ (the shared reference set)
#   KTO_REFERENCE_DIR   the shared reference folder (default: $KTO_DEPS/reference, else ../shared/reference)
#   OUT         where logs and images go (default: BUILD_DIR/gpu-check-out)
#   KTO_GPU_TARGETS     what to build (default gpu_check; demo_recipe: demo-model recipe trials)
#   KTO_GPU_BUILD_ONLY  1: build, then stop without running gpu_check
set -uo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build-gpu}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$build/gpu-check-out}
mkdir -p "$build" "$OUT"

torch_cmake=$($PYTHON -c 'import torch; print(torch.utils.cmake_prefix_path)') || { echo "no torch in $PYTHON"; exit 1; }
$PYTHON -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available() and torch.cuda.get_device_name(0))'
# The CUDA libraries of the wheel (nvidia-* packages): for the linker and the loader.
nvlibs=$($PYTHON - <<'PY'
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except ImportError:
    roots = []
print(":".join(sorted(d for r in roots for d in glob.glob(os.path.join(r, "*", "lib")))))
PY
)
torch_lib=$($PYTHON -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')

args=(-DKTO_CORE_ONLY=ON -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=$torch_cmake")
if command -v nvcc >/dev/null; then
  args+=("-DCUDAToolkit_ROOT=$(dirname "$(dirname "$(command -v nvcc)")")")
fi
if [ -n "${KTO_DEPS:-}" ]; then
  args+=("-Dnlohmann_json_DIR=$KTO_DEPS/share/cmake/nlohmann_json"
         "-DKTO_STB_LIBRARY=$KTO_DEPS/lib/libstb.a" "-DKTO_STB_INCLUDE_DIR=$KTO_DEPS/include/stb")
  [ -f /usr/include/unicode/uchar.h ] || args+=("-DICU_ROOT=$KTO_DEPS/icu")
  export LD_LIBRARY_PATH="$KTO_DEPS/icu/lib:${LD_LIBRARY_PATH:-}"
fi
link_flags="-Wl,-rpath-link,$torch_lib"
[ -n "$nvlibs" ] && link_flags="$link_flags -Wl,-rpath-link,$nvlibs"
args+=("-DCMAKE_EXE_LINKER_FLAGS=$link_flags" "-DTORCH_CUDA_ARCH_LIST=9.0")
export LD_LIBRARY_PATH="$torch_lib:$nvlibs:${LD_LIBRARY_PATH:-}"

reference=${KTO_REFERENCE_DIR:-}
[ -z "$reference" ] && [ -n "${KTO_DEPS:-}" ] && reference=$KTO_DEPS/reference
[ -z "$reference" ] && reference=$src/../shared/reference
args+=("-DKTO_REFERENCE_DIR=$reference")

t0=$(date +%s)
if command -v ninja >/dev/null; then
  cmake -S "$src" -B "$build" -G Ninja "${args[@]}" >"$OUT/configure.log" 2>&1
else
  cmake -S "$src" -B "$build" "${args[@]}" >"$OUT/configure.log" 2>&1
fi
rc=$?
tail -n 25 "$OUT/configure.log"
[ $rc -eq 0 ] || { echo "configure failed"; exit 1; }
keep_going=-k; [ -f "$build/build.ninja" ] && keep_going="-k 0"
# shellcheck disable=SC2086
cmake --build "$build" --target ${KTO_GPU_TARGETS:-gpu_check} -j "$(nproc)" -- $keep_going >"$OUT/build.log" 2>&1
rc=$?
echo "build: rc $rc in $(( $(date +%s) - t0 )) s ($(nproc) cores)"
grep -E "error|Error" "$OUT/build.log" | head -n 40
[ $rc -eq 0 ] || { tail -n 40 "$OUT/build.log"; exit 1; }
[ "${KTO_GPU_BUILD_ONLY:-0}" = 1 ] && exit 0
"$build/tests/gpu/gpu_check" --device cuda --reference "$reference" --demo "$src/resources/models/kto-demo" --out "$OUT" --work "$build/gpu-check-work" 2>&1 | tee "$OUT/gpu_check.log"
status=${PIPESTATUS[0]}

# The NCCL backend compiles only where nccl.h is found (PyTorch wheels ship it in nvidia-nccl):
# compile core/train/distributed.cpp once more with that header, to check the NCCL code path.
nccl_inc=$(echo "$nvlibs" | tr ':' '\n' | sed -n 's|/lib$|/include|p' | while read -r d; do [ -f "$d/nccl.h" ] && echo "$d"; done | head -n 1)
if [ -n "$nccl_inc" ]; then
  cmd=$($PYTHON - "$build/compile_commands.json" <<'PY'
import json, sys
for e in json.load(open(sys.argv[1])):
    if e["file"].endswith("core/train/distributed.cpp"):
        print(e["command"])
PY
)
  if [ -n "$cmd" ]; then
    cmd=$(echo "$cmd" | sed -E 's/ -o [^ ]+/ /; s/ -include [^ ]+cmake_pch[^ ]*//g; s/ -Winvalid-pch//')
    (cd "$build" && eval "$cmd -fsyntax-only -I$nccl_inc") >"$OUT/nccl_compile.log" 2>&1 \
      && echo "CHECK nccl-compile PASS (distributed.cpp with $nccl_inc/nccl.h; $(echo "$cmd" | grep -c USE_C10D_NCCL) USE_C10D_NCCL define)" \
      || { echo "CHECK nccl-compile FAIL"; head -n 30 "$OUT/nccl_compile.log"; }
  fi
fi
exit "$status"
