"""Build a run from the composed config and execute it: validate, load, fit, summarise.

A run directory that already holds a checkpoint is resumed from it (a submitit requeue, or
the user re-running the command with ``hydra.run.dir=<that dir>``); one whose
``summary.json`` says ``completed`` is left as it is.
"""

from __future__ import annotations

import errno
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("gopd")

EXIT_CONFIG = 2       # a bad config value: nothing was loaded
EXIT_NON_FINITE = 3   # too many consecutive non-finite steps: a checkpoint was saved


def _identity(x):
    return x


def _quiet_libraries() -> None:
    """One copy of each log line, and no third-party noise that says nothing about this run."""
    import warnings

    import datasets
    import lightning.pytorch  # noqa: F401 - its loggers exist once imported
    import transformers

    # Per-file progress bars of datasets/transformers drown the run's own progress.
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_warning()
    # Lightning gives its loggers console handlers of their own; the root handler (Hydra's: the
    # console and train.log) already writes every record, so each INFO line showed twice.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        for handler in [h for h in lg.handlers if type(h) is logging.StreamHandler]:
            lg.removeHandler(handler)
        lg.propagate = True
    # The litlogger advertisement Lightning prints on every Trainer.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "litlogger" not in r.getMessage())
    # Lightning's pytree shim warns about a torch deprecation on every run: nothing a user can act on.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # gopd's ranks do not need srun on a SLURM machine (submitit runs them; one local process is fine).
    warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not used")


def _completed(run_dir: Path) -> dict | None:
    from gopd.rundir import read_summary

    summary, problem = read_summary(run_dir)
    if problem:
        log.warning(problem)
    return summary if summary is not None and summary.get("status") == "completed" else None


def run(cfg, run_dir: Path, run_name: str, *, multirun: bool = False, arm: str | None = None,
        hydra_cfg=None) -> dict:
    """Validate (one-line error, exit 2, nothing written), then train and write summary.json.

    ``hydra_cfg``: Hydra's own node, recorded in ``.hydra/`` once the directory is known to hold
    this run (``gopd.rundir``). A run directory that cannot be used (busy, no usable checkpoint,
    disk full) is one line and exit 4; its files stay as they were."""
    from gopd.checkpoint import CheckpointError
    from gopd.rundir import EXIT_RUN_DIR, RunDirError, lock

    logging.raiseExceptions = False  # a full disk: one error line, not a traceback per log record
    run_dir = Path(run_dir)
    try:
        with lock(run_dir):
            return _run(cfg, run_dir, run_name, multirun=multirun, arm=arm, hydra_cfg=hydra_cfg)
    except (RunDirError, CheckpointError, OSError) as e:
        message = _run_dir_fault(e, run_dir)
        if message is None or multirun:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_RUN_DIR)


DISK_FAULTS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO, errno.EACCES}


def _run_dir_fault(e: Exception, run_dir: Path) -> str | None:
    """One line for a fault of the run directory or its disk (None for any other error)."""
    from gopd import checkpoint
    from gopd.rundir import RunDirError

    if isinstance(e, OSError) and e.errno not in DISK_FAULTS:
        return None
    if isinstance(e, OSError):
        where = f"{e.filename}" if e.filename else f"a file in {run_dir}"
        message = f"cannot write {where}: {e.strerror or e}"
    else:
        message = str(e)
    if isinstance(e, RunDirError) or not (run_dir / "checkpoints").is_dir():
        return message
    last = checkpoint.latest(run_dir)
    kept = f"the last checkpoint is {last.name}" if last else "no checkpoint was written yet"
    return f"{message}; {kept} and metrics.csv keeps its earlier rows: free space and rerun the same command to resume"


def _run(cfg, run_dir: Path, run_name: str, *, multirun: bool, arm: str | None, hydra_cfg) -> dict:
    from gopd.callbacks import NonFiniteError
    from gopd.rundir import record_hydra
    from gopd.runlog import stash_config, write_summary
    from gopd.validate import ConfigError, check_config, check_resources

    _refuse_another_config(run_dir, cfg, multirun=multirun)
    if done := _completed(run_dir):
        log.info("%s already completed (summary.json); nothing to do", run_dir)
        return done
    resume_from = _resume_point(run_dir)
    if hydra_cfg is not None:
        record_hydra(run_dir, cfg, hydra_cfg)
    as_given = cfg  # what the loggers record: toy:// paths, not this machine's
    try:
        warnings = check_config(cfg)
        cfg = resolve_paths(cfg)  # explicit: may build a (non-shipped) toy world
        _quiet_libraries()
        resources = check_resources(cfg)
    except ConfigError as e:
        if multirun:  # one bad arm must not stop the grid: record it and move on
            write_summary(run_dir, {"status": "failed", "error": str(e), "steps": 0})
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    for w in warnings:
        log.warning(w)
    stash_config(run_dir, _plain(as_given))
    session = Session(cfg, resources, run_dir, run_name, as_given=as_given, arm=arm, resume_from=resume_from)
    summary: dict = {"status": "failed", "steps": 0}
    try:
        summary = session.fit()
    except NonFiniteError as e:
        summary = session.summary(status="failed", error=str(e))
        if not multirun:
            write_summary(run_dir, summary)
            print(f"error: {e}", file=sys.stderr)
            sys.exit(EXIT_NON_FINITE)
        raise
    except BaseException as e:
        summary = session.summary(status="failed", error=f"{type(e).__name__}: {e}")
        raise
    finally:
        write_summary(run_dir, summary)
    if session.trainer is None or session.trainer.is_global_zero:
        from gopd.progress import end_block

        for line in end_block(summary, run_dir):
            log.info(line)
    session.forward_signal()
    return summary


