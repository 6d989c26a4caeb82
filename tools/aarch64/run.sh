#!/usr/bin/env bash
# The runtime on aarch64 under qemu-user, and streams crossing x86-64 <-> aarch64 bit for bit.
#
#   tools/aarch64/run.sh [--photos 67] [--arm-photos 1] [--float-every 67] [--cm last|every] [--jobs 2] [--bundle DIR]
#                        [--skip-tests] [--skip-crosscheck]        (as root: apt-get, debootstrap)
#
# 1. an arm64 Debian root (debootstrap --foreign: download and unpack only, no arm64 code runs),
#    the python3 packages unpacked into it with dpkg -x; cached in $AARCH64_ROOT between runs
# 2. a venv in it whose `python` is a small x86 shell script that starts the arm64 python3 under
#    qemu-aarch64-static with QEMU_LD_PREFIX=$AARCH64_ROOT: sys.executable is that script, so
#    subprocesses (pytest's, pip's) run under qemu too, without binfmt_misc
# 3. the runtime's dependencies from PyPI, wheels only (--only-binary=:all:), the versions the
#    x86-64 venv has, then edge-sdk itself (pip install --no-deps -e: pure Python)
# 4. the runtime tests that need no torch, in the emulated python
# 5. tools/aarch64/crosscheck.py: encode on x86-64, decode on aarch64; encode on aarch64 (a few
#    photos end to end, and every x86-64 latent), decode on x86-64; compare (exit 1 if a bit differs)
#
# Everything outside the repository: root, venv, bundle, streams, logs (under $WORK). See
# docs/platforms.md for what it found and how long each step takes.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
AARCH64_ROOT=${AARCH64_ROOT:-/root/aarch64-root}
WORK=${WORK:-/root/aarch64-work}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
HOST_PY=${HOST_PY:-$REPO/.venv/bin/python}
PHOTOS=67          # x 3 streams (two orderings, one with escapes) = 201
ARM_PHOTOS=1       # photos that aarch64 also runs through the whole pipeline (ONNX analysis: minutes each)
FLOAT_EVERY=67     # logits and reconstructions compared for every 67th photo's streams (photo 0)
CM=last            # conditional-mean ŷ at every level or the deepest (midpoint ŷ, the default: every)
JOBS=2
BUNDLE=""
RUN_TESTS=1
RUN_CROSS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --photos) PHOTOS=$2; shift 2 ;;
    --arm-photos) ARM_PHOTOS=$2; shift 2 ;;
    --float-every) FLOAT_EVERY=$2; shift 2 ;;
    --cm) CM=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --bundle) BUNDLE=$2; shift 2 ;;
    --skip-tests) RUN_TESTS=0; shift ;;
    --skip-crosscheck) RUN_CROSS=0; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$WORK"
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
timed() { local t0=$SECONDS; "$@"; log "  took $((SECONDS - t0)) s"; }

# ---------------------------------------------------------------- 1. host tools, arm64 root
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
  log "installing qemu-user-static and debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static debootstrap >/dev/null
