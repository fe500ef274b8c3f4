#!/usr/bin/env bash
# Build Triton's onnxruntime backend (r24.10 = the nvidia-pytriton wheel's server 2.51.0) for CPU, against
# the PyPI onnxruntime wheel's libonnxruntime.so, and lay out the backend directory lob.serving.launcher
# uses (`make backend`; a prerequisite of make test / demo / bench):
#
#   build/triton_backends/onnxruntime/  libtriton_onnxruntime.so, libonnxruntime.so.1.<x>.<y>, libonnxruntime.so.1
#   build/triton_backends/python/       the wheel's python backend with the stub of the venv's Python
#
# Sources: ../shared/third_party/triton-r24.10/ when present (offline copy), else GitHub at the same
# commits; the ORT C API header at API 19 (ORT 1.19, what 24.10 shipped; the C API is versioned, so it
# works with the wheel's newer library). Idempotent: skipped when build/triton_backends/.stamp records the
# same inputs. Recipe and measurements: ../shared/ENVIRONMENT.md, "Triton's onnxruntime backend on CPU".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
OUT=${OUT:-$ROOT/build/triton_backends}
WORK=$ROOT/build/onnxruntime_backend
OFFLINE=${TRITON_SOURCES:-$ROOT/../shared/third_party/triton-r24.10}
# repo commit (branch heads of r24.10)
COMMITS=(onnxruntime_backend:17e5cb23a6fbeb37282eb7079dd0b580cd79530d backend:ac03a5d97403dec841ad46d0439e93db12c9268f
         core:bfec7c61dc0939433f64f14e89b1973073eac8ba common:578491fc3944f77d16a6a38e3d7691c485c47ba0)
ORT_HEADER_URL=https://raw.githubusercontent.com/microsoft/onnxruntime/v1.19.0/include/onnxruntime/core/session/onnxruntime_c_api.h

die() { echo "build_onnxruntime_backend: error: $*" >&2; exit 1; }

[ -x "$PY" ] || die "$PY not found: run \`make venv\` first (the backend links against the venv's onnxruntime and tritonserver wheels)"
# where the venv's wheels keep what we link against and copy
read -r ORT_LIB TS_LIB WHEEL PYVER < <("$PY" - <<'EOF'
import glob, os, sys
try:
    import onnxruntime, pytriton
except ImportError as err:
    sys.exit(f"build_onnxruntime_backend: error: {err}: install the serve extra (make venv)")
capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
ort = sorted(glob.glob(os.path.join(capi, "libonnxruntime.so.1.*")))
libs = os.path.join(os.path.dirname(os.path.dirname(pytriton.__file__)), "nvidia_pytriton.libs")
ts = sorted(glob.glob(os.path.join(libs, "libtritonserver*.so")))
if not ort or not ts:
    sys.exit(f"build_onnxruntime_backend: error: no libonnxruntime.so.1.* in {capi} or no libtritonserver*.so in {libs}")
print(ort[-1], ts[-1], os.path.join(os.path.dirname(pytriton.__file__), "tritonserver"), f"{sys.version_info[0]}.{sys.version_info[1]}")
EOF
)
STAMP_TEXT="${COMMITS[*]} ort=$(basename "$ORT_LIB") tritonserver=$(basename "$TS_LIB") python=$PYVER script=$(sha256sum "$0" | cut -c1-16)"
if [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$STAMP_TEXT" ] && [ -f "$OUT/onnxruntime/libtriton_onnxruntime.so" ]; then
  echo "build_onnxruntime_backend: up to date ($OUT)"; exit 0
fi

# tools: Debian packages, installed as the other targets do
need=()
for tool in cmake:cmake g++:g++ make:make patchelf:patchelf; do command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}"); done
[ -f /usr/include/rapidjson/document.h ] || need+=(rapidjson-dev)
[ -f /usr/src/googletest/CMakeLists.txt ] || need+=(googletest)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  command -v apt-get >/dev/null || die "missing ${need[*]}: install them (Debian/Ubuntu package names) and re-run"
  echo "build_onnxruntime_backend: installing ${need[*]} (apt)"
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}"; } >/dev/null \
    || die "could not install ${need[*]} with apt-get; install them and re-run"
fi
for tool in cmake g++ make patchelf; do command -v $tool >/dev/null || die "$tool not found after installing; install it and re-run"; done

