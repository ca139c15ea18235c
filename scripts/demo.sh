#!/usr/bin/env bash
# The demo `make demo` runs: what three models cost on the seeds' STM32L4 (80 MHz, 128 KB SRAM, 1 MB flash).
set -euo pipefail
cd "$(dirname "$0")/.."
NNTAILOR=${NNTAILOR:-.venv/bin/nntailor}
mkdir -p out

echo "== LeNet-5 (Caffe) on the STM32L476, int8 =="
"$NNTAILOR" analyze zoo:lenet5 --target stm32l476 --bits 8 --json out/lenet5.json

echo
echo "== MLPerf Tiny keyword spotting DS-CNN on the STM32L476, int8 =="
"$NNTAILOR" analyze zoo:ds_cnn --target stm32l476 --bits 8 --no-layers --count-like fvcore --json out/ds_cnn.json

echo
echo "== MobileNetV2 1.0-224 on the STM32L476, int8: does not fit =="
"$NNTAILOR" analyze zoo:mobilenet_v2 --target stm32l476 --bits 8 --no-layers --json out/mobilenet_v2.json

echo
echo "JSON reports in out/"