fi
QEMU=$(command -v qemu-aarch64-static)
PY_ARM=$AARCH64_ROOT/usr/bin/python3
if [ ! -x "$PY_ARM" ]; then
  log "debootstrap --arch=arm64 --foreign $SUITE -> $AARCH64_ROOT"
  timed nice -n 10 debootstrap --arch=arm64 --foreign --variant=minbase \
    --include=python3,python3-venv,python3-pip $SUITE "$AARCH64_ROOT" "$MIRROR" >"$WORK/debootstrap.log"
  # The second stage would run arm64 dpkg in a chroot (needs binfmt_misc); python needs no
  # maintainer script, so every downloaded package is unpacked as it is.
  for deb in "$AARCH64_ROOT"/var/cache/apt/archives/*.deb; do dpkg -x "$deb" "$AARCH64_ROOT"; done
fi
export QEMU_LD_PREFIX=$AARCH64_ROOT
# qemu-user 7.2 passes the host's /proc/cpuinfo through, in x86 format; onnxruntime's cpuinfo
# library then finds no ARM core and dereferences NULL while the extension loads (SIGSEGV on
# `import onnxruntime`). QEMU_LD_PREFIX redirects every path that exists under the root, so an
# arm64 /proc/cpuinfo there (Jetson Orin's core: Cortex-A78AE, part 0xd42) is what it reads.
if [ ! -s "$AARCH64_ROOT/proc/cpuinfo" ]; then
  for i in $(seq 0 $(($(nproc) - 1))); do
    printf 'processor\t: %d\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp uscat ilrcpc flagm paca pacg\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd42\nCPU revision\t: 1\n\n' "$i"
  done >"$AARCH64_ROOT/proc/cpuinfo"
fi
PYVER=$("$QEMU" "$PY_ARM" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
log "aarch64 python $PYVER: $("$QEMU" "$PY_ARM" -c 'import platform; print(platform.machine(), platform.python_version())')"

# ---------------------------------------------------------------- 2. venv with a qemu wrapper
VENV=$AARCH64_ROOT/opt/py${PYVER/./}
PY=$VENV/bin/python
if [ ! -f "$VENV/pyvenv.cfg" ]; then
  "$QEMU" "$PY_ARM" -m venv --without-pip "$VENV"   # ensurepip would start a subprocess
fi
for name in python python3 "python$PYVER"; do
  rm -f "$VENV/bin/$name"
  cat >"$VENV/bin/$name" <<EOF
#!/bin/sh
# x86-64 shell, arm64 python: qemu-user runs $AARCH64_ROOT/usr/bin/python$PYVER with argv[0] = this file
export QEMU_LD_PREFIX=$AARCH64_ROOT
exec $QEMU -0 "\$0" $AARCH64_ROOT/usr/bin/python$PYVER "\$@"
EOF
  chmod +x "$VENV/bin/$name"
done
"$PY" -c 'import sys, platform; assert platform.machine() == "aarch64" and sys.prefix != sys.base_prefix, sys.prefix'

# ---------------------------------------------------------------- 3. wheels only
pin() {  # the x86-64 venv's version of each package, so that the ISA is the only difference
  "$HOST_PY" - "$@" <<'EOF'
import sys
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in sys.argv[1:]))
EOF
}
if ! "$PY" -c 'import numba, onnxruntime, pytest, edge_sdk' 2>/dev/null; then
  PIP_WHEEL=$(ls "$AARCH64_ROOT"/usr/share/python-wheels/pip-*.whl | head -1)
  if ! "$PY" -m pip --version >/dev/null 2>&1; then
    "$PY" "$PIP_WHEEL/pip" install -q --no-index "$PIP_WHEEL"   # pip runs from its own wheel
  fi
  log "pip install (aarch64 wheels only)"
  timed nice -n 10 "$PY" -m pip install -q --disable-pip-version-check --no-compile --only-binary=:all: \
    $(pin numpy numba llvmlite onnxruntime pillow typer rich pytest hypothesis threadpoolctl scikit-image) \
    >"$WORK/pip.log" 2>&1 || { tail -20 "$WORK/pip.log"; exit 1; }
  # edge-sdk itself is pure Python: editable, built in pip's isolated environment (setuptools from
  # its wheel; the build runs in a subprocess: the wrapper makes that work)
  "$PY" -m pip install -q --no-deps --only-binary=:all: -e "$REPO" >>"$WORK/pip.log" 2>&1 \
    || { tail -20 "$WORK/pip.log"; exit 1; }
fi
"$PY" -c 'import edge_sdk, numba, onnxruntime, numpy; print("edge_sdk", edge_sdk.__file__, "numpy", numpy.__version__, "numba", numba.__version__, "onnxruntime", onnxruntime.__version__)'
export NUMBA_CACHE_DIR=$WORK/numba-cache   # the kernels compile once under emulation, not per run

# ---------------------------------------------------------------- 4. runtime tests on aarch64
if [ $RUN_TESTS = 1 ]; then
  # torch-free: tests/runtime (minus the TensorRT engine build: no TensorRT off a Jetson) and
  # the import-graph test; tests/export, tests/calibration and tests/cli need torch or the CLI's
  # export/calibration extras
  log "pytest tests/runtime on aarch64 (log: $WORK/pytest-aarch64.log)"
  (cd "$REPO" && timed nice -n 10 "$PY" -m pytest -v -rfEs -p no:cacheprovider tests/runtime tests/test_import_graph.py \
     --ignore=tests/runtime/backends/test_tensorrt_build.py 2>&1 | tee "$WORK/pytest-aarch64.log" | tail -15) || true
fi

# ---------------------------------------------------------------- 5. the crosscheck
if [ $RUN_CROSS = 1 ]; then
  if [ -z "$BUNDLE" ]; then
    BUNDLE=$WORK/lite0-bundle
    [ -f "$BUNDLE/manifest.json" ] || timed "$REPO/.venv/bin/edge-sdk" export --model lite0 --out "$BUNDLE" --force
  fi
  X=$WORK/x86_64; A=$WORK/aarch64; CC=$REPO/tools/aarch64/crosscheck.py
  rm -rf "$X" "$A"
  mkdir -p "$X" "$A"
  # real photos: Kodak, then the ImageNet sample (shared/data), the first $PHOTOS
  SHARED=$REPO/../shared/data; [ -d "$SHARED/kodak" ] || SHARED=/work/shared/data
  { ls "$SHARED"/kodak/*.png; ls "$SHARED"/imagenet-sample/val/*.JPEG; } | head -n "$PHOTOS" >"$WORK/photos.txt"
  log "crosscheck: $(wc -l <"$WORK/photos.txt") photos x 3 streams (logs: $WORK/*.log)"
  log "x86-64: encode"
  timed nice -n 5 "$HOST_PY" "$CC" encode --bundle "$BUNDLE" --photos "$WORK/photos.txt" --out "$X" >"$WORK/x86-encode.log"
  # aarch64, in parallel: JOBS shards decoding x86-64's streams (ONNX Runtime's float outputs for
  # every FLOAT_EVERY-th photo only: about 2 minutes a stream under qemu), and one encoder (all of
  # x86-64's latents re-encoded, then the first ARM_PHOTOS photos through the whole pipeline)
  log "aarch64: encode $ARM_PHOTOS photos + re-encode x86-64's latents; decode x86-64's streams in $JOBS shards"
  pids=()
  nice -n 10 "$PY" "$CC" encode --bundle "$BUNDLE" --photos "$WORK/photos.txt" --limit "$ARM_PHOTOS" \
    --out "$A" --latents-from "$X" >"$WORK/arm-encode.log" 2>&1 &
  pids+=($!)
  for k in $(seq 0 $((JOBS - 1))); do
    nice -n 10 "$PY" "$CC" decode --bundle "$BUNDLE" --streams "$X/streams" --shard "$k/$JOBS" --cm "$CM" \
      --float-every "$FLOAT_EVERY" --out "$X/decode-aarch64.$k.json" >"$WORK/arm-decode-x86.$k.log" 2>&1 &
    pids+=($!)
  done
  log "x86-64: decode x86-64's streams"
  timed nice -n 5 "$HOST_PY" "$CC" decode --bundle "$BUNDLE" --streams "$X/streams" --float-every "$FLOAT_EVERY" --cm "$CM" \
    --out "$X/decode-x86_64.json" >"$WORK/x86-decode-x86.log"
  t0=$SECONDS
  for pid in "${pids[@]}"; do wait "$pid" || { echo "an aarch64 job failed: see $WORK/arm-*.log" >&2; exit 1; }; done
  log "  aarch64 jobs done after $((SECONDS - t0)) s more"
  "$HOST_PY" "$CC" merge --out "$X/decode-aarch64.json" "$X"/decode-aarch64.[0-9]*.json
  log "aarch64: decode aarch64's own streams"
  timed nice -n 10 "$PY" "$CC" decode --bundle "$BUNDLE" --streams "$A/streams" --float-every "$FLOAT_EVERY" --cm "$CM" \
    --out "$A/decode-aarch64.json" >"$WORK/arm-decode-arm.log"
  log "x86-64: decode aarch64's streams (own and re-encoded)"
  timed nice -n 5 "$HOST_PY" "$CC" decode --bundle "$BUNDLE" --streams "$A/streams" --float-every "$FLOAT_EVERY" --cm "$CM" \
    --out "$A/decode-x86_64.json" >"$WORK/x86-decode-arm.log"
  timed nice -n 5 "$HOST_PY" "$CC" decode --bundle "$BUNDLE" --streams "$A/reencoded" --float-every "$FLOAT_EVERY" --cm "$CM" \
    --out "$A/decode-reencoded-x86_64.json" >"$WORK/x86-decode-arm-reencoded.log"
  log "compare (a = x86-64, b = aarch64) -> $WORK/compare.json"
  "$HOST_PY" "$CC" compare --a "$X" --b "$A" \
    --a-decodes-a "$X/decode-x86_64.json" --b-decodes-a "$X/decode-aarch64.json" \
    --a-decodes-b-reencoded "$A/decode-reencoded-x86_64.json" \
    --a-decodes-b "$A/decode-x86_64.json" --b-decodes-b "$A/decode-aarch64.json" --out "$WORK/compare.json"
fi
