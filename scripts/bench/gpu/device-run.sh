#!/usr/bin/env bash
# GPU checks on a lent CUDA machine that has no Node and no network (scripts/bench/gpu/README.md).
#   device-run.sh stage DIR   move a payload part (pack.sh) from DIR to $STAGE; the first part also
#                             unpacks Node + node_modules and starts building ggml-cuda from
#                             node-llama-cpp's own llama.cpp source with the machine's nvcc (sm_90).
#   device-run.sh run         1) the prebuilt CUDA backend: the console's self-test on it;
#                             2) the locally built backend: engine bench on a 1B-sized model (GPU vs
#                                CPU) and on the tiny model, nvidia-smi capture, console telemetry.
#   device-run.sh train       the training benchmark with the CUDA trainer (tiny and ~60M models) and
#                             the ~60M model on 16 CPU threads; needs .tmp/trainer/llama.cpp-* carried.
# Results go to $OUT (at most 8 files come back); a short summary is printed last.
set -u
STAGE=${STAGE:-/root/stage}
OUT=${OUT:-$PWD/gpu-out}
LOGS=/root/logs
mkdir -p "$STAGE" "$OUT" "$LOGS" /root/nodebin /root/models
t0=$(date +%s)
step() { echo "== $(( $(date +%s) - t0 ))s $*"; }
export PATH=/root/nodebin:$PATH:/usr/local/cuda/bin
CUDA_BIN=node_modules/@node-llama-cpp/linux-x64-cuda/bins/linux-x64-cuda
Q=index,uuid,name,utilization.gpu,utilization.memory,memory.total,memory.used,memory.free,temperature.gpu,power.draw,power.limit

cuda_env() {
  local libdirs="" lib p
  for lib in libnvidia-ml.so.1 libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13; do
    p=$(find /usr/local/nvidia /usr/local/cuda* /usr/lib /usr/lib64 -name "$lib" 2>/dev/null | head -1)
    echo "$lib -> ${p:-MISSING}"
    [ -n "$p" ] && libdirs="$libdirs:$(dirname "$p")"
  done
  export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}$libdirs"
}

# Starts the console headless on port $1 with data dir $2, waits until ready.
serve() {
  CONSOLE_DATA_DIR=$2 CONSOLE_TELEMETRY_INTERVAL=1 node --import tsx electron/core/serve.ts --port "$1" --grpc-port 0 > "$LOGS/serve-$1.log" 2>&1 &
  SRV=$!
  for _ in $(seq 1 60); do grep -q "console ready" "$LOGS/serve-$1.log" && return 0; sleep 0.5; done
  echo "console on $1 did not start"; tail -5 "$LOGS/serve-$1.log"
}
get() { node -e "fetch('http://127.0.0.1:$1$2').then(r => r.text()).then(t => console.log(t))"; }
post() { node -e "fetch('http://127.0.0.1:$1$2', { method: 'POST', headers: { 'content-type': 'application/json' }, body: process.argv[1] }).then(async r => console.log(r.status, (await r.text()).slice(0, 300)))" "$3"; }

