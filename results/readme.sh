#!/usr/bin/env bash
# The runs behind README.md's "What to expect": the main job, the OPD arm, the OPSD top-k arm and
# the main job with full pressure, 3 seeds each, on the shipped toy world at the current defaults, through the local SLURM cluster
# (two one-thread arms at a time), then one table under results/readme/; and the main job's seed 0
# once more with ATen's AVX2 kernels (another float order: how far a processor moves a run).
# The README's OPSD arm with the token estimator is the same world's 3-seed arm in
# results/pressure_v2/. From the repository root:
#   bash results/readme.sh                 # ~60 min on 2 cores
#   bash results/readme.sh compare DIR     # only re-make the table from finished runs in DIR
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

compare() {  # DIR -> results/readme/ (the AVX2 rerun is read on its own: the same arm and seed)
  $PY -m gopd.tools.compare --force "$1"/main "$1"/opd "$1"/opsd_topk "$1"/alpha2_full --name readme --ignore trainer.max_steps --ignore save_final
}

if [[ ${1:-} == compare ]]; then compare "$2"; exit 0; fi

bash slurm/local/cluster.sh up
eval "$(bash slurm/local/cluster.sh env)"
OUT=multirun/readme/$(date +%Y-%m-%d_%H-%M-%S)
S=(+cluster=local logger.progress=false save_final=false)
arm() {  # NAME OVERRIDES...: one Hydra multirun into $OUT/NAME
  local name=$1; shift
  $PY src/train.py -m "$@" "${S[@]}" hydra.sweep.dir="$OUT/$name" > "$OUT/$name.log" 2>&1 || true  # failures: table.md lists them
}
mkdir -p "$OUT"
start=$(date +%s)
arm main teacher=hinted pressure=positive alpha=2 seed=0,1,2 experiment=readme &              # make demo's command
arm opd teacher=rl_checkpoint estimator=topk seed=0,1,2 experiment=readme &                   # OPD from the RL-checkpoint stand-in
arm opsd_topk teacher=hinted pressure=positive estimator=topk seed=0,1,2 experiment=readme &  # OPSD, positive pressure, alpha 1
arm alpha2_full teacher=hinted alpha=2 seed=0,1,2 experiment=readme &                         # the main job with full pressure
ATEN_CPU_CAPABILITY=avx2 arm main_avx2 teacher=hinted pressure=positive alpha=2 seed=0 experiment=readme_avx2 &
wait
echo "readme runs: $OUT, $(( ($(date +%s) - start) / 60 )) min"
compare "$OUT"