def _resume_point(run_dir: Path):
    """The newest intact checkpoint (damaged newer ones named in a warning), None for a fresh run;
    checkpoints that are all damaged stop the run: it never silently restarts from step 0."""
    from gopd import checkpoint
    from gopd.rundir import RunDirError

    path, skipped = checkpoint.usable(run_dir)
    for line in skipped:
        log.warning("checkpoint %s: skipped%s", line, f", resuming from {path.name}" if path else "")
    if path is None and skipped:
        raise RunDirError(f"no usable checkpoint in {checkpoint.checkpoint_root(run_dir)} ({skipped[0]}); nothing "
                          f"was deleted: restore it, or move checkpoints/ aside to start again from step 0")
    return path


def _refuse_another_config(run_dir: Path, cfg, *, multirun: bool) -> None:
    """A run directory holds one run: restarted with other settings, it would mix two runs' metrics
    (or report the first as the second's), so it stops with what differs; nothing is written."""
    from gopd.runlog import config_changes, started_config
    from gopd.validate import ConfigError

    started = started_config(run_dir)
    changes = config_changes(started, _plain(cfg)) if started is not None else []
    if not changes:
        return
    shown = "; ".join(changes[:3]) + (f"; and {len(changes) - 3} more" if len(changes) > 3 else "")
    message = (f"{run_dir} was started with another config ({shown}): restart it with the same overrides, "
               f"or give a new run directory")
    if multirun:
        raise ConfigError(message)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_CONFIG)


def resolve_paths(cfg):
    """``toy://``, ``cache://`` and ``gopd://`` values -> plain paths (the core never sees a toy variant);
    a bad or missing name is a ConfigError."""
    from gopd.paths import resolve_builtin_paths
    from gopd.toy.config import resolve_toy_paths
    from gopd.validate import ConfigError

    try:
        return resolve_builtin_paths(resolve_toy_paths(cfg))
    except ValueError as e:
        raise ConfigError(str(e)) from None


