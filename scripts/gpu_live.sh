#!/usr/bin/env bash
# A live session on the real 14B architecture (random weights), exact then fast: issue 20's "a
# live session on the GPU". For each precision: `helios serve --compile --vae-dtype bfloat16
# --precision P` on a random-weight 14B checkpoint (written once by
# `python -m helios_bench.random_checkpoint`, ~29 GB on disk), one warm-up session (its
# first chunk compiles), then `helios bench-realtime --url ...` (first frame, stalls, chunk period
# against playback, command -> first changed frame). Results: $OUT/realtime-14b-{exact,fast}.json
# (+ .png where matplotlib is). About 5-6 minutes on an H100: run it in its own device call.
#
# Wheels (here, into .whl/ next to gpu_check.sh's two; ~46 MB more, the working tree must stay
# under the 64 MiB a device call carries): the server's and the WebRTC client's packages that the
# GPU image lacks, for CPython 3.12 x86-64:
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_26_x86_64 \
#     --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
#     aiortc==1.16.0 aioice==0.13.0 av==18.1.0 cryptography==50.0.2 pyOpenSSL==26.4.0 \
#     pylibsrtp==1.0.0 cffi==2.0.0 pycparser==2.23 google-crc32c==1.9.0 pyee==13.0.1 \
#     dnspython==2.9.2 ifaddr==0.2.0 fastapi==0.165.0 starlette==1.10.0 pydantic==2.14.4 \
#     pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
#     typing_extensions==4.16.0 opentelemetry-api==1.45.3 \
#     uvicorn==0.55.0 websockets==17.4 python-multipart==0.0.34 protobuf==7.36.2
#
# Not run on a GPU yet (prepared in a session without one); rehearsed on the CPU with
# `PYTHON=.venv/bin/python ARCH=toy SERVE_FLAGS= CHUNKS=2 REALTIME_FLAGS="--width 64 --height 64"
# scripts/gpu_live.sh`
# (fast is refused there with exit 2, and the script goes on).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu-live}"
PY="${PYTHON:-python3}"
ARCH="${ARCH:-14b}"
CKPT="${CKPT:-/tmp/helios-$ARCH-random}"
CHUNKS="${CHUNKS:-6}"
REALTIME_FLAGS="${REALTIME_FLAGS:-}"
SERVE_FLAGS="${SERVE_FLAGS---compile --vae-dtype bfloat16}"
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1

if [ ! -f "$CKPT/helios_random.json" ]; then
  "$PY" -m helios_bench.random_checkpoint --arch "$ARCH" --out "$CKPT" || exit 1
fi

wait_ready() {  # $1: url, $2: server pid; 0 once /ready answers 200, 1 if the server died
  "$PY" - "$1" "$2" <<'EOF'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 600
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    try:
        with urllib.request.urlopen(url + "/ready", timeout=5) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(2)
sys.exit(1)
EOF
}

port=8765
for precision in ${PRECISIONS:-exact fast}; do
  port=$((port + 1))
  url="http://127.0.0.1:$port"
  log="$OUT/serve-$precision.log"
  # shellcheck disable=SC2086  # SERVE_FLAGS is a list of flags
  "$PY" -m helios_serve.cli serve --model "$CKPT" $SERVE_FLAGS --precision "$precision" \
    --host 127.0.0.1 --port "$port" > "$log" 2>&1 &
  pid=$!
  start=$(date +%s)
  if ! wait_ready "$url" "$pid"; then
    echo "gpu_live: $precision: the server did not become ready:"; tail -5 "$log"
    kill "$pid" 2> /dev/null; wait "$pid" 2> /dev/null
    continue
  fi
  echo "gpu_live: $precision: ready after $(( $(date +%s) - start )) s; warm-up session"
  # shellcheck disable=SC2086  # REALTIME_FLAGS is a list of flags
  "$PY" -m helios_serve.cli bench-realtime --url "$url" --chunks 2 --prompt-changes 0 \
    --timeout 600 $REALTIME_FLAGS > /dev/null 2>&1
  # shellcheck disable=SC2086
  "$PY" -m helios_serve.cli bench-realtime --url "$url" --chunks "$CHUNKS" --prompt-changes 3 \
    --timeout 600 $REALTIME_FLAGS --out "$OUT/realtime-$ARCH-$precision"
  kill "$pid"; wait "$pid" 2> /dev/null
  rm -f "$log"  # kept only when the server failed
done
