#!/usr/bin/env bash
# The CPU republication in order: the comparison, dense's two more seeds, ResNet18's
# sparsity curves, then BloodMNIST-style. Each sweep is resumable: stop this at any
# time and run it again to go on. Runs from the repository root (data paths are
# relative to it); results in ${RESULTS:-republish}/cpu.db, checkpoints beside it.
#
#   RESULTS=/path/to/folder bash configs/republish.sh
set -euo pipefail
cd "$(dirname "$0")/.."
results=${RESULTS:-republish}
mkdir -p "$results"
for config in cpu cpu-dense-seeds cpu-curves cpu-blood; do
  .venv/bin/sparsebench sweep "configs/$config.yaml" --db "$results/cpu.db" \
    --runs-dir "$results/runs"
done
# the output layer kept dense: its own database, so its cells never pool with cpu.db's
.venv/bin/sparsebench sweep configs/cpu-output.yaml --db "$results/cpu-output.db" \
  --runs-dir "$results/runs"