case "${1:-}" in
stage)
  mv "$2"/* "$STAGE"/
  ls -la "$STAGE"
  if [ -f "$STAGE/node.xz" ] && [ ! -x /root/nodebin/node ]; then
    step "unpack node + node_modules"
    xz -dc < "$STAGE/node.xz" > /root/nodebin/node && chmod +x /root/nodebin/node
    xz -dc < "$STAGE/nm.tar.xz" | tar -x -C /root && node -v
    step "start building ggml-cuda (sm_90) in the background"
    mkdir -p /root/llsrc && xz -dc < "$STAGE/llama-src.tar.xz" | tar -x -C /root/llsrc
    gen=""; command -v ninja >/dev/null && gen="-G Ninja"
    setsid nohup bash -c "cd /root/llsrc && cmake -S . -B build $gen -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DGGML_BACKEND_DL=ON \
      -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=OFF -DGGML_CUDA_FA=OFF -DGGML_CUDA_NCCL=OFF -DCMAKE_CUDA_ARCHITECTURES=90-real \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
      && cmake --build build --target ggml-cuda -j 16; echo \$? > /root/build.rc" > "$LOGS/build.log" 2>&1 < /dev/null &
    sleep 3; tail -3 "$LOGS/build.log"
  fi
  ;;
run)
  rm -rf node_modules && ln -s /root/node_modules node_modules
  step "assemble the prebuilt CUDA backend (node-llama-cpp 3.22.1, CUDA 13.1)"
  cat $(ls "$STAGE"/cuda.so.xz.part* | sort) | xz -dc > $CUDA_BIN/libggml-cuda.so
  cuda_env
  nvidia-smi -L
  nvidia-smi --query-gpu=$Q --format=csv,noheader,nounits | tee "$OUT/query-gpu.csv"

  step "1) console on the prebuilt CUDA backend: gpu auto + self-test"
  D1=$(mktemp -d); mkdir -p "$D1/models"
  node --import tsx scripts/make-tiny-model.ts "$D1/models/tiny.gguf" > /dev/null
  serve 18081 "$D1"
  post 18081 /v1/completions '{"model":"tiny","prompt":"the cat","max_tokens":8,"temperature":0}'
  get 18081 /api/v1/health/details > "$LOGS/health-prebuilt.json"
  kill -INT $SRV; wait $SRV; echo "serve exit $?"
  node -e "const h = JSON.parse(require('fs').readFileSync('$LOGS/health-prebuilt.json','utf8')).components.engine.details; console.log(JSON.stringify({ backend: h.backend, selfTests: h.selfTests }))" | tee "$OUT/selftest-prebuilt.json"

  step "wait for the ggml-cuda build"
  for _ in $(seq 1 400); do [ -f /root/build.rc ] && break; sleep 1; done
  tail -4 "$LOGS/build.log"
  if [ "$(cat /root/build.rc 2>/dev/null)" != "0" ]; then echo "build did not finish"; tar -czf "$OUT/logs.tar.gz" -C /root logs; exit 1; fi
  cp /root/llsrc/build/bin/libggml-cuda.so $CUDA_BIN/libggml-cuda.so
  ls -la $CUDA_BIN/libggml-cuda.so

  step "2) built backend: 1B-sized random model (F16), engine bench GPU (auto)"
  node --import tsx scripts/make-tiny-model.ts /root/models/random-1b.gguf --shape 1b --type f16
  ( while sleep 1; do nvidia-smi --query-gpu=$Q --format=csv,noheader,nounits; done ) > "$OUT/query-gpu-busy.csv" 2>/dev/null &
  smi=$!
  timeout 200 node --import tsx scripts/bench/engine.bench.ts --gpu auto --model /root/models/random-1b.gguf --tokens 256 --runs 5 --threads 4 > "$OUT/engine-gpu-1b.json" 2> "$LOGS/engine-gpu-1b.log"
  echo "rc $?"; kill $smi 2>/dev/null

  step "engine bench GPU (auto), tiny model"
  timeout 120 node --import tsx scripts/bench/engine.bench.ts --gpu auto --tokens 256 --runs 5 --threads 4 > "$OUT/engine-gpu-tiny.json" 2> "$LOGS/engine-gpu-tiny.log"
  echo "rc $?"

  step "engine bench CPU (16 threads), 1B model"
  timeout 120 node --import tsx scripts/bench/engine.bench.ts --gpu false --model /root/models/random-1b.gguf --tokens 32 --runs 2 --threads 16 > "$OUT/engine-cpu-1b.json" 2> "$LOGS/engine-cpu-1b.log"
  echo "rc $?"

  step "console telemetry + health (built backend)"
  D2=$(mktemp -d)
  serve 18082 "$D2"
  sleep 5
  node -e "
const get = async (p) => (await fetch('http://127.0.0.1:18082' + p)).json();
(async () => console.log(JSON.stringify({ telemetry: await get('/api/v1/monitoring/telemetry'), health: await get('/api/v1/health/details') })))();" > "$OUT/console-telemetry.json" 2>&1
  kill -INT $SRV; wait $SRV; echo "serve exit $?"

  tar -czf "$OUT/logs.tar.gz" -C /root logs
  step "summary"
  cat "$OUT/selftest-prebuilt.json"
  for f in engine-gpu-1b engine-gpu-tiny engine-cpu-1b; do echo "$f: $(tail -c 1400 "$OUT/$f.json")"; done
  ;;
train)
  # Training on the GPU: the native trainer built against node-llama-cpp's CUDA libraries, with
  # ggml-cuda built here (the prebuilt one cannot run on a 580 driver, see README.md).
  rm -rf node_modules && ln -s /root/node_modules node_modules
  cuda_env > /dev/null
  step "wait for the ggml-cuda build"
  for _ in $(seq 1 400); do [ -f /root/build.rc ] && break; sleep 1; done
  tail -2 "$LOGS/build.log"
  if [ "$(cat /root/build.rc 2>/dev/null)" != "0" ]; then echo "build did not finish"; tar -czf "$OUT/logs.tar.gz" -C /root logs; exit 1; fi
  cp /root/llsrc/build/bin/libggml-cuda.so $CUDA_BIN/libggml-cuda.so
  ( while sleep 1; do nvidia-smi --query-gpu=$Q --format=csv,noheader,nounits; done ) > "$OUT/query-gpu-train.csv" 2>/dev/null &
  smi=$!
  for run in "cuda small 4 3" "cpu small 16 1" "cuda tiny 4 3"; do
    set -- $run
    step "training bench: --gpu $1 --shape $2 --threads $3 --epochs $4"
    timeout 100 node --import tsx scripts/bench/training.bench.ts --gpu "$1" --shape "$2" --threads "$3" --epochs "$4" > "$OUT/training-$1-$2.json" 2> "$LOGS/training-$1-$2.log"
    echo "rc $?"; tail -c 1200 "$OUT/training-$1-$2.json"; tail -3 "$LOGS/training-$1-$2.log"
  done
  kill $smi 2>/dev/null
  tar -czf "$OUT/logs.tar.gz" -C /root logs
  ;;
*)
  echo "usage: device-run.sh stage DIR | run | train"; exit 2 ;;
esac
