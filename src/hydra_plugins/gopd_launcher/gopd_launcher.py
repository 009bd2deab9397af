"""The cluster profiles' SLURM launcher: Hydra's submitit launcher with an honest exit code.

Hydra's ``run_job`` catches an arm's exception and returns it as a failed ``JobReturn``, so the
job process exits 0 and SLURM records the failed arm as COMPLETED (Hydra 1.3's behaviour): ``sacct``,
job-state e-mails and dependency chains (``afterok``) would all trust it. Here the job process
exits 1 *after* submitit has saved that result, so SLURM says FAILED while the Hydra driver still
collects every arm's result and reports the failures once the whole sweep has run, as before.

It lives under ``hydra_plugins`` because Hydra instantiates launchers only from that namespace.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher


class SlurmLauncher(SubmititSlurmLauncher):
    def __call__(self, *args, **kwargs) -> JobReturn:
        outcome: dict[str, bool] = {}
        # Registered before the arm runs, so it runs after the exit handlers the arm registers
        # (atexit is last-in, first-out): W&B and the rest finish first.
        atexit.register(_exit_1_if_failed, outcome)
        ret = super().__call__(*args, **kwargs)
        outcome["failed"] = ret.status == JobStatus.FAILED
        return ret


def _exit_1_if_failed(outcome: dict[str, bool]) -> None:
    if outcome.get("failed"):
        logging.shutdown()  # os._exit skips the handlers registered before this one
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
