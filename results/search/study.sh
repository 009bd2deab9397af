#!/usr/bin/env bash
# The study on the search world (+world=search, shipped: src/gopd/toy/worlds/search): the seeds'
# five claims, 3 seeds per arm, on the local SLURM cluster, then the tables and plots under
# results/search/<name>/. From the repository root:
#   bash results/search/study.sh                 # 24 runs, ~2 hours on 2 cores (two runs at a time)
#   bash results/search/study.sh compare DIR     # only re-make the tables from a finished study in DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
IGN=(--ignore save_final --ignore callbacks --ignore logger)

compare() {  # DIR: the study's sweeps -> results/search/<name>/
  local d=$1
  $PY -m gopd.tools.compare --force "$d/pressure" --name search/pressure --baseline pressure=full "${IGN[@]}"
  $PY -m gopd.tools.compare --force "$d/alpha" --name search/alpha --baseline alpha=1 "${IGN[@]}"
  $PY -m gopd.tools.compare --force "$d"/alpha/*,alpha=1.25,* "$d/reference" --name search/reference \
    --baseline reference=student "${IGN[@]}"
  $PY -m gopd.tools.compare --force "$d/experts" --name search/experts "${IGN[@]}"
  $PY -m gopd.tools.compare --force "$d"/alpha/*,alpha=1,* "$d/grpo" --name search/opd_vs_grpo \
    --baseline grpo_mix=0 "${IGN[@]}"
  $PY results/search/gap_rollouts.py "$d" > results/search/opd_vs_grpo/gap_rollouts.md
  local R=results/search
  $PY $R/dynamics.py "$d/pressure" --arm pressure.name > $R/pressure/dynamics.md
  $PY $R/dynamics.py "$d/alpha" "$d/reference" --arm alpha --arm reference.name > $R/reference/dynamics.md
  $PY $R/dynamics.py "$d/experts" --arm teacher.name > $R/experts/dynamics.md
  $PY $R/dynamics.py "$d/alpha" "$d/grpo" --arm alpha --arm grpo_mix > $R/opd_vs_grpo/dynamics.md
}

if [[ ${1:-} == compare ]]; then compare "$2"; exit 0; fi

bash slurm/local/cluster.sh up
eval "$(bash slurm/local/cluster.sh env)"
OUT=multirun/search_study/$(date +%Y-%m-%d_%H-%M-%S)
# Every arm: 8 prompts x 4 samples per step (GRPO groups for rlrt and grpo_mix), the world's 400 steps,
# held-out accuracy on all 400 test problems every 50 steps.
S=(+world=search +cluster=local logger.progress=false save_final=false eval.every_n_steps=50)
sweep() {  # NAME OVERRIDES...: one Hydra multirun into $OUT/NAME (SLURM runs the queue in submission order)
  local name=$1; shift
  $PY src/train.py -m "$@" "${S[@]}" hydra.sweep.dir="$OUT/$name" > "$OUT/$name.log" 2>&1 || true  # failures: table.md lists them
}
mkdir -p "$OUT"
start=$(date +%s)
# (a) hinted self-teacher: full vs positive pressure, RLRT beside them
sweep pressure '+sweep=[pressure,seeds]' teacher=hinted pressure=full,positive,rlrt & sleep 20
# (b) the stronger teacher (strong-to-weak): alpha 1 (OPD) vs 1.25 (ExOPD)
sweep alpha '+sweep=[alpha_x_mix,seeds]' teacher=rl_checkpoint alpha=1,1.25 grpo_mix=0 & sleep 20
# (c) reference = the teacher's pre-RL base vs the student (alpha=1.25; the student arm is (b)'s);
# the reference sweep keeps the default 32 x 1 batch: set to alpha_x_mix's 8 x 4 so the arms match
sweep reference '+sweep=[reference,seeds]' teacher=rl_checkpoint reference=pre_rl alpha=1.25 rollout.n=4 rollout.prompts_per_step=8 & sleep 20
# (e) GRPO alone, the same rollouts (OPD's arm is (b)'s alpha=1)
sweep grpo '+sweep=[alpha_x_mix,seeds]' teacher=rl_checkpoint alpha=1 grpo_mix=1 & sleep 20
# (d) merged experts (each domain's prompts scored by its expert): the student against each expert on its own domain
sweep experts '+sweep=[experts,seeds]' teacher.experts.add=toy://expert_add teacher.experts.mul=toy://expert_mul &
wait
echo "study: $OUT, $(( ($(date +%s) - start) / 60 )) min"
compare "$OUT"
