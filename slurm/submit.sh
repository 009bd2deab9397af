#!/usr/bin/env bash
# Submit a sweep and walk away. Hydra's launcher waits for every arm; this runs that driver
# detached (nohup + setsid, log under multirun/), returns once the SLURM job array is submitted,
# and prints where to look. The arms are SLURM jobs: they run whether or not the driver lives on;
# the driver only gathers them and exits non-zero if an arm failed (see its log).
#
#   bash slurm/submit.sh +sweep=alpha_x_mix +cluster=h100 [more overrides]
#   squeue -n alpha_x_mix                                   # the arms (job name = experiment)
#   .venv/bin/python sweeps/index.py multirun/alpha_x_mix/<time>   # status of every arm, any time
#
# Environment: PYTHON (default .venv/bin/python), GOPD_SUBMIT_WAIT (seconds to wait for the
# submission, default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
    echo "usage: bash slurm/submit.sh +sweep=NAME +cluster=NAME [overrides]   (arguments of train.py -m)" >&2
    exit 2
fi
PY=${PYTHON:-.venv/bin/python}
mkdir -p multirun
log=multirun/submit-$(date +%Y-%m-%d_%H-%M-%S)-$$.log
: >"$log"  # exists before the first read below (the driver's own redirection may come later)
nohup setsid "$PY" src/train.py -m "$@" >"$log" 2>&1 </dev/null &
pid=$!
deadline=$((SECONDS + ${GOPD_SUBMIT_WAIT:-300}))
sweep_dir=
while :; do
    if [ -z "$sweep_dir" ]; then
        sweep_dir=$(sed -n "s/.*Submitit '[a-z]*' sweep output dir : //p" "$log" | head -1)
    fi
    # submitit names each arm's folder after its SLURM job id once sbatch accepted it: <array>_<i>
    # for an array, <job> for a sweep of one arm (folders of digits only: the submission pickle
    # written before sbatch, <hex>.pkl, may start with a digit too)
    first=""
    if [ -n "$sweep_dir" ] && [ -d "$sweep_dir/.submitit" ]; then
        first=$(find "$sweep_dir/.submitit" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended \
                -regex '.*/[0-9]+(_[0-9]+)?' -printf '%f\n' 2>/dev/null | head -1)
    fi
    if [ -n "$first" ]; then
        echo "submitted: job ${first%%_*} ($(grep -c '] 	#[0-9]* : ' "$log" || true) arms)"
        echo "sweep dir: $sweep_dir"
        echo "driver:    pid $pid, log $log (it exits when every arm has ended)"
        echo "status:    $PY sweeps/index.py $sweep_dir"
        exit 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "error: the sweep driver ended before submitting; its log ($log):" >&2
        tail -20 "$log" >&2
        exit 1
    fi
    [ $SECONDS -lt $deadline ] || { echo "error: nothing submitted after ${GOPD_SUBMIT_WAIT:-300}s; see $log (driver pid $pid)" >&2; exit 1; }
    sleep 0.5
done