class Session:
    """One training segment of a run: everything built from the config, then ``fit``."""

    def __init__(self, cfg, res, run_dir: Path, run_name: str, *, as_given=None, arm: str | None = None,
                 resume_from: Path | None = None):
        self.cfg, self.res, self.run_dir, self.run_name = cfg, res, run_dir, run_name
        self.resume_from = resume_from  # the checkpoint to continue from (``_resume_point``), None: step 0
        self.arm = arm  # W&B's job_type (runlog.arm_label); None: the run name
        self.as_given = as_given if as_given is not None else cfg
        self.start = time.perf_counter()
        self.module = self.trainer = None
        self.models_loaded = 0
        self.provenance = _provenance(cfg, res)

    def fit(self) -> dict:
        import lightning as L
        import torch
        from lightning.pytorch.utilities.exceptions import SIGTERMException
        from torch.utils.data import DataLoader

        from gopd.runlog import wandb_run

        cfg, run_dir = self.cfg, self.run_dir
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        self.module, stream, pool = self._build()
        self.models_loaded = 1 + len(pool)
        resume = self._resume(self.resume_from)
        loggers = build_loggers(cfg.logger, run_dir=run_dir, run_name=self.run_name, resume=resume,
                                config=_plain(self.as_given), arm=self.arm)
        callbacks = build_callbacks(cfg, started_at=self.start)
        self.trainer = trainer = L.Trainer(**trainer_args(cfg, run_dir), logger=loggers, callbacks=callbacks)
        # The loader draws its base seed from its own generator, not the global one a resume restores.
        loader = DataLoader(stream, batch_size=None, collate_fn=_identity, generator=torch.Generator().manual_seed(cfg.seed))
        fitted = False
        try:
            trainer.fit(self.module, train_dataloaders=loader)
            fitted = True
        except SIGTERMException:  # Lightning's own stop on SIGTERM, between two steps
            if self._checkpointing().received is None:
                raise
            self._checkpointing().stopped = True
            self._checkpointing().ensure_saved(trainer, self.module)
            fitted = True
        finally:
            _finish_wandb(wandb_run(loggers), self.summary(status=self._status() if fitted else "failed"))
        if cfg.save_final and not self._checkpointing().stopped:
            save_final(trainer, self.module.student, self.res.tokenizer, run_dir / "final")
        return self.summary(status=self._status())

    def _resume(self, path) -> dict | None:
        """A checkpoint's state into the module (the callbacks and loggers read theirs from it)."""
        if path is None:
            return None
        from gopd import checkpoint

        m = self.module
        state = checkpoint.load(path, m.student, [e.model for e in m.ema])
        m.resume_state = state
        log.info("resuming from %s (step %d)", path, state["progress"]["batches"])
        return state

    def _callback(self, kind):
        return next((cb for cb in self.trainer.callbacks if isinstance(cb, kind)), None) if self.trainer else None

    def _checkpointing(self):
        from gopd.callbacks import Checkpointing

        return self._callback(Checkpointing)

    def _status(self) -> str:
        cp = self._checkpointing()
        return "preempted" if cp is not None and cp.stopped else "completed"

    def _build(self):
        from gopd.data import PromptStream
        from gopd.lora import prepare_student
        from gopd.module import GOPDModule
        from gopd.pool import ModelPool, load_model
        from gopd.prompts import log_prompts, prompt_style
        from gopd.rollout import build_rollout
        from gopd import strategy
        from gopd.strategy import wants_activation_checkpointing
        from gopd.estimators import Settings, build_estimator
        from gopd.teachers import REFERENCES, TEACHERS, Context
        from gopd.traces import Tracer
        from gopd.rewards import Verification
        from gopd.validate import needs_teacher

        cfg, res = self.cfg, self.res
        remote = bool(cfg.model.get("trust_remote_code", False))
        student = prepare_student(load_model(res.student_path, cfg.model.dtype, trainable=True, trust_remote_code=remote),
                                  cfg.model, gradient_checkpointing=cfg.model.get("gradient_checkpointing", False)
                                  or wants_activation_checkpointing(cfg.trainer)).train()  # LoRA, checkpointing
        pool = ModelPool(cfg.model.dtype, trust_remote_code=remote)
        ctx = Context(student=student, student_path=res.student_path, tokenizer=res.tokenizer, pool=pool,
                      problem_field=cfg.data.problem_field,
                      domain_field=cfg.data.domain_field, chunk_size=cfg.loss.chunk_size, prompt_style=prompt_style(cfg))
        teacher = reference = None
        if needs_teacher(cfg):
            teacher = TEACHERS[cfg.teacher.name](cfg.teacher, ctx)
            if cfg.alpha != 1:  # at alpha = 1 the reference cancels exactly: not even loaded
                reference = REFERENCES[cfg.reference.name](cfg.reference, ctx, teacher)
        student_prompts = ctx.plain_prompts()
        log_prompts(res.train[0], student_prompts,
                    {"teacher": teacher, "reference": None if reference is teacher else reference}, self.run_dir)
        stream = PromptStream(res.train, cfg.rollout.prompts_per_step, cfg.seed)
        rollout = build_rollout(cfg.rollout, student, res.tokenizer, student_prompts, model_path=res.student_path,
                                trust_remote_code=remote, defer=strategy.multi_process(cfg.trainer))
        # reference: a Scorer (the teacher itself for reference=teacher), or None at alpha = 1
        estimator = build_estimator(cfg.estimator, Settings.from_config(cfg), teacher, reference)
        d, e = cfg.data, cfg.eval
        module = GOPDModule(student=student, tokenizer=res.tokenizer, rollout=rollout, estimator=estimator,
                            teacher=teacher, ema=ctx.ema, student_prompts=student_prompts,
                            eval_rows=res.test.select(range(min(e.n_problems, len(res.test)))).to_list(),
                            stream=stream, optim=cfg.optim, max_steps=cfg.trainer.max_steps,
                            evaluation=dict(answer_field=d.answer_field, domain_field=d.domain_field,
                                            max_new_tokens=e.max_new_tokens, batch_size=e.batch_size,
                                            answer_extract=d.get("answer_extract", "boxed"),
                                            cache=cfg.rollout.cache),
                            verification=Verification(d.answer_field, d.get("answer_extract", "boxed"),
                                                      cfg.verify.workers),
                            tracer=Tracer.from_config(cfg), frozen_models=pool.models(),
                            shardable=single_route_models([teacher, reference], pool.models()) + [e.model for e in ctx.ema])
        return module, stream, pool

    def summary(self, **extra) -> dict:
        from gopd.callbacks import Bookkeeping

        book = self._callback(Bookkeeping)
        wall = book.wall_s() if book is not None else time.perf_counter() - self.start
        out = {"status": "failed", "steps": 0, "run_name": self.run_name, "wall_s": wall, **self.provenance}
        if self.module is not None:
            out["steps"] = self.module.batches
            out["models_loaded"] = self.models_loaded
        if book is not None:
            out.update(book.run_summary())
        out["data_dropped"] = dict(self.res.dropped)  # rows data.drop_invalid left out, per split
        out.update(extra)
        return out

    def forward_signal(self) -> None:
        cp = self._checkpointing()
        if cp is not None:
            cp.forward_signal()


