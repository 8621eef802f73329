#!/usr/bin/env bash
# Packs what device-run.sh needs on a bare CUDA machine that has no Node and no network: the node
# binary, the runtime node_modules (without other platforms' prebuilt binaries, sources and
# renderer-only packages), the llama.cpp source node-llama-cpp ships (to build ggml-cuda there) and
# node-llama-cpp's prebuilt CUDA backend, xz-compressed and split so that each part fits one
# device call (64 MiB with the working tree). Output: .devpay1/ .devpay2/ .devpay3/ (ignored via
# .git/info/exclude). Takes ~5 min on 2 cores.
set -eu
cd "$(dirname "$0")/../../.."
X=$(git rev-parse --git-path info/exclude); mkdir -p "$(dirname "$X")"; grep -qx "/.devpay\*/" "$X" 2>/dev/null || echo "/.devpay*/" >> "$X"
W=$(mktemp -d)
npm ls --omit=dev --all --parseable 2>/dev/null | sed "s|^$PWD/||" | grep '^node_modules' > "$W/list"
npm ls openai --all --parseable 2>/dev/null | sed "s|^$PWD/||" | grep '^node_modules' >> "$W/list"
echo node_modules/.bin >> "$W/list"
sort -u "$W/list" | grep -v -E '^node_modules/(@node-llama-cpp/(linux-arm64|linux-armv7l|linux-x64-cuda-ext|linux-x64-vulkan)|typescript|recharts|react-dom|@reduxjs/toolkit|es-toolkit)$' > "$W/keep"
CUDA=node_modules/@node-llama-cpp/linux-x64-cuda/bins/linux-x64-cuda/libggml-cuda.so
tar --exclude=node_modules/node-llama-cpp/llama/gitRelease.bundle --exclude=node_modules/better-sqlite3/deps \
  --exclude=node_modules/better-sqlite3/build/Release/obj.target --exclude=$CUDA -cf - -T "$W/keep" | xz -T0 -9 > "$W/nm.tar.xz"
xz -T0 -9 -c "$(command -v node)" > "$W/node.xz"
xz -T0 -9 -c $CUDA > "$W/cuda.so.xz"
git clone -q node_modules/node-llama-cpp/llama/gitRelease.bundle "$W/llama.cpp"
(cd "$W/llama.cpp" && tar -cJf "$W/llama-src.tar.xz" CMakeLists.txt cmake common ggml include src vendor app licenses LICENSE)
rm -rf .devpay1 .devpay2 .devpay3 && mkdir .devpay1 .devpay2 .devpay3
mv "$W/node.xz" "$W/nm.tar.xz" "$W/llama-src.tar.xz" .devpay1/
# part a tops up call 1 to ~60 MB; parts b and c fill calls 2 and 3.
used=$(du -cb .devpay1/* | tail -1 | cut -f1)
first=$(( 60000000 - used ))
rest=$(( ($(stat -c %s "$W/cuda.so.xz") - first + 1) / 2 ))
head -c $first "$W/cuda.so.xz" > .devpay1/cuda.so.xz.parta
tail -c +$((first + 1)) "$W/cuda.so.xz" | head -c $rest > .devpay2/cuda.so.xz.partb
tail -c +$((first + rest + 1)) "$W/cuda.so.xz" > .devpay3/cuda.so.xz.partc
rm -rf "$W"
du -b .devpay*/*
