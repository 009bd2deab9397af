#!/usr/bin/env bash
# The runs behind README.md's "What to expect": each arm it quotes, 3 seeds, on the shipped toy
# world at the current defaults, through the local SLURM cluster (two one-thread arms at a time),
# then one table under results/readme/. From the repository root:
#   bash results/readme.sh                 # ~45 min on 2 cores
#   bash results/readme.sh compare DIR     # only re-make the table from finished runs in DIR
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

compare() {  # DIR -> results/readme/
  $PY src/compare.py "$1" --name readme --ignore trainer.max_steps --ignore save_final
}

if [[ ${1:-} == compare ]]; then compare "$2"; exit 0; fi

bash slurm/local/cluster.sh up
eval "$(bash slurm/local/cluster.sh env)"
OUT=multirun/readme/$(date +%Y-%m-%d_%H-%M-%S)
S=(seed=0,1,2 +cluster=local logger.progress=false save_final=false experiment=readme)
arm() {  # NAME OVERRIDES...: one arm's seeds as one Hydra multirun into $OUT/NAME
  local name=$1; shift
  $PY src/train.py -m "$@" "${S[@]}" hydra.sweep.dir="$OUT/$name" > "$OUT/$name.log" 2>&1 || true  # failures: table.md lists them
}
mkdir -p "$OUT"
start=$(date +%s)
arm main teacher=hinted pressure=positive alpha=2 &                       # make demo's command
arm opd teacher=rl_checkpoint estimator=topk &                            # OPD from the RL-checkpoint stand-in
arm opsd_topk teacher=hinted pressure=positive estimator=topk &           # OPSD, positive pressure, alpha 1
arm opsd_token teacher=hinted pressure=positive &                         # the same with the token estimator
arm alpha2_full teacher=hinted alpha=2 &                                  # the main job with full pressure
arm alpha2_topk teacher=hinted pressure=positive alpha=2 estimator=topk & # the main job with top-k
wait
echo "readme runs: $OUT, $(( ($(date +%s) - start) / 60 )) min"
compare "$OUT"
