"""Build a run from the composed config and execute it: validate, load, fit, summarise."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("gopd")


def _identity(x):
    return x


def _quiet_libraries() -> None:
    """Per-file progress bars of datasets/transformers drown the run's own progress bar."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_warning()


def run(cfg, run_dir: Path, run_name: str, *, multirun: bool = False) -> dict:
    """Validate (one-line error, exit 2, nothing written), then train and write summary.json."""
    from gopd.runlog import write_summary
    from gopd.validate import ConfigError, check_config, check_resources

    try:
        warnings = check_config(cfg)
        _quiet_libraries()
        resources = check_resources(cfg)
    except ConfigError as e:
        if multirun:  # one bad arm must not stop the grid: record it and move on
            write_summary(run_dir, {"status": "failed", "error": str(e), "steps": 0})
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    for w in warnings:
        log.warning(w)
    start = time.perf_counter()
    summary: dict = {"status": "failed", "steps": 0}
    try:
        summary = train(cfg, resources, run_dir, run_name)
        summary["status"] = "completed"
    except BaseException as e:
        summary["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        summary["wall_s"] = time.perf_counter() - start
        write_summary(run_dir, summary)
    return summary


def train(cfg, res, run_dir: Path, run_name: str) -> dict:
    import lightning as L
    from lightning.pytorch.callbacks import RichProgressBar
    from omegaconf import OmegaConf
    from torch.utils.data import DataLoader

    from gopd.callbacks import Evaluation
    from gopd.data import PromptStream
    from gopd.module import GOPDModule
    from gopd.pool import ModelPool, load_model
    from gopd.prompts import PromptBuilder
    from gopd.rollout import build_rollout
    from gopd.runlog import MetricsCSV, wandb_logger
    from gopd.teachers import REFERENCES, TEACHERS, Context
    from gopd.validate import needs_teacher

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    student = load_model(res.student_path, cfg.model.dtype, trainable=True).train()
    pool = ModelPool(cfg.model.dtype)
    ctx = Context(student=student, student_path=res.student_path, tokenizer=res.tokenizer, pool=pool,
                  toy_variant=cfg.model.get("toy_variant", "full"), problem_field=cfg.data.problem_field,
                  domain_field=cfg.data.domain_field, chunk_size=cfg.loss.chunk_size)
    teacher = reference = None
    if needs_teacher(cfg):
        teacher = TEACHERS[cfg.teacher.name](cfg, ctx)
        if cfg.alpha != 1:  # at alpha = 1 the reference cancels exactly: not even loaded
            reference = REFERENCES[cfg.reference.name](cfg, ctx, teacher)
    student_prompts = PromptBuilder(res.tokenizer, problem_field=cfg.data.problem_field)
    _log_prompts(res.train[0], student_prompts, teacher)

    rollout = build_rollout(cfg, student, res.tokenizer, student_prompts)
    eval_rows = res.test.select(range(min(cfg.eval.n_problems, len(res.test)))).to_list()
    frozen = list({id(m): m for m in pool._models.values()}.values())
    module = GOPDModule(cfg, student=student, tokenizer=res.tokenizer, rollout=rollout, teacher=teacher,
                        reference=reference, ema=ctx.ema, student_prompts=student_prompts, eval_rows=eval_rows,
                        frozen_models=frozen)
    loggers = [MetricsCSV(run_dir / "metrics.csv")]
    wb = wandb_logger(cfg, run_dir, run_name)
    if wb is not None:
        loggers.append(wb)
    callbacks = [Evaluation(cfg.eval.every_n_steps)]
    if cfg.logger.progress:
        callbacks.append(RichProgressBar(leave=True))
    trainer = L.Trainer(**OmegaConf.to_container(cfg.trainer, resolve=True), max_epochs=-1, logger=loggers,
                        callbacks=callbacks, enable_checkpointing=False, enable_model_summary=False,
                        enable_progress_bar=bool(cfg.logger.progress), num_sanity_val_steps=0,
                        default_root_dir=str(run_dir))
    loader = DataLoader(PromptStream(res.train, cfg.rollout.prompts_per_step, cfg.seed), batch_size=None,
                        collate_fn=_identity)
    t0 = time.perf_counter()
    try:
        trainer.fit(module, train_dataloaders=loader)
    finally:
        if wb is not None:
            import wandb

            if wb._experiment is not None:
                wb.experiment.summary.update({k: v for k, v in module.summary.items() if v is not None})
            wandb.finish()
    fit_s = time.perf_counter() - t0
    if cfg.save_final:
        student.save_pretrained(run_dir / "final")
        res.tokenizer.save_pretrained(run_dir / "final")
    return {
        **module.summary,
        "steps": module.batches,
        "train/skipped_steps": module.skipped_steps,
        "perf/tokens_per_s": module.tokens_seen / max(fit_s, 1e-9),
        "perf/fit_s": fit_s,
        "models_loaded": 1 + len(pool),
        "run_name": run_name,
    }


def _log_prompts(row, student_prompts, teacher) -> None:
    """The exact rendered prompts, once per run (a template mismatch is a silent bias)."""
    log.info("student prompt: %r", student_prompts.text(row))
    if teacher is not None:
        for name, route in teacher.routes.items():
            log.info("teacher prompt (%s): %r", name, route.prompts.text(row))
