#!/usr/bin/env bash
# The study on the previous toy world, full_v1 (results/README.md): every sweep on the local SLURM
# cluster, 3 seeds per arm, then the comparison tables and plots under results/full_v1/<name>/.
# full_v1 is not shipped: its first use builds it (~6 min), on this machine's CPU, so the weights
# (and the figures) may differ from the committed ones. From the repository root:
#   bash results/full_v1/study.sh                 # ~1 hour on 2 cores (two arms at a time)
#   bash results/full_v1/study.sh compare DIR     # only re-make the tables from a finished study in DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python

compare() {  # DIR: the study's sweeps -> results/<name>/
  local d=$1
  $PY -m gopd.tools.compare --force "$d/estimators" --name full_v1/estimators --baseline estimator=token
  $PY -m gopd.tools.compare --force "$d/pressure" --name full_v1/pressure --baseline pressure=full
  $PY -m gopd.tools.compare --force "$d/pressure_alpha2" --name full_v1/pressure_alpha2 --baseline pressure=full
  $PY -m gopd.tools.compare --force "$d/alpha_x_mix" --name full_v1/alpha_x_mix --baseline alpha=1,grpo_mix=0
  $PY -m gopd.tools.compare --force "$d"/alpha_x_mix/*_alpha=1,grpo_mix=0,* "$d/grpo" --name full_v1/opd_vs_grpo --baseline grpo_mix=0
  $PY -m gopd.tools.compare --force "$d/reference" "$d"/alpha_x_mix/*_alpha=1.25,grpo_mix=0,* --name full_v1/reference \
    --baseline reference=student
  $PY -m gopd.tools.compare --force "$d/experts" --name full_v1/experts \
    --baseline 'teacher.experts.add=toy://expert_add,teacher.experts.mul=toy://expert_mul'
}

if [[ ${1:-} == compare ]]; then compare "$2"; exit 0; fi

bash slurm/local/cluster.sh up
eval "$(bash slurm/local/cluster.sh env)"
OUT=multirun/study/$(date +%Y-%m-%d_%H-%M-%S)
S=(+cluster=local logger.progress=false save_final=false)
# The world and settings the committed tables were made with: the toy world and the defaults before 2026-11-24 (results/README.md).
S+=(model.toy_variant=full_v1 rollout.n=4 rollout.prompts_per_step=8 optim.lr=3e-5 trainer.max_steps=300 eval.every_n_steps=50)
sweep() {  # NAME OVERRIDES...: one Hydra multirun into $OUT/NAME (the SLURM queue runs them in turn)
  local name=$1; shift
  $PY src/train.py -m "$@" "${S[@]}" hydra.sweep.dir="$OUT/$name" > "$OUT/$name.log" 2>&1 || true  # failures: table.md lists them
}
mkdir -p "$OUT"
start=$(date +%s)
sweep estimators '+sweep=[estimators,seeds]' &
sweep pressure '+sweep=[pressure,seeds]' teacher=hinted &
sweep pressure_alpha2 '+sweep=[pressure,seeds]' teacher=hinted pressure=full,positive alpha=2 &
sweep alpha_x_mix '+sweep=[alpha_x_mix,seeds]' teacher=rl_checkpoint alpha=1,1.25,2 grpo_mix=0,0.5 &
sweep grpo '+sweep=[alpha_x_mix,seeds]' teacher=rl_checkpoint alpha=1 grpo_mix=1 &
sweep reference '+sweep=[reference,seeds]' teacher=rl_checkpoint reference=pre_rl alpha=1.25 &
sweep experts '+sweep=[experts,seeds]' &
wait
echo "study: $OUT, $(( ($(date +%s) - start) / 60 )) min"
compare "$OUT"