# sources: offline tarballs, else GitHub at the pinned commits
rm -rf "$WORK" && mkdir -p "$WORK/src" "$WORK/include" "$WORK/lib"
for pair in "${COMMITS[@]}"; do
  repo=${pair%%:*} commit=${pair##*:}
  tarball="$OFFLINE/$repo-${commit:0:12}.tar.gz"
  if [ -f "$tarball" ]; then
    tar xzf "$tarball" -C "$WORK/src"
  else
    url=https://github.com/triton-inference-server/$repo/archive/$commit.tar.gz
    echo "build_onnxruntime_backend: $tarball not found; downloading $url"
    curl -fsSL "$url" | tar xz -C "$WORK/src" || die "could not download $url (offline? put the r24.10 tarballs in $OFFLINE)"
    mv "$WORK/src/$repo-$commit" "$WORK/src/$repo"
  fi
  [ -f "$WORK/src/$repo/CMakeLists.txt" ] || die "$WORK/src/$repo: no CMakeLists.txt (corrupt source of $repo@$commit)"
done
if [ -f "$OFFLINE/onnxruntime_c_api-api19.h" ]; then
  cp "$OFFLINE/onnxruntime_c_api-api19.h" "$WORK/include/onnxruntime_c_api.h"
else
  echo "build_onnxruntime_backend: downloading the ORT C API header $ORT_HEADER_URL"
  curl -fsSL -o "$WORK/include/onnxruntime_c_api.h" "$ORT_HEADER_URL" || die "could not download $ORT_HEADER_URL"
fi
grep -q "define ORT_API_VERSION 19" "$WORK/include/onnxruntime_c_api.h" || die "$WORK/include/onnxruntime_c_api.h is not the API 19 header"
ln -s "$ORT_LIB" "$WORK/lib/libonnxruntime.so"  # the wheel ships no unversioned name

echo "build_onnxruntime_backend: configuring and compiling (~1 min on 2 cores; log $WORK/build.log)"
S=$WORK/src
if ! { cmake -S "$S/onnxruntime_backend" -B "$WORK/cmake" -DCMAKE_BUILD_TYPE=Release -DTRITON_ENABLE_GPU=OFF \
         -DTRITON_ENABLE_ONNXRUNTIME_OPENVINO=OFF -DTRITON_ENABLE_ONNXRUNTIME_TENSORRT=OFF -DTRITON_CORE_HEADERS_ONLY=ON \
         -DTRITON_ONNXRUNTIME_INCLUDE_PATHS="$WORK/include" -DTRITON_ONNXRUNTIME_LIB_PATHS="$WORK/lib" \
         -DFETCHCONTENT_FULLY_DISCONNECTED=ON -DFETCHCONTENT_SOURCE_DIR_REPO-COMMON="$S/common" \
         -DFETCHCONTENT_SOURCE_DIR_REPO-CORE="$S/core" -DFETCHCONTENT_SOURCE_DIR_REPO-BACKEND="$S/backend" \
         -DFETCHCONTENT_SOURCE_DIR_GOOGLETEST=/usr/src/googletest \
       && cmake --build "$WORK/cmake" --target triton-onnxruntime-backend -j "${JOBS:-1}"; } >"$WORK/build.log" 2>&1; then
  tail -n 25 "$WORK/build.log" >&2
  die "the CMake build failed (last lines above; full log $WORK/build.log)"
fi
SO=$(find "$WORK/cmake" -name libtriton_onnxruntime.so -print -quit)
[ -n "$SO" ] || die "the build produced no libtriton_onnxruntime.so (log $WORK/build.log)"

# lay out the backend directory: written beside, then renamed into place (never half-written)
NEW=$OUT.new.$$
rm -rf "$NEW" && mkdir -p "$NEW/onnxruntime" "$NEW/python"
cp "$SO" "$NEW/onnxruntime/"
# the wheel's libtritonserver is renamed by auditwheel (libtritonserver-<hash>.so)
patchelf --replace-needed libtritonserver.so "$(basename "$TS_LIB")" "$NEW/onnxruntime/libtriton_onnxruntime.so"
cp "$ORT_LIB" "$NEW/onnxruntime/"
ln -s "$(basename "$ORT_LIB")" "$NEW/onnxruntime/libonnxruntime.so.1"
cp "$WHEEL"/backends/python/*.so "$WHEEL"/backends/python/*.py "$NEW/python/"
STUB="$WHEEL/python_backend_stubs/$PYVER/triton_python_backend_stub"
[ -f "$STUB" ] || die "$STUB: missing; this tritonserver wheel has no python backend stub for Python $PYVER"
cp "$STUB" "$NEW/python/"
echo "$STAMP_TEXT" >"$NEW/.stamp"
rm -rf "$OUT.old" && { [ ! -e "$OUT" ] || mv "$OUT" "$OUT.old"; } && mv "$NEW" "$OUT" && rm -rf "$OUT.old"
echo "build_onnxruntime_backend: built $OUT (onnxruntime/, python/)"
