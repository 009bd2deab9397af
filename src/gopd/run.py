"""Build a run from the composed config and execute it: validate, load, fit, summarise.

A run directory that already holds a checkpoint is resumed from it (a submitit requeue, or
the user re-running the command with ``hydra.run.dir=<that dir>``); one whose
``summary.json`` says ``completed`` is left as it is.
"""

from __future__ import annotations

import json
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
    """Per-file progress bars of datasets/transformers drown the run's own progress bar."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_warning()


def _completed(run_dir: Path) -> dict | None:
    path = run_dir / "summary.json"
    if path.is_file():
        summary = json.loads(path.read_text())
        if summary.get("status") == "completed":
            return summary
    return None


def run(cfg, run_dir: Path, run_name: str, *, multirun: bool = False) -> dict:
    """Validate (one-line error, exit 2, nothing written), then train and write summary.json."""
    from gopd.module import NonFiniteError
    from gopd.runlog import write_summary
    from gopd.validate import ConfigError, check_config, check_resources

    run_dir = Path(run_dir)
    if done := _completed(run_dir):
        log.info("%s already completed (summary.json); nothing to do", run_dir)
        return done
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
    session = Session(cfg, resources, run_dir, run_name)
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
    session.forward_signal()
    return summary


def resolve_paths(cfg):
    """``toy://`` values -> plain paths (the core never sees a toy variant); a bad name is a ConfigError."""
    from gopd.toy.config import resolve_toy_paths
    from gopd.validate import ConfigError

    try:
        return resolve_toy_paths(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None


class Session:
    """One training segment of a run: everything built from the config, then ``fit``."""

    def __init__(self, cfg, res, run_dir: Path, run_name: str):
        self.cfg, self.res, self.run_dir, self.run_name = cfg, res, run_dir, run_name
        self.start = time.perf_counter()
        self.wall_before = 0.0  # wall time of earlier segments of a resumed run
        self.module = self.checkpointing = None
        self.models_loaded = 0
        self.provenance = _provenance(cfg, res)

    def fit(self) -> dict:
        import lightning as L
        import torch
        from lightning.pytorch.callbacks import RichProgressBar
        from omegaconf import OmegaConf
        from torch.utils.data import DataLoader

        from gopd import checkpoint
        from gopd.callbacks import Checkpointing, Evaluation
        from gopd.lora import save_student
        from gopd.runlog import MetricsCSV, wandb_logger
        from gopd.strategy import build as build_strategy

        cfg, run_dir = self.cfg, self.run_dir
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        module, stream, pool = self._build()
        self.module = module
        resume = checkpoint.latest(run_dir)
        state = {}
        if resume is not None:
            state = checkpoint.load(resume, module.student, [e.model for e in module.ema])
            module.resume_state = state
            self.wall_before = float(state.get("wall_s", 0.0))
            log.info("resuming from %s (step %d)", resume, state["progress"]["batches"])
        csv_logger = MetricsCSV(run_dir / "metrics.csv", rows=state.get("metrics_rows"))
        loggers = [csv_logger]
        wb = wandb_logger(cfg, run_dir, self.run_name, run_id=state.get("wandb_id"))
        if wb is not None:
            loggers.append(wb)

        def extra_state() -> dict:
            return {"metrics_rows": csv_logger.snapshot(), "wandb_id": wb.version if wb is not None else None,
                    "wall_s": self.wall_s()}

        self.checkpointing = Checkpointing(run_dir, cfg.checkpoint.every_n_steps, extra_state)
        callbacks = [Evaluation(cfg.eval.every_n_steps), self.checkpointing]
        if cfg.logger.progress:
            callbacks.append(RichProgressBar(leave=True))
        trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
        trainer_args.pop("max_steps")  # counted by the module, which also counts resumed steps
        trainer_args["strategy"] = build_strategy(trainer_args.get("strategy", "auto"))  # trainer=ddp|fsdp
        trainer = L.Trainer(**trainer_args, max_steps=-1, max_epochs=-1, logger=loggers, callbacks=callbacks,
                            enable_checkpointing=False, enable_model_summary=False,
                            enable_progress_bar=bool(cfg.logger.progress), num_sanity_val_steps=0,
                            default_root_dir=str(run_dir))
        # The loader draws its base seed from its own generator, not the global one a resume restores.
        loader = DataLoader(stream, batch_size=None, collate_fn=_identity,
                            generator=torch.Generator().manual_seed(cfg.seed))
        self.models_loaded = 1 + len(pool)
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        fitted = False
        try:
            trainer.fit(module, train_dataloaders=loader)
            fitted = True
        except SIGTERMException:  # Lightning's own stop on SIGTERM, between two steps
            if self.checkpointing.received is None:
                raise
            self.checkpointing.ensure_saved(module)
            fitted = True
        finally:
            if wb is not None:  # summary.json's keys (status, steps, wall_s...) for W&B's runs table too
                _finish_wandb(wb, self.summary(status=self._status() if fitted else "failed"))
        if cfg.save_final and self.checkpointing.received is None:
            save_student(module.student, run_dir / "final")  # LoRA: adapters merged in
            self.res.tokenizer.save_pretrained(run_dir / "final")
        return self.summary(status=self._status())

    def _status(self) -> str:
        return "preempted" if self.checkpointing.received is not None else "completed"

    def _build(self):
        from gopd.data import PromptStream
        from gopd.lora import prepare_student
        from gopd.module import GOPDModule
        from gopd.pool import ModelPool, load_model
        from gopd.prompts import PromptBuilder, log_prompts, prompt_style
        from gopd.rollout import build_rollout
        from gopd.strategy import checkpoints_activations
        from gopd.teachers import REFERENCES, TEACHERS, Context
        from gopd.validate import needs_teacher

        cfg, res = self.cfg, self.res
        remote = bool(cfg.model.get("trust_remote_code", False))
        student = prepare_student(load_model(res.student_path, cfg.model.dtype, trainable=True, trust_remote_code=remote),
                                  cfg.model, gradient_checkpointing=cfg.model.get("gradient_checkpointing", False)
                                  and not checkpoints_activations(cfg.trainer)).train()  # LoRA, checkpointing
        pool = ModelPool(cfg.model.dtype, trust_remote_code=remote)
        ctx = Context(student=student, student_path=res.student_path, tokenizer=res.tokenizer, pool=pool,
                      problem_field=cfg.data.problem_field,
                      domain_field=cfg.data.domain_field, chunk_size=cfg.loss.chunk_size, prompt_style=prompt_style(cfg))
        teacher = reference = None
        if needs_teacher(cfg):
            teacher = TEACHERS[cfg.teacher.name](cfg, ctx)
            if cfg.alpha != 1:  # at alpha = 1 the reference cancels exactly: not even loaded
                reference = REFERENCES[cfg.reference.name](cfg, ctx, teacher)
        student_prompts = PromptBuilder(res.tokenizer, problem_field=cfg.data.problem_field, **ctx.prompt_style)
        log_prompts(res.train[0], student_prompts,
                    {"teacher": teacher, "reference": None if reference is teacher else reference}, self.run_dir)
        stream = PromptStream(res.train, cfg.rollout.prompts_per_step, cfg.seed)
        module = GOPDModule(cfg, student=student, tokenizer=res.tokenizer,
                            rollout=build_rollout(cfg, student, res.tokenizer, student_prompts),
                            teacher=teacher, reference=reference, ema=ctx.ema, student_prompts=student_prompts,
                            eval_rows=res.test.select(range(min(cfg.eval.n_problems, len(res.test)))).to_list(),
                            stream=stream, frozen_models=pool.models())
        return module, stream, pool

    def wall_s(self) -> float:
        return self.wall_before + time.perf_counter() - self.start

    def summary(self, **extra) -> dict:
        m = self.module
        out = {"status": "failed", "steps": 0, "run_name": self.run_name, "wall_s": self.wall_s(), **self.provenance}
        if m is not None:
            out.update(m.summary)
            out.update({"steps": m.batches, "train/skipped_steps": m.skipped_steps,
                        "perf/tokens_per_s": m.tokens_seen / max(m.step_seconds, 1e-9),
                        "models_loaded": self.models_loaded})
        out.update(extra)
        return out

    def forward_signal(self) -> None:
        if self.checkpointing is not None:
            self.checkpointing.forward_signal()


def _provenance(cfg, res) -> dict:
    """What a result depends on beyond its config: the toy world's identity (when one is used) and the code."""
    from gopd.runlog import code_version
    from gopd.toy.build import world_label

    world = world_label(res.student_path) or world_label(str(cfg.data.path))
    return {"world": world, "code": code_version()}


def _finish_wandb(wb, summary: dict) -> None:
    """Summary metrics on the W&B run, then ``finish`` so the next multirun job starts a new run
    (a failed run ends with a non-zero exit code: W&B's State column shows it failed)."""
    import wandb

    if wb._experiment is not None:
        wb.experiment.summary.update({k: v for k, v in summary.items() if v is not None})
    wandb.finish(exit_code=1 if summary.get("status") == "failed" else 0)