def single_route_models(scorers, frozen) -> list:
    """The frozen models of single-route scorers (a checkpoint teacher, the step-0 student, the pre-RL
    base): one forward per scoring call on every rank, so they can be sharded. Domain experts
    score only the rows of their domain, a different number of calls per rank: they stay whole."""
    out = []
    for s in scorers:
        if s is not None and len(s.routes) == 1:
            model = next(iter(s.routes.values())).model
            if any(model is m for m in frozen) and not any(model is m for m in out):
                out.append(model)
    return out


def save_final(trainer, student, tokenizer, path: Path) -> None:
    """The trained student as a plain HF checkpoint (LoRA merged in), written by rank 0; under FSDP
    every rank takes part in gathering the weights."""
    from gopd.lora import save_student
    from gopd.strategy import full_state_dict

    weights = full_state_dict(student)
    if trainer.is_global_zero:
        save_student(student, path, state=weights)
        tokenizer.save_pretrained(path)
    trainer.strategy.barrier("gopd-final")


def trainer_args(cfg, run_dir: Path) -> dict:
    """``cfg.trainer`` as Lightning Trainer keywords, with what gopd sets itself (schema.RUN_SETS)."""
    from omegaconf import OmegaConf

    from gopd.strategy import build as build_strategy

    args = OmegaConf.to_container(cfg.trainer, resolve=True)
    args.pop("max_steps")  # counted by the module, which also counts resumed steps
    args["strategy"] = build_strategy(args.get("strategy", "auto"))  # trainer=ddp|fsdp
    return {**args, "max_steps": -1, "max_epochs": -1, "enable_checkpointing": False, "enable_model_summary": False,
            "enable_progress_bar": False, "num_sanity_val_steps": 0,  # progress in steps: callbacks.progress
            "default_root_dir": str(run_dir)}


def instantiate(spec, **runtime):
    """A ``_target_`` node built with Hydra, given those of ``runtime`` its target's signature takes
    (as plain Python objects: a resume state holds tensors, which a config node cannot)."""
    import inspect

    from hydra.utils import get_method, instantiate as hydra_instantiate

    params = inspect.signature(get_method(spec._target_)).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    build = hydra_instantiate(spec, _partial_=True, _convert_="all")
    return build(**{k: v for k, v in runtime.items() if takes_all or k in params})


def build_loggers(spec, **runtime) -> list:
    """The ``logger`` group's ``_target_`` nodes (metrics.csv, W&B, any the user adds); null or a
    logger that declines (W&B disabled) is left out."""
    built = (instantiate(node, **runtime) for node in _components(spec))
    return [lg for lg in built if lg is not None]


def build_callbacks(cfg, **runtime) -> list:
    """The ``callbacks`` group in its order (bookkeeping, evaluation, checkpointing, progress, ...)."""
    return [instantiate(node, **runtime) for node in cfg.callbacks.values() if node is not None]


def _components(spec) -> list:
    return [node for node in spec.values() if hasattr(node, "get") and node.get("_target_")]


def _plain(cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def _provenance(cfg, res) -> dict:
    """What a result depends on beyond its config: the toy world's identity (when one is used) and the code."""
    from gopd.runlog import code_version
    from gopd.toy.build import world_label

    world = world_label(res.student_path) or world_label(str(cfg.data.path))
    return {"world": world, "code": code_version()}


def _finish_wandb(wb, summary: dict) -> None:
    """Summary metrics on the W&B run, then ``finish`` so the next multirun job starts a new run
    (a failed run ends with a non-zero exit code: W&B's State column shows it failed)."""
    if wb is None:
        return
    import wandb

    if wb._experiment is not None:
        wb.experiment.summary.update({k: v for k, v in summary.items() if v is not None})
    wandb.finish(exit_code=1 if summary.get("status") == "failed" else 0)
