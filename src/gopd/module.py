"""The LightningModule: one G-OPD step, orchestrated.

    rollout -> verify (R) -> score (s, q, r) -> advantages -> loss -> update -> sync

Every stage is a call into its own module; this file only wires them and times them.
Optimization is manual so that the step reads top to bottom and a non-finite step can be
skipped before it touches the weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import lightning as L
import torch

from gopd import strategy, traces
from gopd.estimators import Settings, build_estimator
from gopd.evaluate import gap_closed, greedy_accuracy, scorer_accuracy
from gopd.rollout import RolloutBatch, decode
from gopd.verifier import verify_batch

# Per-step metrics every run logs (README, "Run outputs"); nan where a term does not apply
# (e.g. opd/* under pure GRPO), so every run's metrics.csv has the same columns.
STEP_METRICS = (
    "train/reward", "train/response_len", "loss", "grad_norm",
    "opd/pos_mass", "opd/neg_mass", "opd/pos_frac", "opd/teacher_kl", "opd/ref_kl", "opd/max_shock",
    "grpo/zero_std_frac", "mix/sign_agreement",
    "perf/tokens_per_s", "perf/rollout_s", "perf/score_s", "perf/update_s",
)


class NonFiniteError(RuntimeError):
    """Too many consecutive steps had non-finite values; the message names which."""


class GOPDModule(L.LightningModule):
    def __init__(self, cfg, *, student, tokenizer, rollout, teacher, reference, ema, student_prompts,
                 eval_rows: Sequence[Mapping], stream, frozen_models: Sequence[torch.nn.Module] = ()):
        super().__init__()
        self.automatic_optimization = False
        self.cfg = cfg
        self.student = student
        self.tokenizer = tokenizer
        self.rollout = rollout
        self.teacher = teacher            # Scorer or None (pure GRPO)
        self.estimator = build_estimator(cfg.estimator, Settings.from_config(cfg), teacher, reference)  # reference: a Scorer (the teacher itself for reference=teacher) or None (alpha = 1)
        self.ema = list(ema)
        self.student_prompts = student_prompts
        self.eval_rows = list(eval_rows)
        self._frozen = list(frozen_models)  # not submodules: never optimized or checkpointed
        self.stream = stream              # the prompt stream (its position is resume state)
        self.max_steps = int(cfg.trainer.max_steps)
        self.skipped_steps = 0
        self.consecutive_skips = 0
        self.batches = 0                  # rollout batches done: the "step" of every logged row
        self.tokens_seen = 0
        self.step_seconds = 0.0           # time inside training steps (throughput's denominator)
        self.summary: dict = {}
        self.last_non_finite: str | None = None
        self.resume_state: dict | None = None  # set by the runner when a checkpoint is found
        self._pending_rng: dict | None = None

    # ------------------------------------------------------------------------------- set-up
    def on_fit_start(self) -> None:
        for m in self._frozen + [e.model for e in self.ema]:
            m.to(self.device)
        if self.resume_state is not None:
            s = self.resume_state
            strategy.load_optimizer_state(self.trainer, self.optimizers().optimizer, s["optimizer"])
            self.lr_schedulers().load_state_dict(s["scheduler"])
            p = s["progress"]
            self.batches, self.skipped_steps, self.tokens_seen = p["batches"], p["skipped_steps"], p["tokens_seen"]
            self.consecutive_skips, self.step_seconds = p["consecutive_skips"], p["step_seconds"]
            self.summary = dict(s["summary"])
        self.stream.position = self.batches  # the loader prefetches: resume from what was trained on

        self._pending_rng = None if self.resume_state is None else self.resume_state["rng"]
        self.rollout.sync(self.student)  # vLLM started on the checkpoint; a resumed student has moved on

    def resume_payload(self) -> dict:
        """Everything but weights that an identical resume needs (plain values and tensors)."""
        from gopd.checkpoint import rng_state

        return {
            "optimizer": strategy.optimizer_state(self.trainer, self.optimizers().optimizer),  # FSDP: gathered
            "scheduler": self.lr_schedulers().state_dict(),
            "rng": rng_state(),
            "progress": {"batches": self.batches, "skipped_steps": self.skipped_steps,
                         "tokens_seen": self.tokens_seen, "consecutive_skips": self.consecutive_skips,
                         "step_seconds": self.step_seconds},
            "summary": dict(self.summary),
        }

    def configure_optimizers(self):
        o = self.cfg.optim
        params = [p for p in self.student.parameters() if p.requires_grad]  # LoRA: the adapters only
        opt = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        warmup = max(int(o.warmup_steps), 0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / (warmup + 1)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --------------------------------------------------------------------------- one step
    def training_step(self, rows: list[dict], batch_idx: int):
        cfg, pad = self.cfg, self.tokenizer.pad_token_id
        if self.batches >= self.max_steps:  # resumed at the end: nothing left to train
            self.trainer.should_stop = True
            return
        if self._pending_rng is not None:  # restored here, after every set-up draw (e.g. the loader's seed)
            from gopd.checkpoint import set_rng_state

            set_rng_state(self._pending_rng)
            self._pending_rng = None
        t0 = time.perf_counter()

        batch = self.rollout.sample(rows)                                                   # rollout
        t1 = time.perf_counter()

        rewards = self._verify(batch)                                                       # verify
        step = self.estimator(self.student, batch, rewards, pad)                            # score -> advantages -> loss
        loss = step.loss
        if self.trainer.is_global_zero and traces.due(cfg, self.batches):
            traces.maybe_save(cfg, self.trainer.default_root_dir, self.batches, batch, self.tokenizer,
                              rewards=rewards, **step.trace())
        t2 = time.perf_counter()

        grad_norm = self._update(loss, _first_non_finite(batch.mask, **step.checks))        # update
        self.rollout.sync(self.student)                                                     # sync
        t3 = time.perf_counter()

        n_tok = batch.num_tokens
        self.tokens_seen += n_tok
        self.step_seconds += t3 - t0
        metrics = {
            "train/reward": float(rewards.mean()),
            "train/response_len": n_tok / len(batch.rows),
            "loss": float(loss.detach()),
            "grad_norm": grad_norm,
            "train/skipped_steps": self.skipped_steps,
            "train/lr": self.optimizers().param_groups[0]["lr"],
            "perf/rollout_s": t1 - t0,
            "perf/score_s": t2 - t1,
            "perf/update_s": t3 - t2,
            "perf/tokens_per_s": n_tok / max(t3 - t0, 1e-9),
        }
        metrics.update(step.diagnostics)
        metrics = {k: metrics.get(k, math.nan) for k in STEP_METRICS} | metrics
        self.emit(metrics, self.batches)
        self.batches += 1
        if self.batches >= self.max_steps:
            self.trainer.should_stop = True
        progress = {"reward": metrics["train/reward"], "eval_acc": self.summary.get("eval/accuracy_final", math.nan)}
        self.log_dict(progress, prog_bar=True, logger=False, batch_size=len(batch.rows))

    def _verify(self, batch: RolloutBatch) -> torch.Tensor:
        texts = decode(self.tokenizer, batch.completion_ids, batch.mask)
        answers = [str(row[self.cfg.data.answer_field]) for row in batch.rows]
        return torch.tensor(verify_batch(texts, answers), dtype=torch.float32, device=batch.mask.device)

    def _update(self, loss: torch.Tensor, bad: str | None) -> float:
        """Backward, clip, step. A step with anything non-finite (``bad`` names it) is skipped
        before it touches the weights; ``optim.max_consecutive_skips`` in a row stop the run."""
        opt, sched = self.optimizers(), self.lr_schedulers()
        opt.zero_grad(set_to_none=True)
        norm = math.nan
        if bad is None:
            self.manual_backward(loss)
            norm = strategy.clip_grad_norm(self.trainer, self.student, self.cfg.optim.grad_clip)  # FSDP: all shards
            bad = None if math.isfinite(norm) else "gradient norm"
        if bad is not None:
            opt.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            self.consecutive_skips += 1
            self.last_non_finite = bad
            return math.nan
        self.consecutive_skips = 0
        opt.step()
        sched.step()
        for e in self.ema:
            e.update(self.student)
        return norm

    # --------------------------------------------------------------------------- evaluation
    def evaluate(self, step: int, *, with_teacher: bool = False) -> dict[str, float]:
        """Held-out greedy accuracy of the student (and once, of the teacher) -> logged metrics."""
        cfg = self.cfg
        kw = dict(answer_field=cfg.data.answer_field, domain_field=cfg.data.domain_field,
                  max_new_tokens=cfg.eval.max_new_tokens, batch_size=cfg.eval.batch_size)
        with strategy.full_root_params(self.trainer):  # FSDP: outside the step, gather the root's weights
            return self._evaluate(step, with_teacher, kw)

    def _evaluate(self, step: int, with_teacher: bool, kw: dict) -> dict[str, float]:
        res = greedy_accuracy(self.student, self.tokenizer, self.student_prompts, self.eval_rows, **kw)
        metrics = {f"eval/{k}": v for k, v in res.items()}
        if with_teacher and self.teacher is not None:
            t = scorer_accuracy(self.teacher, self.tokenizer, self.eval_rows, **kw)
            metrics.update({f"teacher/{k}": v for k, v in t.items()})
            self.summary["teacher/accuracy"] = t["accuracy"]
        self.summary.setdefault("eval/accuracy_initial", res["accuracy"])
        self.summary.setdefault("eval/response_len_initial", res["response_len"])
        closed = gap_closed(self.summary["eval/accuracy_initial"], res["accuracy"], self.summary.get("teacher/accuracy"))
        if closed is not None:
            metrics["eval/gap_closed"] = closed
        self.summary.update({"eval/accuracy_final": res["accuracy"], "eval/response_len_final": res["response_len"],
                             "eval/gap_closed": closed})
        self.emit(metrics, step)
        return metrics

    def too_many_skips(self) -> str | None:
        k = int(self.cfg.optim.max_consecutive_skips)
        if k > 0 and self.consecutive_skips >= k:
            return (f"{self.consecutive_skips} consecutive steps skipped: non-finite {self.last_non_finite} "
                    f"(last at step {self.batches - 1}); a checkpoint was saved")
        return None

    def emit(self, metrics: dict, step: int) -> None:
        """Write one step's metrics to every logger (metrics.csv, W&B) under an explicit step."""
        for lg in self.trainer.loggers:
            lg.log_metrics(metrics, step=step)


def _first_non_finite(mask: torch.Tensor, **values) -> str | None:
    """Name of the first value with a non-finite entry on a real token (padding may be anything)."""
    keep = mask.bool()
    for name, v in values.items():
        if v is None:
            continue
        bad = ~torch.isfinite(v) if v.dim() == 0 else (~torch.isfinite(v)) & keep
        if bool(bad.any()):
            return name.replace("_", " ")
    return None
